//! The calibration run: memory and SSD bandwidth, timed decodes of real and synthetic
//! models (each planned CPU-only and loaded with the plan applied), the fit of the CPU
//! cost model, the GPU's factors where there is one ([`super::gpu`]), and the saved
//! `this-machine` profile.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::measure::{
    decode_expert_reads_by_type, decode_reads_by_type, fit_decode, kv_read_bytes,
    measure_mem_bandwidth, measure_ssd, median_ns, DecodeSample, Fit, SsdResult,
};
use crate::engine::{run_test, ContextSpec, LoadOptions, Model, QuantizeParams, TestParams};
use crate::gguf_info::GgufFile;
use crate::loading::{plan_file, PlacementRequest};
use crate::planner::model::{GRAPH_NODES_BASE, TYPICAL_DENSE_LAYER_NODES};
use crate::planner::{plan as plan_model, ModelShape, PlanRequest};
use crate::profile::detect::{
    default_efficiency, detect_hardware, load_this_machine, same_machine, THIS_MACHINE,
};
use crate::profile::{
    user_profile_dir, DeviceProfile, GpuSpec, OverheadCounts, ProfileOrigin, ReadGroup, SsdSpec,
    FLOAT_TYPES, LEGACY_QUANT_TYPES,
};
use crate::synth::{write_gguf, SynthArch, SynthSpec};
use crate::term::human_bytes;

/// How much work each measurement does.
struct Workload {
    mem_bytes: usize,
    mem_reps: usize,
    ssd_bytes: u64,
    ssd_random_reads: usize,
    n_gen: u32,
    gen_reps: u32,
    n_prompt: u32,
    wide_synth: bool,
    /// Seconds of tg timing to aim for per model.
    gen_secs: f64,
    /// Interleaved timing rounds over all models.
    rounds: u32,
}

impl Workload {
    fn new(quick: bool) -> Workload {
        if quick {
            Workload {
                mem_bytes: 256 << 20,
                mem_reps: 3,
                ssd_bytes: 64 << 20,
                ssd_random_reads: 16,
                n_gen: 32,
                gen_reps: 3,
                n_prompt: 32,
                wide_synth: false,
                gen_secs: 0.3,
                rounds: 1,
            }
        } else {
            Workload {
                mem_bytes: 1 << 30,
                mem_reps: 5,
                ssd_bytes: 512 << 20,
                ssd_random_reads: 64,
                n_gen: 128,
                gen_reps: 5,
                n_prompt: 128,
                wide_synth: true,
                gen_secs: 3.0,
                rounds: 3,
            }
        }
    }
}

/// One model timed by the calibration.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRun {
    pub label: String,
    /// Timed for `--validate`, not used in the fit.
    pub held_out: bool,
    pub path: PathBuf,
    pub architecture: String,
    /// Layers, graph nodes, rebuilt graph nodes and routed-expert matrices per token.
    pub counts: OverheadCounts,
    /// Weight bytes one token reads, per ggml type (tied output head included).
    pub reads_by_type: BTreeMap<String, f64>,
    /// The routed-expert part of `reads_by_type`.
    pub expert_reads_by_type: BTreeMap<String, f64>,
    /// KV-cache bytes one token reads at the mean depth of the timed decode.
    pub kv_read_bytes: f64,
    /// All of the above, bytes.
    pub read_bytes: f64,
    /// `planner::decode_read_bytes`, for comparison.
    pub planner_read_bytes: u64,
    pub n_gen: u32,
    pub measured_ms: f64,
    pub measured_tok_s: f64,
    /// The calibrated profile's cost model (`DeviceProfile::cpu_decode_ms_typed`).
    pub predicted_tok_s: f64,
    pub error_pct: f64,
    /// What `planner::plan` predicts with the calibrated profile today.
    pub planner_tok_s: Option<f64>,
}

