//! The one context builder. Every llama.cpp context edge creates (chat, batch, bench,
//! eval, imatrix) is described by a [`ContextSpec`], normally filled from the plan
//! ([`ContextSpec::from_plan`]), and built by [`new_context`].

use std::num::NonZeroU32;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;

use super::backend::backend;
use super::error::EngineError;
use super::ffi;
use super::model::Model;
use crate::planner::{KvType, Plan};

/// What a llama.cpp context holds and how it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextSpec {
    /// Cells of KV cache in all (per sequence times `n_seq`).
    pub n_ctx: u32,
    /// Logical batch: tokens per `llama_decode` call.
    pub n_batch: u32,
    /// Physical batch: tokens per graph run.
    pub n_ubatch: u32,
    /// Sequences decoded together; each gets its own KV stream when above 1.
    pub n_seq: u32,
    pub threads: u32,
    /// KV-cache types; `None` leaves llama.cpp's default (F16).
    pub type_k: Option<KvType>,
    pub type_v: Option<KvType>,
    /// `Some(true)` requires flash attention, `Some(false)` forbids it, `None` is
    /// llama.cpp's "auto" (on where the backend supports it).
    pub flash_attn: Option<bool>,
}

impl Default for ContextSpec {
    fn default() -> Self {
        ContextSpec {
            n_ctx: 4096,
            n_batch: 2048,
            n_ubatch: 512,
            n_seq: 1,
            threads: super::backend::default_threads(),
            type_k: None,
            type_v: None,
            flash_attn: None,
        }
    }
}

impl ContextSpec {
    /// The context a plan chose: `plan.ctx` cells per sequence for `plan.parallel`
    /// sequences, its KV type and ubatch. Flash attention stays on llama.cpp's "auto"
    /// unless a quantized V cache needs it.
    pub fn from_plan(plan: &Plan, threads: u32) -> ContextSpec {
        let n_seq = plan.parallel.max(1) as u32;
        let n_ctx = (plan.ctx as u32).saturating_mul(n_seq);
        ContextSpec {
            n_ctx,
            n_batch: 2048.min(n_ctx).max(1),
            n_ubatch: plan.n_ubatch as u32,
            n_seq,
            threads,
            type_k: Some(plan.llama.type_k),
            type_v: Some(plan.llama.type_v),
            flash_attn: (plan.llama.flash_attn && plan.llama.type_v != KvType::F16).then_some(true),
        }
    }

    /// Context cells each sequence may use.
    pub fn ctx_per_seq(&self) -> u32 {
        self.n_ctx / self.n_seq.max(1)
    }

    /// The batch sizes clamped as llama.cpp needs them (ubatch <= batch <= ctx).
    fn clamped(&self) -> (u32, u32) {
        let n_batch = self.n_batch.min(self.n_ctx).max(1);
        (n_batch, self.n_ubatch.min(n_batch).max(1))
    }

    fn params(&self) -> LlamaContextParams {
        let (n_batch, n_ubatch) = self.clamped();
        let mut params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_ubatch)
            .with_n_threads(self.threads as i32)
            .with_n_threads_batch(self.threads as i32);
        if self.n_seq > 1 {
            // One KV stream per sequence: attention then spans only that sequence's
            // cells (a unified cache makes every token attend over all sequences').
            params = params.with_n_seq_max(self.n_seq).with_kv_unified(false);
        }
        if let Some(t) = self.type_k {
            params = params.with_type_k(kv_cache_type(t));
        }
        if let Some(t) = self.type_v {
            params = params.with_type_v(kv_cache_type(t));
        }
        if let Some(fa) = self.flash_attn {
            params = params.with_flash_attention_policy(ffi::flash_attn_policy(fa));
        }
        params
    }

    /// The same settings as llama.cpp's raw struct, for the imatrix path (which needs
    /// an eval callback the safe crate does not expose).
    pub(super) fn raw_params(&self) -> ffi::RawContextParams {
        let (n_batch, n_ubatch) = self.clamped();
        ffi::RawContextParams {
            n_ctx: self.n_ctx,
            n_batch,
            n_ubatch,
            n_seq: self.n_seq,
            threads: self.threads as i32,
            type_k: self.type_k.map(|t| kv_cache_type(t).into()),
            type_v: self.type_v.map(|t| kv_cache_type(t).into()),
            flash_attn: self.flash_attn,
        }
    }
}

fn kv_cache_type(t: KvType) -> KvCacheType {
    match t {
        KvType::F16 => KvCacheType::F16,
        KvType::Q8_0 => KvCacheType::Q8_0,
        KvType::Q4_0 => KvCacheType::Q4_0,
    }
}

/// Creates a context on `model`; the error carries llama.cpp's reason.
pub(super) fn new_context<'m>(
    model: &'m Model,
    spec: &ContextSpec,
) -> Result<LlamaContext<'m>, EngineError> {
    let backend = backend(false)?;
    ffi::take_recent_errors();
    model
        .llama
        .new_context(backend, spec.params())
        .map_err(|e| EngineError::Context {
            n_ctx: spec.n_ctx,
            for_seqs: if spec.n_seq > 1 {
                format!(" for {} sequences", spec.n_seq)
            } else {
                String::new()
            },
            reason: ffi::last_error_line(&e.to_string()),
        })
}
