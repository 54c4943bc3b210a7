//! This machine as a [`DeviceProfile`]: RAM, physical cores, CPU model and ISA, and the
//! GPUs llama.cpp's backends see (with their free and total memory).
//!
//! Bandwidths and efficiency factors cannot be read from the hardware: they come from the
//! saved calibration (the user profile [`THIS_MACHINE`], written by `edge profile
//! calibrate`) when it describes this machine, else from conservative defaults.
//! Unlike the rest of `crate::profile`, this module does I/O (`/proc`, llama.cpp).

use std::path::PathBuf;

use crate::engine::{devices, DeviceKind};
use anyhow::{Context, Result};

use super::{
    builtin_profiles, user_profile_dir, CpuSpec, DeviceProfile, Efficiency, GpuSpec, MemoryTiers,
    ProfileOrigin, SsdSpec,
};

/// Name of the user profile `edge profile calibrate` writes.
pub const THIS_MACHINE: &str = "this-machine";

/// Uncalibrated defaults: low enough that a plan made with them does not over-promise.
pub const DEFAULT_CPU_BANDWIDTH_GBS: f64 = 20.0;
pub const DEFAULT_MATMUL_GFLOPS_PER_CORE: f64 = 25.0;
pub const DEFAULT_SSD_SEQ_GBS: f64 = 1.0;
pub const DEFAULT_SSD_RAND_GBS: f64 = 0.5;
pub const DEFAULT_GPU_BANDWIDTH_GBS: f64 = 100.0;
pub const DEFAULT_GPU_FP16_TFLOPS: f64 = 10.0;

/// The efficiency factors every shipped profile starts from (planner research anchors).
pub fn default_efficiency() -> Efficiency {
    Efficiency {
        gpu_bandwidth: 0.7,
        cpu_bandwidth: 0.55,
        gpu_compute: 0.35,
        cpu_compute: 0.5,
        sync_ms: 0.15,
        token_overhead_ms: 0.3,
        layer_overhead_ms: 0.0,
        node_overhead_ms: 0.0,
        graph_build_node_ms: 0.0,
        expert_slice_ms: 0.0,
        cpu_type_bandwidth: Default::default(),
        cpu_expert_bandwidth: None,
        gpu_float_bandwidth: None,
        gpu_legacy_bandwidth: None,
        gpu_node_overhead_ms: 0.0,
        gpu_float_compute: None,
        gpu_expert_compute: None,
    }
}

/// A GPU as llama.cpp reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DetectedGpu {
    /// ggml device name (`CUDA0`, `Metal`, `Vulkan0`).
    pub device: String,
    /// Marketing name (`NVIDIA GeForce RTX 4090`).
    pub description: String,
    /// ggml backend (`CUDA`, `Metal`, `Vulkan`).
    pub backend: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// Shares system RAM (integrated GPU, Apple Silicon, Jetson).
    pub integrated: bool,
    /// Bandwidth and FP16 figures were taken from this shipped profile's GPU.
    pub figures_from: Option<String>,
}

/// What `edge profile detect` found.
#[derive(Debug, Clone)]
pub struct Detection {
    pub profile: DeviceProfile,
    pub gpus: Vec<DetectedGpu>,
    /// RAM the OS reports free for new allocations (Linux `MemAvailable`, else ggml's figure).
    pub ram_available_bytes: Option<u64>,
    /// The saved calibration the bandwidths came from; `None`: defaults.
    pub calibration: Option<PathBuf>,
    /// Remarks for the user (missing calibration, ignored calibration, ...).
    pub notes: Vec<String>,
}

/// This machine's hardware, with bandwidths from the saved calibration when it matches.
pub fn detect() -> Result<Detection> {
    with_calibration(detect_hardware()?)
}

fn with_calibration(mut d: Detection) -> Result<Detection> {
    match load_this_machine()? {
        Some((saved, path)) if same_machine(&saved, &d.profile) => {
            apply_calibration(&mut d.profile, &saved);
            d.calibration = Some(path);
        }
        Some((saved, path)) => {
            d.notes.push(format!(
                "{} was calibrated on another machine ({}, {} cores); ignoring it",
                path.display(),
                saved.cpu.model,
                saved.cpu.cores
            ));
            d.notes.push(uncalibrated_note());
        }
        None => d.notes.push(uncalibrated_note()),
    }
    Ok(d)
}

fn uncalibrated_note() -> String {
    "uncalibrated: bandwidths are conservative defaults; run `edge profile calibrate`".into()
}

