# 2026-11-27T22:39:28Z load before: 6.44 5.23 5.08
nice -n -10 target/release/normopt-bench-runner bench/models/op_197x384_ln.onnx bench/models/op_197x384_rms.onnx bench/models/op_197x384_rms-ort.onnx bench/models/op_197x384_rms23.onnx bench/models/op_197x384_rms-nomul.onnx bench/models/op_197x384_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 6.98 5.39 5.13
