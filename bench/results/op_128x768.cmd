# 2026-11-28T01:39:59Z load before: 1.51 2.26 3.08
nice -n -10 target/release/onnx-normopt bench bench/models/op_128x768_ln.onnx bench/models/op_128x768_rms.onnx bench/models/op_128x768_rms-ort.onnx bench/models/op_128x768_rms23.onnx bench/models/op_128x768_rms-nomul.onnx bench/models/op_128x768_crms.onnx bench/models/op_128x768_slice.onnx bench/models/op_128x768_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label crms --label slice --label identity --runs 1000 --warmup 100 --profile 200 --ops --json 
# load after: 1.51 2.26 3.08
