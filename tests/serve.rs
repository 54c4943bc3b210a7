//! `edge serve` end to end: the real server on 127.0.0.1, real inference on SmolLM2
//! and synthetic models, driven by the real `openai` and `ollama` Python clients and
//! by a raw HTTP client for the faults (dropped streams, bad bodies, full queues,
//! SIGTERM).

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::server::{send, Response, Server};
use common::{edge, scratch, smollm2, stderr, synth_model};
use edge::synth::{write_gguf, SynthArch, SynthSpec};
use serde_json::json;

fn question() -> serde_json::Value {
    json!({"messages": [{"role": "user", "content": "Name the capital of France."}], "temperature": 0, "max_tokens": 40})
}

fn long_stream() -> serde_json::Value {
    json!({"messages": [{"role": "user", "content": "Tell me a long story."}],
           "max_tokens": 2000, "ignore_eos": true, "stream": true})
}

/// Opens a streaming request and reads until `n` SSE data lines arrived.
fn open_stream(server: &Server, body: &serde_json::Value, n: usize) -> std::net::TcpStream {
    let mut s = server.connect();
    send(
        &mut s,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while String::from_utf8_lossy(&buf).matches("data: ").count() < n {
        let got = s.read(&mut chunk).expect("read stream");
        assert!(
            got > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..got]);
    }
    s
}

#[test]
fn openai_client_chats_streams_and_follows_schemas() {
    let server = Server::start(&smollm2(), &["--parallel", "8", "--ctx", "1024"]);
    let o = server.python("openai_client.py", &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok"));
    // Every request ended: no slot stays busy, nothing waits.
    assert_eq!(server.metric("edge_slots_busy"), 0.0);
    assert_eq!(server.metric("edge_queue_depth"), 0.0);
    assert!(server.metric("edge_generated_tokens_total") > 100.0);
}

#[test]
fn ollama_client_chats_and_generates() {
    let server = Server::start(&smollm2(), &["--parallel", "2", "--ctx", "1024"]);
    server.python("ollama_client.py", &[]);
    let v = server.get("/api/version").json();
    assert!(v["version"].is_string(), "{v}");
}

/// A switchable template whose thinking-on generation prompt opens `<think>` (as
/// Qwen3 Thinking-2507's does) and whose off prompt closes an empty block (as Qwen 3's
/// does): the random-weight model's output is then reasoning or answer by the switch.
const SWITCHABLE_THINK_TEMPLATE: &str = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- else %}{{- '<think>\\n' }}{%- endif %}{%- endif %}";

#[test]
fn thinking_switch_gives_reasoning_apart_from_content() {
    let path = scratch().join("serve-thinker.gguf");
    let mut spec = SynthSpec::new(SynthArch::Qwen3);
    spec.chat_template = Some(SWITCHABLE_THINK_TEMPLATE.to_string());
    write_gguf(&spec, &path).unwrap();
    let server = Server::start(&path, &["--parallel", "2", "--ctx", "512"]);
    server.python("thinking.py", &[]);
}

#[test]
fn synthetic_moe_models_serve_concurrent_requests() {
    for arch in [SynthArch::Qwen3Moe, SynthArch::Llama4] {
        let server = Server::start(&synth_model(arch), &["--parallel", "3", "--ctx", "256"]);
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let addr = server.addr.clone();
                std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(&addr).unwrap();
                    let body = json!({"messages": [{"role": "user", "content": format!("hi {i}")}], "max_tokens": 8, "ignore_eos": true});
                    send(&mut s, "POST", "/v1/chat/completions", &[], body.to_string().as_bytes());
                    let mut raw = Vec::new();
                    s.read_to_end(&mut raw).unwrap();
                    Response::parse(&raw)
                })
            })
            .collect();
        for h in handles {
            let r = h.join().unwrap();
            assert_eq!(r.status, 200, "{arch:?}: {}", r.body_text());
            assert_eq!(r.json()["usage"]["completion_tokens"], 8, "{arch:?}");
        }
    }
}

