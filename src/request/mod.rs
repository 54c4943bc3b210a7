//! OpenAI request bodies (`/v1/chat/completions`, `/v1/completions`): parsing and
//! validation shared by `edge batch` (one body per input line) and `edge serve` (one
//! per HTTP request). Pure logic: a bad field becomes a [`FieldError`] naming it.
//! Unknown fields are ignored, as OpenAI-compatible servers do.

pub mod prepare;

use serde_json::{json, Map, Value};

use crate::chat_template::Message;

/// What a request asks the model to do.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestKind {
    /// `/v1/chat/completions`: rendered through the model's chat template.
    Chat(Vec<Message>),
    /// `/v1/completions`: the prompt text as is.
    Completion(String),
}

/// Which body shape is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
    /// edge batch's short form: `messages`, or a `prompt` sent as one user message.
    ChatOrPrompt,
}

/// One generation request, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub kind: RequestKind,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub seed: Option<u32>,
    pub stop: Vec<String>,
    /// A JSON schema the output must follow (`response_format`).
    pub json_schema: Option<Value>,
    pub enable_thinking: Option<bool>,
    /// Never end at an end-of-generation token (vLLM's `ignore_eos`): for benchmarks.
    pub ignore_eos: bool,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the token counts.
    pub include_usage: bool,
    /// Log-probabilities wanted, with this many alternatives per token.
    pub logprobs: Option<usize>,
    /// Tools offered (OpenAI's `{"type": "function", "function": {…}}` entries).
    pub tools: Vec<Value>,
    pub tool_choice: ToolChoice,
    /// More than one call per turn; unset: yes when the model chooses (`auto`), one
    /// when a call is forced (a small model would otherwise loop on forced calls).
    pub parallel_tool_calls: Option<bool>,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (the default when tools are given).
    #[default]
    Auto,
    None,
    Required,
    /// This function must be called.
    Named(String),
}

/// A field a client got wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as OpenAI's `param` names it (`messages[0].content`).
    pub param: Option<String>,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn bad(param: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        param: Some(param.to_string()),
        message: message.into(),
    }
}

/// The most stop strings a request may give.
pub const MAX_STOP_STRINGS: usize = 16;
/// The most alternatives per token (OpenAI's limit for chat).
pub const MAX_TOP_LOGPROBS: u64 = 20;

fn present<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

