//! Batch requests on the engine's continuous-batching scheduler
//! ([`crate::engine::run_batch`]): each request is rendered through the model's own
//! template, tokenized and handed over as a [`DecodeJob`]; each result becomes an
//! output record (OpenAI batch format) with the reasoning split out.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use serde_json::Value;

use super::{error_record, stable_hash, success_record, Answer, BatchRequest};
use crate::chat::SamplingOverrides;
use crate::engine::{
    run_batch, BatchFeed, BatchSpeculation, ContextSpec, DecodeDone, DecodeJob, JobOutcome, Model,
};
use crate::request::prepare::{reply_parser, JobDefaults, PrepareError, ReasoningSplit, ToolSetup};

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
    split: ReasoningSplit,
    tools: Option<ToolSetup>,
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
    let defaults = JobDefaults {
        max_tokens: opts.default_max_tokens,
        sampling: opts.default_sampling.clone(),
    };
    let seed = stable_hash(&format!("{}:{}", opts.seed, req.custom_id)) as u32;
    match crate::request::prepare::prepare(model, &req.request, &defaults, seed) {
        Ok(p) => {
            let (split, tools) = (p.split, p.tools.clone());
            Ok(p.into_job(Tag { req, split, tools }))
        }
        Err(e @ PrepareError::Template(_)) => Err(failure(&req, "template_error", e.to_string())),
        Err(e @ PrepareError::EmptyPrompt) => Err(failure(&req, "invalid_request", e.to_string())),
        Err(e @ PrepareError::NoToolSupport) => {
            Err(failure(&req, "tools_unsupported", e.to_string()))
        }
        Err(e @ PrepareError::ToolGrammar(_)) => {
            Err(failure(&req, "invalid_request", e.to_string()))
        }
    }
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
            spec,
        } => {
            let reply = reply_parser(tag.split, tag.tools.as_ref()).parse_all(&text);
            let finish = if reply.calls.is_empty() {
                finish.as_str()
            } else {
                "tool_calls"
            };
            let mut record = success_record(
                req,
                &opts.model_name,
                &Answer {
                    content: &reply.content,
                    reasoning: &reply.reasoning,
                    tool_calls: &reply.calls,
                },
                finish,
                done.n_prompt,
                n_generated,
                crate::hub::store::now_unix(),
            );
            if let Some(spec) = spec {
                record["response"]["body"]["timings"] = spec.timings_json();
            }
            Finished {
                record,
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
        JobOutcome::Cancelled { .. } => failure(req, "cancelled", "the run stopped".into()),
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

    fn next_job(&mut self, _idle: bool) -> Result<Option<DecodeJob<Tag>>> {
        while let Some(req) = self.queue.pop_front() {
            match prepare(self.model, req, self.opts) {
                Ok(job) => return Ok(Some(job)),
                Err(failed) => (self.on_done)(failed)?,
            }
        }
        Ok(None)
    }

    fn done(&mut self, done: DecodeDone<Tag>) -> Result<()> {
        // An interrupted request is not recorded: a rerun resumes it.
        if matches!(done.outcome, JobOutcome::Cancelled { .. }) {
            return Ok(());
        }
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
    speculation: Option<&BatchSpeculation<'_>>,
    on_done: &mut dyn FnMut(Finished) -> Result<()>,
) -> Result<()> {
    let mut feed = Feed {
        model,
        queue: requests.into(),
        opts,
        on_done,
    };
    run_batch(model, spec, &mut feed, stop, speculation)
}
