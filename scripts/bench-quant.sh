#!/usr/bin/env bash
# Quality and speed of `edge quantize` against llama.cpp's own tools (llama-quantize,
# llama-imatrix, llama-perplexity, built by scripts/llama-tools.sh from the llama.cpp
# that llama-cpp-sys-2 bundles), on SmolLM2-135M-Instruct:
#
#  1. reference: SmolLM2 F16, made from the Q4_1 test model (scripts/fetch-test-data.sh)
#     with `edge quantize --type F16 --allow-requantize`;
#  2. baseline: `llama-quantize Q4_K_M` with an imatrix from `llama-imatrix`;
#  3. edge: `edge quantize --size <the baseline's file size>` with an imatrix from
#     `edge imatrix`, both imatrices on the same calibration text;
#  4. mean KL divergence of both against the reference on a distinct evaluation text,
#     by `edge eval --ref` and cross-checked by `llama-perplexity --kl-divergence`;
#     target: edge's mean KLD <= 0.75x the baseline's;
#  5. throughput: `edge quantize F16 -> Q4_K_M` against `llama-quantize`, same threads,
#     ROUNDS alternating rounds (so machine load hits both alike); target >= 0.95x.
#
#   scripts/bench-quant.sh [THREADS] [ROUNDS]
#
# Texts (real English prose, public domain, from a Debian package, pinned by sha256):
# Debian's r-cran-janeaustenr 1.0.0-1 (Jane Austen's six novels, from Project
# Gutenberg, as R character vectors), read out of its R data file by the Python below.
#   calibration: Pride and Prejudice (1813), 684,768 bytes
#   evaluation:  Persuasion (1818),          466,854 bytes
# Only the first CALIB_CHUNKS / EVAL_CHUNKS chunks of 512 tokens are used (defaults
# 100 and 64: about 51k calibration tokens, 33k evaluation tokens of which half scored).
#
# Env: EDGE_BENCH_DIR (scratch, default ~/.cache/edge-bench; this writes under
# quant/ there, about 2.5 GB with the KLD logits), CALIB_CHUNKS, EVAL_CHUNKS,
# EDGE_BENCH_REUSE=1 (keep the texts, F16, imatrices and reference logits of an earlier
# run), and those of scripts/llama-tools.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
THREADS="${1:-2}"
ROUNDS="${2:-3}"
CALIB_CHUNKS="${CALIB_CHUNKS:-100}"
EVAL_CHUNKS="${EVAL_CHUNKS:-64}"
CTX=512
REUSE="${EDGE_BENCH_REUSE:-0}"

. "$ROOT/scripts/llama-tools.sh"
llama_tools llama-quantize llama-imatrix llama-perplexity
LQ="$LLAMA_BIN/llama-quantize"
LI="$LLAMA_BIN/llama-imatrix"
LP="$LLAMA_BIN/llama-perplexity"

EDGE="$ROOT/target/release/edge"
[ -x "$EDGE" ] || (cd "$ROOT" && cargo build --release)
Q41="$ROOT/target/test-data/smollm2-135m-instruct-q4_1.gguf"
[ -f "$Q41" ] || "$ROOT/scripts/fetch-test-data.sh"

W="$SCRATCH/quant"
mkdir -p "$W"
cd "$W"
keep() { [ "$REUSE" = 1 ] && [ -s "$1" ]; }

# --- texts ----------------------------------------------------------------------------
DEB=r-cran-janeaustenr_1.0.0-1_all.deb
DEB_SHA=df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95
CALIB_SHA=dfc684d4f857fa938268f9ab9c5567b64bd0691251eca959644adeabe6287a4d
EVAL_SHA=8061549557aebd2fd6e353d18d9197cb707029112bd52d4d8b174583a925848a
check() { echo "$2  $1" | sha256sum --quiet -c - >/dev/null 2>&1; }
if ! check calib.txt "$CALIB_SHA" || ! check eval.txt "$EVAL_SHA"; then
  if ! check "$DEB" "$DEB_SHA"; then
    echo "bench: fetching Debian's r-cran-janeaustenr 1.0.0-1"
    apt-get download r-cran-janeaustenr=1.0.0-1 >/dev/null 2>&1 \
      || { apt-get update >/dev/null && apt-get download r-cran-janeaustenr=1.0.0-1 >/dev/null; }
    check "$DEB" "$DEB_SHA" || { echo "bench: sha256 mismatch for $DEB" >&2; exit 1; }
  fi
  rm -rf deb && mkdir deb && dpkg-deb -x "$DEB" deb
  # R's lazy-load data file: per object a 4-byte length and a zlib stream of R's XDR
  # serialization; each novel is a character vector (STRSXP of CHARSXP lines).
  python3 - deb/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb <<'PY'
