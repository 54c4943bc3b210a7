//! Model-name resolution: what the user typed as MODEL → a local GGUF path.
//!
//! - a path to a `.gguf` (the first shard of a split model);
//! - a catalog name, `NAME[:QUANT]` (`qwen3-0.6b`, `qwen3-8b:q4_k_m`), or a name given
//!   with `edge import`;
//! - `hf.co/ORG/REPO[:QUANT]`, any GGUF repo on Hugging Face.
//!
//! Names resolve to the installed copy; a missing model is pulled first (or, offline,
//! taken from the Hugging Face cache). See `crate::hub`.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::hub::names::ModelRef;
use crate::hub::{ensure_local, PullOptions};

/// Turns what the user typed into a local GGUF path, pulling the model when needed.
pub fn resolve_model(name: &str) -> Result<PathBuf> {
    // An existing file wins over a name; a bare word that is only a folder stays a name.
    match ModelRef::parse(name, |p| p.is_file()).map_err(anyhow::Error::msg)? {
        ModelRef::Path(path) => {
            if path.exists() {
                return Ok(path);
            }
            bail!("model file not found: {name}")
        }
        r => ensure_local(&r, &PullOptions::default()),
    }
}
