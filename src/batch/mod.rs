//! Offline batch jobs: the JSONL formats, resume bookkeeping, sharding and merging.
//! Pure logic; a run over an input file is [`job`], and [`runner`] hands its requests
//! to the engine's continuous-batching scheduler.
//!
//! Input lines follow OpenAI's batch format (as vLLM's `run-batch` accepts it):
//! `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`, plus
//! the short forms `{"id", "prompt"}` and `{"id", "messages"}`. Output lines are
//! `{"id", "custom_id", "line", "response": {"status_code", "body"}, "error"}`.

pub mod job;
pub mod runner;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::request::{parse_body, ApiRequest, Endpoint, RequestKind};
use crate::tools::ToolCall;

/// One parsed input line.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    pub custom_id: String,
    /// 1-based line number in the input file.
    pub line: usize,
    pub request: ApiRequest,
}

/// A line that cannot become a request.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub line: usize,
    pub custom_id: Option<String>,
    pub code: &'static str,
    pub message: String,
}

/// Error codes that belong to an input line rather than to a request id.
pub const LINE_LEVEL_CODES: [&str; 3] = ["invalid_json", "invalid_request", "duplicate_custom_id"];

fn invalid(line: usize, id: Option<String>, message: impl Into<String>) -> LineError {
    LineError {
        line,
        custom_id: id,
        code: "invalid_request",
        message: message.into(),
    }
}

/// Parses one input line. `line` is 1-based.
pub fn parse_line(line: usize, text: &str) -> Result<BatchRequest, LineError> {
    let v: Value = serde_json::from_str(text).map_err(|e| LineError {
        line,
        custom_id: None,
        code: "invalid_json",
        message: format!("not valid JSON: {e}"),
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(line, None, "a request must be a JSON object"))?;
    let id = match obj.get("custom_id").or_else(|| obj.get("id")) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(invalid(line, None, "missing 'custom_id' (or 'id')")),
    };
    if let Some(m) = obj.get("method").and_then(Value::as_str) {
        if !m.eq_ignore_ascii_case("POST") {
            return Err(invalid(
                line,
                Some(id),
                format!("method '{m}' is not supported (only POST)"),
            ));
        }
    }
    let body = match obj.get("body") {
        Some(Value::Object(b)) => b,
        Some(_) => return Err(invalid(line, Some(id), "'body' must be an object")),
        None => obj, // short form: fields at top level
    };
    let endpoint = match obj.get("url").and_then(Value::as_str) {
        None => Endpoint::ChatOrPrompt,
        Some("/v1/chat/completions") => Endpoint::Chat,
        Some("/v1/completions") => Endpoint::Completion,
        Some(other) => {
            return Err(invalid(
                line,
                Some(id),
                format!("url '{other}' is not supported"),
            ))
        }
    };
    let request =
        parse_body(body, endpoint).map_err(|e| invalid(line, Some(id.clone()), e.message))?;
    Ok(BatchRequest {
        custom_id: id,
        line,
        request,
    })
}

/// The input file, parsed: requests to run and line errors to report.
#[derive(Debug, Default)]
pub struct ParsedInput {
    pub requests: Vec<BatchRequest>,
    pub errors: Vec<LineError>,
    pub n_lines: usize,
}

/// Reads and parses the whole input; duplicate ids become line errors.
pub fn read_input(path: &Path) -> Result<ParsedInput> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open input {}", path.display()))?;
    let mut parsed = ParsedInput::default();
    let mut seen: HashSet<String> = HashSet::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let text = line.with_context(|| format!("reading {} line {line_no}", path.display()))?;
        parsed.n_lines = line_no;
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(line_no, &text) {
            Ok(req) => {
                if !seen.insert(req.custom_id.clone()) {
                    parsed.errors.push(LineError {
                        line: line_no,
                        custom_id: Some(req.custom_id.clone()),
                        code: "duplicate_custom_id",
                        message: format!(
                            "custom_id '{}' appears on an earlier line",
                            req.custom_id
                        ),
                    });
                } else {
                    parsed.requests.push(req);
                }
            }
            Err(e) => parsed.errors.push(e),
        }
    }
    Ok(parsed)
}

