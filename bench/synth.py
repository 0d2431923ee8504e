#!/usr/bin/env python3
"""Synthesise Pre-LN transformer ONNX models (random, non-trivial weights) for benchmarks.

Only numpy and onnx are needed (no PyTorch). Tested with numpy 2.4.6, onnx 1.23.2
(onnxruntime 1.32.0 runs the results).

Kinds
-----
vit   ViT-shaped encoder: patch Conv stem (pixel_values [B,3,224,224] -> 196 patches + CLS = 197
      tokens) or, with --stem tokens, a float input [B,S,D]; learned position embedding; L Pre-LN
      blocks; final LN; classifier on the CLS token. Defaults: ViT-Ti (D 192, 3 heads).
gpt2  GPT-2-shaped decoder: int64 input_ids [B,S]; token + position embedding (Gather); L Pre-LN
      blocks with causal attention (fused QKV MatMul + Split, additive causal mask); final LN;
      LM head MatMul to the vocabulary.
norm  One normalisation op over a float input [R, D] (op-level benchmarks); --norm picks which:
      ln (LayerNormalization, or decomposed at opset < 17), rms (the decomposed RMSNorm chain the
      rewriter emits: Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul by ones), rms-nomul (the same
      without the Mul by ones), rms-ort (SimplifiedLayerNormalization), rms23
      (RMSNormalization, opset 23), identity; on the first D-1 columns: crms (CRMSNorm in the
      paper's coordinates, two reductions), crms-z (CRMSNorm in the orthonormal basis: an RMSNorm
      chain over D-1, what the rewrite writes), crms-zl, crms-cat (experiments), slice.
head  Just an LM head [B,S,D] x [D,V] (--batch 1, --seq 128, --d 768, --vocab 50257) with
      --head-bias: none (MatMul), after (MatMul + Add of a [V] bias: what folding the final
      norm's β into a bias-free LM head produces), before (Add of a [D] β, then MatMul: β kept
      on the norm output instead).

Blocks: h = LN1(x); q,k,v = h Wq/Wk/Wv (+b) (ViT: three MatMuls; GPT-2: one MatMul + Split);
softmax(q k^T / sqrt(dh) [+ causal mask]) v; x += h_attn Wo + bo; h = LN2(x);
x += GELU_erf(h W1 + b1) W2 + b2 (MLP width 4D).

LayerNorm form: opset 17/18 -> LayerNormalization; opset 14 -> the decomposed torch.onnx
(TorchScript) form ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add.

--no-norm replaces every LayerNorm by Identity: the "no normalisation" physical limit of what
removing (or cheapening) normalisation can save. It computes something else, of course; all other
weights are identical to the model without --no-norm (same seed). The residual-branch output
weights are scaled by --branch-scale (default 1/sqrt(2L), GPT-2's init) so that even without
normalisation the activations stay in a normal float range: with unit-scale branches the stream
grows to ~1e3 over 12 layers, attention saturates, and softmax/MatMul hit underflow slow paths
(observed: onnxruntime 23% *slower* without norms), which would make the "limit" meaningless.

Examples
--------
  python3 bench/synth.py --kind vit --d 192 --heads 3 -o /tmp/vit_ti.onnx
  python3 bench/synth.py --kind vit --d 384 --heads 6 --no-norm -o /tmp/vit_s_nonorm.onnx
  python3 bench/synth.py --kind gpt2 --external-data -o /tmp/gpt2.onnx
  python3 bench/synth.py --kind norm --rows 1576 --d 192 --norm rms -o /tmp/rms.onnx
"""

