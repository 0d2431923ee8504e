# 2026-11-27T22:40:36Z load before: 6.58 5.60 5.23
nice -n -10 target/release/normopt-bench-runner bench/models/vit_ti.onnx bench/models/vit_ti_rms_std.onnx bench/models/vit_ti_rms_ort.onnx bench/models/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runs 50 --warmup 3 --profile 5 --ops --json 
# load after: 3.91 4.70 4.94
