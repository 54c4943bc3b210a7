//! A GGUF's chat template is code from whoever made the file. One that loops forever
//! and one that renders a gigabyte are refused at load, with one clear line and within
//! a few seconds, by `run`, `batch` and `serve`.
//!
//! Run with `cargo test --release --test hostile_templates`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use edge::synth::{write_gguf, SynthArch, SynthSpec};

const RUNAWAY: &str =
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}";
const GIGABYTE: &str = "{% for i in range(10) %}{{ 'x' * 100000000 }}{% endfor %}";

fn model_with_template(name: &str, template: &str) -> PathBuf {
    let path = scratch().join(format!("hostile-{name}.gguf"));
    let mut spec = SynthSpec::new(SynthArch::Qwen3);
    spec.chat_template = Some(template.to_string());
    write_gguf(&spec, &path).unwrap();
    path
}

/// Runs `edge ARGS`, which must fail within `limit`.
fn fails_fast(args: &[&str], limit: Duration) -> std::process::Output {
    let start = Instant::now();
    let o = run_edge(args);
    assert!(
        start.elapsed() < limit,
        "edge {} took {:?}",
        args.join(" "),
        start.elapsed()
    );
    o
}

#[test]
fn run_batch_and_serve_refuse_a_runaway_or_huge_template_at_load() {
    let limit = Duration::from_secs(15);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"custom_id\":\"a\",\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n",
    )
    .unwrap();
    for (name, template, why) in [
        ("runaway", RUNAWAY, "runaway loop"),
        ("gigabyte", GIGABYTE, "over 64 MiB"),
    ] {
        let model = model_with_template(name, template);
        let m = model.to_str().unwrap();

        let o = fails_fast(&["run", m, "hi", "--max-tokens", "4"], limit);
        assert_clean_failure(&o, why);

        let out = dir.path().join(format!("{name}.jsonl"));
        let o = fails_fast(
            &[
                "batch",
                m,
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--quiet",
            ],
            limit,
        );
        assert_clean_failure(&o, why);

        // serve prints where it listens, then fails the load and exits.
        let o = fails_fast(&["serve", m, "--port", "0"], limit);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with("edge: error: ") && last.contains(why),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
