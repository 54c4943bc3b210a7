//! A request's life between its handler and the engine: admission (render, tokenize,
//! check it fits, queue it) and reading its answer back, whole or piece by piece.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use tokio::sync::mpsc::UnboundedReceiver;

use super::ollama::Timings;
use super::protocol::{ApiError, Usage};
use super::state::AppState;
use super::worker::{Event, Rejected, Ticket};
use crate::engine::{json_schema_grammar, JobOutcome, TokenEvent, TokenLogprob};
use crate::request::prepare::{prepare, reply_parser, PrepareError, ReasoningSplit, ToolSetup};
use crate::request::ApiRequest;
use crate::tools::{Reply, ReplyEvent, ReplyParser, ToolCall};

/// A queued request.
pub struct Admitted {
    pub events: UnboundedReceiver<Event>,
    pub split: ReasoningSplit,
    pub tools: Option<ToolSetup>,
    pub n_prompt: usize,
    pub arrived: Instant,
}

/// Renders, tokenizes and checks `req`, then queues it.
pub async fn admit(state: &Arc<AppState>, req: &ApiRequest) -> Result<Admitted, ApiError> {
    let arrived = Instant::now();
    let model = state.ready_model()?;
    let defaults = state.defaults.clone();
    let owned = req.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        if let Some(schema) = &owned.json_schema {
            json_schema_grammar(&schema.to_string()).map_err(|e| ApiError {
                param: Some("response_format".into()),
                ..ApiError::invalid(e.to_string())
            })?;
        }
        prepare(&model, &owned, &defaults, rand::random()).map_err(|e| match e {
            PrepareError::Template(_) => {
                ApiError::invalid(e.to_string()).with_code("template_error")
            }
            PrepareError::EmptyPrompt => ApiError::invalid(e.to_string()),
            PrepareError::NoToolSupport => ApiError {
                param: Some("tools".into()),
                ..ApiError::invalid(e.to_string()).with_code("tools_unsupported")
            },
            PrepareError::ToolGrammar(_) => ApiError {
                param: Some("tools".into()),
                ..ApiError::invalid(e.to_string())
            },
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("preparing the request failed: {e}")))??;
    let n_prompt = prepared.prompt.len();
    if n_prompt + 1 > state.ctx_per_seq {
        return Err(ApiError::context_length(n_prompt, state.ctx_per_seq));
    }
    let split = prepared.split;
    let tools = prepared.tools.clone();
    let (ticket, events) = Ticket::new(arrived);
    match state.queue.submit(prepared.into_job(ticket)) {
        Ok(()) => Ok(Admitted {
            events,
            split,
            tools,
            n_prompt,
            arrived,
        }),
        Err(Rejected::Full) => Err(ApiError::busy(state.queue.capacity())),
        Err(Rejected::Stopped) => Err(ApiError::shutting_down()),
    }
}

/// A finished answer.
#[derive(Debug, Default)]
pub struct Answer {
    pub content: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: &'static str,
    pub logprobs: Vec<TokenLogprob>,
    pub n_prompt: usize,
    pub n_generated: usize,
    /// When the first token came (for Ollama's prompt/eval split).
    pub first_token: Option<Instant>,
    /// Speculation counters, when the server drafts.
    pub spec: Option<crate::speculative::SpecStats>,
}

/// What a job's end means for its client, when it is not a finished answer.
pub fn outcome_error(n_prompt: usize, outcome: &JobOutcome, stopping: bool) -> ApiError {
    match outcome {
        JobOutcome::PromptTooLong { ctx_per_seq } => {
            ApiError::context_length(n_prompt, *ctx_per_seq)
        }
        JobOutcome::BadSampling(e) => ApiError {
            param: Some("response_format".into()),
            ..ApiError::invalid(e.to_string())
        },
        JobOutcome::Cancelled { .. } if stopping => ApiError::shutting_down(),
        _ => ApiError::internal("generation stopped"),
    }
}

