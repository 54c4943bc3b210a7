//! Continuous batching: N sequences decode together in one context, each in its own KV
//! stream; a new job takes a slot as soon as one frees and reuses the KV cache of the
//! longest matching prefix any slot holds (a shared system prompt is decoded once),
//! copied between streams. `edge batch` and `edge serve` both feed it: a feed hands
//! out jobs (a server's may block while every slot is idle), can cancel a job between
//! decode steps, and sees each token as it is sampled (stop-string-safe text, and
//! log-probabilities when a job asks for them).

use std::sync::atomic::{AtomicBool, Ordering};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::context::{new_context, ContextSpec};
use super::error::EngineError;
use super::model::Model;
use super::sampling::{eog_bans, GrammarSpec, JobSampler, Sampling, SamplingError};
use super::session::Utf8Stream;
use super::speculative::{DraftAsk, ModelDrafter};
use crate::speculative::lookup::NgramLookup;
use crate::speculative::tuner::LengthBandit;
use crate::speculative::{DraftLimits, SpecStats};
use crate::thinking::partial_suffix;

/// One generation job, ready to decode.
#[derive(Debug, Clone)]
pub struct DecodeJob<T> {
    /// The caller's handle, given back with the result.
    pub tag: T,
    pub prompt: Vec<LlamaToken>,
    pub sampling: Sampling,
    /// Output held to this JSON schema (a grammar).
    pub json_schema: Option<String>,
    /// Output held to this grammar (tool calls); wins over `json_schema`.
    pub grammar: Option<GrammarSpec>,
    /// Never sample an end-of-generation token.
    pub ban_eog: bool,
    pub max_tokens: usize,
    /// Generation ends where one of these appears; it is cut from the text.
    pub stop: Vec<String>,
    /// Hand each token's new text to [`BatchFeed::token`] as it is sampled (held back
    /// while it may still become a stop string).
    pub stream: bool,
    /// Report each sampled token's log-probability and this many most likely
    /// alternatives.
    pub logprobs: Option<usize>,
}

/// A sampled token's log-probability (from the model's raw distribution, before
/// truncation and temperature), with the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: TokenText,
    pub logprob: f32,
    pub top: Vec<(TokenText, f32)>,
}

/// A token's text and its raw bytes (a piece may be part of a UTF-8 character).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenText {
    pub text: String,
    pub bytes: Vec<u8>,
}

/// One generated token, as the feed sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// Text that is now certain (empty unless the job streams): what follows the text
    /// given so far. The rest arrives with the finished job.
    pub text: String,
    pub logprob: Option<TokenLogprob>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the sequence's context is full.
    Length,
}

