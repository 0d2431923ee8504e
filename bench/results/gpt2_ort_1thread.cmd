# 2026-11-28T01:53:32Z load before: 1.02 1.26 2.01
nice -n -10 target/release/onnx-normopt bench bench/models/gpt2.onnx bench/models/gpt2_rms_std.onnx bench/models/gpt2_rms_ort.onnx bench/models/gpt2_crms.onnx bench/models/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label nonorm --limit --runtime ort --ort-threads 1 --runs 60 --warmup 3 --profile 3 --json 
# load after: 1.04 1.19 1.89
