# 2026-11-27T23:06:51Z load before: 6.20 5.76 5.22
nice -n -10 target/release/normopt-bench-runner bench/models/gpt2.onnx bench/models/gpt2_rms_std.onnx bench/models/gpt2_rms_ort.onnx bench/models/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runtime ort --ort-threads 1 --runs 50 --warmup 3 --profile 5 --json 
# load after: 4.60 5.36 5.12