impl ModelRun {
    /// One token's reads as `(ggml type, bytes, routed expert)`: the weights split into
    /// their routed-expert and other parts, then the KV cache (F16).
    pub fn reads(&self) -> impl Iterator<Item = (&str, f64, bool)> + '_ {
        self.reads_by_type
            .iter()
            .flat_map(|(ty, &bytes)| {
                let expert = self.expert_reads_by_type.get(ty).copied().unwrap_or(0.0);
                [
                    (ty.as_str(), bytes - expert, false),
                    (ty.as_str(), expert, true),
                ]
            })
            .chain([("F16", self.kv_read_bytes, false)])
    }
}

fn progress(msg: &str) {
    eprintln!("calibrate: {msg}");
}

/// What `edge profile calibrate` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct CalibrateOptions {
    /// Models (paths or names) to time; SmolLM2 from the test data or store by default.
    pub models: Vec<String>,
    /// Models timed in the same rounds but held out of the fit, to check the planner.
    pub validate: Vec<String>,
    pub quick: bool,
    pub threads: u32,
}

/// What a calibration measured, fitted and saved.
#[derive(Debug)]
pub struct Calibration {
    /// The saved user profile.
    pub path: PathBuf,
    pub profile: DeviceProfile,
    pub threads: u32,
    pub mem_bytes: usize,
    pub mem_gbs: f64,
    pub ssd: Option<SsdResult>,
    /// (model, tok/s, GFLOPS) of the prefill on the first real model.
    pub prefill_gflops: Option<(String, f64, f64)>,
    pub fit: Fit,
    pub runs: Vec<ModelRun>,
    /// The GPU's calibration, when there is a GPU.
    pub gpu: Option<super::gpu::GpuCalibration>,
    pub notes: Vec<String>,
}

