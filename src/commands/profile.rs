//! `edge profile list | show NAME | detect | calibrate`: the device profiles the planner
//! plans for. `detect` describes this machine; `calibrate` measures it (memory and SSD
//! bandwidth, decode cost per token) and saves the user profile `this-machine`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::commands::bench::{run_test, TestParams};
use crate::engine::{default_threads, LoadOptions, Model};
use crate::gguf_info::GgufFile;
use crate::planner::model::{GRAPH_NODES_BASE, TYPICAL_DENSE_LAYER_NODES};
use crate::planner::{plan as plan_model, ModelShape, PlanRequest};
use crate::profile::calibrate::{
    decode_expert_reads_by_type, decode_reads_by_type, fit_decode, kv_read_bytes,
    measure_mem_bandwidth, measure_ssd, DecodeSample, Fit, ReadGroup, SsdResult, FLOAT_TYPES,
    LEGACY_QUANT_TYPES,
};
use crate::profile::detect::{
    default_efficiency, detect, detect_hardware, load_this_machine, same_machine, Detection,
    THIS_MACHINE,
};
use crate::profile::OverheadCounts;
use crate::profile::{
    all_profiles, find_profile, user_profile_dir, DeviceProfile, GpuSpec, ProfileOrigin, SsdSpec,
};
use crate::synth::{write_gguf, SynthArch, SynthSpec};
use crate::term::human_bytes;
use crate::term::print_table;

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    #[command(subcommand)]
    pub command: ProfileCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// List the shipped and user profiles (user ones shadow shipped ones of the same name).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one profile.
    Show {
        /// Profile name (see `edge profile list`).
        name: String,
        /// Print the profile as JSON.
        #[arg(long, conflicts_with = "toml")]
        json: bool,
        /// Print the profile as TOML (a starting point for your own).
        #[arg(long)]
        toml: bool,
    },
    /// Describe this machine: RAM, cores, CPU, GPUs (with free memory), bandwidths.
    Detect {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure this machine and save it as the user profile `this-machine`.
    Calibrate(CalibrateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// A GGUF (path or model name) to time decoding on; repeatable. Default: SmolLM2-135M
    /// from target/test-data or the store, when there. Synthetic models are always added.
    #[arg(long = "model", value_name = "PATH")]
    pub models: Vec<String>,
    /// Also time this GGUF in the same rounds, held out of the fit, and report how far
    /// `edge plan`'s prediction with the new profile is from it; repeatable.
    #[arg(long = "validate", value_name = "PATH")]
    pub validate: Vec<String>,
    /// Small buffers and few tokens: seconds instead of about a minute, less precise.
    #[arg(long)]
    pub quick: bool,
    /// CPU threads (default: physical cores, as `edge run` and `edge bench`).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Print the saved profile and the measurements as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ProfileArgs, verbose: bool) -> Result<ExitCode> {
    match args.command {
        ProfileCommand::List { json } => list(json),
        ProfileCommand::Show { name, json, toml } => show(&name, json, toml),
        ProfileCommand::Detect { json } => detect_cmd(json),
        ProfileCommand::Calibrate(a) => calibrate(a, verbose),
    }
}

// ---------------------------------------------------------------------------------------
// list / show / detect

fn list(json: bool) -> Result<ExitCode> {
    let dir = user_profile_dir();
    let profiles = all_profiles(dir.as_deref())?;
    if json {
        let rows: Vec<_> = profiles
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "origin": p.origin,
                    "backend": p.backend,
                    "vram_bytes": p.vram_bytes(),
                    "ram_bytes": p.memory.ram_bytes,
                    "unified": p.memory.unified,
                    "description": p.description,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = profiles
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                origin_label(p.origin).to_string(),
                p.backend.clone(),
                vram_label(p),
                human_bytes(p.memory.ram_bytes),
                p.description.clone(),
            ]
        })
        .collect();
    print_table(
        &["NAME", "ORIGIN", "BACKEND", "VRAM", "RAM", "DESCRIPTION"],
        &rows,
    );
    if let Some(d) = dir {
        println!("\nuser profiles: {}", d.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn origin_label(o: ProfileOrigin) -> &'static str {
    match o {
        ProfileOrigin::Builtin => "builtin",
        ProfileOrigin::User => "user",
        ProfileOrigin::Detected => "detected",
    }
}

fn vram_label(p: &DeviceProfile) -> String {
    if p.memory.unified {
        "unified".into()
    } else if p.gpus.is_empty() {
        "-".into()
    } else {
        human_bytes(p.vram_bytes())
    }
}

fn show(name: &str, json: bool, toml: bool) -> Result<ExitCode> {
    let dir = user_profile_dir();
    let p = find_profile(name, dir.as_deref())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else if toml {
        print!("{}", p.to_toml());
    } else {
        print_summary(&p);
        if p.origin == ProfileOrigin::User {
            if let Some(d) = &dir {
                let f = d.join(format!("{name}.toml"));
                if f.exists() {
                    println!("  file          {}", f.display());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `272 GB/s`, `1.5 GB/s`, `0.45 GB/s`.
fn gbs(v: f64) -> String {
    let s = format!("{v:.2}");
    format!("{} GB/s", s.trim_end_matches('0').trim_end_matches('.'))
}

fn print_summary(p: &DeviceProfile) {
    println!("{} ({})", p.name, origin_label(p.origin));
    println!("  {}", p.description);
    println!("  backend       {}", p.backend);
    let m = &p.memory;
    let mut mem = format!(
        "{} RAM, {} kept for the OS",
        human_bytes(m.ram_bytes),
        human_bytes(m.os_reserve_bytes)
    );
    if m.unified {
        mem.push_str(&format!(
            "; unified, the GPU may use {:.0} %",
            m.gpu_working_set_fraction * 100.0
        ));
    }
    println!("  memory        {mem}");
    for (i, g) in p.gpus.iter().enumerate() {
        let vram = if m.unified {
            "shared memory".to_string()
        } else {
            format!("{} VRAM", human_bytes(g.vram_bytes))
        };
        let mut line = format!(
            "{}: {vram}, {}, {} TFLOPS FP16",
            g.name,
            gbs(g.bandwidth_gbs),
            g.fp16_tflops
        );
        if g.h2d_pinned_gbs > 0.0 || g.h2d_pageable_gbs > 0.0 {
            line.push_str(&format!(
                ", host->GPU {} pinned / {} pageable",
                gbs(g.h2d_pinned_gbs),
                gbs(g.h2d_pageable_gbs)
            ));
        }
        println!("  gpu {i:<9} {line}");
    }
    let c = &p.cpu;
    println!(
        "  cpu           {}: {} cores{}, {} memory read, {:.0} GFLOPS matmul",
        c.model,
        c.cores,
        if c.isa.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.isa.join(" "))
        },
        gbs(c.mem_bandwidth_gbs),
        c.matmul_gflops
    );
    println!(
        "  ssd           {} sequential, {} random (2 MB reads)",
        gbs(p.ssd.seq_read_gbs),
        gbs(p.ssd.rand_read_gbs)
    );
    let e = &p.efficiency;
    println!(
        "  efficiency    bandwidth GPU {:.2} CPU {:.2}; compute GPU {:.2} CPU {:.2}",
        e.gpu_bandwidth, e.cpu_bandwidth, e.gpu_compute, e.cpu_compute
    );
    println!(
        "  overheads     {:.3} ms per token, {:.4} ms per layer, {:.2} us per graph node, {:.2} ms per GPU<->CPU sync",
        e.token_overhead_ms, e.layer_overhead_ms, e.node_overhead_ms * 1e3, e.sync_ms
    );
}

fn detect_cmd(json: bool) -> Result<ExitCode> {
    let d = detect()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&detection_json(&d))?);
        return Ok(ExitCode::SUCCESS);
    }
    print_summary(&d.profile);
    if let Some(a) = d.ram_available_bytes {
        println!("  ram free      {}", human_bytes(a));
    }
    for g in &d.gpus {
        println!(
            "  {:<13} {} ({}): {} free of {}{}",
            g.device,
            g.description,
            g.backend,
            human_bytes(g.memory_free_bytes),
            human_bytes(g.memory_total_bytes),
            g.figures_from
                .as_ref()
                .map(|n| format!("; bandwidth from the shipped profile {n}"))
                .unwrap_or_default()
        );
    }
    if d.gpus.is_empty() {
        println!("  gpus          none (llama.cpp sees only the CPU)");
    }
    match &d.calibration {
        Some(p) => println!("  calibration   {}", p.display()),
        None => println!("  calibration   none"),
    }
    for n in &d.notes {
        eprintln!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

fn detection_json(d: &Detection) -> serde_json::Value {
    json!({
        "profile": d.profile,
        "origin": d.profile.origin,
        "calibrated": d.calibration.is_some(),
        "calibration": d.calibration,
        "ram_available_bytes": d.ram_available_bytes,
        "gpus": d.gpus,
        "notes": d.notes,
    })
}

// ---------------------------------------------------------------------------------------
// calibrate

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

#[derive(Debug, Clone, Serialize)]
struct ModelRun {
    label: String,
    /// Timed for `--validate`, not used in the fit.
    held_out: bool,
    path: PathBuf,
    architecture: String,
    /// Layers, graph nodes, rebuilt graph nodes and routed-expert matrices per token.
    counts: OverheadCounts,
    /// Weight bytes one token reads, per ggml type (tied output head included).
    reads_by_type: BTreeMap<String, f64>,
    /// The routed-expert part of `reads_by_type`.
    expert_reads_by_type: BTreeMap<String, f64>,
    /// KV-cache bytes one token reads at the mean depth of the timed decode.
    kv_read_bytes: f64,
    /// All of the above, bytes.
    read_bytes: f64,
    /// `planner::decode_read_bytes`, for comparison.
    planner_read_bytes: u64,
    n_gen: u32,
    measured_ms: f64,
    measured_tok_s: f64,
    /// The calibrated profile's cost model (`DeviceProfile::cpu_decode_ms_typed`).
    predicted_tok_s: f64,
    error_pct: f64,
    /// What `planner::plan` predicts with the calibrated profile today.
    planner_tok_s: Option<f64>,
}

impl ModelRun {
    /// One token's reads as `(ggml type, bytes, routed expert)`: the weights split into
    /// their routed-expert and other parts, then the KV cache (F16).
    fn reads(&self) -> impl Iterator<Item = (&str, f64, bool)> + '_ {
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

fn calibrate(args: CalibrateArgs, verbose: bool) -> Result<ExitCode> {
    let dir = user_profile_dir().ok_or_else(|| {
        anyhow!("cannot find a config directory for user profiles; set EDGE_HOME")
    })?;
    let work = Workload::new(args.quick);
    let hw = detect_hardware()?;
    // Ctrl-C stops between steps (and between SSD blocks, so the test file is removed).
    let stop = crate::commands::signals::interrupt_flag()?;
    let check = || -> Result<()> {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted; nothing saved");
        }
        Ok(())
    };
    let threads = args.threads.unwrap_or_else(default_threads);
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
    let ssd = match measure_ssd(&store_dir, work.ssd_bytes, work.ssd_random_reads, &stop) {
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
        let params = crate::engine::ffi::QuantizeParams {
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
    let tg = |model: &Model, repetitions: u32| {
        run_test(
            model,
            &TestParams {
                n_prompt: 0,
                n_gen: work.n_gen,
                batch_size: 2048,
                ubatch_size: 512,
                threads,
                repetitions,
            },
            verbose,
        )
    };
    // Load every model and size its repetitions: one timed run each, small models get
    // more, so that each model is timed for about `gen_secs` in all.
    let mut loaded: Vec<(Model, u32, Vec<u64>)> = Vec::new();
    for (i, (label, path)) in models.iter().enumerate() {
        check()?;
        progress(&format!("load: {label}"));
        let model = Model::load(
            path,
            &LoadOptions {
                verbose,
                progress: false,
            },
        )?;
        let first = tg(&model, 1)?;
        let once = first[0] as f64 / 1e9;
        let reps = ((work.gen_secs / once.max(1e-6)).ceil() as u32).clamp(work.gen_reps, 40);
        if i == 0 && n_real > 0 {
            // Prefill on the first real model gives the CPU matmul rate.
            let pp = run_test(
                &model,
                &TestParams {
                    n_prompt: work.n_prompt,
                    n_gen: 0,
                    batch_size: 2048,
                    ubatch_size: 512,
                    threads,
                    repetitions: 1,
                },
                verbose,
            )?;
            let secs = pp.iter().sum::<u64>() as f64 / 1e9 / pp.len().max(1) as f64;
            let tok_s = f64::from(work.n_prompt) / secs;
            let gflops = 2.0 * model.llama.n_params() as f64 * tok_s / 1e9;
            progress(&format!(
                "  prefill {tok_s:.1} tok/s = {gflops:.1} GFLOPS achieved"
            ));
            prefill_gflops = Some((label.clone(), tok_s, gflops));
        }
        loaded.push((model, reps, Vec::new()));
    }
    // Time the models in interleaved rounds: a machine whose speed drifts for a minute
    // (other tenants, clocks) then shifts every model alike instead of one.
    for round in 0..work.rounds {
        for ((label, _), (model, reps, samples)) in models.iter().zip(loaded.iter_mut()) {
            check()?;
            progress(&format!(
                "decode: {label} ({} x {} tokens, round {}/{})",
                reps.div_ceil(work.rounds),
                work.n_gen,
                round + 1,
                work.rounds
            ));
            samples.extend(tg(model, reps.div_ceil(work.rounds))?);
        }
    }
    for (i, ((label, path), (_, _, samples))) in models.iter().zip(loaded).enumerate() {
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
    if !hw.gpus.is_empty() {
        notes.push(
            "GPU bandwidth and host-to-GPU copies are not measured yet: the GPU figures come from the shipped profile of the same GPU, or defaults".into(),
        );
    } else {
        notes.push("no GPU: GPU bandwidth and host-to-GPU copies not measured".into());
    }
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

    if args.json {
        let out = json!({
            "path": path,
            "profile": profile,
            "measurements": {
                "threads": threads,
                "mem_buffer_bytes": mem_bytes,
                "mem_bandwidth_gbs": mem_gbs,
                "ssd": ssd,
                "prefill": prefill_gflops.as_ref().map(|(m, tok_s, g)| json!({"model": m, "tok_s": tok_s, "gflops": g})),
                "fit": fit,
                "models": runs,
            },
            "notes": notes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "| model | layers | graph nodes | read/token | measured tok/s | predicted tok/s | error |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for r in &runs {
            println!(
                "| {}{} | {} | {} | {} | {:.2} | {:.2} | {:+.1} % |",
                r.label,
                if r.held_out { " (held out)" } else { "" },
                r.counts.layers,
                r.counts.nodes,
                human_bytes(r.read_bytes as u64),
                r.measured_tok_s,
                r.predicted_tok_s,
                r.error_pct
            );
        }
        println!();
        println!(
            "memory read {:.2} GB/s x efficiency {:.3} K/IQ quants ({:.3} as routed experts), {:.3} legacy quants, {:.3} F32/F16/BF16; overheads {:.4} ms/token + {:.2} us/graph node (+ {:.2} us when rebuilt per token) + {:.2} us/expert matrix",
            profile.cpu.mem_bandwidth_gbs,
            profile.efficiency.cpu_bandwidth,
            profile
                .efficiency
                .cpu_expert_bandwidth
                .unwrap_or(profile.efficiency.cpu_bandwidth),
            profile.efficiency.cpu_bandwidth_for("Q4_1"),
            profile.efficiency.cpu_bandwidth_for("F16"),
            profile.efficiency.token_overhead_ms,
            profile.efficiency.node_overhead_ms * 1e3,
            profile.efficiency.graph_build_node_ms * 1e3,
            profile.efficiency.expert_slice_ms * 1e3
        );
        match &ssd {
            Some(r) => println!(
                "ssd {:.2} GB/s sequential, {:.2} GB/s random 2 MiB reads",
                r.seq_read_gbs, r.rand_read_gbs
            ),
            None => println!("ssd not measured"),
        }
        if let Some(worst) = runs
            .iter()
            .filter(|r| r.held_out)
            .map(|r| r.error_pct.abs())
            .max_by(f64::total_cmp)
        {
            println!("held-out models: `edge plan` within {worst:.1} % of measured decode");
        }
        println!("saved {}", path.display());
        for n in &notes {
            eprintln!("note: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn median_ns(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    match v.len() {
        0 => f64::NAN,
        n if !n.is_multiple_of(2) => v[n / 2] as f64,
        n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
    }
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
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = (secs / 86400) as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Writes `<dir>/this-machine.toml` through a temporary file and a rename.
fn save_profile(dir: &Path, text: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{THIS_MACHINE}.toml"));
    let mut tmp = tempfile::Builder::new()
        .prefix(".this-machine-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .with_context(|| format!("writing in {}", dir.display()))?;
    tmp.persist(&path)
        .map_err(|e| anyhow!("saving {}: {}", path.display(), e.error))?;
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
