//! Speculative decoding's draft side: a small model with the target's vocabulary, or
//! n-gram lookup, proposes the next tokens; the target checks them in one batch
//! (`session.rs` for a chat, `batch.rs` for continuous batching). Verification samples
//! each position with the target's own sampler and keeps a draft token when the
//! sampler picks it, so output is what plain decoding gives, token for token.
//!
//! The draft model keeps its KV cache across cycles: only tokens it has not seen yet
//! are decoded (the accepted ones it did not draft itself, and the target's token), so
//! no drafted token is evaluated twice, unlike llama.cpp's `common_speculative`.

use std::path::Path;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::backend::backend;
use super::context::{new_context, ContextSpec};
use super::error::EngineError;
use super::model::Model;
use crate::gguf_info::{check_loadable, GgufFile};
use crate::speculative::lookup::NgramLookup;
use crate::speculative::tuner::{Cycle, DraftTuner};
use crate::speculative::vocab::VocabFacts;
use crate::speculative::DraftLimits;

/// The vocabulary facts of the model at `path`, read with llama.cpp's vocab-only load
/// (no weights), after edge's own header checks.
pub fn vocab_facts(path: &Path) -> Result<VocabFacts, EngineError> {
    let bad = |reason: String| EngineError::BadModel {
        path: path.to_path_buf(),
        reason,
    };
    let gguf = GgufFile::open_header(path).map_err(|e| bad(e.to_string()))?;
    check_loadable(&gguf).map_err(bad)?;
    let backend = backend(false)?;
    let params = LlamaModelParams::default().with_vocab_only(true);
    super::ffi::take_recent_errors();
    let model =
        LlamaModel::load_from_file(backend, path, &params).map_err(|_| EngineError::Load {
            path: path.to_path_buf(),
            reason: super::ffi::last_error_line("llama.cpp could not read its vocabulary"),
        })?;
    Ok(model_vocab_facts(&model))
}

fn model_vocab_facts(model: &LlamaModel) -> VocabFacts {
    let vocab = model.vocab();
    let n = vocab.n_tokens().max(0) as usize;
    let id = |t: LlamaToken| (t.0 >= 0).then_some(t.0);
    VocabFacts {
        kind: vocab.vocab_type() as i32,
        n_tokens: n,
        add_bos: vocab.should_add_bos(),
        bos: id(vocab.bos()),
        add_eos: vocab.should_add_eos(),
        eos: id(vocab.eos()),
        texts: (0..n as i32)
            .map(|i| {
                vocab
                    .text(LlamaToken(i))
                    .map(|c| c.to_bytes().to_vec())
                    .unwrap_or_default()
            })
            .collect(),
    }
}

/// A small model drafting for up to `n_seq` sequences, one KV stream each.
pub struct ModelDrafter<'m> {
    model: &'m Model,
    ctx: LlamaContext<'m>,
    /// Tokens in each sequence's draft KV cache.
    cached: Vec<Vec<LlamaToken>>,
    n_batch: usize,
    n_ctx_seq: usize,
    /// Drafting stops where the draft's top probability falls below this (never
    /// before its first token).
    p_min: f32,
    /// Milliseconds the last [`Self::draft`] spent catching up on a long history (a new
    /// prompt), which is not the cost of drafting.
    pub catchup_ms: f64,
}

/// One sequence's draft request: everything verified so far (in the target's KV) and
/// the token sampled after it, at most `max` tokens.
pub struct DraftAsk<'a> {
    pub seq: usize,
    pub history: &'a [LlamaToken],
    pub next: LlamaToken,
    pub max: usize,
}

