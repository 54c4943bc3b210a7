//! What the planner needs to know about a model, read from a GGUF header alone:
//! attention shape (for the KV cache), sliding-window layers, experts, and every
//! tensor with its role, layer, bytes and read density.

use serde::Serialize;

use super::classify::{decode_density, expert_counts, layer_of, role_of, TensorRole};
use crate::gguf_info::{ggml_types, GgmlType, GgufFile};
use crate::profile::OverheadCounts;

/// One weight tensor as the planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanTensor {
    pub name: String,
    pub bytes: u64,
    /// Elements (for FLOP counts).
    pub n_elements: u64,
    pub role: TensorRole,
    pub layer: Option<u32>,
    /// Fraction of the bytes read per decoded token.
    pub density: f64,
    pub ggml_type: String,
}

/// The model facts planning depends on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelShape {
    pub architecture: String,
    pub n_layer: u32,
    pub n_embd: u64,
    pub n_head: u64,
    /// KV heads per layer (GQA); llama.cpp allows a per-layer array.
    pub n_head_kv: Vec<u64>,
    pub head_dim_k: u64,
    pub head_dim_v: u64,
    pub n_vocab: u64,
    pub n_ctx_train: u64,
    /// Width of the dense FFN layers (0 when every layer is MoE).
    pub n_ff_dense: u64,
    /// Width of one routed expert (0 for dense models).
    pub n_ff_exp: u64,
    /// Width of the shared expert (0 when there is none).
    pub n_ff_shexp: u64,
    /// (active, total) routed experts.
    pub experts: Option<(u64, u64)>,
    /// Sliding-window (or chunked) attention: window and which layers use it.
    pub swa_window: Option<u64>,
    pub swa_layers: Vec<bool>,
    /// The output head is token_embd itself (tied); llama.cpp then duplicates it for
    /// a GPU output layer.
    pub tied_output: bool,
    /// YaRN context extension the model declares (`{arch}.rope.scaling.type = yarn`):
    /// (factor, original context). llama.cpp then runs it up to factor x original.
    pub yarn: Option<(f64, u64)>,
    pub tensors: Vec<PlanTensor>,
    /// Size of the GGUF file(s) on disk, for the SSD tier.
    pub file_bytes: u64,
}

/// A GGUF whose metadata cannot describe a model to plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("no general.architecture in the GGUF")]
    NoArchitecture,
    #[error("missing {0} in the GGUF metadata")]
    Missing(String),
    #[error("block_count, embedding_length and head_count must be positive")]
    ZeroSize,
    #[error("block_count is {0}: llama.cpp takes at most 512 layers")]
    TooManyLayers(u64),
    #[error("{key} has {entries} entries for {n_layer} layers")]
    HeadCounts {
        key: String,
        entries: usize,
        n_layer: u32,
    },
}

impl ModelShape {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, ShapeError> {
        let arch = gguf
            .architecture()
            .ok_or(ShapeError::NoArchitecture)?
            .to_string();
        let need = |suffix: &str| {
            gguf.arch_u64(suffix)
                .ok_or_else(|| ShapeError::Missing(format!("{arch}.{suffix}")))
        };
        let n_layer = need("block_count")?;
        if n_layer > crate::gguf_info::MAX_LAYERS {
            return Err(ShapeError::TooManyLayers(n_layer));
        }
        let n_layer = n_layer as u32;
        let n_embd = need("embedding_length")?;
        let n_head = need("attention.head_count")?;
        if n_layer == 0 || n_embd == 0 || n_head == 0 {
            return Err(ShapeError::ZeroSize);
        }
        let key_kv = format!("{arch}.attention.head_count_kv");
        let n_head_kv: Vec<u64> = match gguf.get(&key_kv) {
            Some(crate::gguf_info::MetaValue::Array {
                values: Some(items),
                ..
            }) => items.iter().filter_map(|v| v.as_u64()).collect(),
            Some(v) => vec![v.as_u64().unwrap_or(n_head); n_layer as usize],
            None => vec![n_head; n_layer as usize],
        };
        if n_head_kv.len() != n_layer as usize {
            return Err(ShapeError::HeadCounts {
                key: key_kv,
                entries: n_head_kv.len(),
                n_layer,
            });
        }
        let head_dim_k = gguf
            .arch_u64("attention.key_length")
            .unwrap_or(n_embd / n_head);
        let head_dim_v = gguf
            .arch_u64("attention.value_length")
            .unwrap_or(n_embd / n_head);
        let n_vocab = gguf
            .arch_u64("vocab_size")
            .or_else(|| gguf.array_len("tokenizer.ggml.tokens"))
            .unwrap_or(0);
        let n_ctx_train = gguf.arch_u64("context_length").unwrap_or(4096);
        let experts = expert_counts(gguf);