import argparse
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class G:
    """A tiny graph builder: nodes, initializers, unique names."""

    def __init__(self, opset, seed, data=None):
        # data: (open binary file, its name beside the model) to stream large weights into as
        # they are made (external data without holding the model in memory).
        self.data = data
        self.opset = opset
        self.nodes = []
        self.inits = []
        self.names = set()
        self.rng = np.random.default_rng(seed)
        self.ln_count = 0

    def name(self, base):
        n, k = base, 1
        while n in self.names:
            k += 1
            n = f"{base}_{k}"
        self.names.add(n)
        return n

    def const(self, base, arr):
        n = self.name(base)
        arr = np.ascontiguousarray(np.asarray(arr))
        if self.data is not None and arr.nbytes >= 1024:
            f, loc = self.data
            off = f.tell()
            f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
            t = TensorProto(name=n, dims=list(arr.shape), data_type=helper.np_dtype_to_tensor_dtype(arr.dtype))
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", loc), ("offset", str(off)), ("length", str(arr.nbytes))):
                e = t.external_data.add()
                e.key, e.value = k, v
            self.inits.append(t)
        else:
            self.inits.append(numpy_helper.from_array(arr, n))
        return n

    def f32(self, base, arr):
        return self.const(base, np.asarray(arr, dtype=np.float32))

    def i64(self, base, arr):
        return self.const(base, np.asarray(arr, dtype=np.int64))

    def node(self, op, inputs, base=None, n_out=1, domain=None, **attrs):
        base = base or op
        outs = [self.name(f"{base}_out{i}" if n_out > 1 else f"{base}_out") for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(base), domain=domain, **attrs))
        return outs if n_out > 1 else outs[0]

    # ---- weights -------------------------------------------------------------------------
    def weight(self, base, shape, scale):
        return self.f32(base, self.rng.normal(0.0, scale, size=shape))

    # ---- ops -----------------------------------------------------------------------------
    def reduce_mean_last(self, x, base):
        if self.opset >= 18:
            return self.node("ReduceMean", [x, self.i64(f"{base}/axes", [-1])], f"{base}/ReduceMean", keepdims=1)
        return self.node("ReduceMean", [x], f"{base}/ReduceMean", axes=[-1], keepdims=1)

    def layer_norm(self, x, d, eps, prefix, no_norm):
        self.ln_count += 1
        # Draw γ, β even when they are dropped, so --no-norm keeps every other weight identical.
        gv, bv = 1.0 + 0.1 * self.rng.normal(size=d), 0.1 * self.rng.normal(size=d)
        if no_norm:
            return self.node("Identity", [x], f"{prefix}/Identity")
        g, b = self.f32(f"{prefix}.weight", gv), self.f32(f"{prefix}.bias", bv)
        if self.opset >= 17:
            return self.node("LayerNormalization", [x, g, b], f"{prefix}/LayerNormalization", axis=-1, epsilon=eps)
        m = self.reduce_mean_last(x, f"{prefix}/mean")
        c = self.node("Sub", [x, m], f"{prefix}/Sub")
        sq = self.node("Pow", [c, self.f32(f"{prefix}/two", 2.0)], f"{prefix}/Pow")
        v = self.reduce_mean_last(sq, f"{prefix}/var")
        a = self.node("Add", [v, self.f32(f"{prefix}/eps", eps)], f"{prefix}/Add")
        s = self.node("Sqrt", [a], f"{prefix}/Sqrt")
        dv = self.node("Div", [c, s], f"{prefix}/Div")
        mu = self.node("Mul", [dv, g], f"{prefix}/Mul")
        return self.node("Add", [mu, b], f"{prefix}/Add_1")

    def linear(self, x, din, dout, prefix, scale=None):
        scale = scale if scale is not None else 1.0 / math.sqrt(din)
        w = self.weight(f"{prefix}.weight", (din, dout), scale)
        b = self.f32(f"{prefix}.bias", 0.02 * self.rng.normal(size=dout))
        y = self.node("MatMul", [x, w], f"{prefix}/MatMul")
        return self.node("Add", [y, b], f"{prefix}/Add")

    def gelu_erf(self, x, prefix):
        d = self.node("Div", [x, self.f32(f"{prefix}/sqrt2", math.sqrt(2.0))], f"{prefix}/Div")
        e = self.node("Erf", [d], f"{prefix}/Erf")
        a = self.node("Add", [e, self.f32(f"{prefix}/one", 1.0)], f"{prefix}/Add")
        m = self.node("Mul", [x, a], f"{prefix}/Mul")
        return self.node("Mul", [m, self.f32(f"{prefix}/half", 0.5)], f"{prefix}/Mul_1")

    def heads_split(self, x, b, s, h, dh, prefix, transpose_k=False):
        r = self.node("Reshape", [x, self.i64(f"{prefix}/shape", [b, s, h, dh])], f"{prefix}/Reshape")
        perm = [0, 2, 3, 1] if transpose_k else [0, 2, 1, 3]
        return self.node("Transpose", [r], f"{prefix}/Transpose", perm=perm)

    def attention(self, x, a):
        b, s, d, h = a.batch, a.seq, a.d, a.heads
        dh = d // h
        p = a.prefix_attn
        if a.kind == "gpt2":
            qkv = self.linear(x, d, 3 * d, f"{p}.c_attn")
            q, k, v = self.node("Split", [qkv, self.i64(f"{p}/split", [d, d, d])], f"{p}/Split", n_out=3, axis=-1)
        else:
            q = self.linear(x, d, d, f"{p}.query")
            k = self.linear(x, d, d, f"{p}.key")
            v = self.linear(x, d, d, f"{p}.value")
        q = self.heads_split(q, b, s, h, dh, f"{p}/q")
        kt = self.heads_split(k, b, s, h, dh, f"{p}/k", transpose_k=True)
        v = self.heads_split(v, b, s, h, dh, f"{p}/v")
        sc = self.node("MatMul", [q, kt], f"{p}/MatMul_qk")
        sc = self.node("Div", [sc, self.f32(f"{p}/scale", math.sqrt(dh))], f"{p}/Div")
        if a.kind == "gpt2":
            mask = np.triu(np.full((s, s), -1e4, dtype=np.float32), k=1).reshape(1, 1, s, s)
            sc = self.node("Add", [sc, self.f32(f"{p}/causal_mask", mask)], f"{p}/Add_mask")
        pr = self.node("Softmax", [sc], f"{p}/Softmax", axis=-1)
        ctx = self.node("MatMul", [pr, v], f"{p}/MatMul_pv")
        ctx = self.node("Transpose", [ctx], f"{p}/Transpose_out", perm=[0, 2, 1, 3])
        ctx = self.node("Reshape", [ctx, self.i64(f"{p}/shape_out", [b, s, d])], f"{p}/Reshape_out")
        return self.linear(ctx, d, d, f"{p}.output", scale=a.branch_scale / math.sqrt(d))

    def block(self, x, i, a):
        d = a.d
        h = self.layer_norm(x, d, a.eps, f"h.{i}.ln_1", a.no_norm)
        a.prefix_attn = f"h.{i}.attn"
        x = self.node("Add", [x, self.attention(h, a)], f"h.{i}/Add_attn")
        h = self.layer_norm(x, d, a.eps, f"h.{i}.ln_2", a.no_norm)
        f = self.linear(h, d, a.mlp * d, f"h.{i}.mlp.fc1")
        f = self.gelu_erf(f, f"h.{i}.mlp.gelu")
        f = self.linear(f, a.mlp * d, d, f"h.{i}.mlp.fc2", scale=a.branch_scale / math.sqrt(a.mlp * d))
        return self.node("Add", [x, f], f"h.{i}/Add_mlp")