/// An integer in `min..=max`.
pub fn int_in(
    body: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, FieldError> {
    let Some(v) = present(body, key) else {
        return Ok(None);
    };
    let n = v
        .as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
        .ok_or_else(|| bad(key, format!("'{key}' must be an integer")))?;
    if n < i128::from(min) || n > i128::from(max) {
        return Err(bad(
            key,
            format!("'{key}' is {n}; it must be between {min} and {max}"),
        ));
    }
    Ok(Some(n as u64))
}

/// A number in `min..=max`.
pub fn num_in(
    body: &Map<String, Value>,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Option<f32>, FieldError> {
    let Some(v) = present(body, key) else {
        return Ok(None);
    };
    let f = v
        .as_f64()
        .ok_or_else(|| bad(key, format!("'{key}' must be a number")))?;
    if !(min..=max).contains(&f) {
        return Err(bad(
            key,
            format!("'{key}' is {f}; it must be between {min} and {max}"),
        ));
    }
    Ok(Some(f as f32))
}

pub fn bool_field(body: &Map<String, Value>, key: &str) -> Result<Option<bool>, FieldError> {
    match present(body, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(key, format!("'{key}' must be true or false"))),
    }
}

/// A message's text: a string, or OpenAI content parts (their text, joined).
fn content_text(v: Option<&Value>, role: &str, param: &str) -> Result<String, FieldError> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        // An assistant turn that only called tools has no content.
        None | Some(Value::Null) if role == "assistant" => Ok(String::new()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") | None => match p.get("text") {
                        Some(Value::String(t)) => text.push_str(t),
                        _ => {
                            return Err(bad(
                                &format!("{param}[{j}].text"),
                                "a text content part needs a string 'text'",
                            ))
                        }
                    },
                    Some(other) => {
                        return Err(bad(
                            &format!("{param}[{j}].type"),
                            format!("content parts of type '{other}' are not supported; send text"),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(bad(
            param,
            "a message's 'content' must be a string or an array of content parts",
        )),
    }
}

/// The roles a conversation may hold (`developer` is OpenAI's newer name for system).
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

pub fn parse_messages(v: &Value) -> Result<Vec<Message>, FieldError> {
    let arr = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("messages", "'messages' must be a non-empty array"))?;
    arr.iter()
        .enumerate()
        .map(|(i, m)| {
            let param = format!("messages[{i}]");
            let role = match m.get("role") {
                Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.as_str(),
                Some(Value::String(r)) => {
                    return Err(bad(
                        &format!("{param}.role"),
                        format!("unknown role '{r}' (system, user, assistant or tool)"),
                    ))
                }
                _ => return Err(bad(
                    &format!("{param}.role"),
                    "each message needs a 'role' (system, user, assistant or tool) and a 'content'",
                )),
            };
            let content = content_text(m.get("content"), role, &format!("{param}.content"))?;
            let role = if role == "developer" { "system" } else { role };
            let mut msg = Message::new(role, &content);
            if role == "assistant" {
                msg.tool_calls = parse_history_calls(m.get("tool_calls"), &param)?;
                if let Some(Value::String(r)) = m.get("reasoning_content") {
                    msg.reasoning_content = Some(r.clone());
                }
            }
            if role == "tool" {
                msg.tool_call_id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                msg.name = m.get("name").and_then(Value::as_str).map(str::to_string);
            }
            Ok(msg)
        })
        .collect()
}

/// An assistant turn's `tool_calls`, with `function.arguments` decoded to an object
/// (templates iterate or `tojson` it).
fn parse_history_calls(v: Option<&Value>, param: &str) -> Result<Option<Vec<Value>>, FieldError> {
    let calls = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) if a.is_empty() => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(bad(
                &format!("{param}.tool_calls"),
                "'tool_calls' must be an array",
            ))
        }
    };
    let mut out = Vec::with_capacity(calls.len());
    for (j, c) in calls.iter().enumerate() {
        let p = format!("{param}.tool_calls[{j}].function");
        let f = c
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| bad(&p, "each tool call needs a 'function' object"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("{p}.name"), "a tool call needs a 'name'"))?;
        let args = match f.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    bad(
                        &format!("{p}.arguments"),
                        "'arguments' must be a JSON object (or a string holding one)",
                    )
                })?,
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                return Err(bad(
                    &format!("{p}.arguments"),
                    "'arguments' must be a JSON object (or a string holding one)",
                ))
            }
        };
        let mut call = json!({"type": "function", "function": {"name": name, "arguments": args}});
        if let Some(id) = c.get("id").and_then(Value::as_str) {
            call["id"] = json!(id);
        }
        out.push(call);
    }
    Ok(Some(out))
}

/// `tools`, `tool_choice` and `parallel_tool_calls`.
pub fn parse_tools(
    body: &Map<String, Value>,
) -> Result<(Vec<Value>, ToolChoice, Option<bool>), FieldError> {
    let tools = match present(body, "tools") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(bad("tools", "'tools' must be an array")),
    };
    let mut names = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let p = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
            return Err(bad(
                &format!("{p}.type"),
                "only tools of type 'function' are supported",
            ));
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                bad(
                    &format!("{p}.function"),
                    "each tool needs a 'function' object",
                )
            })?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                bad(
                    &format!("{p}.function.name"),
                    "each function needs a non-empty 'name'",
                )
            })?;
        if let Some(params) = f.get("parameters").filter(|p| !p.is_null()) {
            if !params.is_object() {
                return Err(bad(
                    &format!("{p}.function.parameters"),
                    "'parameters' must be a JSON schema object",
                ));
            }
        }
        names.push(name.to_string());
    }
    let choice = match present(body, "tool_choice") {
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": …}}")),
        },
        Some(v) => match v.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(n) if names.iter().any(|x| x == n) => ToolChoice::Named(n.to_string()),
            Some(n) => return Err(bad("tool_choice", format!("tool_choice names '{n}', which is not among the tools"))),
            None => return Err(bad("tool_choice", "a named tool_choice needs function.name")),
        },
    };
    if tools.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Named(_)) {
        return Err(bad("tool_choice", "tool_choice requires 'tools'"));
    }
    let parallel = bool_field(body, "parallel_tool_calls")?;
    Ok((tools, choice, parallel))
}