/// FNV-1a 64: stable across runs, machines and Rust versions (unlike `DefaultHasher`).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// `K/N` with 1 <= K <= N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s.split_once('/').ok_or("expected K/N, e.g. 2/8")?;
        let k: u64 = k
            .trim()
            .parse()
            .map_err(|_| format!("'{k}' is not a shard number"))?;
        let n: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("'{n}' is not a shard count"))?;
        if n == 0 || k == 0 || k > n {
            return Err(format!("shard {k}/{n} is out of range (1 <= K <= N)"));
        }
        Ok(Shard { index: k, count: n })
    }
}

impl Shard {
    /// Stable partition by custom_id (or, for a line without an id, by its line number).
    pub fn owns(&self, key: &str) -> bool {
        stable_hash(key) % self.count == self.index - 1
    }
}

/// The key a line error is tracked under for resume: its id, or its line number.
pub fn error_key(e: &LineError) -> String {
    match (&e.custom_id, e.code) {
        (Some(id), code) if !LINE_LEVEL_CODES.contains(&code) => id.clone(),
        _ => format!("line:{}", e.line),
    }
}

/// What a finished request answered.
pub struct Answer<'a> {
    pub content: &'a str,
    pub reasoning: &'a str,
    pub tool_calls: &'a [ToolCall],
}

/// Builds a success record.
pub fn success_record(
    req: &BatchRequest,
    model: &str,
    answer: &Answer,
    finish_reason: &str,
    prompt_tokens: usize,
    completion_tokens: usize,
    created: u64,
) -> Value {
    let request_id = format!("edge-{:016x}", stable_hash(&req.custom_id));
    let body = match &req.request.kind {
        RequestKind::Chat(_) => {
            let mut message = json!({"role": "assistant", "content": answer.content});
            if !answer.reasoning.is_empty() {
                message["reasoning_content"] = json!(answer.reasoning);
            }
            if !answer.tool_calls.is_empty() {
                message["tool_calls"] = answer
                    .tool_calls
                    .iter()
                    .map(|c| c.to_openai(None))
                    .collect();
                if answer.content.trim().is_empty() {
                    message["content"] = Value::Null;
                }
            }
            json!({
                "id": format!("chatcmpl-{request_id}"),
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            })
        }
        RequestKind::Completion(_) => json!({
            "id": format!("cmpl-{request_id}"),
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": answer.content, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }),
    };
    json!({
        "id": format!("batch_req_{request_id}"),
        "custom_id": req.custom_id,
        "line": req.line,
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": null,
    })
}

/// Builds an error record.
pub fn error_record(custom_id: Option<&str>, line: usize, code: &str, message: &str) -> Value {
    json!({
        "id": format!("batch_req_line{line}"),
        "custom_id": custom_id,
        "line": line,
        "response": null,
        "error": {"code": code, "message": message, "line": line},
    })
}

/// The key a written record is tracked under (see [`error_key`]).
pub fn record_key(v: &Value) -> Option<String> {
    let code = v
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str);
    let id = v.get("custom_id").and_then(Value::as_str);
    let line = v.get("line").and_then(Value::as_u64);
    match (id, code) {
        (Some(id), Some(code)) if !LINE_LEVEL_CODES.contains(&code) => Some(id.to_string()),
        (Some(id), None) => Some(id.to_string()),
        _ => line.map(|l| format!("line:{l}")),
    }
}

/// Opens the output for appending after repairing it: a torn last line (a crash in
/// the middle of a write) is cut off. Returns the keys of the records already done.
pub fn prepare_output(path: &Path) -> Result<(std::fs::File, HashSet<String>)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open output {}", path.display()))?;
    let mut content = Vec::new();
    file.read_to_end(&mut content)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut done = HashSet::new();
    let mut good_len = 0usize;
    let mut pos = 0usize;
    while pos < content.len() {
        let Some(nl) = content[pos..].iter().position(|&b| b == b'\n') else {
            break; // no newline: torn
        };
        let line = &content[pos..pos + nl];
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => {
                if let Some(k) = record_key(&v) {
                    done.insert(k);
                }
                good_len = pos + nl + 1;
            }
            Err(_) if line.iter().all(u8::is_ascii_whitespace) => good_len = pos + nl + 1,
            Err(_) => break, // corrupt line: everything after it is suspect
        }
        pos += nl + 1;
    }
    if good_len < content.len() {
        eprintln!(
            "edge: repaired {}: dropped {} bytes of an unfinished record",
            path.display(),
            content.len() - good_len
        );
        file.set_len(good_len as u64)
            .with_context(|| format!("truncating {}", path.display()))?;
    }
    file.seek(SeekFrom::End(0))?;
    Ok((file, done))
}

