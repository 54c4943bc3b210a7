//! The call parser: fed the answer text (reasoning already split off) piece by piece,
//! it hands out content as soon as it cannot be part of a call, and each call once it
//! is complete. Parsing a whole answer is feeding it at once: streamed and whole
//! results are the same by construction.

use serde_json::{Map, Value};

use crate::thinking::partial_suffix;

use super::pythonic::{parse_call_list, parse_literal, PyError};
use super::spec::{find_tool, ToolFormat, ToolSpec};

/// One parsed call, in OpenAI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// `call_…`, unique.
    pub id: String,
    pub name: String,
    /// The arguments as JSON text (an object).
    pub arguments: String,
}

impl ToolCall {
    /// OpenAI's shape; `index` goes on stream deltas.
    pub fn to_openai(&self, index: Option<usize>) -> Value {
        let mut v = serde_json::json!({"id": self.id, "type": "function",
                                       "function": {"name": self.name, "arguments": self.arguments}});
        if let Some(i) = index {
            v["index"] = serde_json::json!(i);
        }
        v
    }
}

/// What the parser hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    Content(String),
    Call(ToolCall),
}

/// A whole answer, parsed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedCalls {
    pub content: String,
    pub calls: Vec<ToolCall>,
}

const TOOL_CALL: &str = "<tool_call>";
const TOOL_CALL_END: &str = "</tool_call>";
const FUNCTION: &str = "<function=";
const FUNCTION_END: &str = "</function>";
const PARAMETER: &str = "<parameter=";
const PARAMETER_END: &str = "</parameter>";
const PYTHON_START: &str = "<|python_start|>";
const PYTHON_END: &str = "<|python_end|>";
const PYTHON_TAG: &str = "<|python_tag|>";

enum Attempt {
    /// Calls and the bytes they took.
    Complete(Vec<(String, Value)>, usize),
    Incomplete,
    Malformed,
}

fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let tail: String = (0..24)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("call_{tail}")
}

/// The streaming parser.
pub struct CallParser {
    format: ToolFormat,
    tools: Vec<ToolSpec>,
    buf: String,
    /// Bytes of `buf` handled.
    pos: usize,
    /// Whitespace held back: dropped if only calls follow.
    pending_ws: String,
    n_calls: usize,
    any_content: bool,
}

impl CallParser {
    pub fn new(format: ToolFormat, tools: &[ToolSpec]) -> CallParser {
        CallParser {
            format,
            tools: tools.to_vec(),
            buf: String::new(),
            pos: 0,
            pending_ws: String::new(),
            n_calls: 0,
            any_content: false,
        }
    }

