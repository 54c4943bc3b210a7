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
    /// Plan this draft model beside it (speculative decoding): the draft is placed
    /// first, and the forecast includes speculation. Any name `edge run --draft` takes.
    #[arg(long, value_name = "MODEL", conflicts_with = "max_ctx")]
    pub draft: Option<String>,
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
    if let Some(draft) = &args.draft {
        let (draft_label, draft_gguf) = model_header(draft).map_err(|e| with_hints(e.into()))?;
        // From headers alone only the tokenizer and vocabulary size can be compared;
        // `edge run --draft` checks every token text before loading.
        let vocab = |g: &crate::gguf_info::GgufFile| {
            (
                g.get_str("tokenizer.ggml.model").map(str::to_string),
                g.array_len("tokenizer.ggml.tokens").unwrap_or(0),
            )
        };
        let ((tk, tn), (dk, dn)) = (vocab(&gguf), vocab(&draft_gguf));
        if tk != dk || tn.abs_diff(dn) > crate::speculative::vocab::MAX_SIZE_DIFFERENCE as u64 {
            bail!(
                "draft model {draft_label} cannot draft for {label}: their vocabularies differ \
                 ({} tokens of {} vs {} of {})",
                tn,
                tk.as_deref().unwrap_or("?"),
                dn,
                dk.as_deref().unwrap_or("?")
            );
        }
        let draft_shape = ModelShape::from_gguf(&draft_gguf)
            .map_err(|e| anyhow::anyhow!("{draft_label}: {e}"))?;
        let pair = crate::planner::draft::plan_pair(
            &shape,
            &draft_shape,
            &profile,
            &request,
            crate::speculative::DraftLimits::default().max,
        );
        if args.json {
            println!("{}", serde_json::to_string_pretty(&pair)?);
        } else {
            let planned = |label: &str, shape: &ModelShape, plan| crate::loading::PlannedModel {
                path: label.into(),
                label: label.to_string(),
                shape: shape.clone(),
                profile: profile.clone(),
                plan,
            };
            print!(
                "{}",
                super::args::pair_report(&crate::loading::PlannedPair {
                    target: planned(&label, &shape, pair.target.clone()),
                    draft: planned(&draft_label, &draft_shape, pair.draft.clone()),
                    forecast: pair.forecast.clone(),
                })
            );
        }
        for (which, p) in [("", &pair.target), ("draft model ", &pair.draft)] {
            if !p.fits {
                bail!(
                    "{which}{} does not fit on {}: {}",
                    if which.is_empty() {
                        &label
                    } else {
                        &draft_label
                    },
                    profile.name,
                    p.reason.as_deref().unwrap_or("not enough memory")
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
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
