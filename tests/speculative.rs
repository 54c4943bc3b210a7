//! Speculative decoding on the real pair that exists here: SmolLM2-135M re-quantized to
//! F16 as the target, the Q4_1 file as the draft. Greedy output must be byte-identical
//! with `--draft`, with `--lookup` and with neither, and the counters must add up.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{assert_clean_failure, run_edge, scratch, smollm2, stderr, stdout, synth_model};
use edge::synth::SynthArch;

/// SmolLM2 F16, made once per process with `edge quantize --allow-requantize`.
fn f16_target() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = scratch().join("smollm2-f16.gguf");
        let o = run_edge(&[
            "quantize",
            smollm2().to_str().unwrap(),
            out.to_str().unwrap(),
            "--type",
            "F16",
            "--allow-requantize",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        out
    })
    .clone()
}

const PROMPTS: [&str; 10] = [
    "Write a short story about a robot who learns to paint.",
    "Explain how a bicycle works.",
    "List five fruits and say one thing about each.",
    "What is the capital of France? Answer in one sentence.",
    "Repeat this sentence exactly: The quick brown fox jumps over the lazy dog.",
    "Give me three tips for learning a new language.",
    "Describe the water cycle for a child.",
    "Write a haiku about autumn.",
    "Count from one to twenty in words.",
    "Why is the sky blue?",
];

