# 2026-12-07T20:38:56Z load before: 2.48 3.05 3.46
nice -n -10 target/release/onnx-normopt bench $SCRATCH/gpt2.onnx $SCRATCH/gpt2_rms_std.onnx $SCRATCH/gpt2_rms_ort.onnx $SCRATCH/gpt2_crms.onnx $SCRATCH/gpt2_crms_ort.onnx $SCRATCH/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --limit --runtime ort --ort-threads 1 --runs 60 --warmup 3 --profile 5 --json 
# load after: 1.59 2.53 3.22
