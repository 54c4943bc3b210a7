//! `edge bench MODEL`: prompt processing (pp) and generation (tg) speed, measured the
//! way llama.cpp's `llama-bench` measures them (random tokens, warmup run, KV cache
//! cleared before each repetition), with its JSON field names.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::args::{load_planned, plan_for, PlacementArgs, ThreadArgs};
use crate::engine::{run_test, LoadOptions, TestParams};
use crate::resolve::resolve_model;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model name or path to a .gguf file.
    pub model: String,
    /// Prompt tokens for the prompt-processing test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: u32,
    /// Tokens for the generation test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: u32,
    /// Repetitions per test.
    #[arg(short = 'r', long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub repetitions: u32,
    /// Logical batch size.
    #[arg(short = 'b', long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Layers on the GPU-like devices, as llama-bench's -ngl (default: the plan's).
    #[arg(long = "n-gpu-layers", visible_alias = "ngl", value_name = "N")]
    pub n_gpu_layers: Option<u32>,
    /// Print llama-bench-compatible JSON (`llama-bench -o json`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
}

/// One benchmark test: either a prompt of `n_prompt` tokens or `n_gen` generated tokens.
struct TestResult {
    n_prompt: u32,
    n_gen: u32,
    samples_ns: Vec<u64>,
}

impl TestResult {
    fn tokens(&self) -> u64 {
        u64::from(self.n_prompt + self.n_gen)
    }
    fn samples_ts(&self) -> Vec<f64> {
        self.samples_ns
            .iter()
            .map(|&ns| 1e9 * self.tokens() as f64 / ns as f64)
            .collect()
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

pub fn run(args: BenchArgs, verbose: bool) -> Result<ExitCode> {
    let path = resolve_model(&args.model)?;
    // The plan covers the largest test's context, as llama-bench sizes its contexts.
    let ctx = u64::from(args.n_prompt.max(args.n_gen).max(16));
    let mut planned = plan_for(&path, &args.model, &args.placement, Some(ctx), 1, verbose)?;
    if let Some(ngl) = args.n_gpu_layers {
        // llama-bench's -ngl replaces the plan's layer split (pins still apply).
        planned.plan.llama.n_gpu_layers = ngl;
    }
    let model = load_planned(
        &planned,
        &LoadOptions {
            verbose,
            progress: false,
        },
    )?;
    let threads = args.threads.get();
    let mut context = planned.context(threads);
    context.n_batch = args.batch_size;
    let mut tests = Vec::new();
    if args.n_prompt > 0 {
        tests.push((args.n_prompt, 0));
    }
    if args.n_gen > 0 {
        tests.push((0, args.n_gen));
    }
    let mut results = Vec::new();
    for (n_prompt, n_gen) in tests {
        let samples_ns = run_test(
            &model,
            &TestParams {
                n_prompt,
                n_gen,
                repetitions: args.repetitions,
                context: context.clone(),
            },
        )?;
        results.push(TestResult {
            n_prompt,
            n_gen,
            samples_ns,
        });
    }

    let filename = path.display().to_string();
    let model_type = format!(
        "{} {} {}",
        model.facts.architecture,
        crate::term::human_count(model.facts.n_params),
        model
            .facts
            .quant_mix
            .first()
            .map(|q| q.ggml_type.as_str())
            .unwrap_or("?")
    );
    if args.json {
        let records: Vec<_> = results
            .iter()
            .map(|r| {
                let ns: Vec<f64> = r.samples_ns.iter().map(|&n| n as f64).collect();
                let (avg_ns, stddev_ns) = mean_std(&ns);
                let ts = r.samples_ts();
                let (avg_ts, stddev_ts) = mean_std(&ts);
                json!({
                    "build_commit": crate::engine::ffi::ggml_version(),
                    "build_number": 0,
                    "cpu_info": "",
                    "gpu_info": "",
                    "backends": crate::engine::ffi::backend_names().join(","),
                    "model_filename": filename,
                    "model_type": model_type,
                    "model_size": model.size_bytes(),
                    "model_n_params": model.n_params(),
                    "n_batch": args.batch_size,
                    "n_ubatch": context.n_ubatch,
                    "n_threads": threads,
                    "type_k": planned.plan.llama.type_k.name(),
                    "type_v": planned.plan.llama.type_v.name(),
                    "n_gpu_layers": model.placement.n_gpu_layers,
                    "n_prompt": r.n_prompt,
                    "n_gen": r.n_gen,
                    "n_depth": 0,
                    "test_time": now_rfc3339(),
                    "avg_ns": avg_ns as u64,
                    "stddev_ns": stddev_ns as u64,
                    "avg_ts": avg_ts,
                    "stddev_ts": stddev_ts,
                    "samples_ns": r.samples_ns,
                    "samples_ts": ts,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        println!("| model | size | params | threads | test | t/s |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for r in &results {
            let (avg, std) = mean_std(&r.samples_ts());
            let test = if r.n_prompt > 0 {
                format!("pp{}", r.n_prompt)
            } else {
                format!("tg{}", r.n_gen)
            };
            println!(
                "| {} | {} | {} | {} | {} | {:.2} ± {:.2} |",
                model_type,
                crate::term::human_bytes(model.size_bytes()),
                crate::term::human_count(model.n_params()),
                threads,
                test,
                avg,
                std
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