/// The error for a job whose channel closed with no result (the engine failed).
pub fn lost(stopping: bool) -> ApiError {
    if stopping {
        ApiError::shutting_down()
    } else {
        ApiError::internal("generation failed (llama.cpp refused a decode; see the server log)")
    }
}

/// Waits for the whole answer.
pub async fn collect(state: &AppState, mut a: Admitted) -> Result<Answer, ApiError> {
    let mut answer = Answer {
        n_prompt: a.n_prompt,
        ..Default::default()
    };
    while let Some(event) = a.events.recv().await {
        match event {
            Event::Token(t) => {
                answer.first_token.get_or_insert_with(Instant::now);
                answer.logprobs.extend(t.logprob);
            }
            Event::Done {
                outcome:
                    JobOutcome::Finished {
                        text,
                        n_generated,
                        finish,
                        spec,
                    },
                ..
            } => {
                answer.spec = spec;
                let reply: Reply = reply_parser(a.split, a.tools.as_ref()).parse_all(&text);
                answer.reasoning = reply.reasoning;
                answer.content = reply.content;
                answer.finish = if reply.calls.is_empty() {
                    finish.as_str()
                } else {
                    "tool_calls"
                };
                answer.tool_calls = reply.calls;
                answer.n_generated = n_generated;
                return Ok(answer);
            }
            Event::Done { n_prompt, outcome } => {
                return Err(outcome_error(n_prompt, &outcome, state.stopping()))
            }
        }
    }
    Err(lost(state.stopping()))
}

/// What a streaming handler turns into chunks or lines.
#[derive(Debug)]
pub enum Piece {
    /// Text and the log-probabilities of the token that produced it.
    Text {
        segments: Vec<ReplyEvent>,
        logprobs: Option<TokenLogprob>,
    },
    Finished {
        finish: &'static str,
        n_prompt: usize,
        n_generated: usize,
    },
    Failed(ApiError),
}

/// Turns a job's events into reasoning, content and tool calls, as they become certain.
pub struct Pieces {
    parser: ReplyParser,
    streamed: usize,
    n_calls: usize,
}

impl Pieces {
    pub fn new(split: ReasoningSplit, tools: Option<&ToolSetup>) -> Pieces {
        Pieces {
            parser: reply_parser(split, tools),
            streamed: 0,
            n_calls: 0,
        }
    }

    fn segments(&mut self, text: &str) -> Vec<ReplyEvent> {
        let events = self.parser.push(text);
        self.n_calls += events
            .iter()
            .filter(|e| matches!(e, ReplyEvent::Call(_)))
            .count();
        events
    }

    pub fn on_token(&mut self, t: TokenEvent) -> Piece {
        self.streamed += t.text.len();
        Piece::Text {
            segments: self.segments(&t.text),
            logprobs: t.logprob,
        }
    }

    /// The pieces a job's end gives: the text held back so far, then the finish.
    pub fn on_done(&mut self, n_prompt: usize, outcome: JobOutcome, stopping: bool) -> Vec<Piece> {
        let JobOutcome::Finished {
            text,
            n_generated,
            finish,
            ..
        } = outcome
        else {
            return vec![Piece::Failed(outcome_error(n_prompt, &outcome, stopping))];
        };
        let rest = text.get(self.streamed..).unwrap_or_default().to_string();
        let mut segments = self.segments(&rest);
        let tail = self.parser.finish();
        self.n_calls += tail
            .iter()
            .filter(|e| matches!(e, ReplyEvent::Call(_)))
            .count();
        segments.extend(tail);
        vec![
            Piece::Text {
                segments,
                logprobs: None,
            },
            Piece::Finished {
                finish: if self.n_calls > 0 {
                    "tool_calls"
                } else {
                    finish.as_str()
                },
                n_prompt,
                n_generated,
            },
        ]
    }
}

