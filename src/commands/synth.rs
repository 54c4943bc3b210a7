//! `edge synth ARCH OUT.gguf` (hidden): writes a tiny random-weight model, for tests,
//! demos and the quantization benchmarks.
//!
//! `edge synth --full-size NAME OUT.gguf` writes a header-only GGUF with the tensor table of
//! a published model instead (see `crate::synth::fullsize`), for the planner.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::synth::fullsize::{write_header_only, FullSizeModel};
use crate::synth::{write_gguf, SynthArch, SynthSpec, SynthVocab};

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// qwen3, qwen3moe or llama4 (with --full-size: the output path instead).
    #[arg(value_name = "ARCH")]
    pub arch: Option<String>,
    /// Output .gguf path.
    #[arg(value_name = "OUT")]
    pub output: Option<std::path::PathBuf>,
    /// Write a header-only GGUF (no tensor data) with the full-size Q4_K_M tensor table of
    /// NAME: qwen3-30b-a3b, qwen3-235b-a22b, llama4-scout or llama4-maverick.
    /// Usage: edge synth --full-size NAME OUT.gguf
    #[arg(long, value_name = "NAME", conflicts_with_all = ["qwen3_tokenizer", "layers", "experts", "experts_used", "template", "embd", "ff", "heads", "kv_heads"])]
    pub full_size: Option<String>,
    /// Use Qwen 3's real tokenizer from this folder (tokenizer.json, tokenizer_config.json).
    #[arg(long)]
    pub qwen3_tokenizer: Option<std::path::PathBuf>,
    /// Number of layers (default per architecture).
    #[arg(long)]
    pub layers: Option<u32>,
    /// Number of experts (MoE architectures).
    #[arg(long)]
    pub experts: Option<u32>,
    /// Experts used per token (MoE architectures).
    #[arg(long)]
    pub experts_used: Option<u32>,
    /// Embedding width (default 256). Wider models are bandwidth-bound like real ones.
    #[arg(long, value_name = "N")]
    pub embd: Option<u32>,
    /// Feed-forward width, per expert in MoE models (default 256).
    #[arg(long, value_name = "N")]
    pub ff: Option<u32>,
    /// Attention heads (default 4; head size stays 64).
    #[arg(long, value_name = "N")]
    pub heads: Option<u32>,
    /// KV heads (default 2; must divide --heads).
    #[arg(long, value_name = "N")]
    pub kv_heads: Option<u32>,
    /// Replace the chat template with the contents of this file.
    #[arg(long)]
    pub template: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub fn run(args: SynthArgs) -> Result<ExitCode> {
    if let Some(name) = &args.full_size {
        let model: FullSizeModel = name.parse().map_err(anyhow::Error::msg)?;
        // Only one positional is given; clap puts it in the first slot.
        let out = match (&args.arch, &args.output) {
            (Some(p), None) => PathBuf::from(p),
            _ => bail!("usage: edge synth --full-size NAME OUT.gguf"),
        };
        write_header_only(model, &out)?;
        eprintln!("edge: wrote {} (header only, {model})", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(arch), Some(output)) = (&args.arch, &args.output) else {
        bail!("usage: edge synth ARCH OUT.gguf (or edge synth --full-size NAME OUT.gguf)");
    };
    let arch: SynthArch = arch.parse().map_err(anyhow::Error::msg)?;
    let mut spec = SynthSpec::new(arch);
    spec.seed = args.seed;
    if let Some(n) = args.layers {
        spec.n_layer = n;
    }
    if let Some(n) = args.experts {
        spec.n_expert = n;
    }
    if let Some(n) = args.experts_used {
        spec.n_expert_used = n;
    }
    if let Some(n) = args.embd {
        spec.n_embd = n;
    }
    if let Some(n) = args.ff {
        spec.n_ff = n;
    }
    if let Some(n) = args.heads {
        spec.n_head = n;
    }
    if let Some(n) = args.kv_heads {
        spec.n_head_kv = n;
    }
    if let Some(dir) = &args.qwen3_tokenizer {
        spec.vocab = SynthVocab::Qwen3Files {
            tokenizer_json: dir.join("tokenizer.json"),
            tokenizer_config_json: dir.join("tokenizer_config.json"),
        };
    }
    if let Some(t) = &args.template {
        spec.chat_template = Some(
            std::fs::read_to_string(t)
                .with_context(|| format!("reading template {}", t.display()))?,
        );
    }
    write_gguf(&spec, output).with_context(|| format!("writing {}", output.display()))?;
    eprintln!("edge: wrote {}", output.display());
    Ok(ExitCode::SUCCESS)
}
