//! Device profiles: what a machine has (memory tiers, bandwidths, compute) and the
//! efficiency factors the planner's cost model applies to it.
//!
//! Profiles are TOML. The shipped ones live in `profiles/*.toml` and are embedded in
//! the binary; user profiles (written by `edge profile calibrate`, or by hand) live in
//! `<config dir>/profiles/*.toml` and shadow a shipped one of the same name.
//! This module is pure: parsing, validation and lookup, no I/O except reading files.

pub mod detect;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

pub use detect::{current_profile, detect_current};

/// Shipped profiles, embedded so `edge plan --profile NAME` works from any directory.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "cpu-laptop-8gb",
        include_str!("../../profiles/cpu-laptop-8gb.toml"),
    ),
    (
        "cpu-laptop-16gb",
        include_str!("../../profiles/cpu-laptop-16gb.toml"),
    ),
    (
        "macbook-air-m2-16gb",
        include_str!("../../profiles/macbook-air-m2-16gb.toml"),
    ),
    (
        "macbook-pro-m3-max-36gb",
        include_str!("../../profiles/macbook-pro-m3-max-36gb.toml"),
    ),
    (
        "macbook-pro-m4-max-128gb",
        include_str!("../../profiles/macbook-pro-m4-max-128gb.toml"),
    ),
    (
        "mac-studio-m3-ultra-512gb",
        include_str!("../../profiles/mac-studio-m3-ultra-512gb.toml"),
    ),
    (
        "rtx3060-laptop-6gb",
        include_str!("../../profiles/rtx3060-laptop-6gb.toml"),
    ),
    (
        "rtx4060-8gb",
        include_str!("../../profiles/rtx4060-8gb.toml"),
    ),
    (
        "rtx4090-24gb",
        include_str!("../../profiles/rtx4090-24gb.toml"),
    ),
    (
        "rtx5090-32gb",
        include_str!("../../profiles/rtx5090-32gb.toml"),
    ),
    (
        "jetson-orin-nano-8gb",
        include_str!("../../profiles/jetson-orin-nano-8gb.toml"),
    ),
    (
        "jetson-orin-nano-super-8gb",
        include_str!("../../profiles/jetson-orin-nano-super-8gb.toml"),
    ),
    (
        "jetson-agx-orin-64gb",
        include_str!("../../profiles/jetson-agx-orin-64gb.toml"),
    ),
    (
        "raspberry-pi5-8gb",
        include_str!("../../profiles/raspberry-pi5-8gb.toml"),
    ),
    ("h100-80gb", include_str!("../../profiles/h100-80gb.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile '{name}': {message}")]
    Invalid { name: String, message: String },
    #[error("unknown profile '{0}' (see `edge profile list`)")]
    Unknown(String),
    #[error("cannot read profile {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a profile came from, shown by `edge profile list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileOrigin {
    Builtin,
    User,
    Detected,
}

/// A device as the planner sees it. Byte fields accept integers or strings such as
/// `"8 GiB"`; bandwidths are decimal GB/s (1e9 bytes per second), as spec sheets give them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    pub name: String,
    pub description: String,
    /// llama.cpp backend that drives the GPUs: "cpu", "cuda", "metal", "vulkan", "rpc".
    pub backend: String,
    pub memory: MemoryTiers,
    #[serde(default, rename = "gpu")]
    pub gpus: Vec<GpuSpec>,
    pub cpu: CpuSpec,
    pub ssd: SsdSpec,
    pub efficiency: Efficiency,
    #[serde(skip, default = "default_origin")]
    pub origin: ProfileOrigin,
}

