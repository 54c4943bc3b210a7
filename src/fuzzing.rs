//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz), one function per parser of
//! untrusted input. They live here so that `tests/fuzz_regressions.rs` replays every
//! input a fuzzer ever crashed on through the very same code, on stable, in `cargo test`.
//! Each may refuse its input; none may panic, hang or allocate without bound (a panic
//! here is the bug a fuzzer reports).

use crate::batch::{merge, parse_line, prepare_output, read_records, record_key};
use crate::chat_template::{ChatTemplate, Message, RenderOptions, SpecialTokens};
use crate::gguf_info::{check_loadable, GgufFile, ModelFacts};
use crate::planner::{plan, ModelShape, PlanRequest};
use crate::quantize::imatrix_file::Imatrix;
use crate::request::{parse_body, Endpoint};
use crate::serve::protocol::ApiError;
use crate::tools::{Reply, ReplyParser};
use crate::tools::{ToolFormat, ToolSpec};
use serde_json::{Map, Value};

/// A GGUF header from arbitrary bytes: parsed, checked against its data, turned into
/// model facts and a model shape, validated as llama.cpp would load it, and planned on
/// a profile. Any of these may refuse; none may panic, hang or allocate wildly.
pub fn gguf_header(data: &[u8]) {
    let Ok(g) = GgufFile::parse_header(data) else {
        return;
    };
    let _ = g.check_data_present(data.len() as u64);
    let _ = ModelFacts::from_gguf(&g);
    if check_loadable(&g).is_err() {
        return;
    }
    if let Ok(shape) = ModelShape::from_gguf(&g) {
        let profile = &crate::profile::builtin_profiles()[0];
        let _ = plan(&shape, profile, &PlanRequest::default());
    }
}

/// `edge batch` input and output files: every input line parsed as a request; the same
/// bytes read back as an output file that a crash may have torn (resume bookkeeping):
/// repaired, keyed and merged.
pub fn batch_lines(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for (i, line) in text.lines().enumerate() {
        let _ = parse_line(i + 1, line);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, data).unwrap();
    if let Ok(records) = read_records(&out) {
        for r in &records {
            let _ = record_key(r);
        }
        let _ = merge(&[records.clone(), records], None);
    }
    // Resume: a torn last line is cut off; the file stays readable.
    if prepare_output(&out).is_ok() {
        let _ = read_records(&out);
    }
}

/// A hostile chat template with hostile messages: the input is the template, a NUL,
/// then a JSON array of messages. Compiling and rendering may fail, never crash, and
/// stay within the template limits (fuel, output size).
pub fn chat_template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (source, rest) = text.split_once('\0').unwrap_or((&text, ""));
    let tokens = SpecialTokens {
        bos: Some("<s>".into()),
        eos: Some("</s>".into()),
        ..Default::default()
    };
    let Ok(t) = ChatTemplate::new(source, tokens) else {
        return;
    };
    let messages: Vec<Message> = serde_json::from_str::<serde_json::Value>(rest)
        .ok()
        .and_then(|v| crate::request::parse_messages(&v).ok())
        .unwrap_or_else(|| vec![Message::user(rest)]);
    for enable_thinking in [None, Some(false)] {
        let opts = RenderOptions {
            add_generation_prompt: true,
            enable_thinking,
            ..Default::default()
        };
        if let Ok(out) = t.render(&messages, &opts) {
            assert!(out.len() <= crate::chat_template::MAX_RENDERED_BYTES);
        }
    }
}

/// An imatrix GGUF from arbitrary bytes (`--imatrix FILE`, `imatrix --resume/--merge`).
pub fn imatrix_file(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imatrix.gguf");
    std::fs::write(&path, data).unwrap();
    if let Ok(mut a) = Imatrix::load(&path) {
        let b = a.clone();
        let _ = a.merge(&b);
    }
}

/// The model catalog and device profiles (`profiles/*.toml`, `--profile FILE`).
pub fn toml_data(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::catalog::parse_catalog(&text);
    let _ = crate::profile::DeviceProfile::parse("fuzz", &text);
}

/// `edge serve` request bodies (OpenAI chat and completions, Ollama chat and generate)
/// and the SSE frames written back: a body is parsed or refused with a FieldError whose
/// envelope serialises; a chunk built from hostile text is one SSE event.
pub fn serve_request(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(body) = v.as_object() else {
        return;
    };
    for endpoint in [Endpoint::Chat, Endpoint::Completion, Endpoint::ChatOrPrompt] {
        if let Err(e) = parse_body(body, endpoint) {
            let envelope = ApiError::field(e).body();
            assert!(serde_json::to_string(&envelope).is_ok());
        }
    }
    let _ = crate::serve::ollama::parse_chat(body);
    let _ = crate::serve::ollama::parse_generate(body);
    let empty = Map::new();
    let _ = crate::request::parse_tools(if body.contains_key("tools") {
        body
    } else {
        &empty
    });
}

/// A model's reply parsed for reasoning and tool calls in every format, whole and
/// streamed in pieces cut at fuzzer-chosen places: the two must agree.
pub fn tool_calls(data: &[u8]) {
    let Some((&cut_seed, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let specs = vec![
        ToolSpec::from_openai(&serde_json::json!({"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "days": {"type": ["integer", "null"]},
                "opts": {"type": "object"}}}}}))
        .unwrap(),
    ];
    for format in [ToolFormat::Hermes, ToolFormat::QwenXml, ToolFormat::Llama] {
        for think in [None, Some(true)] {
            let whole = ReplyParser::new(think, Some((format, &specs))).parse_all(&text);
            let mut p = ReplyParser::new(think, Some((format, &specs)));
            let mut events = Vec::new();
            let chars: Vec<char> = text.chars().collect();
            let step = 1 + cut_seed as usize % 7;
            for piece in chars.chunks(step) {
                events.extend(p.push(&piece.iter().collect::<String>()));
            }
            events.extend(p.finish());
            let streamed = Reply::from_events(events);
            let names = |r: &Reply| {
                r.calls
                    .iter()
                    .map(|c| (c.name.clone(), c.arguments.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(whole.reasoning, streamed.reasoning, "{format:?}");
            assert_eq!(whole.content, streamed.content, "{format:?}");
            assert_eq!(names(&whole), names(&streamed), "{format:?}");
        }
    }
}
