//! Header-only GGUFs with the tensor tables of published MoE models, for the planner.
//!
//! [`write_header_only`] writes a valid GGUF (header, metadata, tensor infos with real
//! offsets, padding to the data alignment) that stops where the tensor data would start:
//! a few MB that describe a 20–250 GB model, which is all a planner that reads metadata
//! and the tensor table needs. `edge show` and [`crate::gguf_info::GgufFile::open_header`]
//! read them; llama.cpp cannot load them (there is no data).
//!
//! What matches a real Q4_K_M file made by llama.cpp (`convert_hf_to_gguf.py`, then
//! `llama-quantize … Q4_K_M` without an imatrix):
//! - tensor names and shapes: llama.cpp's `create_tensor` calls for `qwen3moe` and
//!   `llama4` (the same table [`super::write_gguf`] writes for the tiny models), with the
//!   converter's extra `rope_freqs.weight` for Llama 4 Scout (llama3-style RoPE scaling);
//! - tensor order: llama-quantize writes tensors in llama.cpp's `weights_map` order
//!   (non-block tensors first, then by block index, then by name, bytewise);
//! - tensor types: [`q4_k_m_type`], llama.cpp's `llama_tensor_get_type` for
//!   `LLAMA_FTYPE_MOSTLY_Q4_K_M`; offsets aligned to 32 bytes as llama.cpp's GGUF writer
//!   does;
//! - the architecture metadata the loader reads (`{arch}.block_count`, `expert_count`,
//!   `expert_used_count`, `expert_feed_forward_length`, `interleave_moe_layer_step`, …),
//!   `general.file_type` 15 (Q4_K_M) and `general.quantization_version` 2.
//!
//! What does not: the vocabulary has the real length (151,936 or 202,048 tokens, so
//! `vocab_size` is right) but its texts are the toy vocabulary padded with `[PADn]`
//! placeholders, as the converter pads real vocabularies, and there are only a few merges.
//! Llama 4's chunked attention has no metadata key: llama.cpp hard-codes `n_swa` 8192 with
//! a 3-chunked/1-full layer pattern unless `llama4.attention.sliding_window` is 0, and the
//! converter writes no such key for Scout or Maverick, so neither do these files.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use edge_quant::layer_of;
use ggus::GGmlType;

use super::vocab::{self, TOKEN_UNUSED};
use super::{
    layout, metadata, write_atomically, write_kv, General, Hparams, SynthArch, SynthVocab,
};
use crate::gguf_info::ggml_types::{F16, F32, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0};
use crate::gguf_info::GgmlType;

/// `general.file_type` of a Q4_K_M file (`LLAMA_FTYPE_MOSTLY_Q4_K_M`).
pub const Q4_K_M_FILE_TYPE: u32 = 15;

/// The published models whose tensor tables can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FullSizeModel {
    /// Qwen3-30B-A3B (`qwen3moe`): 48 layers, 128 experts, 8 active.
    Qwen3_30bA3b,
    /// Qwen3-235B-A22B (`qwen3moe`): 94 layers, 128 experts, 8 active.
    Qwen3_235bA22b,
    /// Llama-4-Scout-17B-16E-Instruct, text model (`llama4`): every layer MoE, 16 experts
    /// (1 active) plus a shared expert.
    Llama4Scout,
    /// Llama-4-Maverick-17B-128E-Instruct, text model (`llama4`): every second layer MoE
    /// (128 experts, 1 active, plus a shared expert), dense FFNs in between.
    Llama4Maverick,
}

impl FullSizeModel {
    pub const ALL: [FullSizeModel; 4] = [
        FullSizeModel::Qwen3_30bA3b,
        FullSizeModel::Qwen3_235bA22b,
        FullSizeModel::Llama4Scout,
        FullSizeModel::Llama4Maverick,
    ];