import struct, sys, zlib
buf = open(sys.argv[1], 'rb').read()
off, novels = 0, {}
while off < len(buf):
    n = struct.unpack('>I', buf[off:off + 4])[0]
    d = zlib.decompressobj()
    data = d.decompress(buf[off + 4:])
    assert len(data) == n and data[:2] == b'X\n'
    off = len(buf) - len(d.unused_data)
    p = 2
    ver = struct.unpack('>i', data[p:p + 4])[0]; p += 12
    if ver == 3:
        p += 4 + struct.unpack('>i', data[p:p + 4])[0]
    flags, count = struct.unpack('>ii', data[p:p + 8]); p += 8
    assert flags & 0xff == 16  # STRSXP
    lines = []
    for _ in range(count):
        f, ln = struct.unpack('>ii', data[p:p + 8]); p += 8
        assert f & 0xff == 9  # CHARSXP
        if ln < 0:
            lines.append('')
        else:
            lines.append(data[p:p + ln].decode('utf-8')); p += ln
    novels[lines[0].strip().upper()] = '\n'.join(lines) + '\n'
open('calib.txt', 'w').write(novels['PRIDE AND PREJUDICE'])
open('eval.txt', 'w').write(novels['PERSUASION'])
PY
  check calib.txt "$CALIB_SHA" || { echo "bench: sha256 mismatch for calib.txt" >&2; exit 1; }
  check eval.txt "$EVAL_SHA" || { echo "bench: sha256 mismatch for eval.txt" >&2; exit 1; }
fi

# --- models ---------------------------------------------------------------------------
keep f16.gguf || "$EDGE" quantize "$Q41" f16.gguf --type F16 --allow-requantize >/dev/null
if ! keep imatrix-llama.gguf; then
  echo "bench: llama-imatrix, $CALIB_CHUNKS chunks"
  "$LI" -m f16.gguf -f calib.txt -c $CTX --chunks "$CALIB_CHUNKS" -t "$THREADS" -o imatrix-llama.gguf >imatrix-llama.log 2>&1
fi
if ! keep imatrix-edge.gguf; then
  echo "bench: edge imatrix, $CALIB_CHUNKS chunks"
  "$EDGE" imatrix f16.gguf --text calib.txt --ctx $CTX --chunks "$CALIB_CHUNKS" -t "$THREADS" -o imatrix-edge.gguf >imatrix-edge.log 2>&1
fi
echo "bench: llama-quantize Q4_K_M (llama imatrix)"
"$LQ" --imatrix imatrix-llama.gguf f16.gguf base-q4km.gguf Q4_K_M "$THREADS" >base-q4km.log 2>&1
BASE_SIZE=$(stat -c %s base-q4km.gguf)
echo "bench: edge quantize --size $BASE_SIZE (edge imatrix)"
"$EDGE" quantize f16.gguf edge-fit.gguf --size "$BASE_SIZE" --imatrix imatrix-edge.gguf -t "$THREADS" >edge-fit.log
EDGE_SIZE=$(stat -c %s edge-fit.gguf)

# --- quality --------------------------------------------------------------------------
echo "bench: edge eval, $EVAL_CHUNKS chunks"
for m in base-q4km edge-fit; do
  "$EDGE" eval $m.gguf --ref f16.gguf --text eval.txt --ctx $CTX --chunks "$EVAL_CHUNKS" \
    -t "$THREADS" --cache-dir "$W/eval-cache" --json >eval-$m.json
done
echo "bench: llama-perplexity --kl-divergence, $EVAL_CHUNKS chunks"
if ! keep kld-base.bin; then
  "$LP" -m f16.gguf -f eval.txt -c $CTX --chunks "$EVAL_CHUNKS" -t "$THREADS" \
    --kl-divergence-base kld-base.bin >ppl-f16.log 2>&1
fi
for m in base-q4km edge-fit; do
  "$LP" -m $m.gguf -f eval.txt -c $CTX --chunks "$EVAL_CHUNKS" -t "$THREADS" \
    --kl-divergence-base kld-base.bin --kl-divergence >ppl-$m.log 2>&1
