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
# llama_cpp_python-0.3.36.tar.gz, to skip the download).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:-$ROOT/target/test-data/smollm2-135m-instruct-q4_1.gguf}"
THREADS="${2:-2}"
ROUNDS="${3:-3}"
SCRATCH="${EDGE_BENCH_DIR:-$HOME/.cache/edge-bench}"
SYS_VER=0.1.161
mkdir -p "$SCRATCH"

SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-$SYS_VER/llama.cpp | head -1)"
[ -d "$SRC" ] || { echo "llama-cpp-sys-2 $SYS_VER source not found; run cargo build first" >&2; exit 1; }

LB="$SCRATCH/build/bin/llama-bench"
if [ ! -x "$LB" ]; then
  echo "bench: building llama-bench from llama-cpp-sys-2 $SYS_VER's llama.cpp (several minutes)"
  rm -rf "$SCRATCH/llama.cpp" && cp -r "$SRC" "$SCRATCH/llama.cpp"
  sdist="${EDGE_LLAMA_SDIST:-}"
  if [ -z "$sdist" ]; then
    python3 -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$SCRATCH"
    sdist="$SCRATCH/llama_cpp_python-0.3.36.tar.gz"
  fi
  tar xzf "$sdist" -C "$SCRATCH" llama_cpp_python-0.3.36/vendor/llama.cpp/tools
  rm -rf "$SCRATCH/llama.cpp/tools"
  cp -r "$SCRATCH/llama_cpp_python-0.3.36/vendor/llama.cpp/tools" "$SCRATCH/llama.cpp/tools"
  # Same CPU flags as edge's default build (.cargo/config.toml) and OpenMP, as
  # llama-cpp-sys-2 builds it.
  cmake -S "$SCRATCH/llama.cpp" -B "$SCRATCH/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
    -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_OPENMP=ON -DGGML_CCACHE=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_MTMD=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >/dev/null
  cmake --build "$SCRATCH/build" -j"$(nproc)" --target llama-bench >/dev/null
fi

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
