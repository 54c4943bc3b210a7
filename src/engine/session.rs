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
        })
    }

    pub fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        self.kv_tokens.clear();
    }

    pub fn tokens_in_context(&self) -> usize {
        self.kv_tokens.len()
    }

    /// Decodes `tokens` at the end of the KV cache, in n_batch chunks; logits only for
    /// the last token.
    fn decode_append(&mut self, tokens: &[LlamaToken]) -> Result<(), EngineError> {
        let mut batch = LlamaBatch::new(self.n_batch as usize, 1);
        let total = tokens.len();
        for (chunk_idx, chunk) in tokens.chunks(self.n_batch as usize).enumerate() {
            batch.clear();
            let base = chunk_idx * self.n_batch as usize;
            for (i, &tok) in chunk.iter().enumerate() {
                let pos = self.kv_tokens.len() + i;
                let last = base + i + 1 == total;
                batch
                    .add(tok, pos as i32, &[0], last)
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
        self.decode_append(tail)?;
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

        let mut emit = |segs: Vec<Segment>, reasoning: &mut String, answer: &mut String| {
            for s in segs {
                match &s {
                    Segment::Reasoning(t) => reasoning.push_str(t),
                    Segment::Answer(t) => answer.push_str(t),
                }
                on_segment(&s);
            }
        };

        while n_generated < req.max_tokens as usize {
            if stop_flag.load(Ordering::Relaxed) {
                stop = StopReason::Interrupted;
                break;
            }
            if self.kv_tokens.len() + 1 >= self.n_ctx as usize {
                stop = StopReason::ContextFull;
                break;
            }
            let token = sampler.sample(&self.ctx, -1);
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
            self.decode_append(&[token])?;

            if let Some(budget) = req.think_budget {
                if parser.in_reasoning() && n_reasoning_tokens >= budget as usize {
                    // Close the reasoning block ourselves and let the model answer.
                    let close = format!("\n{THINK_CLOSE}\n\n");
                    let forced = vocab.tokenize(close.as_bytes(), false, true);
                    if self.kv_tokens.len() + forced.len() + 1 >= self.n_ctx as usize {
                        stop = StopReason::ContextFull;
                        break;
                    }
                    raw.push_str(&decoder.flush());
                    raw.push_str(&close);
                    let segs = parser.push(&close);
                    emit(segs, &mut reasoning, &mut answer);
                    self.decode_append(&forced)?;
                }
            }
        }
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