impl FinishReason {
    /// OpenAI's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A finished job.
#[derive(Debug)]
pub struct DecodeDone<T> {
    pub tag: T,
    pub n_prompt: usize,
    pub outcome: JobOutcome,
}

#[derive(Debug)]
pub enum JobOutcome {
    Finished {
        text: String,
        n_generated: usize,
        finish: FinishReason,
        /// Speculation counters, when the run drafts.
        spec: Option<SpecStats>,
    },
    /// The job's prompt does not fit one sequence's context.
    PromptTooLong { ctx_per_seq: usize },
    /// The job's schema could not become a grammar.
    BadSampling(SamplingError),
    /// The feed cancelled it, or the run stopped while it was in flight.
    Cancelled { n_generated: usize },
}

/// Where jobs come from and where results go.
pub trait BatchFeed<T> {
    type Error: From<EngineError>;
    /// The next job, or `None` when there is none now. `idle`: no job is in flight, so
    /// the feed may wait for one; `None` then ends the run.
    fn next_job(&mut self, idle: bool) -> Result<Option<DecodeJob<T>>, Self::Error>;
    /// Asked for every job in flight before each decode step: true stops it (its slot
    /// frees at once and it is reported as [`JobOutcome::Cancelled`]).
    fn cancelled(&mut self, _tag: &T) -> bool {
        false
    }
    /// Each generated token of a job, in order.
    fn token(&mut self, _tag: &T, _event: TokenEvent) -> Result<(), Self::Error> {
        Ok(())
    }
    fn done(&mut self, done: DecodeDone<T>) -> Result<(), Self::Error>;
}

struct Active<T> {
    job: DecodeJob<T>,
    sampler: JobSampler,
    /// Next prompt index to decode.
    next_prompt: usize,
    /// Token sampled but not yet decoded.
    pending: Option<LlamaToken>,
    /// Batch index of this slot's logits in the current decode.
    logits_idx: Option<i32>,
    n_generated: usize,
    utf8: Utf8Stream,
    raw: String,
    /// Bytes of `raw` already handed out as streamed text.
    streamed: usize,
    spec: Option<JobSpec>,
}

/// A job's speculation state.
struct JobSpec {
    stats: SpecStats,
    /// Drafts decoded after `pending` in the current step.
    drafts: Vec<LlamaToken>,
    /// Lookup mode: n-grams of this job's prompt and output.
    lookup: NgramLookup,
}

/// How `run_batch` drafts: with a draft model (its context mirrors every sequence) or
/// by n-gram lookup in each job and in what earlier jobs produced.
pub struct BatchSpeculation<'d> {
    pub draft: Option<(&'d Model, ContextSpec)>,
    pub limits: DraftLimits,
}

/// Tokens the shared lookup table keeps before it starts over.
const SHARED_LOOKUP_MAX: usize = 1 << 20;

struct Slot<T> {
    seq: i32,
    /// Tokens held in this sequence's KV cache, at positions 0..len.
    cached: Vec<LlamaToken>,
    active: Option<Active<T>>,
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Prompt tokens decoded per step at most: long prompts go in chunks that interleave
/// with the other slots' decode steps, so one long prompt does not stall them.
const PROMPT_CHUNK: u32 = 512;

/// Shortest shared prefix worth copying from another sequence.
const MIN_SHARED_PREFIX: usize = 16;

/// Runs every job `feed` gives on a context of `spec` (one slot per sequence), until
/// the feed is empty or `stop` is set (in-flight jobs are then dropped).
pub fn run_batch<T, F: BatchFeed<T>>(
    model: &Model,
    spec: &ContextSpec,
    feed: &mut F,
    stop: &AtomicBool,
    speculation: Option<&BatchSpeculation<'_>>,
) -> Result<(), F::Error> {
    let parallel = spec.n_seq.max(1);
    // Every slot may add a token per step: the logical batch holds at least one each.
    let spec = ContextSpec {
        n_batch: spec.n_batch.min(PROMPT_CHUNK).max(parallel),
        ..spec.clone()
    };
    let mut ctx = new_context(model, &spec)?;
    let n_batch = ctx.n_batch() as usize;
    let mut drafter = match speculation.and_then(|s| s.draft.as_ref()) {
        Some((draft, draft_spec)) => {
            let draft_spec = ContextSpec {
                n_seq: parallel,
                n_batch: spec.n_batch,
                ..draft_spec.clone()
            };
            let p_min = speculation.map_or(0.0, |s| s.limits.p_min);
            Some(ModelDrafter::new(draft, &draft_spec, p_min)?)
        }
        None => None,
    };
    let limits = speculation.map(|s| s.limits);
    // One bandit per number of generating sequences: what a draft costs next to the
    // other sequences' tokens depends on how many there are.
    let mut bandits: Vec<LengthBandit> = limits
        .map(|l| vec![LengthBandit::new(l); parallel as usize + 1])
        .unwrap_or_default();
    let mut shared_lookup = NgramLookup::new();
    let ctx_per_seq = spec.ctx_per_seq() as usize;
    let bans = eog_bans(model);
    let mut slots: Vec<Slot<T>> = (0..parallel as i32)
        .map(|seq| Slot {
            seq,
            cached: Vec::new(),
            active: None,
        })
        .collect();
    let mut batch = LlamaBatch::new(n_batch, 1);
    let add = |batch: &mut LlamaBatch, tok, pos: usize, seq, logits| {
        batch
            .add(tok, pos as i32, &[seq], logits)
            .map_err(|e| EngineError::Decode(e.to_string()))
    };
    let mut exhausted = false;

    loop {
        // Fill free slots.
        for s in 0..slots.len() {
            while slots[s].active.is_none() && !exhausted && !stop.load(Ordering::Relaxed) {
                let idle = slots.iter().all(|s| s.active.is_none());
                let Some(job) = feed.next_job(idle)? else {
                    exhausted = idle;
                    break;
                };
                let n_prompt = job.prompt.len();
                // At least one token of answer must fit.
                if n_prompt == 0 || n_prompt + 1 > ctx_per_seq {
                    feed.done(DecodeDone {
                        tag: job.tag,
                        n_prompt,
                        outcome: JobOutcome::PromptTooLong { ctx_per_seq },
                    })?;
                    continue;
                }
                let sampler = match job.sampling.sampler_for_job(
                    model,
                    job.json_schema.as_deref(),
                    job.grammar.as_ref(),
                    job.ban_eog,
                    &bans,
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        feed.done(DecodeDone {
                            tag: job.tag,
                            n_prompt,
                            outcome: JobOutcome::BadSampling(e),
                        })?;
                        continue;
                    }
                };
                let job_spec = limits.map(|_| JobSpec {
                    stats: SpecStats::default(),
                    drafts: Vec::new(),
                    lookup: NgramLookup::new(),
                });
                start(&mut ctx, &mut slots, s, job, sampler, job_spec);
            }
        }
        let stopping = stop.load(Ordering::Relaxed);
        for slot in slots.iter_mut() {
            let cancel = match &slot.active {
                Some(a) => stopping || feed.cancelled(&a.job.tag),
                None => false,
            };
            if cancel {
                if let Some(a) = slot.active.take() {
                    feed.done(DecodeDone {
                        n_prompt: a.job.prompt.len(),
                        outcome: JobOutcome::Cancelled {
                            n_generated: a.n_generated,
                        },
                        tag: a.job.tag,
                    })?;
                }
            }
        }
        if slots.iter().all(|s| s.active.is_none()) {
            if stopping || exhausted {
                break;
            }
            continue;
        }

        // One decode step: pending tokens of generating slots first, then prompt chunks.
        batch.clear();
        let mut n_in_batch = 0usize;
        let step_started = std::time::Instant::now();
        let generating = slots
            .iter()
            .filter(|s| s.active.as_ref().is_some_and(|a| a.pending.is_some()))
            .count();
        let draft_len = bandits.get_mut(generating).map_or(0, LengthBandit::choose);
        let min_draft = limits.map_or(1, |l| l.min);
        draft_step(
            &mut slots,
            drafter.as_mut(),
            &shared_lookup,
            n_batch,
            ctx_per_seq,
            (draft_len, min_draft),
        )?;
        // Catching the draft up on tokens it has not seen (new prompts, steps taken
        // without drafting) is not what a draft length costs from step to step.
        let catchup_ms = match (&drafter, draft_len) {
            (Some(d), 1..) => d.catchup_ms,
            _ => 0.0,
        };
        let generated_before: usize = slots
            .iter()
            .filter_map(|s| s.active.as_ref())
            .map(|a| a.n_generated)
            .sum();
        let mut generated_by_finished = 0usize;
        for slot in slots.iter_mut() {
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            a.logits_idx = None;
            if let Some(tok) = a.pending.take() {
                add(&mut batch, tok, slot.cached.len(), slot.seq, true)?;
                slot.cached.push(tok);
                a.logits_idx = Some(n_in_batch as i32);
                n_in_batch += 1;
                for &d in a.spec.iter().flat_map(|s| s.drafts.iter()) {
                    add(&mut batch, d, slot.cached.len(), slot.seq, true)?;
                    slot.cached.push(d);
                    n_in_batch += 1;
                }
            }
        }
        for slot in slots.iter_mut() {
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            let remaining = a.job.prompt.len() - a.next_prompt;
            if remaining == 0 || n_in_batch >= n_batch {
                continue;
            }
            let take = remaining.min(n_batch - n_in_batch);
            for i in 0..take {
                let idx = a.next_prompt + i;
                let last = idx + 1 == a.job.prompt.len();
                let tok = a.job.prompt[idx];
                add(&mut batch, tok, slot.cached.len(), slot.seq, last)?;
                slot.cached.push(tok);
                if last {
                    a.logits_idx = Some(n_in_batch as i32);
                }
                n_in_batch += 1;
            }
            a.next_prompt += take;
        }
        if n_in_batch == 0 {
            return Err(EngineError::NoProgress.into());
        }
        ctx.decode(&mut batch)
            .map_err(|e| EngineError::Decode(e.to_string()))?;
        // Steps that decoded prompt tokens say nothing about drafting's worth.
        let prompt_in_step = n_in_batch
            - slots
                .iter()
                .filter_map(|s| s.active.as_ref())
                .filter(|a| a.logits_idx.is_some() && a.next_prompt == a.job.prompt.len())
                .map(|a| 1 + a.spec.as_ref().map_or(0, |s| s.drafts.len()))
                .sum::<usize>();

        // Sample for every slot whose logits were computed: its own token, then each
        // of its drafts the sampler agrees with.
        for slot in slots.iter_mut() {
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            let Some(idx) = a.logits_idx else { continue };
            let drafts = a
                .spec
                .as_mut()
                .map(|s| std::mem::take(&mut s.drafts))
                .unwrap_or_default();
            let mut matched = 0usize;
            let mut reason = None;
            loop {
                let row = idx + matched as i32;
                let tok = a.sampler.sample(&ctx, row);
                if model.is_eog(tok) {
                    reason = Some(FinishReason::Stop);
                    break;
                }
                a.n_generated += 1;
                let is_draft = drafts.get(matched) == Some(&tok);
                if let Some(s) = a.spec.as_mut() {
                    if is_draft {
                        s.stats.accepted += 1;
                    } else {
                        s.stats.target_steps += 1;
                    }
                }
                // Cache cells that stay if the drafts after this one are dropped.
                let committed =
                    slot.cached.len() - (drafts.len() - matched - usize::from(is_draft));
                let piece = model.piece(tok);
                let logprob = a
                    .job
                    .logprobs
                    .map(|top| token_logprob(model, ctx.get_logits_ith(row), tok, &piece, top));
                let text = a.utf8.push(&piece);
                a.raw.push_str(&text);
                if let Some(cut) = find_stop(&a.raw, &a.job.stop, text.len()) {
                    a.raw.truncate(cut);
                    reason = Some(FinishReason::Stop);
                } else if a.n_generated >= a.job.max_tokens || committed + 1 >= ctx_per_seq {
                    reason = Some(FinishReason::Length);
                } else if !is_draft {
                    a.pending = Some(tok);
                }
                let mut event = TokenEvent {
                    text: String::new(),
                    logprob,
                };
                if a.job.stream && reason.is_none() {
                    let safe = a.raw.len() - held_back(&a.raw, &a.job.stop);
                    if safe > a.streamed {
                        event.text = a.raw[a.streamed..safe].to_string();
                        a.streamed = safe;
                    }
                }
                feed.token(&a.job.tag, event)?;
                if is_draft && reason.is_none() {
                    matched += 1;
                    continue;
                }
                break;
            }
            // Drop the drafts the target did not take.
            let rejected = drafts.len() - matched;
            if rejected > 0 {
                let keep = slot.cached.len() - rejected;
                let removed = ctx
                    .clear_kv_cache_seq(Some(slot.seq as u32), Some(keep as u32), None)
                    .unwrap_or(false);
                if !removed {
                    return Err(EngineError::Decode(
                        "this model's cache cannot drop rejected draft tokens".into(),
                    )
                    .into());
                }
                slot.cached.truncate(keep);
            }
            if let Some(finish) = reason {
                if let Some(active) = slot.active.take() {
                    if active.spec.is_some() && drafter.is_none() {
                        if shared_lookup.len() > SHARED_LOOKUP_MAX {
                            shared_lookup = NgramLookup::new();
                        }
                        let ids: Vec<i32> = slot.cached.iter().map(|t| t.0).collect();
                        shared_lookup.extend(&ids);
                    }
                    generated_by_finished += active.n_generated;
                    feed.done(finished(active, finish))?;
                }
            }
        }
        if let Some(b) = bandits.get_mut(generating) {
            if prompt_in_step == 0 {
                let generated_after: usize = slots
                    .iter()
                    .filter_map(|s| s.active.as_ref())
                    .map(|a| a.n_generated)
                    .sum::<usize>()
                    + generated_by_finished;
                let ms = step_started.elapsed().as_secs_f64() * 1000.0 - catchup_ms;
                b.record(
                    draft_len,
                    generated_after.saturating_sub(generated_before),
                    ms,
                );
            }
        }
    }
    Ok(())
}

/// Drafts for every slot that has a token to decode: fills its `drafts` and starts
/// its `cycle`. Drafts share what the batch has left after every pending token.
fn draft_step<T>(
    slots: &mut [Slot<T>],
    drafter: Option<&mut ModelDrafter<'_>>,
    shared: &NgramLookup,
    n_batch: usize,
    ctx_per_seq: usize,
    (draft_len, min_draft): (usize, usize),
) -> Result<(), EngineError> {
    let pending = |s: &Slot<T>| s.active.as_ref().and_then(|a| a.pending);
    let n_pending = slots.iter().filter(|s| pending(s).is_some()).count();
    let speculating = slots
        .iter()
        .filter(|s| pending(s).is_some() && s.active.as_ref().is_some_and(|a| a.spec.is_some()))
        .count();
    if speculating == 0 || draft_len == 0 {
        return Ok(());
    }
    let per_slot = n_batch.saturating_sub(n_pending) / speculating;
    let mut ks = vec![0usize; slots.len()];
    for (i, slot) in slots.iter_mut().enumerate() {
        let Some(a) = slot.active.as_mut() else {
            continue;
        };
        if a.pending.is_none() || a.spec.is_none() {
            continue;
        }
        let room = ctx_per_seq.saturating_sub(slot.cached.len() + 2);
        let left = a.job.max_tokens.saturating_sub(a.n_generated);
        ks[i] = draft_len.min(room).min(left).min(per_slot);
    }
    let mut drafts: Vec<Vec<LlamaToken>> = vec![Vec::new(); slots.len()];
    match drafter {
        Some(d) => {
            let wanted: Vec<usize> = (0..slots.len()).filter(|&i| ks[i] > 0).collect();
            let asks: Vec<DraftAsk<'_>> = wanted
                .iter()
                .filter_map(|&i| {
                    Some(DraftAsk {
                        seq: slots[i].seq as usize,
                        history: &slots[i].cached,
                        next: pending(&slots[i])?,
                        max: ks[i],
                    })
                })
                .collect();
            let made = d.draft(&asks)?;
            for (i, dr) in wanted.into_iter().zip(made) {
                drafts[i] = dr;
            }
        }
        None => {
            for (i, slot) in slots.iter_mut().enumerate() {
                let Some(next) = pending(slot) else { continue };
                let Some(s) = slot.active.as_mut().and_then(|a| a.spec.as_mut()) else {
                    continue;
                };
                if ks[i] == 0 {
                    continue;
                }
                let ids: Vec<i32> = slot.cached.iter().map(|t| t.0).collect();
                s.lookup.sync(&ids);
                let mut d = s.lookup.draft(Some(next.0), ks[i]);
                if d.is_empty() {
                    d = shared.draft_for(&ids, Some(next.0), ks[i]);
                }
                drafts[i] = d.into_iter().map(LlamaToken).collect();
            }
        }
    }
    for (slot, d) in slots.iter_mut().zip(drafts) {
        let Some(s) = slot.active.as_mut().and_then(|a| a.spec.as_mut()) else {
            continue;
        };
        if d.len() < min_draft {
            continue;
        }
        s.stats.drafted += d.len() as u64;
        s.drafts = d;
    }
    Ok(())
}

fn finished<T>(active: Active<T>, finish: FinishReason) -> DecodeDone<T> {
    let mut text = active.raw;
    text.push_str(&{ active.utf8 }.flush());
    DecodeDone {
        tag: active.job.tag,
        n_prompt: active.job.prompt.len(),
        outcome: JobOutcome::Finished {
            text,
            n_generated: active.n_generated,
            finish,
            spec: active.spec.map(|s| s.stats),
        },
    }
}

/// Bytes at the end of `raw` that may be the start of a stop string (not yet safe to
/// stream), on a character boundary.
fn held_back(raw: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .map(|s| partial_suffix(raw, s))
        .max()
        .unwrap_or(0)
}

/// Log-softmax of the sampled token and the `top` most likely ones.
fn token_logprob(
    model: &Model,
    logits: &[f32],
    tok: LlamaToken,
    piece: &[u8],
    top: usize,
) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln() + max;
    let text = |bytes: Vec<u8>| TokenText {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    };
    let lp = |i: usize| logits.get(i).map_or(f32::NEG_INFINITY, |l| l - log_sum);
    let mut best: Vec<usize> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top || l > logits[best[best.len() - 1]] {
                let at = best.partition_point(|&b| logits[b] >= l);
                best.insert(at, i);
                best.truncate(top);
            }
        }
    }
    TokenLogprob {
        token: text(piece.to_vec()),
        logprob: lp(tok.0 as usize),
        top: best
            .into_iter()
            .map(|i| (text(model.piece(LlamaToken(i as i32))), lp(i)))
            .collect(),
    }
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
fn start<T>(
    ctx: &mut LlamaContext<'_>,
    slots: &mut [Slot<T>],
    s: usize,
    job: DecodeJob<T>,
    sampler: JobSampler,
    spec: Option<JobSpec>,
) {
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
        sampler,
        next_prompt,
        pending: None,
        logits_idx: None,
        n_generated: 0,
        utf8: Utf8Stream::default(),
        raw: String::new(),
        streamed: 0,
        spec,
    });
}

#[cfg(test)]
mod tests {
    use super::{find_stop, held_back};

    #[test]
    fn streamed_text_holds_back_what_may_become_a_stop_string() {
        let stops = vec!["END".to_string(), "\n\nUser:".to_string()];
        assert_eq!(held_back("hello E", &stops), 1);
        assert_eq!(held_back("hello EN", &stops), 2);
        assert_eq!(held_back("hello ENX", &stops), 0);
        assert_eq!(held_back("a\n\nUs", &stops), 4);
        assert_eq!(held_back("plain", &[]), 0);
        // Multi-byte text never splits a character.
        assert_eq!(held_back("café", &["é!".to_string()]), 2);
    }

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
