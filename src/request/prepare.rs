//! A validated request made ready for the scheduler: rendered through the model's own
//! template (user text tokenized without special-token parsing), sampling settled.

use serde_json::Value;

use super::{ApiRequest, RequestKind, ToolChoice};
use crate::chat::{render_prompt, sampling_for, thinking_on, SamplingOverrides};
use crate::chat_template::{Message, PromptPart, RenderOptions, ThinkingMode};
use crate::engine::{json_schema_grammar, DecodeJob, GrammarSpec, Model, Token};
use crate::tools::grammar::tool_grammar;
use crate::tools::{hermes_preamble, ReplyParser, ToolFormat, ToolSpec};

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
    #[error("this model's template does not support tools (tool_choice \"required\" or a named function still works: the tools are then described to the model and the call is forced)")]
    NoToolSupport,
    #[error("the tool grammar: {0}")]
    ToolGrammar(String),
}

/// The tools a request offered, in the format the model writes them.
#[derive(Debug, Clone)]
pub struct ToolSetup {
    pub format: ToolFormat,
    pub specs: Vec<ToolSpec>,
    /// The model's template renders the tools; otherwise edge describes them itself.
    pub template_renders: bool,
}

/// The parser for a request's output: reasoning split as its template thinks, calls
/// parsed when it offered tools (`edge batch` and `edge serve` alike).
pub fn reply_parser(split: ReasoningSplit, tools: Option<&ToolSetup>) -> ReplyParser {
    ReplyParser::new(
        split.splits.then_some(split.starts_in_reasoning),
        tools.map(|t| (t.format, t.specs.as_slice())),
    )
}

/// A request rendered and tokenized, waiting for its caller's tag.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub prompt: Vec<Token>,
    pub split: ReasoningSplit,
    /// Set when the answer is to be parsed for tool calls.
    pub tools: Option<ToolSetup>,
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
            grammar: j.grammar,
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
    let (tools, grammar) = tool_setup(model, req)?;
    let (prompt, split) = match &req.kind {
        RequestKind::Chat(messages) => {
            let mut opts = RenderOptions {
                add_generation_prompt: true,
                enable_thinking: (mode == ThinkingMode::Switchable).then_some(thinking),
                extra: Default::default(),
            };
            let mut messages = messages.clone();
            if let Some(t) = &tools {
                if t.template_renders {
                    opts.extra.insert(
                        "tools".into(),
                        Value::Array(t.specs.iter().map(|s| s.raw.clone()).collect()),
                    );
                } else {
                    let preamble = hermes_preamble(&t.specs);
                    match messages.first_mut().filter(|m| m.role == "system") {
                        Some(sys) => sys.content = format!("{}\n\n{preamble}", sys.content),
                        None => messages.insert(0, Message::system(&preamble)),
                    }
                }
            }
            let rendered = render_prompt(&model.template, &messages, &opts)
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
        tools,
        job: DecodeJob {
            tag: (),
            prompt: Vec::new(),
            sampling: sampling_for(mode != ThinkingMode::None, thinking, &overrides),
            json_schema: req.json_schema.as_ref().map(Value::to_string),
            grammar,
            ban_eog: req.ignore_eos,
            max_tokens: req.max_tokens.unwrap_or(defaults.max_tokens).max(1) as usize,
            stop: match req.kind {
                // A built-in chat format's end-of-turn text ends the answer.
                RequestKind::Chat(_) => req.stop.iter().chain(&model.chat_stop).cloned().collect(),
                RequestKind::Completion(_) => req.stop.clone(),
            },
            stream: req.stream,
            logprobs: req.logprobs,
        },
    })
}

/// The tools to offer and the grammar that holds calls to them, per `tool_choice`.
fn tool_setup(
    model: &Model,
    req: &ApiRequest,
) -> Result<(Option<ToolSetup>, Option<GrammarSpec>), PrepareError> {
    if req.tools.is_empty()
        || req.tool_choice == ToolChoice::None
        || !matches!(req.kind, RequestKind::Chat(_))
    {
        return Ok((None, None));
    }
    let specs: Vec<ToolSpec> = req.tools.iter().filter_map(ToolSpec::from_openai).collect();
    let detected = ToolFormat::detect(model.template.source());
    let (format, lazy, only) = match (detected, &req.tool_choice) {
        (None, ToolChoice::Auto) => return Err(PrepareError::NoToolSupport),
        (detected, choice) => (
            detected.unwrap_or(ToolFormat::Hermes),
            *choice == ToolChoice::Auto,
            match choice {
                ToolChoice::Named(n) => Some(n.as_str()),
                _ => None,
            },
        ),
    };
    let to_gbnf =
        |schema: &Value| json_schema_grammar(&schema.to_string()).map_err(|e| e.to_string());
    let g = tool_grammar(
        format,
        &specs,
        only,
        req.parallel_tool_calls.unwrap_or(lazy),
        lazy,
        &to_gbnf,
    )
    .map_err(PrepareError::ToolGrammar)?;
    Ok((
        Some(ToolSetup {
            format,
            specs,
            template_renders: detected.is_some(),
        }),
        Some(GrammarSpec {
            gbnf: g.gbnf,
            triggers: g.triggers,
        }),
    ))
}
