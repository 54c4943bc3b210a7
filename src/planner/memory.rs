//! Byte model of what llama.cpp allocates besides the weights: the KV cache (per layer,
//! sliding-window layers capped) and the compute buffers (the graph allocator's peak).
//!
//! The KV formula is llama.cpp's own (`llama-kv-cache.cpp`, `llama-kv-cache-iswa.cpp:73`).
//! The compute-buffer formula is a model of the worst-case prompt graph the context
//! reserves (`sched_reserve`): the largest set of f32 activations alive at once, checked
//! against llama.cpp's reported sizes by `tests/plan_memory.rs`.

use super::model::{kv_row_bytes, KvType, ModelShape};

/// llama.cpp pads the context (and SWA cache sizes) to 256 cells.
pub const KV_PAD: u64 = 256;

pub fn pad(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Cells llama.cpp allocates for layer `il` at context `n_ctx` (one sequence).
pub fn kv_cells(shape: &ModelShape, il: usize, n_ctx: u64, n_ubatch: u64) -> u64 {
    let base = pad(n_ctx, KV_PAD);
    match shape.swa_window {
        Some(w) if shape.swa_layers.get(il).copied().unwrap_or(false) => {
            pad(base.min(w + n_ubatch), KV_PAD)
        }
        _ => base,
    }
}

/// KV-cache bytes of layer `il`.
pub fn kv_layer_bytes(shape: &ModelShape, il: usize, n_ctx: u64, n_ubatch: u64, ty: KvType) -> u64 {
    let kv_heads = shape.n_head_kv.get(il).copied().unwrap_or(shape.n_head);
    let k = kv_row_bytes(ty, kv_heads * shape.head_dim_k);
    let v = kv_row_bytes(ty, kv_heads * shape.head_dim_v);
    (k + v) * kv_cells(shape, il, n_ctx, n_ubatch)
}

/// KV-cache bytes of all layers.
pub fn kv_bytes(shape: &ModelShape, n_ctx: u64, n_ubatch: u64, ty: KvType) -> u64 {
    (0..shape.n_layer as usize)
        .map(|il| kv_layer_bytes(shape, il, n_ctx, n_ubatch, ty))
        .sum()
}

/// Whether a quantized KV type can be used: llama.cpp needs flash attention for a
/// quantized V cache, and the row must be a whole number of 32-element blocks.
pub fn kv_type_usable(shape: &ModelShape, ty: KvType, flash_attn: bool) -> bool {
    if ty == KvType::F16 {
        return true;
    }
    flash_attn
        && shape.n_head_kv.iter().all(|&h| {
            (h * shape.head_dim_k).is_multiple_of(32) && (h * shape.head_dim_v).is_multiple_of(32)
        })
}

/// Compute-buffer bytes for the whole graph on one device, at `n_ubatch` tokens per
/// ubatch and a KV of `n_ctx` cells, with flash attention on or off.
///
/// The reserved worst case is a prompt ubatch of `u` tokens that all produce logits. The
/// graph inputs (the KQ masks, one per KV cache, `n_kv x u` f16) live throughout; on top
/// of them the peak is the larger of:
/// - the output stage: logits `n_vocab x u` f32 plus about five `n_embd x u` activations
///   (residual, norm, the last layer's outputs);
/// - a layer: four `n_embd x u` activations plus the FFN's widest moment: gate, up and
///   their product (`3 x n_ff x u`), for routed experts `k` of them per token plus the
///   down projections' per-expert outputs; a shared expert runs after the routed ones
///   have been freed;
/// - without flash attention, the `n_kv x u x n_head` score matrix.
///
/// Measured against llama.cpp's own reports in `tests/plan_memory.rs`: within 1 MiB on
/// the synthetic models and 1 % on SmolLM2 (the ggml allocator's placement order moves
/// the peak by about one `n_embd x u` tensor).
pub fn compute_bytes(shape: &ModelShape, n_ctx: u64, n_ubatch: u64, flash_attn: bool) -> u64 {
    let u = n_ubatch.min(n_ctx).max(1);
    const F32: u64 = 4;
    let e = shape.n_embd;
    let act = u * e * F32;

    let mut masks = pad(n_ctx, KV_PAD) * u * 2;
    if let Some(w) = shape.swa_window {
        if shape.swa_layers.iter().any(|&s| s) {
            masks += pad(pad(n_ctx, KV_PAD).min(w + u), KV_PAD) * u * 2;
        }
    }

    let output = u * shape.n_vocab * F32 + 5 * act;

    let dense_ff = shape.n_ff_dense;
    let dense = if dense_ff > 0 {
        3 * u * dense_ff * F32
    } else {
        0
    };
    let moe = match shape.experts {
        Some((k, n)) if shape.n_ff_exp > 0 => {
            let routed = 3 * u * k * shape.n_ff_exp * F32 + u * k * e * F32 + u * n * F32 * 2;
            let shared = if shape.n_ff_shexp > 0 {
                3 * u * shape.n_ff_shexp * F32 + act
            } else {
                0
            };
            routed.max(shared)
        }
        _ => 0,
    };
    let mut layer = 4 * act + dense.max(moe);
    if !flash_attn {
        layer = layer.max(4 * act + pad(n_ctx, KV_PAD) * u * shape.n_head * F32);
    }
    masks + output.max(layer)
}
