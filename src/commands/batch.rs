//! `edge batch MODEL --input jobs.jsonl --output results.jsonl`: offline JSONL jobs,
//! continuous batching, resumable, shardable; `edge batch merge` joins shard outputs.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;

use crate::batch::runner::{self, RunnerOptions};
use crate::batch::{
    append_record, check_output_dir, error_key, error_record, merge, prepare_output, read_input,
    read_records, sort_output, write_records_atomically, Shard,
};
use crate::engine::{default_threads, LoadOptions, Model};
use crate::resolve::resolve_model;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub merge: Option<BatchCommand>,
    /// Model: a path to a .gguf file.
    #[arg(required = true)]
    pub model: Option<String>,
    /// Requests, one JSON object per line (OpenAI batch format or {"id", "prompt"|"messages"}).
    #[arg(short, long, required = true)]
    pub input: Option<PathBuf>,
    /// Results, appended one JSON line per finished request; reruns resume from it.
    #[arg(short, long, required = true)]
    pub output: Option<PathBuf>,
    /// Sequences decoded together (continuous batching).
    #[arg(short = 'p', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallel: u32,
    /// Context per sequence, in tokens (prompt + answer).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..))]
    pub ctx: Option<u32>,
    /// Maximum answer tokens for requests that set no max_tokens.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,
    /// Temperature for requests that set none (default: the model's own defaults).
    #[arg(long)]
    pub temp: Option<f32>,
    /// Base seed: each request's seed derives from it and its custom_id.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Only run the requests of shard K of N (stable by custom_id), e.g. 2/8.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Rewrite the output in input order when the run completes.
    #[arg(long)]
    pub ordered: bool,
    /// CPU threads (default: physical cores).
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Combine shard outputs; checks every id is present exactly once.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard output files.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Merged output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The original input, to report ids that no shard produced.
    #[arg(short, long)]
    pub input: Option<PathBuf>,
}

