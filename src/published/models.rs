//! The tensor tables of the models that published llama-bench rows ran, rebuilt from
//! their published configs so the planner can price them without the files.
//!
//! A row names its model as llama-bench prints it ("llama 7B Q4_0", "qwen3moe 30B.A3B
//! Q4_K - Medium") or as a source names it ("Llama 3.1 8B IT"); [`ReferenceModel::find`]
//! maps both to one of the configs below. The tensor types follow llama-quantize for the
//! file types rows use (F16, BF16, Q8_0, Q4_0, Q4_K_M); the caller checks the table's size
//! against the size the row printed, which catches a wrong config.

use crate::gguf_info::ggml_types::{BF16, F16, F32, Q4_0, Q6_K, Q8_0};
use crate::gguf_info::{GgmlType, GgufFile, MetaValue, TensorInfo};
use crate::synth::fullsize::{q4_k_m_type, QuantModel};

/// A published model's shape (its Hugging Face `config.json`, as llama.cpp's converter
/// maps it).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceModel {
    /// What rows call it, lower case; the first is llama-bench's name.
    pub names: &'static [&'static str],
    pub arch: &'static str,
    pub n_layer: u32,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub head_dim: u64,
    pub n_vocab: u64,
    pub tied: bool,
    /// Routed experts: (total, used per token, width of one expert).
    pub experts: Option<(u64, u64, u64)>,
    /// Q/K/V biases (Qwen 2).
    pub qkv_bias: bool,
}

const fn dense(
    names: &'static [&'static str],
    arch: &'static str,
    n_layer: u32,
    n_embd: u64,
    n_ff: u64,
    heads: (u64, u64, u64),
    (n_vocab, tied): (u64, bool),
) -> ReferenceModel {
    ReferenceModel {
        names,
        arch,
        n_layer,
        n_embd,
        n_ff,
        n_head: heads.0,
        n_head_kv: heads.1,
        head_dim: heads.2,
        n_vocab,
        tied,
        experts: None,
        qkv_bias: false,
    }
}

/// The models published rows use.
pub const REFERENCE_MODELS: &[ReferenceModel] = &[
    // Llama 2 7B (meta-llama/Llama-2-7b-hf).
    dense(
        &["llama 7b", "llama 2 7b"],
        "llama",
        32,
        4096,
        11008,
        (32, 32, 128),
        (32000, false),
    ),
    // Llama 2 13B.
    dense(
        &["llama 13b", "llama 2 13b"],
        "llama",
        40,
        5120,
        13824,
        (40, 40, 128),
        (32000, false),
    ),
    // Llama 3 / 3.1 8B.
    dense(
        &["llama 8b", "llama 3.1 8b", "llama 3.1 8b it", "llama 3 8b"],
        "llama",
        32,
        4096,
        14336,
        (32, 8, 128),
        (128256, false),
    ),
    // Llama 3.x 70B.
    dense(
        &["llama 70b", "llama 3.3 70b", "llama 3.1 70b"],
        "llama",
        80,
        8192,
        28672,
        (64, 8, 128),
        (128256, false),
    ),
    // Llama 3.2 1B and 3B (tied embeddings).
    dense(
        &["llama 1b", "llama 3.2 1b", "llama 3.2 1b it"],
        "llama",
        16,
        2048,
        8192,
        (32, 8, 64),
        (128256, true),
    ),
    dense(
        &["llama 3b", "llama 3.2 3b", "llama 3.2 3b it"],
        "llama",
        28,
        3072,
        8192,
        (24, 8, 128),
        (128256, true),
    ),
    // TinyLlama 1.1B.
    dense(
        &["tinyllama 1.1b chat", "llama 1.1b", "tinyllama 1.1b"],
        "llama",
        22,
        2048,
        5632,
        (32, 4, 64),
        (32000, false),
    ),
    // Qwen 3 dense.
    dense(
        &["qwen3 0.6b"],
        "qwen3",
        28,
        1024,
        3072,
        (16, 8, 128),
        (151936, true),
    ),
    dense(
        &["qwen3 1.7b"],
        "qwen3",
        28,
        2048,
        6144,
        (16, 8, 128),
        (151936, true),
    ),
    dense(
        &["qwen3 4b"],
        "qwen3",
        36,
        2560,
        9728,
        (32, 8, 128),
        (151936, true),
    ),
    dense(
        &["qwen3 8b"],
        "qwen3",
        36,
        4096,
        12288,
        (32, 8, 128),
        (151936, false),
    ),
    dense(
        &["qwen3 14b"],
        "qwen3",
        40,
        5120,
        17408,
        (40, 8, 128),
        (151936, false),
    ),
    dense(
        &["qwen3 32b"],
        "qwen3",
        64,
        5120,
        25600,
        (64, 8, 128),
        (151936, false),
    ),
    // Qwen 2.5 7B/14B/32B (also the DeepSeek-R1-Distill-Qwen models).
    ReferenceModel {
        qkv_bias: true,
        ..dense(
            &["qwen2 7b"],
            "qwen2",
            28,
            3584,
            18944,
            (28, 4, 128),
            (152064, false),
        )
    },
    ReferenceModel {
        qkv_bias: true,
        ..dense(
            &["qwen2 14b"],
            "qwen2",
            48,
            5120,
            13824,
            (40, 8, 128),
            (152064, false),
        )
    },
    ReferenceModel {
        qkv_bias: true,
        ..dense(
            &["qwen2 32b"],
            "qwen2",
            64,
            5120,
            27648,
            (40, 8, 128),
            (152064, false),
        )
    },
    // Qwen3-30B-A3B.
    ReferenceModel {
        experts: Some((128, 8, 768)),
        ..dense(
            &["qwen3moe 30b.a3b", "qwen3-30b-a3b"],
            "qwen3moe",
            48,
            2048,
            6144,
            (32, 4, 128),
            (151936, false),
        )
    },
];

