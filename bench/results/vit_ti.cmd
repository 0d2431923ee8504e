# 2026-11-28T01:42:41Z load before: 1.34 1.97 2.85
nice -n -10 target/release/onnx-normopt bench bench/models/vit_ti.onnx bench/models/vit_ti_rms_std.onnx bench/models/vit_ti_rms_ort.onnx bench/models/vit_ti_crms.onnx bench/models/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label nonorm --limit --runtime ort --runs 60 --warmup 3 --profile 3 --json 
# load after: 2.03 2.06 2.82
