//! Ollama's API (`/api/chat`, `/api/generate`, `/api/tags`, `/api/show`), so Ollama
//! clients work unchanged: its request bodies become the same [`ApiRequest`] the
//! OpenAI routes use, and its NDJSON answers are built here. Pure logic.

use serde_json::{json, Map, Value};

use crate::chat_template::{strftime_utc, Message};
use crate::request::{bool_field, int_in, num_in, ApiRequest, FieldError, RequestKind};

fn bad(param: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        param: Some(param.to_string()),
        message: message.into(),
    }
}

fn no_images(v: &Map<String, Value>, param: &str) -> Result<(), FieldError> {
    match v.get("images") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(_) => Err(bad(
            param,
            "image input is not supported by this server yet",
        )),
    }
}

/// Sampling and limits from Ollama's `options`, `format` and `think`, on top of `kind`.
fn with_options(body: &Map<String, Value>, kind: RequestKind) -> Result<ApiRequest, FieldError> {
    let empty = Map::new();
    let options = match body.get("options") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("options", "'options' must be an object")),
    };
    let prefixed = |e: FieldError| FieldError {
        param: e.param.map(|p| format!("options.{p}")),
        message: e.message,
    };
    // num_predict: -1 is "no limit", -2 "fill the context".
    let max_tokens = match options.get("num_predict") {
        Some(v) if v.as_i64().is_some_and(|n| n < 0) => None,
        _ => int_in(options, "num_predict", 1, u64::from(u32::MAX))
            .map_err(prefixed)?
            .map(|n| n as u32),
    };
    let stop = match options.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
            .collect(),
        Some(_) => return Err(bad("options.stop", "'stop' must be an array of strings")),
    };
    let json_schema = match body.get("format") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s == "json" => Some(json!({"type": "object"})),
        Some(schema @ Value::Object(_)) => Some(schema.clone()),
        Some(_) => return Err(bad("format", "'format' must be \"json\" or a JSON schema")),
    };
    let enable_thinking = match body.get("think") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(level)) if ["low", "medium", "high"].contains(&level.as_str()) => {
            Some(true)
        }
        Some(_) => {
            return Err(bad(
                "think",
                "'think' must be true, false, low, medium or high",
            ))
        }
    };
    Ok(ApiRequest {
        kind,
        max_tokens,
        temperature: num_in(options, "temperature", 0.0, 2.0).map_err(prefixed)?,
        top_p: num_in(options, "top_p", 0.0, 1.0).map_err(prefixed)?,
        top_k: int_in(options, "top_k", 0, u64::from(u32::MAX))
            .map_err(prefixed)?
            .map(|n| n as u32),
        min_p: num_in(options, "min_p", 0.0, 1.0).map_err(prefixed)?,
        seed: match options.get("seed") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .map(|s| s as u32)
                    .ok_or_else(|| bad("options.seed", "'seed' must be an integer"))?,
            ),
        },
        stop,
        json_schema,
        enable_thinking,
        ignore_eos: false,
        stream: bool_field(body, "stream")?.unwrap_or(true),
        include_usage: false,
        logprobs: None,
        tools: match body.get("tools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Err(bad("tools", "'tools' must be an array")),
        },
        tool_choice: Default::default(),
        parallel_tool_calls: None,
    })
}

