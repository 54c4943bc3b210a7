//! Synthetic tiny random-weight GGUF models for tests.
//!
//! [`write_gguf`] writes a small but complete `qwen3`, `qwen3moe` or `llama4` model that
//! llama.cpp loads, runs, and quantizes: all required metadata, a GPT-2 byte-level BPE
//! tokenizer (a toy one, or Qwen 3's real one), a chat template, and seeded random weights.
//!
//! - Weights are F16 for matrices, F32 for norms (all 1.0) and for the MoE router.
//!   Projections have std 1/sqrt(fan_in) (times a gain for those that write into the residual
//!   stream), the embedding (and lm head) std 1, so logits have a large spread (std about 16)
//!   and top-1 near-ties are rare. Random models are still chaotic: a quantized copy (Q8_0,
//!   Q4_K_M) usually matches the F16 greedy output for a few tokens only, then diverges.
//! - The lm-head rows of CONTROL tokens (and of any token llama.cpp treats as end-of-generation
//!   by its text) are zero (the token_embd rows when the embedding is tied), so greedy decoding
//!   never emits EOS/EOT by chance.
//! - Same spec and seed give a byte-identical file. Each tensor has its own random stream, so
//!   a tensor's values do not depend on which other tensors the model has.

mod arch;
pub mod fullsize;
mod templates;
mod vocab;

use std::borrow::Borrow;
use std::cell::OnceCell;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::rc::Rc;

use crate::partial_file::PartialFile;
use anyhow::{bail, ensure, Context, Result};
use ggus::{GGmlType, GGufFileHeader, GGufFileWriter, GGufMetaDataValueType};
use half::f16;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use arch::{ParseSynthArchError, SynthArch, SynthVocab};
pub use templates::{LLAMA4_CHAT_TEMPLATE, QWEN3_CHAT_TEMPLATE};

/// What to generate. Start from [`SynthSpec::new`] and change fields.
///
/// `n_ff` is the width of the dense FFN layers *and* of each expert (and of llama4's shared
/// expert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSpec {
    pub arch: SynthArch,
    pub vocab: SynthVocab,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_ff: u32,
    pub n_expert: u32,
    pub n_expert_used: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub context_length: u32,
    pub seed: u64,
    /// overrides the default chat template of the family
    pub chat_template: Option<String>,
    pub tied_embeddings: bool,
}

impl SynthSpec {
    /// Defaults: the "kq" profile (n_embd 256, n_ff 256, head_dim 64, 4 heads, 2 KV heads,
    /// context 4096: every row length a K-quant needs is a multiple of 256), the toy vocabulary,
    /// seed 42, and per arch:
    /// - qwen3: 2 layers, tied embeddings;
    /// - qwen3moe: 2 layers, 8 experts with 2 active, untied;
    /// - llama4: 4 layers (layers 1 and 3 MoE), 4 experts with 1 active plus the shared one,
    ///   untied.
    pub fn new(arch: SynthArch) -> Self {
        let (n_layer, n_expert, n_expert_used, tied_embeddings) = match arch {
            SynthArch::Qwen3 => (2, 0, 0, true),
            SynthArch::Qwen3Moe => (2, 8, 2, false),
            SynthArch::Llama4 => (4, 4, 1, false),
        };
        SynthSpec {
            arch,
            vocab: SynthVocab::Toy,
            n_layer,
            n_embd: 256,
            n_ff: 256,
            n_expert,
            n_expert_used,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 64,
            context_length: 4096,
            seed: 42,
            chat_template: None,
            tied_embeddings,
        }
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("n_layer", self.n_layer),
            ("n_embd", self.n_embd),
            ("n_ff", self.n_ff),
            ("n_head", self.n_head),
            ("n_head_kv", self.n_head_kv),
            ("head_dim", self.head_dim),
            ("context_length", self.context_length),
        ] {
            ensure!(v > 0, "{name} must be positive");
        }
        ensure!(
            self.n_head.is_multiple_of(self.n_head_kv),
            "n_head ({}) must be a multiple of n_head_kv ({})",
            self.n_head,
            self.n_head_kv
        );
        ensure!(
            self.head_dim.is_multiple_of(2),
            "head_dim must be even (RoPE)"
        );
        ensure!(
            self.arch != SynthArch::Llama4
                || u64::from(self.n_layer) >= crate::gguf_info::LLAMA4_MIN_LAYERS,
            "llama4 needs at least 4 layers (every 4th layer is the global-attention one; llama.cpp aborts without one)"
        );
        if self.arch.is_moe() {
            ensure!(
                self.n_expert > 0 && self.n_expert_used > 0 && self.n_expert_used <= self.n_expert,
                "{} needs 0 < n_expert_used ({}) <= n_expert ({})",
                self.arch,
                self.n_expert_used,
                self.n_expert
            );
        } else {
            ensure!(
                self.n_expert == 0 && self.n_expert_used == 0,
                "{} is dense: n_expert and n_expert_used must be 0",
                self.arch
            );
        }
        Ok(())
    }
}