pub fn run(args: BatchArgs, verbose: bool) -> Result<ExitCode> {
    if let Some(BatchCommand::Merge(m)) = args.merge {
        return run_merge(m);
    }
    let (Some(model_name), Some(input), Some(output)) = (args.model, args.input, args.output)
    else {
        bail!("edge batch needs MODEL, --input and --output");
    };
    if let Some(t) = args.temp {
        if !(t.is_finite() && t >= 0.0) {
            bail!("--temp must be a finite number >= 0");
        }
    }
    let path = resolve_model(&model_name)?;
    check_output_dir(&output)?;
    let parsed = read_input(&input)?;
    let (mut out, done) = prepare_output(&output)?;

    // Work out what this run still has to do.
    let shard_ok = |key: &str| args.shard.is_none_or(|s| s.owns(key));
    let pending_errors: Vec<_> = parsed
        .errors
        .iter()
        .filter(|e| {
            shard_ok(
                &e.custom_id
                    .clone()
                    .unwrap_or_else(|| format!("line:{}", e.line)),
            )
        })
        .filter(|e| !done.contains(&error_key(e)))
        .collect();
    let in_shard: Vec<_> = parsed
        .requests
        .iter()
        .filter(|r| shard_ok(&r.custom_id))
        .collect();
    let todo: Vec<_> = in_shard
        .iter()
        .filter(|r| !done.contains(&r.custom_id))
        .map(|r| (*r).clone())
        .collect();
    let total = in_shard.len() + pending_errors.len();
    let already = in_shard.len() - todo.len();
    if already > 0 {
        eprintln!(
            "edge: resuming: {already} requests already in {}",
            output.display()
        );
    }

    let mut n_failed = 0usize;
    for e in &pending_errors {
        // A duplicate's id already belongs to the earlier line's record: keep each
        // custom_id on exactly one output line (the message names the id).
        let id = e
            .custom_id
            .as_deref()
            .filter(|_| e.code != "duplicate_custom_id");
        let message = format!("line {}: {}", e.line, e.message);
        append_record(&mut out, &error_record(id, e.line, e.code, &message))?;
        n_failed += 1;
    }

    let mut n_ok = 0usize;
    let mut tokens = 0usize;
    let mut prompt_tokens = 0usize;
    let mut started = Instant::now();
    let stop = super::signals::interrupt_flag()?;
    if !todo.is_empty() {
        let model = Model::load(
            &path,
            &LoadOptions {
                verbose,
                progress: !args.quiet,
            },
        )?;
        started = Instant::now(); // throughput excludes loading
        let ctx_per_seq = args.ctx.unwrap_or_else(|| model.default_ctx());
        let opts = RunnerOptions {
            parallel: args.parallel,
            ctx_per_seq,
            threads: args.threads.unwrap_or_else(default_threads),
            n_batch: 512.max(args.parallel),
            default_max_tokens: args.max_tokens,
            default_temperature: args.temp,
            seed: args.seed,
            model_name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| model_name.clone()),
        };
        let bar = progress_bar(todo.len() as u64, args.quiet);
        runner::run(&model, todo, &opts, &stop, &mut |finished| {
            append_record(&mut out, &finished.record)?;
            if finished.ok {
                n_ok += 1;
            } else {
                n_failed += 1;
            }
            tokens += finished.completion_tokens;
            prompt_tokens += finished.prompt_tokens;
            bar.inc(1);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{:.1} tok/s", tokens as f64 / secs));
            Ok(())
        })?;
        bar.finish_and_clear();
    }
    drop(out);

    let secs = started.elapsed().as_secs_f64();
    let interrupted = stop.load(Ordering::SeqCst);
    eprintln!(
        "edge: batch {}: {} ok, {} failed, {} done earlier, of {} in {}",
        if interrupted {
            "interrupted"
        } else {
            "finished"
        },
        n_ok,
        n_failed,
        already,
        total,
        if args.shard.is_some() {
            "this shard"
        } else {
            "the input"
        },
    );
    if n_ok > 0 {
        let secs = secs.max(1e-9);
        eprintln!(
            "edge: {prompt_tokens} prompt + {tokens} generated tokens in {secs:.2} s: aggregate {:.1} tok/s, generation {:.1} tok/s",
            (prompt_tokens + tokens) as f64 / secs,
            tokens as f64 / secs
        );
    }
    if interrupted {
        eprintln!("edge: rerun the same command to resume");
        return Ok(ExitCode::from(130));
    }
    if args.ordered {
        sort_output(&output)?;
    }
    // Failures recorded by earlier runs count too: the exit code describes the file.
    let failed_total = read_records(&output)?
        .iter()
        .filter(|r| !r.get("error").is_none_or(|e| e.is_null()))
        .count();
    Ok(if failed_total > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn run_merge(m: MergeArgs) -> Result<ExitCode> {
    check_output_dir(&m.output)?;
    let outputs = m
        .shards
        .iter()
        .map(|p| read_records(p))
        .collect::<Result<Vec<_>>>()?;
    let input_ids: Option<Vec<String>> = match &m.input {
        Some(p) => Some(
            read_input(p)?
                .requests
                .into_iter()
                .map(|r| r.custom_id)
                .collect(),
        ),
        None => None,
    };
    let report = merge(&outputs, input_ids.as_deref());
    if !report.duplicates.is_empty() {
        let shown: Vec<_> = report.duplicates.iter().take(10).cloned().collect();
        bail!(
            "{} ids appear in more than one shard output (e.g. {}); nothing written",
            report.duplicates.len(),
            shown.join(", ")
        );
    }
    write_records_atomically(&m.output, &report.records)?;
    let unique: HashSet<_> = report
        .records
        .iter()
        .filter_map(crate::batch::record_key)
        .collect();
    if !report.missing.is_empty() {
        let shown: Vec<_> = report.missing.iter().take(10).cloned().collect();
        eprintln!(
            "edge: merged {} records into {}; {} ids are missing: {}",
            unique.len(),
            m.output.display(),
            report.missing.len(),
            shown.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    eprintln!(
        "edge: merged {} records into {}",
        unique.len(),
        m.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    crate::term::progress_bar(
        len,
        "batch [{bar:30}] {pos}/{len} requests, {msg}, ETA {eta}",
        quiet,
    )
}
