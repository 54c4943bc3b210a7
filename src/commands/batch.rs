//! `edge batch MODEL --input jobs.jsonl --output results.jsonl`: offline JSONL jobs,
//! continuous batching, resumable, shardable; `edge batch merge` joins shard outputs.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use super::args::{
    apply_template, plan_and_load_with_draft, ContextArgs, PlacementArgs, SamplingArgs, SpecArgs,
    SpecChoice, TemplateArgs, ThreadArgs,
};
use crate::batch::job::BatchJob;
use crate::batch::runner::RunnerOptions;
use crate::batch::{
    check_output_dir, merge, read_input, read_records, write_records_atomically, Shard,
};
use crate::engine::{BatchSpeculation, LoadOptions};
use crate::resolve::resolve_model;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub merge: Option<BatchCommand>,
    /// Model: a catalog name, hf.co/ORG/REPO[:QUANT], or a path to a .gguf.
    #[arg(required = true)]
    pub model: Option<String>,
    /// Requests, one JSON object per line (OpenAI batch format or {"id", "prompt"|"messages"}).
    #[arg(short, long, required = true)]
    pub input: Option<PathBuf>,
    /// Results, appended one JSON line per finished request; reruns resume from it.
    #[arg(short, long, required = true)]
    pub output: Option<PathBuf>,
    /// Sequences decoded together (continuous batching); the plan holds a KV cache of
    /// --ctx tokens for each.
    #[arg(short = 'p', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallel: u32,
    /// Maximum answer tokens for requests that set no max_tokens.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,
    /// Only run the requests of shard K of N (stable by custom_id), e.g. 2/8.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Rewrite the output in input order when the run completes.
    #[arg(long)]
    pub ordered: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub template: TemplateArgs,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
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
    let path = resolve_model(&model_name)?;
    let mut job = BatchJob::open(&input, &output, args.shard)?;
    if job.already > 0 {
        eprintln!(
            "edge: resuming: {} requests already in {}",
            job.already,
            output.display()
        );
    }
    let stop = super::signals::interrupt_flag()?;
    let template = args.template.choice()?;
    if !job.todo.is_empty() {
        let spec_choice = args.spec.choice(&model_name, &path)?;
        let loaded = plan_and_load_with_draft(
            &path,
            &model_name,
            &args.placement,
            args.context.ctx.map(u64::from),
            u64::from(args.parallel),
            &LoadOptions {
                verbose,
                progress: !args.quiet,
            },
            &spec_choice,
        )?;
        let (planned, mut model) = (loaded.planned, loaded.model);
        apply_template(&mut model, template.as_ref())?;
        let threads = args.threads.get();
        let spec = planned.context(threads);
        let speculation = match (&spec_choice, &loaded.draft) {
            (SpecChoice::Draft { limits, .. }, Some((draft_plan, draft))) => {
                Some(BatchSpeculation {
                    draft: Some((draft, draft_plan.context(threads))),
                    limits: *limits,
                })
            }
            (SpecChoice::Lookup(limits), _) => Some(BatchSpeculation {
                draft: None,
                limits: *limits,
            }),
            _ => None,
        };
        let opts = RunnerOptions {
            default_max_tokens: args.max_tokens,
            default_sampling: SamplingArgs {
                seed: None,
                ..args.sampling.clone()
            }
            .overrides(),
            seed: args.sampling.seed.unwrap_or(0),
            model_name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| model_name.clone()),
            longer_context_hint: "raise --ctx".into(),
        };
        let bar = crate::term::progress_bar(
            job.todo.len() as u64,
            "batch [{bar:30}] {pos}/{len} requests, {msg}, ETA {eta}",
            args.quiet,
        );
        job.run(
            &model,
            &spec,
            &opts,
            &stop,
            speculation.as_ref(),
            &mut |done, tok_s| {
                bar.set_position(done);
                bar.set_message(format!("{tok_s:.1} tok/s"));
            },
        )?;
        bar.finish_and_clear();
    }

    eprintln!(
        "edge: batch {}: {} ok, {} failed, {} done earlier, of {} in {}",
        if job.interrupted {
            "interrupted"
        } else {
            "finished"
        },
        job.n_ok,
        job.n_failed,
        job.already,
        job.total,
        if args.shard.is_some() {
            "this shard"
        } else {
            "the input"
        },
    );
    if job.n_ok > 0 {
        let secs = job.secs.max(1e-9);
        let (prompt, generated) = (job.prompt_tokens, job.completion_tokens);
        eprintln!(
            "edge: {prompt} prompt + {generated} generated tokens in {secs:.2} s: aggregate {:.1} tok/s, generation {:.1} tok/s",
            (prompt + generated) as f64 / secs,
            generated as f64 / secs
        );
    }
    if job.interrupted {
        eprintln!("edge: rerun the same command to resume");
        job.finish(args.ordered)?;
        return Ok(ExitCode::from(130));
    }
    // Failures recorded by earlier runs count too: the exit code describes the file.
    let failed_total = job.finish(args.ordered)?;
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
