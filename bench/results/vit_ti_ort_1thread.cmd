# 2026-12-07T20:26:34Z load before: 4.46 3.75 3.90
nice -n -10 target/release/onnx-normopt bench $SCRATCH/vit_ti.onnx $SCRATCH/vit_ti_rms_std.onnx $SCRATCH/vit_ti_rms_ort.onnx $SCRATCH/vit_ti_crms.onnx $SCRATCH/vit_ti_crms_ort.onnx $SCRATCH/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --limit --runtime ort --ort-threads 1 --runs 100 --warmup 3 --profile 5 --json 
# load after: 3.13 3.56 3.81
