# 2026-12-07T22:43:01Z load before: 1.00 1.11 1.32
nice -n -10 $OV_PYTHON bench/ov_bench.py $SCRATCH/vit_ti.onnx $SCRATCH/vit_ti_rms_std.onnx $SCRATCH/vit_ti_rms_ort.onnx $SCRATCH/vit_ti_crms.onnx $SCRATCH/vit_ti_crms_ort.onnx $SCRATCH/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --runs 100 --warmup 3 --limit --check --layers --profile 5 --json bench/results/vit_ti_openvino.json 
# load after: 1.90 1.46 1.43
