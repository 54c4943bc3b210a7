//! A validated request made ready for the scheduler: rendered through the model's own
//! template (user text tokenized without special-token parsing), sampling settled.

use serde_json::Value;

use super::{ApiRequest, RequestKind};
use crate::chat::{render_prompt, sampling_for, thinking_on, SamplingOverrides};
use crate::chat_template::{PromptPart, RenderOptions, ThinkingMode};
use crate::engine::{DecodeJob, Model, Token};

/// What a caller fills in where a request is silent.
#[derive(Debug, Clone, Default)]
pub struct JobDefaults {
    pub max_tokens: u32,
    /// Sampling for requests that set none (unset fields: the model's defaults).
    pub sampling: SamplingOverrides,
}

/// How the output splits into reasoning and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasoningSplit {
    /// The model may think: split `<think>…</think>` out of the answer.
    pub splits: bool,
    /// The generation prompt already opened `<think>`.
    pub starts_in_reasoning: bool,
}

/// Why a request cannot become a job.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("the chat template failed on these messages: {0}")]
    Template(String),
    #[error("the prompt is empty")]
    EmptyPrompt,
}

/// A request rendered and tokenized, waiting for its caller's tag.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub prompt: Vec<Token>,
    pub split: ReasoningSplit,
    job: DecodeJob<()>,
}

impl Prepared {
    pub fn into_job<T>(self, tag: T) -> DecodeJob<T> {
        let j = self.job;
        DecodeJob {
            tag,
            prompt: self.prompt,
            sampling: j.sampling,
            json_schema: j.json_schema,
            ban_eog: j.ban_eog,
            max_tokens: j.max_tokens,
            stop: j.stop,
            stream: j.stream,
            logprobs: j.logprobs,
        }
    }
}

/// Renders and tokenizes `req` for `model`. `seed` is used when the request sets none.
pub fn prepare(
    model: &Model,
    req: &ApiRequest,
    defaults: &JobDefaults,
    seed: u32,
) -> Result<Prepared, PrepareError> {
    let mode = model.template.caps().thinking;
    let thinking = thinking_on(mode, req.enable_thinking);
    let (prompt, split) = match &req.kind {
        RequestKind::Chat(messages) => {
            let opts = RenderOptions {
                add_generation_prompt: true,
                enable_thinking: (mode == ThinkingMode::Switchable).then_some(thinking),
                extra: Default::default(),
            };
            let rendered = render_prompt(&model.template, messages, &opts)
                .map_err(|e| PrepareError::Template(format!("{e:#}")))?;
            (
                model.tokenize_parts(&rendered.parts),
                ReasoningSplit {
                    splits: mode != ThinkingMode::None,
                    starts_in_reasoning: rendered.starts_in_reasoning,
                },
            )
        }
        RequestKind::Completion(text) => {
            // Raw text, never parsed for special tokens; BOS as the model wants it.
            let part = PromptPart {
                text: text.clone(),
                special: false,
            };
            (
                model.tokenize_parts(&[part]),
                ReasoningSplit {
                    splits: false,
                    starts_in_reasoning: false,
                },
            )
        }
    };
    if prompt.is_empty() {
        return Err(PrepareError::EmptyPrompt);
    }
    let d = &defaults.sampling;
    let overrides = SamplingOverrides {
        temp: req.temperature.or(d.temp),
        top_k: req.top_k.or(d.top_k),
        top_p: req.top_p.or(d.top_p),
        min_p: req.min_p.or(d.min_p),
        seed: Some(req.seed.unwrap_or(seed)),
    };
    Ok(Prepared {
        prompt,
        split,
        job: DecodeJob {
            tag: (),
            prompt: Vec::new(),
            sampling: sampling_for(mode != ThinkingMode::None, thinking, &overrides),
            json_schema: req.json_schema.as_ref().map(Value::to_string),
            ban_eog: req.ignore_eos,
            max_tokens: req.max_tokens.unwrap_or(defaults.max_tokens).max(1) as usize,
            stop: req.stop.clone(),
            stream: req.stream,
            logprobs: req.logprobs,
        },
    })
}
