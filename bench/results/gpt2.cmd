# 2026-11-27T23:33:45Z load before: 1.88 3.25 4.00
nice -n -10 target/release/onnx-normopt bench bench/models/gpt2.onnx bench/models/gpt2_rms_std.onnx bench/models/gpt2_rms_ort.onnx bench/models/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label nonorm --limit --runs 200 --warmup 3 --profile 5 --ops --json 
# load after: 1.00 1.61 2.88
