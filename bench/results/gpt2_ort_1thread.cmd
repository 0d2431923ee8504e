# 2026-12-07T22:53:15Z load before: 1.07 1.31 1.40
nice -n -10 target/release/onnx-normopt bench $SCRATCH/gpt2.onnx $SCRATCH/gpt2_rms_std.onnx $SCRATCH/gpt2_rms_ort.onnx $SCRATCH/gpt2_crms.onnx $SCRATCH/gpt2_crms_ort.onnx $SCRATCH/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --limit --runtime ort --ort-threads 1 --runs 100 --warmup 3 --profile 5 --json 
# load after: 1.00 1.16 1.32