    /// The name `edge synth --full-size` takes.
    pub fn name(self) -> &'static str {
        match self {
            FullSizeModel::Qwen3_30bA3b => "qwen3-30b-a3b",
            FullSizeModel::Qwen3_235bA22b => "qwen3-235b-a22b",
            FullSizeModel::Llama4Scout => "llama4-scout",
            FullSizeModel::Llama4Maverick => "llama4-maverick",
        }
    }

    /// `general.name`, as the published GGUFs spell it.
    pub fn display_name(self) -> &'static str {
        match self {
            FullSizeModel::Qwen3_30bA3b => "Qwen3-30B-A3B",
            FullSizeModel::Qwen3_235bA22b => "Qwen3-235B-A22B",
            FullSizeModel::Llama4Scout => "Llama-4-Scout-17B-16E-Instruct",
            FullSizeModel::Llama4Maverick => "Llama-4-Maverick-17B-128E-Instruct",
        }
    }

    /// Vocabulary size (`vocab_size` in the HF config; the GGUF token list is padded to it).
    pub fn n_vocab(self) -> u64 {
        match self {
            FullSizeModel::Qwen3_30bA3b | FullSizeModel::Qwen3_235bA22b => 151_936,
            FullSizeModel::Llama4Scout | FullSizeModel::Llama4Maverick => 202_048,
        }
    }

    /// The HF `config.json` values (Llama 4: its `text_config`), as the converter maps them.
    pub(crate) fn hparams(self) -> Hparams {
        let qwen3moe = |n_layer, n_embd, n_ff, n_ff_exp, n_head| Hparams {
            arch: SynthArch::Qwen3Moe,
            n_layer,
            n_embd,
            n_ff,
            n_ff_exp,
            n_expert: 128,
            n_expert_used: 8,
            n_head,
            n_head_kv: 4,
            head_dim: 128,
            context_length: 40_960,
            moe_layer_step: 0,
            tied_embeddings: false,
            rope_freqs: false,
            expert_shared_count: None,
            rms_eps: 1e-6,
            rope_freq_base: 1_000_000.0,
        };
        // The converter swaps Llama 4's names: `intermediate_size` (8192, experts and the
        // shared expert) becomes expert_feed_forward_length, `intermediate_size_mlp`
        // (16384, dense layers) feed_forward_length.
        let llama4 = |n_expert, moe_layer_step, context_length, rope_freqs| Hparams {
            arch: SynthArch::Llama4,
            n_layer: 48,
            n_embd: 5120,
            n_ff: 16_384,
            n_ff_exp: 8192,
            n_expert,
            n_expert_used: 1,
            n_head: 40,
            n_head_kv: 8,
            head_dim: 128,
            context_length,
            moe_layer_step,
            tied_embeddings: false,
            rope_freqs,
            expert_shared_count: None,
            rms_eps: 1e-5,
            rope_freq_base: 500_000.0,
        };
        match self {
            FullSizeModel::Qwen3_30bA3b => qwen3moe(48, 2048, 6144, 768, 32),
            FullSizeModel::Qwen3_235bA22b => qwen3moe(94, 4096, 12_288, 1536, 64),
            // Scout has llama3-style rope_scaling (factor 16 over 8192), hence rope_freqs.
            FullSizeModel::Llama4Scout => llama4(16, 1, 10_485_760, true),
            // Maverick has none (rope_scaling null).
            FullSizeModel::Llama4Maverick => llama4(128, 2, 1_048_576, false),
        }
    }

    /// What the Q4_K_M rules need to know about this model.
    pub fn quant_model(self) -> QuantModel {
        let h = self.hparams();
        QuantModel {
            n_layer: h.n_layer,
            n_expert: h.n_expert,
            tied_embeddings: h.tied_embeddings,
        }
    }
}

