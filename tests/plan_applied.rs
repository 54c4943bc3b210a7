//! Acceptance: every command that loads a model applies the plan, not only `edge run`.
//! With an `edge rpc-server` on 127.0.0.1 as the second device and a VRAM cap that
//! forces some routed experts onto the CPU, `edge batch`, `edge bench` and `edge eval`
//! put exactly the plan's VRAM tensors on RPC0 and the rest on the CPU, as llama.cpp's
//! load log reports; batch output is identical to a CPU-only run. And `edge batch`
//! plans its KV cache for every sequence: too many for the device is refused with the
//! planner's suggestion, fewer fit.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::rpc::*;
use common::*;
use edge::synth::SynthArch;
use serde_json::Value;

fn batch_input(dir: &Path) -> std::path::PathBuf {
    let input = dir.join("jobs.jsonl");
    let prompts = [
        "Tell me a story about a dragon.",
        "List three colours.",
        "What is two plus two?",
        "Write a haiku about rain.",
    ];
    let lines: Vec<String> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({
                "custom_id": format!("r{i}"),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"messages": [{"role": "user", "content": p}],
                         "max_tokens": 16, "temperature": 0}
            })
            .to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    input
}

/// custom_id -> the answer text, from a batch output file.
fn answers(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let text = v["response"]["body"]["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_else(|| panic!("no answer in {l}"))
                .to_string();
            (v["custom_id"].as_str().unwrap().to_string(), text)
        })
        .collect()
}

/// Runs edge with `args` planned on the RPC device (`endpoint`, `vram` of it) or on the
/// CPU alone; it must succeed.
fn run_on(home: &Path, args: &[&str], endpoint: Option<&str>, vram: u64) -> std::process::Output {
    let placement = rpc_placement(endpoint, vram);
    let o = edge()
        .env("EDGE_HOME", home)
        .args(args)
        .args(&placement)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?} {placement:?}: {}", stderr(&o));
    o
}

#[test]
fn batch_bench_and_eval_apply_the_plan_on_an_rpc_device() {
    let (_server, endpoint) = start_rpc_server();
    let home = profile_home();
    let model = synth_model(SynthArch::Qwen3Moe);
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // edge batch: 2 sequences of 256 tokens each.
    let plan_args = ["--ctx", "256", "--parallel", "2", "--kv-type", "f16"];
    let (vram, plan) = tight_plan(home, m, &plan_args);
    assert_eq!(plan["parallel"], 2, "{plan}");
    let input = batch_input(dir.path());
    let batch = |rpc: bool, out: &Path| {
        let mut args = vec![
            "batch",
            "-v",
            m,
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(&plan_args);
        let o = run_on(home, &args, rpc.then_some(endpoint.as_str()), vram);
        stderr(&o)
    };
    let (rpc_out, cpu_out) = (dir.path().join("rpc.jsonl"), dir.path().join("cpu.jsonl"));
    let log = batch(true, &rpc_out);
    assert_log_applies_plan("batch", &log, &plan);
    assert!(
        log.contains("x 2 sequences"),
        "batch -v prints the plan it applies:\n{log}"
    );
    let cpu_log = batch(false, &cpu_out);
    assert!(!cpu_log.contains("RPC0"), "CPU-only batch used RPC");
    let (rpc_answers, cpu_answers) = (answers(&rpc_out), answers(&cpu_out));
    assert_eq!(rpc_answers.len(), 4);
    assert!(rpc_answers.values().any(|a| !a.is_empty()));
    assert_eq!(
        rpc_answers, cpu_answers,
        "greedy batch output differs between RPC and CPU"
    );

    // edge bench: the plan covers the larger test's context (-p 32).
    let (vram, plan) = tight_plan(home, m, &["--ctx", "32", "--kv-type", "f16"]);
    let bench = [
        "bench",
        "-v",
        m,
        "-p",
        "32",
        "-n",
        "8",
        "-r",
        "1",
        "--json",
        "--kv-type",
        "f16",
    ];
    let o = run_on(home, &bench, Some(&endpoint), vram);
    assert_log_applies_plan("bench", &stderr(&o), &plan);
    let records: Value = serde_json::from_str(&stdout(&o)).unwrap();
    for r in records.as_array().unwrap() {
        assert_eq!(r["n_gpu_layers"], plan["llama"]["n_gpu_layers"], "{r}");
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
    }

    // edge eval: planned for one chunk of --ctx tokens.
    let (vram, plan) = tight_plan(home, m, &["--ctx", "64", "--kv-type", "f16"]);
    let text = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let eval = [
        "eval",
        "-v",
        m,
        "--text",
        text.to_str().unwrap(),
        "--ctx",
        "64",
        "--chunks",
        "2",
        "--json",
        "--kv-type",
        "f16",
    ];
    let o = run_on(home, &eval, Some(&endpoint), vram);
    assert_log_applies_plan("eval", &stderr(&o), &plan);
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(r["ppl"].as_f64().unwrap().is_finite());
}

/// A user profile of a small CPU-only board: 1 GiB of RAM, 512 MiB of it free.
fn tiny_device_home() -> std::path::PathBuf {
    let home = scratch().join("tiny-home");
    let dir = home.join("profiles");
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/cpu-laptop-8gb.toml"),
    )
    .unwrap();
    let text = shipped
        .replace("name = \"cpu-laptop-8gb\"", "name = \"tiny-device\"")
        .replace("ram_bytes = \"8 GiB\"", "ram_bytes = \"1 GiB\"")
        .replace(
            "os_reserve_bytes = \"2.5 GiB\"",
            "os_reserve_bytes = \"512 MiB\"",
        );
    std::fs::write(dir.join("tiny-device.toml"), text).unwrap();
    home
}

#[test]
fn batch_plans_the_kv_cache_of_every_sequence() {
    let home = tiny_device_home();
    let dir = tempfile::tempdir().unwrap();
    let input = batch_input(dir.path());
    let m = smollm2();
    let batch = |parallel: &str, out: &str| {
        edge()
            .env("EDGE_HOME", &home)
            .args([
                "batch",
                m.to_str().unwrap(),
                "-i",
                input.to_str().unwrap(),
                "-o",
                dir.path().join(out).to_str().unwrap(),
                "--quiet",
                "--profile",
                "tiny-device",
                "--parallel",
                parallel,
                "--ctx",
                "4096",
            ])
            .output()
            .unwrap()
    };
    // 8 x 4096 tokens of KV cache (720 MiB in f16) cannot fit in 512 MiB.
    let o = batch("8", "eight.jsonl");
    assert_clean_failure(&o, "does not fit on tiny-device");
    let err = stderr(&o);
    assert!(
        err.contains("--parallel"),
        "no --parallel suggestion: {err}"
    );
    assert!(
        !dir.path().join("eight.jsonl").exists()
            || std::fs::read_to_string(dir.path().join("eight.jsonl"))
                .unwrap()
                .is_empty(),
        "a refused batch wrote records"
    );
    // 2 x 4096 fits, and runs.
    let o = batch("2", "two.jsonl");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(answers(&dir.path().join("two.jsonl")).len(), 4);
}
