//! The plan's types, in one place: what the user asks for ([`PlanRequest`], [`Pins`]),
//! and what the planner answers ([`Plan`]: each tensor's tier, the KV cache, the compute
//! buffers, the predicted speed and the llama.cpp parameters that realise it). The
//! placement (`place`) fills these in and the cost model (`cost`) prices them.

use regex::Regex;
use serde::Serialize;

use super::classify::TensorRole;
use super::model::{KvType, PlanTensor};

/// Where a tensor (or buffer) lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Vram,
    Ram,
    Ssd,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Vram => "vram",
            Tier::Ram => "ram",
            Tier::Ssd => "ssd",
        }
    }
}

/// Largest page-cache miss rate (share of CPU expert reads that fault to the SSD) the
/// planner accepts before refusing instead (research §8 step 3g: ≲ 2-5 %).
pub const MAX_SSD_MISS_RATE: f64 = 0.05;

/// Default context when the request leaves it open, capped at the training context.
pub const DEFAULT_CTX: u64 = 8192;

/// Smallest context the planner shrinks an automatic context to before refusing.
pub const MIN_AUTO_CTX: u64 = 2048;

pub const DEFAULT_UBATCH: u64 = 512;

/// A user constraint: tensors matching `pattern` stay on the CPU (`-ot REGEX=CPU`).
#[derive(Debug, Clone)]
pub struct CpuPin {
    pub pattern: String,
    regex: Regex,
}

impl CpuPin {
    pub(super) fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }

    pub fn new(pattern: &str) -> Result<Self, BadPattern> {
        let regex = Regex::new(pattern).map_err(|e| BadPattern {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })?;
        Ok(CpuPin {
            pattern: pattern.to_string(),
            regex,
        })
    }
}

/// A `--override-tensor`-style pattern that is not a regex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad tensor pattern '{pattern}': {reason}")]
pub struct BadPattern {
    pub pattern: String,
    pub reason: String,
}

/// User pins the plan must honour.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    /// `--cpu-moe`: every routed expert on the CPU.
    pub cpu_moe: bool,
    /// `--n-cpu-moe N`: routed experts of the first N layers on the CPU.
    pub n_cpu_moe: Option<u32>,
    /// `--override-tensor REGEX=CPU`.
    pub cpu: Vec<CpuPin>,
}

impl Pins {
    pub(super) fn forces_cpu(&self, t: &PlanTensor) -> bool {
        if t.role == TensorRole::RoutedExpert {
            if self.cpu_moe {
                return true;
            }
            if let (Some(n), Some(il)) = (self.n_cpu_moe, t.layer) {
                if il < n {
                    return true;
                }
            }
        }
        self.cpu.iter().any(|p| p.regex.is_match(&t.name))
    }

    pub fn is_empty(&self) -> bool {
        !self.cpu_moe && self.n_cpu_moe.is_none() && self.cpu.is_empty()
    }
}