def build_transformer(a):
    g = G(a.opset, a.seed, getattr(a, 'data', None))
    d = a.d
    if a.kind == "vit":
        if a.stem == "conv":
            side = a.image
            npatch = (side // a.patch) ** 2
            a.seq = npatch + 1
            inp = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [a.batch, 3, side, side])
            w = g.weight("patch_embed.weight", (d, 3, a.patch, a.patch), 1.0 / math.sqrt(3 * a.patch * a.patch))
            bias = g.f32("patch_embed.bias", 0.02 * g.rng.normal(size=d))
            c = g.node("Conv", ["pixel_values", w, bias], "patch_embed/Conv", kernel_shape=[a.patch, a.patch], strides=[a.patch, a.patch])
            c = g.node("Reshape", [c, g.i64("patch_embed/shape", [a.batch, d, npatch])], "patch_embed/Reshape")
            c = g.node("Transpose", [c], "patch_embed/Transpose", perm=[0, 2, 1])
            cls = g.f32("cls_token", 0.5 + g.rng.normal(size=(1, 1, d)))
            cls = g.node("Expand", [cls, g.i64("cls/shape", [a.batch, 1, d])], "cls/Expand")
            x = g.node("Concat", [cls, c], "embed/Concat", axis=1)
        else:
            inp = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [a.batch, a.seq, d])
            x = "tokens"
        pos = g.f32("pos_embed", 0.3 + 0.5 * g.rng.normal(size=(1, a.seq, d)))
        x = g.node("Add", [x, pos], "embed/Add_pos")
    else:
        inp = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [a.batch, a.seq])
        wte = g.weight("wte.weight", (a.vocab, d), 0.5)
        wpe = g.f32("wpe.weight", 0.2 + 0.3 * g.rng.normal(size=(a.seq, d)))
        t = g.node("Gather", [wte, "input_ids"], "wte/Gather", axis=0)
        x = g.node("Add", [t, wpe], "embed/Add_pos")
    for i in range(a.layers):
        x = g.block(x, i, a)
    x = g.layer_norm(x, d, a.eps, "ln_f", a.no_norm)
    if a.kind == "vit":
        cls = g.node("Gather", [x, g.i64("head/cls_index", 0)], "head/Gather", axis=1)
        y = g.linear(cls, d, a.classes, "head")
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [a.batch, a.classes])
    else:
        w = g.weight("lm_head.weight", (d, a.vocab), 1.0 / math.sqrt(d))
        y = g.node("MatMul", [x, w], "lm_head/MatMul")
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [a.batch, a.seq, a.vocab])
    g.nodes.append(helper.make_node("Identity", [y], ["logits"], name="output"))
    graph = helper.make_graph(g.nodes, f"synth_{a.kind}", [inp], [out], initializer=g.inits)
    return graph, g


