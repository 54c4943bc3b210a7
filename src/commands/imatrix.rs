//! `edge imatrix MODEL --text FILE -o imatrix.gguf`: an importance matrix from
//! calibration text, collected through llama.cpp's eval callback and written in
//! llama.cpp's GGUF imatrix format (per-expert counts for MoE tensors included), so
//! `llama-quantize --imatrix` reads it too. `--resume` continues an interrupted run;
//! `--merge` adds other imatrix files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use super::args::{plan_report, with_hints, PlacementArgs, ThreadArgs};
use crate::engine::{imatrix_collect, ContextSpec, ImatrixAcc, Placement};
use crate::gguf_info::{check_loadable, GgufFile};
use crate::loading::plan_file;
use crate::quantize::imatrix_file::{Imatrix, ImatrixEntry};

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

/// Writes `im` to a temporary file and renames it over `out`.
fn save_atomic(im: &Imatrix, out: &Path) -> Result<()> {
    let tmp = crate::quantize::temp_path(out);
    if let Err(e) = im.save(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", out.display()));
    }
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!("cannot write {}: {e}", out.display())
    })
}

fn to_imatrix(acc: &ImatrixAcc, base: &Imatrix) -> Result<Imatrix> {
    let mut im = base.clone();
    let mut fresh = Imatrix::default();
    for (name, (sums, counts)) in &acc.entries {
        fresh.entries.insert(
            name.clone(),
            ImatrixEntry {
                sums: sums.clone(),
                counts: counts.clone(),
            },
        );
    }
    im.merge(&fresh)?;
    Ok(im)
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
    let planned = plan_file(
        model,
        &model.display().to_string(),
        &args.placement.request()?,
        Some(u64::from(args.ctx)),
        1,
        verbose,
    )
    .map_err(|e| with_hints(e.into()))?;
    if verbose {
        eprint!("{}", plan_report(&planned));
    }
    planned.check_fits().map_err(|e| with_hints(e.into()))?;
    let placement = Placement::from_plan(&planned.plan);
    let spec = ContextSpec {
        n_ctx: args.ctx,
        ..planned.context(args.threads.get())
    };

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
    let started = Instant::now();
    let mut acc = ImatrixAcc::default();
    // Collect in slices of --save-every chunks, saving after each, so --resume works.
    let mut done_total = 0usize;
    let limit = args.chunks.map(|c| c as usize);
    let mut total_chunks = 0;
    loop {
        let remaining = limit.map(|l| l - done_total);
        if remaining == Some(0) {
            break;
        }
        let step = remaining.map_or(args.save_every as usize, |r| {
            r.min(args.save_every as usize)
        });
        let b2 = bar.clone();
        let (done, total) = imatrix_collect(
            model,
            &placement,
            &spec,
            &text,
            skip + done_total,
            Some(step),
            &mut acc,
            &mut |d, t| {
                b2.set_length(t as u64);
                b2.set_position(d as u64);
            },
        )
        .map_err(|e| with_hints(anyhow::Error::new(e).context(model.display().to_string())))?;
        total_chunks = total;
        done_total += done;
        let mut im = to_imatrix(&acc, &base)?;
        im.chunk_count = base.chunk_count + done_total as u32;
        save_atomic(&im, out)?;
        if done == 0 || skip + done_total >= total {
            break;
        }
    }
    bar.finish_and_clear();
    if done_total == 0 && skip >= total_chunks {
        bail!(
            "--resume: {} already covers all {} chunks of the text",
            out.display(),
            total_chunks
        );
    }
    let experts = acc.entries.values().filter(|(_, c)| c.len() > 1).count();
    eprintln!(
        "imatrix: {} chunks of {} tokens, {} tensors ({} with per-expert counts) in {:.1}s -> {}",
        done_total,
        args.ctx,
        acc.entries.len(),
        experts,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
