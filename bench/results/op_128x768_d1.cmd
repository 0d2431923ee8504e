# 2026-12-07T22:30:30Z load before: 1.26 1.02 1.39
nice -n -10 target/release/onnx-normopt bench $SCRATCH/op_128x768_d1_ln.onnx $SCRATCH/op_128x768_d1_rms.onnx $SCRATCH/op_128x768_d1_rms-ort.onnx $SCRATCH/op_128x768_d1_identity.onnx --label ln --label rms --label rms-ort --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 1.26 1.02 1.39
