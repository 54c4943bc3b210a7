//! Perplexity and KL divergence, with the definitions of llama.cpp's
//! `llama-perplexity` (and `--kl-divergence`), so the figures are comparable:
//!
//! - the text is tokenized once (BOS added as the model wants), cut into chunks of
//!   `n_ctx` tokens; each chunk is evaluated from an empty KV cache with its first token
//!   replaced by BOS; only the second half of each chunk is scored (positions
//!   `n_ctx/2 .. n_ctx-1`, each predicting the next token);
//! - PPL = exp(mean NLL); KLD per token = Σ p_ref·(log p_ref − log p) over the reference
//!   log-probabilities stored as llama.cpp stores them (16-bit, the range clipped to 16
//!   nats below the top); ln(PPL(Q)/PPL(ref)) = mean NLL − mean NLL_ref; same top token
//!   = argmax agreement; percentiles interpolate linearly between sorted values.
//!
//! The reference's log-probabilities are cached on disk (llama.cpp's layout: per
//! scored token two f32 (scale, min) and n_vocab u16, padded to even), keyed by the
//! reference file, the text and the context size.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::engine::{
    tokenize_text, ContextSpec, EngineError, LogitsRunner, Model, Token as LlamaToken,
};
use crate::partial_file::PartialFile;

/// Per-token log-softmax facts.
struct Lsm {
    /// log(sum exp(l - max)) + max.
    lse: f32,
    argmax: usize,
}

fn lsm(logits: &[f32]) -> Lsm {
    let (mut max, mut argmax) = (f32::NEG_INFINITY, 0);
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            max = l;
            argmax = i;
        }
    }
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    Lsm {
        lse: max + (sum.ln() as f32),
        argmax,
    }
}

/// llama.cpp's 16-bit log-prob record of one token (`log_softmax` in perplexity.cpp).
fn encode_logprobs(logits: &[f32], out: &mut Vec<u16>) {
    let nv = 2 * logits.len().div_ceil(2) + 4;
    let start = out.len();
    out.resize(start + nv, 0);
    let rec = &mut out[start..];
    let (mut max, mut min) = (logits[0], logits[0]);
    for &l in logits {
        max = max.max(l);
        min = min.min(l);
    }
    let min = min.max(max - 16.0);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let lse = sum.ln() as f32;
    let min_log_prob = min - max - lse;
    let scale = (max - min) / 65535.0;
    let s = scale.to_le_bytes();
    let m = min_log_prob.to_le_bytes();
    rec[0] = u16::from_le_bytes([s[0], s[1]]);
    rec[1] = u16::from_le_bytes([s[2], s[3]]);
    rec[2] = u16::from_le_bytes([m[0], m[1]]);
    rec[3] = u16::from_le_bytes([m[2], m[3]]);
    if scale > 0.0 {
        let inv = 1.0 / scale;
        for (r, &l) in rec[4..].iter_mut().zip(logits) {
            *r = if l > min {
                (inv * (l - min)).round() as u16
            } else {
                0
            };
        }
    }
}

fn decode_header(rec: &[u16]) -> (f32, f32) {
    let b = |i: usize| rec[i].to_le_bytes();
    let (s0, s1, m0, m1) = (b(0), b(1), b(2), b(3));
    (
        f32::from_le_bytes([s0[0], s0[1], s1[0], s1[1]]),
        f32::from_le_bytes([m0[0], m0[1], m1[0], m1[1]]),
    )
}

/// Accumulated statistics.
#[derive(Default)]
struct Acc {
    nll: Vec<f64>,
    nll_ref: Vec<f64>,
    kld: Vec<f64>,
    same_top: usize,
}

/// One token against its reference record (`log_softmax` with a base in perplexity.cpp).
fn compare(logits: &[f32], rec: &[u16], tok: usize, acc: &mut Acc) {
    let l = lsm(logits);
    let (scale, min_lp) = decode_header(rec);
    let base = &rec[4..];
    let nll = l.lse - logits[tok];
    let nll_ref = -(scale * f32::from(base[tok]) + min_lp);
    let mut sum = 0f64;
    let (mut imax_ref, mut best) = (0usize, f32::NEG_INFINITY);
    for (i, &q) in base.iter().take(logits.len()).enumerate() {
        let lp_ref = scale * f32::from(q) + min_lp;
        if i == 0 || lp_ref > best {
            best = lp_ref;
            imax_ref = i;
        }
        if lp_ref > -16.0 {
            let p = lp_ref.exp();
            sum += f64::from(p * (lp_ref - logits[i] + l.lse));
        }
    }
    acc.nll.push(f64::from(nll));
    acc.nll_ref.push(f64::from(nll_ref));
    acc.kld.push(sum);
    if imax_ref == l.argmax {
        acc.same_top += 1;
    }
}