/// What the user asks for; `None` leaves the choice to the planner.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub ctx: Option<u64>,
    /// VRAM the plan may use, as is (no driver reserve taken off).
    pub vram: Option<u64>,
    /// RAM the plan may use, as is.
    pub ram: Option<u64>,
    pub kv_type: Option<KvType>,
    pub flash_attn: Option<bool>,
    pub n_ubatch: Option<u64>,
    /// Sequences decoded at once (batch jobs, server slots), each with `ctx` cells of
    /// its own KV cache; `None` is one.
    pub parallel: Option<u64>,
    pub pins: Pins,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TierUse {
    pub used: u64,
    pub capacity: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tiers {
    pub vram: TierUse,
    pub ram: TierUse,
    pub ssd: TierUse,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedTensor {
    pub name: String,
    pub bytes: u64,
    pub tier: Tier,
    #[serde(skip)]
    pub role: TensorRole,
    #[serde(skip)]
    pub layer: Option<u32>,
    #[serde(skip)]
    pub density: f64,
    #[serde(skip)]
    pub n_elements: u64,
    #[serde(skip)]
    pub pinned: bool,
    #[serde(skip)]
    pub ggml_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvPlacement {
    #[serde(rename = "type")]
    pub kv_type: KvType,
    pub bytes: u64,
    pub vram_bytes: u64,
    pub ram_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ComputeBuffers {
    pub vram_bytes: u64,
    pub ram_bytes: u64,
}

/// The llama.cpp parameters that realise the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaParams {
    pub n_gpu_layers: u32,
    pub tensor_overrides: Vec<String>,
    pub type_k: KvType,
    pub type_v: KvType,
    pub flash_attn: bool,
    /// Context cells in all (per sequence times sequences).
    pub n_ctx: u64,
    pub n_ubatch: u64,
    pub use_mmap: bool,
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub fits: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Suggestion>,
    /// Context per sequence.
    pub ctx: u64,
    /// Sequences, each with `ctx` cells of KV cache.
    #[serde(skip_serializing_if = "is_one")]
    pub parallel: u64,
    pub kv_type: KvType,
    pub flash_attn: bool,
    pub n_ubatch: u64,
    pub unified_memory: bool,
    pub tiers: Tiers,
    pub kv: KvPlacement,
    pub compute: ComputeBuffers,
    pub tensors: Vec<PlacedTensor>,
    /// Layers whose routed experts are all in VRAM / split / all in RAM or on SSD.
    pub expert_layers: ExpertLayers,
    /// Page-cache miss rate of CPU expert reads (SSD tier).
    pub ssd_miss_rate: f64,
    pub predicted: Prediction,
    pub llama: LlamaParams,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ExpertLayers {
    pub vram: u32,
    pub partial: u32,
    pub cpu: u32,
}
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostTerm {
    pub name: String,
    pub ms: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Prediction {
    pub decode_tok_s: f64,
    pub prefill_tok_s: f64,
    /// Nodes of llama.cpp's decode graph ([`ModelShape::graph_nodes`]).
    pub graph_nodes: u64,
    pub decode_terms: Vec<CostTerm>,
    pub prefill_terms: Vec<CostTerm>,
}

/// A change that would make a refused plan fit. Plain facts, no command-line flags:
/// the commands word them as the flags their users type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Suggestion {
    /// A smaller quant of about `bits_per_weight` (`quant` names llama.cpp types).
    SmallerQuant {
        bits_per_weight: f64,
        quant: String,
        budget_bytes: u64,
    },
    /// Not even a 2-bit quant fits.
    FarTooLarge {
        weight_bytes: u64,
        budget_bytes: u64,
    },
    /// A shorter context per sequence.
    ShorterContext {
        ctx: u64,
        current_ctx: u64,
        kv_bytes: u64,
    },
    /// A quantized KV cache instead of the F16 one asked for.
    QuantizedKv,
    /// Fewer sequences at once.
    FewerSequences { parallel: u64, current: u64 },
    /// Fewer user pins of tensors to the CPU.
    FewerPins,
    /// A shipped device profile on which the same request fits.
    LargerDevice { profile: String },
}

/// Plain words, without command-line flags (the commands name those).
impl std::fmt::Display for Suggestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::term::human_bytes;
        match self {
            Suggestion::SmallerQuant {
                bits_per_weight,
                quant,
                budget_bytes,
            } => write!(
                f,
                "a smaller quant of about {bits_per_weight:.1} bits per weight ({quant}) fits in {}",
                human_bytes(*budget_bytes)
            ),
            Suggestion::FarTooLarge {
                weight_bytes,
                budget_bytes,
            } => write!(
                f,
                "the weights ({}) are far larger than this device's memory ({}); even a 2-bit quant will not fit",
                human_bytes(*weight_bytes),
                human_bytes(*budget_bytes)
            ),
            Suggestion::ShorterContext {
                ctx,
                current_ctx,
                kv_bytes,
            } => write!(
                f,
                "a shorter context of {ctx} tokens (the KV cache at {current_ctx} is {})",
                human_bytes(*kv_bytes)
            ),
            Suggestion::QuantizedKv => write!(f, "a q8_0 KV cache"),
            Suggestion::FewerSequences { parallel, current } => {
                write!(f, "{parallel} sequences at once instead of {current}")
            }
            Suggestion::FewerPins => write!(f, "fewer tensors pinned to the CPU"),
            Suggestion::LargerDevice { profile } => {
                write!(f, "a device with more memory, e.g. the profile {profile}")
            }
        }
    }
}
