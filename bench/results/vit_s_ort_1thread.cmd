# 2026-11-27T22:57:06Z load before: 4.00 4.52 4.80
nice -n -10 target/release/normopt-bench-runner bench/models/vit_s.onnx bench/models/vit_s_rms_std.onnx bench/models/vit_s_rms_ort.onnx bench/models/vit_s_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runtime ort --ort-threads 1 --runs 50 --warmup 3 --profile 5 --json 
# load after: 4.05 4.29 4.65
