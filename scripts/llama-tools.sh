# Sourced by the bench scripts: builds llama.cpp's own tools (llama-bench,
# llama-quantize, …) from the same llama.cpp source that llama-cpp-sys-2 bundles, in a
# scratch folder outside the repo. llama-cpp-sys-2's crate ships llama.cpp's library
# sources but not its tools/, so those come from the llama-cpp-python sdist on PyPI,
# whose vendored llama.cpp is the same revision.
#
#   . scripts/llama-tools.sh
#   llama_tools llama-quantize llama-perplexity   # builds what is missing; sets LLAMA_BIN
#
# Env: EDGE_BENCH_DIR (scratch, default ~/.cache/edge-bench), EDGE_LLAMA_SDIST (a local
# llama_cpp_python-0.3.36.tar.gz, to skip the download), EDGE_BENCH_JOBS (build jobs,
# default: all cores).

LLAMA_SYS_VER=0.1.161
LLAMA_SDIST_VER=0.3.36
LLAMA_SDIST_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
SCRATCH="${EDGE_BENCH_DIR:-$HOME/.cache/edge-bench}"
LLAMA_BIN="$SCRATCH/build/bin"

# The llama.cpp copy (library from the crate, tools from the sdist) and its CMake
# configuration, made once; a stamp records which llama-cpp-sys-2 it came from.
llama_tools_source() {
  mkdir -p "$SCRATCH"
  local stamp="$SCRATCH/llama.cpp/.edge-llama-cpp-sys-2"
  if [ -d "$SCRATCH/llama.cpp/tools" ] && [ -d "$SCRATCH/llama.cpp/scripts" ] \
    && [ "$(cat "$stamp" 2>/dev/null)" = "$LLAMA_SYS_VER" ]; then
    llama_tools_examples
    return $?
  fi
  local src
  src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-$LLAMA_SYS_VER/llama.cpp 2>/dev/null | head -1)"
  [ -d "$src" ] || { echo "llama-cpp-sys-2 $LLAMA_SYS_VER source not found; run cargo build first" >&2; return 1; }
  echo "llama-tools: copying llama.cpp from llama-cpp-sys-2 $LLAMA_SYS_VER"
  rm -rf "$SCRATCH/llama.cpp" "$SCRATCH/build" && cp -r "$src" "$SCRATCH/llama.cpp"
  local sdist="${EDGE_LLAMA_SDIST:-$SCRATCH/llama_cpp_python-$LLAMA_SDIST_VER.tar.gz}"
  if [ ! -f "$sdist" ]; then
    python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_SDIST_VER" -d "$SCRATCH"
    sdist="$SCRATCH/llama_cpp_python-$LLAMA_SDIST_VER.tar.gz"
  fi
  echo "$LLAMA_SDIST_SHA  $sdist" | sha256sum --quiet -c - \
    || { echo "llama-tools: sha256 mismatch for $sdist" >&2; return 1; }
  rm -rf "$SCRATCH/llama_cpp_python-$LLAMA_SDIST_VER"
  # tools/, and scripts/ for llama-server's (here empty) web UI asset step.
  tar xzf "$sdist" -C "$SCRATCH" "llama_cpp_python-$LLAMA_SDIST_VER/vendor/llama.cpp/tools" \
    "llama_cpp_python-$LLAMA_SDIST_VER/vendor/llama.cpp/scripts"
  rm -rf "$SCRATCH/llama.cpp/tools" "$SCRATCH/llama.cpp/scripts"
  cp -r "$SCRATCH/llama_cpp_python-$LLAMA_SDIST_VER/vendor/llama.cpp/tools" "$SCRATCH/llama.cpp/tools"
  cp -r "$SCRATCH/llama_cpp_python-$LLAMA_SDIST_VER/vendor/llama.cpp/scripts" "$SCRATCH/llama.cpp/scripts"
  # The sdist's server reads its MCP config through a common/ helper newer than the
  # crate's llama.cpp (a UTF-8 path wrapper for Windows); plain std::ifstream does the
  # same here. The engine (src/, ggml/) stays the crate's.
  sed -i 's/fs_open_ifstream(\([^,]*\), /std::ifstream(\1, /' "$SCRATCH/llama.cpp/tools/server/server-mcp.cpp"
  echo "$LLAMA_SYS_VER" > "$stamp"
  llama_tools_examples
}

# examples/ from the sdist (the crate ships only their READMEs), for
# llama-speculative-simple and llama-lookup (scripts/bench-spec.sh); added to a copy
# made before they were wanted without rebuilding it.
llama_tools_examples() {
  [ -f "$SCRATCH/llama.cpp/examples/lookup/lookup.cpp" ] && return 0
  local sdist="${EDGE_LLAMA_SDIST:-$SCRATCH/llama_cpp_python-$LLAMA_SDIST_VER.tar.gz}"
  [ -f "$sdist" ] || python3 -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$LLAMA_SDIST_VER" -d "$SCRATCH" || return 1
  sdist="${EDGE_LLAMA_SDIST:-$SCRATCH/llama_cpp_python-$LLAMA_SDIST_VER.tar.gz}"
  echo "$LLAMA_SDIST_SHA  $sdist" | sha256sum --quiet -c - \
    || { echo "llama-tools: sha256 mismatch for $sdist" >&2; return 1; }
  tar xzf "$sdist" -C "$SCRATCH" "llama_cpp_python-$LLAMA_SDIST_VER/vendor/llama.cpp/examples" || return 1
  rm -rf "$SCRATCH/llama.cpp/examples"
  cp -r "$SCRATCH/llama_cpp_python-$LLAMA_SDIST_VER/vendor/llama.cpp/examples" "$SCRATCH/llama.cpp/examples"
}

# Builds the named targets (llama-bench, llama-quantize, llama-imatrix, llama-perplexity,
# llama-gguf-split, …) that are not built yet.
llama_tools() {
  llama_tools_source || return 1
  if [ ! -f "$SCRATCH/build/CMakeCache.txt" ]; then
    # Same CPU flags as edge's default build (.cargo/config.toml) and OpenMP, as
    # llama-cpp-sys-2 builds it.
    cmake -S "$SCRATCH/llama.cpp" -B "$SCRATCH/build" -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
      -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_OPENMP=ON -DGGML_CCACHE=OFF \
      -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
      -DLLAMA_BUILD_MTMD=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >/dev/null || return 1
  fi
  # Caches made before llama-server was wanted: turn the server (and mtmd, which it
  # links) on; only the targets asked for are built.
  if grep -q "LLAMA_BUILD_SERVER:BOOL=OFF" "$SCRATCH/build/CMakeCache.txt"; then
    cmake -S "$SCRATCH/llama.cpp" -B "$SCRATCH/build" -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_MTMD=ON \
      -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >/dev/null || return 1
  fi
  # Caches made before the examples were wanted: turn them on (only the targets asked
  # for are built).
  if grep -q "LLAMA_BUILD_EXAMPLES:BOOL=OFF" "$SCRATCH/build/CMakeCache.txt"; then
    cmake -S "$SCRATCH/llama.cpp" -B "$SCRATCH/build" -DLLAMA_BUILD_EXAMPLES=ON >/dev/null || return 1
  fi
  local missing=() t
  for t in "$@"; do
    [ -x "$LLAMA_BIN/$t" ] || missing+=("$t")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "llama-tools: building ${missing[*]} (several minutes the first time)"
    cmake --build "$SCRATCH/build" -j"${EDGE_BENCH_JOBS:-$(nproc)}" --target "${missing[@]}" >/dev/null || return 1
  fi
}
