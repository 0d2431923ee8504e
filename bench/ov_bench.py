#!/usr/bin/env python3
"""Time ONNX models side by side in OpenVINO (CPU), the way `onnx-normopt bench` does in
onnxruntime and tract: interleaved rounds in one process, medians, and the median with quartiles
of the per-round ratio to the first model, in wall time and in process CPU time (all of
OpenVINO's threads; less sensitive to other jobs on a shared machine); with --limit the last model is the no-norm limit and
the captured fraction (t_A - t_X) / (t_A - t_limit) is reported per round too.

  python3 bench/ov_bench.py A.onnx B.onnx C.onnx --label orig --label rms --label nonorm \\
      --limit --runs 40 --precision f32 --precision default --check

Pinned (a venv of its own, not onnx-normopt's .cache/pydeps):
  pip install openvino==2026.4.1 onnx==1.23.2 numpy==2.4.6

--precision f32 runs with INFERENCE_PRECISION_HINT=f32; "default" leaves the hint unset: the
CPU plugin's default (bf16 on CPUs with AVX512_BF16 or AMX, else f32; the precision used is
printed). --check compiles every model in f32 and compares its outputs with the first model's on
the same random inputs: max|B - A| / max|A| per output must be <= --tol (1e-5); a failure exits 1.
Models whose outputs differ by design (the no-norm limit) are skipped with --limit.
--layers prints the compiled (runtime) graph's layer types per model: which norms OpenVINO fused
(RMS, MVN) and what runs as separate Reduce/Eltwise subgraphs.
--profile N runs each model N more times with PERF_COUNT on, per precision, and reports the
executed layers' time per run by layer type: the norm layers' share (MVN, RMS, and the
Reduce/Eltwise/Math layers a decomposed norm leaves) is what the no-norm limit can save at most.
"""

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import openvino as ov

PINNED = {"openvino": "2026.4.1", "numpy": "2.4.6"}
# Layer types a norm compiles to (fused or decomposed); only a share of Reduce/Eltwise/Math
# belongs to norms, so the report lists them apart from MVN and RMS.
NORM_LAYERS = ("MVN", "RMS", "Reduce", "Eltwise", "Math", "Power")


def quartiles(xs):
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def make_inputs(model, seed, int_high, dims):
    """Random inputs for the model's parameters: floats ~ N(0, 1), integers in [0, int_high)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for p in model.inputs:
        name = p.get_any_name()
        shape = []
        for i, d in enumerate(p.get_partial_shape()):
            if d.is_static:
                shape.append(d.get_length())
            else:
                shape.append(dims.get(f"{name}:{i}", dims.get("*", 2)))
        et = p.get_element_type()
        if et.is_real():
            feeds[name] = rng.standard_normal(shape).astype(np.float32 if et == ov.Type.f32 else np.float16)
        else:
            feeds[name] = rng.integers(0, int_high, size=shape).astype(et.to_dtype())
    return feeds


def compile_model(core, path, precision, threads, perf_count=False):
    cfg = {"PERFORMANCE_HINT": "LATENCY"}
    if perf_count:
        cfg["PERF_COUNT"] = True
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = threads
    if precision != "default":
        cfg["INFERENCE_PRECISION_HINT"] = precision
    cm = core.compile_model(path, "CPU", cfg)
    hint = cm.get_property("INFERENCE_PRECISION_HINT")
    return cm, getattr(hint, "get_type_name", lambda: str(hint))()


def layer_types(cm):
    h = collections.Counter(op.get_rt_info()["layerType"].astype(str) for op in cm.get_runtime_model().get_ops())
    for k in ("Const", "Input", "Output"):
        h.pop(k, None)
    return dict(h.most_common())


def profile(core, path, precision, feeds, threads, runs):
    """Executed layers' real time per run (ms), summed by layer type, over `runs` runs."""
    cm, _ = compile_model(core, path, precision, threads, perf_count=True)
    req = cm.create_infer_request()
    for k, v in feeds.items():
        req.set_tensor(k, ov.Tensor(v))
    req.infer()  # warm-up, not counted
    per_type = collections.Counter()
    for _ in range(runs):
        req.infer()
        for info in req.profiling_info:
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                per_type[info.node_type] += info.real_time.total_seconds() * 1e3 / runs
    return {k: round(v, 4) for k, v in per_type.most_common()}