        let mut tensors = Vec::with_capacity(gguf.tensors.len());
        for t in &gguf.tensors {
            let role = role_of(&t.name);
            tensors.push(PlanTensor {
                name: t.name.clone(),
                bytes: t.bytes,
                n_elements: t.n_elements(),
                role,
                layer: layer_of(&t.name),
                density: decode_density(t, role, experts),
                ggml_type: t.ggml_type.name().to_string(),
            });
        }
        let tied_output = !tensors.iter().any(|t| t.name == "output.weight");

        // FFN widths from the tensors themselves ([n_embd, n_ff] up projections), which
        // also tells whether any layer is dense.
        let width = |suffix: &str| {
            gguf.tensors
                .iter()
                .filter(|t| t.name.ends_with(suffix))
                .filter_map(|t| t.dims.get(1).copied())
                .max()
                .unwrap_or(0)
        };
        let n_ff_dense = width(".ffn_up.weight");
        let n_ff_exp = if experts.is_some() {
            width(".ffn_up_exps.weight").max(width(".ffn_gate_up_exps.weight") / 2)
        } else {
            0
        };
        let n_ff_shexp = width(".ffn_up_shexp.weight");

        let (swa_window, swa_layers) = sliding_window(gguf, &arch, n_layer);
        let yarn = match gguf.get_str(&format!("{arch}.rope.scaling.type")) {
            Some("yarn") => {
                let factor = gguf
                    .get(&format!("{arch}.rope.scaling.factor"))
                    .and_then(|v| v.as_f64())
                    .filter(|f| f.is_finite() && *f >= 1.0);
                let original = gguf.arch_u64("rope.scaling.original_context_length");
                factor.map(|f| (f, original.unwrap_or(n_ctx_train)))
            }
            _ => None,
        };
        Ok(ModelShape {
            architecture: arch,
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_vocab,
            n_ctx_train,
            n_ff_dense,
            n_ff_exp,
            n_ff_shexp,
            experts,
            swa_window,
            swa_layers,
            tied_output,
            yarn,
            tensors,
            file_bytes: gguf.file_size.max(gguf.data_offset + total_bytes(gguf)),
        })
    }

    /// The longest context the model itself supports: its training context, or what its
    /// YaRN scaling extends the original context to (Qwen 3: 4 x 32,768 = 131,072).
    pub fn context_limit(&self) -> u64 {
        let yarn = self.yarn.map_or(0, |(factor, original)| {
            (factor * original as f64).min(u64::MAX as f64 / 2.0) as u64
        });
        self.n_ctx_train.max(yarn)
    }

    pub fn weight_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes).sum()
    }

    pub fn is_moe(&self) -> bool {
        self.experts.is_some()
            && self
                .tensors
                .iter()
                .any(|t| t.role == TensorRole::RoutedExpert)
    }

    /// Whether layer `il` has a router (an MoE FFN).
    pub fn is_moe_layer(&self, il: u32) -> bool {
        self.tensors
            .iter()
            .any(|t| t.role == TensorRole::Router && t.layer == Some(il))
    }

    /// Nodes of llama.cpp's decode graph outside the layers (inputs, final norm, output
    /// head, as counted in its `sched_reserve: graph: nodes = N` log line).
    pub fn graph_nodes_base(&self) -> u64 {
        GRAPH_NODES_BASE
    }

    /// Nodes of llama.cpp's decode graph (one token, flash attention on) for layer `il`.
    /// On the CPU every node is a kernel plus a thread-pool barrier, which is what the
    /// per-token overhead of small models is made of. Exact for the llama, qwen3,
    /// qwen3moe and llama4 graph builders (`tests/plan_memory.rs` checks it against
    /// llama.cpp); other architectures get the typical count.
    pub fn graph_nodes_layer(&self, il: u32) -> u64 {
        // build_moe_ffn sums the k expert outputs with k views and k-1 adds (one view and
        // a cont when k is 1).
        let k = self.experts.map_or(1, |(k, _)| k.max(1));
        let expert_sum = if k == 1 { 2 } else { 2 * k - 1 };
        let moe = self.is_moe_layer(il);
        // llama4's global-attention layers (every 4th) skip RoPE: three nodes fewer.
        let nope = self.architecture == "llama4"
            && self.swa_window.is_some()
            && !self.swa_layers.get(il as usize).copied().unwrap_or(true);
        let nodes = match (self.architecture.as_str(), moe) {
            ("llama", false) => 31,
            ("qwen3", false) => 35,
            ("qwen3moe", true) => 48 + expert_sum,
            ("llama4", false) => 33,
            ("llama4", true) => 47 + expert_sum,
            (_, false) => TYPICAL_DENSE_LAYER_NODES,
            (_, true) => 48 + expert_sum,
        };
        if nope {
            nodes - 3
        } else {
            nodes
        }
    }

    /// llama.cpp builds this model's decode graph anew for every token instead of reusing
    /// it: an input without a reuse check (llama4's attention temperature,
    /// `llm_graph_input_attn_temp`) disables graph reuse, so graph building, splitting and
    /// allocation run per token.
    pub fn graph_rebuilt_per_token(&self) -> bool {
        self.architecture == "llama4"
    }

    /// Routed-expert matrices one token reads in layer `il`: k for each of its expert
    /// tensors (gate, up, down, or a fused gate_up).
    pub fn expert_slices_layer(&self, il: u32) -> u64 {
        let k = self.experts.map_or(0, |(k, _)| k);
        k * self
            .tensors
            .iter()
            .filter(|t| t.role == TensorRole::RoutedExpert && t.layer == Some(il))
            .count() as u64
    }

    /// The graph's nodes when llama.cpp rebuilds it every token, else 0: what
    /// `efficiency.graph_build_node_ms` is charged on.
    pub fn rebuilt_graph_nodes(&self) -> u64 {
        if self.graph_rebuilt_per_token() {
            self.graph_nodes()
        } else {
            0
        }
    }

    /// What the per-token overheads are counted in when every layer runs on the CPU.
    pub fn cpu_overhead_counts(&self) -> OverheadCounts {
        OverheadCounts {
            layers: u64::from(self.n_layer),
            nodes: self.graph_nodes(),
            rebuilt_nodes: self.rebuilt_graph_nodes(),
            expert_slices: (0..self.n_layer)
                .map(|il| self.expert_slices_layer(il))
                .sum(),
        }
    }

    /// All nodes of the decode graph.
    pub fn graph_nodes(&self) -> u64 {
        self.graph_nodes_base()
            + (0..self.n_layer)
                .map(|il| self.graph_nodes_layer(il))
                .sum::<u64>()
    }

    /// Bytes of the token embedding (the output head when tied).
    pub fn token_embd_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|t| t.role == TensorRole::TokenEmbd)
            .map(|t| t.bytes)
            .sum()
    }
}