#[test]
fn a_dropped_stream_frees_its_slot_at_once() {
    let server = Server::start(&smollm2(), &["--parallel", "1", "--ctx", "2560"]);
    // Five content chunks after the role chunk, then the client goes away.
    let s = open_stream(&server, &long_stream(), 6);
    drop(s);
    let started = Instant::now();
    let r = server.post("/v1/chat/completions", &question());
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Paris"));
    // With one slot, the answer could only come once the dropped stream let go.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let before = server.metric("edge_generated_tokens_total");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        server.metric("edge_generated_tokens_total"),
        before,
        "tokens still growing"
    );
    assert_eq!(server.metric("edge_slots_busy"), 0.0);
    assert!(server.metric("edge_requests_cancelled_total") >= 1.0);
    // The dropped request generated far fewer than its 2000 tokens.
    assert!(before < 400.0, "generated {before}");

    // A non-streamed request whose client disconnects is stopped too.
    let mut s = server.connect();
    let body = json!({"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 2000, "ignore_eos": true});
    send(
        &mut s,
        "POST",
        "/v1/chat/completions",
        &[],
        body.to_string().as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(400));
    drop(s);
    std::thread::sleep(Duration::from_millis(400));
    let a = server.metric("edge_generated_tokens_total");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        server.metric("edge_generated_tokens_total"),
        a,
        "non-streamed tokens still growing"
    );
    assert_eq!(server.metric("edge_slots_busy"), 0.0);
}

fn assert_envelope(r: &Response, status: u16, param: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body_text());
    let v = r.json();
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(
        e.as_object().unwrap().contains_key("param") && e.as_object().unwrap().contains_key("code"),
        "{v}"
    );
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{v}");
    }
}