/// Everything that decides a model's tensor table and its architecture metadata: what
/// [`SynthSpec`] describes for the tiny models, and what [`fullsize`] fills in for the
/// published ones.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hparams {
    pub arch: SynthArch,
    pub n_layer: u32,
    pub n_embd: u32,
    /// Width of the dense FFN layers (`feed_forward_length`).
    pub n_ff: u32,
    /// Width of each routed expert, and of llama4's shared expert
    /// (`expert_feed_forward_length`).
    pub n_ff_exp: u32,
    pub n_expert: u32,
    pub n_expert_used: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub context_length: u32,
    /// llama4: layer `il` is MoE when `(il + 1) % moe_layer_step == 0` (llama.cpp's rule).
    pub moe_layer_step: u32,
    pub tied_embeddings: bool,
    /// llama4 with llama3-style RoPE scaling: the converter adds `rope_freqs.weight`.
    pub rope_freqs: bool,
    /// `{arch}.expert_shared_count`, when written.
    pub expert_shared_count: Option<u32>,
    pub rms_eps: f32,
    pub rope_freq_base: f32,
}

impl Hparams {
    /// Is layer `il` a MoE layer?
    pub fn is_moe_layer(&self, il: u32) -> bool {
        match self.arch {
            SynthArch::Qwen3 => false,
            SynthArch::Qwen3Moe => true,
            SynthArch::Llama4 => {
                self.moe_layer_step > 0 && (il + 1).is_multiple_of(self.moe_layer_step)
            }
        }
    }
}

impl SynthSpec {
    pub(crate) fn hparams(&self) -> Hparams {
        let (rms_eps, rope_freq_base) = match self.arch {
            SynthArch::Qwen3 | SynthArch::Qwen3Moe => (1e-6, 1_000_000.0),
            SynthArch::Llama4 => (1e-5, 500_000.0),
        };
        Hparams {
            arch: self.arch,
            n_layer: self.n_layer,
            n_embd: self.n_embd,
            n_ff: self.n_ff,
            n_ff_exp: self.n_ff,
            n_expert: self.n_expert,
            n_expert_used: self.n_expert_used,
            n_head: self.n_head,
            n_head_kv: self.n_head_kv,
            head_dim: self.head_dim,
            context_length: self.context_length,
            moe_layer_step: LLAMA4_MOE_LAYER_STEP,
            tied_embeddings: self.tied_embeddings,
            rope_freqs: false,
            expert_shared_count: (self.arch == SynthArch::Llama4).then_some(1),
            rms_eps,
            rope_freq_base,
        }
    }
}