/// `/api/chat`.
pub fn parse_chat(body: &Map<String, Value>) -> Result<ApiRequest, FieldError> {
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("messages", "'messages' must be a non-empty array"))?;
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let param = format!("messages[{i}]");
        let m = m
            .as_object()
            .ok_or_else(|| bad(&param, "each message must be an object"))?;
        no_images(m, &format!("{param}.images"))?;
        let role = match m.get("role").and_then(Value::as_str) {
            Some(r @ ("system" | "user" | "assistant" | "tool")) => r,
            _ => {
                return Err(bad(
                    &format!("{param}.role"),
                    "each message needs a 'role' (system, user, assistant or tool)",
                ))
            }
        };
        let content = match m.get("content") {
            Some(Value::String(s)) => s.as_str(),
            None | Some(Value::Null) => "",
            Some(_) => {
                return Err(bad(
                    &format!("{param}.content"),
                    "'content' must be a string",
                ))
            }
        };
        let mut msg = Message::new(role, content);
        // Ollama's history calls: {"function": {"name", "arguments": {…}}}.
        if let Some(Value::Array(calls)) = m.get("tool_calls") {
            let mut out = Vec::with_capacity(calls.len());
            for (j, c) in calls.iter().enumerate() {
                let f = c.get("function");
                let name = f
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            &format!("{param}.tool_calls[{j}].function.name"),
                            "a tool call needs a function name",
                        )
                    })?;
                let args = match f.and_then(|f| f.get("arguments")) {
                    Some(v @ Value::Object(_)) => v.clone(),
                    Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| json!({})),
                    _ => json!({}),
                };
                out.push(
                    json!({"type": "function", "function": {"name": name, "arguments": args}}),
                );
            }
            if !out.is_empty() {
                msg.tool_calls = Some(out);
            }
        }
        if role == "tool" {
            msg.name = m
                .get("tool_name")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        messages.push(msg);
    }
    with_options(body, RequestKind::Chat(messages))
}

/// `/api/generate`: the prompt (after `system`) goes through the chat template unless
/// `raw` is set. An empty prompt only loads the model, as in Ollama: `None`.
pub fn parse_generate(body: &Map<String, Value>) -> Result<Option<ApiRequest>, FieldError> {
    no_images(body, "images")?;
    let prompt = match body.get("prompt") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(bad("prompt", "'prompt' must be a string")),
    };
    if prompt.is_empty() {
        return Ok(None);
    }
    let kind = if bool_field(body, "raw")?.unwrap_or(false) {
        RequestKind::Completion(prompt.to_string())
    } else {
        let mut messages = Vec::new();
        match body.get("system") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => messages.push(Message::system(s)),
            Some(_) => return Err(bad("system", "'system' must be a string")),
        }
        messages.push(Message::user(prompt));
        RequestKind::Chat(messages)
    };
    with_options(body, kind).map(Some)
}

/// The model a `/api/show` body names (`model`, or the older `name`).
pub fn shown_model(body: &Map<String, Value>) -> Option<&str> {
    body.get("model")
        .or_else(|| body.get("name"))
        .and_then(Value::as_str)
}

/// Timings and counts Ollama puts on its last message (durations in nanoseconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub total_ns: u64,
    pub prompt_tokens: usize,
    pub prompt_ns: u64,
    pub generated_tokens: usize,
    pub generation_ns: u64,
}

impl Timings {
    fn add_to(&self, v: &mut Value) {
        v["total_duration"] = json!(self.total_ns);
        v["load_duration"] = json!(0);
        v["prompt_eval_count"] = json!(self.prompt_tokens);
        v["prompt_eval_duration"] = json!(self.prompt_ns);
        v["eval_count"] = json!(self.generated_tokens);
        v["eval_duration"] = json!(self.generation_ns);
    }
}

/// An `/api/chat` line: a piece (`done` false) or the whole answer / last line.
pub fn chat_line(
    model: &str,
    created_at: &str,
    content: &str,
    thinking: &str,
    done: Option<(&str, Timings)>,
) -> Value {
    let mut message = json!({"role": "assistant", "content": content});
    if !thinking.is_empty() {
        message["thinking"] = json!(thinking);
    }
    let mut v = json!({"model": model, "created_at": created_at, "message": message, "done": done.is_some()});
    if let Some((reason, t)) = done {
        v["done_reason"] = json!(reason);
        t.add_to(&mut v);
    }
    v
}

/// An `/api/generate` line.
pub fn generate_line(
    model: &str,
    created_at: &str,
    response: &str,
    thinking: &str,
    done: Option<(&str, Timings)>,
) -> Value {
    let mut v = json!({"model": model, "created_at": created_at, "response": response, "done": done.is_some()});
    if !thinking.is_empty() {
        v["thinking"] = json!(thinking);
    }
    if let Some((reason, t)) = done {
        v["done_reason"] = json!(reason);
        t.add_to(&mut v);
    }
    v
}