#[test]
fn bad_inputs_get_the_error_envelope_and_the_server_goes_on() {
    let server = Server::start(&smollm2(), &["--parallel", "1", "--ctx", "256"]);
    let chat = "/v1/chat/completions";
    let post_raw =
        |body: &[u8]| server.request("POST", chat, &[("Content-Type", "application/json")], body);
    assert_envelope(&post_raw(b"{\"messages\": [tru"), 400, None);
    assert_envelope(&post_raw(b"[1, 2]"), 400, None);
    assert_envelope(
        &server.post(chat, &json!({"model": "x"})),
        400,
        Some("messages"),
    );
    let msgs = json!([{"role": "user", "content": "hi"}]);
    assert_envelope(
        &server.post(chat, &json!({"messages": msgs, "max_tokens": -5})),
        400,
        Some("max_tokens"),
    );
    assert_envelope(
        &server.post(chat, &json!({"messages": msgs, "temperature": "hot"})),
        400,
        Some("temperature"),
    );
    assert_envelope(
        &server.post(chat, &json!({"messages": "hi"})),
        400,
        Some("messages"),
    );
    assert_envelope(
        &server.post(chat, &json!({"messages": [{"role": "user", "content": 7}]})),
        400,
        Some("messages[0].content"),
    );
    assert_envelope(
        &server.post(chat, &json!({"messages": msgs, "stream": "yes"})),
        400,
        Some("stream"),
    );
    assert_envelope(
        &server.post(chat, &json!({"messages": msgs, "n": 2})),
        400,
        Some("n"),
    );
    assert_envelope(&server.post(chat, &json!({"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}})), 400, Some("response_format"));
    assert_envelope(
        &server.post("/v1/completions", &json!({"prompt": 5})),
        400,
        Some("prompt"),
    );
    // A prompt over the context (256 tokens per slot).
    let long = "word ".repeat(600);
    let r = server.post(
        chat,
        &json!({"messages": [{"role": "user", "content": long}]}),
    );
    assert_envelope(&r, 400, None);
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    assert_envelope(&server.get("/v1/nothing"), 404, None);
    // 50 MiB: refused from its Content-Length, before the body is read.
    let mut s = server.connect();
    let head = format!(
        "POST {chat} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        50usize << 20
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert_envelope(&Response::parse(&raw), 413, None);
    // Sent in full without waiting: still a 413 (or the server closes the socket
    // after answering; never a 200 or a crash).
    let mut s = server.connect();
    let big = vec![b'a'; 50 << 20];
    send(
        &mut s,
        "POST",
        chat,
        &[("Content-Type", "application/json")],
        &big,
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    if !raw.is_empty() {
        assert_envelope(&Response::parse(&raw), 413, None);
    }
    // Ollama's routes answer in Ollama's error shape.
    let r = server.post("/api/chat", &json!({"messages": []}));
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].is_string(), "{}", r.body_text());

    let r = server.post(chat, &question());
    assert_eq!(r.status, 200, "{}", r.body_text());
    let metrics = server.get("/metrics").body_text();
    assert!(
        metrics.contains("edge_requests_total{status=\"400\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("status=\"500\""),
        "a client mistake got a 500: {metrics}"
    );
}

#[test]
fn api_keys_are_checked() {
    let server = Server::start_with(
        &smollm2(),
        &["--ctx", "256", "-p", "1"],
        &[("EDGE_API_KEY", "s3cret")],
    );
    let r = server.post("/v1/chat/completions", &question());
    assert_envelope(&r, 401, None);
    let r = server.request(
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_envelope(&r, 401, None);
    let r = server.request(
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer s3cret")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let body = question().to_string();
    let r = server.request(
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer s3cret")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    // Health stays public for load balancers.
    assert_eq!(server.get("/health").status, 200);
    assert!(!server.log().contains("warning"), "{}", server.log());
}

#[test]
fn binding_beyond_loopback_without_a_key_warns() {
    let server = Server::start(
        &smollm2(),
        &["--ctx", "256", "-p", "1", "--host", "0.0.0.0"],
    );
    assert!(
        server.log().contains("without --api-key"),
        "{}",
        server.log()
    );
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let server = Server::start(
        &smollm2(),
        &["--parallel", "1", "--max-queue", "1", "--ctx", "2560"],
    );
    let busy = open_stream(&server, &long_stream(), 2);
    // The next one waits in the queue (its SSE head and keep-alives come at once).
    let mut waiting = server.connect();
    send(
        &mut waiting,
        "POST",
        "/v1/chat/completions",
        &[],
        long_stream().to_string().as_bytes(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric("edge_queue_depth") < 1.0 {
        assert!(Instant::now() < deadline, "the second request never queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = server.post("/v1/chat/completions", &question());
    assert_envelope(&r, 503, None);
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(busy);
    drop(waiting);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric("edge_slots_busy") > 0.0 || server.metric("edge_queue_depth") > 0.0 {
        assert!(Instant::now() < deadline, "slots never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.post("/v1/chat/completions", &question()).status, 200);
}

#[test]
fn sigterm_during_a_stream_exits_zero_promptly() {
    let mut server = Server::start(&smollm2(), &["--parallel", "1", "--ctx", "2560"]);
    let mut s = open_stream(&server, &long_stream(), 4);
    let pid = server.child.id() as i32;
    let started = Instant::now();
    nix_kill(pid, "TERM");
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", server.log());
    // The stream was told, in-band, rather than cut mid-message.
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(
        rest.contains("shutting down") || rest.ends_with("\n\n"),
        "{rest}"
    );
}

fn nix_kill(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn bad_serve_arguments_fail_clearly() {
    let o = edge()
        .args(["serve", "/no/such/model.gguf"])
        .output()
        .unwrap();
    common::assert_clean_failure(&o, "not found");
    // The port is taken.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let o = edge()
        .args(["serve"])
        .arg(smollm2())
        .args(["--port", &port, "--ctx", "256"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot listen on"), "{}", stderr(&o));
    let o = edge()
        .args(["serve"])
        .arg(smollm2())
        .args(["--api-key", ""])
        .output()
        .unwrap();
    common::assert_clean_failure(&o, "empty");
}

#[test]
fn forced_tool_calls_follow_the_schema_on_a_model_without_tool_support() {
    let server = Server::start(&smollm2(), &["--parallel", "2", "--ctx", "2048"]);
    server.python("tools.py", &[]);
}

/// canitoolcall's live probe (PyPI canitoolcall 0.1.1) against the server. SmolLM2's
/// template shows no tools, so the scenarios that let the model choose get a clear
/// 400; the synthetic qwen3 model (Qwen 3's real tokenizer and template) cannot choose
/// sensibly with random weights. On both, the forced scenario (grammar and parser)
/// must pass whole, streamed, and equal.
#[test]
fn canitoolcall_probe_forced_scenario_passes() {
    probe_forced(&smollm2(), "smollm2");
    probe_forced(
        &common::synth_qwen3_real_vocab(SynthArch::Qwen3),
        "qwen3-synth",
    );
}

fn probe_forced(model: &std::path::Path, name: &str) {
    let server = Server::start(model, &["--parallel", "4", "--ctx", "2048"]);
    let report = scratch().join(format!("probe-{name}.json"));
    let o = std::process::Command::new("python3")
        .args(["-m", "canitoolcall", "probe", "--base-url"])
        .arg(format!("{}/v1", server.url()))
        // Random weights run most scenarios to their token limit: on a slow or busy
        // machine that takes longer than the probe's default 60 s per request.
        .args(["--model", "smollm2", "--timeout", "600", "--json"])
        .arg(&report)
        .env("PYTHONPATH", common::data_file("pylib"))
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for outcome in v["outcomes"].as_array().unwrap() {
        let status = outcome["status"].as_str().unwrap();
        if outcome["scenario_id"] == "forced-tool-choice" {
            assert_eq!(status, "pass", "{name}: {outcome}");
        } else if status == "error" {
            assert!(
                outcome["detail"]
                    .as_str()
                    .unwrap()
                    .contains("does not support tools"),
                "{outcome}"
            );
        }
    }
}
