# 2026-11-28T01:40:05Z load before: 1.47 2.24 3.07
nice -n -10 target/release/onnx-normopt bench bench/models/op_197x384_ln.onnx bench/models/op_197x384_rms.onnx bench/models/op_197x384_rms-ort.onnx bench/models/op_197x384_rms23.onnx bench/models/op_197x384_rms-nomul.onnx bench/models/op_197x384_crms.onnx bench/models/op_197x384_slice.onnx bench/models/op_197x384_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label crms --label slice --label identity --runs 1000 --warmup 100 --profile 200 --ops --json 
# load after: 1.43 2.22 3.06
