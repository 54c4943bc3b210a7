//! `edge imatrix` writes llama.cpp's GGUF imatrix format (per-expert counts for MoE),
//! `llama_model_quantize` accepts it, and --resume / --merge work.
//!
//! Run with `cargo test --release --test quantize_imatrix`.

mod common;

use std::path::Path;

use common::*;
use edge::gguf_info::GgufFile;
use edge::synth::SynthArch;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn readme() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

#[test]
fn moe_imatrix_has_per_expert_counts_and_drives_iq2_quantization() {
    let model = synth_model(SynthArch::Qwen3Moe);
    let dir = tempfile::tempdir().unwrap();
    let im = dir.path().join("imatrix.gguf");
    let text = readme();
    let o = run_edge(&[
        "imatrix",
        s(&model),
        "--text",
        s(&text),
        "--ctx",
        "64",
        "--chunks",
        "2",
        "-o",
        s(&im),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let g = GgufFile::open(&im).unwrap();
    assert_eq!(g.get_str("general.type"), Some("imatrix"));
    assert_eq!(g.get_u64("imatrix.chunk_count"), Some(2));
    assert_eq!(g.get_u64("imatrix.chunk_size"), Some(64));
    let n_expert = GgufFile::open(&model)
        .unwrap()
        .get_u64("qwen3moe.expert_count")
        .unwrap();
    let counts = g
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_up_exps.weight.counts")
        .expect("expert counts");
    assert_eq!(counts.dims, vec![1, n_expert]);
    let sums = g
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_up_exps.weight.in_sum2")
        .unwrap();
    assert_eq!(sums.dims[1], n_expert);
    assert!(g
        .tensors
        .iter()
        .any(|t| t.name == "blk.0.attn_q.weight.in_sum2"));

    // Without the imatrix IQ2_XXS is refused; with it llama_model_quantize accepts it.
    let out = dir.path().join("iq2.gguf");
    let o = run_edge(&["quantize", s(&model), s(&out), "--type", "IQ2_XXS"]);
    assert_clean_failure(&o, "importance matrix");
    let o = run_edge(&[
        "quantize",
        s(&model),
        s(&out),
        "--type",
        "IQ2_XXS",
        "--imatrix",
        s(&im),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The matrices llama.cpp quantizes are IQ2_XXS; the file loads and generates.
    let q = GgufFile::open(&out).unwrap();
    let iq2 = q
        .tensors
        .iter()
        .filter(|t| t.ggml_type.name() == "IQ2_XXS")
        .count();
    assert!(iq2 > 0, "no IQ2_XXS tensor in {}", out.display());
    assert!(q
        .tensors
        .iter()
        .filter(|t| t.name.contains("_exps"))
        .all(|t| t.ggml_type.name().starts_with("IQ") || t.ggml_type.name().starts_with('Q')));
    generates(&out);

    // --size with an imatrix may use the IQ2 types and still meets the budget.
    let budget = std::fs::metadata(&model).unwrap().len() / 6;
    let fit = dir.path().join("fit.gguf");
    let o = run_edge(&[
        "quantize",
        s(&model),
        s(&fit),
        "--size",
        &budget.to_string(),
        "--imatrix",
        s(&im),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::metadata(&fit).unwrap().len() <= budget);
    generates(&fit);

    // --resume adds chunks; --merge sums files.
    let o = run_edge(&[
        "imatrix",
        s(&model),
        "--text",
        s(&text),
        "--ctx",
        "64",
        "--chunks",
        "1",
        "-o",
        s(&im),
        "--resume",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        GgufFile::open(&im).unwrap().get_u64("imatrix.chunk_count"),
        Some(3)
    );
    let merged = dir.path().join("merged.gguf");
    let o = run_edge(&["imatrix", "--merge", s(&im), s(&im), "-o", s(&merged)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        GgufFile::open(&merged)
            .unwrap()
            .get_u64("imatrix.chunk_count"),
        Some(6)
    );
}

#[test]
fn imatrix_errors_are_one_line() {
    let model = synth_model(SynthArch::Qwen3);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("im.gguf");
    let o = run_edge(&[
        "imatrix",
        s(&model),
        "--text",
        "/nonexistent.txt",
        "-o",
        s(&out),
    ]);
    assert_clean_failure(&o, "cannot read the text");
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"nope").unwrap();
    let o = run_edge(&["imatrix", s(&junk), "--text", s(&readme()), "-o", s(&out)]);
    assert_clean_failure(&o, "GGUF");
    let o = run_edge(&[
        "imatrix",
        s(&model),
        "--text",
        s(&readme()),
        "-o",
        s(&out),
        "--resume",
    ]);
    assert_clean_failure(&o, "does not exist");
    let o = run_edge(&[
        "quantize",
        s(&model),
        s(&out),
        "--type",
        "Q4_K_M",
        "--imatrix",
        s(&junk),
    ]);
    assert_clean_failure(&o, "imatrix");
    assert!(!out.exists());
}