done

# --- throughput -----------------------------------------------------------------------
echo "bench: quantize throughput F16 -> Q4_K_M, $THREADS threads, $ROUNDS alternating rounds"
: >times.txt
now() { date +%s.%N; }
for i in $(seq 1 "$ROUNDS"); do
  t0=$(now); "$LQ" f16.gguf tp-llama.gguf Q4_K_M "$THREADS" >tp-llama.log 2>&1; t1=$(now)
  "$EDGE" quantize f16.gguf tp-edge.gguf --type Q4_K_M -t "$THREADS" >tp-edge.log; t2=$(now)
  awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "llama %.3f\nedge %.3f\n", b - a, c - b }' >>times.txt
done
SAME=$(cmp -s tp-llama.gguf tp-edge.gguf && echo yes || echo no)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$BASE_SIZE" "$EDGE_SIZE" "$SAME" "$LOAD" "$THREADS" <<'PY'
import json, re, statistics as st, sys
base_size, edge_size, same, load, threads = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def lp(m):
    t = open(f'ppl-{m}.log').read()
    g = lambda pat: float(re.search(pat, t).group(1))
    return {'ppl': g(r'Mean PPL\(Q\)\s*:\s*([\d.]+)'), 'ppl_ref': g(r'Mean PPL\(base\)\s*:\s*([\d.]+)'),
            'kld': g(r'Mean\s+KLD:\s*([\d.]+)'), 'same_top': g(r'Same top p:\s*([\d.]+)')}
def ee(m):
    d = json.load(open(f'eval-{m}.json'))
    return {'ppl': d['ppl'], 'ppl_ref': d['kld']['ppl_ref'], 'kld': d['kld']['kld_mean'],
            'kld_unc': d['kld']['kld_mean_unc'], 'same_top': d['kld']['same_top_pct']}
E = {m: ee(m) for m in ('base-q4km', 'edge-fit')}
L = {m: lp(m) for m in ('base-q4km', 'edge-fit')}
times = {'llama': [], 'edge': []}
for line in open('times.txt'):
    k, v = line.split()
    times[k].append(float(v))
mix = {}
for line in open('edge-fit.log'):
    p = line.split()
    if len(p) >= 7 and p[1].isdigit():
        mix[p[0]] = ' '.join(p[6:])
print()
print(f"SmolLM2-135M-Instruct, reference F16 PPL {E['base-q4km']['ppl_ref']:.4f} (edge eval) / "
      f"{L['base-q4km']['ppl_ref']:.4f} (llama-perplexity)")
print(f"{'':22} {'bytes':>11} {'KLD edge eval':>16} {'KLD llama-ppl':>14} {'PPL edge':>9} {'PPL llama':>9} {'same top':>9}")
for m, name in (('base-q4km', 'llama Q4_K_M+imatrix'), ('edge-fit', 'edge --size')):
    size = base_size if m == 'base-q4km' else edge_size
    print(f"{name:22} {size:>11} {E[m]['kld']:>9.6f}±{E[m]['kld_unc']:.6f} {L[m]['kld']:>14.6f} "
          f"{E[m]['ppl']:>9.4f} {L[m]['ppl']:>9.4f} {E[m]['same_top']:>8.2f}%")
re_, rl = E['edge-fit']['kld'] / E['base-q4km']['kld'], L['edge-fit']['kld'] / L['base-q4km']['kld']
print(f"edge mix: " + '; '.join(f"{k} {v}" for k, v in mix.items() if k != 'norm'))
print(f"KLD ratio edge/baseline: {re_:.3f} (edge eval), {rl:.3f} (llama-perplexity)   target <= 0.75: "
      f"{'met' if max(re_, rl) <= 0.75 else 'MISSED'}")
print(f"size ratio edge/baseline: {edge_size / base_size:.4f}")
lm, em = st.mean(times['llama']), st.mean(times['edge'])
print(f"quantize F16->Q4_K_M, {threads} threads: llama-quantize {lm:.2f}s, edge {em:.2f}s "
      f"(rounds llama {[round(x, 2) for x in times['llama']]}, edge {[round(x, 2) for x in times['edge']]})")
print(f"throughput ratio edge/llama-quantize: {lm / em:.3f}   target >= 0.95: {'met' if lm / em >= 0.95 else 'MISSED'}"
      f"   (files byte-identical: {same}; load average at the end: {load})")
PY
