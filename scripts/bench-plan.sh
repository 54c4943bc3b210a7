#!/usr/bin/env bash
# How well `edge plan` predicts CPU decode speed on this machine after
# `edge profile calibrate`: predicted decode tok/s (plan --json, this machine's
# calibrated profile) against measured `edge bench -p 0 -n 128` (llama-bench method),
# for SmolLM2 and synthetic qwen3 / qwen3moe / llama4 models. Target: within ±15 %.
#
# Two sets of synthetic models:
# - "bench": the three architectures at widths where decode streams weights from RAM,
#   as with real models (Qwen3-0.6B's widths; Qwen3-30B-A3B's expert width and 1 of 8
#   experts active; 150-500 MB; shapes unlike the ones calibrate times), plus the MoE
#   one quantized to Q4_K_M;
# - "tiny": the 2-4 layer models the tests use (2-7 MB, 3,000-11,000 tok/s), where a
#   token is 0.1-0.3 ms of graph overhead and cache-resident reads.
# First `edge profile calibrate --validate` times the bench-size models held out of the
# fit, in the same interleaved rounds as the fit's models: the primary figure. Then
# `edge bench` times every model again in ROUNDS interleaved rounds (median over all
# runs; "spread" is the range of the per-round medians), minutes after calibrating; on a
# shared VM the machine's speed drifts by 10-20 % over minutes, which that second table
# shows. Run it on a quiet machine.
#
#   scripts/bench-plan.sh [THREADS] [ROUNDS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
THREADS="${1:-$(nproc)}"
ROUNDS="${2:-3}"
EDGE="$ROOT/target/release/edge"
[ -x "$EDGE" ] || cargo build --release --manifest-path "$ROOT/Cargo.toml"
SMOL="$ROOT/target/test-data/smollm2-135m-instruct-q4_1.gguf"
[ -f "$SMOL" ] || "$ROOT/scripts/fetch-test-data.sh"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# A private EDGE_HOME: the calibrated profile lands in $WORK/home/profiles/this-machine.toml.
export EDGE_HOME="$WORK/home" NO_COLOR=1 EDGE
synth() { "$EDGE" synth "$@" >/dev/null 2>&1 || { echo "edge synth $* failed" >&2; exit 1; }; }
synth qwen3 "$WORK/tiny-qwen3.gguf"
synth qwen3moe "$WORK/tiny-qwen3moe.gguf"
synth llama4 "$WORK/tiny-llama4.gguf"
synth qwen3 "$WORK/bench-qwen3.gguf" --layers 12 --embd 1024 --ff 3072 --heads 16 --kv-heads 8
synth qwen3moe "$WORK/bench-qwen3moe.gguf" --layers 6 --embd 1024 --ff 768 --heads 16 --kv-heads 4 --experts 32 --experts-used 4
synth llama4 "$WORK/bench-llama4.gguf" --layers 8 --embd 1024 --ff 2048 --heads 16 --kv-heads 8 --experts 16 --experts-used 1
"$EDGE" quantize "$WORK/bench-qwen3moe.gguf" "$WORK/bench-qwen3moe-q4_k_m.gguf" --type Q4_K_M >/dev/null 2>&1

BENCH=("$WORK"/bench-qwen3.gguf "$WORK"/bench-qwen3moe.gguf "$WORK"/bench-qwen3moe-q4_k_m.gguf "$WORK"/bench-llama4.gguf)
echo "== edge profile calibrate -t $THREADS --model SmolLM2, bench-size models held out (--validate)"
# The held-out models are timed in the same interleaved rounds as the fit's models, so a
# slow minute on a shared machine cannot separate the calibration from the check.
VALIDATE=()
for m in "${BENCH[@]}"; do VALIDATE+=(--validate "$m"); done
"$EDGE" profile calibrate -t "$THREADS" --model "$SMOL" "${VALIDATE[@]}" 2>&1 | grep -v '^calibrate: ' | tail -n 22

echo
echo "== then edge bench, each model in $ROUNDS interleaved rounds"
MODELS=("$SMOL" "${BENCH[@]}" "$WORK"/tiny-qwen3.gguf "$WORK"/tiny-qwen3moe.gguf "$WORK"/tiny-llama4.gguf)
for round in $(seq 1 "$ROUNDS"); do
  for i in "${!MODELS[@]}"; do
    "$EDGE" bench "${MODELS[$i]}" -p 0 -n 128 -r 10 -t "$THREADS" --json >"$WORK/bench-$i-$round.json"
  done
done

printf '\n%-36s %10s %10s %8s %18s\n' model predicted measured error "spread (rounds)"
python3 - "$WORK" "$ROUNDS" "${MODELS[@]}" <<'EOF'
import json, os, statistics, subprocess, sys
work, rounds, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
worst = {"bench": 0.0, "tiny": 0.0}
for i, m in enumerate(models):
    out = subprocess.run([os.environ["EDGE"], "plan", m, "--ctx", "512", "--json"],
                         capture_output=True, check=True).stdout
    pred = json.loads(out)["predicted"]["decode_tok_s"]
    samples, per_round = [], []
    for r in range(1, rounds + 1):
        rows = json.load(open(f"{work}/bench-{i}-{r}.json"))
        s = [row for row in rows if row["n_gen"] > 0][0]["samples_ts"]
        samples += s
        per_round.append(statistics.median(s))
    meas = statistics.median(samples)
    err = (pred / meas - 1) * 100
    name = os.path.basename(m)
    kind = "tiny" if name.startswith("tiny-") else "bench"
    worst[kind] = max(worst[kind], abs(err))
    spread = f"{(min(per_round) / meas - 1) * 100:+.0f}..{(max(per_round) / meas - 1) * 100:+.0f} %"
    print(f"{name:36s} {pred:10.1f} {meas:10.1f} {err:+7.1f}% {spread:>18s}")
print()
print(f"worst error, SmolLM2 and bench-size synthetic models: {worst['bench']:.1f}% (target: within 15%)")
print(f"worst error, tiny synthetic models:                   {worst['tiny']:.1f}%")
EOF