/// What a tensor is for; decides how the generator fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `token_embd`.
    Embedding,
    /// RMS norm weights (1-D).
    Norm,
    /// A projection out of the (normalised) residual stream.
    Proj,
    /// A projection back into the residual stream (`attn_output`, `ffn_down*`).
    OutProj,
    /// The MoE router (`ffn_gate_inp`).
    Router,
    /// The lm head (`output`).
    Output,
    /// llama3-style RoPE frequency factors (1-D).
    RopeFreqs,
}

/// One tensor of a model's table: name, shape (ggml order ne0, ne1[, ne2]) and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayoutTensor {
    pub name: String,
    pub shape: Vec<u64>,
    pub role: Role,
}

/// The tensor table llama.cpp expects for `h` (its `create_tensor` calls for qwen3,
/// qwen3moe and llama4), in the order the generator writes it.
pub(crate) fn layout(h: &Hparams, n_vocab: u64) -> Vec<LayoutTensor> {
    let e = u64::from(h.n_embd);
    let q = u64::from(h.n_head * h.head_dim);
    let kv = u64::from(h.n_head_kv * h.head_dim);
    let ff = u64::from(h.n_ff);
    let ff_exp = u64::from(h.n_ff_exp);
    let x = u64::from(h.n_expert);
    let d = u64::from(h.head_dim);

    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<u64>, role: Role| {
        out.push(LayoutTensor { name, shape, role });
    };
    push(
        "token_embd.weight".into(),
        vec![e, n_vocab],
        Role::Embedding,
    );
    if h.rope_freqs {
        push("rope_freqs.weight".into(), vec![d / 2], Role::RopeFreqs);
    }
    for il in 0..h.n_layer {
        let b = |t: &str| format!("blk.{il}.{t}.weight");
        push(b("attn_norm"), vec![e], Role::Norm);
        push(b("attn_q"), vec![e, q], Role::Proj);
        push(b("attn_k"), vec![e, kv], Role::Proj);
        push(b("attn_v"), vec![e, kv], Role::Proj);
        push(b("attn_output"), vec![q, e], Role::OutProj);
        if h.arch != SynthArch::Llama4 {
            push(b("attn_q_norm"), vec![d], Role::Norm);
            push(b("attn_k_norm"), vec![d], Role::Norm);
        }
        push(b("ffn_norm"), vec![e], Role::Norm);
        if h.is_moe_layer(il) {
            push(b("ffn_gate_inp"), vec![e, x], Role::Router);
            push(b("ffn_gate_exps"), vec![e, ff_exp, x], Role::Proj);
            push(b("ffn_up_exps"), vec![e, ff_exp, x], Role::Proj);
            push(b("ffn_down_exps"), vec![ff_exp, e, x], Role::OutProj);
            if h.arch == SynthArch::Llama4 {
                push(b("ffn_gate_shexp"), vec![e, ff_exp], Role::Proj);
                push(b("ffn_up_shexp"), vec![e, ff_exp], Role::Proj);
                push(b("ffn_down_shexp"), vec![ff_exp, e], Role::OutProj);
            }
        } else {
            push(b("ffn_gate"), vec![e, ff], Role::Proj);
            push(b("ffn_up"), vec![e, ff], Role::Proj);
            push(b("ffn_down"), vec![ff, e], Role::OutProj);
        }
    }
    push("output_norm.weight".into(), vec![e], Role::Norm);
    if !h.tied_embeddings {
        push("output.weight".into(), vec![e, n_vocab], Role::Output);
    }
    out
}

/// How a tensor's values are made.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Init {
    Ones,
    Normal(f32),
}

#[derive(Debug, Clone)]
struct PlannedTensor {
    name: String,
    shape: Vec<u64>,
    ty: GGmlType,
    init: Init,
    /// Whether the rows (ne1 index) of CONTROL/EOG tokens are zeroed: the lm head.
    zero_eog_rows: bool,
}

const LLAMA4_MOE_LAYER_STEP: u32 = 2;