/// llama.cpp's percentile: linear interpolation on sorted values.
pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    if fraction <= 0.0 {
        return sorted[0];
    }
    if fraction >= 1.0 {
        return sorted[sorted.len() - 1];
    }
    let p = fraction * (sorted.len() - 1) as f64;
    let ip = p as usize;
    let f = p - ip as f64;
    (1.0 - f) * sorted[ip] + f * sorted[(ip + 1).min(sorted.len() - 1)]
}

/// Mean and its standard error (`mean_and_uncertainty`).
fn mean_unc(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let mean2 = v.iter().map(|x| x * x).sum::<f64>() / n;
    let var = if v.len() > 1 {
        ((mean2 - mean * mean) / (n - 1.0)).max(0.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

#[derive(Debug, Clone, Serialize)]
pub struct KldStats {
    pub ppl_ref: f64,
    pub ln_ppl_ratio: f64,
    pub ln_ppl_ratio_unc: f64,
    pub ppl_ratio: f64,
    pub kld_mean: f64,
    pub kld_mean_unc: f64,
    pub kld_median: f64,
    pub kld_p99: f64,
    pub kld_p999: f64,
    pub kld_max: f64,
    pub same_top_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub model: String,
    pub reference: Option<String>,
    pub n_ctx: u32,
    pub chunks: usize,
    pub tokens_scored: usize,
    pub ppl: f64,
    pub ppl_unc: f64,
    pub kld: Option<KldStats>,
    pub reference_cached: bool,
}

/// Loads a model placed as the plan says, with the context to score it in (its
/// `n_ctx` is the chunk size). The command supplies it, so eval loads through the planner.
pub type ModelLoader<'a> = dyn Fn(&Path) -> Result<(Model, ContextSpec)> + 'a;

pub struct EvalOptions<'a> {
    pub n_ctx: u32,
    pub max_chunks: Option<usize>,
    pub cache_dir: Option<PathBuf>,
    pub load: &'a ModelLoader<'a>,
}

fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x100000001b3);
    }
}

fn cache_dir(o: &EvalOptions) -> Option<PathBuf> {
    if let Some(d) = &o.cache_dir {
        return Some(d.clone());
    }
    if let Some(h) = std::env::var_os("EDGE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(h).join("cache/eval"));
    }
    directories::ProjectDirs::from("", "", "edge").map(|d| d.cache_dir().join("eval"))
}

fn cache_key(reference: &Path, text: &str, o: &EvalOptions) -> String {
    let mut h = 0xcbf29ce484222325u64;
    let canon = reference
        .canonicalize()
        .unwrap_or_else(|_| reference.to_path_buf());
    fnv(&mut h, canon.to_string_lossy().as_bytes());
    if let Ok(m) = std::fs::metadata(reference) {
        fnv(&mut h, &m.len().to_le_bytes());
        if let Ok(t) = m.modified().and_then(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_err(std::io::Error::other)
        }) {
            fnv(&mut h, &t.as_nanos().to_le_bytes());
        }
    }
    fnv(&mut h, text.as_bytes());
    fnv(&mut h, &o.n_ctx.to_le_bytes());
    fnv(&mut h, &(o.max_chunks.unwrap_or(0) as u64).to_le_bytes());
    format!("{h:016x}.kld")
}

const MAGIC: &[u8; 8] = b"EDGEKLD1";

fn tokenize(model: &Model, text: &str, o: &EvalOptions) -> Result<(Vec<LlamaToken>, usize)> {
    let tokens = tokenize_text(model, text);
    let n = o.n_ctx as usize;
    let mut chunks = tokens.len() / n;
    if let Some(m) = o.max_chunks {
        chunks = chunks.min(m);
    }
    if chunks == 0 {
        return Err(EngineError::TextTooShort {
            tokens: tokens.len(),
            chunk: n,
        }
        .into());
    }
    Ok((tokens, chunks))
}