/// Measures this machine, fits the CPU cost model and saves the user profile
/// `this-machine`. Every model is planned (CPU only: this fits the CPU's cost model)
/// and loaded with the plan applied. `stop` (Ctrl-C) ends it between steps, with
/// nothing saved.
pub fn calibrate(args: &CalibrateOptions, verbose: bool, stop: &AtomicBool) -> Result<Calibration> {
    let dir = user_profile_dir().ok_or_else(|| {
        anyhow!("cannot find a config directory for user profiles; set EDGE_HOME")
    })?;
    let work = Workload::new(args.quick);
    let hw = detect_hardware()?;
    let check = || -> Result<()> {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted; nothing saved");
        }
        Ok(())
    };
    let threads = args.threads;
    let mut notes: Vec<String> = Vec::new();
    // A previous calibration of this machine keeps what this run does not measure.
    let previous = match load_this_machine() {
        Ok(Some((p, _))) if same_machine(&p, &hw.profile) => Some(p),
        Ok(_) => None,
        Err(e) => {
            notes.push(format!(
                "the previous calibration is unreadable and is replaced ({e})"
            ));
            None
        }
    };

    // (a) memory read bandwidth
    let mem_bytes = match hw.ram_available_bytes {
        Some(avail) => work.mem_bytes.min((avail / 4) as usize).max(16 << 20),
        None => work.mem_bytes,
    };
    progress(&format!(
        "memory read bandwidth: {} threads over {}, best of {}",
        threads,
        human_bytes(mem_bytes as u64),
        work.mem_reps
    ));
    let mem_gbs = measure_mem_bandwidth(threads as usize, mem_bytes, work.mem_reps);
    progress(&format!("  {mem_gbs:.2} GB/s"));

    // (b) SSD, on the model store's filesystem
    let store_dir = crate::hub::store::Store::open()?.root().to_path_buf();
    progress(&format!(
        "SSD read: {} file in {}",
        human_bytes(work.ssd_bytes),
        store_dir.display()
    ));
    check()?;
    let ssd = match measure_ssd(&store_dir, work.ssd_bytes, work.ssd_random_reads, stop) {
        Ok(Ok(r)) => {
            progress(&format!(
                "  {:.2} GB/s sequential, {:.2} GB/s random 2 MiB reads{}",
                r.seq_read_gbs,
                r.rand_read_gbs,
                if r.cache_dropped {
                    ""
                } else {
                    " (page cache not dropped: may be optimistic)"
                }
            ));
            if !r.cache_dropped {
                notes.push("the SSD figures may include the page cache (it could not be dropped on this system)".into());
            }
            Some(r)
        }
        Ok(Err(skip)) => {
            notes.push(format!("SSD not measured: {skip}"));
            progress(&format!("  skipped: {skip}"));
            None
        }
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let why = chain.join(": ");
            notes.push(format!("SSD not measured: {why}"));
            progress(&format!("  skipped: {why}"));
            None
        }
    };
    check()?;

    // (c) decode time per token on several models
    let synth_dir = tempfile::Builder::new()
        .prefix("edge-calibrate-")
        .tempdir()
        .context("creating a temporary directory for synthetic models")?;
    let mut models = real_models(&args.models, &mut notes)?;
    let n_real = models.len();
    for (label, spec) in synth_specs(work.wide_synth) {
        let path = synth_dir.path().join(format!("{label}.gguf"));
        write_gguf(&spec, &path).with_context(|| format!("writing the synthetic model {label}"))?;
        models.push((format!("synth {label}"), path));
    }
    if work.wide_synth {
        // K-quant models, dense and MoE: most GGUFs are Q4_K_M, and K-quants dequantize
        // at their own rate (efficiency.cpu_bandwidth).
        let q4_k_m = edge_quant::types::file_type_by_name("Q4_K_M")
            .ok_or_else(|| anyhow!("Q4_K_M is missing from the file-type table"))?;
        let params = QuantizeParams {
            ftype: q4_k_m.ftype,
            threads: threads as i32,
            ..Default::default()
        };
        for label in ["qwen3-wide", "qwen3moe-wide"] {
            let source = synth_dir.path().join(format!("{label}.gguf"));
            let quantized = synth_dir.path().join(format!("{label}-q4_k_m.gguf"));
            progress(&format!("quantizing synth {label} to Q4_K_M"));
            crate::engine::ffi::model_quantize(
                &source,
                &quantized,
                &params,
                Box::new(|_: &str| {}),
            )
            .map_err(|e| anyhow!("quantizing the synthetic model {label}: {e}"))?;
            models.push((format!("synth {label}-q4_k_m"), quantized));
        }
    }
    let n_fit = models.len();
    models.extend(labelled_models(&args.validate)?);
    let mut runs = Vec::new();
    let mut shapes = Vec::new();
    let mut prefill_gflops = None;
    // CPU only, through the planner: calibration fits the CPU's cost model.
    let cpu_only = PlacementRequest {
        vram: Some(0),
        ..Default::default()
    };
    let plan_ctx = u64::from(work.n_gen.max(work.n_prompt));
    let tg = |model: &Model, context: &ContextSpec, repetitions: u32| {
        run_test(
            model,
            &TestParams {
                n_prompt: 0,
                n_gen: work.n_gen,
                repetitions,
                context: context.clone(),
            },
        )
    };
    // Load every model and size its repetitions: one timed run each, small models get
    // more, so that each model is timed for about `gen_secs` in all.
    let mut loaded: Vec<(Model, ContextSpec, u32, Vec<u64>)> = Vec::new();
    for (i, (label, path)) in models.iter().enumerate() {
        check()?;
        progress(&format!("load: {label}"));
        let planned = plan_file(path, label, &cpu_only, Some(plan_ctx), 1, verbose)?;
        if verbose {
            eprint!(
                "{}",
                crate::planner::report::render(&planned.plan, &planned.title(), &|s| s.to_string())
            );
        }
        let model = planned.load(&LoadOptions {
            verbose,
            progress: false,
        })?;
        let context = planned.context(threads);
        let first = tg(&model, &context, 1)?;
        let once = first[0] as f64 / 1e9;
        let reps = ((work.gen_secs / once.max(1e-6)).ceil() as u32).clamp(work.gen_reps, 40);
        if i == 0 && n_real > 0 {
            // Prefill on the first real model gives the CPU matmul rate.
            let pp = run_test(
                &model,
                &TestParams {
                    n_prompt: work.n_prompt,
                    n_gen: 0,
                    repetitions: 1,
                    context: context.clone(),
                },
            )?;
            let secs = pp.iter().sum::<u64>() as f64 / 1e9 / pp.len().max(1) as f64;
            let tok_s = f64::from(work.n_prompt) / secs;
            let gflops = 2.0 * model.n_params() as f64 * tok_s / 1e9;
            progress(&format!(
                "  prefill {tok_s:.1} tok/s = {gflops:.1} GFLOPS achieved"
            ));
            prefill_gflops = Some((label.clone(), tok_s, gflops));
        }
        loaded.push((model, context, reps, Vec::new()));
    }
    // Time the models in interleaved rounds: a machine whose speed drifts for a minute
    // (other tenants, clocks) then shifts every model alike instead of one.
    for round in 0..work.rounds {
        for ((label, _), (model, context, reps, samples)) in models.iter().zip(loaded.iter_mut()) {
            check()?;
            progress(&format!(
                "decode: {label} ({} x {} tokens, round {}/{})",
                reps.div_ceil(work.rounds),
                work.n_gen,
                round + 1,
                work.rounds
            ));
            samples.extend(tg(model, context, reps.div_ceil(work.rounds))?);
        }
    }
    for (i, ((label, path), (_, _, _, samples))) in models.iter().zip(loaded).enumerate() {
        let gguf = GgufFile::open(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let reads_by_type = decode_reads_by_type(&gguf);
        let expert_reads_by_type = decode_expert_reads_by_type(&gguf);
        let shape = ModelShape::from_gguf(&gguf).ok();
        // The mean context depth of a tg run of n_gen tokens.
        let depth = u64::from(work.n_gen / 2);
        let kv_read = shape.as_ref().map_or(0.0, |s| kv_read_bytes(s, depth));
        let counts = match &shape {
            Some(s) => s.cpu_overhead_counts(),
            None => {
                let layers = gguf.arch_u64("block_count").unwrap_or(0);
                OverheadCounts {
                    layers,
                    nodes: GRAPH_NODES_BASE + TYPICAL_DENSE_LAYER_NODES * layers,
                    ..Default::default()
                }
            }
        };
        // The median repetition: robust to a run disturbed by other processes.
        let ms = median_ns(samples) / 1e6 / f64::from(work.n_gen);
        progress(&format!(
            "{label}: {:.1} tok/s ({ms:.3} ms/token)",
            1e3 / ms
        ));
        shapes.push(shape);
        runs.push(ModelRun {
            label: label.clone(),
            held_out: i >= n_fit,
            path: path.clone(),
            architecture: gguf.architecture().unwrap_or("?").to_string(),
            counts,
            read_bytes: reads_by_type.values().sum::<f64>() + kv_read,
            reads_by_type,
            expert_reads_by_type,
            kv_read_bytes: kv_read,
            planner_read_bytes: crate::planner::decode_read_bytes(&gguf),
            n_gen: work.n_gen,
            measured_ms: ms,
            measured_tok_s: 1e3 / ms,
            predicted_tok_s: 0.0,
            error_pct: 0.0,
            planner_tok_s: None,
        });
    }

    check()?;
    let ms_at = |bytes: f64| bytes / (mem_gbs * 1e9) * 1e3;
    let samples: Vec<DecodeSample> = runs
        .iter()
        .filter(|r| !r.held_out)
        .map(|r| {
            let mut read_ms = [0.0; 4];
            for (ty, bytes, expert) in r.reads() {
                read_ms[ReadGroup::of_weight(ty, expert) as usize] += ms_at(bytes);
            }
            DecodeSample {
                counts: r.counts,
                read_ms,
                measured_ms: r.measured_ms,
            }
        })
        .collect();
    // What is not fitted keeps the previous calibration's value, else the default.
    let base_eff = previous
        .as_ref()
        .map(|p| p.efficiency.clone())
        .unwrap_or_else(default_efficiency);
    let fit = fit_decode(
        &samples,
        [
            base_eff.cpu_bandwidth,
            base_eff.cpu_bandwidth_for(LEGACY_QUANT_TYPES[1]),
            base_eff.cpu_bandwidth_for(FLOAT_TYPES[1]),
            base_eff
                .cpu_expert_bandwidth
                .unwrap_or(base_eff.cpu_bandwidth),
        ],
    );
    notes.extend(fit.notes.iter().cloned());

    // The profile: detected hardware, measured figures, the previous calibration (or the
    // defaults) for what was not measured.
    let mut profile = hw.profile.clone();
    profile.name = THIS_MACHINE.to_string();
    profile.origin = ProfileOrigin::User;
    if let Some(prev) = &previous {
        profile.ssd = prev.ssd.clone();
        profile.cpu.matmul_gflops = prev.cpu.matmul_gflops;
        profile.efficiency = prev.efficiency.clone();
        for g in &mut profile.gpus {
            if let Some(s) = prev.gpus.iter().find(|s| s.name == g.name) {
                *g = GpuSpec {
                    vram_bytes: g.vram_bytes,
                    ..s.clone()
                };
            }
        }
    } else {
        profile.efficiency = default_efficiency();
        crate::profile::detect::adopt_shipped_gpu_factors(&mut profile);
    }
    profile.cpu.mem_bandwidth_gbs = round3(mem_gbs);
    if let Some(r) = &ssd {
        profile.ssd = SsdSpec {
            seq_read_gbs: round3(r.seq_read_gbs),
            rand_read_gbs: round3(r.rand_read_gbs),
        };
    }
    if let Some((_, _, gflops)) = &prefill_gflops {
        // The planner multiplies by cpu_compute: store the peak that gives this rate.
        profile.cpu.matmul_gflops = round3(gflops / profile.efficiency.cpu_compute);
    }
    // K/IQ quants (what most GGUFs are) set the default for quantized types; legacy
    // quants and floats get their own entries. A legacy fit stands in for the default
    // when no K-quant model was timed.
    let eff = |g: ReadGroup| round4(fit.efficiency[g as usize]);
    let fitted = |g: ReadGroup| fit.fitted[g as usize];
    if fitted(ReadGroup::KQuant) {
        profile.efficiency.cpu_bandwidth = eff(ReadGroup::KQuant);
    } else if fitted(ReadGroup::Legacy) {
        profile.efficiency.cpu_bandwidth = eff(ReadGroup::Legacy);
    }
    if fitted(ReadGroup::ExpertKQuant) {
        profile.efficiency.cpu_expert_bandwidth = Some(eff(ReadGroup::ExpertKQuant));
    }
    for (group, types) in [
        (ReadGroup::Legacy, &LEGACY_QUANT_TYPES[..]),
        (ReadGroup::Float, &FLOAT_TYPES[..]),
    ] {
        if fitted(group) {
            for ty in types {
                profile
                    .efficiency
                    .cpu_type_bandwidth
                    .insert(ty.to_string(), eff(group));
            }
        }
    }
    profile.efficiency.token_overhead_ms = round4(fit.token_overhead_ms);
    // The per-layer term is replaced by the per-node one (an MoE layer has more nodes).
    profile.efficiency.layer_overhead_ms = 0.0;
    profile.efficiency.node_overhead_ms = round6(fit.node_overhead_ms);
    profile.efficiency.graph_build_node_ms = round6(fit.graph_build_node_ms);
    profile.efficiency.expert_slice_ms = round6(fit.expert_slice_ms);
    profile.description = format!(
        "This machine, calibrated: {}, {} RAM, {:.1} GB/s",
        profile.cpu.model,
        human_bytes(profile.memory.ram_bytes),
        profile.cpu.mem_bandwidth_gbs
    );
    // The GPU: its factors fitted on the same models placed wholly in VRAM.
    let gpu = if hw.gpus.is_empty() || profile.gpus.is_empty() {
        notes.push("no GPU: GPU bandwidth and host-to-GPU copies not measured".into());
        None
    } else {
        check()?;
        let (with_gpu, gpu) = super::gpu::calibrate_gpu(
            &models[..n_fit],
            &profile,
            threads,
            work.n_gen,
            work.gen_reps,
            verbose,
            stop,
        )?;
        profile = with_gpu;
        notes.extend(gpu.notes.iter().cloned());
        Some(gpu)
    };
    // Predictions of the calibrated cost model, and of the planner as it stands.
    let mut planner_differs = false;
    for (r, shape) in runs.iter_mut().zip(&shapes) {
        r.predicted_tok_s = 1e3 / profile.cpu_decode_ms_typed(&r.counts, r.reads());
        r.error_pct = (r.predicted_tok_s - r.measured_tok_s) / r.measured_tok_s * 100.0;
        r.planner_tok_s = shape
            .as_ref()
            .map(|s| planner_decode_tok_s(s, &profile, 2 * u64::from(r.n_gen / 2).max(1)));
        if let Some(p) = r.planner_tok_s {
            planner_differs |= (p / r.predicted_tok_s - 1.0).abs() > 0.05;
            if r.held_out {
                // What a held-out model checks is the planner's own prediction.
                r.predicted_tok_s = p;
            }
        }
        r.error_pct = (r.predicted_tok_s - r.measured_tok_s) / r.measured_tok_s * 100.0;
    }
    if planner_differs {
        notes.push(
            "`edge plan` predicts speeds more than 5 % from the fitted model for some models (see --json: planner_tok_s)".into(),
        );
    }

    // Validate through the same parser the planner uses, then save.
    let body = profile.to_toml();
    DeviceProfile::parse(THIS_MACHINE, &body)
        .map_err(|e| anyhow!("the calibrated profile is invalid: {e}"))?;
    let text = format!(
        "{}{body}",
        header(&profile, threads, &ssd, &prefill_gflops, &fit, runs.len())
    );
    let path = save_profile(&dir, &text)?;

    Ok(Calibration {
        path,
        profile,
        threads,
        mem_bytes,
        mem_gbs,
        ssd,
        prefill_gflops,
        fit,
        runs,
        gpu,
        notes,
    })
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

fn header(
    p: &DeviceProfile,
    threads: u32,
    ssd: &Option<SsdResult>,
    prefill: &Option<(String, f64, f64)>,
    fit: &Fit,
    n_models: usize,
) -> String {
    let mut h = String::new();
    h.push_str(&format!(
        "# Written by `edge profile calibrate` (edge {}) on {}.\n",
        env!("CARGO_PKG_VERSION"),
        today()
    ));
    h.push_str("#\n# Sources: measured on this machine.\n");
    h.push_str(&format!(
        "# - cpu.mem_bandwidth_gbs: {threads} threads summing a buffer, best of several runs.\n"
    ));
    match ssd {
        Some(r) => h.push_str(&format!(
            "# - ssd: a {} file in {}, page cache dropped: {}; random = {} reads of 2 MiB.\n",
            human_bytes(r.file_bytes),
            r.dir.display(),
            r.cache_dropped,
            r.rand_reads
        )),
        None => h.push_str("# - ssd: not measured (previous calibration or defaults).\n"),
    }
    if let Some((m, tok_s, g)) = prefill {
        h.push_str(&format!(
            "# - cpu.matmul_gflops: prefill of {m} at {tok_s:.1} tok/s = {g:.1} GFLOPS, divided by cpu_compute {}.\n",
            p.efficiency.cpu_compute
        ));
    }
    h.push_str(&format!(
        "# - efficiency.cpu_bandwidth (K/IQ quants), cpu_type_bandwidth (legacy quants, F32/F16/\n#   BF16 and the KV cache), token_overhead_ms, node_overhead_ms, graph_build_node_ms,\n#   expert_slice_ms: fit of T_tok = token + n_nodes * node + rebuilt_nodes * graph_build\n#   + expert_slices * expert_slice\n#   + sum over types of bytes / (efficiency * mem_bandwidth) to measured decode times of\n#   {} models (mean abs error {:.1} %; fitted K/IQ, legacy, float, routed-expert K/IQ:\n#   {:?}); cpu_expert_bandwidth: routed-expert weights in K/IQ quants.\n",
        n_models, fit.mean_abs_error_pct, fit.fitted
    ));
    h.push_str("# - GPU figures: shipped profile of the same GPU or defaults (not measured).\n");
    h
}

fn today() -> String {
    crate::chat_template::strftime_utc("%F", crate::hub::store::now_unix() as i64)
}

/// Writes `<dir>/this-machine.toml` through a partial file and a rename.
fn save_profile(dir: &Path, text: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{THIS_MACHINE}.toml"));
    crate::partial_file::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("saving {}", path.display()))?;
    Ok(path)
}

