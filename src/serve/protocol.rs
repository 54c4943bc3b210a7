//! OpenAI's wire format, as its own clients parse it: error envelopes, whole responses,
//! streamed chunks and log-probabilities. Pure JSON building.

use serde_json::{json, Value};

use crate::engine::{TokenLogprob, TokenText};
use crate::request::FieldError;
use crate::tools::ToolCall;

/// An error answered with OpenAI's envelope `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request_error", message)
    }

    pub fn field(e: FieldError) -> ApiError {
        ApiError {
            param: e.param,
            ..ApiError::invalid(e.message)
        }
    }

    pub fn bad_json(detail: impl std::fmt::Display) -> ApiError {
        ApiError::invalid(format!("the request body is not valid JSON: {detail}"))
            .with_code("invalid_json")
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            401,
            "authentication_error",
            "invalid or missing API key: send 'Authorization: Bearer KEY'",
        )
        .with_code("invalid_api_key")
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found_error", what)
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "invalid_request_error",
            format!("the request body is over the {} MiB limit", limit >> 20),
        )
        .with_code("request_too_large")
    }

    pub fn busy(queue: usize) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                503,
                "server_busy",
                format!("server busy: {queue} requests are already waiting; retry shortly"),
            )
        }
    }

    pub fn loading() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(503, "unavailable_error", "the model is loading")
        }
    }

    pub fn shutting_down() -> ApiError {
        ApiError::new(503, "unavailable_error", "the server is shutting down")
    }

    pub fn context_length(n_prompt: usize, ctx_per_seq: usize) -> ApiError {
        ApiError {
            param: Some("messages".into()),
            ..ApiError::invalid(format!(
                "the prompt is {n_prompt} tokens but each request's context holds {ctx_per_seq} \
                 (at least one answer token must fit); shorten it or restart the server with a larger --ctx"
            ))
            .with_code("context_length_exceeded")
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "server_error", message)
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Ids, times and names every response of one request shares.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt: usize,
    pub completion: usize,
}

impl Usage {
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

fn token_json(t: &TokenText, logprob: f32) -> Value {
    json!({"token": t.text, "logprob": clamp(logprob), "bytes": t.bytes})
}

/// JSON has no -inf: OpenAI reports -9999 for impossible tokens.
fn clamp(lp: f32) -> f32 {
    if lp.is_finite() {
        lp
    } else {
        -9999.0
    }
}

/// Chat log-probabilities: `{"content": [{token, logprob, bytes, top_logprobs}]}`.
pub fn chat_logprobs(tokens: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut v = token_json(&t.token, t.logprob);
            v["top_logprobs"] = t.top.iter().map(|(tt, lp)| token_json(tt, *lp)).collect();
            v
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// Completion log-probabilities: parallel arrays; `text_offset` counts from
/// `offset` bytes into the answer.
pub fn completion_logprobs(tokens: &[TokenLogprob], offset: usize) -> Value {
    let mut at = offset;
    let mut offsets = Vec::with_capacity(tokens.len());
    for t in tokens {
        offsets.push(at);
        at += t.token.text.len();
    }
    json!({
        "tokens": tokens.iter().map(|t| t.token.text.clone()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| clamp(t.logprob)).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| {
            t.top.iter().map(|(tt, lp)| (tt.text.clone(), json!(clamp(*lp)))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// A whole chat completion.
pub fn chat_completion(
    meta: &ResponseMeta,
    content: &str,
    reasoning: &str,
    tool_calls: &[ToolCall],
    finish_reason: &str,
    logprobs: Option<Value>,
    usage: Usage,
) -> Value {
    let mut message = json!({"role": "assistant", "content": content});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = tool_calls.iter().map(|c| c.to_openai(None)).collect();
        // Whitespace around calls is not an answer.
        if content.trim().is_empty() {
            message["content"] = Value::Null;
        }
    }
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.fingerprint,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}],
        "usage": usage.json(),
    })
}

/// One streamed chat chunk; `usage` is null on every chunk when the client asked for a
/// usage chunk (as OpenAI does), absent otherwise.
pub fn chat_chunk(
    meta: &ResponseMeta,
    delta: Value,
    finish_reason: Option<&str>,
    logprobs: Option<Value>,
    with_usage_field: bool,
) -> Value {
    let mut chunk = json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.fingerprint,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
    });
    if with_usage_field {
        chunk["usage"] = Value::Null;
    }
    chunk
}

/// The last chunk of a stream that asked for usage: no choices, the token counts.
pub fn usage_chunk(meta: &ResponseMeta, object: &str, usage: Usage) -> Value {
    json!({
        "id": meta.id,
        "object": object,
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.fingerprint,
        "choices": [],
        "usage": usage.json(),
    })
}

/// A whole text completion, or (with `usage` None) one streamed piece of one.
pub fn completion(
    meta: &ResponseMeta,
    text: &str,
    finish_reason: Option<&str>,
    logprobs: Option<Value>,
    usage: Option<Usage>,
) -> Value {
    let mut v = json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.fingerprint,
        "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}],
    });
    if let Some(u) = usage {
        v["usage"] = u.json();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "chatcmpl-1".into(),
            created: 5,
            model: "m".into(),
            fingerprint: "fp".into(),
        }
    }

    fn text(s: &str) -> TokenText {
        TokenText {
            text: s.into(),
            bytes: s.as_bytes().to_vec(),
        }
    }

    #[test]
    fn errors_use_the_openai_envelope() {
        let e = ApiError::field(FieldError {
            param: Some("max_tokens".into()),
            message: "bad".into(),
        });
        assert_eq!(
            e.body(),
            json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "max_tokens", "code": null}})
        );
        assert_eq!(e.status, 400);
        assert_eq!(ApiError::busy(3).retry_after, Some(1));
        assert_eq!(ApiError::unauthorized().status, 401);
    }

    #[test]
    fn responses_and_chunks_have_openai_fields() {
        let r = chat_completion(
            &meta(),
            "Paris",
            "hmm",
            &[],
            "stop",
            None,
            Usage {
                prompt: 3,
                completion: 2,
            },
        );
        assert_eq!(r["choices"][0]["message"]["reasoning_content"], "hmm");
        assert_eq!(r["usage"]["total_tokens"], 5);
        assert_eq!(r["system_fingerprint"], "fp");
        let c = chat_chunk(&meta(), json!({"content": "P"}), None, None, true);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c["usage"].is_null() && c.as_object().unwrap().contains_key("usage"));
        let u = usage_chunk(
            &meta(),
            "chat.completion.chunk",
            Usage {
                prompt: 1,
                completion: 1,
            },
        );
        assert_eq!(u["choices"], json!([]));
    }

    #[test]
    fn logprobs_in_both_shapes() {
        let t = TokenLogprob {
            token: text("Pa"),
            logprob: -0.5,
            top: vec![(text("Pa"), -0.5), (text("Lo"), f32::NEG_INFINITY)],
        };
        let c = chat_logprobs(std::slice::from_ref(&t));
        assert_eq!(c["content"][0]["token"], "Pa");
        assert_eq!(c["content"][0]["top_logprobs"][1]["logprob"], -9999.0);
        let p = completion_logprobs(&[t.clone(), t], 4);
        assert_eq!(p["text_offset"], json!([4, 6]));
        assert_eq!(p["top_logprobs"][0]["Lo"], -9999.0);
    }
}