/// Appends one record as a single write, then flushes it to disk.
pub fn append_record(file: &mut std::fs::File, record: &Value) -> Result<()> {
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    file.write_all(&line).context("writing a result")?;
    file.sync_data().context("syncing the output file")?;
    Ok(())
}

/// Reads every record of an output file; fails on a corrupt line.
pub fn read_records(path: &Path) -> Result<Vec<Value>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not a valid record", path.display(), i + 1))?;
        out.push(v);
    }
    Ok(out)
}

/// Rewrites `path` with its records sorted by input line (atomically).
pub fn sort_output(path: &Path) -> Result<()> {
    let mut records = read_records(path)?;
    records.sort_by_key(|r| r.get("line").and_then(Value::as_u64).unwrap_or(u64::MAX));
    write_records_atomically(path, &records)
}

pub fn write_records_atomically(path: &Path, records: &[Value]) -> Result<()> {
    let mut text = Vec::new();
    for r in records {
        serde_json::to_writer(&mut text, r)?;
        text.push(b'\n');
    }
    crate::partial_file::write_atomic(path, &text)
        .with_context(|| format!("replacing {}", path.display()))
}

/// Result of merging shard outputs.
#[derive(Debug)]
pub struct MergeReport {
    pub records: Vec<Value>,
    pub duplicates: Vec<String>,
    pub missing: Vec<String>,
}