    pub fn push(&mut self, text: &str) -> Vec<CallEvent> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        self.scan(false, &mut out);
        out
    }

    /// The end of the answer: what was held back is decided.
    pub fn finish(&mut self) -> Vec<CallEvent> {
        let mut out = Vec::new();
        self.scan(true, &mut out);
        if self.n_calls == 0 && !self.pending_ws.is_empty() && self.any_content {
            out.push(CallEvent::Content(std::mem::take(&mut self.pending_ws)));
        }
        out
    }

    fn content(&mut self, text: &str, out: &mut Vec<CallEvent>) {
        if text.is_empty() {
            return;
        }
        let trimmed = text.trim_end();
        if trimmed.is_empty() {
            self.pending_ws.push_str(text);
            return;
        }
        let mut s = std::mem::take(&mut self.pending_ws);
        s.push_str(trimmed);
        self.pending_ws = text[trimmed.len()..].to_string();
        // Whitespace that only separated calls from the start of the answer is layout.
        if !self.any_content && self.n_calls > 0 {
            s = s.trim_start().to_string();
        }
        self.any_content = true;
        out.push(CallEvent::Content(s));
    }

    fn call(&mut self, name: String, args: Value, out: &mut Vec<CallEvent>) {
        self.pending_ws.clear();
        self.n_calls += 1;
        out.push(CallEvent::Call(ToolCall {
            id: new_id(),
            name,
            arguments: args.to_string(),
        }));
    }

    fn markers(&self) -> &'static [&'static str] {
        match self.format {
            ToolFormat::Hermes => &[TOOL_CALL],
            ToolFormat::QwenXml => &[TOOL_CALL, FUNCTION],
            ToolFormat::Llama => &[PYTHON_START, PYTHON_TAG],
        }
    }

    fn scan(&mut self, fin: bool, out: &mut Vec<CallEvent>) {
        loop {
            let rest = &self.buf[self.pos..];
            if rest.is_empty() {
                return;
            }
            // Llama writes a bare call list or JSON object as the whole answer.
            if self.format == ToolFormat::Llama && self.pos == 0 && !self.any_content {
                let lead = rest.trim_start();
                if lead.starts_with('[') || lead.starts_with('{') {
                    match self.try_llama_bare(rest, fin) {
                        Attempt::Complete(calls, n) => {
                            for (name, args) in calls {
                                self.call(name, args, out);
                            }
                            self.pos += n;
                            continue;
                        }
                        Attempt::Incomplete => return,
                        Attempt::Malformed => {
                            let text = rest.to_string();
                            self.pos = self.buf.len();
                            self.content(&text, out);
                            if fin {
                                return;
                            }
                            continue;
                        }
                    }
                }
            }
            let found = self
                .markers()
                .iter()
                .filter_map(|m| rest.find(m).map(|i| (i, *m)))
                .min_by_key(|(i, _)| *i);
            let Some((at, marker)) = found else {
                let keep = if fin {
                    0
                } else {
                    self.markers()
                        .iter()
                        .map(|m| partial_suffix(rest, m))
                        .max()
                        .unwrap_or(0)
                };
                let text = rest[..rest.len() - keep].to_string();
                self.pos += text.len();
                self.content(&text, out);
                return;
            };
            let before = rest[..at].to_string();
            self.pos += at;
            self.content(&before, out);
            let attempt = self.try_call(&self.buf[self.pos..], marker, fin);
            match attempt {
                Attempt::Complete(calls, n) => {
                    for (name, args) in calls {
                        self.call(name, args, out);
                    }
                    self.pos += n;
                }
                Attempt::Incomplete if !fin => return,
                // Truncated at the end: after complete calls it is a cut-off extra call
                // (dropped); alone it is content, as written.
                Attempt::Incomplete => {
                    let text = self.buf[self.pos..].to_string();
                    self.pos = self.buf.len();
                    // A bare opener is a call the model never wrote.
                    let bare_opener = text[marker.len()..].trim().is_empty();
                    if self.n_calls == 0 && !bare_opener {
                        self.content(&text, out);
                    }
                    return;
                }
                Attempt::Malformed => {
                    self.pos += marker.len();
                    self.content(marker, out);
                }
            }
        }
    }

    fn try_call(&self, s: &str, marker: &str, fin: bool) -> Attempt {
        match (self.format, marker) {
            (ToolFormat::Hermes, _) => hermes(s, fin),
            (ToolFormat::QwenXml, _) => qwen_xml(s, &self.tools, fin),
            (ToolFormat::Llama, PYTHON_START) => {
                let inner = &s[PYTHON_START.len()..];
                match self.try_llama_bare(inner, fin) {
                    Attempt::Complete(calls, n) => {
                        let after = &inner[n..];
                        let trimmed = after.trim_start();
                        if let Some(r) = trimmed.strip_prefix(PYTHON_END) {
                            Attempt::Complete(calls, s.len() - r.len())
                        } else if fin && trimmed.is_empty() {
                            Attempt::Complete(calls, s.len())
                        } else if !fin && PYTHON_END.starts_with(trimmed) {
                            Attempt::Incomplete
                        } else {
                            Attempt::Malformed
                        }
                    }
                    other => other,
                }
            }
            (ToolFormat::Llama, _) => match self.try_llama_bare(&s[PYTHON_TAG.len()..], fin) {
                Attempt::Complete(calls, n) => Attempt::Complete(calls, PYTHON_TAG.len() + n),
                other => other,
            },
        }
    }

    /// `[f(a=1), …]` or `{"name": …, "parameters"|"arguments": {…}}` (several JSON
    /// calls may follow each other, separated by `;`), and nothing else after.
    fn try_llama_bare(&self, s: &str, fin: bool) -> Attempt {
        let lead = s.len() - s.trim_start().len();
        let body = &s[lead..];
        let (calls, n) = if body.starts_with('[') {
            match parse_call_list(body) {
                Ok((calls, n)) => (
                    calls
                        .into_iter()
                        .map(|(name, args)| (name, Value::Object(args)))
                        .collect(),
                    n,
                ),
                Err(PyError::Incomplete) if !fin => return Attempt::Incomplete,
                Err(_) => return Attempt::Malformed,
            }
        } else {
            let mut calls = Vec::new();
            let mut at = 0;
            loop {
                let part = &body[at..];
                let ws = part.len() - part.trim_start().len();
                match json_prefix(&part[ws..]) {
                    Ok((v, n)) => {
                        let Some(call) = json_call(&v) else {
                            return Attempt::Malformed;
                        };
                        calls.push(call);
                        at += ws + n;
                        let next = body[at..].trim_start();
                        if let Some(r) = next.strip_prefix(';') {
                            at = body.len() - r.len();
                            continue;
                        }
                        break;
                    }
                    Err(true) if !fin => return Attempt::Incomplete,
                    Err(_) => return Attempt::Malformed,
                }
            }
            (calls, at)
        };
        // A call list is the whole answer (a Python tag's block excepted).
        let after = &body[n..];
        if !fin && !after.trim().is_empty() && PYTHON_END.starts_with(after.trim()) {
            return Attempt::Incomplete;
        }
        if !after.trim().is_empty() && !after.trim_start().starts_with(PYTHON_END) {
            return Attempt::Malformed;
        }
        if !fin && after.trim().is_empty() {
            // More text could still follow and make it prose.
            return Attempt::Incomplete;
        }
        Attempt::Complete(calls, lead + n)
    }
}

