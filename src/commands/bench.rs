//! `edge bench MODEL`: prompt processing (pp) and generation (tg) speed, measured the
//! way llama.cpp's `llama-bench` measures them (random tokens, warmup run, KV cache
//! cleared before each repetition), with its JSON field names.

use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use serde_json::json;

use crate::cli::BenchArgs;
use crate::engine::{backend, default_threads, LoadOptions, Model};
use crate::resolve::resolve_model;

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

/// A small LCG so runs are reproducible without a dependency; llama-bench uses rand().
struct TokenRng(u64, i32);
impl TokenRng {
    fn next(&mut self) -> LlamaToken {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        LlamaToken(((self.0 >> 33) % self.1 as u64) as i32)
    }
}

fn test_prompt(
    ctx: &mut LlamaContext<'_>,
    model: &Model,
    n_prompt: u32,
    n_batch: u32,
    rng: &mut TokenRng,
) -> Result<()> {
    let vocab = model.llama.vocab();
    let mut batch = LlamaBatch::new(n_batch as usize, 1);
    let mut done = 0u32;
    while done < n_prompt {
        let n = (n_prompt - done).min(n_batch);
        batch.clear();
        for i in 0..n {
            let tok = if done == 0 && i == 0 && vocab.should_add_bos() {
                vocab.bos()
            } else {
                rng.next()
            };
            batch.add(tok, (done + i) as i32, &[0], i + 1 == n)?;
        }
        ctx.decode(&mut batch)
            .map_err(|e| anyhow!("decode failed: {e}"))?;
        done += n;
    }
    ctx.synchronize();
    Ok(())
}

fn test_gen(
    ctx: &mut LlamaContext<'_>,
    model: &Model,
    n_gen: u32,
    start_pos: i32,
    rng: &mut TokenRng,
) -> Result<()> {
    let vocab = model.llama.vocab();
    let mut tok = if vocab.should_add_bos() {
        vocab.bos()
    } else {
        rng.next()
    };
    let mut batch = LlamaBatch::new(1, 1);
    for i in 0..n_gen {
        batch.clear();
        batch.add(tok, start_pos + i as i32, &[0], true)?;
        ctx.decode(&mut batch)
            .map_err(|e| anyhow!("decode failed: {e}"))?;
        ctx.synchronize();
        tok = rng.next();
    }
    Ok(())
}

/// One llama-bench test: `n_prompt` prompt tokens, or `n_gen` generated ones.
#[derive(Debug, Clone)]
pub struct TestParams {
    pub n_prompt: u32,
    pub n_gen: u32,
    pub batch_size: u32,
    pub ubatch_size: u32,
    pub threads: u32,
    pub repetitions: u32,
}

/// Runs one test the way llama-bench does, on a fresh context: a warmup (the full prompt,
/// or one generated token), then `repetitions` timed runs, the KV cache cleared before each.
/// Returns each run's wall time in ns. `edge profile calibrate` measures tg with it, so its
/// figures are the ones `edge bench` reports.
pub fn run_test(model: &Model, t: &TestParams, verbose: bool) -> Result<Vec<u64>> {
    let mut rng = TokenRng(1234, model.llama.n_vocab());
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(t.n_prompt + t.n_gen))
        .with_n_batch(t.batch_size)
        .with_n_ubatch(t.ubatch_size)
        .with_n_threads(t.threads as i32)
        .with_n_threads_batch(t.threads as i32);
    let mut ctx = model
        .llama
        .new_context(backend(verbose)?, params)
        .map_err(|e| anyhow!("cannot create a context: {e}"))?;
    // Warmup, as llama-bench: a full prompt run, or one generated token.
    if t.n_prompt > 0 {
        test_prompt(&mut ctx, model, t.n_prompt, t.batch_size, &mut rng)?;
    }
    if t.n_gen > 0 {
        test_gen(&mut ctx, model, 1, 0, &mut rng)?;
    }
    let mut samples_ns = Vec::new();
    for _ in 0..t.repetitions {
        ctx.clear_kv_cache();
        let started = Instant::now();
        if t.n_prompt > 0 {
            test_prompt(&mut ctx, model, t.n_prompt, t.batch_size, &mut rng)?;
        }
        if t.n_gen > 0 {
            test_gen(&mut ctx, model, t.n_gen, 0, &mut rng)?;
        }
        samples_ns.push(started.elapsed().as_nanos() as u64);
    }
    Ok(samples_ns)
}

pub fn run(args: BenchArgs, verbose: bool) -> Result<ExitCode> {
    let path = resolve_model(&args.model)?;
    let model = Model::load(
        &path,
        &LoadOptions {
            verbose,
            progress: false,
        },
    )?;
    let threads = args.threads.unwrap_or_else(default_threads);
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
                batch_size: args.batch_size,
                ubatch_size: args.ubatch_size,
                threads,
                repetitions: args.repetitions,
            },
            verbose,
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
                    "model_size": model.llama.size(),
                    "model_n_params": model.llama.n_params(),
                    "n_batch": args.batch_size,
                    "n_ubatch": args.ubatch_size,
                    "n_threads": threads,
                    "type_k": "f16",
                    "type_v": "f16",
                    "n_gpu_layers": 0,
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
                crate::term::human_bytes(model.llama.size()),
                crate::term::human_count(model.llama.n_params()),
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