fn parse_stop(body: &Map<String, Value>) -> Result<Vec<String>, FieldError> {
    let stop = match present(body, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        Some(_) => {
            return Err(bad(
                "stop",
                "'stop' must be a string or an array of strings",
            ))
        }
    };
    if stop.len() > MAX_STOP_STRINGS {
        return Err(bad(
            "stop",
            format!(
                "'stop' has {} strings; at most {MAX_STOP_STRINGS}",
                stop.len()
            ),
        ));
    }
    Ok(stop.into_iter().filter(|s| !s.is_empty()).collect())
}

fn parse_response_format(body: &Map<String, Value>) -> Result<Option<Value>, FieldError> {
    let Some(rf) = present(body, "response_format") else {
        return Ok(None);
    };
    let schema = match rf.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(None),
        Some("json_object") => json!({"type": "object"}),
        Some("json_schema") => rf
            .get("json_schema")
            .and_then(|j| j.get("schema"))
            .or_else(|| rf.get("schema"))
            .cloned()
            .ok_or_else(|| {
                bad(
                    "response_format",
                    "response_format json_schema needs 'json_schema.schema'",
                )
            })?,
        _ => {
            return Err(bad(
                "response_format",
                "response_format 'type' must be text, json_object or json_schema",
            ))
        }
    };
    if !schema.is_object() && !schema.is_boolean() {
        return Err(bad(
            "response_format",
            "the response_format schema must be a JSON object",
        ));
    }
    Ok(Some(schema))
}

/// Thinking as the request sets it: `chat_template_kwargs.enable_thinking`, Ollama's
/// `think`, or `reasoning_effort: "none"` (off).
fn parse_thinking(body: &Map<String, Value>) -> Result<Option<bool>, FieldError> {
    if let Some(kwargs) = present(body, "chat_template_kwargs") {
        let kwargs = kwargs.as_object().ok_or_else(|| {
            bad(
                "chat_template_kwargs",
                "'chat_template_kwargs' must be an object",
            )
        })?;
        if let Some(on) = bool_field(kwargs, "enable_thinking").map_err(|_| {
            bad(
                "chat_template_kwargs.enable_thinking",
                "'enable_thinking' must be true or false",
            )
        })? {
            return Ok(Some(on));
        }
    }
    if let Some(on) = bool_field(body, "think")? {
        return Ok(Some(on));
    }
    match present(body, "reasoning_effort") {
        None => Ok(None),
        Some(Value::String(e)) if e == "none" => Ok(Some(false)),
        Some(Value::String(e)) if ["minimal", "low", "medium", "high"].contains(&e.as_str()) => {
            Ok(Some(true))
        }
        Some(_) => Err(bad(
            "reasoning_effort",
            "'reasoning_effort' must be none, minimal, low, medium or high",
        )),
    }
}

