# 2026-12-07T22:46:10Z load before: 1.57 1.43 1.41
nice -n -10 target/release/onnx-normopt bench $SCRATCH/gpt2.onnx $SCRATCH/gpt2_rms_std.onnx $SCRATCH/gpt2_rms_ort.onnx $SCRATCH/gpt2_crms.onnx $SCRATCH/gpt2_crms_ort.onnx $SCRATCH/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --limit --runtime ort --runs 100 --warmup 3 --profile 5 --json 
# load after: 2.22 1.74 1.53
