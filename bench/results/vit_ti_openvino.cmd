# 2026-12-07T20:28:49Z load before: 3.13 3.56 3.81
nice -n -10 $OV_PYTHON bench/ov_bench.py $SCRATCH/vit_ti.onnx $SCRATCH/vit_ti_rms_std.onnx $SCRATCH/vit_ti_rms_ort.onnx $SCRATCH/vit_ti_crms.onnx $SCRATCH/vit_ti_crms_ort.onnx $SCRATCH/vit_ti_nonorm.onnx --label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --runs 60 --warmup 3 --limit --check --layers --json bench/results/vit_ti_openvino.json 
# load after: 3.23 3.39 3.69
