//! `edge synth ARCH OUT.gguf` (hidden): writes a tiny random-weight model, for tests,
//! demos and the quantization benchmarks.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::SynthArgs;
use crate::synth::{write_gguf, SynthArch, SynthSpec, SynthVocab};

pub fn run(args: SynthArgs) -> Result<ExitCode> {
    let arch: SynthArch = args.arch.parse().map_err(anyhow::Error::msg)?;
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
    write_gguf(&spec, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("edge: wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
