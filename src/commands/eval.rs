//! `edge eval MODEL --text FILE` (being built; see its issue).

use std::process::ExitCode;

use anyhow::{bail, Result};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Arguments (placeholder until the command lands).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: EvalArgs, _verbose: bool) -> Result<ExitCode> {
    bail!("`edge eval` is not available in this build yet")
}
