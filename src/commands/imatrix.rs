//! `edge imatrix MODEL --text FILE -o imatrix.gguf`: an importance matrix from
//! calibration text, collected through llama.cpp's eval callback and written in
//! llama.cpp's GGUF imatrix format (per-expert counts for MoE tensors included), so
//! `llama-quantize --imatrix` reads it too. `--resume` continues an interrupted run;
//! `--merge` adds other imatrix files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};

use super::args::{plan_for, plan_report, with_hints, PlacementArgs, ThreadArgs};
use crate::engine::Placement;
use crate::gguf_info::{check_loadable, GgufFile};
use crate::quantize::imatrix_file::Imatrix;
use crate::quantize::imatrix_run::{collect, save_atomic, ImatrixJob};

#[derive(Debug, clap::Args)]
pub struct ImatrixArgs {
    /// The model (F16/BF16 ideally; the one you will quantize).
    pub model: Option<PathBuf>,
    /// Calibration text (UTF-8).
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Output imatrix file.
    #[arg(short, long, value_name = "FILE", default_value = "imatrix.gguf")]
    pub output: PathBuf,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=131072))]
    pub ctx: u32,
    /// Process at most this many chunks.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunks: Option<u64>,
    /// Continue from the chunks already in OUTPUT (same model and text).
    #[arg(long)]
    pub resume: bool,
    /// Add these imatrix files (of the same model) to the result.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub merge: Vec<PathBuf>,
    /// Save OUTPUT every N chunks, so an interrupted run can resume.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub save_every: u64,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
}

pub fn run(args: ImatrixArgs, verbose: bool) -> Result<ExitCode> {
    let out = &args.output;
    if out.is_dir() {
        bail!("output {} is a directory", out.display());
    }
    let mut base = Imatrix::default();
    if args.resume {
        if !out.exists() {
            bail!("--resume: {} does not exist yet", out.display());
        }
        base = Imatrix::load(out).context("--resume")?;
    }
    for m in &args.merge {
        let other = Imatrix::load(m).with_context(|| format!("--merge {}", m.display()))?;
        if base.entries.is_empty() && base.chunk_count == 0 {
            base = other;
        } else {
            base.merge(&other)
                .with_context(|| format!("--merge {}", m.display()))?;
        }
    }

    let Some(model) = &args.model else {
        if args.merge.is_empty() {
            bail!("missing the model (edge imatrix MODEL --text FILE -o imatrix.gguf)");
        }
        save_atomic(&base, out)?;
        eprintln!(
            "merged {} files: {} entries, {} chunks -> {}",
            args.merge.len(),
            base.entries.len(),
            base.chunk_count,
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let text_path = args
        .text
        .as_ref()
        .ok_or_else(|| anyhow!("missing --text FILE (the calibration text)"))?;
    let text = std::fs::read(text_path)
        .with_context(|| format!("cannot read the text {}", text_path.display()))?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow!("{} is not UTF-8 text", text_path.display()))?;
    let gguf = GgufFile::open(model).map_err(|e| anyhow!("{}: {e}", model.display()))?;
    check_loadable(&gguf).map_err(|e| anyhow!("{}: {e}", model.display()))?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!(
                "cannot write {}: directory {} does not exist",
                out.display(),
                parent.display()
            );
        }
    }
    // Planned for one chunk of context; the plan's placement and KV type are applied.
    // Planned for one chunk of context; the plan's placement and KV type are applied.
    let planned = plan_for(
        model,
        &model.display().to_string(),
        &args.placement,
        Some(u64::from(args.ctx)),
        1,
        verbose,
    )?;
    if verbose {
        eprint!("{}", plan_report(&planned));
    }
    planned.check_fits().map_err(|e| with_hints(e.into()))?;
    let placement = Placement::from_plan(&planned.plan);
    let spec = planned.context(args.threads.get());

    let skip = if args.resume {
        base.chunk_count as usize
    } else {
        0
    };
    let dataset = text_path.display().to_string();
    if !base.datasets.contains(&dataset) {
        base.datasets.push(dataset);
    }
    base.chunk_size = args.ctx;
    let bar = crate::term::progress_bar(1, "imatrix [{bar:30}] chunk {pos}/{len} ({eta})", false);
    let job = ImatrixJob {
        model,
        placement: &placement,
        context: &spec,
        text: &text,
        output: out,
        skip,
        limit: args.chunks.map(|c| c as usize),
        save_every: args.save_every as usize,
    };
    let summary = collect(&job, &base, &mut |d, t| {
        bar.set_length(t as u64);
        bar.set_position(d as u64);
    })
    .map_err(with_hints)?;
    bar.finish_and_clear();
    if summary.chunks_done == 0 && skip >= summary.chunks_total {
        bail!(
            "--resume: {} already covers all {} chunks of the text",
            out.display(),
            summary.chunks_total
        );
    }
    eprintln!(
        "imatrix: {} chunks of {} tokens, {} tensors ({} with per-expert counts) in {:.1}s -> {}",
        summary.chunks_done,
        args.ctx,
        summary.tensors,
        summary.expert_tensors,
        summary.secs,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
