//! The engine's errors. Each carries llama.cpp's own reason where it gave one; none
//! names a command-line flag (the commands add such hints).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("initialising llama.cpp: {0}")]
    Backend(String),
    /// The GGUF header failed edge's checks before llama.cpp saw it.
    #[error("{path}: {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error("cannot load {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("{path}: the model's chat template: {reason}")]
    Template { path: PathBuf, reason: String },
    #[error("tensor pattern '{0}' contains a NUL byte")]
    BadPattern(String),
    #[error("cannot create a llama.cpp context of {n_ctx} tokens{for_seqs}: {reason}")]
    Context {
        n_ctx: u32,
        /// " for N sequences" when there are several.
        for_seqs: String,
        reason: String,
    },
    #[error("llama.cpp decode failed: {0}")]
    Decode(String),
    #[error("the prompt is {prompt} tokens but the context holds {n_ctx} (the model was trained for {n_ctx_train})")]
    PromptTooLong {
        prompt: usize,
        n_ctx: u32,
        n_ctx_train: u32,
    },
    #[error("empty prompt")]
    EmptyPrompt,
    #[error("the text is {tokens} tokens, too short for one chunk of {chunk} tokens")]
    TextTooShort { tokens: usize, chunk: usize },
    #[error("the text is too long to tokenize")]
    TextTooLong,
    #[error("RPC server '{endpoint}': {reason}")]
    Rpc { endpoint: String, reason: String },
    #[error("imatrix: {0}")]
    Imatrix(String),
    #[error("{0}")]
    Quantize(String),
    #[error("batch scheduler made no progress")]
    NoProgress,
}
