# 2026-11-27T22:45:52Z load before: 4.10 4.49 4.83
nice -n -10 target/release/normopt-bench-runner bench/models/vit_s.onnx bench/models/vit_s_rms_std.onnx bench/models/vit_s_rms_ort.onnx bench/models/vit_s_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runs 50 --warmup 3 --profile 5 --ops --json 
# load after: 4.00 4.52 4.80
