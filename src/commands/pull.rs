//! `edge pull NAME` (being built; see its issue).

use std::process::ExitCode;

use anyhow::{bail, Result};

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Arguments (placeholder until the command lands).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: PullArgs, _verbose: bool) -> Result<ExitCode> {
    bail!("`edge pull` is not available in this build yet")
}
