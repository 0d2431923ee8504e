# 2026-11-28T01:46:27Z load before: 1.05 1.58 2.50
nice -n -10 target/release/onnx-normopt bench bench/models/vit_ti.onnx bench/models/vit_ti_rms_std.onnx bench/models/vit_ti_rms_ort.onnx bench/models/vit_ti_crms.onnx bench/models/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label nonorm --limit --runtime ort --ort-threads 1 --runs 60 --warmup 3 --profile 3 --json 
# load after: 1.01 1.43 2.37
