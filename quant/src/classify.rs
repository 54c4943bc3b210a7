//! Tensor classes: what a GGUF tensor is, from its name alone.

use std::fmt;

/// The role of a weight tensor in a transformer. Recipes and the budget fitter work
/// per class; `Other` covers anything edge does not recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorClass {
    TokenEmbd,
    Output,
    AttnQ,
    AttnK,
    AttnV,
    AttnQkv,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
    /// Routed experts (`ffn_*_exps`, stacked `[n_embd, n_ff, n_expert]`).
    FfnGateExps,
    FfnUpExps,
    FfnDownExps,
    /// Shared experts (`ffn_*_shexp`).
    FfnGateShexp,
    FfnUpShexp,
    FfnDownShexp,
    /// The MoE router (`ffn_gate_inp`); llama.cpp never quantizes it.
    Router,
    /// Norms, biases and other small vectors.
    Norm,
    Other,
}

/// All classes, with their recipe key.
pub const CLASSES: &[(TensorClass, &str)] = &[
    (TensorClass::TokenEmbd, "token_embd"),
    (TensorClass::Output, "output"),
    (TensorClass::AttnQ, "attn_q"),
    (TensorClass::AttnK, "attn_k"),
    (TensorClass::AttnV, "attn_v"),
    (TensorClass::AttnQkv, "attn_qkv"),
    (TensorClass::AttnOutput, "attn_output"),
    (TensorClass::FfnGate, "ffn_gate"),
    (TensorClass::FfnUp, "ffn_up"),
    (TensorClass::FfnDown, "ffn_down"),
    (TensorClass::FfnGateExps, "ffn_gate_exps"),
    (TensorClass::FfnUpExps, "ffn_up_exps"),
    (TensorClass::FfnDownExps, "ffn_down_exps"),
    (TensorClass::FfnGateShexp, "ffn_gate_shexp"),
    (TensorClass::FfnUpShexp, "ffn_up_shexp"),
    (TensorClass::FfnDownShexp, "ffn_down_shexp"),
    (TensorClass::Router, "ffn_gate_inp"),
    (TensorClass::Norm, "norm"),
    (TensorClass::Other, "other"),
];

impl TensorClass {
    pub fn key(self) -> &'static str {
        CLASSES
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, k)| *k)
            .unwrap_or("other")
    }
    pub fn from_key(key: &str) -> Option<TensorClass> {
        CLASSES.iter().find(|(_, k)| *k == key).map(|(c, _)| *c)
    }
    /// Routed experts.
    pub fn is_routed_expert(self) -> bool {
        matches!(
            self,
            TensorClass::FfnGateExps | TensorClass::FfnUpExps | TensorClass::FfnDownExps
        )
    }
    pub fn is_shared_expert(self) -> bool {
        matches!(
            self,
            TensorClass::FfnGateShexp | TensorClass::FfnUpShexp | TensorClass::FfnDownShexp
        )
    }
    pub fn is_attention(self) -> bool {
        matches!(
            self,
            TensorClass::AttnQ
                | TensorClass::AttnK
                | TensorClass::AttnV
                | TensorClass::AttnQkv
                | TensorClass::AttnOutput
        )
    }
    pub fn is_dense_ffn(self) -> bool {
        matches!(
            self,
            TensorClass::FfnGate | TensorClass::FfnUp | TensorClass::FfnDown
        )
    }
    /// The recipe group keys this class belongs to, most specific first.
    pub fn groups(self) -> &'static [&'static str] {
        if self.is_routed_expert() {
            &["experts", "ffn"]
        } else if self.is_shared_expert() {
            &["shared_experts", "ffn"]
        } else if self.is_attention() {
            &["attn"]
        } else if self.is_dense_ffn() {
            &["ffn"]
        } else {
            &[]
        }
    }
}