/// Gain of the projections that write into the residual stream (`attn_output`, `ffn_down*`).
///
/// With std 1/sqrt(fan_in) the residual stream stays dominated by the input token's embedding,
/// and a *tied* lm head then predicts the input token again for about a third of the tokens
/// (the embedding row's dot product with itself is large): greedy output becomes one token
/// repeated, whatever the layers and the seed. With a gain of 32 the layers' contribution is
/// some 40 times the embedding's, "copies" drop to chance level, and the output depends on
/// every layer. Matmul inputs are always normalised first, so the scale is harmless.
const RESID_GAIN: f32 = 32.0;

fn plan(spec: &SynthSpec, n_vocab: u64) -> Vec<PlannedTensor> {
    layout(&spec.hparams(), n_vocab)
        .into_iter()
        .map(|t| {
            // The fan-in of a ggml matrix is its row length ne0.
            let fan_in = t.shape[0] as f32;
            let init = match t.role {
                Role::Norm | Role::RopeFreqs => Init::Ones,
                // Embedding and lm head std 1; a sharp router (std 1 on a unit-RMS input),
                // so near-ties between experts are rare.
                Role::Embedding | Role::Output | Role::Router => Init::Normal(1.0),
                // std 1/sqrt(fan_in); projections back into the residual stream are
                // RESID_GAIN times larger (see there).
                Role::Proj => Init::Normal(1.0 / fan_in.sqrt()),
                Role::OutProj => Init::Normal(RESID_GAIN / fan_in.sqrt()),
            };
            let ty = if t.shape.len() == 1 || t.role == Role::Router {
                GGmlType::F32
            } else {
                GGmlType::F16
            };
            let zero_eog_rows = match t.role {
                Role::Output => true,
                Role::Embedding => spec.tied_embeddings,
                _ => false,
            };
            PlannedTensor {
                name: t.name,
                shape: t.shape,
                ty,
                init,
                zero_eog_rows,
            }
        })
        .collect()
}

/// The tensors [`write_gguf`] writes for `spec`, in file order: name, shape (ggml order
/// ne0, ne1[, ne2]) and type. Reads the tokenizer files for [`SynthVocab::Qwen3Files`].
pub fn tensor_plan(spec: &SynthSpec) -> Result<Vec<(String, Vec<u64>, GGmlType)>> {
    spec.validate()?;
    let vocab = vocab::build(spec.arch, &spec.vocab)?;
    Ok(plan(spec, vocab.len() as u64)
        .into_iter()
        .map(|t| (t.name, t.shape, t.ty))
        .collect())
}

/// A GGUF metadata value.
enum Val {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArr(Vec<String>),
    I32Arr(Vec<i32>),
}

