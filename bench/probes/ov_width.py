#!/usr/bin/env python3
"""Probe (BENCHMARKS.md, #24): does an odd stream width cost OpenVINO anything? Times a chain of
six ViT-Ti-like blocks (RMSNorm pattern -> FC D->768 -> ReLU -> FC 768->D -> residual Add) over
[1576, D] for D = 192 and 191 (and without the norm), interleaved, in f32 and bf16.

  $OV_PYTHON bench/probes/ov_width.py       # openvino==2026.4.1, numpy (bench/ov_bench.py's venv)
"""
import openvino as ov, numpy as np, time
from openvino import opset13 as ops
core = ov.Core()
def vit_block(M, D, layers, rms):
    # the rewritten ViT's block shape: x -> RMS(x) -> FC(D->4D) -> relu -> FC(4D->D) -> add
    x = ops.parameter([M, D], np.float32, name='x'); h = x
    for i in range(layers):
        if rms:
            ms = ops.reduce_mean(ops.multiply(h, h), ops.constant(np.array([-1])), True)
            n = ops.divide(h, ops.sqrt(ops.add(ms, ops.constant(np.float32(1e-5)))))
        else:
            n = h
        y = ops.matmul(n, ops.constant(np.random.randn(D, 4 * 192).astype(np.float32) * 0.05), False, False)
        h = ops.add(h, ops.matmul(ops.relu(y), ops.constant(np.random.randn(4 * 192, D).astype(np.float32) * 0.05), False, False))
    return ov.Model([h], [x])
for prec in ['f32', 'bf16']:
    cms = {}
    for D in [192, 191]:
        for rms in [True, False]:
            cms[(D, rms)] = core.compile_model(vit_block(1576, D, 6, rms), 'CPU', {'INFERENCE_PRECISION_HINT': prec, 'PERFORMANCE_HINT': 'LATENCY'})
    ts = {k: [] for k in cms}
    xs = {D: np.random.randn(1576, D).astype(np.float32) for D in (192, 191)}
    reqs = {k: cm.create_infer_request() for k, cm in cms.items()}
    for r in range(60):
        for k, req in reqs.items():
            t = time.perf_counter(); req.infer({'x': xs[k[0]]}); ts[k].append(time.perf_counter() - t)
    print(prec, {('D%d' % k[0]) + ('+rms' if k[1] else ''): round(np.median(v) * 1e3, 3) for k, v in ts.items()})
