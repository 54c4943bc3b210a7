#!/usr/bin/env bash
# Fuzzes every parser of untrusted input with cargo-fuzz (libFuzzer, nightly Rust):
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60 s, all targets)
# 0 seconds replays the seed corpus (real files) and nothing else: what CI runs, so a
# chance find cannot turn CI red; fuzz for real with a time before landing parser work.
# FUZZ_SEED=N fixes libFuzzer's seed: CI uses one, so its short run replays a prefix of a
# mutation sequence that was run longer before landing (a CI run that finds a new crash
# by chance would make landing a lottery).
# Seed corpora come from real files (SmolLM2 and synthetic GGUF headers, llama.cpp's
# chat templates, recorded tool-call outputs, the shipped profiles and catalog, batch
# and request bodies) and grow in target/fuzz/corpus/<target> across runs. A crash is
# saved under target/fuzz/artifacts/<target>/; copy it to tests/fuzz-regressions/<target>/
# once fixed, where `cargo test` replays it. Prints executions and coverage per target.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
shift || true
ALL=(gguf_header batch_lines chat_template imatrix_file toml_data serve_request tool_calls)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi
DATA="${EDGE_TEST_DATA:-$ROOT/target/test-data}"
WORK="$ROOT/target/fuzz"
EDGE="$ROOT/target/release/edge"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly toolchain is not installed (rustup toolchain install nightly)" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
[ -x "$EDGE" ] || cargo build --release --manifest-path "$ROOT/Cargo.toml"
[ -f "$DATA/smollm2-135m-instruct-q4_1.gguf" ] || "$ROOT/scripts/fetch-test-data.sh"

seed() { # seed TARGET NAME < bytes
  mkdir -p "$WORK/corpus/$1"
  cat > "$WORK/corpus/$1/$2"
}

make_seeds() {
  local tmp; tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
  head -c 65536 "$DATA/smollm2-135m-instruct-q4_1.gguf" | seed gguf_header smollm2
  for arch in qwen3 qwen3moe llama4; do
    "$EDGE" synth "$arch" "$tmp/$arch.gguf" >/dev/null 2>&1
    head -c 65536 "$tmp/$arch.gguf" | seed gguf_header "$arch"
  done
  "$EDGE" imatrix "$tmp/qwen3moe.gguf" --text "$ROOT/README.md" --ctx 64 --chunks 1 \
    -o "$tmp/imatrix.gguf" >/dev/null 2>&1
  seed imatrix_file synth < "$tmp/imatrix.gguf"
  for t in "$DATA"/templates/*.jinja; do
    { cat "$t"; printf '\0[{"role":"system","content":"Be brief."},{"role":"user","content":"hi <|im_end|>"},{"role":"assistant","content":"<think>x</think>ok","tool_calls":[{"type":"function","function":{"name":"f","arguments":{"a":1}}}]},{"role":"tool","content":"42"}]'; } \
      | seed chat_template "$(basename "$t")"
  done
  for p in "$ROOT"/profiles/*.toml "$ROOT"/src/catalog.toml; do
    seed toml_data "$(basename "$p")" < "$p"
  done
  printf '%s\n' \
    '{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"hi"}],"max_tokens":8}}' \
    '{"id":"b","prompt":"x","temperature":0.5,"stop":["\n"]}' \
    '{"custom_id":"c","response":{"status_code":200,"body":{"choices":[]}},"line":3}' \
    '{"custom_id":"d","error":{"code":"invalid_json","message":"m"},"line":4}' \
    '{"custom_id":"torn","bo' | seed batch_lines lines
  echo '{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true,"stream_options":{"include_usage":true},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}}],"tool_choice":"required","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}},"logprobs":true,"top_logprobs":3,"seed":1,"stop":"x","max_tokens":5}' \
    | seed serve_request chat
  echo '{"model":"m","prompt":"Once","max_tokens":3,"echo":false,"options":{"temperature":0,"num_predict":4},"format":"json","images":[]}' \
    | seed serve_request completion
  python3 - "$DATA/canitoolcall" "$WORK/corpus/tool_calls" <<'PY'
import json, os, sys, glob
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for i, path in enumerate(sorted(glob.glob(os.path.join(src, "*", "*.jsonl")))):
    for j, line in enumerate(open(path, encoding="utf-8")):
        out = json.loads(line).get("raw_output")
        if isinstance(out, str):
            with open(os.path.join(dst, f"{i}-{j}"), "wb") as f:
                f.write(bytes([j % 251]) + out.encode())
PY
}

make_seeds
printf '%-14s %12s %8s %8s %s\n' target executions cov ft result
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/artifacts/$t"
  log="$WORK/$t.log"
  max_len=4096
  case "$t" in gguf_header|imatrix_file) max_len=70000 ;; chat_template) max_len=16384 ;; esac
  if [ "$SECONDS_PER_TARGET" = 0 ]; then bound=(-runs=0); else bound=(-max_total_time="$SECONDS_PER_TARGET"); fi
  if (cd "$ROOT/fuzz" && CARGO_TARGET_DIR="$WORK/build" cargo +nightly fuzz run "$t" \
      "$WORK/corpus/$t" -- "${bound[@]}" -max_len="$max_len" \
      -artifact_prefix="$WORK/artifacts/$t/" -print_final_stats=1 ${FUZZ_SEED:+-seed=$FUZZ_SEED}) \
      >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log, artifacts in $WORK/artifacts/$t)"; status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || true)
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || true)
  printf '%-14s %12s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
exit $status
