//! Header-only full-size fixtures (`edge::synth::fullsize`): the tensor tables of
//! Qwen3-30B-A3B, Qwen3-235B-A22B and Llama 4 Scout/Maverick at Q4_K_M, read back with
//! edge's own GGUF reader and with `edge show`.
//!
//! Run with `cargo test --release --test fullsize_fixtures -- --nocapture` to see the
//! computed totals.
//!
//! Expected values, from the published models:
//! - parameters: Qwen3-30B-A3B 30.5B, Qwen3-235B-A22B 235.1B (HF safetensors counts);
//!   Llama 4 Scout 109B and Maverick 400B are the *multimodal* checkpoints. The fixtures
//!   hold the text model only (convert_hf_to_gguf.py writes the vision tower to a separate
//!   mmproj file): Scout's text model is 107.77B, about 0.87B under the checkpoint's
//!   108.64B; Maverick's is 400.71B.
//! - Q4_K_M file sizes (llama-quantize without an imatrix): Qwen3-30B-A3B about 18.6 GB,
//!   Qwen3-235B-A22B about 142 GB, Scout about 65 GB, Maverick about 243 GB. The fixtures'
//!   tensor bytes are the data section of such files (the real files add a few MB of
//!   vocabulary and merges in the header).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use edge::gguf_info::{GgufFile, ModelFacts};
use edge::synth::fullsize::{tensor_table, write_header_only, FullSizeModel};

struct Expect {
    model: FullSizeModel,
    /// Exact parameter count of the tensor table.
    params: u64,
    /// The published count it must be within 1% of.
    published: f64,
    /// Exact bytes of all tensors.
    bytes: u64,
    /// The published Q4_K_M file size it must be within 2% of.
    published_bytes: f64,
    n_layer: u64,
    n_embd: u64,
    n_ff_exp: u64,
    n_expert: u64,
    n_expert_used: u64,
    n_vocab: u64,
    moe_layers: Vec<u32>,
}

fn expectations() -> Vec<Expect> {
    vec![
        Expect {
            model: FullSizeModel::Qwen3_30bA3b,
            params: 30_532_122_624,
            published: 30.5e9,
            bytes: 18_550_716_416,
            published_bytes: 18.6e9,
            n_layer: 48,
            n_embd: 2048,
            n_ff_exp: 768,
            n_expert: 128,
            n_expert_used: 8,
            n_vocab: 151_936,
            moe_layers: (0..48).collect(),
        },
        Expect {
            model: FullSizeModel::Qwen3_235bA22b,
            params: 235_093_634_560,
            published: 235.1e9,
            bytes: 142_148_069_376,
            published_bytes: 142.0e9,
            n_layer: 94,
            n_embd: 4096,
            n_ff_exp: 1536,
            n_expert: 128,
            n_expert_used: 8,
            n_vocab: 151_936,
            moe_layers: (0..94).collect(),
        },
        Expect {
            model: FullSizeModel::Llama4Scout,
            params: 107_769_861_184,
            // The checkpoint's 108.64B includes the ~0.87B vision tower (see the top).
            published: 108.64e9,
            bytes: 65_346_798_336,
            published_bytes: 65.0e9,
            n_layer: 48,
            n_embd: 5120,
            n_ff_exp: 8192,
            n_expert: 16,
            n_expert_used: 1,
            n_vocab: 202_048,
            moe_layers: (0..48).collect(),
        },
        Expect {
            model: FullSizeModel::Llama4Maverick,
            params: 400_711_848_960,
            published: 400.0e9,
            bytes: 242_754_060_800,
            published_bytes: 243.0e9,
            n_layer: 48,
            n_embd: 5120,
            n_ff_exp: 8192,
            n_expert: 128,
            n_expert_used: 1,
            n_vocab: 202_048,
            moe_layers: (0..48).filter(|i| i % 2 == 1).collect(),
        },
    ]
}

fn write(dir: &Path, model: FullSizeModel) -> PathBuf {
    let path = dir.join(format!("{model}.gguf"));
    write_header_only(model, &path).unwrap();
    path
}

fn layer_of(name: &str) -> Option<u32> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

