# 2026-12-07T22:30:20Z load before: 1.22 1.01 1.39
nice -n -10 target/release/onnx-normopt bench $SCRATCH/op_128x768_ln.onnx $SCRATCH/op_128x768_rms.onnx $SCRATCH/op_128x768_rms-ort.onnx $SCRATCH/op_128x768_rms23.onnx $SCRATCH/op_128x768_rms-nomul.onnx $SCRATCH/op_128x768_crms.onnx $SCRATCH/op_128x768_crms-z.onnx $SCRATCH/op_128x768_slice.onnx $SCRATCH/op_128x768_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label crms --label crms-z --label slice --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 1.20 1.01 1.39
