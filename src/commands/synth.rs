//! `edge synth ARCH OUT.gguf` (hidden): writes a tiny random-weight model, for tests,
//! demos and the quantization benchmarks.
//!
//! `edge synth --full-size NAME OUT.gguf` writes a header-only GGUF with the tensor table of
//! a published model instead (see `crate::synth::fullsize`), for the planner.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::SynthArgs;
use crate::synth::fullsize::{write_header_only, FullSizeModel};
use crate::synth::{write_gguf, SynthArch, SynthSpec, SynthVocab};

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