#[test]
fn fixtures_have_the_published_shapes_sizes_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    for e in expectations() {
        let m = e.model;
        let path = write(dir.path(), m);
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len < 20 << 20, "{m}: {len} bytes");

        let g = GgufFile::open_header(&path).unwrap();
        assert!(g.is_header_only(), "{m}");
        assert_eq!(g.file_size, len);
        assert_eq!(
            g.data_offset, len,
            "{m}: the file ends where the data would start"
        );
        assert_eq!(g.alignment, 32);

        // Metadata the loader and the planner read.
        assert_eq!(g.arch_u64("block_count"), Some(e.n_layer), "{m}");
        assert_eq!(g.arch_u64("embedding_length"), Some(e.n_embd), "{m}");
        assert_eq!(g.arch_u64("expert_count"), Some(e.n_expert), "{m}");
        assert_eq!(
            g.arch_u64("expert_used_count"),
            Some(e.n_expert_used),
            "{m}"
        );
        assert_eq!(
            g.arch_u64("expert_feed_forward_length"),
            Some(e.n_ff_exp),
            "{m}"
        );
        assert_eq!(g.arch_u64("vocab_size"), Some(e.n_vocab), "{m}");
        assert_eq!(g.array_len("tokenizer.ggml.tokens"), Some(e.n_vocab), "{m}");
        assert_eq!(
            g.array_len("tokenizer.ggml.token_type"),
            Some(e.n_vocab),
            "{m}"
        );
        assert_eq!(g.get_u64("general.file_type"), Some(15), "{m}: Q4_K_M");
        assert_eq!(g.get_u64("general.quantization_version"), Some(2));

        // The table is exactly the generator's, in order, with aligned, packed offsets.
        let table = tensor_table(m);
        assert_eq!(g.tensors.len(), table.len(), "{m}");
        let mut offset = 0u64;
        for (t, (name, dims, ty)) in g.tensors.iter().zip(&table) {
            assert_eq!(&t.name, name);
            assert_eq!(&t.dims, dims, "{name}");
            assert_eq!(t.ggml_type, *ty, "{name}");
            offset = offset.div_ceil(32) * 32;
            assert_eq!(t.offset, offset, "{name}");
            offset += t.bytes;
        }

        let params: u64 = g.tensors.iter().map(|t| t.n_elements()).sum();
        let bytes: u64 = g.tensors.iter().map(|t| t.bytes).sum();
        println!(
            "{m:<16} {params:>16} params ({:.2}B, published {:.2}B)  {bytes:>16} tensor bytes ({:.2} GB, published Q4_K_M ~{:.1} GB)  {} tensors, header {len} bytes",
            params as f64 / 1e9,
            e.published / 1e9,
            bytes as f64 / 1e9,
            e.published_bytes / 1e9,
            g.tensors.len(),
        );
        assert_eq!(params, e.params, "{m}");
        assert!(
            (params as f64 / e.published - 1.0).abs() < 0.01,
            "{m}: {params} vs {}",
            e.published
        );
        assert_eq!(bytes, e.bytes, "{m}");
        assert!(
            (bytes as f64 / e.published_bytes - 1.0).abs() < 0.02,
            "{m}: {bytes} vs {}",
            e.published_bytes
        );

        // Experts: [n_embd, n_ff_exp, n_expert] (down: [n_ff_exp, n_embd, n_expert]),
        // exactly on the MoE layers.
        let mut moe_layers = Vec::new();
        for t in &g.tensors {
            let layer = layer_of(&t.name);
            if t.name.ends_with("ffn_gate_exps.weight") || t.name.ends_with("ffn_up_exps.weight") {
                assert_eq!(t.dims, [e.n_embd, e.n_ff_exp, e.n_expert], "{}", t.name);
                if t.name.contains("gate") {
                    moe_layers.push(layer.unwrap());
                }
            }
            if t.name.ends_with("ffn_down_exps.weight") {
                assert_eq!(t.dims, [e.n_ff_exp, e.n_embd, e.n_expert], "{}", t.name);
            }
            if t.name.ends_with("ffn_gate_inp.weight") {
                assert_eq!(t.dims, [e.n_embd, e.n_expert], "{}", t.name);
                assert_eq!(t.ggml_type.name(), "F32", "{}", t.name);
            }
        }
        assert_eq!(moe_layers, e.moe_layers, "{m}");
        let facts = ModelFacts::from_gguf(&g).unwrap();
        assert_eq!(facts.moe.unwrap().moe_layers, e.moe_layers, "{m}");

        // Q4_K_M's mix: output Q6_K, untied token_embd Q4_K, norms F32.
        let ty = |n: &str| {
            g.tensors
                .iter()
                .find(|t| t.name == n)
                .map(|t| t.ggml_type.name())
        };
        assert_eq!(ty("output.weight"), Some("Q6_K"));
        assert_eq!(ty("token_embd.weight"), Some("Q4_K"));
        assert_eq!(ty("output_norm.weight"), Some("F32"));
        assert_eq!(ty("blk.0.attn_v.weight"), Some("Q6_K"));
        assert_eq!(ty("blk.12.attn_v.weight"), Some("Q4_K"));
        assert_eq!(ty("blk.0.attn_q.weight"), Some("Q4_K"));
    }
}

