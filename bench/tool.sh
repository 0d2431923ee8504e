#!/usr/bin/env bash
# The tool's own speed and memory on one model, side by side in one run:
#   cp of the model and its data file | onnx-normopt --target rmsnorm | --target crmsnorm |
#   the same two with --no-fsync (cp does not wait for the disk either) |
#   onnxruntime's Python transformer optimizer (python -m onnxruntime.transformers.optimizer,
#   the usual way to get fused/simplified norms in onnxruntime) on the same model.
# Each command runs REPEAT times (default 3) in rotation; wall time and peak RSS from
# /usr/bin/time. Page cache is warm (the model is read once first). Output: a text table on stdout.
#
#   bench/tool.sh MODEL.onnx [MODEL_TYPE]      (MODEL_TYPE for the optimizer, default gpt2)
#
# Needs: /usr/bin/time, a release build, onnxruntime's Python wheel (PYTHONPATH=.cache/pydeps
# after scripts/ort-lib.sh) for the optimizer row (skipped when it cannot be imported).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLI=$ROOT/target/release/onnx-normopt
MODEL=$1; TYPE=${2:-gpt2}; REPEAT=${REPEAT:-3}
SCRATCH=${SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/normopt-tool.XXXXXX")}
mkdir -p "$SCRATCH"
files=("$MODEL"); [[ -f "$MODEL.data" ]] && files+=("$MODEL.data")
cat "${files[@]}" > /dev/null
bytes=$(du -cb "${files[@]}" | tail -1 | cut -f1)
echo "# $(date -u +%FT%TZ) model $(basename "$MODEL"): $((bytes >> 20)) MiB; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
have_opt=0  # NO_OPTIMIZER=1 skips the optimizer row (it needs ~7x the model in RAM)
[[ -z ${NO_OPTIMIZER:-} ]] && python3 -c "import onnxruntime.transformers.optimizer" 2>/dev/null && have_opt=1
run() { # label command...
    local label=$1; shift
    rm -rf "$SCRATCH/out"; mkdir -p "$SCRATCH/out"
    /usr/bin/time -o "$SCRATCH/time" -f "%e %M" "$@" > /dev/null 2> "$SCRATCH/err"
    local rc=$? t
    t=$(tail -1 "$SCRATCH/time")
    printf '%-14s %8s s %10s kB  exit %s\n' "$label" ${t:-? ?} "$rc"
    [[ $rc != 0 ]] && sed 's/^/    /' "$SCRATCH/err" | tail -3
    sync
}
for i in $(seq "$REPEAT"); do
    run cp cp "${files[@]}" "$SCRATCH/out/"
    run rmsnorm "$CLI" "$MODEL" -o "$SCRATCH/out/o.onnx" --no-verify -q
    run crmsnorm "$CLI" "$MODEL" -o "$SCRATCH/out/o.onnx" --target crmsnorm --no-verify -q
    # cp does not wait for the disk; neither do these two.
    run rms-nofsync "$CLI" "$MODEL" -o "$SCRATCH/out/o.onnx" --no-verify -q --no-fsync
    run crms-nofsync "$CLI" "$MODEL" -o "$SCRATCH/out/o.onnx" --target crmsnorm --no-verify -q --no-fsync
    if [[ $have_opt == 1 ]]; then
        run ort-optimizer python3 -m onnxruntime.transformers.optimizer --input "$MODEL" \
            --output "$SCRATCH/out/o.onnx" --model_type "$TYPE" --use_external_data_format
    fi
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$SCRATCH/out"
