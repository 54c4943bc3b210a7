//! `edge import FILE.gguf --as NAME`: register a local GGUF under a name, without
//! copying it. `edge run NAME` then loads that file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::hub::import;
use crate::term::human_bytes;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The GGUF file (the first shard of a split model).
    pub file: PathBuf,
    /// The name to register (`my-model`, or `my-model:Q4_K_M`).
    #[arg(long = "as", value_name = "NAME")]
    pub name: String,
    /// Replace a model already imported under NAME.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: ImportArgs, _verbose: bool) -> Result<ExitCode> {
    let m = import(&args.file, &args.name, args.force)?;
    println!("{}\t{}\t{}", m.id(), human_bytes(m.size), m.path.display());
    Ok(ExitCode::SUCCESS)
}
