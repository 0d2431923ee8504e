#!/usr/bin/env bash
# Verification at any size (issue #22): generate a GPT-style model of several GB (external
# data), rewrite it with the default command — verification on, default --verify-budget — and
# measure wall time and peak memory (/usr/bin/time -v: the largest resident set of the tool and
# its verification child); then `verify A B` in each runtime alone.
#
# Usage: bench/big_verify.sh [DIR]        (default DIR: /tmp/normopt-big; needs ~8 GB free)
# Environment: D (1536), HEADS (12), LAYERS (28) — 3.8 GB of weights with the defaults;
#              TARGET (rmsnorm), BIN (target/release/onnx-normopt), PYTHON (python3 with numpy
#              and onnx: bench/synth.py), KEEP=1 to keep the generated files.
# The models stay in DIR (never in the repository). Results: DIR/out/{time,report}.* and a
# summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/normopt-big}
D=${D:-1536}
HEADS=${HEADS:-12}
LAYERS=${LAYERS:-28}
TARGET=${TARGET:-rmsnorm}
BIN=${BIN:-target/release/onnx-normopt}
PYTHON=${PYTHON:-python3}
mkdir -p "$DIR"
SRC="$DIR/gpt_big.onnx"
if [ ! -f "$SRC" ]; then
  "$PYTHON" bench/synth.py --kind gpt2 --d "$D" --heads "$HEADS" --layers "$LAYERS" \
    --external-data -o "$SRC"
fi
OUT="$DIR/out"
rm -rf "$OUT"
mkdir -p "$OUT"
echo "model: $(du -sh "$SRC" "$SRC.data" | awk '{print $1}' | paste -sd+ -) ($SRC)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -v "$BIN" "$SRC" -o "$OUT/gpt_big_$TARGET.onnx" --target "$TARGET" \
  --report "$OUT/report.json" > "$OUT/rewrite.log" 2> "$OUT/time.txt" || {
  echo "rewrite failed:"; tail -5 "$OUT/time.txt"; exit 1; }
echo "rewrite + verification (default budget):" \
  "$(grep -E 'Elapsed|Maximum resident' "$OUT/time.txt" | sed 's/^\s*//' | paste -sd';' -)"
"$PYTHON" - "$OUT/report.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))["verification"]
b = v["budget"]
m = b["mode"]
gib = lambda x: f"{x / 2**30:.2f} GiB"
print(f"verified: {m['kind']}", end="")
if m["kind"] == "pieces":
    print(f", {m['count']} pieces, largest piece {m['largest']}: {gib(m['largest_bytes'])}"
          f" estimated, {gib(m['largest_weight_bytes'])} of weights", end="")
print(f"; estimate {gib(b['total_bytes'])} of a {gib(b['budget_bytes'])} budget;"
      f" verification {v['elapsed_ms'] / 1000:.0f} s")
for r in v["rows"]:
    print(f"  {r['runtime']:<11} {r['output']:<8} max|d|/max|ref| {r['max_rel']:.2e}"
          f" {'ok' if r['pass'] else 'FAIL'}")
PY
for rt in tract ort; do
  /usr/bin/time -v "$BIN" verify "$SRC" "$OUT/gpt_big_$TARGET.onnx" --runtime "$rt" \
    > "$OUT/verify_$rt.log" 2> "$OUT/verify_$rt.time" || true
  echo "verify --runtime $rt: $(grep -E '^(PASS|FAIL)' "$OUT/verify_$rt.log")" \
    "$(grep -E 'Elapsed|Maximum resident' "$OUT/verify_$rt.time" | sed 's/^\s*//' | paste -sd';' -)"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${KEEP:-0}" != 1 ]; then
  rm -rf "$OUT"/*.onnx "$OUT"/*.data "$SRC" "$SRC.data"
fi
