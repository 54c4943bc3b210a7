//! `edge quantize` end to end on the real SmolLM2 model and the synthetic MoE models.
//!
//! Run with `cargo test --release --test quantize_cli`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use edge::synth::SynthArch;

fn smollm2_f16() -> PathBuf {
    smollm2_as("F16")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_of(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// No file under `out` and no partial file next to it.
fn assert_no_output(out: &Path) {
    assert!(!out.exists(), "{} was left behind", out.display());
    if let Some(dir) = out.parent().filter(|d| d.is_dir()) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                assert!(!n.contains("edge-partial"), "partial file {n} left behind");
            }
        }
    }
}

#[test]
fn smollm2_f16_q8_0_q4_k_m_sizes_match_dry_run_and_answer_paris() {
    let f16 = smollm2_f16();
    let meta = json_of(&run_edge(&["show", s(&f16), "--tensors", "--json"]));
    let types: Vec<&str> = meta["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert!(
        types.iter().all(|t| *t == "F16" || *t == "F32"),
        "{types:?}"
    );
    answers_paris(&f16);

    let dir = tempfile::tempdir().unwrap();
    for ty in ["Q8_0", "Q4_K_M"] {
        let plan = json_of(&run_edge(&[
            "quantize",
            s(&f16),
            "--type",
            ty,
            "--dry-run",
            "--json",
        ]));
        let out = dir.path().join(format!("{ty}.gguf"));
        let o = run_edge(&["quantize", s(&f16), s(&out), "--type", ty, "--json"]);
        let done = json_of(&o);
        assert_eq!(file_len(&out), plan["file_bytes"].as_u64().unwrap(), "{ty}");
        assert_eq!(done["written_bytes"], plan["file_bytes"]);
        let main_type = if ty == "Q8_0" { "Q8_0" } else { "Q4_K" };
        let shown = json_of(&run_edge(&["show", s(&out), "--tensors", "--json"]));
        assert!(
            shown["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["type"] == main_type),
            "{ty}: no {main_type} tensor"
        );
        answers_paris(&out);
    }
    assert!(file_len(&dir.path().join("Q4_K_M.gguf")) < file_len(&dir.path().join("Q8_0.gguf")));
}

#[test]
fn dry_run_prints_classes_and_total_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.gguf");
    let o = run_edge(&[
        "quantize",
        s(&smollm2_f16()),
        s(&out),
        "--type",
        "Q4_0",
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for want in ["token_embd", "attn_q", "ffn_down", "total:", "bytes"] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
    assert_no_output(&out);
}

#[test]
fn tensor_type_overrides_apply() {
    // qwen3moe: its output head is untied, so --output-tensor-type has a tensor to set.
    let model = synth_model(SynthArch::Qwen3Moe);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.gguf");
    let o = run_edge(&[
        "quantize",
        s(&model),
        s(&out),
        "--type",
        "Q4_K_M",
        "--tensor-type",
        "attn_v=Q8_0",
        "--tensor-type",
        "ffn_(up|gate)=IQ4_XS",
        "--output-tensor-type",
        "Q5_K",
        "--token-embedding-type",
        "Q6_K",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want_for = |name: &str| -> Option<&'static str> {
        if name.ends_with("attn_v.weight") {
            Some("Q8_0")
        } else if name.contains("ffn_up") || (name.contains("ffn_gate") && !name.contains("inp")) {
            Some("IQ4_XS")
        } else if name == "output.weight" {
            Some("Q5_K")
        } else if name == "token_embd.weight" {
            Some("Q6_K")
        } else {
            None
        }
    };
    // How many tensors each override must reach, counted in the input.
    let mut expected = std::collections::BTreeMap::new();
    for t in edge::gguf_info::GgufFile::open(&model).unwrap().tensors {
        if let Some(w) = want_for(&t.name) {
            *expected.entry(w).or_insert(0) += 1;
        }
    }
    assert_eq!(
        expected.len(),
        4,
        "the model lacks a tensor of some override: {expected:?}"
    );
    let shown = json_of(&run_edge(&["show", s(&out), "--tensors", "--json"]));
    let mut matched = std::collections::BTreeMap::new();
    for t in shown["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if let Some(want) = want_for(name) {
            assert_eq!(t["type"].as_str().unwrap(), want, "{name}");
            *matched.entry(want).or_insert(0) += 1;
        }
    }
    assert_eq!(matched, expected);
    generates(&out);
}

/// The MoE recipe on the synthetic qwen3moe and llama4 models: experts at the recipe's
/// types, everything else at theirs, and the result loads and generates.
#[test]
fn moe_recipe_on_synthetic_models() {
    let recipe = edge_quant::Recipe::builtin("moe-balanced").unwrap();
    let dir = tempfile::tempdir().unwrap();
    for arch in [SynthArch::Qwen3Moe, SynthArch::Llama4] {
        let model = synth_model(arch);
        let out = dir.path().join(format!("{}.gguf", arch.as_str()));
        let o = run_edge(&["quantize", s(&model), s(&out), "--recipe", "moe-balanced"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let shown = json_of(&run_edge(&["show", s(&out), "--tensors", "--json"]));
        let mut experts = 0;
        for t in shown["tensors"].as_array().unwrap() {
            let name = t["name"].as_str().unwrap();
            let class = edge_quant::classify(name);
            let ty = t["type"].as_str().unwrap();
            if class.is_routed_expert() {
                experts += 1;
            }
            match recipe.type_for(class) {
                Some(want)
                    if edge_quant::llama_quantizes(name, t["dims"].as_array().unwrap().len()) =>
                {
                    assert_eq!(ty, want.name.to_ascii_uppercase(), "{arch:?} {name}")
                }
                _ => {
                    if class == edge_quant::TensorClass::Router
                        || class == edge_quant::TensorClass::Norm
                    {
                        assert_eq!(ty, "F32", "{name}");
                    }
                }
            }
        }
        assert!(experts > 0, "{arch:?}: no expert tensors");
        generates(&out);
    }
}

#[test]
fn size_budget_is_met_and_experts_get_fewer_bits() {
    let model = synth_model(SynthArch::Qwen3Moe);
    let dir = tempfile::tempdir().unwrap();
    let f16_size = file_len(&model);
    for budget in [f16_size / 4, f16_size / 3] {
        let out = dir.path().join(format!("fit-{budget}.gguf"));
        let b = budget.to_string();
        let plan = json_of(&run_edge(&[
            "quantize",
            s(&model),
            s(&out),
            "--size",
            &b,
            "--json",
        ]));
        let got = file_len(&out);
        assert!(got <= budget, "{got} > {budget}");
        assert!(got > budget * 9 / 10, "{got} wastes the budget {budget}");
        assert_eq!(plan["written_bytes"].as_u64(), Some(got));
        // Routed experts end up at fewer bits per weight than attention.
        let bpw = |pred: &dyn Fn(&str) -> bool| {
            let (mut bytes, mut elems) = (0u64, 0u64);
            for t in plan["tensors"].as_array().unwrap() {
                if pred(t["class"].as_str().unwrap()) {
                    bytes += t["bytes"].as_u64().unwrap();
                    elems += t["dims"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap())
                        .product::<u64>();
                }
            }
            bytes as f64 * 8.0 / elems as f64
        };
        let exp = bpw(&|c| c.ends_with("_exps"));
        let attn = bpw(&|c| c.starts_with("attn_"));
        assert!(exp < attn, "experts {exp:.2} bpw, attention {attn:.2} bpw");
        // The file holds the types the plan reported, and it loads and generates.
        let shown = json_of(&run_edge(&["show", s(&out), "--tensors", "--json"]));
        let types: std::collections::HashMap<&str, &str> = shown["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap(), t["type"].as_str().unwrap()))
            .collect();
        for t in plan["tensors"].as_array().unwrap() {
            let name = t["name"].as_str().unwrap();
            let want = t["to"].as_str().unwrap().to_ascii_uppercase();
            assert_eq!(
                types.get(name).map(|s| s.to_ascii_uppercase()),
                Some(want),
                "{name}"
            );
        }
        generates(&out);
    }
}

#[test]
fn size_on_smollm2_fits_the_q4_k_m_size_and_answers_paris() {
    let f16 = smollm2_f16();
    let q4km = json_of(&run_edge(&[
        "quantize",
        s(&f16),
        "--type",
        "Q4_K_M",
        "--dry-run",
        "--json",
    ]));
    let budget = q4km["file_bytes"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fit.gguf");
    let o = run_edge(&["quantize", s(&f16), s(&out), "--size", &budget.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(file_len(&out) <= budget);
    answers_paris(&out);
    // --bpw is a budget too.
    let plan = json_of(&run_edge(&[
        "quantize",
        s(&f16),
        "--bpw",
        "5.0",
        "--dry-run",
        "--json",
    ]));
    assert!(plan["bpw"].as_f64().unwrap() <= 5.0, "{}", plan["bpw"]);
}

#[test]
fn list_recipes() {
    let o = run_edge(&["quantize", "--list-recipes"]);
    assert!(o.status.success());
    for name in [
        "moe-balanced",
        "moe-compact",
        "dense-balanced",
        "dense-compact",
    ] {
        assert!(stdout(&o).contains(name), "{}", stdout(&o));
    }
}

#[test]
fn bad_inputs_fail_cleanly_without_output() {
    let model = synth_model(SynthArch::Qwen3);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let m = s(&model);
    let o_ = s(&out);

    let o = run_edge(&[
        "quantize",
        m,
        o_,
        "--type",
        "Q4_K_M",
        "--imatrix",
        "/nonexistent/imatrix.gguf",
    ]);
    assert_clean_failure(&o, "imatrix");
    assert_no_output(&out);

    let o = run_edge(&["quantize", m, o_, "--size", "1000"]);
    assert_clean_failure(&o, "smaller than the smallest possible mix");
    assert_no_output(&out);

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"this is not a model at all").unwrap();
    let o = run_edge(&["quantize", s(&junk), o_, "--type", "Q8_0"]);
    assert_clean_failure(&o, "not a GGUF");
    assert_no_output(&out);

    // /proc refuses new files even to root, unlike a chmod-ed directory.
    let ro = Path::new("/proc/edge-quantize-test.gguf");
    let o = run_edge(&["quantize", m, s(ro), "--type", "Q8_0"]);
    assert_clean_failure(&o, "cannot write");
    assert!(!ro.exists());

    let o = run_edge(&["quantize", m, o_, "--type", "IQ2_XS"]);
    assert_clean_failure(&o, "needs an importance matrix");
    assert_no_output(&out);
    let o = run_edge(&[
        "quantize",
        m,
        o_,
        "--type",
        "Q4_K_M",
        "--tensor-type",
        "ffn_up=IQ2_XXS",
    ]);
    assert_clean_failure(&o, "needs an importance matrix");
    assert_no_output(&out);

    let o = run_edge(&["quantize", s(&smollm2()), o_, "--type", "Q4_K_M"]);
    assert_clean_failure(&o, "--allow-requantize");
    assert_no_output(&out);

    for (args, msg) in [
        (vec!["--type", "Q9_K"], "unknown file type"),
        (vec!["--recipe", "nope"], "unknown recipe"),
        (vec!["--fit", "laptop"], "unknown profile"),
        (vec!["--type", "Q4_0", "--size", "1G"], "alternatives"),
        (
            vec!["--type", "Q4_0", "--tensor-type", "ffn_(up=Q4_0"],
            "unbalanced",
        ),
        (
            vec!["--type", "Q4_0", "--tensor-type", "ffn_up=Q9"],
            "unknown tensor type",
        ),
        (vec![], "--type TYPE"),
    ] {
        let mut a = vec!["quantize", m, o_];
        a.extend(args);
        let o = run_edge(&a);
        assert_clean_failure(&o, msg);
        assert_no_output(&out);
    }
    let o = run_edge(&["quantize", m, m, "--type", "Q8_0"]);
    assert_clean_failure(&o, "overwrite the input");
}
