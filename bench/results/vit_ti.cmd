# 2026-11-27T21:52:17Z load before: 6.10 5.95 4.96
nice -n -10 target/release/normopt-bench-runner bench/models/vit_ti.onnx bench/models/vit_ti_rms_std.onnx bench/models/vit_ti_rms_ort.onnx bench/models/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runs 50 --warmup 3 --profile 5 --ops --json 
# load after: 4.30 4.90 4.78