fn default_origin() -> ProfileOrigin {
    ProfileOrigin::Builtin
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryTiers {
    /// Installed system RAM.
    #[serde(deserialize_with = "de_bytes")]
    pub ram_bytes: u64,
    /// RAM kept free for the OS, desktop and other apps.
    #[serde(deserialize_with = "de_bytes")]
    pub os_reserve_bytes: u64,
    /// CPU and GPU share one pool (Apple Silicon, Jetson): no VRAM/RAM split.
    #[serde(default)]
    pub unified: bool,
    /// On unified memory, the share of RAM the GPU may wire (Metal's
    /// recommendedMaxWorkingSetSize; 1.0 on Jetson where CUDA sees MemAvailable).
    #[serde(default = "one")]
    pub gpu_working_set_fraction: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    pub name: String,
    /// Dedicated VRAM; 0 on unified-memory devices (the pool is `memory.ram_bytes`).
    #[serde(deserialize_with = "de_bytes")]
    pub vram_bytes: u64,
    /// Peak memory bandwidth, GB/s.
    pub bandwidth_gbs: f64,
    /// Dense FP16 tensor throughput, TFLOPS (prefill compute bound).
    pub fp16_tflops: f64,
    /// Host-to-device copy bandwidth from pinned memory, GB/s (0 on unified memory).
    #[serde(default)]
    pub h2d_pinned_gbs: f64,
    /// Host-to-device copy bandwidth from pageable (mmap) memory, GB/s.
    #[serde(default)]
    pub h2d_pageable_gbs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSpec {
    pub model: String,
    /// Physical cores; llama.cpp's threads default to this.
    pub cores: u32,
    /// Instruction-set extensions that ggml uses (avx2, avx512, neon, sve, amx, ...).
    #[serde(default)]
    pub isa: Vec<String>,
    /// DRAM read bandwidth reachable with `cores` threads, GB/s.
    pub mem_bandwidth_gbs: f64,
    /// Sustained quantized matmul throughput for prefill, GFLOPS.
    pub matmul_gflops: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsdSpec {
    /// Sequential read, GB/s.
    pub seq_read_gbs: f64,
    /// Read bandwidth for expert-slice-sized (~1-4 MB) page-fault reads, GB/s.
    pub rand_read_gbs: f64,
}

/// Factors the cost model multiplies peak figures by; `edge profile calibrate` fits them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Efficiency {
    /// Achieved / peak GPU memory bandwidth in decode.
    pub gpu_bandwidth: f64,
    /// Achieved / peak CPU memory bandwidth in decode (dequantize + GEMV).
    pub cpu_bandwidth: f64,
    /// Achieved / peak compute in prefill, GPU.
    pub gpu_compute: f64,
    /// Achieved / peak compute in prefill, CPU.
    pub cpu_compute: f64,
    /// One GPU->CPU->GPU round trip per layer with CPU-resident weights, milliseconds.
    pub sync_ms: f64,
    /// Fixed per-token overhead (graph build, sampling, kernel launches), milliseconds.
    #[serde(default)]
    pub token_overhead_ms: f64,
    /// Per-layer per-token overhead on the CPU (graph nodes, thread-pool barriers), ms.
    #[serde(default)]
    pub layer_overhead_ms: f64,
    /// Per graph node per token on the CPU (one kernel plus a thread-pool barrier), ms.
    /// `edge profile calibrate` fits this instead of `layer_overhead_ms`: an MoE layer
    /// has half again the nodes of a dense one.
    #[serde(default)]
    pub node_overhead_ms: f64,
    /// Per graph node per token for models whose graph llama.cpp rebuilds every token
    /// (no graph reuse: llama4), ms, on top of `node_overhead_ms`.
    #[serde(default)]
    pub graph_build_node_ms: f64,
    /// Per routed-expert matrix a token reads on the CPU (k per expert tensor per MoE
    /// layer), ms: each is a separate small matrix-vector product, slower to start than
    /// its bytes alone explain.
    #[serde(default)]
    pub expert_slice_ms: f64,
    /// Achieved / peak CPU memory bandwidth in decode for weights of one ggml type (`F16`,
    /// `Q4_K`, ...; upper case), where it differs from `cpu_bandwidth`. On CPUs with few
    /// cores decode is bound by dequantizing, not by DRAM, so quantized weights stream
    /// slower than F16 ones; `edge profile calibrate` fits F32/F16/BF16 apart from the
    /// quantized types (`cpu_bandwidth`). Types not listed use `cpu_bandwidth`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_type_bandwidth: BTreeMap<String, f64>,
    /// Achieved / peak CPU memory bandwidth for routed-expert weights in K/IQ quants,
    /// where it differs from `cpu_bandwidth`: an MoE layer multiplies k small expert
    /// matrices (`mul_mat_id`), which stream slower than one dense matrix of the same
    /// type. Fitted by `edge profile calibrate`; unset means `cpu_bandwidth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_expert_bandwidth: Option<f64>,
    /// Achieved / peak GPU memory bandwidth in decode for F32/F16/BF16 weights (and the
    /// KV cache), where it differs from `gpu_bandwidth` (the K/IQ quants'): GPUs stream
    /// plain floats closer to peak than they dequantize blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_float_bandwidth: Option<f64>,
    /// The same for the legacy block quants (Q4_0..Q8_0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_legacy_bandwidth: Option<f64>,
    /// Per graph node per token or ubatch on the GPU (kernel launch, synchronisation), ms:
    /// the fixed cost that makes small models on a fast GPU slower than their bytes say.
    #[serde(default)]
    pub gpu_node_overhead_ms: f64,
    /// Achieved / peak compute in prefill for F32/F16/BF16 weights (cuBLAS or Metal's
    /// simdgroup matmul), where it differs from `gpu_compute` (quantized weights: CUDA's
    /// MMQ kernels, Metal's dequantize-and-multiply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_float_compute: Option<f64>,
    /// Achieved / peak compute in prefill for routed experts (`mul_mat_id`: each expert
    /// multiplies only the tokens routed to it), where it differs from `gpu_compute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_expert_compute: Option<f64>,
}

/// What the per-token CPU overheads are counted in ([`DeviceProfile::cpu_overhead_ms`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct OverheadCounts {
    /// Layers run on the CPU.
    pub layers: u64,
    /// Graph nodes run on the CPU ([`crate::planner::ModelShape::graph_nodes`]).
    pub nodes: u64,
    /// All graph nodes when llama.cpp rebuilds the graph every token, else 0.
    pub rebuilt_nodes: u64,
    /// Routed-expert matrices read per token on the CPU
    /// ([`crate::planner::ModelShape::expert_slices_layer`]).
    pub expert_slices: u64,
}

impl Efficiency {
    /// The GPU decode bandwidth efficiency for weights (or KV cache) of `ggml_type`.
    pub fn gpu_bandwidth_for(&self, ggml_type: &str) -> f64 {
        match ReadGroup::of(ggml_type) {
            ReadGroup::Float => self.gpu_float_bandwidth.unwrap_or(self.gpu_bandwidth),
            ReadGroup::Legacy => self.gpu_legacy_bandwidth.unwrap_or(self.gpu_bandwidth),
            _ => self.gpu_bandwidth,
        }
    }

    /// The GPU prefill compute efficiency for a matmul on weights of `ggml_type`.
    pub fn gpu_compute_for(&self, ggml_type: &str, routed_expert: bool) -> f64 {
        if routed_expert {
            if let Some(e) = self.gpu_expert_compute {
                return e;
            }
        }
        match ReadGroup::of(ggml_type) {
            ReadGroup::Float => self.gpu_float_compute.unwrap_or(self.gpu_compute),
            _ => self.gpu_compute,
        }
    }

    /// The CPU decode bandwidth efficiency for weights of `ggml_type`.
    pub fn cpu_bandwidth_for(&self, ggml_type: &str) -> f64 {
        self.cpu_type_bandwidth
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(ggml_type))
            .map(|(_, &v)| v)
            .unwrap_or(self.cpu_bandwidth)
    }
}

