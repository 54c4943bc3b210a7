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
#     target: edge's mean KLD <= 0.75x the baseline's; the same for a control fit
#     without Q4_1/Q5_1 (see below: this F16 is a dequantized Q4_1);
#  5. throughput: `edge quantize F16 -> Q4_K_M` against `llama-quantize`, same threads,
#     ROUNDS alternating rounds (so machine load hits both alike); target >= 0.95x.
#
#   scripts/bench-quant.sh [THREADS] [ROUNDS]
#   scripts/bench-quant.sh calibrate [THREADS]
#
# `calibrate` measures what `edge_quant::sensitivity` encodes: each tensor class in turn
# quantized to Q4_0 (everything else F16), its mean KLD on the evaluation text divided
# by the class's summed NMSE as the fitter measures it (EDGE_FIT_DEBUG), scaled so that
# attn_q is 0.6, next to the weights edge uses now.
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
MODE=bench
if [ "${1:-}" = calibrate ]; then MODE=calibrate; shift; fi
THREADS="${1:-2}"
ROUNDS="${2:-5}"
CALIB_CHUNKS="${CALIB_CHUNKS:-100}"
EVAL_CHUNKS="${EVAL_CHUNKS:-64}"
CTX=512
REUSE="${EDGE_BENCH_REUSE:-0}"

. "$ROOT/scripts/llama-tools.sh"
[ "$MODE" = calibrate ] || llama_tools llama-quantize llama-imatrix llama-perplexity
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
if ! keep imatrix-edge.gguf; then
  echo "bench: edge imatrix, $CALIB_CHUNKS chunks"
  "$EDGE" imatrix f16.gguf --text calib.txt --ctx $CTX --chunks "$CALIB_CHUNKS" -t "$THREADS" -o imatrix-edge.gguf >imatrix-edge.log 2>&1
fi

if [ "$MODE" = calibrate ]; then
  CAL_CHUNKS="${CAL_CHUNKS:-24}"
  EDGE_FIT_DEBUG=1 "$EDGE" quantize f16.gguf --dry-run --size 1G --imatrix imatrix-edge.gguf \
    -t "$THREADS" >/dev/null 2>fit-debug.txt
  for c in token_embd attn_q attn_k attn_v attn_output ffn_gate ffn_up ffn_down; do
    echo "calibrate: $c at Q4_0, KLD over $CAL_CHUNKS chunks"
    if [ $c = token_embd ]; then
      args=(--tensor-type '.=F16' --token-embedding-type Q4_0)
    else
      args=(--tensor-type "\\.$c\\.weight\$=Q4_0" --tensor-type '.=F16' --token-embedding-type F16)
    fi
    "$EDGE" quantize f16.gguf cal-$c.gguf --type Q8_0 "${args[@]}" -t "$THREADS" >/dev/null
    "$EDGE" eval cal-$c.gguf --ref f16.gguf --text eval.txt --ctx $CTX --chunks "$CAL_CHUNKS" \
      -t "$THREADS" --cache-dir "$W/eval-cache" --json >cal-$c.json
    rm -f cal-$c.gguf
  done
  python3 - <<'PY'
import collections, json
nmse, weight = collections.defaultdict(float), {}
for line in open('fit-debug.txt'):
    p = line.split()
    if len(p) < 3 or not p[1].startswith('weight='):
        continue
    name = p[0]
    cls = name.split('.')[2] if name.startswith('blk.') else name.split('.')[0]
    w = float(p[1][7:])
    weight[cls] = w
    for c in p[2:]:
        t, _, loss = c.split(':')
        if t == 'q4_0':
            nmse[cls] += float(loss) / w
