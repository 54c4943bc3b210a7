//! `edge eval`: perplexity and KL divergence on SmolLM2.
//!
//! Run with `cargo test --release --test eval_cli`.

mod common;

use std::path::Path;

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// English prose for evaluation: the project README (a few thousand tokens).
fn text() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

fn eval_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["eval"];
    a.extend_from_slice(args);
    a.push("--json");
    let o = run_edge(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn f16_against_itself_has_zero_kld_and_ppl_ratio_one_and_q4_is_worse() {
    let f16 = smollm2_as("F16");
    let cache = tempfile::tempdir().unwrap();
    let txt = text();
    let common = [
        "--text",
        s(&txt),
        "--ctx",
        "128",
        "--chunks",
        "4",
        "--cache-dir",
        s(cache.path()),
    ];
    let mut a = vec![s(&f16), "--ref", s(&f16)];
    a.extend(common);
    let r = eval_json(&a);
    let k = &r["kld"];
    assert_eq!(r["tokens_scored"], 4 * 63);
    assert!(k["kld_mean"].as_f64().unwrap().abs() < 1e-4, "{k}");
    assert!(k["kld_max"].as_f64().unwrap() < 1e-3, "{k}");
    // The reference log-probs are stored in 16 bits, as llama.cpp stores them.
    assert!(k["ln_ppl_ratio"].as_f64().unwrap().abs() < 5e-3, "{k}");
    assert!((k["ppl_ratio"].as_f64().unwrap() - 1.0).abs() < 5e-3, "{k}");
    assert!(k["same_top_pct"].as_f64().unwrap() > 99.0, "{k}");
    assert_eq!(r["reference_cached"], false);
    let ppl = r["ppl"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < 1000.0, "{ppl}");

    // Plain perplexity agrees with the KLD run's.
    let p = eval_json(&[
        s(&f16),
        "--text",
        s(&text()),
        "--ctx",
        "128",
        "--chunks",
        "4",
    ]);
    assert!((p["ppl"].as_f64().unwrap() - ppl).abs() < 1e-3 * ppl);

    // Q4_0 against the cached F16 reference: positive divergence, higher PPL.
    let q4 = smollm2_as("Q4_0");
    let mut a = vec![s(&q4), "--ref", s(&f16)];
    a.extend(common);
    let r = eval_json(&a);
    assert_eq!(r["reference_cached"], true);
    let k = &r["kld"];
    assert!(k["kld_mean"].as_f64().unwrap() > 1e-3, "{k}");
    assert!(k["kld_p99"].as_f64().unwrap() >= k["kld_median"].as_f64().unwrap());
    assert!(k["kld_max"].as_f64().unwrap() >= k["kld_p99"].as_f64().unwrap());
    assert!(k["same_top_pct"].as_f64().unwrap() < 100.0);
    // Q4_0 predicts the text worse than F16, beyond the run's own uncertainty, and the
    // KLD run's PPL ratio is that comparison.
    let q4_ppl = r["ppl"].as_f64().unwrap();
    assert!(q4_ppl > ppl, "Q4_0 PPL {q4_ppl} is not above F16's {ppl}");
    let ratio = k["ppl_ratio"].as_f64().unwrap();
    assert!(
        (ratio - q4_ppl / ppl).abs() < 0.01 * ratio,
        "{ratio} vs {q4_ppl}/{ppl}"
    );
    assert!(ratio > 1.0, "{ratio}");
}

#[test]
fn eval_errors_are_one_line() {
    let f16 = smollm2_as("F16");
    let dir = tempfile::tempdir().unwrap();
    let o = run_edge(&["eval", s(&f16), "--text", "/nonexistent.txt"]);
    assert_clean_failure(&o, "cannot read the text");
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "Just a few words.").unwrap();
    let o = run_edge(&["eval", s(&f16), "--text", s(&short)]);
    assert_clean_failure(&o, "too short");
    let moe = synth_model(edge::synth::SynthArch::Qwen3);
    let o = run_edge(&[
        "eval",
        s(&moe),
        "--ref",
        s(&f16),
        "--text",
        s(&text()),
        "--ctx",
        "64",
        "--chunks",
        "1",
        "--cache-dir",
        s(dir.path()),
    ]);
    assert_clean_failure(&o, "not comparable");
    let o = run_edge(&["eval", s(&short), "--text", s(&text())]);
    assert_clean_failure(&o, "GGUF");
}
