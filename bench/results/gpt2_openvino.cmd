# 2026-12-07T22:56:14Z load before: 1.00 1.16 1.32
nice -n -10 $OV_PYTHON bench/ov_bench.py $SCRATCH/gpt2.onnx $SCRATCH/gpt2_rms_std.onnx $SCRATCH/gpt2_rms_ort.onnx $SCRATCH/gpt2_crms.onnx $SCRATCH/gpt2_crms_ort.onnx $SCRATCH/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --runs 60 --warmup 3 --limit --check --layers --profile 5 --json bench/results/gpt2_openvino.json 
# load after: 1.99 1.52 1.43