def outputs(cm, feeds):
    req = cm.create_infer_request()
    req.infer(feeds)
    return [np.array(req.get_output_tensor(i).data, dtype=np.float64) for i in range(len(cm.outputs))]


def check(core, paths, labels, feeds, threads, tol, skip_last):
    """Compare every model's f32 outputs with the first's; returns (rows, all_ok)."""
    ref_cm, _ = compile_model(core, paths[0], "f32", threads)
    ref = outputs(ref_cm, feeds)
    rows, ok = [], True
    upto = len(paths) - 1 if skip_last else len(paths)
    for path, label in zip(paths[1:upto], labels[1:upto]):
        cm, _ = compile_model(core, path, "f32", threads)
        got = outputs(cm, feeds)
        if len(got) != len(ref):
            rows.append({"label": label, "error": f"{len(got)} outputs, the original has {len(ref)}", "ok": False})
            ok = False
            continue
        worst = 0.0
        for a, b in zip(ref, got):
            if a.shape != b.shape:
                worst = float("inf")
                break
            scale = float(np.max(np.abs(a))) or 1.0
            worst = max(worst, float(np.max(np.abs(a - b))) / scale)
        good = worst <= tol
        ok &= good
        rows.append({"label": label, "rel_err": worst, "ok": good})
    return rows, ok


def bench(core, paths, labels, precision, feeds, runs, warmup, threads, limit):
    cms = []
    used = None
    for p in paths:
        cm, used = compile_model(core, p, precision, threads)
        cms.append(cm)
    reqs = [cm.create_infer_request() for cm in cms]
    for req, f in zip(reqs, feeds):
        for k, v in f.items():
            req.set_tensor(k, ov.Tensor(v))
    n = len(paths)
    times = [[] for _ in paths]
    cpu = [[] for _ in paths]
    for r in range(warmup + runs):
        # Rotate the order every round so that no model always runs right after the same one.
        for k in range(n):
            i = (k + r) % n
            c0, t0 = time.process_time(), time.perf_counter()
            reqs[i].infer()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if r >= warmup:
                times[i].append(dt)
                cpu[i].append(dc)
    rows = []
    for i, label in enumerate(labels):
        row = {
            "label": label,
            "model": paths[i],
            "median_ms": statistics.median(times[i]) * 1e3,
            "ratio": quartiles([t / t0 for t, t0 in zip(times[i], times[0])]),
            "cpu_median_ms": statistics.median(cpu[i]) * 1e3,
            "cpu_ratio": quartiles([t / t0 for t, t0 in zip(cpu[i], cpu[0]) if t0 > 0]),
            "runs_ms": [t * 1e3 for t in times[i]],
            "runs_cpu_ms": [t * 1e3 for t in cpu[i]],
        }
        if limit and 0 < i < n - 1:
            row["captured"] = captured(times, i)
            row["cpu_captured"] = captured(cpu, i)
        rows.append(row)
    return used, rows


def captured(times, i):
    """Per round (t_A - t_X) / (t_A - t_limit): quartiles."""
    cap = [(t0 - tx) / (t0 - tl) for t0, tx, tl in zip(times[0], times[i], times[-1]) if t0 != tl]
    return quartiles(cap) if cap else None


