//! A chat session: a llama.cpp context bound to a model that remembers which tokens
//! are in its KV cache, so the next turn of a chat only decodes what changed; sampling
//! and streaming generation with Qwen 3's reasoning split out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::context::{new_context, ContextSpec};
use super::error::EngineError;
use super::model::Model;
use super::sampling::Sampling;
use super::speculative::Speculation;
use crate::speculative::tuner::Cycle;
use crate::speculative::SpecStats;
use crate::thinking::{Segment, ThinkParser, THINK_CLOSE};

#[derive(Debug, Clone)]
pub struct GenRequest {
    pub max_tokens: u32,
    pub sampling: Sampling,
    /// Force `</think>` after this many reasoning tokens.
    pub think_budget: Option<u32>,
    /// The prompt opened `<think>` itself, so output starts inside reasoning.
    pub starts_in_reasoning: bool,
    /// Text that ends the turn (a built-in chat format's end-of-turn markers, for
    /// vocabularies where they are not special tokens); cut from the answer.
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfTurn,
    MaxTokens,
    Interrupted,
    ContextFull,
}

#[derive(Debug, Clone)]
pub struct GenOutput {
    pub reasoning: String,
    pub answer: String,
    /// The raw text the model produced (what goes back into the chat history).
    pub raw: String,
    pub stop: StopReason,
    pub n_prompt_new: usize,
    pub n_generated: usize,
    pub n_reasoning_tokens: usize,
    pub prompt_ms: f64,
    pub gen_ms: f64,
    /// Speculation counters of this reply, when a drafter is attached.
    pub spec: Option<SpecStats>,
}

impl Model {
    /// A chat session on a new context of this model.
    pub fn new_session(&self, spec: &ContextSpec) -> Result<Session<'_>, EngineError> {
        Session::new(self, spec)
    }
}

/// A llama.cpp context bound to a model. Remembers which tokens are in its KV cache so
/// the next turn of a chat only decodes what changed.
pub struct Session<'m> {
    pub model: &'m Model,
    ctx: LlamaContext<'m>,
    kv_tokens: Vec<LlamaToken>,
    pub n_ctx: u32,
    n_batch: u32,
    /// Drafts checked by this session's model, when speculation is on.
    spec: Option<Speculation<'m>>,
}

impl<'m> Session<'m> {
    pub(super) fn new(model: &'m Model, spec: &ContextSpec) -> Result<Session<'m>, EngineError> {
        let ctx = new_context(model, spec)?;
        Ok(Session {
            model,
            n_ctx: ctx.n_ctx(),
            n_batch: ctx.n_batch(),
            ctx,
            kv_tokens: Vec::new(),
            spec: None,
        })
    }

    /// Verifies drafts from `spec` from now on (`None`: plain decoding).
    pub fn set_speculation(&mut self, spec: Option<Speculation<'m>>) {
        self.spec = spec;
    }

    /// Drops the cache after its first `keep` tokens.
    fn truncate_kv(&mut self, keep: usize) -> Result<(), EngineError> {
        let removed = self
            .ctx
            .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
            .unwrap_or(false);
        if !removed {
            return Err(EngineError::Decode(
                "this model's cache cannot drop rejected draft tokens".into(),
            ));
        }
        self.kv_tokens.truncate(keep);
        Ok(())
    }

    /// Closes the reasoning block for the model (the thinking budget is spent) and
    /// decodes the closing text. False when the context has no room for it.
    fn force_close(
        &mut self,
        raw: &mut String,
        decoder: &mut Utf8Stream,
        parser: &mut ThinkParser,
        emit: &mut dyn FnMut(Vec<Segment>),
    ) -> Result<bool, EngineError> {
        let close = format!("\n{THINK_CLOSE}\n\n");
        let forced = self
            .model
            .llama
            .vocab()
            .tokenize(close.as_bytes(), false, true);
        if self.kv_tokens.len() + forced.len() + 1 >= self.n_ctx as usize {
            return Ok(false);
        }
        raw.push_str(&decoder.flush());
        raw.push_str(&close);
        emit(parser.push(&close));
        self.decode_append(&forced, false)?;
        Ok(true)
    }

    pub fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        self.kv_tokens.clear();
    }

    pub fn tokens_in_context(&self) -> usize {
        self.kv_tokens.len()
    }