impl DeviceProfile {
    pub fn parse(name: &str, text: &str) -> Result<Self, ProfileError> {
        let profile: DeviceProfile = toml::from_str(text).map_err(|e| ProfileError::Invalid {
            name: name.to_string(),
            message: e.message().to_string(),
        })?;
        profile.validate()?;
        Ok(profile)
    }

    fn validate(&self) -> Result<(), ProfileError> {
        let bad = |message: String| ProfileError::Invalid {
            name: self.name.clone(),
            message,
        };
        if self.memory.ram_bytes == 0 {
            return Err(bad("memory.ram_bytes must be positive".into()));
        }
        if self.memory.os_reserve_bytes >= self.memory.ram_bytes {
            return Err(bad("memory.os_reserve_bytes must be below ram_bytes".into()));
        }
        let f = self.memory.gpu_working_set_fraction;
        if !(f > 0.0 && f <= 1.0) {
            return Err(bad(
                "memory.gpu_working_set_fraction must be in (0, 1]".into()
            ));
        }
        let e = &self.efficiency;
        // CPU read efficiencies are relative to cpu.mem_bandwidth_gbs; when that comes from
        // edge's own probe (a calibrated profile), ggml's kernels can beat it a little.
        let cpu_reads = e
            .cpu_type_bandwidth
            .iter()
            .map(|(ty, &v)| (format!("efficiency.cpu_type_bandwidth.{ty}"), v))
            .chain(
                e.cpu_expert_bandwidth
                    .map(|v| ("efficiency.cpu_expert_bandwidth".to_string(), v)),
            )
            .chain([("efficiency.cpu_bandwidth".to_string(), e.cpu_bandwidth)]);
        for (what, v) in cpu_reads {
            if !(v > 0.0 && v <= MAX_CPU_READ_EFFICIENCY) {
                return Err(bad(format!(
                    "{what} must be in (0, {}], got {v}",
                    MAX_CPU_READ_EFFICIENCY
                )));
            }
        }
        let gpu_factors = [
            ("efficiency.gpu_bandwidth", Some(e.gpu_bandwidth)),
            ("efficiency.gpu_float_bandwidth", e.gpu_float_bandwidth),
            ("efficiency.gpu_legacy_bandwidth", e.gpu_legacy_bandwidth),
            ("efficiency.gpu_compute", Some(e.gpu_compute)),
            ("efficiency.gpu_float_compute", e.gpu_float_compute),
            ("efficiency.gpu_expert_compute", e.gpu_expert_compute),
            ("efficiency.cpu_compute", Some(e.cpu_compute)),
        ];
        for (what, v) in gpu_factors
            .into_iter()
            .filter_map(|(what, v)| v.map(|v| (what, v)))
        {
            if !(v > 0.0 && v <= 1.0) {
                return Err(bad(format!("{what} must be in (0, 1], got {v}")));
            }
        }
        if !(e.sync_ms >= 0.0
            && e.token_overhead_ms >= 0.0
            && e.layer_overhead_ms >= 0.0
            && e.node_overhead_ms >= 0.0
            && e.graph_build_node_ms >= 0.0
            && e.expert_slice_ms >= 0.0
            && e.gpu_node_overhead_ms >= 0.0)
        {
            return Err(bad(
                "efficiency.sync_ms and the overheads (token, layer, node, graph_build_node, expert_slice, gpu_node) must be >= 0".into(),
            ));
        }
        for (what, v) in [
            ("cpu.mem_bandwidth_gbs", self.cpu.mem_bandwidth_gbs),
            ("cpu.matmul_gflops", self.cpu.matmul_gflops),
            ("ssd.seq_read_gbs", self.ssd.seq_read_gbs),
            ("ssd.rand_read_gbs", self.ssd.rand_read_gbs),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(bad(format!("{what} must be positive")));
            }
        }
        if self.cpu.cores == 0 {
            return Err(bad("cpu.cores must be positive".into()));
        }
        for gpu in &self.gpus {
            if !(gpu.bandwidth_gbs > 0.0 && gpu.fp16_tflops > 0.0) {
                return Err(bad(format!(
                    "gpu '{}': bandwidth_gbs and fp16_tflops must be positive",
                    gpu.name
                )));
            }
            if !self.memory.unified && gpu.vram_bytes == 0 {
                return Err(bad(format!(
                    "gpu '{}': vram_bytes must be positive",
                    gpu.name
                )));
            }
        }
        if self.memory.unified && self.gpus.len() > 1 {
            return Err(bad("a unified-memory profile has at most one GPU".into()));
        }
        Ok(())
    }

    /// Total dedicated VRAM over all GPUs (0 on unified memory and CPU-only devices).
    pub fn vram_bytes(&self) -> u64 {
        if self.memory.unified {
            0
        } else {
            self.gpus.iter().map(|g| g.vram_bytes).sum()
        }
    }

    /// Fixed CPU cost of one decoded token, ms: the overheads of [`Efficiency`] times
    /// their counts.
    pub fn cpu_overhead_ms(&self, c: &OverheadCounts) -> f64 {
        let e = &self.efficiency;
        e.token_overhead_ms
            + c.layers as f64 * e.layer_overhead_ms
            + c.nodes as f64 * e.node_overhead_ms
            + c.rebuilt_nodes as f64 * e.graph_build_node_ms
            + c.expert_slices as f64 * e.expert_slice_ms
    }

    /// Milliseconds to stream `bytes` of `ggml_type` weights (or KV cache, `F16`) from RAM
    /// through the CPU in decode: `bytes / (mem_bandwidth_gbs * cpu_bandwidth_for(type))`.
    pub fn cpu_read_ms(&self, ggml_type: &str, bytes: f64) -> f64 {
        let bw = self.cpu.mem_bandwidth_gbs * self.efficiency.cpu_bandwidth_for(ggml_type);
        bytes / (bw * 1e9) * 1e3
    }

    /// [`Self::cpu_read_ms`] for routed-expert weights: K/IQ quants at
    /// `cpu_expert_bandwidth` when the profile has one.
    pub fn cpu_expert_read_ms(&self, ggml_type: &str, bytes: f64) -> f64 {
        match self.efficiency.cpu_expert_bandwidth {
            Some(eff) if ReadGroup::of_weight(ggml_type, true) == ReadGroup::ExpertKQuant => {
                bytes / (self.cpu.mem_bandwidth_gbs * eff * 1e9) * 1e3
            }
            _ => self.cpu_read_ms(ggml_type, bytes),
        }
    }

    /// Predicted CPU decode time per token, ms, for a model whose layers all run on the
    /// CPU: [`Self::cpu_overhead_ms`] plus the reads split by ggml type and whether they are
    /// routed experts (`(type, bytes, expert)`), each at its own efficiency. This is the
    /// model `edge profile calibrate` fits.
    pub fn cpu_decode_ms_typed<'a>(
        &self,
        counts: &OverheadCounts,
        reads: impl IntoIterator<Item = (&'a str, f64, bool)>,
    ) -> f64 {
        self.cpu_overhead_ms(counts)
            + reads
                .into_iter()
                .map(|(ty, bytes, expert)| {
                    if expert {
                        self.cpu_expert_read_ms(ty, bytes)
                    } else {
                        self.cpu_read_ms(ty, bytes)
                    }
                })
                .sum::<f64>()
    }

    /// Serialises back to TOML (used by `calibrate` to save a user profile).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// Ceiling of a fitted CPU read efficiency. It is relative to the memory bandwidth edge's
