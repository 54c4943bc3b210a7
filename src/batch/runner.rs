//! Batch requests on the engine's continuous-batching scheduler
//! ([`crate::engine::run_batch`]): each request is rendered through the model's own
//! template, tokenized and handed over as a [`DecodeJob`]; each result becomes an
//! output record (OpenAI batch format) with the reasoning split out.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use serde_json::Value;

use super::{error_record, stable_hash, success_record, BatchRequest, RequestKind};
use crate::chat::{render_prompt, sampling_for, thinking_on, SamplingOverrides};
use crate::chat_template::{PromptPart, RenderOptions, ThinkingMode};
use crate::engine::{
    run_batch, BatchFeed, ContextSpec, DecodeDone, DecodeJob, JobOutcome, Model, Token,
};
use crate::thinking::split_all;

#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub default_max_tokens: u32,
    /// Sampling for requests that set none (unset fields: the model's defaults).
    pub default_sampling: SamplingOverrides,
    /// Base seed; each request's seed derives from it and its custom_id, so results
    /// do not depend on scheduling.
    pub seed: u32,
    pub model_name: String,
    /// What a too-long prompt's error record suggests (the command names its flag).
    pub longer_context_hint: String,
}

/// A finished request.
pub struct Finished {
    pub record: Value,
    pub ok: bool,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// What the scheduler carries for each request.
struct Tag {
    req: BatchRequest,
    starts_in_reasoning: bool,
    splits_reasoning: bool,
}

fn failure(req: &BatchRequest, code: &str, msg: String) -> Finished {
    Finished {
        record: error_record(Some(&req.custom_id), req.line, code, &msg),
        ok: false,
        prompt_tokens: 0,
        completion_tokens: 0,
    }
}

/// Renders and tokenizes `req`, or says why it cannot run.
fn prepare(
    model: &Model,
    req: BatchRequest,
    opts: &RunnerOptions,
) -> Result<DecodeJob<Tag>, Finished> {
    let mode = model.template.caps().thinking;
    let thinking_on = thinking_on(mode, req.enable_thinking);
    let (prompt, starts_in_reasoning, splits_reasoning): (Vec<Token>, bool, bool) = match &req.kind
    {
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
                Err(e) => return Err(failure(&req, "template_error", format!("{e:#}"))),
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
        return Err(failure(
            &req,
            "invalid_request",
            "the prompt is empty".into(),
        ));
    }
    let d = &opts.default_sampling;
    let overrides = SamplingOverrides {
        temp: req.temperature.or(d.temp),
        top_k: req.top_k.or(d.top_k),
        top_p: req.top_p.or(d.top_p),
        min_p: req.min_p.or(d.min_p),
        seed: Some(
            req.seed
                .unwrap_or_else(|| stable_hash(&format!("{}:{}", opts.seed, req.custom_id)) as u32),
        ),
    };
    Ok(DecodeJob {
        prompt,
        sampling: sampling_for(mode != ThinkingMode::None, thinking_on, &overrides),
        json_schema: req.json_schema.as_ref().map(Value::to_string),
        ban_eog: req.ignore_eos,
        max_tokens: req.max_tokens.unwrap_or(opts.default_max_tokens).max(1) as usize,
        stop: req.stop.clone(),
        tag: Tag {
            req,
            starts_in_reasoning,
            splits_reasoning,
        },
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The record of a job the scheduler finished.
fn record(done: DecodeDone<Tag>, opts: &RunnerOptions) -> Finished {
    let tag = done.tag;
    let req = &tag.req;
    match done.outcome {
        JobOutcome::Finished {
            text,
            n_generated,
            finish,
        } => {
            let (reasoning, content) = if tag.splits_reasoning {
                split_all(&text, tag.starts_in_reasoning)
            } else {
                (String::new(), text)
            };
            Finished {
                record: success_record(
                    req,
                    &opts.model_name,
                    &content,
                    Some(reasoning.as_str()),
                    finish.as_str(),
                    done.n_prompt,
                    n_generated,
                    now_secs(),
                ),
                ok: true,
                prompt_tokens: done.n_prompt,
                completion_tokens: n_generated,
            }
        }
        JobOutcome::PromptTooLong { ctx_per_seq } => failure(
            req,
            "context_length_exceeded",
            format!(
                "line {}: the prompt is {} tokens but each sequence's context holds {} ({})",
                req.line, done.n_prompt, ctx_per_seq, opts.longer_context_hint
            ),
        ),
        JobOutcome::BadSampling(e) => failure(req, "invalid_schema", e.to_string()),
    }
}

struct Feed<'a> {
    model: &'a Model,
    queue: VecDeque<BatchRequest>,
    opts: &'a RunnerOptions,
    on_done: &'a mut dyn FnMut(Finished) -> Result<()>,
}

impl BatchFeed<Tag> for Feed<'_> {
    type Error = anyhow::Error;

    fn next_job(&mut self) -> Result<Option<DecodeJob<Tag>>> {
        while let Some(req) = self.queue.pop_front() {
            match prepare(self.model, req, self.opts) {
                Ok(job) => return Ok(Some(job)),
                Err(failed) => (self.on_done)(failed)?,
            }
        }
        Ok(None)
    }

    fn done(&mut self, done: DecodeDone<Tag>) -> Result<()> {
        (self.on_done)(record(done, self.opts))
    }
}

/// Runs `requests` on a context of `spec` (one sequence per slot), calling `on_done`
/// for each as it finishes (completion order). Stops scheduling new work when `stop`
/// is set; in-flight requests are dropped.
pub fn run(
    model: &Model,
    spec: &ContextSpec,
    requests: Vec<BatchRequest>,
    opts: &RunnerOptions,
    stop: &AtomicBool,
    on_done: &mut dyn FnMut(Finished) -> Result<()>,
) -> Result<()> {
    let mut feed = Feed {
        model,
        queue: requests.into(),
        opts,
        on_done,
    };
    run_batch(model, spec, &mut feed, stop)
}
