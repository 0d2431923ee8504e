# 2026-11-27T22:44:13Z load before: 3.91 4.70 4.94
nice -n -10 target/release/normopt-bench-runner bench/models/vit_ti.onnx bench/models/vit_ti_rms_std.onnx bench/models/vit_ti_rms_ort.onnx bench/models/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runtime ort --ort-threads 1 --runs 50 --warmup 3 --profile 5 --json 
# load after: 3.74 4.51 4.86
