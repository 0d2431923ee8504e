# 2026-11-27T23:13:18Z load before: 3.50 4.09 4.61
nice -n -10 target/release/onnx-normopt bench bench/models/head_none.onnx bench/models/head_after.onnx bench/models/head_before.onnx --label matmul --label matmul+bias_V --label add_beta_D+matmul --runtime ort --ort-threads 1 --runs 100 --warmup 5 --profile 10 --json 
# load after: 3.28 3.97 4.55
