# 2026-11-27T23:14:04Z load before: 3.24 3.93 4.54
nice -n -10 target/release/onnx-normopt bench bench/models/vit_ti.onnx bench/models/vit_ti_rms_std.onnx bench/models/vit_ti_rms_ort.onnx bench/models/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runs 200 --warmup 3 --profile 5 --ops --json 
# load after: 3.55 3.60 4.27
