#!/usr/bin/env bash
# How well the planner predicts published llama-bench results (issue: GPU cost model).
# Prices every row of profiles/measured/llama-bench.csv on its shipped profile and prints
# predicted / measured for decode (tg128) and prefill (pp512), then the summary for the
# rows the factors were fitted on and for the held-out third (split fixed in the table).
# Targets on the held-out rows: decode within ±20 % for ≥85 %, prefill within ±35 % for
# ≥70 %. With --fit it refits each backend group's factors first and prints them
# (scripts/apply-published-fit.py writes them into profiles/*.toml).
# Then the longest context per KV type for Llama 4 Scout (Q4_K_M) on every profile.
#
#   scripts/bench-plan-published.sh [--fit]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
EDGE="$ROOT/target/release/edge"
[ -x "$EDGE" ] || cargo build --release --manifest-path "$ROOT/Cargo.toml"
export NO_COLOR=1
echo "== edge profile published $*"
"$EDGE" profile published "$@"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# A private EDGE_HOME: only the shipped profiles.
export EDGE_HOME="$WORK/home"
"$EDGE" synth --full-size llama4-scout "$WORK/scout.gguf" >/dev/null
echo
echo "== longest context for Llama 4 Scout Q4_K_M (edge plan --max-ctx), per profile"
printf '%-28s %12s %12s %12s\n' profile f16 q8_0 q4_0
for p in $("$EDGE" profile list --json | python3 -c 'import json,sys; print(" ".join(r["name"] for r in json.load(sys.stdin)))'); do
  # Exits non-zero when no context fits; the JSON still says so per KV type.
  json="$("$EDGE" plan "$WORK/scout.gguf" --profile "$p" --max-ctx --json 2>/dev/null || true)"
  echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
mark = {"memory": "m", "model": "M"}
cells = ["%d (%s)" % (l["max_ctx"], mark[l["bound"]]) if l["max_ctx"] else "no fit" for l in d["limits"]]
print(f"{sys.argv[1]:<28} " + " ".join(f"{c:>12}" for c in cells))' "$p"
done
echo "(m) memory-bound, (M) model-bound: the model's own 10,485,760-token window"
