#!/usr/bin/env bash
# Side-by-side speed of `edge bench` and llama.cpp's own `llama-bench`, built from the
# same llama.cpp source that llama-cpp-sys-2 bundles (tool sources from the
# llama-cpp-python sdist on PyPI), in a scratch folder outside the repo. The two are
# alternated ROUNDS times on the same model and flags; the ratio edge/llama-bench of
# the mean tokens/s is printed for pp and tg.
#
#   scripts/bench-vs-llama.sh [MODEL.gguf] [THREADS] [ROUNDS]
#
# Env: EDGE_BENCH_DIR (scratch, default ~/.cache/edge-bench), EDGE_LLAMA_SDIST (a local
# llama_cpp_python-0.3.36.tar.gz, to skip the download); see scripts/llama-tools.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:-$ROOT/target/test-data/smollm2-135m-instruct-q4_1.gguf}"
THREADS="${2:-2}"
ROUNDS="${3:-3}"
. "$ROOT/scripts/llama-tools.sh"
llama_tools llama-bench
LB="$LLAMA_BIN/llama-bench"

EDGE="$ROOT/target/release/edge"
[ -x "$EDGE" ] || (cd "$ROOT" && cargo build --release)

OUT="$SCRATCH/results-$(date +%s)"
mkdir -p "$OUT"
for i in $(seq 1 "$ROUNDS"); do
  "$LB" -m "$MODEL" -p 512 -n 128 -t "$THREADS" -r 5 -o json > "$OUT/llama-$i.json" 2>/dev/null
  "$EDGE" bench "$MODEL" -p 512 -n 128 -t "$THREADS" -r 5 --json > "$OUT/edge-$i.json"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys, statistics as st
out, rounds = sys.argv[1], int(sys.argv[2])
def load(kind):
    res = {"pp": [], "tg": []}
    for i in range(1, rounds + 1):
        for r in json.load(open(f"{out}/{kind}-{i}.json")):
            res["pp" if r["n_prompt"] > 0 else "tg"].append(r["avg_ts"])
    return res
e, l = load("edge"), load("llama")
for t, name in (("pp", "pp512"), ("tg", "tg128")):
    em, lm = st.mean(e[t]), st.mean(l[t])
    print(f"{name}: edge {em:8.2f} t/s  llama-bench {lm:8.2f} t/s  ratio {em/lm:.3f}   "
          f"(rounds: edge {[round(x,1) for x in e[t]]}, llama {[round(x,1) for x in l[t]]})")
PY
