# 2026-11-27T22:39:07Z load before: 5.74 4.99 5.00
nice -n -10 target/release/normopt-bench-runner bench/models/op_128x768_ln.onnx bench/models/op_128x768_rms.onnx bench/models/op_128x768_rms-ort.onnx bench/models/op_128x768_rms23.onnx bench/models/op_128x768_rms-nomul.onnx bench/models/op_128x768_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 6.56 5.24 5.08