/// How a stream's pieces become JSON messages (OpenAI chunks or Ollama lines).
pub trait StreamFormat: Send + 'static {
    /// Messages sent before any token (OpenAI's role chunk).
    fn start(&mut self) -> Vec<Value>;
    fn text(&mut self, segments: Vec<ReplyEvent>, logprobs: Option<TokenLogprob>) -> Vec<Value>;
    fn finish(&mut self, finish: &str, usage: Usage, timings: Timings) -> Vec<Value>;
    fn error(&mut self, e: &ApiError) -> Value;
}

/// One message of a stream.
#[derive(Debug)]
pub enum Frame {
    Message(Value),
    /// The stream ended with an error (sent as a message; no end marker follows).
    Error(Value),
    /// The answer is complete.
    End,
}

struct StreamState<F> {
    state: Arc<AppState>,
    admitted: Admitted,
    pieces: Pieces,
    format: F,
    out: VecDeque<Frame>,
    first_token: Option<Instant>,
    finished: bool,
}

impl<F: StreamFormat> StreamState<F> {
    fn push_piece(&mut self, piece: Piece) {
        match piece {
            Piece::Text { segments, logprobs } => {
                for v in self.format.text(segments, logprobs) {
                    self.out.push_back(Frame::Message(v));
                }
            }
            Piece::Finished {
                finish,
                n_prompt,
                n_generated,
            } => {
                let timings = timings(
                    self.admitted.arrived,
                    self.first_token,
                    n_prompt,
                    n_generated,
                );
                let usage = Usage {
                    prompt: n_prompt,
                    completion: n_generated,
                };
                for v in self.format.finish(finish, usage, timings) {
                    self.out.push_back(Frame::Message(v));
                }
                self.out.push_back(Frame::End);
                self.finished = true;
            }
            Piece::Failed(e) => {
                let v = self.format.error(&e);
                self.out.push_back(Frame::Error(v));
                self.finished = true;
            }
        }
    }
}

/// Ollama's durations from a request's arrival and first token.
pub fn timings(
    arrived: Instant,
    first: Option<Instant>,
    n_prompt: usize,
    n_generated: usize,
) -> Timings {
    let total = arrived.elapsed();
    let prompt = first.map_or(total, |f| f.duration_since(arrived));
    Timings {
        total_ns: total.as_nanos() as u64,
        prompt_tokens: n_prompt,
        prompt_ns: prompt.as_nanos() as u64,
        generated_tokens: n_generated,
        generation_ns: total.saturating_sub(prompt).as_nanos() as u64,
    }
}

/// The frames of a queued request's answer, as they become certain. Dropping the
/// stream (the client went away) drops the job's channel, which cancels it.
pub fn frames<F: StreamFormat>(
    state: Arc<AppState>,
    admitted: Admitted,
    mut format: F,
) -> impl futures_util::Stream<Item = Frame> + Send {
    let out: VecDeque<Frame> = format.start().into_iter().map(Frame::Message).collect();
    let s = StreamState {
        pieces: Pieces::new(admitted.split, admitted.tools.as_ref()),
        state,
        admitted,
        format,
        out,
        first_token: None,
        finished: false,
    };
    futures_util::stream::unfold(s, |mut s| async move {
        loop {
            if let Some(frame) = s.out.pop_front() {
                return Some((frame, s));
            }
            if s.finished {
                return None;
            }
            match s.admitted.events.recv().await {
                Some(Event::Token(t)) => {
                    s.first_token.get_or_insert_with(Instant::now);
                    let piece = s.pieces.on_token(t);
                    s.push_piece(piece);
                }
                Some(Event::Done { n_prompt, outcome }) => {
                    let stopping = s.state.stopping();
                    for piece in s.pieces.on_done(n_prompt, outcome, stopping) {
                        s.push_piece(piece);
                    }
                }
                None => {
                    let e = lost(s.state.stopping());
                    s.push_piece(Piece::Failed(e));
                }
            }
        }
    })
}
