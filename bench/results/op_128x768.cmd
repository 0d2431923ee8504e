# 2026-12-07T20:17:56Z load before: 2.37 3.17 3.92
nice -n -10 target/release/onnx-normopt bench $SCRATCH/op_128x768_ln.onnx $SCRATCH/op_128x768_rms.onnx $SCRATCH/op_128x768_rms-ort.onnx $SCRATCH/op_128x768_rms23.onnx $SCRATCH/op_128x768_rms-nomul.onnx $SCRATCH/op_128x768_crms.onnx $SCRATCH/op_128x768_crms-z.onnx $SCRATCH/op_128x768_slice.onnx $SCRATCH/op_128x768_identity.onnx --label ln --label rms --label rms-ort --label rms23 --label rms-nomul --label crms --label crms-z --label slice --label identity --runs 2000 --warmup 200 --profile 200 --ops --json 
# load after: 3.90 3.48 4.01
