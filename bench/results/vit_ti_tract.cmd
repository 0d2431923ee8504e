# 2026-12-07T20:21:52Z load before: 3.64 3.72 4.01
nice -n -10 target/release/onnx-normopt bench $SCRATCH/vit_ti.onnx $SCRATCH/vit_ti_rms_std.onnx $SCRATCH/vit_ti_rms_ort.onnx $SCRATCH/vit_ti_crms.onnx $SCRATCH/vit_ti_crms_ort.onnx $SCRATCH/vit_ti_crms_custom.onnx $SCRATCH/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label crms_custom --label nonorm --limit --runtime tract --runs 100 --warmup 3 --profile 5 --ops --json 
# load after: 4.46 3.75 3.90
