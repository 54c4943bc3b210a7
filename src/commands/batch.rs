//! `edge batch MODEL --input IN --output OUT` (being built; see its issue).

use std::process::ExitCode;

use anyhow::{bail, Result};

#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    /// Arguments (placeholder until the command lands).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: BatchArgs, _verbose: bool) -> Result<ExitCode> {
    bail!("`edge batch` is not available in this build yet")
}
