# 2026-11-28T01:48:30Z load before: 1.00 1.38 2.32
nice -n -10 target/release/onnx-normopt bench bench/models/gpt2.onnx bench/models/gpt2_rms_std.onnx bench/models/gpt2_rms_ort.onnx bench/models/gpt2_crms.onnx bench/models/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label nonorm --limit --runtime ort --runs 60 --warmup 3 --profile 3 --json 
# load after: 1.72 1.54 2.28