/// Parses and validates one request body for `endpoint`.
pub fn parse_body(body: &Map<String, Value>, endpoint: Endpoint) -> Result<ApiRequest, FieldError> {
    let kind = match endpoint {
        Endpoint::Chat => match body.get("messages") {
            Some(m) => RequestKind::Chat(parse_messages(m)?),
            None => return Err(bad("messages", "missing 'messages'")),
        },
        Endpoint::ChatOrPrompt => match (body.get("messages"), body.get("prompt")) {
            (Some(m), _) => RequestKind::Chat(parse_messages(m)?),
            (None, Some(Value::String(p))) => RequestKind::Chat(vec![Message::user(p)]),
            _ => return Err(bad("messages", "missing 'messages' (or 'prompt')")),
        },
        Endpoint::Completion => match body.get("prompt") {
            Some(Value::String(p)) => RequestKind::Completion(p.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                RequestKind::Completion(a[0].as_str().unwrap_or_default().to_string())
            }
            Some(Value::Array(a)) if a.len() > 1 => {
                return Err(bad("prompt", "one prompt per request: send a string"))
            }
            _ => return Err(bad("prompt", "'prompt' must be a string")),
        },
    };
    if let Some(n) = int_in(body, "n", 0, u64::from(u32::MAX))? {
        if n != 1 {
            return Err(bad(
                "n",
                format!("'n' is {n}; only 1 choice per request is supported"),
            ));
        }
    }
    let max_tokens = match int_in(body, "max_completion_tokens", 1, u64::from(u32::MAX))? {
        Some(n) => Some(n),
        None => int_in(body, "max_tokens", 1, u64::from(u32::MAX))?,
    };
    let stream = bool_field(body, "stream")?.unwrap_or(false);
    let include_usage = match present(body, "stream_options") {
        None => false,
        Some(Value::Object(o)) => bool_field(o, "include_usage")
            .map_err(|_| {
                bad(
                    "stream_options.include_usage",
                    "'include_usage' must be true or false",
                )
            })?
            .unwrap_or(false),
        Some(_) => return Err(bad("stream_options", "'stream_options' must be an object")),
    };
    let logprobs = match (endpoint, present(body, "logprobs")) {
        (_, None) => None,
        // Completions: `logprobs` is the number of alternatives.
        (Endpoint::Completion, Some(_)) => int_in(body, "logprobs", 0, 5)?.map(|n| n as usize),
        (_, Some(_)) => match bool_field(body, "logprobs")? {
            Some(true) => {
                Some(int_in(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)?.unwrap_or(0) as usize)
            }
            _ => None,
        },
    };
    let (tools, tool_choice, parallel_tool_calls) = match endpoint {
        Endpoint::Completion => (Vec::new(), ToolChoice::Auto, None),
        _ => parse_tools(body)?,
    };
    Ok(ApiRequest {
        tools,
        tool_choice,
        parallel_tool_calls,
        kind,
        max_tokens: max_tokens.map(|n| n as u32),
        temperature: num_in(body, "temperature", 0.0, 2.0)?,
        top_p: num_in(body, "top_p", 0.0, 1.0)?,
        top_k: int_in(body, "top_k", 0, u64::from(u32::MAX))?.map(|n| n as u32),
        min_p: num_in(body, "min_p", 0.0, 1.0)?,
        seed: match present(body, "seed") {
            None => None,
            // Any integer: llama.cpp seeds with 32 bits.
            Some(v) => Some(
                v.as_i64()
                    .map(|s| s as u32)
                    .or_else(|| v.as_u64().map(|s| s as u32))
                    .ok_or_else(|| bad("seed", "'seed' must be an integer"))?,
            ),
        },
        stop: parse_stop(body)?,
        json_schema: parse_response_format(body)?,
        enable_thinking: parse_thinking(body)?,
        ignore_eos: bool_field(body, "ignore_eos")?.unwrap_or(false),
        stream,
        include_usage,
        logprobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(endpoint: Endpoint, v: Value) -> Result<ApiRequest, FieldError> {
        parse_body(v.as_object().unwrap(), endpoint)
    }

    fn param_of(endpoint: Endpoint, v: Value) -> String {
        parse(endpoint, v).unwrap_err().param.unwrap_or_default()
    }

    #[test]
    fn a_full_chat_request_parses() {
        let r = parse(
            Endpoint::Chat,
            json!({"messages": [{"role": "developer", "content": "S"},
                                {"role": "user", "content": [{"type": "text", "text": "H"}, {"type": "text", "text": "i"}]},
                                {"role": "assistant", "content": null}],
                   "max_completion_tokens": 7, "temperature": 0, "seed": -1, "stop": "\n",
                   "stream": true, "stream_options": {"include_usage": true},
                   "logprobs": true, "top_logprobs": 3, "n": 1, "unknown_field": {"x": 1},
                   "reasoning_effort": "none"}),
        )
        .unwrap();
        assert_eq!(
            r.kind,
            RequestKind::Chat(vec![
                Message::system("S"),
                Message::user("Hi"),
                Message::new("assistant", "")
            ])
        );
        assert_eq!(
            (r.max_tokens, r.temperature, r.seed),
            (Some(7), Some(0.0), Some(u32::MAX))
        );
        assert_eq!(r.stop, vec!["\n".to_string()]);
        assert!(r.stream && r.include_usage);
        assert_eq!(r.logprobs, Some(3));
        assert_eq!(r.enable_thinking, Some(false));
    }

    #[test]
    fn bad_fields_are_named() {
        let msgs = json!([{"role": "user", "content": "x"}]);
        assert_eq!(param_of(Endpoint::Chat, json!({})), "messages");
        assert_eq!(
            param_of(Endpoint::Chat, json!({"messages": "hi"})),
            "messages"
        );
        assert_eq!(
            param_of(
                Endpoint::Chat,
                json!({"messages": [{"role": "user", "content": 5}]})
            ),
            "messages[0].content"
        );
        assert_eq!(
            param_of(
                Endpoint::Chat,
                json!({"messages": [{"role": "robot", "content": "x"}]})
            ),
            "messages[0].role"
        );
        assert_eq!(
            param_of(Endpoint::Chat, json!({"messages": msgs, "max_tokens": -5})),
            "max_tokens"
        );
        assert_eq!(
            param_of(Endpoint::Chat, json!({"messages": msgs, "max_tokens": 0})),
            "max_tokens"
        );
        assert_eq!(
            param_of(
                Endpoint::Chat,
                json!({"messages": msgs, "temperature": "hot"})
            ),
            "temperature"
        );
        assert_eq!(
            param_of(
                Endpoint::Chat,
                json!({"messages": msgs, "temperature": 3.5})
            ),
            "temperature"
        );
        assert_eq!(
            param_of(Endpoint::Chat, json!({"messages": msgs, "top_p": 1.5})),
            "top_p"
        );
        assert_eq!(
            param_of(Endpoint::Chat, json!({"messages": msgs, "n": 2})),
            "n"
        );
        assert_eq!(
            param_of(Endpoint::Chat, json!({"messages": msgs, "stream": "yes"})),
            "stream"
        );
        assert_eq!(
            param_of(Endpoint::Chat, json!({"messages": msgs, "stop": 3})),
            "stop"
        );
        assert_eq!(
            param_of(
                Endpoint::Chat,
                json!({"messages": msgs, "top_logprobs": 50, "logprobs": true})
            ),
            "top_logprobs"
        );
        assert_eq!(
            param_of(
                Endpoint::Chat,
                json!({"messages": msgs, "response_format": {"type": "xml"}})
            ),
            "response_format"
        );
        assert_eq!(
            param_of(
                Endpoint::Chat,
                json!({"messages": msgs, "reasoning_effort": 3})
            ),
            "reasoning_effort"
        );
        assert_eq!(
            param_of(
                Endpoint::Chat,
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})
            ),
            "messages[0].content[0].type"
        );
        assert_eq!(
            param_of(Endpoint::Completion, json!({"prompt": 5})),
            "prompt"
        );
        assert_eq!(
            param_of(Endpoint::Completion, json!({"prompt": "x", "logprobs": 9})),
            "logprobs"
        );
    }

    #[test]
    fn completions_and_short_forms() {
        let r = parse(
            Endpoint::Completion,
            json!({"prompt": ["Once"], "logprobs": 2}),
        )
        .unwrap();
        assert_eq!(r.kind, RequestKind::Completion("Once".into()));
        assert_eq!(r.logprobs, Some(2));
        let r = parse(
            Endpoint::ChatOrPrompt,
            json!({"prompt": "Hi", "think": true}),
        )
        .unwrap();
        assert_eq!(r.kind, RequestKind::Chat(vec![Message::user("Hi")]));
        assert_eq!(r.enable_thinking, Some(true));
        let r = parse(
            Endpoint::Chat,
            json!({"messages": [{"role": "user", "content": "x"}],
                   "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}}),
        )
        .unwrap();
        assert_eq!(r.json_schema, Some(json!({"type": "object"})));
    }
}