impl ReferenceModel {
    /// The model a row's model column names: llama-bench's "ARCH SIZE TYPE..." or a
    /// source's own name. The longest matching name wins.
    pub fn find(model_column: &str) -> Option<&'static ReferenceModel> {
        let text = model_column.to_ascii_lowercase();
        REFERENCE_MODELS
            .iter()
            .flat_map(|m| m.names.iter().map(move |n| (m, *n)))
            .filter(|(_, n)| {
                text == *n
                    || text
                        .strip_prefix(n)
                        .is_some_and(|rest| rest.starts_with(' '))
            })
            .max_by_key(|(_, n)| n.len())
            .map(|(m, _)| m)
    }

    /// The tensor table and metadata of this model quantized to `file_type` (F16, BF16,
    /// Q8_0, Q4_0 or Q4_K_M), as a header the planner reads like a file's.
    pub fn gguf(&self, file_type: &str) -> Option<GgufFile> {
        let file_type = file_type.to_ascii_uppercase();
        if !["F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M"].contains(&file_type.as_str()) {
            return None;
        }
        let qm = QuantModel {
            n_layer: self.n_layer,
            n_expert: self.experts.map_or(0, |(n, _, _)| n as u32),
            tied_embeddings: self.tied,
        };
        let mut tensors = Vec::new();
        let mut push = |name: String, dims: Vec<u64>, layer: Option<u32>| {
            let ty = weight_type(&file_type, &name, &dims, layer, &qm);
            let bytes = ty.bytes_for(&dims).unwrap_or(0);
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type: ty,
                offset: 0,
                bytes,
            });
        };
        let (e, d) = (self.n_embd, self.head_dim);
        let (q, kv) = (self.n_head * d, self.n_head_kv * d);
        push("token_embd.weight".into(), vec![e, self.n_vocab], None);
        for il in 0..self.n_layer {
            let b = |t: &str| format!("blk.{il}.{t}");
            let l = Some(il);
            push(b("attn_norm.weight"), vec![e], l);
            push(b("attn_q.weight"), vec![e, q], l);
            push(b("attn_k.weight"), vec![e, kv], l);
            push(b("attn_v.weight"), vec![e, kv], l);
            if self.qkv_bias {
                push(b("attn_q.bias"), vec![q], l);
                push(b("attn_k.bias"), vec![kv], l);
                push(b("attn_v.bias"), vec![kv], l);
            }
            push(b("attn_output.weight"), vec![q, e], l);
            if self.arch.starts_with("qwen3") {
                push(b("attn_q_norm.weight"), vec![d], l);
                push(b("attn_k_norm.weight"), vec![d], l);
            }
            push(b("ffn_norm.weight"), vec![e], l);
            match self.experts {
                Some((n, _, ff)) => {
                    push(b("ffn_gate_inp.weight"), vec![e, n], l);
                    push(b("ffn_gate_exps.weight"), vec![e, ff, n], l);
                    push(b("ffn_up_exps.weight"), vec![e, ff, n], l);
                    push(b("ffn_down_exps.weight"), vec![ff, e, n], l);
                }
                None => {
                    push(b("ffn_gate.weight"), vec![e, self.n_ff], l);
                    push(b("ffn_up.weight"), vec![e, self.n_ff], l);
                    push(b("ffn_down.weight"), vec![self.n_ff, e], l);
                }
            }
        }
        push("output_norm.weight".into(), vec![e], None);
        if !self.tied {
            push("output.weight".into(), vec![e, self.n_vocab], None);
        }
        if tensors.iter().any(|t| t.bytes == 0) {
            return None;
        }
        let mut offset = 0;
        for t in &mut tensors {
            t.offset = offset;
            offset += t.bytes.div_ceil(32) * 32;
        }
        let arch = self.arch;
        let k = |s: &str| format!("{arch}.{s}");
        let u = |v: u64| MetaValue::U64(v);
        let mut metadata = vec![
            (
                "general.architecture".to_string(),
                MetaValue::Str(arch.into()),
            ),
            (k("block_count"), u(self.n_layer.into())),
            (k("embedding_length"), u(e)),
            (k("feed_forward_length"), u(self.n_ff)),
            (k("attention.head_count"), u(self.n_head)),
            (k("attention.head_count_kv"), u(self.n_head_kv)),
            (k("attention.key_length"), u(d)),
            (k("attention.value_length"), u(d)),
            (k("context_length"), u(32768)),
            (k("vocab_size"), u(self.n_vocab)),
        ];
        if let Some((n, used, ff)) = self.experts {
            metadata.push((k("expert_count"), u(n)));
            metadata.push((k("expert_used_count"), u(used)));
            metadata.push((k("expert_feed_forward_length"), u(ff)));
        }
        Some(GgufFile {
            version: 3,
            alignment: 32,
            metadata,
            tensors,
            data_offset: 0,
            file_size: offset,
        })
    }
}