    /// Decodes `tokens` at the end of the KV cache, in n_batch chunks; logits for the
    /// last token, or for each with `every_logit` (a target token and its drafts).
    fn decode_append(
        &mut self,
        tokens: &[LlamaToken],
        every_logit: bool,
    ) -> Result<(), EngineError> {
        let mut batch = LlamaBatch::new(self.n_batch as usize, 1);
        let total = tokens.len();
        for (chunk_idx, chunk) in tokens.chunks(self.n_batch as usize).enumerate() {
            batch.clear();
            let base = chunk_idx * self.n_batch as usize;
            for (i, &tok) in chunk.iter().enumerate() {
                let pos = self.kv_tokens.len() + i;
                let last = base + i + 1 == total;
                batch
                    .add(tok, pos as i32, &[0], last || every_logit)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
            }
            self.ctx
                .decode(&mut batch)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
            self.kv_tokens.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Makes the KV cache hold exactly `prompt`: keeps the common prefix with what is
    /// already there, drops the rest, decodes the new tail. Returns the tokens decoded.
    fn sync_prompt(&mut self, prompt: &[LlamaToken]) -> Result<usize, EngineError> {
        let mut keep = self
            .kv_tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // At least one token must be decoded to get fresh logits.
        if keep == prompt.len() {
            keep = keep.saturating_sub(1);
        }
        if keep < self.kv_tokens.len() {
            let removed = self
                .ctx
                .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
                .unwrap_or(false);
            if !removed {
                // Some memory types cannot drop a suffix; start over.
                self.clear();
                keep = 0;
            } else {
                self.kv_tokens.truncate(keep);
            }
        }
        let tail = &prompt[keep..];
        self.decode_append(tail, false)?;
        Ok(tail.len())
    }

    /// Generates a reply to `prompt` (the whole conversation, tokenized), streaming
    /// reasoning and answer segments to `on_segment`.
    pub fn generate(
        &mut self,
        prompt: &[LlamaToken],
        req: &GenRequest,
        stop_flag: &AtomicBool,
        on_segment: &mut dyn FnMut(&Segment),
    ) -> Result<GenOutput, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if prompt.len() >= self.n_ctx as usize {
            return Err(EngineError::PromptTooLong {
                prompt: prompt.len(),
                n_ctx: self.n_ctx,
                n_ctx_train: self.model.n_ctx_train(),
            });
        }
        let t0 = Instant::now();
        let n_prompt_new = self.sync_prompt(prompt)?;
        let prompt_ms = t0.elapsed().as_secs_f64() * 1000.0;

        let vocab = self.model.llama.vocab();
        let mut sampler = req.sampling.sampler();
        let mut parser = ThinkParser::new(req.starts_in_reasoning);
        let mut decoder = Utf8Stream::default();
        let mut raw = String::new();
        let (mut reasoning, mut answer) = (String::new(), String::new());
        let mut n_generated = 0usize;
        let mut n_reasoning_tokens = 0usize;
        let mut stop = StopReason::MaxTokens;
        let t1 = Instant::now();
        let mut spec = self.spec.take();
        let mut spec_stats = SpecStats::default();

        let mut emit = |segs: Vec<Segment>, reasoning: &mut String, answer: &mut String| {
            for s in segs {
                match &s {
                    Segment::Reasoning(t) => reasoning.push_str(t),
                    Segment::Answer(t) => answer.push_str(t),
                }
                on_segment(&s);
            }
        };

        // The tokens of the last decode that have logits: the last one after a plain
        // append (row -1), or the target's token and the drafts of a verify batch
        // (rows 0..=drafts.len()).
        let mut drafts: Vec<LlamaToken> = Vec::new();
        // The cycle whose acceptance the next sampling pass measures.
        let mut cycle: Option<Cycle> = None;
        let result: Result<(), EngineError> = 'gen: loop {
            // Sample row by row; a token equal to the draft there is already decoded.
            let mut matched = 0usize;
            let mut pending: Option<LlamaToken> = None;
            let mut force_close = false;
            let mut ended = true;
            loop {
                // The cache as it stands if the unverified drafts were dropped.
                let committed = self.kv_tokens.len() - (drafts.len() - matched);
                if n_generated >= req.max_tokens as usize {
                    stop = StopReason::MaxTokens;
                    break;
                }
                if stop_flag.load(Ordering::Relaxed) {
                    stop = StopReason::Interrupted;
                    break;
                }
                if committed + 1 >= self.n_ctx as usize {
                    stop = StopReason::ContextFull;
                    break;
                }
                let row = if drafts.is_empty() {
                    -1
                } else {
                    matched as i32
                };
                let token = sampler.sample(&self.ctx, row);
                if vocab.is_eog(token) {
                    stop = StopReason::EndOfTurn;
                    break;
                }
                n_generated += 1;
                let was_reasoning = parser.in_reasoning();
                let piece = vocab.token_to_piece(token, false, None);
                let text = decoder.push(&piece);
                raw.push_str(&text);
                let segs = parser.push(&text);
                if was_reasoning {
                    n_reasoning_tokens += 1;
                }
                emit(segs, &mut reasoning, &mut answer);
                let is_draft = drafts.get(matched) == Some(&token);
                if is_draft {
                    spec_stats.accepted += 1;
                } else {
                    spec_stats.target_steps += 1;
                }
                if is_draft {
                    matched += 1;
                } else {
                    pending = Some(token);
                }
                if let Some(cut) = req
                    .stop
                    .iter()
                    .filter_map(|s| answer.find(s.as_str()))
                    .min()
                {
                    answer.truncate(cut);
                    stop = StopReason::EndOfTurn;
                    break;
                }
                force_close = req.think_budget.is_some_and(|budget| {
                    parser.in_reasoning() && n_reasoning_tokens >= budget as usize
                });
                if is_draft && !force_close {
                    continue;
                }
                // The target's own token, or a forced close, ends the pass.
                ended = false;
                break;
            }
            if let (Some(s), Some(mut c)) = (spec.as_mut(), cycle.take()) {
                c.accepted = matched;
                s.record(c);
            }
            // Drop the drafts the target did not take.
            let rejected = drafts.len() - matched;
            drafts.clear();
            if rejected > 0 {
                let keep = self.kv_tokens.len() - rejected;
                if let Err(e) = self.truncate_kv(keep) {
                    break 'gen Err(e);
                }
            }
            if ended {
                break 'gen Ok(());
            }
            if force_close {
                let closed = pending
                    .map_or(Ok(()), |t| self.decode_append(&[t], false))
                    .and_then(|()| {
                        self.force_close(&mut raw, &mut decoder, &mut parser, &mut |s| {
                            emit(s, &mut reasoning, &mut answer)
                        })
                    });
                match closed {
                    Ok(true) => continue,
                    Ok(false) => {
                        stop = StopReason::ContextFull;
                        break 'gen Ok(());
                    }
                    Err(e) => break 'gen Err(e),
                }
            }
            let Some(next) = pending else {
                break 'gen Ok(());
            };
            // Draft, then decode the target's token with the drafts in one batch.
            let mut draft_ms = 0.0;
            if let Some(s) = spec.as_mut() {
                let room = (self.n_ctx as usize).saturating_sub(self.kv_tokens.len() + 2);
                let left = req.max_tokens as usize - n_generated;
                let k = s.tuner.next_len().min(room).min(left);
                let t_draft = Instant::now();
                match s.draft(&self.kv_tokens, next, k) {
                    Ok(d) if d.len() >= s.tuner.limits().min => drafts = d,
                    Ok(_) => {}
                    Err(e) => break 'gen Err(e),
                }
                draft_ms = t_draft.elapsed().as_secs_f64() * 1000.0;
                if k > 0 {
                    draft_ms -= s.catchup_ms();
                }
                spec_stats.drafted += drafts.len() as u64;
            }
            let t_verify = Instant::now();
            let mut tokens = Vec::with_capacity(drafts.len() + 1);
            tokens.push(next);
            tokens.extend_from_slice(&drafts);
            if let Err(e) = self.decode_append(&tokens, true) {
                break 'gen Err(e);
            }
            cycle = Some(Cycle {
                drafted: drafts.len(),
                accepted: 0,
                draft_ms,
                verify_ms: t_verify.elapsed().as_secs_f64() * 1000.0,
            });
        };
        let spec_stats = spec.is_some().then_some(spec_stats);
        self.spec = spec;
        result?;
        let tail = decoder.flush();
        raw.push_str(&tail);
        let mut segs = parser.push(&tail);
        segs.extend(parser.finish());
        emit(segs, &mut reasoning, &mut answer);
        Ok(GenOutput {
            reasoning,
            answer,
            raw,
            stop,
            n_prompt_new,
            n_generated,
            n_reasoning_tokens,
            prompt_ms,
            gen_ms: t1.elapsed().as_secs_f64() * 1000.0,
            spec: spec_stats,
        })
    }
}

/// Turns token bytes into text without splitting multi-byte characters across tokens.
#[derive(Default, Debug)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Stream;

    #[test]
    fn utf8_split_across_tokens() {
        let mut d = Utf8Stream::default();
        let bytes = "日本".as_bytes();
        assert_eq!(d.push(&bytes[..2]), "");
        assert_eq!(d.push(&bytes[2..4]), "日");
        assert_eq!(d.push(&bytes[4..]), "本");
        assert_eq!(d.push(&[0xff, b'a']), "\u{FFFD}a");
    }
}
