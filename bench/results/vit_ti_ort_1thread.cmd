# 2026-11-27T23:29:12Z load before: 3.55 3.60 4.27
nice -n -10 target/release/onnx-normopt bench bench/models/vit_ti.onnx bench/models/vit_ti_rms_std.onnx bench/models/vit_ti_rms_ort.onnx bench/models/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runtime ort --ort-threads 1 --runs 200 --warmup 3 --profile 5 --json 
# load after: 2.73 3.57 4.13