/// The JSON value at the start of `s` and its length; `Err(true)` when `s` ends before
/// the value does.
fn json_prefix(s: &str) -> Result<(Value, usize), bool> {
    let mut it = serde_json::Deserializer::from_str(s).into_iter::<Value>();
    match it.next() {
        Some(Ok(v)) => Ok((v, it.byte_offset())),
        Some(Err(e)) => Err(e.is_eof()),
        None => Err(true),
    }
}

/// `{"name", "arguments"|"parameters"}` as a call; arguments given as a JSON string
/// are decoded.
fn json_call(v: &Value) -> Option<(String, Value)> {
    let o = v.as_object()?;
    let name = o.get("name")?.as_str()?.to_string();
    let args = match o.get("arguments").or_else(|| o.get("parameters")) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => return None,
        },
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return None,
    };
    Some((name, args))
}

fn hermes(s: &str, fin: bool) -> Attempt {
    let body = &s[TOOL_CALL.len()..];
    let lead = body.len() - body.trim_start().len();
    if body[lead..].is_empty() {
        return Attempt::Incomplete;
    }
    let (v, n) = match json_prefix(&body[lead..]) {
        Ok(x) => x,
        Err(true) => return Attempt::Incomplete,
        Err(false) => return Attempt::Malformed,
    };
    let Some(call) = json_call(&v) else {
        return Attempt::Malformed;
    };
    let after = &body[lead + n..];
    let trimmed = after.trim_start();
    if let Some(r) = trimmed.strip_prefix(TOOL_CALL_END) {
        return Attempt::Complete(vec![call], s.len() - r.len());
    }
    if trimmed.is_empty() || TOOL_CALL_END.starts_with(trimmed) {
        // The closing tag was cut (a stop word) or has not come yet.
        return if fin && trimmed.is_empty() {
            Attempt::Complete(vec![call], s.len())
        } else if fin {
            Attempt::Malformed
        } else {
            Attempt::Incomplete
        };
    }
    // Another call right after, with no closing tag.
    if trimmed.starts_with(TOOL_CALL) {
        return Attempt::Complete(vec![call], s.len() - trimmed.len());
    }
    Attempt::Malformed
}

