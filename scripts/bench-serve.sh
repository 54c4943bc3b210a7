#!/usr/bin/env bash
# `edge serve` against llama.cpp's own `llama-server` (same llama.cpp source, built
# outside the repo by scripts/llama-tools.sh, web UI off), and against `edge batch` on
# the same requests.
#
# Workload (scripts/serve_load.py): 32 streaming chat requests, 8 at a time, prompts
# of ~100 tokens, exactly 128 generated tokens each (ignore_eos), temperature 0.
# Servers: --parallel 8 (llama-server -np 8), THREADS threads, 512 tokens per slot.
# The two servers alternate ROUNDS times in one run. Reported: generated tok/s over
# the wall time, median time to first token, and the ratios.
#
#   scripts/bench-serve.sh [MODEL.gguf] [THREADS] [ROUNDS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:-$ROOT/target/test-data/smollm2-135m-instruct-q4_1.gguf}"
THREADS="${2:-2}"
ROUNDS="${3:-2}"
. "$ROOT/scripts/llama-tools.sh"
llama_tools llama-server

EDGE="$ROOT/target/release/edge"
[ -x "$EDGE" ] || (cd "$ROOT" && cargo build --release)
WORK="$(mktemp -d)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
PORT="${EDGE_BENCH_PORT:-18431}"
URL="http://127.0.0.1:$PORT"

wait_ready() {
  for _ in $(seq 1 600); do
    if curl -sf "$URL/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "server did not become ready" >&2; return 1
}

run_server() { # name cmd...
  local name="$1"; shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PID=$!
  wait_ready
  # One warm-up request (first-touch of the weights), then the measured load.
  python3 "$ROOT/scripts/serve_load.py" "$URL" 8 8 16 >/dev/null
  python3 "$ROOT/scripts/serve_load.py" "$URL" 32 8 128 | tee -a "$WORK/$name.jsonl"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

for r in $(seq 1 "$ROUNDS"); do
  echo "round $r: edge serve"
  run_server edge "$EDGE" serve "$MODEL" --port "$PORT" --parallel 8 --ctx 512 --threads "$THREADS"
  echo "round $r: llama-server"
  run_server llama "$LLAMA_BIN/llama-server" -m "$MODEL" --port "$PORT" -np 8 -c $((8 * 512)) \
    -t "$THREADS" -b 512 -ub 512 --no-webui
done

# edge batch on the same 32 requests (same prompts as serve_load.py), --parallel 8.
python3 -c "
import json, sys
sys.path.insert(0, '$ROOT/scripts')
from serve_load import prompt
with open('$WORK/jobs.jsonl', 'w') as f:
    for i in range(32):
        f.write(json.dumps({'custom_id': f's{i}', 'messages': [{'role': 'user', 'content': prompt(i)}],
                            'max_tokens': 128, 'temperature': 0, 'ignore_eos': True}) + '\n')
"
"$EDGE" batch "$MODEL" -i "$WORK/jobs.jsonl" -o "$WORK/out.jsonl" --parallel 8 --ctx 512 \
  --threads "$THREADS" --quiet 2>&1 | grep aggregate | tee "$WORK/batch.txt"

python3 - "$WORK/edge.jsonl" "$WORK/llama.jsonl" "$WORK/batch.txt" <<'PY'
import json, re, statistics, sys
edge = [json.loads(l) for l in open(sys.argv[1])]
llama = [json.loads(l) for l in open(sys.argv[2])]
batch = float(re.search(r"generation ([0-9.]+) tok/s", open(sys.argv[3]).read()).group(1))
e_tps = statistics.mean(r["gen_tok_s"] for r in edge)
l_tps = statistics.mean(r["gen_tok_s"] for r in llama)
e_ttft = statistics.median(r["ttft_median_s"] for r in edge)
l_ttft = statistics.median(r["ttft_median_s"] for r in llama)
print(f"edge serve:   {e_tps:.1f} generated tok/s, median TTFT {e_ttft*1000:.0f} ms  (rounds: {[r['gen_tok_s'] for r in edge]})")
print(f"llama-server: {l_tps:.1f} generated tok/s, median TTFT {l_ttft*1000:.0f} ms  (rounds: {[r['gen_tok_s'] for r in llama]})")
print(f"edge batch --parallel 8: {batch:.1f} generated tok/s")
print(f"ratio tok/s edge serve / llama-server: {e_tps / l_tps:.3f}  (target >= 0.95)")
print(f"ratio median TTFT edge serve / llama-server: {e_ttft / l_ttft:.3f}  (target <= 1.2)")
print(f"ratio tok/s edge serve / edge batch: {e_tps / batch:.3f}  (target >= 0.95)")
PY
