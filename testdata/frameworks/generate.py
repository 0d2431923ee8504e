"""Tiny Pre-LN transformers written in other frameworks and converted to ONNX by those
frameworks' converters, for the LayerNorm forms they emit (issue #14):

- `flax_jax2tf.onnx`: Flax (`flax.linen`) → `jax2tf.convert(native_serialization=False,
  enable_xla=False)` → `tf2onnx.convert.from_function` (opset 15). Flax's `nn.LayerNorm`
  computes the variance as max(0, E[x²] − E[x]²), means as ReduceSum(x)·(1/n), and
  rsqrt(var + ε)·γ multiplies the centred value.
- `keras_tf2onnx.onnx`: `tf.keras` (Keras 2 in TF 2.15) with `layers.LayerNormalization` →
  `tf2onnx.convert.from_keras` (opset 15): moments, `SquaredDifference`, `Rsqrt` lowered.
- `paddle_p2o.onnx`: PaddlePaddle `nn.LayerNorm` → `paddle.onnx.export` (paddle2onnx).

Each model: token ids int32/int64 [batch, seq] (seq ≤ 16), vocabulary 64, d = 32, 2 blocks
(LN → single-head... two-head attention → Dense → residual; LN → Dense·GELU·Dense →
residual), final LN, Dense head → logits [batch, seq, 64]. 5 LayerNorms each. Weights: seeded;
LN γ ~ U(0.5, 1.5), β ~ N(0, 0.3); Dense W ~ N(0, 1/fan_in), b ~ N(0, 0.1); token and
position tables ~ N(0, 1) plus a shared row offset 2·z + 1, so an un-centred stream is clearly
off. Every file is run in onnxruntime against its framework (max|Δ|/max|ref| in
manifest.json, < 1e-4).

Environments (PyPI only; see testdata/README.md):
    python3.11 -m venv venv-tf && venv-tf/bin/pip install tensorflow-cpu==2.15.1 \\
        tf2onnx==1.16.1 jax==0.4.23 jaxlib==0.4.23 flax==0.8.0 "numpy<2" onnx==1.16.2 \\
        protobuf==3.20.3 onnxruntime==1.17.3
    python3.11 -m venv venv-paddle && venv-paddle/bin/pip install paddlepaddle==3.3.1 \\
        paddle2onnx==2.1.0 onnx==1.17.0 onnxruntime==1.32.0 numpy==2.4.6
    venv-tf/bin/python testdata/frameworks/generate.py flax keras
    venv-paddle/bin/python testdata/frameworks/generate.py paddle
"""
import json
import os
import sys

import numpy as np

OUT = os.path.dirname(os.path.abspath(__file__))
V, D, H, F, L, T = 64, 32, 2, 64, 2, 16
REQUIREMENTS = {
    "flax": {"tensorflow": "2.15.1", "tf2onnx": "1.16.1", "jax": "0.4.23", "flax": "0.8.0",
             "onnx": "1.16.2", "onnxruntime": "1.17.3"},
    "keras": {"tensorflow": "2.15.1", "tf2onnx": "1.16.1", "onnx": "1.16.2",
              "onnxruntime": "1.17.3"},
    "paddle": {"paddle": "3.3.1", "paddle2onnx": "2.1.0", "onnx": "1.17.0",
               "onnxruntime": "1.32.0"},
}


def weights(seed):
    """The same kind of random weights for every framework: a dict of numpy arrays."""
    r = np.random.RandomState(seed)
    off = 2 * r.randn(D) + 1
    w = {"wte": r.randn(V, D) + off, "wpe": r.randn(T, D) + off}
    for i in range(L + 1):
        w[f"ln{i}a_g"] = r.uniform(0.5, 1.5, D)
        w[f"ln{i}a_b"] = r.randn(D) * 0.3
        w[f"ln{i}b_g"] = r.uniform(0.5, 1.5, D)
        w[f"ln{i}b_b"] = r.randn(D) * 0.3
    for i in range(L):
        for name, (fi, fo) in {"q": (D, D), "k": (D, D), "v": (D, D), "o": (D, D),
                               "fc1": (D, F), "fc2": (F, D)}.items():
            w[f"b{i}_{name}_w"] = r.randn(fi, fo) / fi ** 0.5
            w[f"b{i}_{name}_b"] = r.randn(fo) * 0.1
    w["head_w"] = r.randn(D, V) / D ** 0.5
    w["head_b"] = r.randn(V) * 0.1
    return {k: v.astype(np.float32) for k, v in w.items()}


