#!/usr/bin/env bash
# Regenerate every benchmark model into a scratch folder and rerun every row of BENCHMARKS.md.
#
#   bench/run_all.sh                 # everything (about 1 h on 2 cores)
#   ONLY="ops vit_ti" bench/run_all.sh
#
# Environment: SCRATCH (models, default bench/models, git-ignored), RESULTS (default
# bench/results), RUNS_VIT_TI / RUNS_VIT_S / RUNS_GPT2 (timed rounds of the whole-model rows,
# default 200 / 50 / 200), WARMUP (default 3), OP_RUNS / OP_WARMUP (single-op
# models, default 2000 / 200), PROFILE (profiled runs per model, default 5), ONLY (subset of:
# ops head vit_ti vit_s gpt2), GPT2_LAYERS (default 12), NICE (e.g. -10: run the timing at a higher
# scheduling priority than concurrent builds on a shared machine; needs root), OV_PYTHON (a python
# with openvino==2026.4.1, numpy and onnx: the OpenVINO rows by bench/ov_bench.py; default
# /work/venvs/perf/bin/python when it exists, else the OpenVINO rows are skipped with a note),
# OV_RUNS_VIT_TI / OV_RUNS_GPT2 (OpenVINO rounds, default the onnxruntime/tract ones), BUILD=0
# (use target/release/onnx-normopt as it is, e.g. the one `cargo test --release` built).
# Needs: python3 with numpy + onnx (bench/synth.py), onnxruntime's Python wheel (its
# libonnxruntime is what the benchmark loads), a release build of the crate.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
SCRATCH=${SCRATCH:-$HERE/models}
RESULTS=${RESULTS:-$HERE/results}
RUNS_VIT_TI=${RUNS_VIT_TI:-200}
RUNS_VIT_S=${RUNS_VIT_S:-50}
RUNS_GPT2=${RUNS_GPT2:-200}
WARMUP=${WARMUP:-3}
OP_RUNS=${OP_RUNS:-2000}
OP_WARMUP=${OP_WARMUP:-200}
PROFILE=${PROFILE:-5}
ONLY=${ONLY:-ops head vit_ti vit_s gpt2}
GPT2_LAYERS=${GPT2_LAYERS:-12}
NICE=${NICE:-0}
OV_PYTHON=${OV_PYTHON:-/work/venvs/perf/bin/python}
mkdir -p "$SCRATCH" "$RESULTS"
if ! "$OV_PYTHON" -c "import openvino" 2>/dev/null; then
    echo "note: no OpenVINO ($OV_PYTHON cannot import openvino): the OpenVINO rows are skipped" >&2
    OV_PYTHON=
fi

CLI=$ROOT/target/release/onnx-normopt
if [[ ${BUILD:-1} != 0 ]]; then
    (cd "$ROOT" && cargo build --release --quiet) || echo "warning: cargo build failed; using the existing binary" >&2
fi
BENCH=("$CLI" bench)
SYNTH=(python3 "$HERE/synth.py")

wants() { [[ " $ONLY " == *" $1 "* ]]; }

# bench NAME ARGS...: run the benchmark, keep its JSON and the exact command.
bench() {
    local name=$1; shift
    local cmd=("${BENCH[@]}" "$@" --json)
    [[ $NICE != 0 ]] && cmd=(nice -n "$NICE" "${cmd[@]}")
    echo "+ ${cmd[*]}" >&2
    {
        echo "# $(date -u +%FT%TZ) load before: $(cut -d' ' -f1-3 /proc/loadavg)"
        printf '%q ' "${cmd[@]}" | sed "s#$ROOT/##g; s#$SCRATCH/#\$SCRATCH/#g"
        echo
    } > "$RESULTS/$name.cmd"
    "${cmd[@]}" > "$RESULTS/$name.json"
    echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS/$name.cmd"
}