/// Where a parameter value ends: `(end of the value, where parsing goes on)`. The value
/// ends at the first of: a `</parameter>` followed by the next parameter or the end of
/// the function; or, the close tag left out, a new `<parameter=` line, or a `</function>`
/// that ends the call. The scan goes left to right and stops (None: wait for more text)
/// at the first place the text so far cannot decide, so a value ends at the same place
/// however the text was cut into pieces.
fn value_end(s: &str, fin: bool) -> Option<(usize, usize)> {
    let param_line = format!("\n{PARAMETER}");
    // Whether `after` (the text after a close tag, spaces skipped) may still become
    // one of `next` once more text arrives.
    let undecided = |after: &str, next: &[&str]| {
        !fin && (after.is_empty() || next.iter().any(|m| m.starts_with(after)))
    };
    let partial =
        |rest: &str, marker: &str| !fin && rest.len() < marker.len() && marker.starts_with(rest);
    for (i, c) in s.char_indices() {
        if c != '\n' && c != '<' {
            continue;
        }
        let rest = &s[i..];
        if rest.starts_with(&param_line) {
            return Some((i, i));
        }
        if let Some(after) = rest.strip_prefix(PARAMETER_END) {
            let after = after.trim_start();
            if after.starts_with(PARAMETER)
                || after.starts_with(FUNCTION_END)
                || after.starts_with(TOOL_CALL_END)
                || (fin && after.is_empty())
            {
                return Some((i, i + PARAMETER_END.len()));
            }
            if undecided(after, &[PARAMETER, FUNCTION_END, TOOL_CALL_END]) {
                return None;
            }
            continue;
        }
        if let Some(after) = rest.strip_prefix(FUNCTION_END) {
            let after = after.trim_start();
            if after.starts_with(TOOL_CALL_END)
                || after.starts_with(TOOL_CALL)
                || (fin && after.is_empty())
            {
                return Some((i, i));
            }
            if undecided(after, &[TOOL_CALL_END, TOOL_CALL]) {
                return None;
            }
            continue;
        }
        if partial(rest, &param_line) || partial(rest, PARAMETER_END) || partial(rest, FUNCTION_END)
        {
            return None;
        }
    }
    None
}

fn qwen_xml(s: &str, tools: &[ToolSpec], fin: bool) -> Attempt {
    let mut at = 0;
    if s.starts_with(TOOL_CALL) {
        at = TOOL_CALL.len();
    }
    let skip_ws = |at: usize| at + (s[at..].len() - s[at..].trim_start().len());
    at = skip_ws(at);
    let rest = &s[at..];
    if rest.is_empty() {
        return Attempt::Incomplete;
    }
    if rest.len() < FUNCTION.len() {
        return if !fin && FUNCTION.starts_with(rest) {
            Attempt::Incomplete
        } else {
            Attempt::Malformed
        };
    }
    if !rest.starts_with(FUNCTION) {
        return Attempt::Malformed;
    }
    at += FUNCTION.len();
    let Some(gt) = s[at..].find('>') else {
        return if fin {
            Attempt::Malformed
        } else {
            Attempt::Incomplete
        };
    };
    let name = s[at..at + gt].trim().to_string();
    if name.is_empty() || name.contains('\n') {
        return Attempt::Malformed;
    }
    let tool = find_tool(tools, &name);
    at += gt + 1;
    let mut args = Map::new();
    loop {
        at = skip_ws(at);
        let rest = &s[at..];
        if let Some(r) = rest.strip_prefix(FUNCTION_END) {
            at = s.len() - r.len();
            break;
        }
        if let Some(r) = rest.strip_prefix(PARAMETER) {
            let start = s.len() - r.len();
            let Some(gt) = r.find('>') else {
                return if fin {
                    Attempt::Malformed
                } else {
                    Attempt::Incomplete
                };
            };
            let key = r[..gt].trim().to_string();
            let vstart = start + gt + 1;
            let Some((vend, next)) = value_end(&s[vstart..], fin) else {
                return if fin {
                    Attempt::Malformed
                } else {
                    Attempt::Incomplete
                };
            };
            let raw = &s[vstart..vstart + vend];
            let raw = raw.strip_prefix('\n').unwrap_or(raw);
            let raw = raw.strip_suffix('\n').unwrap_or(raw);
            let schema = tool.and_then(|t| t.param_schema(&key));
            args.insert(key, typed_value(raw, schema));
            at = vstart + next;
            continue;
        }
        if rest.is_empty()
            || (!fin && (FUNCTION_END.starts_with(rest) || PARAMETER.starts_with(rest)))
        {
            return if fin {
                Attempt::Malformed
            } else {
                Attempt::Incomplete
            };
        }
        return Attempt::Malformed;
    }
    at = skip_ws(at);
    let rest = &s[at..];
    if let Some(r) = rest.strip_prefix(TOOL_CALL_END) {
        at = s.len() - r.len();
    } else if !fin && (rest.is_empty() || TOOL_CALL_END.starts_with(rest)) {
        return Attempt::Incomplete;
    }
    Attempt::Complete(vec![(name, Value::Object(args))], at)
}

