#!/usr/bin/env python3
"""Probe (BENCHMARKS.md, #24): the RMSNorm forms onnxruntime can run, one op over [ROWS, W]:
LayerNormalization, SimplifiedLayerNormalization (what the pass emits or onnxruntime fuses to),
and a ReduceSumSquare chain (ReduceSumSquare, Mul 1/W, Add eps, Sqrt, Reciprocal or Div, Mul),
checked against each other, 40 interleaved rounds of 100 calls, median µs per call.

  PYTHONPATH=.cache/pydeps python3 bench/probes/ort_rms_forms.py ROWS W THREADS   # e.g. 1576 192 1
"""
import onnx, numpy as np, onnxruntime as ort, time, sys
from onnx import helper as h, TensorProto as T, numpy_helper as nh
rows, W, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def sess(nodes, inits, opset=18):
    x = h.make_tensor_value_info('x', T.FLOAT, [rows, W]); y = h.make_tensor_value_info('y', T.FLOAT, [rows, W])
    m = h.make_model(h.make_graph(nodes, 'g', [x], [y], inits), opset_imports=[h.make_opsetid('', opset)])
    so = ort.SessionOptions(); so.intra_op_num_threads = threads
    return ort.InferenceSession(m.SerializeToString(), so, providers=['CPUExecutionProvider'])
g = nh.from_array(np.ones(W, np.float32), 'g'); b = nh.from_array(np.zeros(W, np.float32), 'b')
ax = nh.from_array(np.array([-1], np.int64), 'ax')
invd = nh.from_array(np.array(1.0 / W, np.float32), 'invd'); eps = nh.from_array(np.array(1e-5, np.float32), 'eps')
S = {
 'ln': sess([h.make_node('LayerNormalization', ['x', 'g', 'b'], ['y'], epsilon=1e-5)], [g, b]),
 'sln': sess([h.make_node('SimplifiedLayerNormalization', ['x', 'g'], ['y'], epsilon=1e-5)], [g]),
 'rss': sess([h.make_node('ReduceSumSquare', ['x', 'ax'], ['s']), h.make_node('Mul', ['s', 'invd'], ['m']),
              h.make_node('Add', ['m', 'eps'], ['a']), h.make_node('Sqrt', ['a'], ['r']), h.make_node('Reciprocal', ['r'], ['i']),
              h.make_node('Mul', ['x', 'i'], ['y'])], [ax, invd, eps]),
 'rss_div': sess([h.make_node('ReduceSumSquare', ['x', 'ax'], ['s']), h.make_node('Mul', ['s', 'invd'], ['m']),
              h.make_node('Add', ['m', 'eps'], ['a']), h.make_node('Sqrt', ['a'], ['r']),
              h.make_node('Div', ['x', 'r'], ['y'])], [ax, invd, eps]),
 'id': sess([h.make_node('Identity', ['x'], ['y'])], []),
}
x = np.random.randn(rows, W).astype(np.float32)
ref = S['sln'].run(None, {'x': x})[0]
for k in ('rss', 'rss_div'): print(k, 'maxdiff', np.abs(S[k].run(None, {'x': x})[0] - ref).max())
res = {k: [] for k in S}
for r in range(40):
    for k, s in S.items():
        t = time.perf_counter()
        for _ in range(100): s.run(None, {'x': x})
        res[k].append((time.perf_counter() - t) / 100 * 1e6)
print(rows, W, threads, {k: round(float(np.median(v)), 1) for k, v in res.items()})
