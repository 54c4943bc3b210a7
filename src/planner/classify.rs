//! Tensor roles and decode read density (research §4.2, §8 step 1).
//!
//! Every weight of a token's path is read once per generated token (density 1), except
//! the routed experts of an MoE layer, of which each token reads k of E (density k/E in
//! every layer, regardless of routing skew), and the token embedding, a row gather.

pub use edge_quant::layer_of;
use serde::Serialize;

use crate::gguf_info::{GgufFile, TensorInfo};

/// What a tensor is for, as far as placement is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorRole {
    /// `token_embd`: llama.cpp keeps it on the CPU; each token gathers one row.
    TokenEmbd,
    /// `output` (lm head) and `output_norm`.
    Output,
    /// Attention projections and their norms/biases.
    Attention,
    /// Per-layer norms outside attention.
    Norm,
    /// MoE router `ffn_gate_inp` (and expert-probability biases).
    Router,
    /// Shared experts (`*_shexp`), always active.
    SharedExpert,
    /// Dense FFN of a non-MoE layer.
    DenseFfn,
    /// Routed experts (`*_exps`, `*_chexps`), stacked `[n_embd, n_ff_exp, n_expert]`.
    RoutedExpert,
    /// Anything else (rope factors, vision, ...), treated as density 1.
    Other,
}

impl TensorRole {
    pub fn label(self) -> &'static str {
        match self {
            TensorRole::TokenEmbd => "token embedding",
            TensorRole::Output => "output head",
            TensorRole::Attention => "attention",
            TensorRole::Norm => "norms",
            TensorRole::Router => "router",
            TensorRole::SharedExpert => "shared experts",
            TensorRole::DenseFfn => "dense FFN",
            TensorRole::RoutedExpert => "routed experts",
            TensorRole::Other => "other",
        }
    }
}

/// Classifies a tensor by its GGUF name.
pub fn role_of(name: &str) -> TensorRole {
    let base = name
        .strip_suffix(".weight")
        .or_else(|| name.strip_suffix(".bias"))
        .unwrap_or(name);
    if base == "token_embd" {
        return TensorRole::TokenEmbd;
    }
    if base == "output" || base == "output_norm" {
        return TensorRole::Output;
    }
    let local = match base.strip_prefix("blk.") {
        Some(rest) => rest.split_once('.').map(|(_, t)| t).unwrap_or(rest),
        None => return TensorRole::Other,
    };
    if local.contains("_exps") || local.contains("_chexps") || local == "exp_probs_b" {
        if local == "exp_probs_b" {
            return TensorRole::Router;
        }
        return TensorRole::RoutedExpert;
    }
    if local.ends_with("_shexp") || local == "ffn_gate_inp_shexp" {
        return TensorRole::SharedExpert;
    }
    if local.starts_with("ffn_gate_inp") {
        return TensorRole::Router;
    }
    if local.starts_with("attn_") && !local.starts_with("attn_post_norm") {
        return TensorRole::Attention;
    }
    if local.starts_with("ffn_norm") || local.contains("norm") {
        return TensorRole::Norm;
    }
    if local.starts_with("ffn_") {
        return TensorRole::DenseFfn;
    }
    TensorRole::Other
}

/// Routed experts per token and in total, from the GGUF metadata (`{arch}.expert_used_count`,
/// `{arch}.expert_count`).
pub fn expert_counts(gguf: &GgufFile) -> Option<(u64, u64)> {
    let total = gguf.arch_u64("expert_count").filter(|&n| n > 0)?;
    let used = gguf.arch_u64("expert_used_count").unwrap_or(1).max(1);
    Some((used.min(total), total))
}

/// Fraction of a tensor's bytes read per generated token.
pub fn decode_density(t: &TensorInfo, role: TensorRole, experts: Option<(u64, u64)>) -> f64 {
    match role {
        TensorRole::TokenEmbd => {
            // One row per token.
            let rows = t.dims.get(1).copied().unwrap_or(1).max(1);
            1.0 / rows as f64
        }
        TensorRole::RoutedExpert => match experts {
            Some((used, total)) => used as f64 / total as f64,
            None => 1.0,
        },
        _ => 1.0,
    }
}

/// Bytes of weights a single decoded token reads (all tensors, density-weighted). A tied
/// output head (no `output.weight`) is token_embd read whole for every token.
pub fn decode_read_bytes(gguf: &GgufFile) -> u64 {
    let experts = expert_counts(gguf);
    let tied = !gguf.tensors.iter().any(|t| t.name == "output.weight");
    gguf.tensors
        .iter()
        .map(|t| {
            let role = role_of(&t.name);
            let mut density = decode_density(t, role, experts);
            if tied && role == TensorRole::TokenEmbd {
                density += 1.0;
            }
            density * t.bytes as f64
        })
        .sum::<f64>()
        .round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_name() {
        use TensorRole::*;
        let cases = [
            ("token_embd.weight", TokenEmbd),
            ("output.weight", Output),
            ("output_norm.weight", Output),
            ("blk.0.attn_q.weight", Attention),
            ("blk.0.attn_k_norm.weight", Attention),
            ("blk.0.attn_norm.weight", Attention),
            ("blk.3.ffn_norm.weight", Norm),
            ("blk.3.ffn_gate_inp.weight", Router),
            ("blk.3.ffn_up_exps.weight", RoutedExpert),
            ("blk.3.ffn_gate_up_exps.weight", RoutedExpert),
            ("blk.3.ffn_down_exps.bias", RoutedExpert),
            ("blk.3.ffn_down_shexp.weight", SharedExpert),
            ("blk.3.ffn_up.weight", DenseFfn),
            ("rope_freqs.weight", Other),
        ];
        for (name, role) in cases {
            assert_eq!(role_of(name), role, "{name}");
        }
        assert_eq!(layer_of("blk.17.ffn_up_exps.weight"), Some(17));
        assert_eq!(layer_of("output.weight"), None);
    }
}
