#!/usr/bin/env bash
# `edge batch` throughput against llama.cpp's `llama-batched-bench` (same llama.cpp
# source, built outside the repo as in scripts/bench-vs-llama.sh), and against running
# the same requests one at a time.
#
# Workload: 64 requests of ~128 prompt tokens and exactly 128 generated tokens
# (`ignore_eos`), SmolLM2, THREADS threads. Aggregate tok/s = (prompt + generated
# tokens) / wall time, llama-batched-bench's "S" column.
#
#   scripts/bench-batch.sh [MODEL.gguf] [THREADS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:-$ROOT/target/test-data/smollm2-135m-instruct-q4_1.gguf}"
THREADS="${2:-2}"
SCRATCH="${EDGE_BENCH_DIR:-$HOME/.cache/edge-bench}"

# Reuse (or make) the scratch llama.cpp build of scripts/bench-vs-llama.sh.
if [ ! -d "$SCRATCH/build" ]; then
  "$ROOT/scripts/bench-vs-llama.sh" "$MODEL" "$THREADS" 1 >/dev/null
fi
cmake --build "$SCRATCH/build" -j"$(nproc)" --target llama-batched-bench >/dev/null
BB="$SCRATCH/build/bin/llama-batched-bench"
# llama.cpp's tools print through an async logger that can drop the last lines at
# exit; a destructor that waits a little lets it drain.
SHIM="$SCRATCH/exitdelay.so"
if [ ! -f "$SHIM" ]; then
  printf '#include <unistd.h>\n__attribute__((destructor)) static void d(void){usleep(300000);}\n' > "$SCRATCH/exitdelay.c"
  cc -shared -fPIC -o "$SHIM" "$SCRATCH/exitdelay.c"
fi

EDGE="$ROOT/target/release/edge"
[ -x "$EDGE" ] || (cd "$ROOT" && cargo build --release)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK/jobs.jsonl" <<'PY'
import json, sys
words = ("the quick brown fox jumps over a lazy dog while rivers run to the sea and "
         "mountains rise above quiet valleys where farmers grow wheat barley and corn ").split()
with open(sys.argv[1], "w") as f:
    for i in range(64):
        text = " ".join(words[(i + k) % len(words)] for k in range(100))
        f.write(json.dumps({"custom_id": f"b{i}", "url": "/v1/completions",
            "body": {"prompt": f"Request {i}. {text}", "max_tokens": 128, "temperature": 0,
                     "ignore_eos": True}}) + "\n")
PY

declare -A EDGE_TS
for N in 1 4 8 16; do
  rm -f "$WORK/out.jsonl"
  line=$("$EDGE" batch "$MODEL" -i "$WORK/jobs.jsonl" -o "$WORK/out.jsonl" --parallel "$N" \
         --ctx 320 --threads "$THREADS" --quiet 2>&1 | grep 'aggregate')
  ts=$(echo "$line" | sed -E 's/.*aggregate ([0-9.]+) tok\/s.*/\1/')
  ptok=$(echo "$line" | sed -E 's/edge: ([0-9]+) prompt.*/\1/')
  EDGE_TS[$N]=$ts
  echo "edge batch --parallel $N: aggregate $ts tok/s ($line)"
done
avg_pp=$(( ptok / 64 ))

LD_PRELOAD="$SHIM" "$BB" -m "$MODEL" -c $(( 8 * (avg_pp + 128) + 64 )) -b 2048 -ub 512 \
  -npp "$avg_pp" -ntg 128 -npl 8 -t "$THREADS" --output-format jsonl 2>/dev/null > "$WORK/bb.jsonl" || true
bb=$(python3 -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]; print(rows[-1]['speed'] if rows else 'nan')" "$WORK/bb.jsonl")
echo "llama-batched-bench npl 8, npp $avg_pp, ntg 128: aggregate $bb tok/s"
python3 - "${EDGE_TS[1]}" "${EDGE_TS[8]}" "$bb" <<'PY'
import sys
one, eight, bb = map(float, sys.argv[1:])
print(f"ratio edge --parallel 8 / llama-batched-bench npl 8: {eight/bb:.3f}")
print(f"ratio edge --parallel 8 / edge --parallel 1 (one at a time): {eight/one:.3f}")
PY
