# 2026-12-07T20:32:50Z load before: 3.04 3.33 3.66
nice -n -10 target/release/onnx-normopt bench $SCRATCH/gpt2.onnx $SCRATCH/gpt2_rms_std.onnx $SCRATCH/gpt2_rms_ort.onnx $SCRATCH/gpt2_crms.onnx $SCRATCH/gpt2_crms_ort.onnx $SCRATCH/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --limit --runtime ort --runs 60 --warmup 3 --profile 5 --json 
# load after: 3.80 3.55 3.68
