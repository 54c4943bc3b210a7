//! `edge profile list | show NAME | detect | calibrate`: the device profiles the planner
//! plans for. `detect` describes this machine; `calibrate` measures it (memory and SSD
//! bandwidth, decode cost per token) and saves the user profile `this-machine`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use super::args::ThreadArgs;
use crate::calibrate::run::{calibrate as run_calibration, CalibrateOptions, Calibration};
use crate::profile::detect::{detect, Detection};
use crate::profile::{all_profiles, find_profile, user_profile_dir, DeviceProfile, ProfileOrigin};
use crate::term::{human_bytes, print_table};

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
    /// Measure this machine and save it as the user profile `this-machine`: memory, SSD, CPU
    /// decode and prefill, and on a GPU its bandwidth per weight type, kernel cost, prefill
    /// rate and host-to-GPU copies.
    Calibrate(CalibrateArgs),
    /// Check the planner against published llama-bench results: each row's predicted /
    /// measured decode (tg128) and prefill (pp512) speed, and a summary for the rows the
    /// factors were fitted on and for the held-out third.
    Published(PublishedArgs),
}

#[derive(Debug, clap::Args)]
pub struct PublishedArgs {
    /// The table (CSV, as profiles/measured/llama-bench.csv). Default: the shipped one.
    #[arg(long, value_name = "CSV")]
    pub table: Option<std::path::PathBuf>,
    /// Refit each backend's shared efficiency factors on the fit rows first, and print them.
    #[arg(long)]
    pub fit: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
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
    #[command(flatten)]
    pub threads: ThreadArgs,
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
        ProfileCommand::Published(a) => published(a),
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

fn calibrate(args: CalibrateArgs, verbose: bool) -> Result<ExitCode> {
    // Ctrl-C stops between steps (and between SSD blocks, so the test file is removed).
    let stop = super::signals::interrupt_flag()?;
    let json = args.json;
    let Calibration {
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
    } = run_calibration(
        &CalibrateOptions {
            models: args.models,
            validate: args.validate,
            quick: args.quick,
            threads: args.threads.get(),
        },
        verbose,
        &stop,
    )?;
    if json {
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
                "gpu": gpu,
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
        if let Some(g) = &gpu {
            println!();
            println!(
                "| {} | weights | decode tok/s | predicted | prefill tok/s | predicted |",
                g.device
            );
            println!("| --- | ---: | ---: | ---: | ---: | ---: |");
            for r in &g.runs {
                println!(
                    "| {} | {} | {:.1} | {:.1} | {:.0} | {:.0} |",
                    r.label,
                    human_bytes(r.weight_bytes),
                    r.decode_tok_s,
                    r.predicted_decode_tok_s,
                    r.prefill_tok_s,
                    r.predicted_prefill_tok_s
                );
            }
            let factors: Vec<String> = g
                .factors
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            println!("gpu: {}", factors.join(", "));
            match g.h2d_gbs {
                Some(h) => println!("host->gpu copies {h:.2} GB/s"),
                None => println!("host->gpu copies not measured"),
            }
        }
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

// ---------------------------------------------------------------------------------------
// published

fn published(args: PublishedArgs) -> Result<ExitCode> {
    use crate::published::{parse_table, report, Accuracy, TABLE};
    let text = match &args.table {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => TABLE.to_string(),
    };
    let rows = parse_table(&text)?;
    // The shipped profiles only: a user profile of the same name describes other hardware.
    let profiles = crate::profile::builtin_profiles();
    let r = report(&rows, &profiles, args.fit);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let table: Vec<[String; 10]> = r
        .rows
        .iter()
        .map(|p| {
            let row = &rows[p.row];
            [
                p.profile.clone(),
                format!("{} {}", p.model, p.quant),
                if p.holdout { "holdout" } else { "fit" }.to_string(),
                num(p.decode_tok_s),
                num(row.tg128),
                ratio(p.decode_ratio),
                num(p.prefill_tok_s),
                num(row.pp512),
                ratio(p.prefill_ratio),
                row.backend.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "PROFILE", "MODEL", "SPLIT", "TG PRED", "TG MEAS", "RATIO", "PP PRED", "PP MEAS",
            "RATIO", "BACKEND",
        ],
        &table,
    );
    if !r.skipped.is_empty() {
        println!();
        println!("not priced:");
        for s in &r.skipped {
            println!("  row {}: {}: {}", s.row + 2, s.model, s.reason);
        }
    }
    for f in &r.fits {
        println!();
        println!("fitted for {} on {} rows:", f.backend, f.fit_rows);
        for (k, v) in &f.factors {
            println!("  {k} = {v:.4}");
        }
    }
    let line = |what: &str, a: &Accuracy, tol: f64| {
        println!(
            "  {what:<8} {}/{} within ±{:.0} % ({:.0} %), median error {:.0} %",
            a.within,
            a.rows,
            tol * 100.0,
            a.share() * 100.0,
            (a.median_error - 1.0) * 100.0
        );
    };
    for (name, s) in [("fit rows", &r.fit), ("held-out rows", &r.holdout)] {
        println!();
        println!("{name}:");
        line("decode", &s.decode, crate::published::DECODE_TOLERANCE);
        line("prefill", &s.prefill, crate::published::PREFILL_TOLERANCE);
    }
    Ok(ExitCode::SUCCESS)
}