def build_norm(a):
    """One normalisation op over [rows, d]."""
    opset = 23 if a.norm == "rms23" else a.opset
    a.opset = opset
    g = G(opset, a.seed)
    d = a.d
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [a.rows, d])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [a.rows, d])
    extra = []
    if a.norm == "ln":
        y = g.layer_norm("x", d, a.eps, "ln", False)
    elif a.norm == "identity":
        y = g.node("Identity", ["x"], "id")
    elif a.norm in ("rms", "rms-nomul"):
        # Exactly the chain passes/emit.rs writes at opset < 23 (γ folded: a Mul by ones).
        sq = g.node("Pow", ["x", g.f32("two", 2.0)], "rms/Pow")
        ms = g.reduce_mean_last(sq, "rms")
        ad = g.node("Add", [ms, g.f32("epsilon", a.eps)], "rms/Add")
        sr = g.node("Sqrt", [ad], "rms/Sqrt")
        y = g.node("Div", ["x", sr], "rms/Div")
        if a.norm == "rms":
            y = g.node("Mul", [y, g.f32("ones", np.ones(d))], "rms/Mul")
    elif a.norm in ("crms", "crms-cat", "crms-z", "crms-zl", "slice"):
        # CRMSNorm over the compressed width d-1 ("crms": the paper's coordinates, the chain
        # passes/emit.rs wrote before the orthonormal basis; "crms-z": the chain it writes now), on
        # the first d-1 columns of the input so that every op model takes the same input; "slice"
        # is that Slice alone (subtract it to get the CRMSNorm ops' own time).
        x = g.node("Slice", ["x", g.i64("starts", [0]), g.i64("ends", [d - 1]), g.i64("axes", [-1])], "crms/Slice")
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [a.rows, d - 1])
        y = x
        if a.norm == "crms-cat":
            # Experiment: decompress, onnxruntime's fused RMSNorm over D, compress again.
            ax = g.i64("crms/axes", [-1])
            s = g.node("ReduceSum", [x, ax], "crms/ReduceSum", keepdims=1)
            ng = g.node("Neg", [s], "crms/Neg")
            full = g.node("Concat", [x, ng], "crms/Concat", axis=-1)
            r = g.node("SimplifiedLayerNormalization", [full, g.f32("ones", np.ones(d))], "crms/SLN", axis=-1, epsilon=a.eps, stash_type=1)
            y = g.node("Slice", [r, g.i64("starts2", [0]), g.i64("ends2", [d - 1]), g.i64("axes2", [-1])], "crms/Slice_back")
        if a.norm in ("crms-z", "crms-zl"):
            # CRMSNorm in an orthonormal basis of the zero-mean subspace (z = x~ + c*sum(x~),
            # c = 1/(sqrt(D)+1), so sum(z^2) = sum(x~^2) + (sum x~)^2): a plain RMSNorm chain over
            # D-1 with eps*D/(D-1), what passes/emit.rs writes (the scale sqrt(D/(D-1)) is folded
            # into the readers, the Mul is by ones). "crms-z" takes the input as z already (the
            # stream kept in that basis by the writers, as the rewrite does); "crms-zl" computes
            # z from x~ in the graph (one ReduceSum more: the alternative not taken).
            if a.norm == "crms-zl":
                s = g.node("ReduceSum", [x, g.i64("crms/axes", [-1])], "crms/ReduceSum", keepdims=1)
                cs = g.node("Mul", [s, g.f32("crms/c", 1.0 / (math.sqrt(d) + 1.0))], "crms/Mul_c")
                x = g.node("Add", [x, cs], "crms/Add_z")
            sq = g.node("Pow", [x, g.f32("two", 2.0)], "crms/Pow")
            ms = g.reduce_mean_last(sq, "crms")
            ad = g.node("Add", [ms, g.f32("epsilon", a.eps * d / (d - 1))], "crms/Add")
            sr = g.node("Sqrt", [ad], "crms/Sqrt")
            y = g.node("Div", [x, sr], "crms/Div")
            y = g.node("Mul", [y, g.f32("ones", np.ones(d - 1))], "crms/Mul")
        if a.norm == "crms":
            ax = g.i64("crms/axes", [-1])
            sq = g.node("Mul", [x, x], "crms/Mul_sq")
            s1 = g.node("ReduceSum", [sq, ax], "crms/ReduceSum_sq", keepdims=1)
            s = g.node("ReduceSum", [x, ax], "crms/ReduceSum", keepdims=1)
            s2 = g.node("Mul", [s, s], "crms/Mul_s")
            tot = g.node("Add", [s1, s2], "crms/Add_tot")
            ms = g.node("Mul", [tot, g.f32("crms/inv_width", 1.0 / d)], "crms/Mul_inv")
            ad = g.node("Add", [ms, g.f32("crms/epsilon", a.eps)], "crms/Add_eps")
            sr = g.node("Sqrt", [ad], "crms/Sqrt")
            y = g.node("Div", [x, sr], "crms/Div")
    elif a.norm == "rms-ort":
        y = g.node("SimplifiedLayerNormalization", ["x", g.f32("ones", np.ones(d))], "rms/SLN", axis=-1, epsilon=a.eps, stash_type=1)
    elif a.norm == "rms23":
        y = g.node("RMSNormalization", ["x", g.f32("ones", np.ones(d))], "rms/RMSNormalization", axis=-1, epsilon=a.eps, stash_type=1)
    else:
        raise SystemExit(f"unknown --norm {a.norm}")
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="output"))
    graph = helper.make_graph(g.nodes, f"synth_norm_{a.norm}", [inp], [out], initializer=g.inits)
    return graph, g, extra


