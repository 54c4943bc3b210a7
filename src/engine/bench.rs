//! The bench loop, as llama.cpp's `llama-bench` runs it: random tokens, a warmup run,
//! the KV cache cleared before each timed repetition. `edge bench` reports it and
//! `edge profile calibrate` times decodes with it, so both give the same figures.

use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::context::{new_context, ContextSpec};
use super::error::EngineError;
use super::model::Model;

/// One llama-bench test: `n_prompt` prompt tokens, or `n_gen` generated ones, on a
/// context described by `context` (its `n_ctx` is set to `n_prompt + n_gen`).
#[derive(Debug, Clone)]
pub struct TestParams {
    pub n_prompt: u32,
    pub n_gen: u32,
    pub repetitions: u32,
    pub context: ContextSpec,
}

/// A small LCG so runs are reproducible without a dependency; llama-bench uses rand().
struct TokenRng(u64, i32);
impl TokenRng {
    fn next(&mut self) -> LlamaToken {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        LlamaToken(((self.0 >> 33) % self.1.max(1) as u64) as i32)
    }
}

fn decode(ctx: &mut LlamaContext<'_>, batch: &mut LlamaBatch) -> Result<(), EngineError> {
    ctx.decode(batch)
        .map_err(|e| EngineError::Decode(e.to_string()))
}

fn add(batch: &mut LlamaBatch, tok: LlamaToken, pos: u32, logits: bool) -> Result<(), EngineError> {
    batch
        .add(tok, pos as i32, &[0], logits)
        .map_err(|e| EngineError::Decode(e.to_string()))
}

fn test_prompt(
    ctx: &mut LlamaContext<'_>,
    model: &Model,
    n_prompt: u32,
    n_batch: u32,
    rng: &mut TokenRng,
) -> Result<(), EngineError> {
    let bos = model.leading_bos();
    let mut batch = LlamaBatch::new(n_batch as usize, 1);
    let mut done = 0u32;
    while done < n_prompt {
        let n = (n_prompt - done).min(n_batch);
        batch.clear();
        for i in 0..n {
            let tok = match bos {
                Some(b) if done == 0 && i == 0 => b,
                _ => rng.next(),
            };
            add(&mut batch, tok, done + i, i + 1 == n)?;
        }
        decode(ctx, &mut batch)?;
        done += n;
    }
    ctx.synchronize();
    Ok(())
}

fn test_gen(
    ctx: &mut LlamaContext<'_>,
    model: &Model,
    n_gen: u32,
    rng: &mut TokenRng,
) -> Result<(), EngineError> {
    let mut tok = model.leading_bos().unwrap_or_else(|| rng.next());
    let mut batch = LlamaBatch::new(1, 1);
    for i in 0..n_gen {
        batch.clear();
        add(&mut batch, tok, i, true)?;
        decode(ctx, &mut batch)?;
        ctx.synchronize();
        tok = rng.next();
    }
    Ok(())
}

/// Runs one test the way llama-bench does, on a fresh context: a warmup (the full prompt,
/// or one generated token), then `repetitions` timed runs, the KV cache cleared before
/// each. Returns each run's wall time in ns.
pub fn run_test(model: &Model, t: &TestParams) -> Result<Vec<u64>, EngineError> {
    let mut rng = TokenRng(1234, model.n_vocab() as i32);
    let spec = ContextSpec {
        n_ctx: (t.n_prompt + t.n_gen).max(1),
        n_seq: 1,
        ..t.context.clone()
    };
    let mut ctx = new_context(model, &spec)?;
    let n_batch = ctx.n_batch();
    // Warmup, as llama-bench: a full prompt run, or one generated token.
    if t.n_prompt > 0 {
        test_prompt(&mut ctx, model, t.n_prompt, n_batch, &mut rng)?;
    }
    if t.n_gen > 0 {
        test_gen(&mut ctx, model, 1, &mut rng)?;
    }
    let mut samples_ns = Vec::new();
    for _ in 0..t.repetitions {
        ctx.clear_kv_cache();
        let started = Instant::now();
        if t.n_prompt > 0 {
            test_prompt(&mut ctx, model, t.n_prompt, n_batch, &mut rng)?;
        }
        if t.n_gen > 0 {
            test_gen(&mut ctx, model, t.n_gen, &mut rng)?;
        }
        samples_ns.push(started.elapsed().as_nanos() as u64);
    }
    Ok(samples_ns)
}