def fmt_q(q, nd=3):
    return f"{q[1]:.{nd}f} [{q[0]:.{nd}f}, {q[2]:.{nd}f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", action="append", choices=["f32", "default", "bf16", "f16"], help="repeatable (default: f32 and default)")
    ap.add_argument("--threads", type=int, default=0, help="INFERENCE_NUM_THREADS (default: the plugin's)")
    ap.add_argument("--limit", action="store_true", help="the last model is the no-norm limit")
    ap.add_argument("--check", action="store_true", help="compare outputs with the first model in f32 (exit 1 beyond --tol)")
    ap.add_argument("--check-only", action="store_true", help="--check without timing")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--layers", action="store_true", help="print the compiled graph's layer types per model")
    ap.add_argument("--profile", type=int, default=0, help="N profiled runs per model and precision (PERF_COUNT): ms per layer type")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--int-high", type=int, default=1000, help="integer inputs are drawn from [0, N)")
    ap.add_argument("--dim", action="append", default=[], help="NAME:AXIS=N (or *=N) for dynamic dimensions")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    labels = a.label + [os.path.splitext(os.path.basename(p))[0] for p in a.models[len(a.label):]]
    precisions = a.precision or ["f32", "default"]
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in a.dim)}

    for pkg, want in PINNED.items():
        have = ov.get_version().split("-")[0] if pkg == "openvino" else np.__version__
        if have != want:
            print(f"note: {pkg} {have}, the pinned version is {want}", file=sys.stderr)
    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    load_before = os.getloadavg()
    # Every model gets inputs made with the same seed: identical where the input shapes are
    # (the check needs that), and models of other input widths can still be timed side by side.
    feeds = [make_inputs(core.read_model(p), a.seed, a.int_high, dims) for p in a.models]
    result = {
        "openvino": ov.get_version(),
        "cpu": core.get_property("CPU", "FULL_DEVICE_NAME"),
        "capabilities": list(caps),
        "host": platform.node(),
        "load_before": load_before,
        "runs": a.runs,
        "warmup": a.warmup,
        "threads": a.threads or None,
        "command": " ".join(sys.argv),
    }
    print(f"OpenVINO {ov.get_version()}, {result['cpu']} ({', '.join(caps)}); load average {load_before[0]:.2f}")

    ok = True
    if a.check or a.check_only:
        rows, ok = check(core, a.models, labels, feeds[0], a.threads, a.tol, a.limit)
        result["check"] = rows
        for r in rows:
            what = r.get("error") or f"max|Δ|/max|ref| = {r['rel_err']:.2e}"
            print(f"check {r['label']}: {what} {'ok' if r['ok'] else f'FAILS (> {a.tol:g})'}")
    if a.layers:
        result["layers"] = {}
        for p, label in zip(a.models, labels):
            for prec in precisions:
                cm, used = compile_model(core, p, prec, a.threads)
                lt = layer_types(cm)
                result["layers"][f"{label}/{prec}"] = lt
                print(f"layers {label} ({prec} -> {used}): " + " ".join(f"{k}×{v}" for k, v in lt.items()))
    if a.profile and not a.check_only:
        result["profile"] = {}
        for p, label, f in zip(a.models, labels, feeds):
            for prec in precisions:
                prof = profile(core, p, prec, f, a.threads, a.profile)
                result["profile"][f"{label}/{prec}"] = prof
                total = sum(prof.values()) or 1.0
                norm = {k: v for k, v in prof.items() if k in NORM_LAYERS}
                print(f"profile {label} ({prec}): {total:.2f} ms/run in layers; norm-like "
                      + (" ".join(f"{k} {v:.2f}" for k, v in norm.items()) or "none"))
    if not a.check_only:
        result["tables"] = {}
        for prec in precisions:
            used, rows = bench(core, a.models, labels, prec, feeds, a.runs, a.warmup, a.threads, a.limit)
            result["tables"][prec] = {"inference_precision": used, "rows": rows}
            print(f"\nprecision {prec} (runs in {used}), {a.runs} interleaved rounds:")
            print(f"  {'model':<14} {'wall ms':>9}  {'wall ratio [p25, p75]':<24} {'captured':<20} "
                  f"{'CPU ms':>9}  {'CPU ratio [p25, p75]':<24} captured (CPU)")
            for r in rows:
                cap = fmt_q(r["captured"], 2) if r.get("captured") else ""
                ccap = fmt_q(r["cpu_captured"], 2) if r.get("cpu_captured") else ""
                print(f"  {r['label']:<14} {r['median_ms']:>9.3f}  {fmt_q(r['ratio']):<24} {cap:<20} "
                      f"{r['cpu_median_ms']:>9.3f}  {fmt_q(r['cpu_ratio']):<24} {ccap}")
    result["load_after"] = os.getloadavg()
    print(f"load average after: {result['load_after'][0]:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