#[test]
fn qwen3_layers_have_qk_norms_and_no_shared_expert() {
    let dir = tempfile::tempdir().unwrap();
    let g = GgufFile::open_header(&write(dir.path(), FullSizeModel::Qwen3_235bA22b)).unwrap();
    let find = |n: &str| g.tensors.iter().find(|t| t.name == n);
    assert_eq!(find("blk.93.attn_q_norm.weight").unwrap().dims, [128]);
    assert_eq!(find("blk.0.attn_q.weight").unwrap().dims, [4096, 8192]);
    assert_eq!(find("blk.0.attn_k.weight").unwrap().dims, [4096, 512]);
    assert_eq!(find("blk.0.attn_output.weight").unwrap().dims, [8192, 4096]);
    assert!(!g.tensors.iter().any(|t| t.name.contains("shexp")));
    assert!(find("output.weight").is_some(), "untied");
    assert_eq!(g.arch_u64("context_length"), Some(40_960));
    assert_eq!(g.arch_u64("feed_forward_length"), Some(12_288));
    assert_eq!(g.arch_u64("attention.head_count"), Some(64));
    assert_eq!(g.arch_u64("attention.head_count_kv"), Some(4));
}

#[test]
fn maverick_has_experts_only_on_its_moe_layers() {
    let dir = tempfile::tempdir().unwrap();
    let g = GgufFile::open_header(&write(dir.path(), FullSizeModel::Llama4Maverick)).unwrap();
    assert_eq!(g.arch_u64("interleave_moe_layer_step"), Some(2));
    assert_eq!(g.arch_u64("feed_forward_length"), Some(16_384));
    assert_eq!(g.arch_u64("context_length"), Some(1_048_576));
    let names: std::collections::HashSet<&str> =
        g.tensors.iter().map(|t| t.name.as_str()).collect();
    for il in 0..48u32 {
        let has = |t: &str| names.contains(format!("blk.{il}.{t}.weight").as_str());
        // llama.cpp: layer il is MoE when (il + 1) % interleave_moe_layer_step == 0.
        let moe = (il + 1).is_multiple_of(2);
        for t in [
            "ffn_gate_inp",
            "ffn_gate_exps",
            "ffn_up_exps",
            "ffn_down_exps",
            "ffn_gate_shexp",
            "ffn_up_shexp",
            "ffn_down_shexp",
        ] {
            assert_eq!(has(t), moe, "blk.{il}.{t}");
        }
        for t in ["ffn_gate", "ffn_up", "ffn_down"] {
            assert_eq!(has(t), !moe, "blk.{il}.{t}");
        }
        assert!(!has("attn_q_norm"), "llama4 has no q/k norm weights");
    }
    let dense = g
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_up.weight")
        .unwrap();
    assert_eq!(dense.dims, [5120, 16_384]);
    let shexp = g
        .tensors
        .iter()
        .find(|t| t.name == "blk.1.ffn_down_shexp.weight")
        .unwrap();
    assert_eq!(shexp.dims, [8192, 5120]);
    assert!(
        !names.contains("rope_freqs.weight"),
        "Maverick has no rope scaling"
    );
}

#[test]
fn scout_is_all_moe_with_rope_freqs() {
    let dir = tempfile::tempdir().unwrap();
    let g = GgufFile::open_header(&write(dir.path(), FullSizeModel::Llama4Scout)).unwrap();
    assert_eq!(g.arch_u64("interleave_moe_layer_step"), Some(1));
    assert_eq!(g.arch_u64("context_length"), Some(10_485_760));
    let rope = g
        .tensors
        .iter()
        .find(|t| t.name == "rope_freqs.weight")
        .unwrap();
    assert_eq!(rope.dims, [64]);
    assert!(g
        .tensors
        .iter()
        .all(|t| !t.name.ends_with("ffn_gate.weight")));
    assert_eq!(
        g.tensors
            .iter()
            .filter(|t| t.name.ends_with("ffn_gate_shexp.weight"))
            .count(),
        48
    );
}

#[test]
fn edge_show_and_the_cli_read_and_write_them() {
    let dir = tempfile::tempdir().unwrap();
    for m in FullSizeModel::ALL {
        let lib = write(dir.path(), m);
        let cli = dir.path().join(format!("{m}-cli.gguf"));
        let o = run_edge(&["synth", "--full-size", m.name(), cli.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            std::fs::read(&lib).unwrap(),
            std::fs::read(&cli).unwrap(),
            "{m}: deterministic"
        );

        let o = run_edge(&["show", lib.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{m}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["header_only"], true, "{m}");
        let g = GgufFile::open_header(&lib).unwrap();
        let params: u64 = g.tensors.iter().map(|t| t.n_elements()).sum();
        assert_eq!(v["facts"]["n_params"].as_u64(), Some(params), "{m}");
        assert_eq!(
            v["facts"]["n_tensors"].as_u64(),
            Some(g.tensors.len() as u64)
        );
        let o = run_edge(&["show", lib.to_str().unwrap(), "--tensors"]);
        assert!(o.status.success(), "{m}: {}", stderr(&o));
        assert!(stdout(&o).contains("header only"), "{m}");
    }
    let o = run_edge(&["synth", "--full-size", "qwen3-8b", "x.gguf"]);
    assert_clean_failure(&o, "unknown full-size model");
    let o = run_edge(&["synth", "--full-size", "qwen3-30b-a3b"]);
    assert_clean_failure(&o, "usage");
}
