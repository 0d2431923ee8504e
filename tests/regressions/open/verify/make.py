#!/usr/bin/env python3
"""Repro models of the open verifier finding "huge declared input → allocation abort"
(see ../README.md). Needs the `onnx` package; run from anywhere:

    python3 tests/regressions/open/verify/make.py            # writes the files beside this script

- huge_input_identity.onnx (committed): Identity on a float input declared [2^20, 2^20];
  `onnx-normopt verify M M` aborts (SIGABRT, "memory allocation of 4398046511104 bytes failed").
- gpt2_huge_input.onnx (not committed, 300 KB): testdata's GPT-2 with input_ids declared
  [65536, 65536]; the default `onnx-normopt M -o OUT` aborts in verification and leaves
  `.OUT.PID.N.staging` behind.
"""
import os

import onnx
from onnx import TensorProto, helper

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "../../../.."))

x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1 << 20, 1 << 20])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="id")], "g", [x], [y])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], producer_name="make.py")
m.ir_version = 8
onnx.save(m, os.path.join(here, "huge_input_identity.onnx"))

m = onnx.load(os.path.join(root, "testdata/models/gpt2_dynamo18_fp32.onnx"))
for d in m.graph.input[0].type.tensor_type.shape.dim:
    d.Clear()
    d.dim_value = 1 << 16
onnx.save(m, os.path.join(here, "gpt2_huge_input.onnx"))