/// probe measures (threads summing a buffer), which ggml's prefetching kernels can beat:
/// F16 decode here streamed at up to 1.2x the probe's figure.
pub const MAX_CPU_READ_EFFICIENCY: f64 = 1.5;

/// Weight types that need no dequantizing; they stream at their own efficiency.
pub const FLOAT_TYPES: [&str; 3] = ["F32", "F16", "BF16"];
/// The legacy block quants, whose CPU kernels dequantize at another rate than the K and
/// IQ quants' (SmolLM2's Q4_1 streams at about half the rate of Q4_K here).
pub const LEGACY_QUANT_TYPES: [&str; 6] = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"];

/// The groups of weight types whose CPU decode efficiency is fitted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadGroup {
    /// K and IQ quants (and any other quantized type): `efficiency.cpu_bandwidth`.
    KQuant = 0,
    /// [`LEGACY_QUANT_TYPES`].
    Legacy = 1,
    /// [`FLOAT_TYPES`] and the F16 KV cache.
    Float = 2,
    /// Routed-expert weights in K/IQ quants: `efficiency.cpu_expert_bandwidth`.
    ExpertKQuant = 3,
}

impl ReadGroup {
    pub const ALL: [ReadGroup; 4] = [
        ReadGroup::KQuant,
        ReadGroup::Legacy,
        ReadGroup::Float,
        ReadGroup::ExpertKQuant,
    ];

