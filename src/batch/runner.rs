//! Continuous batching on llama.cpp: N sequences decode together in one context; a
//! new request takes a slot as soon as one frees. A new request reuses the KV cache
//! of the longest matching prefix held by any slot (a shared system prompt is
//! decoded once), copying it between the sequences' KV streams.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use serde_json::Value;

use super::{error_record, stable_hash, success_record, BatchRequest, RequestKind};
use crate::chat::{render_prompt, sampling_for, thinking_on, PromptPart, SamplingOverrides};
use crate::chat_template::{RenderOptions, ThinkingMode};
use crate::engine::{backend, Model, Utf8Stream};
use crate::thinking::split_all;

#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Sequences decoded together.
    pub parallel: u32,
    /// Context per sequence (tokens of prompt + answer).
    pub ctx_per_seq: u32,
    pub threads: u32,
    pub n_batch: u32,
    pub default_max_tokens: u32,
    /// Default temperature for requests that set none (None: the model's defaults).
    pub default_temperature: Option<f32>,
    /// Base seed; each request's seed derives from it and its custom_id, so results
    /// do not depend on scheduling.
    pub seed: u32,
    pub model_name: String,
}

/// A finished request.
pub struct Finished {
    pub record: Value,
    pub ok: bool,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// A request ready to run: tokenized, with its sampler.
struct Prepared {
    req: BatchRequest,
    prompt: Vec<LlamaToken>,
    sampler: LlamaSampler,
    max_tokens: usize,
    starts_in_reasoning: bool,
    splits_reasoning: bool,
}

struct Active {
    job: Prepared,
    /// Next prompt index to decode.
    next_prompt: usize,
    /// Token sampled but not yet decoded.
    pending: Option<LlamaToken>,
    /// Batch index of this slot's logits in the current decode.
    logits_idx: Option<i32>,
    n_generated: usize,
    utf8: Utf8Stream,
    raw: String,
}

struct Slot {
    seq: i32,
    /// Tokens held in this sequence's KV cache, at positions 0..len.
    cached: Vec<LlamaToken>,
    active: Option<Active>,
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Shortest shared prefix worth copying from another sequence.
const MIN_SHARED_PREFIX: usize = 16;

fn prepare(
    model: &Model,
    req: BatchRequest,
    opts: &RunnerOptions,
    eog_bans: &[LlamaLogitBias],
) -> Result<Prepared, Finished> {
    let fail = |req: &BatchRequest, code: &str, msg: String| Finished {
        record: error_record(Some(&req.custom_id), req.line, code, &msg),
        ok: false,
        prompt_tokens: 0,
        completion_tokens: 0,
    };
    let mode = model.template.caps().thinking;
    let thinking_on = thinking_on(mode, req.enable_thinking);
    let (prompt, starts_in_reasoning, splits_reasoning) = match &req.kind {
        RequestKind::Chat(messages) => {
            let render_opts = RenderOptions {
                add_generation_prompt: true,
                enable_thinking: (mode == ThinkingMode::Switchable).then_some(thinking_on),
                extra: Default::default(),
            };
            match render_prompt(&model.template, messages, &render_opts) {
                Ok(r) => (
                    model.tokenize_parts(&r.parts),
                    r.starts_in_reasoning,
                    mode != ThinkingMode::None,
                ),
                Err(e) => return Err(fail(&req, "template_error", format!("{e:#}"))),
            }
        }
        RequestKind::Completion(text) => {
            // Raw text, never parsed for special tokens; BOS as the model wants it.
            let part = PromptPart {
                text: text.clone(),
                special: false,
            };
            (model.tokenize_parts(&[part]), false, false)
        }
    };
    if prompt.is_empty() {
        return Err(fail(&req, "invalid_request", "the prompt is empty".into()));
    }
    if prompt.len() + 1 > opts.ctx_per_seq as usize {
        return Err(fail(
            &req,
            "context_length_exceeded",
            format!(
                "line {}: the prompt is {} tokens but each sequence's context holds {} (raise --ctx)",
                req.line,
                prompt.len(),
                opts.ctx_per_seq
            ),
        ));
    }
    let mut front = Vec::new();
    if req.ignore_eos {
        front.push(LlamaSampler::logit_bias(model.llama.n_vocab(), eog_bans));
    }
    match &req.json_schema {
        None => {}
        Some(schema) => {
            let grammar =
                llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|e| {
                    fail(
                        &req,
                        "invalid_schema",
                        format!("response_format schema: {e}"),
                    )
                })?;
            let sampler = LlamaSampler::grammar(&model.llama, &grammar, "root").map_err(|e| {
                fail(
                    &req,
                    "invalid_schema",
                    format!("response_format grammar: {e}"),
                )
            })?;
            front.push(sampler);
        }
    }
    let overrides = SamplingOverrides {
        temp: req.temperature.or(opts.default_temperature),
        top_k: req.top_k,
        top_p: req.top_p,
        min_p: req.min_p,
        seed: Some(
            req.seed
                .unwrap_or_else(|| stable_hash(&format!("{}:{}", opts.seed, req.custom_id)) as u32),
        ),
    };
    let sampling = sampling_for(mode != ThinkingMode::None, thinking_on, &overrides);
    let max_tokens = req.max_tokens.unwrap_or(opts.default_max_tokens).max(1) as usize;
    Ok(Prepared {
        sampler: sampling.sampler_with(front),
        prompt,
        max_tokens,
        starts_in_reasoning,
        splits_reasoning,
        req,
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn finish(active: Active, finish_reason: &str, model_name: &str) -> Finished {
    let mut raw = active.raw;
    raw.push_str(&{ active.utf8 }.flush());
    let job = active.job;
    let (reasoning, content) = if job.splits_reasoning {
        split_all(&raw, job.starts_in_reasoning)
    } else {
        (String::new(), raw)
    };
    Finished {
        record: success_record(
            &job.req,
            model_name,
            &content,
            Some(reasoning.as_str()),
            finish_reason,
            job.prompt.len(),
            active.n_generated,
            now_secs(),
        ),
        ok: true,
        prompt_tokens: job.prompt.len(),
        completion_tokens: active.n_generated,
    }
}

/// Runs `requests`, calling `on_done` for each as it finishes (completion order).
/// Stops scheduling new work when `stop` is set; in-flight requests are dropped.
pub fn run(
    model: &Model,
    requests: Vec<BatchRequest>,
    opts: &RunnerOptions,
    stop: &AtomicBool,
    on_done: &mut dyn FnMut(Finished) -> Result<()>,
) -> Result<()> {
    let parallel = opts.parallel.max(1);
    let n_ctx = opts.ctx_per_seq.saturating_mul(parallel);
    let n_batch = opts.n_batch.max(parallel);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch.min(512))
        .with_n_seq_max(parallel)
        // One KV stream per sequence: attention then spans only that sequence's cells
        // (a unified cache makes every token attend over all sequences' cells).
        .with_kv_unified(false)
        .with_n_threads(opts.threads as i32)
        .with_n_threads_batch(opts.threads as i32);
    let mut ctx = model
        .llama
        .new_context(backend(false)?, params)
        .map_err(|e| {
            anyhow!("cannot create a context of {n_ctx} tokens for {parallel} sequences: {e}")
        })?;
    let vocab = model.llama.vocab();
    let eog_bans: Vec<LlamaLogitBias> = (0..model.llama.n_vocab())
        .map(LlamaToken)
        .filter(|t| vocab.is_eog(*t))
        .map(|t| LlamaLogitBias::new(t, f32::NEG_INFINITY))
        .collect();

    let mut queue: VecDeque<BatchRequest> = requests.into();
    let mut slots: Vec<Slot> = (0..parallel as i32)
        .map(|seq| Slot {
            seq,
            cached: Vec::new(),
            active: None,
        })
        .collect();
    let mut batch = LlamaBatch::new(n_batch as usize, 1);

    loop {
        // Fill free slots.
        for s in 0..slots.len() {
            while slots[s].active.is_none() && !stop.load(Ordering::Relaxed) {
                let Some(req) = queue.pop_front() else { break };
                match prepare(model, req, opts, &eog_bans) {
                    Err(done) => on_done(done)?,
                    Ok(job) => start(&mut ctx, &mut slots, s, job),
                }
            }
        }
        if slots.iter().all(|s| s.active.is_none()) {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }

        // One decode step: pending tokens of generating slots first, then prompt chunks.
        batch.clear();
        let mut n_in_batch = 0usize;
        for slot in slots.iter_mut() {
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            a.logits_idx = None;
            if let Some(tok) = a.pending.take() {
                batch.add(tok, slot.cached.len() as i32, &[slot.seq], true)?;
                slot.cached.push(tok);
                a.logits_idx = Some(n_in_batch as i32);
                n_in_batch += 1;
            }
        }
        for slot in slots.iter_mut() {
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            let remaining = a.job.prompt.len() - a.next_prompt;
            if remaining == 0 || n_in_batch >= n_batch as usize {
                continue;
            }
            let take = remaining.min(n_batch as usize - n_in_batch);
            for i in 0..take {
                let idx = a.next_prompt + i;
                let last = idx + 1 == a.job.prompt.len();
                let tok = a.job.prompt[idx];
                batch.add(tok, slot.cached.len() as i32, &[slot.seq], last)?;
                slot.cached.push(tok);
                if last {
                    a.logits_idx = Some(n_in_batch as i32);
                }
                n_in_batch += 1;
            }
            a.next_prompt += take;
        }
        if n_in_batch == 0 {
            return Err(anyhow!("batch scheduler made no progress"));
        }
        ctx.decode(&mut batch)
            .map_err(|e| anyhow!("llama.cpp decode failed: {e}"))?;

        // Sample for every slot whose logits were computed.
        for slot in slots.iter_mut() {
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            let Some(idx) = a.logits_idx else { continue };
            let tok = a.job.sampler.sample(&ctx, idx);
            let mut reason = None;
            if vocab.is_eog(tok) {
                reason = Some("stop");
            } else {
                a.n_generated += 1;
                let piece = vocab.token_to_piece(tok, false, None);
                let text = a.utf8.push(&piece);
                a.raw.push_str(&text);
                if let Some(cut) = find_stop(&a.raw, &a.job.req.stop, text.len()) {
                    a.raw.truncate(cut);
                    reason = Some("stop");
                } else if a.n_generated >= a.job.max_tokens
                    || slot.cached.len() + 1 >= opts.ctx_per_seq as usize
                {
                    reason = Some("length");
                } else {
                    a.pending = Some(tok);
                }
            }
            if let Some(reason) = reason {
                let active = slot.active.take().expect("active slot");
                on_done(finish(active, reason, &opts.model_name))?;
            }
        }
    }
    Ok(())
}

/// Where a stop string starts in `raw`, looking only near the newly added text.
fn find_stop(raw: &str, stops: &[String], added: usize) -> Option<usize> {
    let longest = stops.iter().map(String::len).max()?;
    let mut from = raw.len().saturating_sub(added + longest);
    while !raw.is_char_boundary(from) {
        from -= 1;
    }
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| raw[from..].find(s.as_str()).map(|p| p + from))
        .min()
}

/// Puts `job` into slot `s`, reusing the longest cached prefix of any slot.
fn start(ctx: &mut LlamaContext<'_>, slots: &mut [Slot], s: usize, job: Prepared) {
    let prompt = &job.prompt;
    let own = common_prefix(&slots[s].cached, prompt);
    let (best, best_len) = slots
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != s)
        .map(|(i, o)| (i, common_prefix(&o.cached, prompt)))
        .max_by_key(|&(i, len)| (len, std::cmp::Reverse(i)))
        .unwrap_or((s, 0));
    // At least one prompt token must be decoded to get logits.
    let cap = prompt.len() - 1;
    let seq = slots[s].seq;
    if best_len > own && best_len >= MIN_SHARED_PREFIX {
        let keep = best_len.min(cap);
        // Across KV streams llama.cpp copies whole sequences only, so copy all of
        // the source sequence, then drop what is past the shared prefix.
        let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        let copied = ctx
            .copy_kv_cache_seq(slots[best].seq, seq, None, None)
            .is_ok()
            && ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(keep as u32), None)
                .unwrap_or(false);
        slots[s].cached = if copied {
            prompt[..keep].to_vec()
        } else {
            let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            Vec::new()
        };
    } else {
        let keep = own.min(cap);
        let removed = ctx
            .clear_kv_cache_seq(Some(seq as u32), Some(keep as u32), None)
            .unwrap_or(false);
        if removed {
            slots[s].cached.truncate(keep);
        } else {
            let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            slots[s].cached.clear();
        }
    }
    let next_prompt = slots[s].cached.len();
    slots[s].active = Some(Active {
        job,
        next_prompt,
        pending: None,
        logits_idx: None,
        n_generated: 0,
        utf8: Utf8Stream::default(),
        raw: String::new(),
    });
}

#[cfg(test)]
mod tests {
    use super::find_stop;

    #[test]
    fn stop_strings_are_found_near_the_end() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        assert_eq!(find_stop("hello\n\nworld", &stops, 7), Some(5));
        assert_eq!(find_stop("hello wor", &stops, 3), None);
        assert_eq!(find_stop("abcEN", &stops, 1), None);
        assert_eq!(find_stop("abcEND", &stops, 1), Some(3));
        assert_eq!(find_stop("x", &[], 1), None);
    }
}