impl fmt::Display for FullSizeModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`FullSizeModel::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown full-size model {0:?} (expected qwen3-30b-a3b, qwen3-235b-a22b, llama4-scout or llama4-maverick)")]
pub struct ParseFullSizeModelError(pub String);

impl FromStr for FullSizeModel {
    type Err = ParseFullSizeModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FullSizeModel::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseFullSizeModelError(s.to_string()))
    }
}

/// The facts about a model that llama.cpp's Q4_K_M rules look at besides the tensor itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantModel {
    /// `hparams.n_layer_all`: the layer count the "more bits" rule divides.
    pub n_layer: u32,
    /// `hparams.n_expert` (0 for a dense model); exactly 8 triggers Mixtral's bumps.
    pub n_expert: u32,
    /// No `output.weight`: `token_embd` is then quantized as the output.
    pub tied_embeddings: bool,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third
/// layer in between.
pub fn use_more_bits(i_layer: u32, n_layer: u32) -> bool {
    let (i, n) = (i64::from(i_layer), i64::from(n_layer));
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The type llama-quantize gives a tensor for Q4_K_M (no imatrix, no overrides): a pure
/// copy of `llama_tensor_get_type` in llama.cpp's src/llama-quant.cpp, for the tensor
/// categories of the architectures edge writes.
///
/// - Not quantized, kept as the converter wrote them (F32): 1-D tensors, `*_norm.weight`,
///   the MoE router `ffn_gate_inp.weight`.
/// - `output.weight` (and a tied `token_embd.weight`): Q6_K (Q8_0 when a row is not a
///   multiple of 256); an untied `token_embd.weight`: the base type Q4_K.
/// - `attn_v` (and fused `attn_qkv`/`attn_kv_b`): Q6_K on [`use_more_bits`] layers, else
///   Q4_K; Q8_0 for 8-expert models.
/// - `attn_k`: Q8_0 for 8-expert models, else Q4_K. `attn_output`: Q5_K for 8-expert
///   models, else Q4_K.
/// - `ffn_down`, `ffn_down_exps`, `ffn_down_shexp`: Q6_K on [`use_more_bits`] layers,
///   else Q4_K.
/// - Everything else (`attn_q`, `ffn_gate*`, `ffn_up*`): Q4_K.
/// - A row length the type's block does not divide falls back as llama.cpp does
///   (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, then F16).
///
/// `layer` is the block index. llama.cpp counts `attn_v` tensors (and, for dense models,
/// `ffn_down` tensors) in file order instead of reading the index; with one per block and
/// the `weights_map` order llama-quantize uses, the count is the index. The `LLM_TYPE_70B`
/// and Falcon special cases are left out (neither architecture is written here).
pub fn q4_k_m_type(name: &str, shape: &[u64], layer: Option<u32>, m: &QuantModel) -> GgmlType {
    let quantized = shape.len() >= 2
        && name.ends_with("weight")
        && !name.contains("_norm.weight")
        && !name.contains("ffn_gate_inp.weight");
    if !quantized {
        return F32;
    }
    let more_bits = || use_more_bits(layer.unwrap_or(0), m.n_layer);
    let is_output = name == "output.weight";
    let is_token_embd = name == "token_embd.weight";
    let ty = if is_output || (m.tied_embeddings && is_token_embd) {
        if !shape[0].is_multiple_of(256) {
            Q8_0
        } else {
            Q6_K
        }
    } else if is_token_embd {
        Q4_K
    } else if name.contains("attn_qkv.weight")
        || name.contains("attn_kv_b.weight")
        || name.contains("attn_v.weight")
    {
        if m.n_expert == 8 {
            Q8_0
        } else if more_bits() {
            Q6_K
        } else {
            Q4_K
        }
    } else if name.contains("attn_k.weight") {
        if m.n_expert == 8 {
            Q8_0
        } else {
            Q4_K
        }
    } else if name.contains("attn_q.weight") {
        Q4_K
    } else if name.contains("attn_output.weight") {
        if m.n_expert == 8 {
            Q5_K
        } else {
            Q4_K
        }
    } else if name.contains("ffn_up") || name.contains("ffn_gate") {
        Q4_K
    } else if name.contains("ffn_down") {
        if more_bits() {
            Q6_K
        } else {
            Q4_K
        }
    } else {
        Q4_K
    };
    fallback(ty, shape[0])
}

/// llama.cpp's `tensor_type_fallback` for the types [`q4_k_m_type`] picks.
fn fallback(ty: GgmlType, ne0: u64) -> GgmlType {
    let block = |t: GgmlType| match t {
        Q4_K | Q5_K | Q6_K => 256,
        Q5_0 | Q5_1 | Q8_0 => 32,
        _ => 1,
    };
    if ne0.is_multiple_of(block(ty)) {
        return ty;
    }
    let next = match ty {
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        other => other,
    };
    if ne0.is_multiple_of(block(next)) {
        next
    } else {
        F16
    }
}

/// The tensor table of `model`'s Q4_K_M GGUF, in file order: name, shape (ggml order) and
/// type.
pub fn tensor_table(model: FullSizeModel) -> Vec<(String, Vec<u64>, GgmlType)> {
    let h = model.hparams();
    let qm = model.quant_model();
    let mut tensors = layout(&h, model.n_vocab());
    // llama.cpp's weights_map order (weight_name_comparer): block index first, with the
    // non-block tensors (-1) before every block, then the name, bytewise.
    tensors.sort_by(|a, b| {
        let key = |name: &str| layer_of(name).map_or(-1, i64::from);
        (key(&a.name), a.name.as_bytes()).cmp(&(key(&b.name), b.name.as_bytes()))
    });
    tensors
        .into_iter()
        .map(|t| {
            let ty = q4_k_m_type(&t.name, &t.shape, layer_of(&t.name), &qm);
            (t.name, t.shape, ty)
        })
        .collect()
}

/// The toy vocabulary padded with `[PADn]` (type UNUSED) to `n_vocab` tokens, as
/// convert_hf_to_gguf.py pads a vocabulary shorter than `vocab_size`.
fn padded_vocab(arch: SynthArch, n_vocab: u64) -> Result<vocab::Vocab> {
    let mut v = vocab::build(arch, &SynthVocab::Toy)?;
    let n = usize::try_from(n_vocab).context("vocabulary too large")?;
    ensure!(v.len() <= n, "the toy vocabulary is longer than {n} tokens");
    for i in v.len()..n {
        v.tokens.push(format!("[PAD{i}]"));
        v.types.push(TOKEN_UNUSED);
    }
    Ok(v)
}

fn to_ggus(ty: GgmlType) -> Result<GGmlType> {
    Ok(match ty {
        F32 => GGmlType::F32,
        F16 => GGmlType::F16,
        Q5_0 => GGmlType::Q5_0,
        Q5_1 => GGmlType::Q5_1,
        Q8_0 => GGmlType::Q8_0,
        Q4_K => GGmlType::Q4K,
        Q5_K => GGmlType::Q5K,
        Q6_K => GGmlType::Q6K,
        other => bail!("type {other} is not used by the full-size fixtures"),
    })
}

/// Writes `model`'s header-only Q4_K_M GGUF to `path`, atomically (see the module docs).
pub fn write_header_only(model: FullSizeModel, path: &Path) -> Result<()> {
    let h = model.hparams();
    let vocab = padded_vocab(h.arch, model.n_vocab())?;
    let general = General {
        name: model.display_name().to_string(),
        file_type: Q4_K_M_FILE_TYPE,
        quantization_version: Some(2),
        chat_template: None,
    };
    let kv = metadata(&h, general, vocab);
    let tensors = tensor_table(model);
    write_atomically(path, |tmp| write_header_file(tmp, &kv, &tensors))
        .with_context(|| format!("writing the {model} header-only GGUF"))
}

fn write_header_file(
    tmp: &Path,
    kv: &[(String, super::Val)],
    tensors: &[(String, Vec<u64>, GgmlType)],
) -> Result<()> {
    let file = File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let w = write_kv(&mut out, tensors.len(), kv)?;
    // Tensor infos only: ggus still lays out the (absent) data, aligning every offset.
    let mut tw = w.finish::<Vec<u8>>(false);
    for (name, shape, ty) in tensors {
        ensure!(
            ty.bytes_for(shape).is_some(),
            "{name}: shape {shape:?} does not fit {ty}"
        );
        tw.write_tensor(name, to_ggus(*ty)?, shape, Vec::new())?;
    }
    let written = tw.finish()? as u64;
    // Pad to the alignment: the file ends exactly where the tensor data would start.
    let align = ggus::DEFAULT_ALIGNMENT as u64;
    let end = written.div_ceil(align) * align;
    out.write_all(&vec![0u8; (end - written) as usize])?;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    let len = file.metadata()?.len();
    if len != end {
        bail!("short write: {len} of {end} bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOE128_48: QuantModel = QuantModel {
        n_layer: 48,
        n_expert: 128,
        tied_embeddings: false,
    };

    #[test]
    fn names_round_trip() {
        for m in FullSizeModel::ALL {
            assert_eq!(m.name().parse::<FullSizeModel>().unwrap(), m);
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(
            "Llama4-Scout".parse::<FullSizeModel>().unwrap(),
            FullSizeModel::Llama4Scout
        );
        assert!("qwen3-8b".parse::<FullSizeModel>().is_err());
    }

    #[test]
    fn more_bits_layers_match_llama_cpp() {
        let on: Vec<u32> = (0..48).filter(|&i| use_more_bits(i, 48)).collect();
        assert_eq!(
            on,
            [
                0, 1, 2, 3, 4, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35, 38, 41, 42, 43, 44, 45,
                46, 47
            ]
        );
        // 94 layers: 94/8 = 11, 7*94/8 = 82.
        let on94: Vec<u32> = (0..94).filter(|&i| use_more_bits(i, 94)).collect();
        assert_eq!(on94.len(), 11 + 23 + 12);
        assert!(on94.contains(&13) && !on94.contains(&12) && on94.contains(&82));
    }

    #[test]
    fn q4_k_m_rules() {
        let t = |name: &str, shape: &[u64], m: &QuantModel| {
            q4_k_m_type(name, shape, layer_of(name), m).name()
        };
        let m = &MOE128_48;
        assert_eq!(t("token_embd.weight", &[2048, 151_936], m), "Q4_K");
        assert_eq!(t("output.weight", &[2048, 151_936], m), "Q6_K");
        assert_eq!(t("output_norm.weight", &[2048], m), "F32");
        assert_eq!(t("blk.0.attn_q_norm.weight", &[128], m), "F32");
        assert_eq!(t("blk.0.ffn_gate_inp.weight", &[2048, 128], m), "F32");
        assert_eq!(t("blk.0.attn_v.weight", &[2048, 512], m), "Q6_K");
        assert_eq!(t("blk.6.attn_v.weight", &[2048, 512], m), "Q4_K");
        assert_eq!(t("blk.8.attn_v.weight", &[2048, 512], m), "Q6_K");
        assert_eq!(t("blk.8.attn_k.weight", &[2048, 512], m), "Q4_K");
        assert_eq!(t("blk.8.attn_q.weight", &[2048, 4096], m), "Q4_K");
        assert_eq!(t("blk.8.attn_output.weight", &[4096, 2048], m), "Q4_K");
        assert_eq!(
            t("blk.47.ffn_down_exps.weight", &[768, 2048, 128], m),
            "Q6_K"
        );
        assert_eq!(
            t("blk.9.ffn_down_exps.weight", &[768, 2048, 128], m),
            "Q4_K"
        );
        assert_eq!(t("blk.11.ffn_down_shexp.weight", &[8192, 5120], m), "Q6_K");
        assert_eq!(
            t("blk.9.ffn_gate_exps.weight", &[2048, 768, 128], m),
            "Q4_K"
        );
        assert_eq!(t("blk.0.ffn_up_exps.weight", &[2048, 768, 128], m), "Q4_K");
        assert_eq!(t("rope_freqs.weight", &[64], m), "F32");

        // Mixtral-style 8-expert models get their attention bumped.
        let m8 = QuantModel {
            n_expert: 8,
            ..MOE128_48
        };
        assert_eq!(t("blk.6.attn_v.weight", &[4096, 1024], &m8), "Q8_0");
        assert_eq!(t("blk.6.attn_k.weight", &[4096, 1024], &m8), "Q8_0");
        assert_eq!(t("blk.6.attn_output.weight", &[4096, 4096], &m8), "Q5_K");

        // Tied embeddings are quantized as the output.
        let tied = QuantModel {
            tied_embeddings: true,
            ..MOE128_48
        };
        assert_eq!(t("token_embd.weight", &[2048, 1000], &tied), "Q6_K");
        assert_eq!(t("token_embd.weight", &[2080, 1000], &tied), "Q8_0");

        // Rows a 256-block does not divide fall back.
        assert_eq!(t("blk.6.attn_q.weight", &[96, 8], m), "Q5_0");
        assert_eq!(t("blk.0.attn_v.weight", &[96, 8], m), "Q8_0");
        assert_eq!(t("blk.6.attn_q.weight", &[100, 8], m), "F16");
    }

    #[test]
    fn table_is_in_llama_quantize_order() {
        let table = tensor_table(FullSizeModel::Llama4Scout);
        let names: Vec<&str> = table.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(
            &names[..6],
            [
                "output.weight",
                "output_norm.weight",
                "rope_freqs.weight",
                "token_embd.weight",
                "blk.0.attn_k.weight",
                "blk.0.attn_norm.weight",
            ]
        );
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("blk.9.ffn_up_shexp.weight") < pos("blk.10.attn_k.weight"));
        assert!(pos("blk.0.ffn_down_exps.weight") < pos("blk.0.ffn_down_shexp.weight"));
        assert_eq!(names.last(), Some(&"blk.47.ffn_up_shexp.weight"));
    }

    #[test]
    fn maverick_alternates_dense_and_moe_layers() {
        let table = tensor_table(FullSizeModel::Llama4Maverick);
        let has = |n: &str| table.iter().any(|t| t.0 == n);
        assert!(has("blk.0.ffn_gate.weight") && !has("blk.0.ffn_gate_exps.weight"));
        assert!(has("blk.1.ffn_gate_exps.weight") && !has("blk.1.ffn_gate.weight"));
        assert!(has("blk.47.ffn_down_shexp.weight"));
        assert!(!has("rope_freqs.weight"));
        let dense = table
            .iter()
            .find(|t| t.0 == "blk.0.ffn_down.weight")
            .unwrap();
        assert_eq!(dense.1, [16_384, 5120]);
        assert_eq!(dense.2.name(), "Q6_K");
    }
}