    pub fn of(ggml_type: &str) -> ReadGroup {
        let is = |list: &[&str]| list.iter().any(|t| t.eq_ignore_ascii_case(ggml_type));
        if is(&FLOAT_TYPES) {
            ReadGroup::Float
        } else if is(&LEGACY_QUANT_TYPES) {
            ReadGroup::Legacy
        } else {
            ReadGroup::KQuant
        }
    }

    /// The group of a weight read: [`ReadGroup::of`] its type, except that routed-expert
    /// K/IQ-quant weights have their own.
    pub fn of_weight(ggml_type: &str, routed_expert: bool) -> ReadGroup {
        match ReadGroup::of(ggml_type) {
            ReadGroup::KQuant if routed_expert => ReadGroup::ExpertKQuant,
            group => group,
        }
    }

    /// A ggml type of this group, to look its efficiency up by.
    pub fn example_type(self) -> &'static str {
        match self {
            ReadGroup::KQuant | ReadGroup::ExpertKQuant => "Q4_K",
            ReadGroup::Legacy => "Q4_0",
            ReadGroup::Float => "F16",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ReadGroup::KQuant => "K/IQ-quant",
            ReadGroup::Legacy => "legacy-quant (Q4_0..Q8_0)",
            ReadGroup::Float => "F32/F16/BF16",
            ReadGroup::ExpertKQuant => "routed-expert K/IQ-quant",
        }
    }
}

