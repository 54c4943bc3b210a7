//! Ollama's routes. Errors use Ollama's shape, `{"error": "message"}`, which its
//! clients read.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::generation::{admit, collect, frames, timings, Frame, StreamFormat};
use super::ollama::{
    chat_line, generate_line, parse_chat, parse_generate, rfc3339, shown_model, Timings,
};
use super::protocol::{ApiError, Usage};
use super::state::{json_body, AppState};
use crate::engine::TokenLogprob;
use crate::tools::{ReplyEvent, ToolCall};

/// An [`ApiError`] in Ollama's shape.
pub struct OllamaError(ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        OllamaError(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(json!({"error": self.0.message}))).into_response()
    }
}

fn now() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    rfc3339(nanos)
}

/// Which kind of line a stream writes.
#[derive(Clone, Copy)]
enum Api {
    Chat,
    Generate,
}

struct LineFormat {
    api: Api,
    model: String,
}

impl LineFormat {
    fn line(&self, content: &str, thinking: &str, done: Option<(&str, Timings)>) -> Value {
        match self.api {
            Api::Chat => chat_line(&self.model, &now(), content, thinking, done),
            Api::Generate => generate_line(&self.model, &now(), content, thinking, done),
        }
    }
}

impl StreamFormat for LineFormat {
    fn start(&mut self) -> Vec<Value> {
        Vec::new()
    }

    fn text(&mut self, segments: Vec<ReplyEvent>, _: Option<TokenLogprob>) -> Vec<Value> {
        segments
            .into_iter()
            .map(|s| match s {
                ReplyEvent::Reasoning(r) => self.line("", &r, None),
                ReplyEvent::Content(a) => self.line(&a, "", None),
                ReplyEvent::Call(c) => {
                    let mut v = self.line("", "", None);
                    with_calls(&mut v, &[c]);
                    v
                }
            })
            .collect()
    }

    fn finish(&mut self, finish: &str, _: Usage, t: Timings) -> Vec<Value> {
        let finish = if finish == "tool_calls" {
            "stop"
        } else {
            finish
        };
        vec![self.line("", "", Some((finish, t)))]
    }

    fn error(&mut self, e: &ApiError) -> Value {
        json!({"error": e.message})
    }
}

/// Ollama's `message.tool_calls`: arguments as an object.
fn with_calls(line: &mut Value, calls: &[ToolCall]) {
    if calls.is_empty() || line.get("message").is_none() {
        return;
    }
    line["message"]["tool_calls"] = calls
        .iter()
        .map(|c| {
            let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
            json!({"function": {"name": c.name, "arguments": args}})
        })
        .collect();
}

fn ndjson<S>(frames: S) -> Response
where
    S: futures_util::Stream<Item = Frame> + Send + 'static,
{
    let lines = frames.filter_map(|f| async move {
        match f {
            Frame::Message(v) | Frame::Error(v) => {
                Some(Ok::<_, Infallible>(Bytes::from(format!("{v}\n"))))
            }
            Frame::End => None,
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn run(
    state: Arc<AppState>,
    req: crate::request::ApiRequest,
    api: Api,
) -> Result<Response, OllamaError> {
    let admitted = admit(&state, &req).await?;
    let format = LineFormat {
        api,
        model: state.model_id.clone(),
    };
    if req.stream {
        return Ok(ndjson(frames(state, admitted, format)));
    }
    let arrived = admitted.arrived;
    let a = collect(&state, admitted).await?;
    let t = timings(arrived, a.first_token, a.n_prompt, a.n_generated);
    // Ollama ends a turn with calls as "stop".
    let finish = if a.finish == "tool_calls" {
        "stop"
    } else {
        a.finish
    };
    let mut line = format.line(&a.content, &a.reasoning, Some((finish, t)));
    with_calls(&mut line, &a.tool_calls);
    Ok(axum::Json(line).into_response())
}

pub async fn chat(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let req = parse_chat(&json_body(body)?).map_err(ApiError::field)?;
    run(state, req, Api::Chat).await
}

pub async fn generate(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let body = json_body(body)?;
    match parse_generate(&body).map_err(ApiError::field)? {
        Some(req) => run(state, req, Api::Generate).await,
        // An empty prompt only asks that the model be loaded.
        None => {
            state.ready_model()?;
            Ok(axum::Json(generate_line(
                &state.model_id,
                &now(),
                "",
                "",
                Some(("load", Timings::default())),
            ))
            .into_response())
        }
    }
}

fn details(state: &AppState) -> Value {
    let facts = state.model.get().map(|m| m.facts.clone());
    let quant = facts
        .as_ref()
        .and_then(|f| f.quant_mix.first().map(|q| q.ggml_type.clone()))
        .unwrap_or_default();
    let family = facts
        .as_ref()
        .map(|f| f.architecture.clone())
        .unwrap_or_default();
    let params = facts.as_ref().map_or(0, |f| f.n_params);
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": crate::term::human_count(params),
        "quantization_level": quant,
    })
}

pub async fn tags(State(state): State<Arc<AppState>>) -> Response {
    let size = state.model.get().map_or(0, |m| m.facts.file_size);
    let mut models = vec![json!({
        "name": state.model_id,
        "model": state.model_id,
        "modified_at": rfc3339(u128::from(state.started_unix) * 1_000_000_000),
        "size": size,
        "digest": state.sha256().unwrap_or_default(),
        "details": details(&state),
    })];
    for m in state.other_installed().await {
        let digest = m
            .files
            .first()
            .and_then(|f| f.sha256.clone())
            .unwrap_or_default();
        models.push(json!({
            "name": m.id(),
            "model": m.id(),
            "modified_at": rfc3339(u128::from(m.added_unix) * 1_000_000_000),
            "size": m.size,
            "digest": digest,
            "details": {"format": "gguf", "quantization_level": m.quant.clone().unwrap_or_default()},
        }));
    }
    axum::Json(json!({"models": models})).into_response()
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let body = json_body(body)?;
    let name = shown_model(&body).unwrap_or_default();
    if !name.is_empty() && name != state.model_id {
        return Err(ApiError::not_found(format!(
            "model '{name}' not found: this server runs '{}'",
            state.model_id
        ))
        .into());
    }
    let model = state.ready_model()?;
    let f = &model.facts;
    let arch = &f.architecture;
    let mut info = serde_json::Map::new();
    info.insert("general.architecture".into(), json!(arch));
    info.insert("general.parameter_count".into(), json!(f.n_params));
    if let Some(n) = f.context_length {
        info.insert(format!("{arch}.context_length"), json!(n));
    }
    if let Some(n) = f.n_embd {
        info.insert(format!("{arch}.embedding_length"), json!(n));
    }
    if let Some(n) = f.n_layer {
        info.insert(format!("{arch}.block_count"), json!(n));
    }
    let mut capabilities = vec!["completion"];
    if model.template.caps().thinking != crate::chat_template::ThinkingMode::None {
        capabilities.push("thinking");
    }
    Ok(axum::Json(json!({
        "modelfile": "",
        "parameters": format!("num_ctx {}", state.ctx_per_seq),
        "template": model.template.source(),
        "details": details(&state),
        "model_info": info,
        "capabilities": capabilities,
        "modified_at": rfc3339(u128::from(state.started_unix) * 1_000_000_000),
    }))
    .into_response())
}

pub async fn version() -> Response {
    axum::Json(json!({"version": env!("CARGO_PKG_VERSION")})).into_response()
}
