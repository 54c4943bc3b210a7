//! `edge quantize IN OUT --type T` (being built; see its issue).

use std::process::ExitCode;

use anyhow::{bail, Result};

#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// Arguments (placeholder until the command lands).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: QuantizeArgs, _verbose: bool) -> Result<ExitCode> {
    bail!("`edge quantize` is not available in this build yet")
}
