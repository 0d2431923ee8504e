# 2026-11-27T21:50:40Z load before: 4.70 5.59 4.74
nice -n -10 target/release/normopt-bench-runner bench/models/op_128x768_ln.onnx bench/models/op_128x768_rms.onnx bench/models/op_128x768_rms-ort.onnx bench/models/op_128x768_rms23.onnx bench/models/op_128x768_rms-nomul.onnx bench/models/op_128x768_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 5.34 5.69 4.78
