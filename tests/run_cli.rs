//! `edge run`, `edge show`, `edge bench` end to end through the real binary, on the
//! real SmolLM2 GGUF and the synthetic qwen3/qwen3moe/llama4 models.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;
use edge::synth::SynthArch;

#[test]
fn answers_paris_greedily_and_exits_zero() {
    let m = smollm2();
    let o = run_edge(&[
        "run",
        m.to_str().unwrap(),
        "Name the capital of France.",
        "--temp",
        "0",
    ]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert!(stdout(&o).contains("Paris"), "stdout: {}", stdout(&o));
}

#[test]
fn prompt_from_a_pipe() {
    let m = smollm2();
    let mut child = edge()
        .args([
            "run",
            m.to_str().unwrap(),
            "--temp",
            "0",
            "--max-tokens",
            "24",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Name the capital of France.\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert!(stdout(&o).contains("Paris"), "stdout: {}", stdout(&o));
}

#[test]
fn stats_report_speeds() {
    let m = smollm2();
    let o = run_edge(&[
        "run",
        m.to_str().unwrap(),
        "Hi",
        "--temp",
        "0",
        "--max-tokens",
        "4",
        "--stats",
    ]);
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(err.contains("load") && err.contains("tok/s"), "{err}");
}

#[test]
fn bad_model_files_fail_with_one_clear_line() {
    let dir = scratch().join("bad-inputs");
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // missing file
    assert_clean_failure(&run_edge(&["run", &p("nope.gguf"), "hi"]), "not found");
    // a directory
    assert_clean_failure(
        &run_edge(&["run", dir.to_str().unwrap(), "hi"]),
        "directory",
    );
    // empty file
    std::fs::write(p("empty.gguf"), b"").unwrap();
    assert_clean_failure(&run_edge(&["run", &p("empty.gguf"), "hi"]), "empty");
    // not a GGUF
    std::fs::write(p("text.gguf"), b"hello, I am not a model\n").unwrap();
    assert_clean_failure(&run_edge(&["run", &p("text.gguf"), "hi"]), "not a GGUF");

    let good = std::fs::read(synth_model(SynthArch::Qwen3)).unwrap();
    // truncated inside the header (metadata)
    std::fs::write(p("trunc-header.gguf"), &good[..200]).unwrap();
    assert_clean_failure(
        &run_edge(&["run", &p("trunc-header.gguf"), "hi"]),
        "truncated",
    );
    // truncated inside the tensor data
    std::fs::write(p("trunc-data.gguf"), &good[..good.len() - 1000]).unwrap();
    assert_clean_failure(
        &run_edge(&["run", &p("trunc-data.gguf"), "hi"]),
        "truncated",
    );
    assert_clean_failure(&run_edge(&["show", &p("trunc-data.gguf")]), "truncated");

    // unknown architecture: rename qwen3 to qwenx everywhere in the header
    let mut unknown = good.clone();
    let header_len = 64 * 1024;
    for i in 0..header_len.min(unknown.len() - 5) {
        if &unknown[i..i + 5] == b"qwen3" {
            unknown[i + 4] = b'x';
        }
    }
    std::fs::write(p("unknown-arch.gguf"), &unknown).unwrap();
    assert_clean_failure(
        &run_edge(&["run", &p("unknown-arch.gguf"), "hi"]),
        "unknown model architecture",
    );
}

#[test]
fn bad_flag_values_fail_with_one_clear_line() {
    let m = smollm2();
    let m = m.to_str().unwrap();
    for (args, needle) in [
        (vec!["run", m, "hi", "--temp", "abc"], "--temp"),
        (vec!["run", m, "hi", "--top-p", "2"], "between 0 and 1"),
        (vec!["run", m, "hi", "--ctx", "0"], "--ctx"),
        (vec!["run", m, "hi", "--think", "maybe"], "--think"),
        (vec!["run", m, "hi", "--no-such-flag"], "--no-such-flag"),
        (vec!["bench", m, "-r", "0"], "-r"),
    ] {
        let o = run_edge(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("edge: error: ") && lines[0].contains(needle),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn prompt_longer_than_context_is_a_clear_error() {
    let m = smollm2();
    let long = "word ".repeat(300);
    let o = run_edge(&["run", m.to_str().unwrap(), &long, "--ctx", "64"]);
    assert_clean_failure(&o, "--ctx");
}

#[test]
fn full_context_during_generation_stops_cleanly() {
    let m = smollm2();
    let o = run_edge(&[
        "run",
        m.to_str().unwrap(),
        "Write a very long story about a dragon.",
        "--ctx",
        "64",
        "--temp",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("context is full"), "{}", stderr(&o));
}

#[test]
fn show_reports_moe_facts_of_each_synthetic_architecture() {
    for (arch, n_expert, n_used, n_shared, moe_layers) in [
        (SynthArch::Qwen3, 0, 0, 0, vec![]),
        (SynthArch::Qwen3Moe, 8, 2, 0, vec![0, 1]),
        (SynthArch::Llama4, 4, 1, 1, vec![1, 3]),
    ] {
        let m = synth_model(arch);
        let o = run_edge(&["show", m.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let facts = &v["facts"];
        assert_eq!(facts["architecture"], arch.as_str());
        if n_expert == 0 {
            assert!(facts["moe"].is_null(), "{arch:?}: {facts}");
        } else {
            let moe = &facts["moe"];
            assert_eq!(moe["n_expert"], n_expert, "{arch:?}");
            assert_eq!(moe["n_expert_used"], n_used, "{arch:?}");
            assert_eq!(moe["n_expert_shared"], n_shared, "{arch:?}");
            assert_eq!(moe["moe_layers"], serde_json::json!(moe_layers), "{arch:?}");
            assert_eq!(moe["expert_ff"], 256, "{arch:?}");
        }
        assert_eq!(v["chat_template"], true);
        let text = run_edge(&["show", m.to_str().unwrap(), "--tensors"]);
        assert!(text.status.success());
        assert!(stdout(&text).contains("token_embd.weight"));
    }
}

#[test]
fn greedy_generation_is_identical_across_runs_for_each_synthetic_architecture() {
    for arch in [SynthArch::Qwen3, SynthArch::Qwen3Moe, SynthArch::Llama4] {
        let m = synth_model(arch);
        let args = [
            "run",
            m.to_str().unwrap(),
            "hello there",
            "--temp",
            "0",
            "--max-tokens",
            "24",
            "--think",
            "off",
        ];
        let a = run_edge(&args);
        let b = run_edge(&args);
        assert!(a.status.success(), "{arch:?}: {}", stderr(&a));
        // Random weights give arbitrary (often whitespace) text; what matters is that
        // tokens came out and that greedy decoding repeats exactly.
        assert!(!stdout(&a).is_empty(), "{arch:?} produced nothing");
        assert!(
            stderr(&a).contains("--max-tokens"),
            "{arch:?} should run to the limit: {}",
            stderr(&a)
        );
        assert_eq!(stdout(&a), stdout(&b), "{arch:?}");
    }
}

#[test]
fn version_names_llama_cpp_and_backends() {
    let o = run_edge(&["--version"]);
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(
        s.contains("llama.cpp") && s.contains("backends: ") && s.contains("CPU"),
        "{s}"
    );
    assert!(s.contains("AVX2 = 1"), "default build must keep AVX2: {s}");
}

#[test]
fn bench_prints_llama_bench_json() {
    let m = smollm2();
    let o = run_edge(&[
        "bench",
        m.to_str().unwrap(),
        "-p",
        "32",
        "-n",
        "8",
        "-r",
        "2",
        "-t",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let records = v.as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["n_prompt"], 32);
    assert_eq!(records[1]["n_gen"], 8);
    for r in records {
        assert_eq!(r["n_threads"], 2);
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
        assert!(r["stddev_ts"].as_f64().is_some());
        assert!(r["model_filename"].as_str().unwrap().ends_with(".gguf"));
        assert_eq!(r["samples_ns"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn run_with_tools_prints_json_lines_and_refuses_what_cannot_work() {
    let dir = scratch().join("run-tools");
    std::fs::create_dir_all(&dir).unwrap();
    let tools = dir.join("tools.json");
    std::fs::write(
        &tools,
        r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]"#,
    )
    .unwrap();
    // Qwen 3's real template renders the tools; the reply is JSON lines only.
    let q = synth_qwen3_real_vocab(SynthArch::Qwen3);
    let t = tools.to_str().unwrap();
    let o = run_edge(&[
        "run",
        q.to_str().unwrap(),
        "--tools",
        t,
        "--max-tokens",
        "8",
        "--temp",
        "0",
        "--think",
        "off",
        "hello",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.trim().is_empty());
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v.get("content").is_some() || v["function"]["name"] == "get_weather",
            "{v}"
        );
    }
    // SmolLM2's template has no tools.
    let m = smollm2();
    let o = run_edge(&["run", m.to_str().unwrap(), "--tools", t, "hello"]);
    assert_clean_failure(&o, "does not support tools");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"[{"type": "function", "function": {}}]"#).unwrap();
    let o = run_edge(&[
        "run",
        q.to_str().unwrap(),
        "--tools",
        bad.to_str().unwrap(),
        "hello",
    ]);
    assert_clean_failure(&o, "name");
    let o = run_edge(&[
        "run",
        q.to_str().unwrap(),
        "--tools",
        dir.join("missing.json").to_str().unwrap(),
        "hello",
    ]);
    assert_clean_failure(&o, "cannot read tools file");
}

#[test]
fn a_model_without_a_chat_template_gets_its_family_format_and_stops() {
    let no_template = scratch().join("smollm2-no-template.gguf");
    gguf_without_key(&smollm2(), "tokenizer.chat_template", &no_template);
    let m = no_template.to_str().unwrap();
    let o = run_edge(&[
        "run",
        m,
        "Name the capital of France.",
        "--temp",
        "0",
        "--max-tokens",
        "200",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // SmolLM2's vocabulary has ChatML's tokens: the format is picked from them, and the
    // answer ends at the end of the turn rather than inventing turns.
    assert!(
        stderr(&o).contains("using the chatml format (from its vocabulary)"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));
    assert!(
        !stderr(&o).contains("--max-tokens"),
        "it ran to the limit: {}",
        stderr(&o)
    );
    assert!(
        !stdout(&o).contains("<|im_start|>") && !stdout(&o).contains("user\n"),
        "{}",
        stdout(&o)
    );
    // --chat-template overrides the choice (plain completion) and rejects nonsense.
    let o = run_edge(&[
        "run",
        m,
        "The capital of France is",
        "--chat-template",
        "plain",
        "--temp",
        "0",
        "--max-tokens",
        "8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_edge(&["run", m, "hi", "--chat-template", "no-such-format"]);
    assert_clean_failure(&o, "neither a built-in format");
}
