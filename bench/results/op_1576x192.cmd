# 2026-11-28T01:40:10Z load before: 1.43 2.22 3.06
nice -n -10 target/release/onnx-normopt bench bench/models/op_1576x192_ln.onnx bench/models/op_1576x192_rms.onnx bench/models/op_1576x192_rms-ort.onnx bench/models/op_1576x192_rms23.onnx bench/models/op_1576x192_rms-nomul.onnx bench/models/op_1576x192_crms.onnx bench/models/op_1576x192_slice.onnx bench/models/op_1576x192_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label crms --label slice --label identity --runs 1000 --warmup 100 --profile 200 --ops --json 
# load after: 1.81 2.28 3.07