# ov_bench NAME RUNS MODELS... -- LABELS...: the OpenVINO rows (f32 and the CPU's default
# precision), with the agreement check, JSON and exact command kept like bench()'s.
ov_bench() {
    local name=$1 runs=$2; shift 2
    local cmd=("$OV_PYTHON" "$HERE/ov_bench.py" "$@" --runs "$runs" --warmup "$WARMUP" --limit --check --layers --profile "$PROFILE" --json "$RESULTS/$name.json")
    [[ $NICE != 0 ]] && cmd=(nice -n "$NICE" "${cmd[@]}")
    echo "+ ${cmd[*]}" >&2
    {
        echo "# $(date -u +%FT%TZ) load before: $(cut -d' ' -f1-3 /proc/loadavg)"
        printf '%q ' "${cmd[@]}" | sed "s#$ROOT/##g; s#$SCRATCH/#\$SCRATCH/#g; s#$OV_PYTHON#\$OV_PYTHON#"
        echo
    } > "$RESULTS/$name.cmd"
    "${cmd[@]}" > "$RESULTS/$name.txt"
    echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS/$name.cmd"
}

# model NAME RUNS OV_RUNS SYNTH-ARGS...: original + --no-norm limit + the rewrites (RMSNorm and
# CRMSNorm, each in the standard and the onnxruntime form; CRMSNorm's custom op for tract),
# benchmarked in onnxruntime, tract and OpenVINO.
model() {
    local name=$1 RUNS=$2 OV_RUNS=$3; shift 3
    local verify=()
    "${SYNTH[@]}" "$@" -o "$SCRATCH/$name.onnx"
    "${SYNTH[@]}" "$@" --no-norm -o "$SCRATCH/${name}_nonorm.onnx"
    [[ " $* " == *" --external-data "* ]] && verify=(--no-verify)
    "$CLI" "$SCRATCH/$name.onnx" -o "$SCRATCH/${name}_rms_std.onnx" --emit standard "${verify[@]}" --report "$RESULTS/${name}_rewrite_std.json"
    "$CLI" "$SCRATCH/$name.onnx" -o "$SCRATCH/${name}_rms_ort.onnx" --emit onnxruntime "${verify[@]}" --report "$RESULTS/${name}_rewrite_ort.json"
    "$CLI" "$SCRATCH/$name.onnx" -o "$SCRATCH/${name}_crms.onnx" --target crmsnorm "${verify[@]}" --report "$RESULTS/${name}_rewrite_crms.json"
    "$CLI" "$SCRATCH/$name.onnx" -o "$SCRATCH/${name}_crms_ort.onnx" --target crmsnorm --emit onnxruntime "${verify[@]}" --report "$RESULTS/${name}_rewrite_crms_ort.json"
    "$CLI" "$SCRATCH/$name.onnx" -o "$SCRATCH/${name}_crms_custom.onnx" --target crmsnorm --emit custom "${verify[@]}" --report "$RESULTS/${name}_rewrite_crms_custom.json"
    if [[ ${#verify[@]} -gt 0 ]]; then
        # Not verified while rewriting (large): verify once now, in both runtimes.
        "$CLI" verify "$SCRATCH/$name.onnx" "$SCRATCH/${name}_rms_std.onnx" --samples 1 > "$RESULTS/${name}_verify_std.txt" || true
        "$CLI" verify "$SCRATCH/$name.onnx" "$SCRATCH/${name}_rms_ort.onnx" --samples 1 > "$RESULTS/${name}_verify_ort.txt" || true
        "$CLI" verify "$SCRATCH/$name.onnx" "$SCRATCH/${name}_crms.onnx" --samples 1 > "$RESULTS/${name}_verify_crms.txt" || true
        "$CLI" verify "$SCRATCH/$name.onnx" "$SCRATCH/${name}_crms_ort.onnx" --samples 1 > "$RESULTS/${name}_verify_crms_ort.txt" || true
    fi
    local set=("$SCRATCH/$name.onnx" "$SCRATCH/${name}_rms_std.onnx" "$SCRATCH/${name}_rms_ort.onnx" "$SCRATCH/${name}_crms.onnx" "$SCRATCH/${name}_crms_ort.onnx" "$SCRATCH/${name}_nonorm.onnx")
    local labels=(--label orig --label rms_std --label rms_ort --label crms --label crms_ort --label nonorm --limit)
    # onnxruntime: the six models; tract: the same plus CRMSNorm as our custom op (tract only).
    bench "$name" "${set[@]}" "${labels[@]}" \
        --runtime ort --runs "$RUNS" --warmup "$WARMUP" --profile "$PROFILE"
    local tset=("${set[@]:0:5}" "$SCRATCH/${name}_crms_custom.onnx" "${set[5]}")
    local tlabels=(--label orig --label rms_std --label rms_ort --label crms --label crms_ort --label crms_custom --label nonorm --limit)
    bench "${name}_tract" "${tset[@]}" "${tlabels[@]}" \
        --runtime tract --runs "$RUNS" --warmup "$WARMUP" --profile "$PROFILE" --ops
    # The same models in onnxruntime with one intra-op thread: less sensitive to other
    # processes on a shared 2-core machine (a parallel op waits for its slowest thread), and its
    # CPU time is pure compute (no pool spin-waiting).
    bench "${name}_ort_1thread" "${set[@]}" "${labels[@]}" \
        --runtime ort --ort-threads 1 --runs "$RUNS" --warmup "$WARMUP" --profile "$PROFILE"
    # OpenVINO (CPU plugin): the same six models, f32 and the CPU's default precision.
    if [[ -n $OV_PYTHON ]]; then
        local olabels=("${labels[@]}")
        unset 'olabels[${#olabels[@]}-1]'  # ov_bench adds --limit itself
        ov_bench "${name}_openvino" "$OV_RUNS" "${set[@]}" "${olabels[@]}"
    fi
}

if wants ops; then
    for shape in 128x768 197x384 1576x192; do
        rows=${shape%x*}; d=${shape#*x}
        files=(); labels=()
        for n in ln rms rms-ort rms23 rms-nomul crms crms-z slice identity; do
            "${SYNTH[@]}" --kind norm --norm "$n" --rows "$rows" --d "$d" -o "$SCRATCH/op_${shape}_$n.onnx"
            files+=("$SCRATCH/op_${shape}_$n.onnx"); labels+=(--label "$n")
        done
        bench "op_$shape" "${files[@]}" "${labels[@]}" --runs "$OP_RUNS" --warmup "$OP_WARMUP" --profile 200 --ops
        # The same norms at width D-1 (what CRMSNorm normalises), no Slice in front: is the
        # fused RMSNorm slower at an odd width, or is the Slice model's extra node the cost?
        files=(); labels=()
        for n in ln rms rms-ort identity; do
            "${SYNTH[@]}" --kind norm --norm "$n" --rows "$rows" --d "$((d - 1))" -o "$SCRATCH/op_${shape}_d1_$n.onnx"
            files+=("$SCRATCH/op_${shape}_d1_$n.onnx"); labels+=(--label "$n")
        done
        bench "op_${shape}_d1" "${files[@]}" "${labels[@]}" --runs "$OP_RUNS" --warmup "$OP_WARMUP" --profile 200 --ops
    done
fi
if wants head; then
    # The GPT-2 LM head alone: what folding the final norm's β into a bias-free head costs.
    for hb in none after before; do "${SYNTH[@]}" --kind head --head-bias "$hb" -o "$SCRATCH/head_$hb.onnx"; done
    hf=("$SCRATCH/head_none.onnx" "$SCRATCH/head_after.onnx" "$SCRATCH/head_before.onnx")
    hl=(--label matmul --label matmul+bias_V --label add_beta_D+matmul)
    bench head "${hf[@]}" "${hl[@]}" --runs 100 --warmup 5 --profile 10
    bench head_ort_1thread "${hf[@]}" "${hl[@]}" --runtime ort --ort-threads 1 --runs 100 --warmup 5 --profile 10
fi
if wants vit_ti; then model vit_ti "$RUNS_VIT_TI" "${OV_RUNS_VIT_TI:-$RUNS_VIT_TI}" --kind vit --d 192 --heads 3; fi
if wants vit_s; then model vit_s "$RUNS_VIT_S" "$RUNS_VIT_S" --kind vit --d 384 --heads 6; fi
if wants gpt2; then model gpt2 "$RUNS_GPT2" "${OV_RUNS_GPT2:-$RUNS_GPT2}" --kind gpt2 --d 768 --heads 12 --layers "$GPT2_LAYERS" --external-data; fi

python3 "$HERE/report.py" "$RESULTS" > "$RESULTS/tables.md"
echo "tables: $RESULTS/tables.md" >&2
