# 2026-11-27T22:39:45Z load before: 6.75 5.37 5.13
nice -n -10 target/release/normopt-bench-runner bench/models/op_1576x192_ln.onnx bench/models/op_1576x192_rms.onnx bench/models/op_1576x192_rms-ort.onnx bench/models/op_1576x192_rms23.onnx bench/models/op_1576x192_rms-nomul.onnx bench/models/op_1576x192_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 7.24 5.69 5.25