/// All shipped profiles, parsed. A broken shipped profile is a build defect, caught by tests.
pub fn builtin_profiles() -> Vec<DeviceProfile> {
    BUILTIN
        .iter()
        .filter_map(|(name, text)| DeviceProfile::parse(name, text).ok())
        .collect()
}

/// Profiles in a user directory (`<config>/profiles/*.toml`), sorted by name.
pub fn user_profiles(dir: &Path) -> Result<Vec<DeviceProfile>, ProfileError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(ProfileError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Io {
            path: path.clone(),
            source,
        })?;
        // A broken file is named by its path, so the user knows which one to fix.
        let mut profile = DeviceProfile::parse(&path.display().to_string(), &text)?;
        profile.origin = ProfileOrigin::User;
        out.push(profile);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The user profile directory: `$EDGE_HOME/profiles` when `EDGE_HOME` is set, else
/// `profiles` in edge's config dir (`~/.config/edge/profiles` on Linux).
pub fn user_profile_dir() -> Option<PathBuf> {
    if let Some(home) = crate::hub::store::edge_home_override() {
        return Some(home.join("profiles"));
    }
    directories::ProjectDirs::from("", "", "edge").map(|d| d.config_dir().join("profiles"))
}

/// Every profile by name, shipped and user ones, a user profile replacing the shipped
/// profile of the same name; sorted by name.
pub fn all_profiles(user_dir: Option<&Path>) -> Result<Vec<DeviceProfile>, ProfileError> {
    let users = match user_dir {
        Some(dir) => user_profiles(dir)?,
        None => Vec::new(),
    };
    let mut out: Vec<DeviceProfile> = builtin_profiles()
        .into_iter()
        .filter(|b| !users.iter().any(|u| u.name == b.name))
        .collect();
    out.extend(users);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Finds a profile by name: user profiles shadow shipped ones.
pub fn find_profile(name: &str, user_dir: Option<&Path>) -> Result<DeviceProfile, ProfileError> {
    if let Some(dir) = user_dir {
        if let Some(p) = user_profiles(dir)?.into_iter().find(|p| p.name == name) {
            return Ok(p);
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => DeviceProfile::parse(n, text),
        None => Err(ProfileError::Unknown(name.to_string())),
    }
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Text(s) if s.trim() == "0" => Ok(0),
        Raw::Text(s) => crate::term::parse_size(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_and_is_named_after_its_file() {
        for (name, text) in BUILTIN {
            let p = DeviceProfile::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&p.name, name);
            assert!(!p.description.is_empty());
            assert!(text.contains("# Sources:"), "{name} cites no sources");
        }
        assert_eq!(builtin_profiles().len(), BUILTIN.len());
    }

    #[test]
    fn unknown_and_invalid_profiles_are_errors() {
        assert!(matches!(
            find_profile("nope", None),
            Err(ProfileError::Unknown(_))
        ));
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == "rtx4060-8gb").unwrap();
        let broken = text.replace("cpu_bandwidth = ", "cpu_bandwidth = 7.0 #");
        let err = DeviceProfile::parse("x", &broken).unwrap_err().to_string();
        assert!(err.contains("cpu_bandwidth"), "{err}");
    }
}
