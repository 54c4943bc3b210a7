#!/usr/bin/env bash
# Speculative decoding: edge against llama.cpp's own llama-speculative-simple and
# llama-lookup, built from the same llama.cpp as edge (scripts/llama-tools.sh: the
# crate's library with the llama-cpp-python sdist's tools/ and examples/, edge's CPU
# flags). One run, side by side, same prompts, greedy, 256 generated tokens with EOS
# ignored, THREADS threads.
#
# Targets: SmolLM2-135M re-quantized to F16 and F32 (`edge quantize --allow-requantize`);
# draft: the Q4_1 file. Prompts are raw text (no chat template) on both sides: edge
# runs them as /v1/completions requests through `edge batch --parallel 1`.
#
#   scripts/bench-spec.sh [THREADS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
THREADS="${1:-2}"
DRAFT="$ROOT/target/test-data/smollm2-135m-instruct-q4_1.gguf"
N=256
[ -f "$DRAFT" ] || { echo "missing $DRAFT: run scripts/fetch-test-data.sh" >&2; exit 1; }
. "$ROOT/scripts/llama-tools.sh"
llama_tools llama-speculative-simple llama-lookup llama-completion
EDGE="$ROOT/target/release/edge"
[ -x "$EDGE" ] || (cd "$ROOT" && cargo build --release)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for t in F16 F32; do
  "$EDGE" quantize "$DRAFT" "$WORK/target-$t.gguf" --type "$t" --allow-requantize >/dev/null 2>&1
done

declare -A PROMPTS=(
  [story]="Once upon a time, in a small village by the sea, there lived an old fisherman who"
  [explanation]="Photosynthesis is the process by which green plants turn light into food. It works like this:"
  [copy]="Here is a paragraph: The cat sat on the warm windowsill and watched the birds in the garden. Every morning the cat waited for the sun, and every evening the cat slept by the fire. The cat was happy. Rewrite the paragraph exactly, replacing cat with dog: The dog sat on the"
)

# llama.cpp's tools print through an async logger that can drop the last lines at
# exit; a destructor that waits a little lets it drain (as scripts/bench-batch.sh).
SHIM="$SCRATCH/exitdelay.so"
if [ ! -f "$SHIM" ]; then
  printf '#include <unistd.h>\n__attribute__((destructor)) static void d(void){usleep(300000);}\n' > "$SCRATCH/exitdelay.c"
  cc -shared -fPIC -o "$SHIM" "$SCRATCH/exitdelay.c"
fi
llama() { LD_PRELOAD="$SHIM" "$LLAMA_BIN/$1" "${@:2}" -n "$N" --ignore-eos --temp 0 -t "$THREADS" 2>&1; }
plain_llama() { llama llama-completion -m "$1" -p "$2" -no-cnv --no-warmup | sed -n 's/.* eval time.*, *\([0-9.]*\) tokens per second.*/\1/p' | tail -1; }
spec_llama() { llama "$@" | sed -n 's/.*decoded .* speed: *\([0-9.]*\) t\/s.*/\1/p' | tail -1; }

# edge: one /v1/completions request, greedy, EOS ignored; tok/s = generated / seconds.
edge_rate() {
  local model="$1" prompt="$2"; shift 2
  python3 -c 'import json,sys; print(json.dumps({"custom_id":"b","method":"POST","url":"/v1/completions","body":{"prompt":sys.argv[1],"max_tokens":int(sys.argv[2]),"temperature":0,"ignore_eos":True}}))' "$prompt" "$N" > "$WORK/in.jsonl"
  rm -f "$WORK/out.jsonl"
  "$EDGE" batch "$model" --input "$WORK/in.jsonl" --output "$WORK/out.jsonl" --parallel 1 -t "$THREADS" --quiet "$@" 2>&1 \
    | sed -n 's/.* generated tokens in \([0-9.]*\) s.*/\1/p' | awk -v n="$N" '{printf "%.1f", n / $1}'
}

printf "%-4s %-12s %-34s %8s %8s\n" target prompt runner "tok/s" "x plain"
for t in F16 F32; do
  M="$WORK/target-$t.gguf"
  for p in story explanation copy; do
    P="${PROMPTS[$p]}"
    lp=$(plain_llama "$M" "$P"); ep=$(edge_rate "$M" "$P")
    row() { printf "%-4s %-12s %-34s %8s %8s\n" "$t" "$p" "$1" "$2" "$(awk -v a="$2" -v b="$3" 'BEGIN{if (b>0) printf "%.2f", a/b}')"; }
    row "llama-completion (plain)" "$lp" "$lp"
    for n in 4 8 16; do
      row "llama-speculative-simple n_max=$n" "$(spec_llama llama-speculative-simple -m "$M" -md "$DRAFT" --spec-type draft-simple -p "$P" --spec-draft-n-max "$n")" "$lp"
    done
    row "llama-lookup n_max=8" "$(spec_llama llama-lookup -m "$M" -p "$P" --spec-draft-n-max 8)" "$lp"
    row "edge (plain)" "$ep" "$ep"
    row "edge --draft" "$(edge_rate "$M" "$P" --draft "$DRAFT")" "$ep"
    row "edge --lookup" "$(edge_rate "$M" "$P" --lookup)" "$ep"
  done
done
