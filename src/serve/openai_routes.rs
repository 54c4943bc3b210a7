//! `/v1/chat/completions`, `/v1/completions` and `/v1/models`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::generation::{admit, collect, frames, Frame, StreamFormat};
use super::ollama::Timings;
use super::protocol::{
    chat_chunk, chat_completion, chat_logprobs, completion, completion_logprobs, usage_chunk,
    ApiError, ResponseMeta, Usage,
};
use super::state::{json_body, AppState, KEEP_ALIVE};
use crate::engine::TokenLogprob;
use crate::hub::store::now_unix;
use crate::request::{parse_body, ApiRequest, Endpoint};
use crate::tools::ReplyEvent;

fn meta(state: &AppState, prefix: &str) -> ResponseMeta {
    ResponseMeta {
        id: format!("{prefix}-{:024x}", rand::random::<u128>() >> 32),
        created: now_unix(),
        model: state.model_id.clone(),
        fingerprint: state.fingerprint(),
    }
}

fn parse(body: Result<Bytes, BytesRejection>, endpoint: Endpoint) -> Result<ApiRequest, ApiError> {
    parse_body(&json_body(body)?, endpoint).map_err(ApiError::field)
}

/// An SSE response of `frames`, ending with `data: [DONE]` when the answer completed.
fn sse<S>(frames: S) -> Response
where
    S: futures_util::Stream<Item = Frame> + Send + 'static,
{
    let events = frames.map(|f| {
        Ok::<_, Infallible>(match f {
            Frame::Message(v) | Frame::Error(v) => SseEvent::default().data(v.to_string()),
            Frame::End => SseEvent::default().data("[DONE]"),
        })
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

struct ChatFormat {
    meta: ResponseMeta,
    include_usage: bool,
    /// Calls sent so far (each call's `index`).
    n_calls: usize,
}

impl StreamFormat for ChatFormat {
    fn start(&mut self) -> Vec<Value> {
        vec![chat_chunk(
            &self.meta,
            json!({"role": "assistant", "content": ""}),
            None,
            None,
            self.include_usage,
        )]
    }

    fn text(&mut self, segments: Vec<ReplyEvent>, logprobs: Option<TokenLogprob>) -> Vec<Value> {
        let mut logprobs = logprobs.map(|l| chat_logprobs(&[l]));
        let mut out: Vec<Value> = Vec::with_capacity(segments.len());
        for seg in segments {
            let delta = match seg {
                ReplyEvent::Reasoning(r) => json!({"reasoning_content": r}),
                ReplyEvent::Content(a) => json!({"content": a}),
                // A whole call in one delta: id, type and name once, with the arguments.
                ReplyEvent::Call(c) => {
                    self.n_calls += 1;
                    json!({"tool_calls": [c.to_openai(Some(self.n_calls - 1))]})
                }
            };
            out.push(chat_chunk(
                &self.meta,
                delta,
                None,
                logprobs.take(),
                self.include_usage,
            ));
        }
        // A token whose text is still held back still reports its log-probability.
        if let Some(lp) = logprobs {
            out.push(chat_chunk(
                &self.meta,
                json!({"content": ""}),
                None,
                Some(lp),
                self.include_usage,
            ));
        }
        out
    }

    fn finish(&mut self, finish: &str, usage: Usage, _: Timings) -> Vec<Value> {
        let mut out = vec![chat_chunk(
            &self.meta,
            json!({}),
            Some(finish),
            None,
            self.include_usage,
        )];
        if self.include_usage {
            out.push(usage_chunk(&self.meta, "chat.completion.chunk", usage));
        }
        out
    }

    fn error(&mut self, e: &ApiError) -> Value {
        e.body()
    }
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req = parse(body, Endpoint::Chat)?;
    let admitted = admit(&state, &req).await?;
    let meta = meta(&state, "chatcmpl");
    if req.stream {
        let format = ChatFormat {
            meta,
            include_usage: req.include_usage,
            n_calls: 0,
        };
        return Ok(sse(frames(state, admitted, format)));
    }
    let a = collect(&state, admitted).await?;
    let logprobs = req.logprobs.map(|_| chat_logprobs(&a.logprobs));
    let usage = Usage {
        prompt: a.n_prompt,
        completion: a.n_generated,
    };
    let mut body = chat_completion(
        &meta,
        &a.content,
        &a.reasoning,
        &a.tool_calls,
        a.finish,
        logprobs,
        usage,
    );
    if let Some(spec) = &a.spec {
        body["timings"] = spec.timings_json();
    }
    Ok(axum::Json(body).into_response())
}

struct CompletionFormat {
    meta: ResponseMeta,
    include_usage: bool,
    /// Bytes of text sent so far (`text_offset`).
    sent: usize,
}

impl StreamFormat for CompletionFormat {
    fn start(&mut self) -> Vec<Value> {
        Vec::new()
    }

    fn text(&mut self, segments: Vec<ReplyEvent>, logprobs: Option<TokenLogprob>) -> Vec<Value> {
        let text: String = segments
            .into_iter()
            .filter_map(|s| match s {
                ReplyEvent::Reasoning(t) | ReplyEvent::Content(t) => Some(t),
                ReplyEvent::Call(_) => None,
            })
            .collect();
        if text.is_empty() && logprobs.is_none() {
            return Vec::new();
        }
        let lp = logprobs.map(|l| completion_logprobs(&[l], self.sent));
        self.sent += text.len();
        vec![completion(&self.meta, &text, None, lp, None)]
    }

    fn finish(&mut self, finish: &str, usage: Usage, _: Timings) -> Vec<Value> {
        let mut out = vec![completion(&self.meta, "", Some(finish), None, None)];
        if self.include_usage {
            out.push(usage_chunk(&self.meta, "text_completion", usage));
        }
        out
    }

    fn error(&mut self, e: &ApiError) -> Value {
        e.body()
    }
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req = parse(body, Endpoint::Completion)?;
    let admitted = admit(&state, &req).await?;
    let meta = meta(&state, "cmpl");
    if req.stream {
        let format = CompletionFormat {
            meta,
            include_usage: req.include_usage,
            sent: 0,
        };
        return Ok(sse(frames(state, admitted, format)));
    }
    let a = collect(&state, admitted).await?;
    let logprobs = req.logprobs.map(|_| completion_logprobs(&a.logprobs, 0));
    let usage = Usage {
        prompt: a.n_prompt,
        completion: a.n_generated,
    };
    let mut body = completion(&meta, &a.content, Some(a.finish), logprobs, Some(usage));
    if let Some(spec) = &a.spec {
        body["timings"] = spec.timings_json();
    }
    Ok(axum::Json(body).into_response())
}

/// The loaded model first, then the others in edge's store (loadable by restarting
/// the server with them).
pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    let mut data = vec![json!({
        "id": state.model_id,
        "object": "model",
        "created": state.started_unix,
        "owned_by": "edge",
    })];
    for m in state.other_installed().await {
        data.push(
            json!({"id": m.id(), "object": "model", "created": m.added_unix, "owned_by": "edge"}),
        );
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
