//! Quantization through the engine's llama.cpp calls: plans (llama.cpp's own dry run),
//! the quantize-to-fit measurements, atomic output with progress, imatrix files and
//! evaluation (perplexity, KL divergence).
//! The decisions themselves (types, recipes, the budget fitter) live in `edge-quant`.

pub mod eval;
pub mod fitplan;
pub mod gguf_io;
pub mod imatrix_file;
pub mod imatrix_run;
mod source;
pub mod split;

pub use source::{ClassSummary, Plan, PlanEntry, Source};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};
use edge_quant::split::SplitLimits;
use edge_quant::{classify, ggml_type_by_name};

use crate::engine::ffi::{self, QuantizeParams};
use crate::partial_file::PartialFile;
use gguf_io::align;

/// Collects the per-tensor decisions from llama.cpp's log lines
/// (`[  i/  n] NAME - [shape], type = f16, ` then `size = … (q4_K)` or `size = …`).
#[derive(Default)]
struct LogPlan {
    current: Option<(String, String)>,
    decided: Vec<(String, String, String)>,
}

impl LogPlan {
    fn feed(&mut self, line: &str) {
        if let Some((name, from)) = parse_tensor_line(line) {
            self.current = Some((name, from));
            return;
        }
        if let Some(rest) = line.trim_start().strip_prefix("size = ") {
            if let Some((name, from)) = self.current.take() {
                let to = match (rest.rfind('('), rest.rfind(')')) {
                    (Some(a), Some(b)) if b > a => rest[a + 1..b].to_string(),
                    _ => from.clone(),
                };
                self.decided.push((name, from, to));
            }
        }
    }
}

/// `[   3/ 272] blk.0.attn_k.weight - [  576,    64,     1,     1], type =    f16, `
/// -> (name, type).
fn parse_tensor_line(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (counter, rest) = rest.split_once(']')?;
    let (a, b) = counter.split_once('/')?;
    a.trim().parse::<u32>().ok()?;
    b.trim().parse::<u32>().ok()?;
    let (name, rest) = rest.split_once(" - [")?;
    let ty = rest.split_once("type = ")?.1.split(',').next()?.trim();
    Some((name.trim().to_string(), ty.to_string()))
}

/// Asks llama.cpp what it would write (its `dry_run`), and sizes the file exactly.
pub fn dry_run(src: &Source, params: &QuantizeParams) -> Result<Plan> {
    let mut p = params.clone();
    p.dry_run = true;
    let log = Arc::new(Mutex::new(LogPlan::default()));
    let sink = log.clone();
    let scratch = std::env::temp_dir().join("edge-quantize-dry-run.gguf");
    ffi::model_quantize(
        &src.path,
        &scratch,
        &p,
        Box::new(move |l: &str| {
            if let Ok(mut s) = sink.lock() {
                s.feed(l);
            }
        }),
    )
    .map_err(|e| anyhow!("{}: {e}", src.path.display()))?;
    let decided = std::mem::take(&mut log.lock().map_err(|_| anyhow!("log lock"))?.decided);
    let by_name: HashMap<&str, &crate::gguf_info::TensorInfo> = src
        .gguf
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut tensors = Vec::with_capacity(decided.len());
    for (name, from, to) in decided {
        let info = by_name
            .get(name.as_str())
            .ok_or_else(|| anyhow!("llama.cpp planned an unknown tensor {name}"))?;
        let g =
            ggml_type_by_name(&to).ok_or_else(|| anyhow!("unknown ggml type '{to}' for {name}"))?;
        let bytes = if from.eq_ignore_ascii_case(&to) {
            info.bytes
        } else {
            g.tensor_bytes(&info.dims)
                .ok_or_else(|| anyhow!("{name}: type {to} does not fit its shape"))?
        };
        tensors.push(PlanEntry {
            name: name.clone(),
            class: classify(&name).key().to_string(),
            dims: info.dims.clone(),
            from: info.ggml_type.to_string().to_ascii_lowercase(),
            to: g.name.to_string(),
            to_id: g.id,
            bytes,
            bytes_in: info.bytes,
        });
    }
    if tensors.len() != src.gguf.tensors.len() {
        bail!(
            "{}: llama.cpp's plan covers {} of {} tensors (run with -v for its log)",
            src.path.display(),
            tensors.len(),
            src.gguf.tensors.len()
        );
    }
    let a = src.layout.alignment;
    let header_bytes = src.layout.quantized_header_bytes();
    let tensor_bytes: u64 = tensors.iter().map(|t| align(t.bytes, a)).sum();
    let raw: u64 = tensors.iter().map(|t| t.bytes).sum();
    Ok(Plan {
        bpw: raw as f64 * 8.0 / src.n_elements().max(1) as f64,
        tensors,
        header_bytes,
        file_bytes: header_bytes + tensor_bytes,
        tensor_bytes,
    })
}