impl Val {
    fn encode(&self) -> (GGufMetaDataValueType, Vec<u8>) {
        use GGufMetaDataValueType as T;
        fn str_into(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        match self {
            Val::U32(v) => (T::U32, v.to_le_bytes().to_vec()),
            Val::F32(v) => (T::F32, v.to_le_bytes().to_vec()),
            Val::Bool(v) => (T::Bool, vec![u8::from(*v)]),
            Val::Str(s) => {
                let mut out = Vec::with_capacity(8 + s.len());
                str_into(&mut out, s);
                (T::String, out)
            }
            Val::StrArr(v) => {
                let len: usize = v.iter().map(|s| 8 + s.len()).sum();
                let mut out = Vec::with_capacity(12 + len);
                out.extend_from_slice(&(T::String as u32).to_le_bytes());
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                for s in v {
                    str_into(&mut out, s);
                }
                (T::Array, out)
            }
            Val::I32Arr(v) => {
                let mut out = Vec::with_capacity(12 + 4 * v.len());
                out.extend_from_slice(&(T::I32 as u32).to_le_bytes());
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                for x in v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                (T::Array, out)
            }
        }
    }
}

/// The `general.*` keys that differ between the tiny synthetic models and the full-size
/// fixtures.
pub(crate) struct General {
    pub name: String,
    /// `general.file_type` (llama.cpp's `llama_ftype`: 1 mostly F16, 15 Q4_K_M).
    pub file_type: u32,
    /// `general.quantization_version`, written by llama-quantize.
    pub quantization_version: Option<u32>,
    /// Replaces the family's chat template.
    pub chat_template: Option<String>,
}

fn metadata(h: &Hparams, general: General, vocab: vocab::Vocab) -> Vec<(String, Val)> {
    let a = h.arch.as_str();
    let mut kv: Vec<(String, Val)> = Vec::new();
    let mut put = |k: &str, v: Val| kv.push((k.replace("{a}", a), v));

    put("general.architecture", Val::Str(a.into()));
    put("general.type", Val::Str("model".into()));
    put("general.name", Val::Str(general.name));
    put(
        "general.alignment",
        Val::U32(ggus::DEFAULT_ALIGNMENT as u32),
    );
    put("general.file_type", Val::U32(general.file_type));
    if let Some(v) = general.quantization_version {
        put("general.quantization_version", Val::U32(v));
    }

    put("{a}.vocab_size", Val::U32(vocab.len() as u32));
    put("{a}.context_length", Val::U32(h.context_length));
    put("{a}.embedding_length", Val::U32(h.n_embd));
    put("{a}.block_count", Val::U32(h.n_layer));
    put("{a}.feed_forward_length", Val::U32(h.n_ff));
    put("{a}.attention.head_count", Val::U32(h.n_head));
    put("{a}.attention.head_count_kv", Val::U32(h.n_head_kv));
    put("{a}.attention.key_length", Val::U32(h.head_dim));
    put("{a}.attention.value_length", Val::U32(h.head_dim));
    put("{a}.attention.layer_norm_rms_epsilon", Val::F32(h.rms_eps));
    put("{a}.rope.freq_base", Val::F32(h.rope_freq_base));
    put("{a}.rope.dimension_count", Val::U32(h.head_dim));
    if h.arch.is_moe() {
        put("{a}.expert_count", Val::U32(h.n_expert));
        put("{a}.expert_used_count", Val::U32(h.n_expert_used));
        put("{a}.expert_feed_forward_length", Val::U32(h.n_ff_exp));
    }
    if h.arch == SynthArch::Llama4 {
        put("{a}.interleave_moe_layer_step", Val::U32(h.moe_layer_step));
        if let Some(n) = h.expert_shared_count {
            put("{a}.expert_shared_count", Val::U32(n));
        }
    }

    let template = general.chat_template.unwrap_or(vocab.chat_template);
    put("tokenizer.ggml.model", Val::Str("gpt2".into()));
    put("tokenizer.ggml.pre", Val::Str(vocab.pre.into()));
    put("tokenizer.ggml.tokens", Val::StrArr(vocab.tokens));
    put("tokenizer.ggml.token_type", Val::I32Arr(vocab.types));
    put("tokenizer.ggml.merges", Val::StrArr(vocab.merges));
    put("tokenizer.ggml.bos_token_id", Val::U32(vocab.bos));
    put("tokenizer.ggml.eos_token_id", Val::U32(vocab.eos));
    if let Some(eot) = vocab.eot {
        put("tokenizer.ggml.eot_token_id", Val::U32(eot));
    }
    put("tokenizer.ggml.padding_token_id", Val::U32(vocab.pad));
    put("tokenizer.ggml.add_bos_token", Val::Bool(vocab.add_bos));
    put("tokenizer.ggml.add_eos_token", Val::Bool(false));
    put("tokenizer.chat_template", Val::Str(template));
    kv
}

/// FNV-1a, to give every tensor its own random stream.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Tensor data, generated when the writer asks for it and dropped once written, so at most
/// one tensor's data is in memory at a time.
struct LazyTensor {
    seed: u64,
    t: PlannedTensor,
    zero_ids: Rc<Vec<u32>>,
    data: OnceCell<Vec<u8>>,
}

impl LazyTensor {
    fn generate(&self) -> Vec<u8> {
        let n: u64 = self.t.shape.iter().product();
        let n = n as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(fnv1a(&self.t.name));
        let mut bytes = match (self.t.ty, self.t.init) {
            (GGmlType::F32, Init::Ones) => 1f32.to_le_bytes().repeat(n),
            (GGmlType::F16, Init::Ones) => f16::ONE.to_le_bytes().repeat(n),
            (GGmlType::F32, Init::Normal(std)) => {
                let mut out = Vec::with_capacity(4 * n);
                for _ in 0..n {
                    out.extend_from_slice(&(normal(&mut rng) * std).to_le_bytes());
                }
                out
            }
            (GGmlType::F16, Init::Normal(std)) => {
                let mut out = Vec::with_capacity(2 * n);
                for _ in 0..n {
                    out.extend_from_slice(&f16::from_f32(normal(&mut rng) * std).to_le_bytes());
                }
                out
            }
            (ty, _) => unreachable!("synthetic tensors are F16 or F32, not {ty:?}"),
        };
        if self.t.zero_eog_rows {
            let row_bytes = bytes.len() / self.t.shape[1] as usize;
            for &id in self.zero_ids.iter() {
                let start = id as usize * row_bytes;
                bytes[start..start + row_bytes].fill(0);
            }
        }
        bytes
    }
}

impl Borrow<[u8]> for LazyTensor {
    fn borrow(&self) -> &[u8] {
        self.data.get_or_init(|| self.generate())
    }
}

/// A cheap, roughly normal value with mean 0 and std 1: the centred sum of four 16-bit
/// uniforms (Irwin–Hall), from one `u64`.
#[inline]
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let r = rng.next_u64();
    let s = (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48);
    // Each lane is uniform on [0, 1) after (x + 0.5) / 65536: mean 2, variance 4/12.
    ((s as f32 + 2.0) / 65536.0 - 2.0) * 3f32.sqrt()
}