/// Qwen3-Coder writes values raw: typed by the tool's schema (anyOf tried in order),
/// JSON or Python literals where the schema allows, else the text.
fn typed_value(raw: &str, schema: Option<&Value>) -> Value {
    if raw.trim() == "null" {
        return Value::Null;
    }
    let types: Vec<String> = match schema {
        Some(s) => schema_types(s),
        None => Vec::new(),
    };
    let as_json = || {
        serde_json::from_str::<Value>(raw.trim())
            .ok()
            .or_else(|| parse_literal(raw.trim()))
    };
    if types.is_empty() {
        return match as_json() {
            Some(
                v @ (Value::Object(_)
                | Value::Array(_)
                | Value::Bool(_)
                | Value::Null
                | Value::Number(_)),
            ) => v,
            _ => Value::String(raw.to_string()),
        };
    }
    for t in &types {
        let v = match t.as_str() {
            "string" => return Value::String(raw.to_string()),
            "integer" => raw.trim().parse::<i64>().ok().map(Value::from).or_else(|| {
                raw.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0)
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            }),
            "number" => raw.trim().parse::<i64>().ok().map(Value::from).or_else(|| {
                raw.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            }),
            "boolean" => match raw.trim().to_ascii_lowercase().as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            "null" => matches!(raw.trim(), "null" | "None").then_some(Value::Null),
            "object" => as_json().filter(Value::is_object),
            "array" => as_json().filter(Value::is_array),
            _ => None,
        };
        if let Some(v) = v {
            return v;
        }
    }
    Value::String(raw.to_string())
}

/// The types a schema allows, in order (`type`, a type list, or `anyOf`/`oneOf`).
fn schema_types(s: &Value) -> Vec<String> {
    match s.get("type") {
        Some(Value::String(t)) => return vec![t.clone()],
        Some(Value::Array(ts)) => {
            return ts
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        }
        _ => {}
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = s.get(key) {
            return alts.iter().flat_map(schema_types).collect();
        }
    }
    if s.get("enum").is_some() {
        return vec!["string".into()];
    }
    Vec::new()
}

/// Parses a whole answer.
pub fn parse_calls(format: ToolFormat, tools: &[ToolSpec], text: &str) -> ParsedCalls {
    let mut p = CallParser::new(format, tools);
    let mut events = p.push(text);
    events.extend(p.finish());
    let mut out = ParsedCalls::default();
    for e in events {
        match e {
            CallEvent::Content(c) => out.content.push_str(&c),
            CallEvent::Call(c) => out.calls.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(format: ToolFormat, text: &str) -> (String, Vec<(String, String)>) {
        let mut p = CallParser::new(format, &[]);
        let mut ev = Vec::new();
        let mut buf = [0u8; 4];
        for c in text.chars() {
            ev.extend(p.push(c.encode_utf8(&mut buf)));
        }
        ev.extend(p.finish());
        let mut content = String::new();
        let mut calls = Vec::new();
        for e in ev {
            match e {
                CallEvent::Content(c) => content.push_str(&c),
                CallEvent::Call(c) => calls.push((c.name, c.arguments)),
            }
        }
        (content, calls)
    }

    #[test]
    fn xml_values_may_hold_markers_when_streamed() {
        let text = "<tool_call>\n<function=write_file>\n<parameter=path>\nx.md\n</parameter>\n<parameter=content>\nClose with </tool_call> then </tool_call>; open with <function=x>.\n</parameter>\n</function>\n</tool_call>";
        let whole = parse_calls(ToolFormat::QwenXml, &[], text);
        assert_eq!(whole.calls.len(), 1, "{whole:?}");
        let (content, calls) = streamed(ToolFormat::QwenXml, text);
        assert_eq!((content.as_str(), calls.len()), ("", 1), "{calls:?}");
        assert_eq!(calls[0].1, whole.calls[0].arguments);
    }

    #[test]
    fn hermes_streams_like_whole() {
        let text = "Let me look.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"</tool_call>\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>";
        let (content, calls) = streamed(ToolFormat::Hermes, text);
        assert_eq!(content, "Let me look.");
        assert_eq!(
            calls,
            vec![
                ("f".into(), "{\"a\":\"</tool_call>\"}".into()),
                ("g".into(), "{}".into())
            ]
        );
    }
}