/// Perplexity of `model` on `text`, and with `reference` the KL divergence statistics.
pub fn evaluate(
    model_path: &Path,
    reference: Option<&Path>,
    text: &str,
    o: &EvalOptions,
) -> Result<EvalResult> {
    let n = o.n_ctx as usize;
    let scored_per_chunk = n - 1 - n / 2;
    let bar = eval_bar();
    let Some(ref_path) = reference else {
        let (model, spec) = (o.load)(model_path)?;
        let (tokens, chunks) = tokenize(&model, text, o)?;
        let mut runner = LogitsRunner::new(&model, &spec)?;
        let mut nll = Vec::with_capacity(chunks * scored_per_chunk);
        bar.set_length(chunks as u64);
        for c in 0..chunks {
            runner.chunk(&tokens[c * n..(c + 1) * n], |logits, tok| {
                let l = lsm(logits);
                nll.push(f64::from(l.lse - logits[tok]));
            })?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let (m, u) = mean_unc(&nll);
        return Ok(EvalResult {
            model: model_path.display().to_string(),
            reference: None,
            n_ctx: o.n_ctx,
            chunks,
            tokens_scored: nll.len(),
            ppl: m.exp(),
            ppl_unc: m.exp() * u,
            kld: None,
            reference_cached: false,
        });
    };

    // 1. Reference log-probs: from the cache, or computed and cached.
    let dir = cache_dir(o);
    let cache = dir.as_ref().map(|d| d.join(cache_key(ref_path, text, o)));
    let cached = cache.as_ref().is_some_and(|c| c.is_file());
    let (tokens, chunks, n_vocab) = match cache
        .as_ref()
        .filter(|_| cached)
        .map(|c| read_cache_header(c))
    {
        Some(Ok(h)) => h,
        _ => {
            let (rmodel, rspec) = (o.load)(ref_path).context("reference")?;
            let (tokens, chunks) = tokenize(&rmodel, text, o)?;
            let n_vocab = rmodel.n_vocab();
            let target = cache.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("edge-eval-{}.kld", std::process::id()))
            });
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            // The cache's size is known before any logit is computed: refuse a disk
            // without room now, not after minutes of reference evaluation.
            let needed = cache_bytes(tokens.len(), chunks, n, n_vocab);
            let mut partial = PartialFile::create(&target, Some(needed))
                .with_context(|| "caching the reference log-probs".to_string())?;
            let res = (|| -> Result<()> {
                let mut w = BufWriter::new(partial.file());
                w.write_all(MAGIC)?;
                for v in [o.n_ctx, n_vocab as u32, chunks as u32, tokens.len() as u32] {
                    w.write_all(&v.to_le_bytes())?;
                }
                for t in &tokens {
                    w.write_all(&t.0.to_le_bytes())?;
                }
                let mut runner = LogitsRunner::new(&rmodel, &rspec)?;
                bar.set_length(2 * chunks as u64);
                bar.set_message("reference");
                let mut rec = Vec::new();
                for c in 0..chunks {
                    rec.clear();
                    runner.chunk(&tokens[c * n..(c + 1) * n], |logits, _| {
                        encode_logprobs(logits, &mut rec)
                    })?;
                    let bytes: Vec<u8> = rec.iter().flat_map(|v| v.to_le_bytes()).collect();
                    w.write_all(&bytes)?;
                    bar.inc(1);
                }
                w.flush()?;
                Ok(())
            })();
            let res = match res {
                Ok(()) => partial.commit().map_err(anyhow::Error::from),
                Err(e) => match e.downcast::<std::io::Error>() {
                    Ok(io) => Err(partial.fail(io, Some(needed)).into()),
                    Err(other) => Err(other),
                },
            };
            if let Err(e) = res {
                return Err(e.context(format!(
                    "caching the reference log-probs in {}",
                    target.display()
                )));
            }
            drop(rmodel);
            return compare_with(
                model_path,
                ref_path,
                &target,
                tokens,
                chunks,
                n_vocab,
                o,
                bar,
                false,
                cache.is_none(),
            );
        }
    };
    let target = cache.ok_or_else(|| anyhow!("no cache"))?;
    compare_with(
        model_path, ref_path, &target, tokens, chunks, n_vocab, o, bar, cached, false,
    )
}

/// Bytes of the reference cache: magic, four u32s, the tokens, then one 16-bit record
/// per scored token (the second half of each chunk but its last token).
fn cache_bytes(n_tokens: usize, chunks: usize, n_ctx: usize, n_vocab: usize) -> u64 {
    let record = (2 * n_vocab.div_ceil(2) + 4) as u64 * 2;
    let scored = n_ctx.saturating_sub(1 + n_ctx / 2) as u64;
    (MAGIC.len() + 16 + 4 * n_tokens) as u64 + chunks as u64 * scored * record
}

fn read_cache_header(path: &Path) -> Result<(Vec<LlamaToken>, usize, usize)> {
    let mut r = BufReader::new(std::fs::File::open(path)?);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        bail!("bad cache");
    }
    let mut u = [0u8; 4];
    let mut next = || -> Result<u32> {
        r.read_exact(&mut u)?;
        Ok(u32::from_le_bytes(u))
    };
    let (_ctx, n_vocab, chunks, n_tokens) = (next()?, next()?, next()?, next()?);
    let mut tokens = Vec::with_capacity(n_tokens as usize);
    for _ in 0..n_tokens {
        tokens.push(LlamaToken(next()? as i32));
    }
    Ok((tokens, chunks as usize, n_vocab as usize))
}