impl<'m> ModelDrafter<'m> {
    pub fn new(
        model: &'m Model,
        spec: &ContextSpec,
        p_min: f32,
    ) -> Result<ModelDrafter<'m>, EngineError> {
        let ctx = new_context(model, spec)?;
        Ok(ModelDrafter {
            model,
            n_batch: ctx.n_batch() as usize,
            n_ctx_seq: spec.ctx_per_seq() as usize,
            cached: vec![Vec::new(); spec.n_seq.max(1) as usize],
            ctx,
            p_min,
            catchup_ms: 0.0,
        })
    }

    /// Drafts for every request, stepping all of them in one batch per step. Returns
    /// one draft per request, in order.
    pub fn draft(&mut self, asks: &[DraftAsk<'_>]) -> Result<Vec<Vec<LlamaToken>>, EngineError> {
        let n_seqs = self.cached.len().max(1) as i32;
        // Catch up: bring each sequence's draft KV to history + next. All but the last
        // missing token go in batches without logits; the last ones share one batch,
        // whose logits start the drafts.
        // Each sequence's missing tokens, after dropping what no longer matches.
        let mut missing: Vec<(usize, usize, Vec<LlamaToken>)> = Vec::new();
        for (r, ask) in asks.iter().enumerate() {
            let total = ask.history.len() + 1;
            // Nothing asked, or no room for drafts in this sequence's context.
            if ask.max == 0 || ask.seq >= self.cached.len() || total + ask.max >= self.n_ctx_seq {
                continue;
            }
            let cached = &mut self.cached[ask.seq];
            let mut keep = cached
                .iter()
                .zip(ask.history.iter().chain(std::iter::once(&ask.next)))
                .take_while(|(a, b)| a == b)
                .count()
                .min(total - 1);
            if keep < cached.len() {
                let ok = self
                    .ctx
                    .clear_kv_cache_seq(Some(ask.seq as u32), Some(keep as u32), None)
                    .unwrap_or(false);
                if !ok {
                    let _ = self
                        .ctx
                        .clear_kv_cache_seq(Some(ask.seq as u32), None, None);
                    keep = 0;
                }
                cached.truncate(keep);
            }
            let tokens: Vec<LlamaToken> = ask
                .history
                .iter()
                .copied()
                .chain(std::iter::once(ask.next))
                .skip(keep)
                .collect();
            missing.push((r, keep, tokens));
        }
        // Catch up. In the usual cycle only a token or two per sequence are missing:
        // they go in one batch, with logits on each sequence's last token, which starts
        // its draft. A long catch-up (a new prompt) first goes in batches of its own,
        // without logits.
        let started = std::time::Instant::now();
        let total: usize = missing.iter().map(|(_, _, t)| t.len()).sum();
        let mut batch = LlamaBatch::new(self.n_batch.max(asks.len()), n_seqs);
        if total > self.n_batch {
            let mut n_in = 0usize;
            for (r, keep, tokens) in &mut missing {
                let seq = asks[*r].seq;
                let last = tokens.pop().expect("at least `next` is missing");
                for (i, &tok) in tokens.iter().enumerate() {
                    if n_in == self.n_batch {
                        self.decode(&mut batch)?;
                        n_in = 0;
                    }
                    batch
                        .add(tok, (*keep + i) as i32, &[seq as i32], false)
                        .map_err(|e| EngineError::Decode(e.to_string()))?;
                    n_in += 1;
                }
                self.cached[seq].extend_from_slice(tokens);
                *keep += tokens.len();
                *tokens = vec![last];
            }
            if n_in > 0 {
                self.decode(&mut batch)?;
            }
        }
        // Steady drafting leaves one or two tokens per sequence to catch up; a batch
        // wider than that is catching up on a new prompt or on steps taken without
        // drafting, and is timed as catch-up.
        let steady = total <= 2 * missing.len();
        let mut rows: Vec<Option<i32>> = vec![None; asks.len()];
        let mut n_in = 0i32;
        for (r, keep, tokens) in &missing {
            let seq = asks[*r].seq;
            for (i, &tok) in tokens.iter().enumerate() {
                let last = i + 1 == tokens.len();
                batch
                    .add(tok, (*keep + i) as i32, &[seq as i32], last)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
                if last {
                    rows[*r] = Some(n_in);
                }
                n_in += 1;
            }
            self.cached[seq].extend_from_slice(tokens);
        }
        if n_in > 0 {
            self.decode(&mut batch)?;
        }
        self.catchup_ms = if steady {
            0.0
        } else {
            started.elapsed().as_secs_f64() * 1000.0
        };
        let lasts: Vec<(usize, usize)> =
            missing.iter().map(|(r, _, _)| (*r, asks[*r].seq)).collect();
        let live: Vec<(usize, usize, usize)> = lasts
            .iter()
            .map(|&(r, seq)| (r, seq, asks[r].max))
            .collect();
        let mut drafts: Vec<Vec<LlamaToken>> = vec![Vec::new(); asks.len()];
        let mut out = Vec::new();
        self.step_drafts(&live, &mut rows, &mut out)?;
        for (&(r, _, _), d) in live.iter().zip(out) {
            drafts[r] = d;
        }
        Ok(drafts)
    }

    /// Greedy draft steps for `live` (request index, sequence, max) whose logits sit at
    /// `rows`; one draft per live entry goes to `out`, in order.
    fn step_drafts(
        &mut self,
        live: &[(usize, usize, usize)],
        rows: &mut [Option<i32>],
        out: &mut Vec<Vec<LlamaToken>>,
    ) -> Result<(), EngineError> {
        let mut drafts: Vec<Vec<LlamaToken>> = vec![Vec::new(); live.len()];
        let mut going: Vec<bool> = vec![true; live.len()];
        let mut batch = LlamaBatch::new(live.len().max(1), live.len().max(1) as i32);
        loop {
            batch.clear();
            let mut n_in = 0;
            for (j, &(r, seq, max)) in live.iter().enumerate() {
                if !going[j] {
                    continue;
                }
                let Some(row) = rows[r] else {
                    going[j] = false;
                    continue;
                };
                let (tok, p) = top_token(self.ctx.get_logits_ith(row));
                if (p < self.p_min && !drafts[j].is_empty()) || self.model.is_eog(tok) {
                    going[j] = false;
                    continue;
                }
                drafts[j].push(tok);
                if drafts[j].len() >= max {
                    going[j] = false;
                    continue;
                }
                let pos = self.cached[seq].len();
                batch
                    .add(tok, pos as i32, &[seq as i32], true)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
                self.cached[seq].push(tok);
                rows[r] = Some(n_in);
                n_in += 1;
            }
            if n_in == 0 {
                break;
            }
            self.decode(&mut batch)?;
        }
        out.extend(drafts);
        Ok(())
    }

    fn decode(&mut self, batch: &mut LlamaBatch) -> Result<(), EngineError> {
        let r = self
            .ctx
            .decode(batch)
            .map_err(|e| EngineError::Decode(format!("draft model: {e}")));
        batch.clear();
        r
    }
}

