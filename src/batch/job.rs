//! One `edge batch` run over an input file: what is still to do (resuming from the
//! output, honouring a shard), the line errors recorded, the requests run on a loaded
//! model, and the summary the exit code comes from.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;

use super::runner::{self, RunnerOptions};
use super::{
    append_record, check_output_dir, error_key, error_record, prepare_output, read_input,
    read_records, sort_output, BatchRequest, Shard,
};
use crate::engine::{BatchSpeculation, ContextSpec, Model};

/// The work of one run, before any model is loaded.
pub struct BatchJob {
    output: PathBuf,
    out: File,
    /// Requests of this shard not yet in the output.
    pub todo: Vec<BatchRequest>,
    /// Requests of this shard already in the output (an earlier run).
    pub already: usize,
    /// Requests and line errors of this shard.
    pub total: usize,
    pub n_ok: usize,
    pub n_failed: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Seconds spent running requests (loading excluded).
    pub secs: f64,
    pub interrupted: bool,
}

impl BatchJob {
    /// Reads `input` and what `output` already holds, and records the input's line
    /// errors that are not recorded yet.
    pub fn open(input: &Path, output: &Path, shard: Option<Shard>) -> Result<BatchJob> {
        check_output_dir(output)?;
        let parsed = read_input(input)?;
        let (mut out, done) = prepare_output(output)?;
        let shard_ok = |key: &str| shard.is_none_or(|s| s.owns(key));
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
        let mut n_failed = 0;
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
        Ok(BatchJob {
            output: output.to_path_buf(),
            out,
            todo,
            already,
            total,
            n_ok: 0,
            n_failed,
            prompt_tokens: 0,
            completion_tokens: 0,
            secs: 0.0,
            interrupted: false,
        })
    }

    /// Runs every pending request on `model` with a context of `spec`, appending each
    /// record as it finishes; `on_progress(done, generated tokens per second)` after
    /// each. Stops early (resumable) when `stop` is set.
    pub fn run(
        &mut self,
        model: &Model,
        spec: &ContextSpec,
        opts: &RunnerOptions,
        stop: &AtomicBool,
        speculation: Option<&BatchSpeculation<'_>>,
        on_progress: &mut dyn FnMut(u64, f64),
    ) -> Result<()> {
        let started = Instant::now();
        let todo = std::mem::take(&mut self.todo);
        let (out, n_ok, n_failed) = (&mut self.out, &mut self.n_ok, &mut self.n_failed);
        let (tokens, prompt_tokens) = (&mut self.completion_tokens, &mut self.prompt_tokens);
        let mut finished = 0u64;
        runner::run(model, spec, todo, opts, stop, speculation, &mut |f| {
            append_record(out, &f.record)?;
            if f.ok {
                *n_ok += 1;
            } else {
                *n_failed += 1;
            }
            *tokens += f.completion_tokens;
            *prompt_tokens += f.prompt_tokens;
            finished += 1;
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            on_progress(finished, *tokens as f64 / secs);
            Ok(())
        })?;
        self.secs = started.elapsed().as_secs_f64();
        self.interrupted = stop.load(Ordering::SeqCst);
        Ok(())
    }

    /// Closes the output (sorted into input order when `ordered` and the run is
    /// complete) and counts the failures it holds, earlier runs' included.
    pub fn finish(self, ordered: bool) -> Result<usize> {
        drop(self.out);
        if self.interrupted {
            return Ok(0);
        }
        if ordered {
            sort_output(&self.output)?;
        }
        Ok(read_records(&self.output)?
            .iter()
            .filter(|r| !r.get("error").is_none_or(|e| e.is_null()))
            .count())
    }
}
