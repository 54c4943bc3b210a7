//! The synthetic model's architecture and tokenizer choices.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Model families the generator can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthArch {
    /// Dense Qwen 3 (`qwen3`), with q/k norms.
    Qwen3,
    /// Qwen 3 MoE (`qwen3moe`): softmax top-k routing, no shared expert.
    Qwen3Moe,
    /// Llama 4 (`llama4`): sigmoid top-k routing plus a shared expert on MoE layers,
    /// dense and MoE layers interleaved (`interleave_moe_layer_step = 2`).
    Llama4,
}

impl SynthArch {
    /// The GGUF `general.architecture` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SynthArch::Qwen3 => "qwen3",
            SynthArch::Qwen3Moe => "qwen3moe",
            SynthArch::Llama4 => "llama4",
        }
    }

    pub(super) fn is_moe(self) -> bool {
        !matches!(self, SynthArch::Qwen3)
    }
}

impl fmt::Display for SynthArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SynthArch {
    type Err = ParseSynthArchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qwen3" => Ok(SynthArch::Qwen3),
            "qwen3moe" => Ok(SynthArch::Qwen3Moe),
            "llama4" => Ok(SynthArch::Llama4),
            _ => Err(ParseSynthArchError(s.to_string())),
        }
    }
}

/// The tokenizer written into the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthVocab {
    /// small GPT-2 byte-level BPE: 256 byte tokens (bytes_to_unicode order) + a few dozen merges + the chat special tokens
    ///
    /// Token id = byte value for ids 0–255 (text from GPT-2's `bytes_to_unicode`), then 40
    /// merged tokens learnt from a small embedded corpus, then the family's special tokens:
    /// 303 tokens for the Qwen families, 304 for llama4.
    Toy,
    /// Qwen 3's real tokenizer: paths to HF tokenizer.json and tokenizer_config.json
    ///
    /// Gives 151,669 tokens; the chat template, eos and pad come from tokenizer_config.json.
    /// Only for the `qwen3` and `qwen3moe` architectures.
    Qwen3Files {
        tokenizer_json: PathBuf,
        tokenizer_config_json: PathBuf,
    },
}

/// Error of [`SynthArch::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown synthetic architecture {0:?} (expected qwen3, qwen3moe or llama4)")]
pub struct ParseSynthArchError(pub String);
