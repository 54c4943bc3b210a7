//! An imatrix run: activations collected chunk by chunk through the engine's eval
//! callback (the model placed as its plan says), saved atomically every few chunks so
//! an interrupted run can resume, merged onto what an earlier run or `--merge` gave.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::imatrix_file::{Imatrix, ImatrixEntry};
use crate::engine::{imatrix_collect, ContextSpec, ImatrixAcc, Placement};

/// Writes `im` over `out` (through a partial file, so a reader never sees half).
pub fn save_atomic(im: &Imatrix, out: &Path) -> Result<()> {
    im.save(out)
        .with_context(|| format!("cannot write {}", out.display()))
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

/// What to collect and where to save it.
pub struct ImatrixJob<'a> {
    pub model: &'a Path,
    pub placement: &'a Placement,
    /// Its `n_ctx` is the chunk size.
    pub context: &'a ContextSpec,
    pub text: &'a str,
    pub output: &'a Path,
    /// Chunks to skip (already in `base`, for a resumed run).
    pub skip: usize,
    /// At most this many chunks.
    pub limit: Option<usize>,
    pub save_every: usize,
}

/// What a run collected.
#[derive(Debug, Clone, PartialEq)]
pub struct ImatrixSummary {
    pub chunks_done: usize,
    /// Chunks the whole text holds.
    pub chunks_total: usize,
    pub tensors: usize,
    /// Tensors with per-expert counts (MoE).
    pub expert_tensors: usize,
    pub secs: f64,
}

/// Collects `job` on top of `base`, saving after every `save_every` chunks;
/// `on_chunk(done, total)` after each chunk.
pub fn collect(
    job: &ImatrixJob<'_>,
    base: &Imatrix,
    on_chunk: &mut dyn FnMut(usize, usize),
) -> Result<ImatrixSummary> {
    let started = Instant::now();
    let mut acc = ImatrixAcc::default();
    let mut done_total = 0usize;
    let mut chunks_total = 0;
    let step_max = job.save_every.max(1);
    loop {
        let remaining = job.limit.map(|l| l - done_total);
        if remaining == Some(0) {
            break;
        }
        let step = remaining.map_or(step_max, |r| r.min(step_max));
        let (done, total) = imatrix_collect(
            job.model,
            job.placement,
            job.context,
            job.text,
            job.skip + done_total,
            Some(step),
            &mut acc,
            on_chunk,
        )
        .with_context(|| job.model.display().to_string())?;
        chunks_total = total;
        done_total += done;
        let mut im = to_imatrix(&acc, base)?;
        im.chunk_count = base.chunk_count + done_total as u32;
        save_atomic(&im, job.output)?;
        if done == 0 || job.skip + done_total >= total {
            break;
        }
    }
    Ok(ImatrixSummary {
        chunks_done: done_total,
        chunks_total,
        tensors: acc.entries.len(),
        expert_tensors: acc.entries.values().filter(|(_, c)| c.len() > 1).count(),
        secs: started.elapsed().as_secs_f64(),
    })
}