/// See [`ModelShape::graph_nodes_base`].
pub const GRAPH_NODES_BASE: u64 = 9;
/// Nodes of a dense layer of an architecture edge has no exact count for.
pub const TYPICAL_DENSE_LAYER_NODES: u64 = 33;

fn total_bytes(gguf: &GgufFile) -> u64 {
    gguf.tensors.iter().map(|t| t.bytes).sum()
}

/// Which layers use sliding-window / chunked attention, as llama.cpp decides it.
fn sliding_window(gguf: &GgufFile, arch: &str, n_layer: u32) -> (Option<u64>, Vec<bool>) {
    let none = (None, vec![false; n_layer as usize]);
    let window = gguf.arch_u64("attention.sliding_window");
    let pattern_key = format!("{arch}.attention.sliding_window_pattern");
    let pattern = |default: u64| -> Vec<bool> {
        match gguf.get(&pattern_key) {
            Some(crate::gguf_info::MetaValue::Array {
                values: Some(items),
                ..
            }) => items.iter().map(|v| v.as_bool().unwrap_or(false)).collect(),
            other => {
                let n = other.and_then(|v| v.as_u64()).unwrap_or(default);
                (0..n_layer as u64)
                    .map(|il| n == 0 || il % n < n - 1)
                    .collect()
            }
        }
    };
    match arch {
        // llama.cpp: chunked attention of 8192 on 3 of every 4 layers, unless the GGUF
        // says sliding_window = 0 (src/models/llama4.cpp).
        "llama4" => {
            if window == Some(0) {
                none
            } else {
                (Some(8192), pattern(4))
            }
        }
        _ => match window {
            Some(w) if w > 0 && gguf.get(&pattern_key).is_some() => (Some(w), pattern(1)),
            _ => none,
        },
    }
}

/// Bytes of one KV row of `n` elements in `ty` (block-quantized types pack 32 per block).
pub fn kv_row_bytes(ty: KvType, n: u64) -> u64 {
    ty.ggml().bytes_for(&[n]).unwrap_or(n * 2)
}

/// KV cache element type (llama.cpp `type_k` / `type_v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum KvType {
    F16,
    Q8_0,
    Q4_0,
}

impl KvType {
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }

    pub fn ggml(self) -> GgmlType {
        match self {
            KvType::F16 => ggml_types::F16,
            KvType::Q8_0 => ggml_types::Q8_0,
            KvType::Q4_0 => ggml_types::Q4_0,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Some(KvType::F16),
            "q8_0" => Some(KvType::Q8_0),
            "q4_0" => Some(KvType::Q4_0),
            _ => None,
        }
    }
}
