#!/usr/bin/env python3
"""Do the rewritten models run in OpenVINO and agree with the original there?

For every model that is expected to be rewritten (testdata/manifest.json, or a corpus folder's
expect.json), rewrite it with the CLI in each output form OpenVINO can load (--target rmsnorm and
crmsnorm, --emit standard and onnxruntime; not the custom op), run the original and the rewrite
in OpenVINO (CPU, INFERENCE_PRECISION_HINT=f32) on the same inputs and compare every output:
max|B - A| / max|A| <= 1e-5 for f32 models (1e-2 for models with f16/bf16 weights or outputs,
which compute in half precision somewhere). Exit 1 on any failure.

  python3 bench/ov_check.py --bin target/release/onnx-normopt                 # testdata/models
  python3 bench/ov_check.py --bin target/release/onnx-normopt --corpus ../shared/corpus-deployed
  python3 bench/ov_check.py --bin ... gpt2_dynamo18_fp32 vit_ts14_fp32         # some models

Not part of CI (it needs OpenVINO): pinned like bench/ov_bench.py in a venv of its own,
  pip install openvino==2026.4.1 onnx==1.23.2 numpy==2.4.6
Inputs: the corpus's recorded feeds (NAME.input.npz / .npy) where there are some, else from the
manifest (token ids below the vocabulary, floats N(0, 1), dynamic axes 2 × 8). A model whose
original OpenVINO cannot load or run is reported and skipped (that is not the rewrite's doing).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import openvino as ov

FORMS = [("rmsnorm", "standard"), ("rmsnorm", "onnxruntime"), ("crmsnorm", "standard"), ("crmsnorm", "onnxruntime")]


def testdata_models(root):
    for e in json.load(open(os.path.join(root, "manifest.json"))):
        if e.get("expect") != "rewrite":
            continue
        yield os.path.join(root, e["file"]), ("testdata", e)


def corpus_models(root):
    for name, e in sorted(json.load(open(os.path.join(root, "expect.json"))).items()):
        if e.get("expect") != "rewrite":
            continue
        yield os.path.join(root, name + ".onnx"), ("corpus", e)


def feeds_for(path, kind, entry, model, seed):
    rng = np.random.default_rng(seed)
    base = path[: -len(".onnx")]
    if os.path.exists(base + ".input.npz"):
        return dict(np.load(base + ".input.npz"))
    if os.path.exists(base + ".input.npy"):
        return {model.inputs[0].get_any_name(): np.load(base + ".input.npy")}
    spec = entry.get("input") or {}
    feeds = {}
    for p in model.inputs:
        name = p.get_any_name()
        shape = spec.get("shape") if name == spec.get("name") else None
        if shape is None:
            shape = [d.get_length() if d.is_static else (2 if i == 0 else 8) for i, d in enumerate(p.get_partial_shape())]
        et = p.get_element_type()
        if et.is_real():
            feeds[name] = rng.standard_normal(shape).astype(et.to_dtype())
        else:
            feeds[name] = rng.integers(0, spec.get("vocab", 16), size=shape).astype(et.to_dtype())
    return feeds


def run(core, path, feeds):
    cm = core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    req = cm.create_infer_request()
    req.infer({k: v for k, v in feeds.items() if any(k in i.get_names() for i in cm.inputs)})
    return [(o.get_element_type(), np.array(req.get_output_tensor(i).data, dtype=np.float64)) for i, o in enumerate(cm.outputs)]


def half_weights(path):
    m = onnx.load(path, load_external_data=False)
    return any(t.data_type in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16) for t in m.graph.initializer)


def compare(ref, got, tol32, half):
    if len(ref) != len(got):
        return None, f"{len(got)} outputs, the original has {len(ref)}"
    worst, limit = 0.0, (max(tol32, 1e-2) if half else tol32)
    for (et, a), (_, b) in zip(ref, got):
        if a.shape != b.shape:
            return None, f"output shape {b.shape}, the original's is {a.shape}"
        if a.size == 0:
            continue
        if et != ov.Type.f32:
            limit = max(limit, 1e-2)
        scale = float(np.max(np.abs(a))) or 1.0
        worst = max(worst, float(np.max(np.abs(a - b))) / scale)
    return worst, limit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the onnx-normopt binary")
    ap.add_argument("--corpus", help="a folder with expect.json and recorded feeds (default: testdata)")
    ap.add_argument("--tol", type=float, default=1e-5, help="f32 tolerance (max|Δ|/max|ref|)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("names", nargs="*", help="model file stems (default: all)")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    models = corpus_models(a.corpus) if a.corpus else testdata_models(os.path.join(root, "testdata"))
    core = ov.Core()
    fails, checked, skipped = [], 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for path, (kind, entry) in models:
            stem = os.path.basename(path)[: -len(".onnx")]
            if a.names and stem not in a.names:
                continue
            try:
                feeds = feeds_for(path, kind, entry, core.read_model(path), a.seed)
                ref = run(core, path, feeds)
            except Exception as e:  # OpenVINO cannot load or run the original
                skipped.append(stem)
                print(f"{stem}: original not run in OpenVINO ({str(e).splitlines()[0][:160]}): skipped")
                continue
            half = half_weights(path)
            cells = []
            for target, emit in FORMS:
                out = os.path.join(tmp, f"{stem}_{target}_{emit}.onnx")
                cmd = [a.bin, path, "-o", out, "--target", target, "--emit", emit, "--no-verify", "--quiet"]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    fails.append(f"{stem} {target}/{emit}: the rewrite failed (exit {r.returncode}): {r.stderr.strip()[:300]}")
                    cells.append(f"{target}/{emit} REWRITE FAILED")
                    continue
                try:
                    worst, limit = compare(ref, run(core, out, feeds), a.tol, half)
                except Exception as e:
                    worst, limit = None, f"OpenVINO cannot run it: {str(e).splitlines()[0][:200]}"
                checked += 1
                if worst is None or worst > limit:
                    what = limit if worst is None else f"{worst:.1e} > {limit:g}"
                    fails.append(f"{stem} {target}/{emit}: {what}")
                    cells.append(f"{target}/{emit} FAIL")
                else:
                    cells.append(f"{target}/{emit} {worst:.1e}")
            print(f"{stem}: " + ", ".join(cells))
    print(f"\n{checked} rewrites compared in OpenVINO {ov.get_version()}, {len(fails)} failed, {len(skipped)} originals skipped")
    for f in fails:
        print("FAIL " + f)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