#[allow(clippy::too_many_arguments)]
fn compare_with(
    model_path: &Path,
    ref_path: &Path,
    cache: &Path,
    tokens: Vec<LlamaToken>,
    chunks: usize,
    n_vocab: usize,
    o: &EvalOptions,
    bar: indicatif::ProgressBar,
    cached: bool,
    remove_after: bool,
) -> Result<EvalResult> {
    let result = (|| -> Result<EvalResult> {
        let n = o.n_ctx as usize;
        let (model, spec) = (o.load)(model_path)?;
        if model.n_vocab() != n_vocab {
            bail!(
                "{} has a vocabulary of {} tokens, the reference {} has {}: they are not comparable",
                model_path.display(),
                model.n_vocab(),
                ref_path.display(),
                n_vocab
            );
        }
        let mut r = BufReader::new(std::fs::File::open(cache)?);
        let header = 8 + 16 + 4 * tokens.len();
        std::io::copy(&mut (&mut r).take(header as u64), &mut std::io::sink())?;
        let nv = 2 * n_vocab.div_ceil(2) + 4;
        let scored = n - 1 - n / 2;
        let mut buf = vec![0u8; nv * 2 * scored];
        let mut rec = vec![0u16; nv * scored];
        let mut runner = LogitsRunner::new(&model, &spec)?;
        let mut acc = Acc::default();
        if bar.length() != Some(2 * chunks as u64) {
            bar.set_length(chunks as u64);
        }
        bar.set_message("model");
        for c in 0..chunks {
            r.read_exact(&mut buf)
                .context("the reference cache is truncated")?;
            for (d, s) in rec.iter_mut().zip(buf.chunks_exact(2)) {
                *d = u16::from_le_bytes([s[0], s[1]]);
            }
            let mut k = 0;
            runner.chunk(&tokens[c * n..(c + 1) * n], |logits, tok| {
                compare(logits, &rec[k * nv..(k + 1) * nv], tok, &mut acc);
                k += 1;
            })?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let (m, u) = mean_unc(&acc.nll);
        let (mr, _) = mean_unc(&acc.nll_ref);
        let diff: Vec<f64> = acc
            .nll
            .iter()
            .zip(&acc.nll_ref)
            .map(|(a, b)| a - b)
            .collect();
        let (lr, lru) = mean_unc(&diff);
        let (km, ku) = mean_unc(&acc.kld);
        let mut sorted = acc.kld.clone();
        sorted.sort_by(f64::total_cmp);
        Ok(EvalResult {
            model: model_path.display().to_string(),
            reference: Some(ref_path.display().to_string()),
            n_ctx: o.n_ctx,
            chunks,
            tokens_scored: acc.nll.len(),
            ppl: m.exp(),
            ppl_unc: m.exp() * u,
            kld: Some(KldStats {
                ppl_ref: mr.exp(),
                ln_ppl_ratio: lr,
                ln_ppl_ratio_unc: lru,
                ppl_ratio: lr.exp(),
                kld_mean: km,
                kld_mean_unc: ku,
                kld_median: percentile(&sorted, 0.5),
                kld_p99: percentile(&sorted, 0.99),
                kld_p999: percentile(&sorted, 0.999),
                kld_max: sorted.last().copied().unwrap_or(0.0),
                same_top_pct: 100.0 * acc.same_top as f64 / acc.nll.len().max(1) as f64,
            }),
            reference_cached: cached,
        })
    })();
    if remove_after {
        let _ = std::fs::remove_file(cache);
    }
    result
}

fn eval_bar() -> indicatif::ProgressBar {
    crate::term::progress_bar(
        1,
        "evaluating {msg} [{bar:30}] chunk {pos}/{len} ({eta})",
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kld_of_identical_distributions_is_zero() {
        let logits: Vec<f32> = (0..101)
            .map(|i| ((i * 37) % 23) as f32 * 0.3 - 2.0)
            .collect();
        let mut rec = Vec::new();
        encode_logprobs(&logits, &mut rec);
        assert_eq!(rec.len(), 2 * 51 + 4);
        let mut acc = Acc::default();
        compare(&logits, &rec, 5, &mut acc);
        assert!(acc.kld[0].abs() < 1e-4, "{}", acc.kld[0]);
        assert!((acc.nll[0] - acc.nll_ref[0]).abs() < 1e-3);
        assert_eq!(acc.same_top, 1);
        // A different distribution diverges.
        let other: Vec<f32> = logits.iter().rev().copied().collect();
        compare(&other, &rec, 5, &mut acc);
        assert!(acc.kld[1] > 0.1);
    }

    #[test]
    fn percentiles_like_llama_cpp() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.99), 4.96);
        assert_eq!(percentile(&v, 1.0), 5.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
    }
}
