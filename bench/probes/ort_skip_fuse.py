#!/usr/bin/env python3
"""Probe (BENCHMARKS.md, #24): fuse each residual Add into the SimplifiedLayerNormalization that
reads it, as com.microsoft:SkipSimplifiedLayerNormalization (output 3 = the sum, for the Add's
other readers), optionally with the writer's bias Add as the op's bias input (third argument 1).
Run on a `--emit onnxruntime` model, then time it against the original:

  PYTHONPATH=.cache/pydeps python3 bench/probes/ort_skip_fuse.py M_rms_ort.onnx M_skip.onnx 0
  target/release/onnx-normopt bench M.onnx M_rms_ort.onnx M_skip.onnx M_nonorm.onnx \
      --limit --runtime ort --ort-threads 1 --runs 40 --profile 5
"""
import onnx, sys
from onnx import helper
src, dst, use_bias = sys.argv[1], sys.argv[2], sys.argv[3] == '1'
m = onnx.load(src)
g = m.graph
prod = {o: n for n in g.node for o in n.output}
inits = {i.name for i in g.initializer}
cons = {}
for n in g.node:
    for i in n.input: cons.setdefault(i, []).append(n)
remove = set(); new_for = {}
for n in g.node:
    if n.op_type != 'SimplifiedLayerNormalization': continue
    add = prod.get(n.input[0])
    if add is None or add.op_type != 'Add': continue
    a, b = add.input
    eps = [x for x in n.attribute if x.name == 'epsilon']
    inputs = [a, b, n.input[1]]
    # optional bias fusion: b = Add(MatMul_out, bias_init) consumed only by this Add
    pb = prod.get(b)
    if use_bias and pb is not None and pb.op_type == 'Add' and len(cons[b]) == 1:
        x, y = pb.input
        if y in inits:
            inputs = [a, x, n.input[1], y]; remove.add(id(pb))
    sk = helper.make_node('SkipSimplifiedLayerNormalization', inputs, [n.output[0], '', '', add.output[0]],
                          name=n.name + '/skip', domain='com.microsoft')
    sk.attribute.extend(eps)
    remove.add(id(add)); new_for[id(n)] = sk
nodes = []
for n in g.node:
    if id(n) in remove: continue
    nodes.append(new_for.get(id(n), n))
del g.node[:]; g.node.extend(nodes)
if not any(o.domain == 'com.microsoft' for o in m.opset_import):
    m.opset_import.append(helper.make_opsetid('com.microsoft', 1))
onnx.save(m, dst, save_as_external_data=True, location=dst.split('/')[-1] + '.data')
print('fused', len(new_for), 'bias', sum(1 for s in new_for.values() if len(s.input) == 4))
