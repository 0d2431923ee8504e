# 2026-11-28T01:49:58Z load before: 1.72 1.54 2.28
nice -n -10 target/release/onnx-normopt bench bench/models/gpt2.onnx bench/models/gpt2_rms_std.onnx bench/models/gpt2_rms_ort.onnx bench/models/gpt2_crms.onnx bench/models/gpt2_crms_custom.onnx bench/models/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_custom --label nonorm --limit --runtime tract --runs 60 --warmup 3 --profile 3 --ops --json 
# load after: 1.02 1.26 2.01