/// The most likely token and its probability.
fn top_token(logits: &[f32]) -> (LlamaToken, f32) {
    let (mut best, mut max) = (0usize, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            (best, max) = (i, l);
        }
    }
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    (
        LlamaToken(best as i32),
        if sum > 0.0 { 1.0 / sum } else { 0.0 },
    )
}

/// Where drafts come from for one generation.
pub enum Drafter<'m> {
    Model(Box<ModelDrafter<'m>>),
    /// n-gram lookup in the conversation's own tokens.
    Lookup(NgramLookup),
}

/// A chat session's speculation: the drafter and the draft-length tuner.
pub struct Speculation<'m> {
    drafter: Drafter<'m>,
    pub tuner: DraftTuner,
}

impl<'m> Speculation<'m> {
    /// Drafts from `draft`, whose context mirrors the target's (`spec`, one sequence).
    pub fn with_model(
        draft: &'m Model,
        spec: &ContextSpec,
        limits: DraftLimits,
    ) -> Result<Speculation<'m>, EngineError> {
        Ok(Speculation {
            drafter: Drafter::Model(Box::new(ModelDrafter::new(draft, spec, limits.p_min)?)),
            tuner: DraftTuner::new(limits, 0.7),
        })
    }

    pub fn lookup(limits: DraftLimits) -> Speculation<'m> {
        Speculation {
            drafter: Drafter::Lookup(NgramLookup::new()),
            tuner: DraftTuner::new(limits, 0.5),
        }
    }

    /// Milliseconds of the last draft that went to catching up on a new prompt.
    pub(super) fn catchup_ms(&self) -> f64 {
        match &self.drafter {
            Drafter::Model(m) => m.catchup_ms,
            Drafter::Lookup(_) => 0.0,
        }
    }

    /// Up to `max` tokens to follow `history` and then `next`.
    pub(super) fn draft(
        &mut self,
        history: &[LlamaToken],
        next: LlamaToken,
        max: usize,
    ) -> Result<Vec<LlamaToken>, EngineError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        match &mut self.drafter {
            Drafter::Model(m) => Ok(m
                .draft(&[DraftAsk {
                    seq: 0,
                    history,
                    next,
                    max,
                }])?
                .pop()
                .unwrap_or_default()),
            Drafter::Lookup(lookup) => {
                let ids: Vec<i32> = history.iter().map(|t| t.0).collect();
                lookup.sync(&ids);
                Ok(lookup
                    .draft(Some(next.0), max)
                    .into_iter()
                    .map(LlamaToken)
                    .collect())
            }
        }
    }

    pub(super) fn record(&mut self, cycle: Cycle) {
        self.tuner.record(cycle);
    }
}

#[cfg(test)]
mod tests {
    use super::top_token;

    #[test]
    fn top_token_is_the_argmax_with_its_softmax_probability() {
        let (t, p) = top_token(&[0.0, 2.0f32.ln(), 0.0]);
        assert_eq!(t.0, 1);
        assert!((p - 0.5).abs() < 1e-6);
    }
}
