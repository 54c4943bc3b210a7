//! GPU calibration (CUDA, Metal, Vulkan): short runs of models placed wholly on the GPU
//! give its decode bandwidth per weight type, its per-kernel cost and its prefill rate
//! per weight type; one model run with its weights left in RAM gives the host-to-GPU copy
//! speed (llama.cpp offloads a large batch's matmuls to the GPU and copies the weights
//! over for each ubatch). The factors are fitted through the planner's own cost model
//! ([`crate::planner::fit`]), so `edge plan` predicts these runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::engine::{run_test, LoadOptions, TestParams};
use crate::gguf_info::GgufFile;
use crate::loading::{plan_file, PlacementRequest};
use crate::planner::fit::{factors_for, fit_factors, Factor, Observation};
use crate::planner::{ModelShape, PlanRequest, TensorRole, Tier};
use crate::profile::DeviceProfile;

/// Prompt tokens of a prefill run: one default ubatch.
pub const PREFILL_TOKENS: u32 = 512;

/// One model timed on the GPU.
#[derive(Debug, Clone, Serialize)]
pub struct GpuRun {
    pub label: String,
    pub weight_bytes: u64,
    pub decode_tok_s: f64,
    pub prefill_tok_s: f64,
    /// The planner's predictions with the fitted factors.
    pub predicted_decode_tok_s: f64,
    pub predicted_prefill_tok_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuCalibration {
    pub device: String,
    pub runs: Vec<GpuRun>,
    /// Fitted factors, by profile key.
    pub factors: Vec<(&'static str, f64)>,
    /// Host-to-GPU copy speed from a prefill with the weights in RAM, GB/s.
    pub h2d_gbs: Option<f64>,
    pub notes: Vec<String>,
}

/// Times `models` on the GPU of `profile` and returns the profile with the GPU factors
/// (and the copy speed) fitted, and what was measured. Models that do not fit wholly in
/// VRAM are skipped with a note.
pub fn calibrate_gpu(
    models: &[(String, PathBuf)],
    profile: &DeviceProfile,
    threads: u32,
    n_gen: u32,
    reps: u32,
    verbose: bool,
    stop: &AtomicBool,
) -> Result<(DeviceProfile, GpuCalibration)> {
    let gpu = profile
        .gpus
        .first()
        .ok_or_else(|| anyhow!("no GPU to calibrate"))?;
    let mut notes = Vec::new();
    let ctx = u64::from(PREFILL_TOKENS.max(n_gen));
    let mut timed: Vec<(String, ModelShape, f64, f64)> = Vec::new();
    let mut biggest: Option<(String, PathBuf, f64, u64)> = None;
    let median = |v: Vec<u64>| super::measure::median_ns(v) / 1e9;
    for (label, path) in models {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted; nothing saved");
        }
        let gguf = GgufFile::open(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let shape = ModelShape::from_gguf(&gguf).map_err(|e| anyhow!("{label}: {e}"))?;
        let planned = plan_file(
            path,
            label,
            &PlacementRequest::default(),
            Some(ctx),
            1,
            verbose,
        )?;
        let whole = planned
            .plan
            .tensors
            .iter()
            .all(|t| t.tier == Tier::Vram || t.role == TensorRole::TokenEmbd);
        if !whole {
            notes.push(format!("{label}: not wholly in VRAM, not timed on the GPU"));
            continue;
        }
        eprintln!("calibrate: gpu: {label}");
        let model = planned.load(&LoadOptions {
            verbose,
            progress: false,
        })?;
        let context = planned.context(threads);
        let tg = run_test(
            &model,
            &TestParams {
                n_prompt: 0,
                n_gen,
                repetitions: reps,
                context: context.clone(),
            },
        )?;
        let pp = run_test(
            &model,
            &TestParams {
                n_prompt: PREFILL_TOKENS,
                n_gen: 0,
                repetitions: reps.clamp(2, 5),
                context,
            },
        )?;
        let decode = f64::from(n_gen) / median(tg).max(1e-9);
        let prefill = f64::from(PREFILL_TOKENS) / median(pp).max(1e-9);
        eprintln!("calibrate:   decode {decode:.1} tok/s, prefill {prefill:.0} tok/s");
        let bytes = shape.weight_bytes();
        if biggest.as_ref().is_none_or(|b| bytes > b.3) {
            biggest = Some((label.clone(), path.clone(), prefill, bytes));
        }
        timed.push((label.clone(), shape, decode, prefill));
    }
    if timed.is_empty() {
        bail!("no model fits wholly in the GPU's memory: nothing to calibrate it with");
    }

    // Host-to-GPU copies: the biggest model again with its weights in RAM; each ubatch
    // then uploads them (all of them for a dense model).
    let mut h2d_gbs = None;
    if let Some((label, path, gpu_prefill, bytes)) = &biggest {
        let in_ram = PlacementRequest {
            vram: Some(0),
            ..Default::default()
        };
        let planned = plan_file(path, label, &in_ram, Some(ctx), 1, verbose)?;
        let model = planned.load(&LoadOptions {
            verbose,
            progress: false,
        })?;
        let pp = run_test(
            &model,
            &TestParams {
                n_prompt: PREFILL_TOKENS,
                n_gen: 0,
                repetitions: 3,
                context: planned.context(threads),
            },
        )?;
        let offloaded = median(pp);
        let on_gpu = f64::from(PREFILL_TOKENS) / gpu_prefill;
        if offloaded > on_gpu * 1.05 {
            let gbs = *bytes as f64 / (offloaded - on_gpu) / 1e9;
            eprintln!("calibrate:   host->GPU copies {gbs:.1} GB/s ({label})");
            h2d_gbs = Some(gbs);
        } else {
            notes.push(format!(
                "{label}: a prefill with the weights in RAM was no slower than on the GPU; copy speed not measured"
            ));
        }
    }

    // Which factors the runs pin down: those of the weight groups the models are made
    // of, and the per-kernel cost (the models differ in graph size). The per-token
    // overhead stays the CPU fit's, and routed-expert compute its shipped value.
    let mut factors: Vec<Factor> = timed
        .iter()
        .flat_map(|(_, shape, _, _)| {
            let (decode, prefill) = factors_for(shape, true);
            decode.into_iter().chain(prefill)
        })
        .filter(|f| !matches!(f, Factor::TokenOverheadMs | Factor::GpuExpertCompute))
        .collect();
    factors.sort_by_key(|f| *f as usize);
    factors.dedup();
    let request = PlanRequest {
        ctx: Some(ctx),
        ..Default::default()
    };
    let observations: Vec<Observation> = timed
        .iter()
        .map(|(_, shape, decode, prefill)| Observation {
            profile: profile.clone(),
            shape,
            request: request.clone(),
            decode_tok_s: Some(*decode),
            prefill_tok_s: Some(*prefill),
        })
        .collect();
    let values = fit_factors(&observations, &factors, &profile.efficiency);
    let mut fitted = profile.clone();
    for (f, v) in factors.iter().zip(&values) {
        f.set(&mut fitted.efficiency, *v);
        if *v >= 0.999 && f.key().contains("bandwidth") {
            notes.push(format!(
                "{} fitted at its ceiling: {}'s bandwidth_gbs ({:.0}) is probably too low",
                f.key(),
                gpu.name,
                gpu.bandwidth_gbs
            ));
        }
    }
    if let (Some(gbs), Some(g)) = (h2d_gbs, fitted.gpus.first_mut()) {
        g.h2d_pageable_gbs = (gbs * 1000.0).round() / 1000.0;
    }
    let runs = timed
        .iter()
        .map(|(label, shape, decode, prefill)| {
            let p = crate::planner::plan(shape, &fitted, &request);
            GpuRun {
                label: label.clone(),
                weight_bytes: shape.weight_bytes(),
                decode_tok_s: *decode,
                prefill_tok_s: *prefill,
                predicted_decode_tok_s: p.predicted.decode_tok_s,
                predicted_prefill_tok_s: p.predicted.prefill_tok_s,
            }
        })
        .collect();
    let calibration = GpuCalibration {
        device: gpu.name.clone(),
        runs,
        factors: factors
            .iter()
            .map(|f| (f.key(), f.get(&fitted.efficiency)))
            .collect(),
        h2d_gbs,
        notes,
    };
    Ok((fitted, calibration))
}