/// llama-quantize's (or the converter's) type for one tensor of a `file_type` file.
fn weight_type(
    file_type: &str,
    name: &str,
    dims: &[u64],
    layer: Option<u32>,
    qm: &QuantModel,
) -> GgmlType {
    let kept_f32 = dims.len() < 2
        || !name.ends_with(".weight")
        || name.contains("_norm.weight")
        || name.contains("ffn_gate_inp.weight");
    if kept_f32 {
        return F32;
    }
    match file_type {
        "F16" => F16,
        "BF16" => BF16,
        "Q8_0" => Q8_0,
        // A pure Q4_0 file keeps a Q6_K output head (llama_tensor_get_type).
        "Q4_0"
            if name == "output.weight" || (qm.tied_embeddings && name == "token_embd.weight") =>
        {
            Q6_K
        }
        "Q4_0" => Q4_0,
        _ => q4_k_m_type(name, dims, layer, qm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gib(g: &GgufFile) -> f64 {
        g.tensors.iter().map(|t| t.bytes).sum::<u64>() as f64 / (1u64 << 30) as f64
    }

    #[test]
    fn names_resolve_to_the_longest_match() {
        assert_eq!(ReferenceModel::find("llama 7B Q4_0").unwrap().n_embd, 4096);
        assert_eq!(ReferenceModel::find("Llama 3.2 1B IT").unwrap().n_layer, 16);
        assert_eq!(
            ReferenceModel::find("llama 8B Q4_K - Medium")
                .unwrap()
                .n_vocab,
            128256
        );
        assert!(ReferenceModel::find("qwen3moe 30B.A3B Q4_K - Medium")
            .unwrap()
            .experts
            .is_some());
        assert!(ReferenceModel::find("llama 7Bx").is_none());
        assert!(ReferenceModel::find("phi3 3B Q4_K - Medium").is_none());
    }

    /// The sizes llama-bench prints for these files (its `size` column, GiB).
    #[test]
    fn sizes_match_llama_bench() {
        let cases = [
            ("llama 7B", "F16", 12.55),
            ("llama 7B", "Q8_0", 6.67),
            ("llama 7B", "Q4_0", 3.56),
            ("llama 8B", "Q4_K_M", 4.58),
            ("llama 3.2 1B", "Q4_K_M", 0.75),
            ("qwen3moe 30B.A3B", "Q4_K_M", 17.28),
        ];
        for (name, ty, want) in cases {
            let g = ReferenceModel::find(name).unwrap().gguf(ty).unwrap();
            let got = gib(&g);
            assert!(
                (got / want - 1.0).abs() < 0.02,
                "{name} {ty}: {got:.2} GiB, llama-bench {want}"
            );
        }
    }
}
