#!/usr/bin/env bash
# Download benchmark: edge's parallel ranged download against a single stream, on an
# in-process server (127.0.0.1) that throttles each connection to the same rate, as a
# CDN or a congested link does per TCP connection. Asserts parallel >= 3x single and
# prints the figure. Rerunnable; needs no network and no test data.
#
#   scripts/bench-download.sh [MiB] [KiB/s per connection] [connections]
#
# Defaults: 32 MiB at 4096 KiB/s per connection, 8 connections (about 10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGE_BENCH_MIB="${1:-32}"
export EDGE_BENCH_KIB_PER_S="${2:-4096}"
export EDGE_BENCH_CONNECTIONS="${3:-8}"
status=0
out="$(cargo test --release --test pull_bench -- --nocapture 2>&1)" || status=$?
grep -E "download benchmark|test result|panicked|^error" <<<"$out" || echo "$out"
exit "$status"