/// The real models to time: the ones given, else SmolLM2 from the test data or the store.
/// Models named on the command line (paths or names), each labelled by its file name.
fn labelled_models(given: &[String]) -> Result<Vec<(String, PathBuf)>> {
    given
        .iter()
        .map(|m| {
            let path = crate::resolve::resolve_model(m)?;
            let label = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| m.clone());
            Ok((label, path))
        })
        .collect()
}

fn real_models(given: &[String], notes: &mut Vec<String>) -> Result<Vec<(String, PathBuf)>> {
    let mut out = labelled_models(given)?;
    if !out.is_empty() {
        return Ok(out);
    }
    let test_data = Path::new("target/test-data/smollm2-135m-instruct-q4_1.gguf");
    if test_data.is_file() {
        out.push((
            "smollm2-135m-instruct-q4_1".to_string(),
            test_data.to_path_buf(),
        ));
        return Ok(out);
    }
    if let Ok(installed) = crate::hub::installed() {
        if let Some((m, _)) = installed
            .iter()
            .find(|(m, ok)| *ok && m.name.eq_ignore_ascii_case("smollm2-135m"))
        {
            out.push((m.id(), m.path.clone()));
            return Ok(out);
        }
    }
    notes.push(
        "no real model to time (pass --model, or `edge pull smollm2-135m`): the fit uses synthetic models only".into(),
    );
    Ok(out)
}

