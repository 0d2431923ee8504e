# 2026-11-27T21:50:57Z load before: 5.31 5.68 4.79
nice -n -10 target/release/normopt-bench-runner bench/models/op_197x384_ln.onnx bench/models/op_197x384_rms.onnx bench/models/op_197x384_rms-ort.onnx bench/models/op_197x384_rms23.onnx bench/models/op_197x384_rms-nomul.onnx bench/models/op_197x384_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 5.48 5.70 4.80
