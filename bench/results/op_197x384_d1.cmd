# 2026-12-07T22:30:53Z load before: 1.70 1.14 1.42
nice -n -10 target/release/onnx-normopt bench $SCRATCH/op_197x384_d1_ln.onnx $SCRATCH/op_197x384_d1_rms.onnx $SCRATCH/op_197x384_d1_rms-ort.onnx $SCRATCH/op_197x384_d1_identity.onnx --label ln --label rms --label rms-ort --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 1.65 1.13 1.42