def ids(batch, seq, seed=3):
    return np.random.RandomState(seed).randint(0, V, size=(batch, seq))


def check_ort(path, fn, dtype, sizes=((2, 8), (3, 16))):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    worst = 0.0
    for k, (b, t) in enumerate(sizes):
        x = ids(b, t, 3 + k).astype(dtype)
        ref = np.asarray(fn(x))
        got = s.run(None, {name: x})[0]
        assert got.shape == ref.shape, (path, got.shape, ref.shape)
        assert np.isfinite(ref).all() and np.isfinite(got).all(), path
        worst = max(worst, float(np.abs(got - ref).max() / np.abs(ref).max()))
    assert worst < 1e-4, (path, worst)
    return worst, name


# ---------------------------------------------------------------- Flax through jax2tf, tf2onnx
def flax_model():
    import jax
    import jax.numpy as jnp
    import flax.linen as nn
    import tensorflow as tf
    import tf2onnx
    from jax.experimental import jax2tf

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            b, t, _ = x.shape
            h = nn.LayerNorm(epsilon=1e-5, name="ln_a")(x)
            q = nn.Dense(D, name="q")(h).reshape(b, t, H, D // H)
            k = nn.Dense(D, name="k")(h).reshape(b, t, H, D // H)
            v = nn.Dense(D, name="v")(h).reshape(b, t, H, D // H)
            a = jnp.einsum("bqhd,bkhd->bhqk", q, k) / (D // H) ** 0.5
            a = jax.nn.softmax(a, axis=-1)
            o = jnp.einsum("bhqk,bkhd->bqhd", a, v).reshape(b, t, D)
            x = x + nn.Dense(D, name="o")(o)
            h = nn.LayerNorm(epsilon=1e-5, name="ln_b")(x)
            h = nn.Dense(D, name="fc2")(nn.gelu(nn.Dense(F, name="fc1")(h), approximate=False))
            return x + h

    class Model(nn.Module):
        @nn.compact
        def __call__(self, ids):
            t = ids.shape[1]
            # jnp.take with mode="clip": nn.Embed's default "fill" gives NaN for indices out of
            # range, which tf2onnx lowers as cond·a + (1 − cond)·NaN: NaN everywhere
            wte = self.param("wte", nn.initializers.zeros, (V, D))
            x = jnp.take(wte, ids, axis=0, mode="clip")
            pos = jnp.arange(t)  # a symbolic length: slicing would need a static one
            wpe = self.param("wpe", nn.initializers.zeros, (T, D))
            x = x + jnp.take(wpe, pos, axis=0, mode="clip")
            for i in range(L):
                x = Block(name=f"b{i}")(x)
            x = nn.LayerNorm(epsilon=1e-5, name="ln_f")(x)
            return nn.Dense(V, name="head")(x)

    w = weights(11)
    m = Model()
    params = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
    params = jax.tree_util.tree_map(np.asarray, params)
    params = jax.tree_util.tree_map(lambda a: a, params)
    params = dict(params)
    params["wte"] = w["wte"]
    params["wpe"] = w["wpe"]
    for i in range(L):
        p = dict(params[f"b{i}"])
        p["ln_a"] = {"scale": w[f"ln{i}a_g"], "bias": w[f"ln{i}a_b"]}
        p["ln_b"] = {"scale": w[f"ln{i}b_g"], "bias": w[f"ln{i}b_b"]}
        for n in ("q", "k", "v", "o", "fc1", "fc2"):
            p[n] = {"kernel": w[f"b{i}_{n}_w"], "bias": w[f"b{i}_{n}_b"]}
        params[f"b{i}"] = p
    params["ln_f"] = {"scale": w[f"ln{L}a_g"], "bias": w[f"ln{L}a_b"]}
    params["head"] = {"kernel": w["head_w"], "bias": w["head_b"]}

    def apply(x):
        return m.apply({"params": params}, x)

    tf_fn = tf.function(
        jax2tf.convert(apply, polymorphic_shapes=["(b, t)"], native_serialization=False,
                       enable_xla=False),
        input_signature=[tf.TensorSpec([None, None], tf.int32, name="input_ids")],
        autograph=False)
    path = os.path.join(OUT, "flax_jax2tf.onnx")
    tf2onnx.convert.from_function(tf_fn, input_signature=tf_fn.input_signature, opset=15,
                                  output_path=path)
    err, name = check_ort(path, lambda x: apply(jnp.asarray(x)), np.int32)
    return [entry("flax_jax2tf.onnx", "flax.linen nn.LayerNorm", "jax2tf + tf2onnx", 15, err,
                  name, "int32")]


# ---------------------------------------------------------------- Keras through tf2onnx
def keras_model():
    import tensorflow as tf
    import tf2onnx
    k = tf.keras
    w = weights(12)

    class Pos(k.layers.Layer):
        def build(self, shape):
            self.wpe = self.add_weight(name="wpe", shape=(T, D), initializer="zeros")

        def call(self, x):
            return x + self.wpe[None, :tf.shape(x)[1]]

    inp = k.Input((None,), dtype="int32", name="input_ids")
    x = Pos(name="wpe")(k.layers.Embedding(V, D, name="wte")(inp))
    dense = {}

    def lin(name, n, h):
        dense[name] = k.layers.Dense(n, name=name)
        return dense[name](h)

    lns = {}

    def ln(name, h):
        lns[name] = k.layers.LayerNormalization(epsilon=1e-5, name=name)
        return lns[name](h)

    for i in range(L):
        h = ln(f"ln{i}a", x)
        q, kk, v = (lin(f"b{i}_{n}", D, h) for n in "qkv")
        split = lambda z: tf.transpose(tf.reshape(z, [tf.shape(z)[0], -1, H, D // H]),
                                       [0, 2, 1, 3])
        q, kk, v = split(q), split(kk), split(v)
        a = tf.nn.softmax(tf.matmul(q, kk, transpose_b=True) / (D // H) ** 0.5, axis=-1)
        o = tf.transpose(tf.matmul(a, v), [0, 2, 1, 3])
        o = tf.reshape(o, [tf.shape(o)[0], -1, D])
        x = x + lin(f"b{i}_o", D, o)
        h = ln(f"ln{i}b", x)
        h = lin(f"b{i}_fc2", D, tf.nn.gelu(lin(f"b{i}_fc1", F, h), approximate=False))
        x = x + h
    x = ln(f"ln{L}a", x)
    out = lin("head", V, x)
    model = k.Model(inp, out)
    model.get_layer("wte").set_weights([w["wte"]])
    model.get_layer("wpe").set_weights([w["wpe"]])
    for name, layer in lns.items():
        layer.set_weights([w[name + "_g"], w[name + "_b"]])
    for name, layer in dense.items():
        layer.set_weights([w[name + "_w"], w[name + "_b"]] if name != "head"
                          else [w["head_w"], w["head_b"]])
    path = os.path.join(OUT, "keras_tf2onnx.onnx")
    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids")]
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=15, output_path=path)
    err, name = check_ort(path, lambda x: model(x, training=False).numpy(), np.int32)
    return [entry("keras_tf2onnx.onnx", "tf.keras layers.LayerNormalization", "tf2onnx", 15,
                  err, name, "int32")]


# ---------------------------------------------------------------- PaddlePaddle, paddle2onnx
def paddle_model():
    import paddle
    import paddle.nn as nn
    import paddle.nn.functional as Fn
    w = weights(13)

    class Block(nn.Layer):
        def __init__(self):
            super().__init__()
            self.ln_a, self.ln_b = nn.LayerNorm(D, epsilon=1e-5), nn.LayerNorm(D, epsilon=1e-5)
            self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
            self.fc1, self.fc2 = nn.Linear(D, F), nn.Linear(F, D)

        def forward(self, x):
            h = self.ln_a(x)
            sp = lambda z: z.reshape([0, 0, H, D // H]).transpose([0, 2, 1, 3])
            q, k, v = sp(self.q(h)), sp(self.k(h)), sp(self.v(h))
            a = Fn.softmax(paddle.matmul(q, k, transpose_y=True) / (D // H) ** 0.5, axis=-1)
            o = paddle.matmul(a, v).transpose([0, 2, 1, 3]).reshape([0, 0, D])
            x = x + self.o(o)
            return x + self.fc2(Fn.gelu(self.fc1(self.ln_b(x))))

    class Model(nn.Layer):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, D)
            self.wpe = self.create_parameter([T, D])
            self.blocks = nn.LayerList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(D, epsilon=1e-5)
            self.head = nn.Linear(D, V)

        def forward(self, ids):
            t = paddle.shape(ids)[1]
            x = self.wte(ids) + self.wpe[:t].unsqueeze(0)
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln_f(x))

    paddle.seed(0)
    m = Model()
    m.eval()
    sd = {"wte.weight": w["wte"], "wpe": w["wpe"], "ln_f.weight": w[f"ln{L}a_g"],
          "ln_f.bias": w[f"ln{L}a_b"], "head.weight": w["head_w"], "head.bias": w["head_b"]}
    for i in range(L):
        sd[f"blocks.{i}.ln_a.weight"], sd[f"blocks.{i}.ln_a.bias"] = w[f"ln{i}a_g"], w[f"ln{i}a_b"]
        sd[f"blocks.{i}.ln_b.weight"], sd[f"blocks.{i}.ln_b.bias"] = w[f"ln{i}b_g"], w[f"ln{i}b_b"]
        for n in ("q", "k", "v", "o", "fc1", "fc2"):
            sd[f"blocks.{i}.{n}.weight"] = w[f"b{i}_{n}_w"]
            sd[f"blocks.{i}.{n}.bias"] = w[f"b{i}_{n}_b"]
    m.set_state_dict({k: paddle.to_tensor(v) for k, v in sd.items()})
    base = os.path.join(OUT, "paddle_p2o")
    spec = [paddle.static.InputSpec([None, None], "int64", "input_ids")]
    paddle.onnx.export(m, base, input_spec=spec, opset_version=15)
    path = base + ".onnx"
    err, name = check_ort(path, lambda x: m(paddle.to_tensor(x)).numpy(), np.int64)
    return [entry("paddle_p2o.onnx", "paddle.nn.LayerNorm", "paddle.onnx.export (paddle2onnx)",
                  15, err, name, "int64")]


def entry(file, source, converter, opset, err, input_name, dtype):
    import onnx
    # the converters name the symbolic dims themselves (tf2onnx: unk__N): the sizes to verify
    # at, by the file's own names
    dims = [d.dim_param for d in
            onnx.load(os.path.join(OUT, file)).graph.input[0].type.tensor_type.shape.dim]
    return {"file": file, "source": source, "converter": converter, "opset": opset,
            "expect": "rewrite", "norms": 5, "centering": 0, "says": [SAYS[file]],
            "input": {"name": input_name, "dtype": dtype, "shape": [2, 8], "vocab": V},
            "dims": [dict(zip(dims, bt)) for bt in ((2, 8), (3, 16))],
            "max_rel_err_vs_framework": float(f"{err:.3g}")}


# what the rewrite's report must say of each file's LayerNorm form
SAYS = {"flax_jax2tf.onnx": "Flax/jax2tf", "keras_tf2onnx.onnx": "Keras/tf2onnx",
        "paddle_p2o.onnx": "decomposed LayerNorm"}

GROUPS = {"flax": flax_model, "keras": keras_model, "paddle": paddle_model}


def main():
    import importlib
    groups = sys.argv[1:] or list(GROUPS)
    mpath = os.path.join(OUT, "manifest.json")
    manifest = json.load(open(mpath)) if os.path.exists(mpath) else []
    for g in groups:
        for mod, want in REQUIREMENTS[g].items():
            have = getattr(importlib.import_module(mod), "__version__", "?")
            if have != want:
                print(f"warning: {mod} {have}, pinned {want}", file=sys.stderr)
        made = GROUPS[g]()
        names = {e["file"] for e in made}
        manifest = [e for e in manifest if e["file"] not in names] + made
        for e in made:
            print("wrote", e["file"], "rel err", e["max_rel_err_vs_framework"])
    manifest.sort(key=lambda e: e["file"])
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