/// Combines shard outputs; with the input, also reports ids that no shard produced.
pub fn merge(outputs: &[Vec<Value>], input_ids: Option<&[String]>) -> MergeReport {
    let mut by_key: HashMap<String, Value> = HashMap::new();
    let mut duplicates = Vec::new();
    let mut keys_in_order = Vec::new();
    for records in outputs {
        for r in records {
            let Some(k) = record_key(r) else { continue };
            match by_key.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => duplicates.push(e.key().clone()),
                std::collections::hash_map::Entry::Vacant(e) => {
                    keys_in_order.push(e.key().clone());
                    e.insert(r.clone());
                }
            }
        }
    }
    let missing = input_ids
        .map(|ids| {
            ids.iter()
                .filter(|id| !by_key.contains_key(*id))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut records: Vec<Value> = keys_in_order
        .into_iter()
        .filter_map(|k| by_key.remove(&k))
        .collect();
    records.sort_by_key(|r| r.get("line").and_then(Value::as_u64).unwrap_or(u64::MAX));
    MergeReport {
        records,
        duplicates,
        missing,
    }
}

/// Fails unless `path`'s parent directory exists, so a typo is caught before work starts.
pub fn check_output_dir(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("output directory {} does not exist", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::Message;

    #[test]
    fn parses_the_openai_batch_form() {
        let r = parse_line(
            3,
            r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"system","content":"S"},{"role":"user","content":"Hi"}],"max_tokens":5,"temperature":0,"seed":7,"stop":["\n"],"chat_template_kwargs":{"enable_thinking":false}}}"#,
        )
        .unwrap();
        assert_eq!(r.custom_id, "a");
        assert_eq!(r.line, 3);
        assert_eq!(
            r.request.kind,
            RequestKind::Chat(vec![Message::system("S"), Message::user("Hi")])
        );
        assert_eq!(
            (r.request.max_tokens, r.request.temperature, r.request.seed),
            (Some(5), Some(0.0), Some(7))
        );
        assert_eq!(r.request.stop, vec!["\n".to_string()]);
        assert_eq!(r.request.enable_thinking, Some(false));
    }

    #[test]
    fn parses_short_forms_and_completions() {
        let r = parse_line(1, r#"{"id": 5, "prompt": "Hi", "think": true}"#).unwrap();
        assert_eq!(r.custom_id, "5");
        assert_eq!(r.request.kind, RequestKind::Chat(vec![Message::user("Hi")]));
        assert_eq!(r.request.enable_thinking, Some(true));
        let r = parse_line(
            1,
            r#"{"custom_id":"c","url":"/v1/completions","body":{"prompt":"Once"}}"#,
        )
        .unwrap();
        assert_eq!(r.request.kind, RequestKind::Completion("Once".into()));
        let r = parse_line(
            1,
            r#"{"id":"j","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"}}}}"#,
        )
        .unwrap();
        assert_eq!(r.request.json_schema, Some(json!({"type":"object"})));
    }

    #[test]
    fn bad_lines_are_errors_with_their_line() {
        for (text, code) in [
            ("{not json", "invalid_json"),
            ("[1,2]", "invalid_request"),
            (r#"{"prompt":"no id"}"#, "invalid_request"),
            (r#"{"id":"x"}"#, "invalid_request"),
            (r#"{"id":"x","messages":[]}"#, "invalid_request"),
            (
                r#"{"id":"x","messages":[{"role":"user"}]}"#,
                "invalid_request",
            ),
            (
                r#"{"id":"x","prompt":"p","max_tokens":-1}"#,
                "invalid_request",
            ),
            (
                r#"{"id":"x","url":"/v1/embeddings","body":{}}"#,
                "invalid_request",
            ),
        ] {
            let e = parse_line(9, text).unwrap_err();
            assert_eq!((e.line, e.code), (9, code), "{text}");
        }
    }

    #[test]
    fn shards_partition_ids() {
        let shards: Vec<Shard> = (1..=3).map(|k| format!("{k}/3").parse().unwrap()).collect();
        for i in 0..200 {
            let id = format!("req-{i}");
            assert_eq!(shards.iter().filter(|s| s.owns(&id)).count(), 1);
        }
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn torn_last_line_is_repaired_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        let good = error_record(Some("a"), 1, "context_length_exceeded", "m");
        let mut text = serde_json::to_string(&good).unwrap();
        text.push('\n');
        text.push_str(r#"{"custom_id":"b","resp"#);
        std::fs::write(&p, &text).unwrap();
        let (mut f, done) = prepare_output(&p).unwrap();
        assert_eq!(done, HashSet::from(["a".to_string()]));
        append_record(&mut f, &error_record(Some("b"), 2, "x", "y")).unwrap();
        let records = read_records(&p).unwrap();
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn merge_finds_duplicates_and_missing() {
        let a = vec![error_record(Some("1"), 1, "e", "m")];
        let b = vec![
            error_record(Some("1"), 1, "e", "m"),
            error_record(Some("2"), 2, "e", "m"),
        ];
        let ids = vec!["1".to_string(), "2".to_string(), "3".to_string()];
        let r = merge(&[a, b], Some(&ids));
        assert_eq!(r.duplicates, vec!["1".to_string()]);
        assert_eq!(r.missing, vec!["3".to_string()]);
        assert_eq!(r.records.len(), 2);
    }
}
