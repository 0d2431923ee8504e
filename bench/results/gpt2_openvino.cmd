# 2026-12-07T20:40:50Z load before: 1.59 2.53 3.22
nice -n -10 $OV_PYTHON bench/ov_bench.py $SCRATCH/gpt2.onnx $SCRATCH/gpt2_rms_std.onnx $SCRATCH/gpt2_rms_ort.onnx $SCRATCH/gpt2_crms.onnx $SCRATCH/gpt2_crms_ort.onnx $SCRATCH/gpt2_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --runs 40 --warmup 3 --limit --check --layers --json bench/results/gpt2_openvino.json 
# load after: 3.18 2.97 3.26