def build_head(a):
    """An LM head, with the final norm's β folded after it, kept before it, or absent."""
    g = G(a.opset, a.seed)
    d, v = a.d, a.vocab
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [a.batch, a.seq, d])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [a.batch, a.seq, v])
    w = g.weight("lm_head.weight", (d, v), 1.0 / math.sqrt(d))
    x = "x"
    if a.head_bias == "before":
        x = g.node("Add", [x, g.f32("ln_f.bias", 0.1 * g.rng.normal(size=d))], "ln_f/Add")
    y = g.node("MatMul", [x, w], "lm_head/MatMul")
    if a.head_bias == "after":
        y = g.node("Add", [y, g.f32("lm_head.bias", 0.1 * g.rng.normal(size=v))], "lm_head/Add")
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="output"))
    return helper.make_graph(g.nodes, f"synth_head_{a.head_bias}", [inp], [out], initializer=g.inits), g


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=["vit", "gpt2", "norm", "head"], required=True)
    p.add_argument("--d", type=int, help="model width (vit 192, gpt2 768, norm 768)")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, help="attention heads (default D/64)")
    p.add_argument("--mlp", type=int, default=4, help="MLP width multiplier")
    p.add_argument("--seq", type=int, help="sequence length (vit --stem tokens 197, gpt2 128)")
    p.add_argument("--batch", type=int, help="batch (vit 8, gpt2 1)")
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--stem", choices=["conv", "tokens"], default="conv", help="vit input: image + patch Conv, or [B,S,D] floats")
    p.add_argument("--image", type=int, default=224)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--eps", type=float, help="LayerNorm epsilon (vit 1e-6, gpt2/norm 1e-5)")
    p.add_argument("--rows", type=int, default=128, help="norm: rows of the [rows, D] input")
    p.add_argument("--norm", default="ln", choices=["ln", "rms", "rms-nomul", "rms-ort", "rms23", "crms", "crms-cat", "crms-z", "crms-zl", "slice", "identity"], help="norm: which op")
    p.add_argument("--head-bias", default="none", choices=["none", "after", "before"], help="head: where β goes")
    p.add_argument("--opset", type=int, default=18, choices=[14, 17, 18])
    p.add_argument("--no-norm", action="store_true", help="replace every LayerNorm by Identity")
    p.add_argument("--branch-scale", type=float, help="scale of the residual-branch output weights (attention "
                   "output, fc2), default 1/sqrt(2·layers) as GPT-2's init: keeps the --no-norm model's "
                   "activations in a normal float range (no overflow/underflow slow paths)")
    p.add_argument("--external-data", action="store_true", help="weights in OUT.data next to the model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    a = p.parse_args()

    if a.kind == "norm":
        a.d = a.d or 768
        a.eps = a.eps if a.eps is not None else 1e-5
        graph, g, _ = build_norm(a)
    elif a.kind == "head":
        a.d, a.batch, a.seq = a.d or 768, a.batch or 1, a.seq or 128
        graph, g = build_head(a)
    else:
        a.d = a.d or (192 if a.kind == "vit" else 768)
        a.heads = a.heads or max(1, a.d // 64)
        if a.d % a.heads:
            raise SystemExit("--d must be a multiple of --heads")
        a.batch = a.batch or (8 if a.kind == "vit" else 1)
        a.seq = a.seq or (197 if a.kind == "vit" else 128)
        a.eps = a.eps if a.eps is not None else (1e-6 if a.kind == "vit" else 1e-5)
        a.branch_scale = a.branch_scale if a.branch_scale is not None else 1.0 / math.sqrt(2 * a.layers)
        datafile = None
        if a.external_data:
            # Stream the weights into OUT.data as they are made: models of many GB need no
            # more memory than their largest tensor.
            loc = os.path.basename(a.output) + ".data"
            os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
            datafile = open(os.path.join(os.path.dirname(os.path.abspath(a.output)), loc), "wb")
            a.data = (datafile, loc)
        graph, g = build_transformer(a)
        if datafile is not None:
            datafile.close()

    opsets = [helper.make_opsetid("", a.opset)]
    if a.kind == "norm" and a.norm == "rms-ort":
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    ir = 11 if a.opset >= 23 else 8
    model = helper.make_model(graph, opset_imports=opsets, ir_version=ir, producer_name="onnx-normopt bench/synth.py")
    streamed = getattr(a, "data", None) is not None
    if not (a.kind == "norm" and a.norm in ("rms-ort", "crms-cat")) and not streamed:
        onnx.checker.check_model(model, full_check=False)
    out = a.output
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if streamed:
        onnx.save_model(model, out)
        onnx.checker.check_model(out, full_check=False)
    elif a.external_data:
        loc = os.path.basename(out) + ".data"
        if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(out)), loc)):
            os.remove(os.path.join(os.path.dirname(os.path.abspath(out)), loc))
        onnx.save_model(model, out, save_as_external_data=True, all_tensors_to_one_file=True, location=loc, size_threshold=1024)
    else:
        onnx.save_model(model, out)
    nparams = sum(int(np.prod(t.dims)) for t in graph.initializer)
    print(f"{out}: {a.kind} opset {a.opset}, {len(graph.node)} nodes, {nparams / 1e6:.1f} M weights, "
          f"{g.ln_count} LayerNorm{' (as Identity)' if a.no_norm else ''}", file=sys.stderr)


if __name__ == "__main__":
    main()
