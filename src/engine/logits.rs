//! Whole-chunk evaluation, as llama.cpp's `llama-perplexity` and `llama-imatrix` run
//! it: chunks of `n_ctx` tokens, each from an empty cache with BOS first. The logits
//! feed perplexity and KL divergence; the imatrix path collects activations instead.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::context::{new_context, ContextSpec};
use super::error::EngineError;
use super::ffi::{self, ImatrixAcc};
use super::model::{Model, Placement};

/// Tokenizes `text` as the evaluators do: BOS as the model wants it, no special-token
/// parsing.
pub fn tokenize_text(model: &Model, text: &str) -> Vec<LlamaToken> {
    model.llama.vocab().tokenize(text.as_bytes(), true, false)
}

/// A context that scores chunks of `spec.n_ctx` tokens.
pub struct LogitsRunner<'m> {
    ctx: LlamaContext<'m>,
    n_ctx: u32,
    bos: Option<LlamaToken>,
}

impl<'m> LogitsRunner<'m> {
    /// A runner whose whole chunk is one logical batch.
    pub fn new(model: &'m Model, spec: &ContextSpec) -> Result<LogitsRunner<'m>, EngineError> {
        let spec = ContextSpec {
            n_batch: spec.n_ctx,
            n_seq: 1,
            ..spec.clone()
        };
        Ok(LogitsRunner {
            ctx: new_context(model, &spec)?,
            n_ctx: spec.n_ctx,
            bos: model.leading_bos(),
        })
    }

    /// Evaluates one chunk of exactly `n_ctx` tokens and calls `each(logits, next_token)`
    /// for every position of its second half but the last.
    pub fn chunk(
        &mut self,
        toks: &[LlamaToken],
        mut each: impl FnMut(&[f32], usize),
    ) -> Result<(), EngineError> {
        self.ctx.clear_kv_cache();
        let n = self.n_ctx as usize;
        let first = n / 2;
        let mut batch = LlamaBatch::new(n, 1);
        for (k, &t) in toks.iter().take(n).enumerate() {
            let t = if k == 0 { self.bos.unwrap_or(t) } else { t };
            batch
                .add(t, k as i32, &[0], k >= first)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
        }
        self.ctx
            .decode(&mut batch)
            .map_err(|e| EngineError::Decode(e.to_string()))?;
        for j in first..n.min(toks.len()) - 1 {
            let logits = self.ctx.get_logits_ith(j as i32);
            each(logits, toks[j + 1].0 as usize);
        }
        Ok(())
    }
}

/// Runs the model at `path`, placed as `placement`, over `text` in chunks of
/// `spec.n_ctx` tokens, skipping the first `skip` chunks and stopping after `max` more,
/// and adds the activations of every matrix multiplication to `acc`. `on_chunk(done,
/// total)` is called after each chunk. Returns (chunks done, total).
#[allow(clippy::too_many_arguments)]
pub fn imatrix_collect(
    path: &std::path::Path,
    placement: &Placement,
    spec: &ContextSpec,
    text: &str,
    skip: usize,
    max: Option<usize>,
    acc: &mut ImatrixAcc,
    on_chunk: &mut dyn FnMut(usize, usize),
) -> Result<(usize, usize), EngineError> {
    let spec = ContextSpec {
        n_batch: spec.n_ctx,
        n_seq: 1,
        ..spec.clone()
    };
    ffi::imatrix_collect(
        path,
        placement.n_gpu_layers,
        &placement.cpu_overrides,
        &spec.raw_params(),
        text,
        skip,
        max,
        acc,
        on_chunk,
    )
}
