//! Tool round trips (tools, an assistant call, the tool's result, the answer) render
//! through the model's own template byte-identically to Python transformers'
//! `apply_chat_template` (its jinja2 environment, run with the pinned jinja2 from the
//! test data's pylib), for Qwen 3 and Qwen3-Coder's real templates.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use edge::chat_template::{ChatTemplate, Message, RenderOptions, SpecialTokens};
use edge::tools::ToolFormat;
use serde_json::{json, Value};

fn python_render(template: &str, messages: &Value, tools: &Value, kwargs: Value) -> String {
    let pylib = common::data_file("pylib");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_clients/render_hf.py");
    let mut child = Command::new("python3")
        .arg(script)
        .env("PYTHONPATH", pylib)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let req = json!({"template": template, "messages": messages, "tools": tools, "add_generation_prompt": true,
                     "bos_token": null, "eos_token": "<|im_end|>", "kwargs": kwargs});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn round_trip() -> (Value, Vec<Message>, Value) {
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city, «today».",
         "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                        "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "get_time", "description": "The time", "parameters": {"type": "object", "properties": {}}}}
    ]);
    let call = json!([{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "c"}}}]);
    let mut assistant = Message::assistant("");
    assistant.tool_calls = Some(call.as_array().unwrap().clone());
    let mut tool = Message::new("tool", "{\"temp\": 21, \"sky\": \"sunny\"}");
    tool.tool_call_id = Some("call_1".into());
    let messages = vec![
        Message::system("You are terse."),
        Message::user("Weather in Zürich?"),
        assistant,
        tool,
        Message::assistant("21 °C and sunny."),
        Message::user("And the time?"),
    ];
    let as_json = serde_json::to_value(&messages).unwrap();
    // What the Python side sees: the same messages, without the absent keys.
    let cleaned: Vec<Value> = as_json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            Value::Object(
                m.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        })
        .collect();
    (tools, messages, Value::Array(cleaned))
}

fn check(name: &str, source: &str, want_format: ToolFormat, kwargs: Value) {
    assert_eq!(ToolFormat::detect(source), Some(want_format), "{name}");
    let t = ChatTemplate::new(
        source,
        SpecialTokens {
            bos: None,
            eos: Some("<|im_end|>".into()),
            pad: None,
            unk: None,
        },
    )
    .unwrap();
    let (tools, messages, py_messages) = round_trip();
    let mut opts = RenderOptions {
        add_generation_prompt: true,
        enable_thinking: kwargs.get("enable_thinking").and_then(Value::as_bool),
        extra: Default::default(),
    };
    opts.extra.insert("tools".into(), tools.clone());
    let ours = t.render(&messages, &opts).unwrap();
    let theirs = python_render(source, &py_messages, &tools, kwargs);
    assert_eq!(ours, theirs, "{name}: edge and transformers' jinja2 differ");
    assert!(
        ours.contains("get_time") && ours.contains("Zürich"),
        "{name}: {ours}"
    );
}

#[test]
fn qwen3_tool_round_trip_renders_like_transformers() {
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(common::data_file("qwen3-tokenizer/tokenizer_config.json"))
            .unwrap(),
    )
    .unwrap();
    let source = cfg["chat_template"].as_str().unwrap();
    check(
        "Qwen3 (tokenizer_config)",
        source,
        ToolFormat::Hermes,
        json!({}),
    );
    check(
        "Qwen3, thinking off",
        source,
        ToolFormat::Hermes,
        json!({"enable_thinking": false}),
    );
    let file =
        std::fs::read_to_string(common::data_file("templates/Qwen-Qwen3-0.6B.jinja")).unwrap();
    check(
        "Qwen-Qwen3-0.6B.jinja",
        &file,
        ToolFormat::Hermes,
        json!({}),
    );
}

#[test]
fn qwen3_coder_tool_round_trip_renders_like_transformers() {
    let source = std::fs::read_to_string(common::data_file("templates/Qwen3-Coder.jinja")).unwrap();
    check("Qwen3-Coder.jinja", &source, ToolFormat::QwenXml, json!({}));
}
