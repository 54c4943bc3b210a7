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
    /// Report the longest context that fits for each KV cache type (f16, q8_0, q4_0),
    /// up to the model's own limit (its training context or its YaRN extension).
    #[arg(long, conflicts_with = "ctx")]
    pub max_ctx: bool,
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
    if args.max_ctx {
        return max_ctx(&label, &shape, &profile, &request, args.json);
    }
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

fn max_ctx(
    label: &str,
    shape: &ModelShape,
    profile: &crate::profile::DeviceProfile,
    request: &crate::planner::PlanRequest,
    json: bool,
) -> Result<ExitCode> {
    use crate::planner::context::{max_context, ContextBound};
    let limits = max_context(shape, profile, request);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": label,
                "profile": profile.name,
                "model_context_limit": shape.context_limit(),
                "yarn": shape.yarn.map(|(factor, original)| serde_json::json!({
                    "factor": factor, "original_context": original
                })),
                "limits": limits,
            }))?
        );
    } else {
        let yarn = shape
            .yarn
            .map_or(String::new(), |(f, o)| format!(" (YaRN x{f} over {o})"));
        println!(
            "{} on {}: the model supports {} tokens{yarn}",
            label,
            profile.name,
            shape.context_limit()
        );
        let rows: Vec<[String; 5]> = limits
            .iter()
            .map(|l| {
                [
                    l.kv_type.name().to_string(),
                    if l.max_ctx > 0 {
                        l.max_ctx.to_string()
                    } else {
                        "-".into()
                    },
                    match l.bound {
                        ContextBound::Memory => "memory",
                        ContextBound::Model => "model",
                        ContextBound::Unusable => "does not fit",
                    }
                    .to_string(),
                    if l.max_ctx > 0 {
                        crate::term::human_bytes(l.kv_bytes)
                    } else {
                        "-".into()
                    },
                    if l.max_ctx > 0 {
                        format!("{:.1}", l.decode_tok_s)
                    } else {
                        "-".into()
                    },
                ]
            })
            .collect();
        crate::term::print_table(
            &["KV", "MAX CTX", "BOUND", "KV CACHE", "DECODE TOK/S"],
            &rows,
        );
    }
    if limits.iter().all(|l| l.max_ctx == 0) {
        bail!("{label} does not fit on {} at any context", profile.name);
    }
    Ok(ExitCode::SUCCESS)
}
