# 2026-12-07T22:31:23Z load before: 1.90 1.23 1.44
nice -n -10 target/release/onnx-normopt bench $SCRATCH/op_1576x192_d1_ln.onnx $SCRATCH/op_1576x192_d1_rms.onnx $SCRATCH/op_1576x192_d1_rms-ort.onnx $SCRATCH/op_1576x192_d1_identity.onnx --label ln --label rms --label rms-ort --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 1.98 1.28 1.45