/// RFC 3339 UTC time with nanoseconds, as Ollama writes `created_at`.
pub fn rfc3339(unix_nanos: u128) -> String {
    let secs = (unix_nanos / 1_000_000_000) as i64;
    let nanos = (unix_nanos % 1_000_000_000) as u32;
    format!("{}.{nanos:09}Z", strftime_utc("%Y-%m-%dT%H:%M:%S", secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn chat_bodies_map_onto_requests() {
        let r = parse_chat(&obj(json!({
            "model": "m", "messages": [{"role": "user", "content": "Hi"}],
            "options": {"temperature": 0, "num_predict": 12, "seed": 3, "stop": ["\n"]},
            "format": "json", "think": false,
        })))
        .unwrap();
        assert_eq!(r.kind, RequestKind::Chat(vec![Message::user("Hi")]));
        assert!(r.stream, "Ollama streams unless told not to");
        assert_eq!(
            (r.max_tokens, r.temperature, r.seed),
            (Some(12), Some(0.0), Some(3))
        );
        assert_eq!(r.json_schema, Some(json!({"type": "object"})));
        assert_eq!(r.enable_thinking, Some(false));
        let r = parse_chat(&obj(json!({"messages": [{"role": "user", "content": "x"}], "options": {"num_predict": -1}, "stream": false}))).unwrap();
        assert_eq!(r.max_tokens, None);
        assert!(!r.stream);
    }

    #[test]
    fn ollama_history_calls_reach_the_template() {
        let r = parse_chat(&obj(json!({"messages": [
            {"role": "user", "content": "w?"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
            {"role": "tool", "content": "cold", "tool_name": "get_weather"}]})))
        .unwrap();
        let RequestKind::Chat(msgs) = r.kind else {
            panic!()
        };
        assert_eq!(
            msgs[1].tool_calls.as_ref().unwrap()[0]["function"]["arguments"]["city"],
            "Oslo"
        );
        assert_eq!(msgs[2].name.as_deref(), Some("get_weather"));
    }

    #[test]
    fn bad_ollama_bodies_name_the_field() {
        let param = |v: Value| parse_chat(&obj(v)).unwrap_err().param.unwrap();
        assert_eq!(param(json!({})), "messages");
        assert_eq!(
            param(
                json!({"messages": [{"role": "user", "content": "x"}], "options": {"temperature": "hot"}})
            ),
            "options.temperature"
        );
        assert_eq!(
            param(json!({"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]})),
            "messages[0].images"
        );
        assert_eq!(
            param(json!({"messages": [{"role": "user", "content": "x"}], "format": 3})),
            "format"
        );
    }

    #[test]
    fn generate_uses_the_template_unless_raw() {
        let r = parse_generate(&obj(json!({"prompt": "Hi", "system": "S"})))
            .unwrap()
            .unwrap();
        assert_eq!(
            r.kind,
            RequestKind::Chat(vec![Message::system("S"), Message::user("Hi")])
        );
        let r = parse_generate(&obj(json!({"prompt": "Hi", "raw": true})))
            .unwrap()
            .unwrap();
        assert_eq!(r.kind, RequestKind::Completion("Hi".into()));
        assert!(parse_generate(&obj(json!({"model": "m"})))
            .unwrap()
            .is_none());
    }

    #[test]
    fn lines_and_times() {
        let v = chat_line(
            "m",
            "t",
            "",
            "",
            Some((
                "stop",
                Timings {
                    prompt_tokens: 3,
                    ..Default::default()
                },
            )),
        );
        assert_eq!(v["done"], true);
        assert_eq!(v["prompt_eval_count"], 3);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_796_654_740_123_000_000),
            "2026-12-07T14:45:40.123000000Z"
        );
    }
}
