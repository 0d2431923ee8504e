# 2026-11-28T01:43:35Z load before: 2.03 2.06 2.82
nice -n -10 target/release/onnx-normopt bench bench/models/vit_ti.onnx bench/models/vit_ti_rms_std.onnx bench/models/vit_ti_rms_ort.onnx bench/models/vit_ti_crms.onnx bench/models/vit_ti_crms_custom.onnx bench/models/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_custom --label nonorm --limit --runtime tract --runs 60 --warmup 3 --profile 3 --ops --json 
# load after: 1.05 1.58 2.50
