# 2026-12-07T22:48:15Z load before: 2.22 1.74 1.53
nice -n -10 target/release/onnx-normopt bench $SCRATCH/gpt2.onnx $SCRATCH/gpt2_rms_std.onnx $SCRATCH/gpt2_rms_ort.onnx $SCRATCH/gpt2_crms.onnx $SCRATCH/gpt2_crms_ort.onnx $SCRATCH/gpt2_crms_custom.onnx $SCRATCH/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label crms_custom --label nonorm --limit --runtime tract --runs 100 --warmup 3 --profile 5 --ops --json 
# load after: 1.07 1.31 1.40
