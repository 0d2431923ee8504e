# 2026-12-07T22:30:43Z load before: 1.22 1.02 1.39
nice -n -10 target/release/onnx-normopt bench $SCRATCH/op_197x384_ln.onnx $SCRATCH/op_197x384_rms.onnx $SCRATCH/op_197x384_rms-ort.onnx $SCRATCH/op_197x384_rms23.onnx $SCRATCH/op_197x384_rms-nomul.onnx $SCRATCH/op_197x384_crms.onnx $SCRATCH/op_197x384_crms-z.onnx $SCRATCH/op_197x384_slice.onnx $SCRATCH/op_197x384_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label crms --label crms-z --label slice --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 1.77 1.14 1.42