/// (stdout, drafted, accepted, target steps, generated) of one greedy run.
fn generate(target: &Path, prompt: &str, extra: &[&str]) -> (String, u64, u64, u64, u64) {
    let mut args = vec![
        "run",
        target.to_str().unwrap(),
        prompt,
        "--temp",
        "0",
        "--max-tokens",
        "80",
        "--stats",
        "--threads",
        "2",
    ];
    args.extend_from_slice(extra);
    let o = run_edge(&args);
    assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
    let err = stderr(&o);
    let number_after = |text: &str, word: &str| -> u64 {
        let at = text
            .find(word)
            .unwrap_or_else(|| panic!("no {word:?} in {text}"));
        text[at + word.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    let generated = number_after(&err, "generation ");
    let (drafted, accepted, steps) = match err.lines().find(|l| l.starts_with("speculation:")) {
        Some(line) => (
            number_after(line, "drafted "),
            number_after(line, "accepted "),
            number_after(line, "%), "),
        ),
        None => (0, 0, 0),
    };
    (stdout(&o), drafted, accepted, steps, generated)
}

#[test]
fn greedy_output_is_identical_with_a_draft_model_with_lookup_and_with_neither() {
    let target = f16_target();
    let draft = smollm2();
    let (mut drafted_model, mut drafted_lookup) = (0, 0);
    for prompt in PROMPTS {
        let (plain, ..) = generate(&target, prompt, &[]);
        assert!(!plain.trim().is_empty(), "{prompt}");
        for extra in [vec!["--draft", draft.to_str().unwrap()], vec!["--lookup"]] {
            let (text, drafted, accepted, steps, generated) = generate(&target, prompt, &extra);
            assert_eq!(text, plain, "{prompt} with {extra:?}");
            // The counters add up: every generated token is an accepted draft or the
            // target's own token of a step.
            assert!(
                accepted <= drafted,
                "{prompt} {extra:?}: {accepted} > {drafted}"
            );
            assert_eq!(generated, accepted + steps, "{prompt} {extra:?}");
            if extra[0] == "--lookup" {
                drafted_lookup += drafted;
            } else {
                drafted_model += drafted;
            }
        }
    }
    // Both drafters really proposed tokens (the tuner tries drafts before judging).
    assert!(
        drafted_model > 0 && drafted_lookup > 0,
        "{drafted_model} {drafted_lookup}"
    );
}

#[test]
fn a_draft_with_another_vocabulary_is_refused_before_loading() {
    let synth = synth_model(SynthArch::Qwen3);
    let started = std::time::Instant::now();
    let o = run_edge(&[
        "run",
        f16_target().to_str().unwrap(),
        "hi",
        "--draft",
        synth.to_str().unwrap(),
    ]);
    // Refused from the vocabularies alone, before any weights load.
    assert_clean_failure(&o, "cannot draft for");
    assert!(stderr(&o).contains("differ"), "{}", stderr(&o));
    assert!(started.elapsed().as_secs() < 30);
    let o = run_edge(&[
        "run",
        smollm2().to_str().unwrap(),
        "hi",
        "--draft-min",
        "5",
        "--draft-max",
        "2",
    ]);
    assert_clean_failure(&o, "--draft-min 5 is above --draft-max 2");
    let o = run_edge(&[
        "run",
        smollm2().to_str().unwrap(),
        "hi",
        "--draft",
        "/no/such/draft.gguf",
    ]);
    assert!(!o.status.success());
}

#[test]
fn the_plan_shows_the_draft_and_the_forecast() {
    let o = run_edge(&[
        "run",
        f16_target().to_str().unwrap(),
        "hi",
        "--plan-only",
        "--draft",
        smollm2().to_str().unwrap(),
        "--profile",
        "rtx4060-8gb",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Draft model:"), "{out}");
    assert!(
        out.contains("Speculation:") && out.contains("tok/s forecast"),
        "{out}"
    );
    assert_eq!(out.matches("Plan for").count(), 2, "{out}");
}

#[test]
fn edge_plan_places_the_draft_first_and_checks_the_vocabulary() {
    let o = run_edge(&[
        "plan",
        f16_target().to_str().unwrap(),
        "--draft",
        smollm2().to_str().unwrap(),
        "--profile",
        "macbook-air-m2-16gb",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["draft"]["fits"], true);
    assert_eq!(v["target"]["fits"], true);
    assert_eq!(v["draft"]["ctx"], v["target"]["ctx"]);
    let f = &v["forecast"];
    assert!(f["spec_tok_s"].as_f64().unwrap() >= f["plain_tok_s"].as_f64().unwrap());
    let o = run_edge(&[
        "plan",
        f16_target().to_str().unwrap(),
        "--draft",
        synth_model(SynthArch::Qwen3).to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "cannot draft for");
}

/// The batch input of the ten prompts, greedy, 80 tokens each.
fn batch_input(dir: &Path) -> PathBuf {
    let path = dir.join("in.jsonl");
    let lines: Vec<String> = PROMPTS
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({
                "custom_id": format!("r{i}"), "method": "POST", "url": "/v1/chat/completions",
                "body": {"messages": [{"role": "user", "content": p}], "max_tokens": 80,
                         "temperature": 0}
            })
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// custom_id → (content, timings) of a batch output file.
fn batch_answers(path: &Path) -> std::collections::BTreeMap<String, (String, serde_json::Value)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            let body = &r["response"]["body"];
            assert!(body["usage"]["completion_tokens"].as_u64().is_some(), "{l}");
            let t = &body["timings"];
            if !t.is_null() {
                let (n, a, s) = (
                    t["draft_n"].as_u64().unwrap(),
                    t["draft_n_accepted"].as_u64().unwrap(),
                    t["target_steps"].as_u64().unwrap(),
                );
                assert!(a <= n, "{l}");
                assert_eq!(
                    body["usage"]["completion_tokens"].as_u64().unwrap(),
                    a + s,
                    "{l}"
                );
            }
            (
                r["custom_id"].as_str().unwrap().to_string(),
                (
                    body["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    t.clone(),
                ),
            )
        })
        .collect()
}

#[test]
fn batch_with_four_sequences_gives_the_same_answers_with_speculation() {
    let dir = tempfile::tempdir().unwrap();
    let input = batch_input(dir.path());
    let target = f16_target();
    let draft = smollm2();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(format!("{name}.jsonl"));
        let mut args = vec![
            "batch",
            target.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--parallel",
            "4",
            "--threads",
            "2",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let o = run_edge(&args);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        batch_answers(&out)
    };
    let plain = run("plain", &[]);
    assert_eq!(plain.len(), PROMPTS.len());
    assert!(plain.values().all(|(_, t)| t.is_null()));
    for (name, extra) in [
        ("draft", vec!["--draft", draft.to_str().unwrap()]),
        ("lookup", vec!["--lookup"]),
    ] {
        let got = run(name, &extra);
        let mut drafted = 0;
        for (id, (text, timings)) in &got {
            assert_eq!(text, &plain[id].0, "{name} {id}");
            drafted += timings["draft_n"].as_u64().unwrap();
        }
        assert!(drafted > 0, "{name} drafted nothing");
    }
}

#[test]
fn serve_gives_the_same_answers_with_a_draft_model() {
    use common::server::Server;
    let target = f16_target();
    let plain = Server::start(&target, &["--parallel", "2"]);
    let spec = Server::start(
        &target,
        &["--parallel", "2", "--draft", smollm2().to_str().unwrap()],
    );
    for prompt in &PROMPTS[..4] {
        let body = serde_json::json!({
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 80, "temperature": 0
        });
        let a = plain.post("/v1/chat/completions", &body).json();
        let b = spec.post("/v1/chat/completions", &body).json();
        assert_eq!(
            a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"],
            "{prompt}"
        );
        assert!(a["timings"].is_null());
        let t = &b["timings"];
        let generated = b["usage"]["completion_tokens"].as_u64().unwrap();
        assert_eq!(
            generated,
            t["draft_n_accepted"].as_u64().unwrap() + t["target_steps"].as_u64().unwrap(),
            "{b}"
        );
    }
}
