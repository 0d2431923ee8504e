# 2026-11-28T01:41:51Z load before: 1.60 2.13 2.95
nice -n -10 target/release/onnx-normopt bench bench/models/head_none.onnx bench/models/head_after.onnx bench/models/head_before.onnx --label matmul --label matmul+bias_V --label add_beta_D+matmul --runtime ort --ort-threads 1 --runs 100 --warmup 5 --profile 10 --json 
# load after: 1.33 2.01 2.87
