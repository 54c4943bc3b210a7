#!/usr/bin/env bash
# How well `edge plan` predicts CPU decode speed on this machine after
# `edge profile calibrate`: predicted decode tok/s (plan --json, this machine's
# calibrated profile) against measured `edge bench -p 0 -n 128 -r 20` (llama-bench method, median),
# for SmolLM2 and the synthetic qwen3 / qwen3moe / llama4 models. Target: within ±15 %.
# Run it on a quiet machine: concurrent work makes llama.cpp's OpenMP threads stall.
#
#   scripts/bench-plan.sh [THREADS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
THREADS="${1:-$(nproc)}"
EDGE="$ROOT/target/release/edge"
[ -x "$EDGE" ] || cargo build --release --manifest-path "$ROOT/Cargo.toml"
SMOL="$ROOT/target/test-data/smollm2-135m-instruct-q4_1.gguf"
[ -f "$SMOL" ] || "$ROOT/scripts/fetch-test-data.sh"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# A private EDGE_HOME: the calibrated profile lands in $WORK/home/profiles/this-machine.toml.
export EDGE_HOME="$WORK/home" NO_COLOR=1
for arch in qwen3 qwen3moe llama4; do
  "$EDGE" synth "$arch" "$WORK/$arch.gguf" >/dev/null 2>&1
done

echo "== edge profile calibrate -t $THREADS"
"$EDGE" profile calibrate -t "$THREADS" --model "$SMOL" 2>&1 | tail -n 15

printf '\n%-34s %12s %12s %8s\n' model predicted measured error
worst=0
for m in "$SMOL" "$WORK/qwen3.gguf" "$WORK/qwen3moe.gguf" "$WORK/llama4.gguf"; do
  pred=$("$EDGE" plan "$m" --ctx 512 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["predicted"]["decode_tok_s"])')
  # 20 repetitions, median: the first few runs of a tiny model are slower while
  # OpenMP's threads and the CPU clock ramp up.
  meas=$("$EDGE" bench "$m" -p 0 -n 128 -r 20 -t "$THREADS" --json | python3 -c '
import json,sys,statistics
rows=json.load(sys.stdin)
print(statistics.median([r for r in rows if r["n_gen"]>0][0]["samples_ts"]))')
  err=$(python3 -c "print(f'{($pred/$meas-1)*100:+.1f}')")
  printf '%-34s %12.1f %12.1f %7s%%\n' "$(basename "$m")" "$pred" "$meas" "$err"
  worst=$(python3 -c "print(max($worst, abs($err)))")
done
echo
echo "worst error: ${worst}% (target: within 15%)"
