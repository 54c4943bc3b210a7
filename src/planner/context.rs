//! The longest context a model can run with on a device, per KV cache type: the plan's
//! memory fit searched over the context length, bounded by what the model supports
//! (its training context, or its YaRN extension). Llama 4 Scout's 10M-token window is
//! bounded by memory on every device, so this is the number its users need.

use serde::Serialize;

use super::memory::kv_type_usable;
use super::model::{KvType, ModelShape};
use super::place::plan;
use super::plan::PlanRequest;
use crate::profile::DeviceProfile;

/// Contexts are searched in steps of this many tokens.
pub const CONTEXT_STEP: u64 = 256;

/// KV types `--max-ctx` reports, as llama.cpp's `--cache-type-k/v` names them.
pub const REPORTED_KV_TYPES: [KvType; 3] = [KvType::F16, KvType::Q8_0, KvType::Q4_0];

/// What bounds a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextBound {
    /// A longer context does not fit in memory.
    Memory,
    /// The model supports no longer one.
    Model,
    /// Not even the shortest context fits (or this KV type needs flash attention).
    Unusable,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextLimit {
    pub kv_type: KvType,
    /// Longest context that fits, a multiple of [`CONTEXT_STEP`] unless the model's own
    /// limit is shorter; 0 when none does.
    pub max_ctx: u64,
    pub bound: ContextBound,
    /// KV cache bytes at `max_ctx`.
    pub kv_bytes: u64,
    /// Predicted decode speed at `max_ctx` (its placement may push weights off the GPU).
    pub decode_tok_s: f64,
}

/// The longest context per KV type in [`REPORTED_KV_TYPES`] for `shape` on `profile`,
/// with the rest of `req` (memory caps, pins, parallel sequences) as given.
pub fn max_context(
    shape: &ModelShape,
    profile: &DeviceProfile,
    req: &PlanRequest,
) -> Vec<ContextLimit> {
    let limit = shape.context_limit().max(1);
    REPORTED_KV_TYPES
        .into_iter()
        .map(|kv| {
            let at = |ctx: u64| {
                plan(
                    shape,
                    profile,
                    &PlanRequest {
                        ctx: Some(ctx),
                        kv_type: Some(kv),
                        ..req.clone()
                    },
                )
            };
            let unusable = ContextLimit {
                kv_type: kv,
                max_ctx: 0,
                bound: ContextBound::Unusable,
                kv_bytes: 0,
                decode_tok_s: 0.0,
            };
            if !kv_type_usable(shape, kv, req.flash_attn.unwrap_or(true)) {
                return unusable;
            }
            let limit_plan = at(limit);
            if limit_plan.fits {
                return ContextLimit {
                    max_ctx: limit,
                    bound: ContextBound::Model,
                    kv_bytes: limit_plan.kv.bytes,
                    decode_tok_s: limit_plan.predicted.decode_tok_s,
                    ..unusable
                };
            }
            // Fits at lo * STEP, not at hi * STEP (memory grows with the context).
            if !at(CONTEXT_STEP.min(limit)).fits {
                return unusable;
            }
            let (mut lo, mut hi) = (1u64, limit.div_ceil(CONTEXT_STEP));
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if at(mid * CONTEXT_STEP).fits {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let best = at(lo * CONTEXT_STEP);
            ContextLimit {
                max_ctx: lo * CONTEXT_STEP,
                bound: ContextBound::Memory,
                kv_bytes: best.kv.bytes,
                decode_tok_s: best.predicted.decode_tok_s,
                ..unusable
            }
        })
        .collect()
}
