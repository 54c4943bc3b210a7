//! `edge pull NAME`: download a model (catalog name or `hf.co/ORG/REPO[:QUANT]`) into
//! the local store, verified by sha256. Rerun to update; an interrupted pull resumes.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::hub::names::ModelRef;
use crate::hub::{pull, PullOptions};
use crate::term::human_bytes;

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Catalog name (`qwen3-8b`, `qwen3-8b:q4_k_m`) or `hf.co/ORG/REPO[:QUANT]`.
    pub model: String,
    /// No progress bar or notes.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: PullArgs, verbose: bool) -> Result<ExitCode> {
    let r = ModelRef::parse(&args.model, |_| false).map_err(anyhow::Error::msg)?;
    if let ModelRef::Path(p) = &r {
        bail!(
            "{} is a path: `edge pull` takes a catalog name or hf.co/ORG/REPO[:QUANT] (register a local file with `edge import FILE --as NAME`)",
            p.display()
        );
    }
    let out = pull(
        &r,
        &PullOptions {
            quiet: args.quiet,
            verbose,
        },
    )?;
    let notes = !args.quiet && (verbose || std::io::stderr().is_terminal());
    if notes {
        if let Some(n) = &out.offline_note {
            eprintln!("{n}");
        } else if out.up_to_date {
            eprintln!("{} is up to date", out.model.id());
        } else if out.fetched > 0 || out.reused > 0 {
            eprintln!(
                "{}: {} downloaded, {} reused, sha256 verified",
                out.model.id(),
                human_bytes(out.fetched),
                human_bytes(out.reused)
            );
        }
    }
    println!(
        "{}\t{}\t{}",
        out.model.id(),
        human_bytes(out.model.size),
        out.model.path.display()
    );
    Ok(ExitCode::SUCCESS)
}
