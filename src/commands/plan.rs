//! `edge plan MODEL`: where every tensor of a GGUF would live on a device, with which
//! context and KV type, and how fast it would run, before anything loads. MODEL can be
//! a local or header-only GGUF, or a name that is not downloaded yet (its header is read
//! over HTTP Range requests).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::args::{suggestion_hint, with_hints, ContextArgs, PlacementArgs};
use crate::loading::{model_header, plan_title};
use crate::planner::{plan, ModelShape};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A .gguf (header-only works), a catalog name or hf.co/ORG/REPO[:QUANT]; names that
    /// are not downloaded are planned from their header, fetched with HTTP Range requests.
    pub model: String,
    /// Sequences decoded at once (as `edge batch --parallel`), each with --ctx tokens.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub parallel: u64,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
}

pub fn run(args: PlanArgs, verbose: bool) -> Result<ExitCode> {
    let (label, gguf) = model_header(&args.model).map_err(|e| with_hints(e.into()))?;
    let shape = ModelShape::from_gguf(&gguf).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
    let placement = args
        .placement
        .request()?
        .with_rpc_devices(verbose)
        .map_err(|e| with_hints(e.into()))?;
    let profile = placement.device_profile()?;
    let request = placement.plan_request(args.context.ctx.map(u64::from), args.parallel)?;
    let p = plan(&shape, &profile, &request);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!(
            "{}",
            crate::planner::report::render(
                &p,
                &plan_title(&label, &shape, &profile),
                &suggestion_hint
            )
        );
    }
    if !p.fits {
        bail!(
            "{label} does not fit on {}: {}",
            profile.name,
            p.reason.as_deref().unwrap_or("not enough memory")
        );
    }
    Ok(ExitCode::SUCCESS)
}