/// Synthetic models that give the fit leverage: tiny ones with 2 to 24 layers (per-token
/// and per-node overheads; llama4's graph is rebuilt per token), MoE ones (density k/E), and,
/// unless quick, wide ones whose
/// weights do not fit in the CPU caches (bandwidth).
fn synth_specs(wide: bool) -> Vec<(String, SynthSpec)> {
    let mut out = vec![
        ("qwen3".to_string(), SynthSpec::new(SynthArch::Qwen3)),
        ("qwen3moe".to_string(), SynthSpec::new(SynthArch::Qwen3Moe)),
        ("llama4".to_string(), SynthSpec::new(SynthArch::Llama4)),
    ];
    let mut deep = SynthSpec::new(SynthArch::Qwen3);
    deep.n_layer = 12;
    out.push(("qwen3-12l".to_string(), deep));
    if wide {
        let mut deeper = SynthSpec::new(SynthArch::Qwen3);
        deeper.n_layer = 24;
        out.push(("qwen3-24l".to_string(), deeper));
        let mut w = SynthSpec::new(SynthArch::Qwen3);
        w.n_layer = 8;
        w.n_embd = 1024;
        w.n_ff = 4096;
        w.n_head = 8;
        w.n_head_kv = 2;
        w.head_dim = 128;
        out.push(("qwen3-wide".to_string(), w));
        let mut wm = SynthSpec::new(SynthArch::Qwen3Moe);
        wm.n_layer = 4;
        wm.n_embd = 1024;
        wm.n_ff = 512;
        wm.n_expert = 32;
        wm.n_expert_used = 8;
        wm.n_head = 8;
        wm.n_head_kv = 2;
        wm.head_dim = 128;
        out.push(("qwen3moe-wide".to_string(), wm));
        let mut wl = SynthSpec::new(SynthArch::Llama4);
        wl.n_layer = 8;
        wl.n_embd = 1024;
        wl.n_ff = 1024;
        wl.n_expert = 8;
        wl.n_expert_used = 1;
        wl.n_head = 16;
        wl.n_head_kv = 8;
        out.push(("llama4-wide".to_string(), wl));
    }
    out
}

/// The planner's decode prediction for `shape` on `profile`, all on the CPU, tok/s.
fn planner_decode_tok_s(shape: &ModelShape, profile: &DeviceProfile, ctx: u64) -> f64 {
    let req = PlanRequest {
        ctx: Some(ctx.max(1)),
        vram: Some(0),
        ram: Some(1 << 50),
        ..Default::default()
    };
    plan_model(shape, profile, &req).predicted.decode_tok_s
}
