# 2026-12-07T20:19:41Z load before: 4.49 3.87 4.10
nice -n -10 target/release/onnx-normopt bench $SCRATCH/vit_ti.onnx $SCRATCH/vit_ti_rms_std.onnx $SCRATCH/vit_ti_rms_ort.onnx $SCRATCH/vit_ti_crms.onnx $SCRATCH/vit_ti_crms_ort.onnx $SCRATCH/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --limit --runtime ort --runs 100 --warmup 3 --profile 5 --json 
# load after: 3.64 3.72 4.01