/// Writes the model `spec` describes to `path`, atomically (a temporary file in the same
/// folder, then a rename). Creates the parent folder if needed.
pub fn write_gguf(spec: &SynthSpec, path: &Path) -> Result<()> {
    spec.validate()?;
    let vocab = vocab::build(spec.arch, &spec.vocab)?;
    let zero_ids = Rc::new(vocab.head_zero_ids());
    let tensors = plan(spec, vocab.len() as u64);
    let general = General {
        name: format!("edge synthetic {}", spec.arch),
        file_type: 1, // mostly F16
        quantization_version: None,
        chat_template: spec.chat_template.clone(),
    };
    let kv = metadata(&spec.hparams(), general, vocab);
    write_atomically(path, |tmp| {
        write_file(tmp, spec.seed, kv, tensors, zero_ids)
    })
}

/// Runs `write` on a partial file in `path`'s folder, then renames it to `path`; the
/// partial is removed on failure. Creates the folder if needed.
fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = crate::partial_file::folder_of(path);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = PartialFile::create(path, None)
        .map_err(anyhow::Error::from)
        .and_then(|partial| {
            write(partial.path())?;
            Ok(partial.commit()?)
        });
    result.with_context(|| format!("writing {}", path.display()))
}

/// Writes the header and the metadata key-values.
fn write_kv<W: Write>(out: W, n_tensors: usize, kv: &[(String, Val)]) -> Result<GGufFileWriter<W>> {
    let header = GGufFileHeader::new(3, n_tensors as u64, kv.len() as u64);
    let mut w = GGufFileWriter::new(out, header)?;
    for (key, val) in kv {
        let (ty, bytes) = val.encode();
        w.write_meta_kv(key, ty, &bytes)?;
    }
    Ok(w)
}

