# 2026-12-07T22:31:49Z load before: 1.70 1.26 1.44
nice -n -10 target/release/onnx-normopt bench $SCRATCH/vit_ti.onnx $SCRATCH/vit_ti_rms_std.onnx $SCRATCH/vit_ti_rms_ort.onnx $SCRATCH/vit_ti_crms.onnx $SCRATCH/vit_ti_crms_ort.onnx $SCRATCH/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --limit --runtime ort --runs 150 --warmup 3 --profile 5 --json 
# load after: 2.52 1.75 1.61