/// What a quantization wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Bytes in all the files written.
    pub bytes: u64,
    /// With a split asked for, the shards (one: the whole file, when it fits); empty
    /// otherwise.
    pub shards: Vec<split::ShardReport>,
}

/// Quantizes into a partial file next to `out`, then renames it (or, with `split`,
/// splits it into shards, themselves written to partial files and renamed at the end):
/// a failed or interrupted run never leaves a file under `out`'s name, nor a partial set
/// of shards. A disk without room for the planned size is refused before llama.cpp
/// starts, and a disk that fills while it writes is named as such.
pub fn quantize_atomic(
    src: &Source,
    out: &Path,
    params: &QuantizeParams,
    plan: &Plan,
    show_progress: bool,
    split: Option<SplitLimits>,
) -> Result<Written> {
    // A split copies the whole file into shards before the whole file is removed.
    let needed = plan.file_bytes * if split.is_some() { 2 } else { 1 };
    crate::partial_file::remove_partials_on_ctrl_c();
    let partial = PartialFile::create(out, Some(needed))?;
    let tmp = partial.path().to_path_buf();
    let bar = progress_bar(plan, show_progress);
    let sizes: HashMap<String, u64> = plan
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.bytes))
        .collect();
    let n = plan.tensors.len();
    let sink_bar = bar.clone();
    let mut done = 0usize;
    let mut current: Option<String> = None;
    let sink = Box::new(move |l: &str| {
        if let Some((name, _)) = parse_tensor_line(l) {
            sink_bar.set_message(format!("[{}/{n}] {name}", done + 1));
            current = Some(name);
        } else if l.trim_start().starts_with("size = ") {
            if let Some(name) = current.take() {
                done += 1;
                sink_bar.inc(sizes.get(&name).copied().unwrap_or(0));
            }
        }
    });
    let mut p = params.clone();
    p.dry_run = false;
    let result = ffi::model_quantize(&src.path, &tmp, &p, sink);
    bar.finish_and_clear();
    if let Err(e) = result {
        // llama.cpp reports a full disk as a C++ stream error; say what it was.
        let err = partial.fail(std::io::Error::other(e.to_string()), Some(needed));
        return Err(match err {
            crate::partial_file::WriteError::NoSpace { .. } => anyhow!(err),
            _ => anyhow!("quantizing {} failed: {e}", src.path.display()),
        });
    }
    let written = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
    if let Some(limits) = split {
        // `partial` (the whole file) is removed when it goes out of scope.
        if let Some(shards) = split::write_shards(&tmp, out, limits)? {
            drop(partial);
            let shards = split::commit(shards)?;
            return Ok(Written {
                bytes: shards.iter().map(|s| s.bytes).sum(),
                shards,
            });
        }
    }
    partial.commit()?;
    let shards = match split {
        // Asked to split, but everything fits in one file.
        Some(_) => vec![split::ShardReport {
            path: out.to_path_buf(),
            tensors: plan.tensors.len(),
            bytes: written,
        }],
        None => Vec::new(),
    };
    Ok(Written {
        bytes: written,
        shards,
    })
}

fn progress_bar(plan: &Plan, show: bool) -> indicatif::ProgressBar {
    crate::term::progress_bar(
        plan.tensors.iter().map(|t| t.bytes).sum(),
        "quantizing [{bar:30}] {bytes}/{total_bytes} {msg} ({elapsed})",
        !show,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llama_cpp_plan_lines() {
        let mut lp = LogPlan::default();
        lp.feed("[   1/ 272]                    token_embd.weight - [  576, 49152,     1,     1], type =    f16, ");
        lp.feed("size =    54.00 MiB ->    14.34 MiB (q4_K)\n");
        lp.feed("[   2/ 272]               blk.0.attn_norm.weight - [  576,     1,     1,     1], type =    f32, ");
        lp.feed("size =    0.002 MiB\n");
        assert_eq!(
            lp.decided,
            vec![
                ("token_embd.weight".into(), "f16".into(), "q4_K".into()),
                ("blk.0.attn_norm.weight".into(), "f32".into(), "f32".into())
            ]
        );
        assert!(parse_tensor_line("llama_model_loader: - kv   0: general.architecture").is_none());
    }
}
