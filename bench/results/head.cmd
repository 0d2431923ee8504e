# 2026-11-27T23:11:45Z load before: 2.84 4.14 4.68
nice -n -10 target/release/onnx-normopt bench bench/models/head_none.onnx bench/models/head_after.onnx bench/models/head_before.onnx --label matmul --label matmul+bias_V --label add_beta_D+matmul --runs 100 --warmup 5 --profile 10 --json 
# load after: 3.50 4.09 4.61
