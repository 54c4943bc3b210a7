//! `edge rm NAME[:QUANT]`: remove an installed model. Files that no other installed
//! model uses are deleted from the store; imported files and the Hugging Face cache are
//! never touched.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::hub::names::ModelRef;
use crate::hub::remove;
use crate::hub::store::ModelSource;

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Installed name (`qwen3-8b`, `qwen3-8b:Q4_K_M`, `hf.co/ORG/REPO:QUANT`, an imported name).
    pub model: String,
}

pub fn run(args: RmArgs, _verbose: bool) -> Result<ExitCode> {
    let r = ModelRef::parse(&args.model, |_| false).map_err(anyhow::Error::msg)?;
    if let ModelRef::Path(p) = &r {
        bail!(
            "{} is a path: `edge rm` takes an installed model name (see `edge list`)",
            p.display()
        );
    }
    let gone = remove(&r)?;
    match &gone.source {
        ModelSource::Import { file } => {
            println!(
                "removed {} (the file {} is kept)",
                gone.id(),
                file.display()
            )
        }
        ModelSource::Hf { .. } => println!("removed {}", gone.id()),
    }
    Ok(ExitCode::SUCCESS)
}