impl fmt::Display for TensorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The class of a tensor, from its GGUF name.
pub fn classify(name: &str) -> TensorClass {
    let base = name.strip_suffix(".weight").unwrap_or(name);
    if !name.ends_with(".weight") {
        return TensorClass::Norm; // biases and other vectors
    }
    let short = match base.strip_prefix("blk.") {
        Some(rest) => rest.split_once('.').map(|(_, s)| s).unwrap_or(rest),
        None => base,
    };
    if short.contains("norm") {
        return TensorClass::Norm;
    }
    match short {
        "token_embd" => TensorClass::TokenEmbd,
        "output" => TensorClass::Output,
        "attn_q" => TensorClass::AttnQ,
        "attn_k" => TensorClass::AttnK,
        "attn_v" => TensorClass::AttnV,
        "attn_qkv" => TensorClass::AttnQkv,
        "attn_output" => TensorClass::AttnOutput,
        "ffn_gate" => TensorClass::FfnGate,
        "ffn_up" => TensorClass::FfnUp,
        "ffn_down" => TensorClass::FfnDown,
        "ffn_gate_exps" => TensorClass::FfnGateExps,
        "ffn_up_exps" => TensorClass::FfnUpExps,
        "ffn_down_exps" => TensorClass::FfnDownExps,
        "ffn_gate_shexp" => TensorClass::FfnGateShexp,
        "ffn_up_shexp" => TensorClass::FfnUpShexp,
        "ffn_down_shexp" => TensorClass::FfnDownShexp,
        "ffn_gate_inp" => TensorClass::Router,
        _ => TensorClass::Other,
    }
}

/// The layer index of a `blk.N.` tensor.
pub fn layer_of(name: &str) -> Option<u32> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Whether `llama_model_quantize` would quantize this tensor (its
/// `tensor_allows_quantization`, for the architectures edge targets): 2-D or 3-D
/// `.weight` tensors except norms, the MoE router and a few small special tables.
pub fn llama_quantizes(name: &str, n_dims: usize) -> bool {
    if n_dims < 2 || !name.ends_with("weight") || name.contains("_norm.weight") {
        return false;
    }
    const SKIP: &[&str] = &[
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "attn_rel_b.weight",
        "position_embd",
        "token_types",
        "time_mix_",
        ".patch_embd",
    ];
    !SKIP.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_from_names() {
        assert_eq!(classify("token_embd.weight"), TensorClass::TokenEmbd);
        assert_eq!(classify("output.weight"), TensorClass::Output);
        assert_eq!(classify("output_norm.weight"), TensorClass::Norm);
        assert_eq!(classify("blk.3.attn_v.weight"), TensorClass::AttnV);
        assert_eq!(classify("blk.3.attn_q_norm.weight"), TensorClass::Norm);
        assert_eq!(
            classify("blk.12.ffn_down_exps.weight"),
            TensorClass::FfnDownExps
        );
        assert_eq!(
            classify("blk.1.ffn_up_shexp.weight"),
            TensorClass::FfnUpShexp
        );
        assert_eq!(classify("blk.1.ffn_gate_inp.weight"), TensorClass::Router);
        assert_eq!(classify("blk.1.attn_q.bias"), TensorClass::Norm);
        assert_eq!(classify("blk.1.something.weight"), TensorClass::Other);
        assert_eq!(layer_of("blk.12.ffn_down_exps.weight"), Some(12));
        assert_eq!(layer_of("output.weight"), None);
        for (c, k) in CLASSES {
            assert_eq!(TensorClass::from_key(k), Some(*c));
        }
        assert_eq!(TensorClass::FfnUpExps.groups()[0], "experts");
    }

    #[test]
    fn quantizable_like_llama_cpp() {
        assert!(llama_quantizes("blk.0.attn_q.weight", 2));
        assert!(llama_quantizes("blk.0.ffn_up_exps.weight", 3));
        assert!(!llama_quantizes("blk.0.attn_norm.weight", 1));
        assert!(!llama_quantizes("blk.0.ffn_gate_inp.weight", 2));
        assert!(!llama_quantizes("blk.0.attn_q.bias", 1));
    }
}
