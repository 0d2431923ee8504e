# 2026-11-27T23:01:04Z load before: 4.14 4.28 4.63
nice -n -10 target/release/normopt-bench-runner bench/models/gpt2.onnx bench/models/gpt2_rms_std.onnx bench/models/gpt2_rms_ort.onnx bench/models/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runs 50 --warmup 3 --profile 5 --ops --json 
# load after: 6.20 5.76 5.22