/// This machine as a profile (origin `Detected`). The planner's fallback without a
/// calibration; see [`current_profile`].
pub fn detect_current() -> Result<DeviceProfile> {
    Ok(detect()?.profile)
}

/// The profile the planner uses when no `--profile` is given: the calibrated user profile
/// [`THIS_MACHINE`] when it exists and describes this machine, else [`detect_current`].
pub fn current_profile() -> Result<DeviceProfile> {
    let hw = detect_hardware()?;
    if let Some((saved, _)) = load_this_machine()? {
        if same_machine(&saved, &hw.profile) {
            return Ok(saved);
        }
    }
    Ok(with_calibration(hw)?.profile)
}

/// The saved calibration, `<user profile dir>/this-machine.toml`, if there is one.
/// Only that file is read, so an unrelated broken user profile does not get in the way.
pub fn load_this_machine() -> Result<Option<(DeviceProfile, PathBuf)>> {
    let Some(dir) = user_profile_dir() else {
        return Ok(None);
    };
    let path = dir.join(format!("{THIS_MACHINE}.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut p = DeviceProfile::parse(&path.display().to_string(), &text)?;
    p.origin = ProfileOrigin::User;
    Ok(Some((p, path)))
}

/// A saved calibration applies when CPU model, core count and RAM size (within 5 %) match.
pub fn same_machine(saved: &DeviceProfile, hw: &DeviceProfile) -> bool {
    let ram_ratio = saved.memory.ram_bytes as f64 / hw.memory.ram_bytes.max(1) as f64;
    saved.cpu.model == hw.cpu.model
        && saved.cpu.cores == hw.cpu.cores
        && (0.95..=1.05).contains(&ram_ratio)
}

/// Copies the measured figures (bandwidths, SSD, efficiency) from a calibration.
fn apply_calibration(p: &mut DeviceProfile, saved: &DeviceProfile) {
    p.cpu.mem_bandwidth_gbs = saved.cpu.mem_bandwidth_gbs;
    p.cpu.matmul_gflops = saved.cpu.matmul_gflops;
    p.ssd = saved.ssd.clone();
    p.efficiency = saved.efficiency.clone();
    for g in &mut p.gpus {
        if let Some(s) = saved.gpus.iter().find(|s| s.name == g.name) {
            g.bandwidth_gbs = s.bandwidth_gbs;
            g.fp16_tflops = s.fp16_tflops;
            g.h2d_pinned_gbs = s.h2d_pinned_gbs;
            g.h2d_pageable_gbs = s.h2d_pageable_gbs;
        }
    }
}

/// The hardware facts only, with default bandwidths (what `calibrate` starts from).
pub fn detect_hardware() -> Result<Detection> {
    let devices = devices()?;
    let cpu_dev = devices.iter().find(|d| d.kind == DeviceKind::Cpu);

    let (mut ram_total, mut ram_available) = read_meminfo();
    if ram_total.is_none() {
        if let Some(c) = cpu_dev {
            ram_total = Some(c.memory_total);
            ram_available = Some(c.memory_free);
        }
    }
    let ram_bytes = ram_total.context("cannot find this machine's total RAM")?;
    let cores = num_cpus::get_physical().max(1) as u32;
    let model = cpu_model()
        .or_else(|| {
            cpu_dev
                .map(|c| c.description.trim().to_string())
                .filter(|s| !s.is_empty() && s != "CPU")
        })
        .unwrap_or_else(|| "unknown CPU".to_string());

    let shipped = builtin_profiles();
    let mut gpus = Vec::new();
    let mut specs = Vec::new();
    let mut backend = "cpu".to_string();
    for d in &devices {
        let integrated = match d.kind {
            DeviceKind::Gpu => d.backend.eq_ignore_ascii_case("metal"),
            DeviceKind::IntegratedGpu => true,
            _ => continue,
        };
        // Remote RPC servers are not this machine.
        if d.backend.eq_ignore_ascii_case("rpc") {
            continue;
        }
        let description = if d.description.trim().is_empty() {
            d.name.clone()
        } else {
            d.description.trim().to_string()
        };
        let known = shipped.iter().find_map(|p| {
            p.gpus
                .iter()
                .find(|g| gpu_name_matches(&g.name, &description))
                .map(|g| (p.name.clone(), g.clone()))
        });
        let (bandwidth_gbs, fp16_tflops, pinned, pageable) = match &known {
            Some((_, g)) => (
                g.bandwidth_gbs,
                g.fp16_tflops,
                g.h2d_pinned_gbs,
                g.h2d_pageable_gbs,
            ),
            None if integrated => (DEFAULT_GPU_BANDWIDTH_GBS, DEFAULT_GPU_FP16_TFLOPS, 0.0, 0.0),
            None => (
                DEFAULT_GPU_BANDWIDTH_GBS,
                DEFAULT_GPU_FP16_TFLOPS,
                12.0,
                6.0,
            ),
        };
        if specs.is_empty() {
            backend = d.backend.to_ascii_lowercase();
        }
        specs.push(GpuSpec {
            name: description.clone(),
            vram_bytes: if integrated { 0 } else { d.memory_total },
            bandwidth_gbs,
            fp16_tflops,
            h2d_pinned_gbs: pinned,
            h2d_pageable_gbs: pageable,
        });
        gpus.push(DetectedGpu {
            device: d.name.clone(),
            description,
            backend: d.backend.clone(),
            memory_total_bytes: d.memory_total,
            memory_free_bytes: d.memory_free,
            integrated,
            figures_from: known.map(|(n, _)| n),
        });
    }
    let unified = gpus.iter().any(|g| g.integrated);
    if unified && specs.len() > 1 {
        // A unified-memory profile has one GPU: keep the integrated one.
        let keep = gpus.iter().position(|g| g.integrated).unwrap_or(0);
        specs = vec![specs.swap_remove(keep)];
    }
    let gpu_working_set_fraction = if unified {
        // What the GPU may take of the shared pool: Metal's ~0.7-0.75, elsewhere what the
        // driver reports free at most.
        let reported = gpus
            .iter()
            .find(|g| g.integrated)
            .map(|g| g.memory_total_bytes as f64 / ram_bytes as f64)
            .unwrap_or(0.75);
        reported.clamp(0.05, 1.0)
    } else {
        1.0
    };
    // Keep what is in use now free, and at least 1/8 of RAM (at most 2 GiB of that).
    let floor = (ram_bytes / 8).min(2 << 30);
    let in_use = ram_available
        .map(|a| ram_bytes.saturating_sub(a))
        .unwrap_or(0);
    let os_reserve_bytes = in_use.max(floor).min(ram_bytes - ram_bytes / 10);

    let mut profile = DeviceProfile {
        name: "detected".to_string(),
        description: format!(
            "This machine: {model}, {} RAM{}",
            crate::term::human_bytes(ram_bytes),
            specs
                .first()
                .map(|g| format!(", {}", g.name))
                .unwrap_or_default()
        ),
        backend,
        memory: MemoryTiers {
            ram_bytes,
            os_reserve_bytes,
            unified,
            gpu_working_set_fraction,
        },
        gpus: specs,
        cpu: CpuSpec {
            model,
            cores,
            isa: isa_flags(),
            mem_bandwidth_gbs: DEFAULT_CPU_BANDWIDTH_GBS,
            matmul_gflops: DEFAULT_MATMUL_GFLOPS_PER_CORE * cores as f64,
        },
        ssd: SsdSpec {
            seq_read_gbs: DEFAULT_SSD_SEQ_GBS,
            rand_read_gbs: DEFAULT_SSD_RAND_GBS,
        },
        efficiency: default_efficiency(),
        origin: ProfileOrigin::Detected,
    };
    adopt_shipped_gpu_factors(&mut profile);
    Ok(Detection {
        profile,
        gpus,
        ram_available_bytes: ram_available,
        calibration: None,
        notes: Vec::new(),
    })
}

/// Gives a profile with a GPU the GPU factors of the shipped profiles of its backend (the
/// fit to published llama-bench results, `crate::published`): those of a shipped profile
/// with the same GPU, else of one with the same backend and memory kind (discrete or
/// unified). The CPU factors stay as they are; the per-token overhead is taken too (a
/// GPU backend's dominates), and calibration refits it.
pub fn adopt_shipped_gpu_factors(profile: &mut DeviceProfile) {
    let Some(gpu) = profile.gpus.first() else {
        return;
    };
    let shipped = super::builtin_profiles();
    let same_kind = |p: &&DeviceProfile| {
        p.backend == profile.backend && p.memory.unified == profile.memory.unified
    };
    let source = shipped
        .iter()
        .filter(same_kind)
        .find(|p| p.gpus.iter().any(|g| gpu_name_matches(&g.name, &gpu.name)))
        .or_else(|| shipped.iter().find(same_kind));
    if let Some(src) = source {
        let (s, d) = (&src.efficiency, &mut profile.efficiency);
        d.gpu_bandwidth = s.gpu_bandwidth;
        d.gpu_float_bandwidth = s.gpu_float_bandwidth;
        d.gpu_legacy_bandwidth = s.gpu_legacy_bandwidth;
        d.gpu_compute = s.gpu_compute;
        d.gpu_float_compute = s.gpu_float_compute;
        d.gpu_expert_compute = s.gpu_expert_compute;
        d.gpu_node_overhead_ms = s.gpu_node_overhead_ms;
        d.sync_ms = s.sync_ms;
        d.token_overhead_ms = s.token_overhead_ms;
    }
}

/// Shipped GPU names carry a suffix (`Apple M2 (10-core GPU)`); the driver's do not.
fn gpu_name_matches(shipped: &str, reported: &str) -> bool {
    let s = shipped.to_ascii_lowercase();
    let r = reported.to_ascii_lowercase();
    s == r
        || s.strip_prefix(&r)
            .is_some_and(|rest| rest.starts_with(" ("))
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes (Linux only).
fn read_meminfo() -> (Option<u64>, Option<u64>) {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return (None, None);
    };
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?.trim();
            let kb: u64 = rest.trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        })
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// CPU model from `/proc/cpuinfo` (`model name`), else the device-tree board model (Arm
/// boards such as the Raspberry Pi); `None` elsewhere (llama.cpp's CPU device then names it).
fn cpu_model() -> Option<String> {
    if let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") {
        let found = text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name" && !v.trim().is_empty()).then(|| v.trim().to_string())
        });
        if found.is_some() {
            return found;
        }
    }
    std::fs::read_to_string("/proc/device-tree/model")
        .ok()
        .map(|s| s.trim_end_matches('\0').trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Instruction-set extensions ggml uses, as the shipped profiles name them.
pub fn isa_flags() -> Vec<String> {
    #[allow(unused_mut)]
    let mut isa: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
            ("f16c", is_x86_feature_detected!("f16c")),
            ("avx_vnni", is_x86_feature_detected!("avxvnni")),
            ("avx512", is_x86_feature_detected!("avx512f")),
            ("avx512_vnni", is_x86_feature_detected!("avx512vnni")),
            ("avx512_bf16", is_x86_feature_detected!("avx512bf16")),
        ] {
            if on {
                isa.push(name);
            }
        }
        // AMX detection is not stable in std; the kernel lists it.
        let amx = std::fs::read_to_string("/proc/cpuinfo")
            .map(|t| t.split_whitespace().any(|w| w == "amx_int8"))
            .unwrap_or(false);
        if amx {
            isa.push("amx");
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected;
        for (name, on) in [
            ("neon", is_aarch64_feature_detected!("neon")),
            ("dotprod", is_aarch64_feature_detected!("dotprod")),
            ("fp16", is_aarch64_feature_detected!("fp16")),
            ("i8mm", is_aarch64_feature_detected!("i8mm")),
            ("bf16", is_aarch64_feature_detected!("bf16")),
            ("sve", is_aarch64_feature_detected!("sve")),
        ] {
            if on {
                isa.push(name);
            }
        }
    }
    isa.into_iter().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text = "MemTotal:       24684084 kB\nMemFree:  1 kB\nMemAvailable:   23842624 kB\n";
        assert_eq!(
            parse_meminfo(text),
            (Some(24684084 * 1024), Some(23842624 * 1024))
        );
        assert_eq!(parse_meminfo("nothing"), (None, None));
    }

    #[test]
    fn gpu_names_match_shipped_ones() {
        assert!(gpu_name_matches(
            "NVIDIA GeForce RTX 4090",
            "NVIDIA GeForce RTX 4090"
        ));
        assert!(gpu_name_matches("Apple M2 (10-core GPU)", "Apple M2"));
        assert!(!gpu_name_matches("Apple M2 Max (38-core GPU)", "Apple M2"));
        assert!(!gpu_name_matches(
            "NVIDIA GeForce RTX 4090",
            "NVIDIA GeForce RTX 4090 D"
        ));
    }

    #[test]
    fn a_calibration_applies_to_the_same_machine_only() {
        let hw = DeviceProfile::parse(
            "rtx4060-8gb",
            super::super::BUILTIN
                .iter()
                .find(|(n, _)| *n == "rtx4060-8gb")
                .unwrap()
                .1,
        )
        .unwrap();
        let mut saved = hw.clone();
        assert!(same_machine(&saved, &hw));
        saved.cpu.cores += 1;
        assert!(!same_machine(&saved, &hw));
    }
}