rows = []
for cls in ('token_embd', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'):
    k = json.load(open(f'cal-{cls}.json'))['kld']
    rows.append((cls, nmse[cls], k['kld_mean'], k['kld_mean_unc'], k['kld_mean'] / nmse[cls]))
scale = 0.6 / dict((r[0], r[4]) for r in rows)['attn_q']
print(f"{'class':12} {'sum NMSE q4_0':>14} {'mean KLD':>18} {'KLD/NMSE':>9} {'measured':>9} {'edge uses':>9}")
for cls, n, kl, u, r in rows:
    print(f"{cls:12} {n:14.4e} {kl:10.6f}±{u:.6f} {r:9.4f} {r * scale:9.3f} {weight.get(cls, 0):9.3f}")
PY
  exit 0
fi

if ! keep imatrix-llama.gguf; then
  echo "bench: llama-imatrix, $CALIB_CHUNKS chunks"
  "$LI" -m f16.gguf -f calib.txt -c $CTX --chunks "$CALIB_CHUNKS" -t "$THREADS" -o imatrix-llama.gguf >imatrix-llama.log 2>&1
fi
echo "bench: llama-quantize Q4_K_M (llama imatrix)"
"$LQ" --imatrix imatrix-llama.gguf f16.gguf base-q4km.gguf Q4_K_M "$THREADS" >base-q4km.log 2>&1
BASE_SIZE=$(stat -c %s base-q4km.gguf)
echo "bench: edge quantize --size $BASE_SIZE (edge imatrix)"
"$EDGE" quantize f16.gguf edge-fit.gguf --size "$BASE_SIZE" --imatrix imatrix-edge.gguf -t "$THREADS" >edge-fit.log
EDGE_SIZE=$(stat -c %s edge-fit.gguf)
# The F16 here is a dequantized Q4_1 (and Q8_0 for token_embd), so Q4_1 and Q5_1 (whose
# grid holds Q4_1's) reproduce most weights almost exactly, and the fit rightly takes
# them. A control run without those two shows the fit on weights without that shortcut.
echo "bench: edge quantize --size $BASE_SIZE without Q4_1/Q5_1 (control)"
EDGE_FIT_EXCLUDE=q4_1,q5_1 "$EDGE" quantize f16.gguf edge-ctl.gguf --size "$BASE_SIZE" \
  --imatrix imatrix-edge.gguf -t "$THREADS" >edge-ctl.log
CTL_SIZE=$(stat -c %s edge-ctl.gguf)

# --- quality --------------------------------------------------------------------------
echo "bench: edge eval, $EVAL_CHUNKS chunks"
for m in base-q4km edge-fit edge-ctl; do
  "$EDGE" eval $m.gguf --ref f16.gguf --text eval.txt --ctx $CTX --chunks "$EVAL_CHUNKS" \
    -t "$THREADS" --cache-dir "$W/eval-cache" --json >eval-$m.json
done
echo "bench: llama-perplexity --kl-divergence, $EVAL_CHUNKS chunks"
if ! keep kld-base.bin; then
  "$LP" -m f16.gguf -f eval.txt -c $CTX --chunks "$EVAL_CHUNKS" -t "$THREADS" \
    --kl-divergence-base kld-base.bin >ppl-f16.log 2>&1
fi
for m in base-q4km edge-fit edge-ctl; do
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
# Same llama.cpp code, but the two builds' compilers round a few ties differently.
SAME=$(cmp -l tp-llama.gguf tp-edge.gguf 2>/dev/null | wc -l | awk -v n="$(stat -c %s tp-edge.gguf)" \
  -v m="$(stat -c %s tp-llama.gguf)" '{ printf "%s, %d of %d bytes differ", (n == m ? "same size" : "SIZES DIFFER"), $1, n }')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$BASE_SIZE" "$EDGE_SIZE" "$CTL_SIZE" "$SAME" "$LOAD" "$THREADS" <<'PY'
import json, re, statistics as st, sys
base_size, edge_size, ctl_size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
same, load, threads = sys.argv[4], sys.argv[5], sys.argv[6]
MODELS = (('base-q4km', 'llama Q4_K_M+imatrix', base_size), ('edge-fit', 'edge --size', edge_size),
          ('edge-ctl', 'edge --size, no Q4_1/5_1', ctl_size))
def lp(m):
    t = open(f'ppl-{m}.log').read()
    g = lambda pat: float(re.search(pat, t).group(1))
    return {'ppl': g(r'Mean PPL\(Q\)\s*:\s*([\d.]+)'), 'ppl_ref': g(r'Mean PPL\(base\)\s*:\s*([\d.]+)'),
            'kld': g(r'Mean\s+KLD:\s*([\d.]+)'), 'same_top': g(r'Same top p:\s*([\d.]+)')}
def ee(m):
    d = json.load(open(f'eval-{m}.json'))
    return {'ppl': d['ppl'], 'ppl_ref': d['kld']['ppl_ref'], 'kld': d['kld']['kld_mean'],
            'kld_unc': d['kld']['kld_mean_unc'], 'same_top': d['kld']['same_top_pct']}
E = {m: ee(m) for m, _, _ in MODELS}
L = {m: lp(m) for m, _, _ in MODELS}
times = {'llama': [], 'edge': []}
for line in open('times.txt'):
    k, v = line.split()
    times[k].append(float(v))
def mix(log):
    out = {}
    for line in open(log):
        p = line.split()
        if len(p) >= 7 and p[1].isdigit() and p[0] != 'norm':
            out[p[0]] = ' '.join(p[6:])
    return '; '.join(f"{k} {v}" for k, v in out.items())
print()
print(f"SmolLM2-135M-Instruct, reference F16 PPL {E['base-q4km']['ppl_ref']:.4f} (edge eval) / "
      f"{L['base-q4km']['ppl_ref']:.4f} (llama-perplexity)")
print(f"{'':26} {'bytes':>11} {'KLD edge eval':>17} {'KLD llama-ppl':>14} {'PPL edge':>9} {'PPL llama':>9} {'same top':>9}")
for m, name, size in MODELS:
    print(f"{name:26} {size:>11} {E[m]['kld']:>8.6f}±{E[m]['kld_unc']:.6f} {L[m]['kld']:>14.6f} "
          f"{E[m]['ppl']:>9.4f} {L[m]['ppl']:>9.4f} {E[m]['same_top']:>8.2f}%")
print(f"edge mix:    {mix('edge-fit.log')}")
print(f"control mix: {mix('edge-ctl.log')}")
for m, name, size in MODELS[1:]:
    re_, rl = E[m]['kld'] / E['base-q4km']['kld'], L[m]['kld'] / L['base-q4km']['kld']
    print(f"{name}: KLD ratio to the baseline {re_:.3f} (edge eval), {rl:.3f} (llama-perplexity), "
          f"size ratio {size / base_size:.4f}   target <= 0.75: {'met' if max(re_, rl) <= 0.75 else 'MISSED'}")
lm, em = st.mean(times['llama']), st.mean(times['edge'])
print(f"quantize F16->Q4_K_M, {threads} threads: llama-quantize {lm:.2f}s, edge {em:.2f}s "
      f"(rounds llama {[round(x, 2) for x in times['llama']]}, edge {[round(x, 2) for x in times['edge']]})")
print(f"throughput ratio edge/llama-quantize: {lm / em:.3f}   target >= 0.95: {'met' if lm / em >= 0.95 else 'MISSED'}"
      f"   (the two files: {same}; load average at the end: {load})")
PY