fn write_file(
    tmp: &Path,
    seed: u64,
    kv: Vec<(String, Val)>,
    tensors: Vec<PlannedTensor>,
    zero_ids: Rc<Vec<u32>>,
) -> Result<()> {
    let file = File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let w = write_kv(&mut out, tensors.len(), &kv)?;
    drop(kv);
    let mut tw = w.finish::<LazyTensor>(true);
    for t in tensors {
        let (name, shape, ty) = (t.name.clone(), t.shape.clone(), t.ty);
        let data = LazyTensor {
            seed,
            t,
            zero_ids: zero_ids.clone(),
            data: OnceCell::new(),
        };
        tw.write_tensor(&name, ty, &shape, data)?;
    }
    // ggus buffers internally and flushes into `out` when its writer drops (ignoring errors),
    // so check the final length as well.
    let written = tw.finish()? as u64;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    let len = file.metadata()?.len();
    if len != written {
        bail!("short write: {len} of {written} bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_round_trip() {
        for a in [SynthArch::Qwen3, SynthArch::Qwen3Moe, SynthArch::Llama4] {
            assert_eq!(a.as_str().parse::<SynthArch>().unwrap(), a);
        }
        assert!("llama".parse::<SynthArch>().is_err());
    }

    #[test]
    fn defaults_are_k_quant_friendly() {
        for a in [SynthArch::Qwen3, SynthArch::Qwen3Moe, SynthArch::Llama4] {
            for (name, shape, _) in tensor_plan(&SynthSpec::new(a)).unwrap() {
                if shape.len() > 1 {
                    assert_eq!(shape[0] % 256, 0, "{name} {shape:?}");
                }
            }
        }
    }

    #[test]
    fn llama4_needs_a_global_attention_layer() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = SynthSpec::new(SynthArch::Llama4);
        spec.n_layer = 3;
        let err = write_gguf(&spec, &dir.path().join("l3.gguf")).unwrap_err();
        assert!(format!("{err:#}").contains("at least 4 layers"), "{err:#}");
    }

    #[test]
    fn llama4_interleaves_moe_layers() {
        let plan = tensor_plan(&SynthSpec::new(SynthArch::Llama4)).unwrap();
        let names: Vec<&str> = plan.iter().map(|t| t.0.as_str()).collect();
        assert!(names.contains(&"blk.0.ffn_gate.weight"));
        assert!(names.contains(&"blk.1.ffn_gate_exps.weight"));
        assert!(names.contains(&"blk.1.ffn_up_shexp.weight"));
        assert!(names.contains(&"blk.2.ffn_down.weight"));
        assert!(names.contains(&"blk.3.ffn_gate_inp.weight"));
        assert!(!names.contains(&"blk.0.attn_q_norm.weight"));
        assert!(names.contains(&"output.weight"));
    }

    #[test]
    fn normal_has_unit_std() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 200_000;
        let xs: Vec<f32> = (0..n).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f32>() / n as f32;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n as f32;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var.sqrt() - 1.0).abs() < 0.01, "{var}");
    }

    /// Writes every arch (tied and untied) and reads the file back with ggus.
    #[test]
    fn files_read_back() {
        use ggus::{GGuf, GGufMetaMapExt};
        let dir = std::env::temp_dir().join(format!("edge-synth-test-{}", std::process::id()));
        for arch in [SynthArch::Qwen3, SynthArch::Qwen3Moe, SynthArch::Llama4] {
            for tied in [false, true] {
                let mut spec = SynthSpec::new(arch);
                spec.tied_embeddings = tied;
                spec.chat_template = tied.then(|| "{{ messages }}".to_string());
                let path = dir.join(format!("{arch}-{tied}.gguf"));
                write_gguf(&spec, &path).unwrap();
                let bytes = fs::read(&path).unwrap();
                let g = GGuf::new(&bytes).unwrap();
                assert_eq!(g.general_architecture().unwrap(), arch.as_str());
                assert_eq!(g.alignment, ggus::DEFAULT_ALIGNMENT);
                let key = |k: &str| format!("{arch}.{k}");
                assert_eq!(g.get_u32(&key("block_count")).unwrap(), spec.n_layer);
                assert_eq!(
                    g.get_u32(&key("expert_count")).ok(),
                    arch.is_moe().then_some(spec.n_expert)
                );
                let template = g.get_str("tokenizer.chat_template").unwrap();
                match (tied, arch) {
                    (true, _) => assert_eq!(template, "{{ messages }}"),
                    (false, SynthArch::Llama4) => assert_eq!(template, LLAMA4_CHAT_TEMPLATE),
                    (false, _) => assert_eq!(template, QWEN3_CHAT_TEMPLATE),
                }
                let n_vocab = g.get_str_arr("tokenizer.ggml.tokens").unwrap().len();
                let types: Vec<i32> = g
                    .get_i32_arr("tokenizer.ggml.token_type")
                    .unwrap()
                    .map(|t| t.unwrap())
                    .collect();
                assert_eq!(types.len(), n_vocab);
                let eos = g.get_u32("tokenizer.ggml.eos_token_id").unwrap() as usize;
                assert_eq!(types[eos], vocab::TOKEN_CONTROL);

                let plan = tensor_plan(&spec).unwrap();
                assert_eq!(g.tensors.len(), plan.len());
                assert_eq!(g.tensors.contains_key("output.weight"), !tied);
                for (name, shape, ty) in &plan {
                    let info = g.tensors[name.as_str()].to_info();
                    assert_eq!(info.shape(), shape.as_slice(), "{name}");
                    assert_eq!(info.ty(), *ty, "{name}");
                    assert_eq!(info.offset() % ggus::DEFAULT_ALIGNMENT, 0, "{name}");
                    assert!(info.offset() + info.nbytes() <= g.data.len(), "{name}");
                }
                // The lm head's CONTROL rows are zero, the others are not.
                let zero_ids = vocab::build(arch, &spec.vocab).unwrap().head_zero_ids();
                let head = if tied {
                    "token_embd.weight"
                } else {
                    "output.weight"
                };
                let info = g.tensors[head].to_info();
                let data = &g.data[info.offset()..info.offset() + info.nbytes()];
                let row = data.len() / n_vocab;
                for (id, &t) in types.iter().enumerate() {
                    let zero = data[id * row..(id + 1) * row].iter().all(|&b| b == 0);
                    assert_eq!(zero, t == vocab::TOKEN_CONTROL, "{arch} {head} row {id}");
                    assert_eq!(zero, zero_ids.contains(&(id as u32)));
                }
                // Norms are 1.0.
                let info = g.tensors["output_norm.weight"].to_info();
                let norm = &g.data[info.offset()..info.offset() + 4];
                assert_eq!(norm, 1f32.to_le_bytes());
            }
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let mut s = SynthSpec::new(SynthArch::Qwen3);
        s.n_expert = 4;
        assert!(tensor_plan(&s).is_err());
        let mut s = SynthSpec::new(SynthArch::Qwen3Moe);
        s.n_expert_used = 9;
        assert!(tensor_plan(&s).is_err());
        let mut s = SynthSpec::new(SynthArch::Llama4);
        s.n_head_kv = 3;
        assert!(tensor_plan(&s).is_err());
        let mut s = SynthSpec::new(SynthArch::Llama4);
        s.vocab = SynthVocab::Qwen3Files {
            tokenizer_json: "t.json".into(),
            tokenizer_config_json: "c.json".into(),
        };
        assert!(tensor_plan(&s).is_err());
    }

    #[test]
    fn qwen3_template_is_the_real_one() {
        let path = crate::test_data::require("templates/Qwen-Qwen3-0.6B.jinja");
        let real = fs::read_to_string(&path).unwrap();
        assert_eq!(QWEN3_CHAT_TEMPLATE, real);
    }
}
