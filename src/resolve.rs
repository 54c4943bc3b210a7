//! Model-name resolution. Today a MODEL is a path to a `.gguf`; the catalog issue
//! extends this one function with short names and `hf.co/…` references.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// Turns what the user typed into a local GGUF path.
pub fn resolve_model(name: &str) -> Result<PathBuf> {
    if name.trim().is_empty() {
        bail!("no model given");
    }
    let path = PathBuf::from(name);
    if path.exists() {
        return Ok(path);
    }
    if name.ends_with(".gguf") || name.contains(std::path::MAIN_SEPARATOR) {
        bail!("model file not found: {name}");
    }
    bail!("model not found: '{name}' is not a file (model names from the catalog are not supported yet; pass a path to a .gguf)")
}
