//! `edge serve MODEL`: an OpenAI- and Ollama-compatible HTTP server with continuous
//! batching over `--parallel` slots.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::args::{
    apply_template, load_planned, pair_report, plan_for, plan_pair_for, plan_report, with_hints,
    ContextArgs, PlacementArgs, SamplingArgs, SpecArgs, SpecChoice, TemplateArgs, ThreadArgs,
};
use crate::engine::LoadOptions;
use crate::request::prepare::JobDefaults;
use crate::resolve::resolve_model;
use crate::serve::{serve, ServeConfig, ServedModels};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model: a catalog name (pulled first), hf.co/ORG/REPO[:QUANT], or a path to a .gguf.
    pub model: String,
    /// Address to listen on. Anything but loopback should come with --api-key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together (continuous batching); the plan holds a KV cache of
    /// --ctx tokens for each.
    #[arg(short = 'p', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallel: u32,
    /// Requests that may wait for a slot; past it the server answers 503 with Retry-After.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_queue: u32,
    /// Require 'Authorization: Bearer KEY' on every route but /health.
    #[arg(long, env = "EDGE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Allow browser requests from this origin ('*' for any). Off by default.
    #[arg(long, value_name = "ORIGIN")]
    pub cors: Option<String>,
    /// Answer tokens for requests that set no max_tokens (default: until the slot's
    /// context is full).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: Option<u32>,
    /// The model id clients see (default: the name given, or the file's stem).
    #[arg(long)]
    pub alias: Option<String>,
    #[command(flatten)]
    pub template: TemplateArgs,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
}

pub fn run(args: ServeArgs, verbose: bool) -> Result<ExitCode> {
    if args.api_key.as_deref() == Some("") {
        anyhow::bail!("--api-key (or EDGE_API_KEY) is empty");
    }
    let template = args.template.choice()?;
    let path = resolve_model(&args.model)?;
    let spec_choice = args.spec.choice(&args.model, &path)?;
    let ctx = args.context.ctx.map(u64::from);
    let parallel = u64::from(args.parallel);
    // With a draft model both are planned together; each loads on the engine thread.
    let (planned, draft_planned) = match &spec_choice {
        SpecChoice::Draft {
            path: dp,
            label: dl,
            limits,
        } => {
            let pair = plan_pair_for(
                &path,
                &args.model,
                dp,
                dl,
                &args.placement,
                ctx,
                parallel,
                limits.max,
                verbose,
            )?;
            if verbose {
                eprintln!("{}", pair_report(&pair));
            }
            (pair.target, Some(pair.draft))
        }
        _ => {
            let planned = plan_for(&path, &args.model, &args.placement, ctx, parallel, verbose)?;
            if verbose {
                eprintln!("{}", plan_report(&planned));
            }
            (planned, None)
        }
    };
    planned.check_fits().map_err(|e| with_hints(e.into()))?;
    let threads = args.threads.get();
    let spec = planned.context(threads);
    let ctx_per_seq = spec.ctx_per_seq();
    let model_id = args.alias.clone().unwrap_or_else(|| {
        if path.exists() && std::path::Path::new(&args.model).exists() {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| args.model.clone())
        } else {
            args.model.clone()
        }
    });
    let config = ServeConfig {
        host: args.host.clone(),
        port: args.port,
        model_id: model_id.clone(),
        model_path: path.clone(),
        api_key: args.api_key.clone(),
        max_queue: args.max_queue as usize,
        cors: args.cors.clone(),
        defaults: JobDefaults {
            max_tokens: args.max_tokens.unwrap_or(ctx_per_seq),
            sampling: args.sampling.overrides(),
        },
        spec,
        known_sha256: crate::hub::known_sha256(&path),
        speculation: match &spec_choice {
            SpecChoice::Off => None,
            SpecChoice::Lookup(limits) | SpecChoice::Draft { limits, .. } => Some(*limits),
        },
    };
    let opts = LoadOptions {
        verbose,
        progress: false,
    };
    let parallel = args.parallel;
    serve(
        config,
        Box::new(move || {
            let draft = match &draft_planned {
                Some(dp) => Some((load_planned(dp, &opts)?, dp.context(threads))),
                None => None,
            };
            let mut model = load_planned(&planned, &opts)?;
            apply_template(&mut model, template.as_ref())?;
            Ok(ServedModels { model, draft })
        }),
        Box::new(move |_| {
            eprintln!("edge: ready: {model_id}, {parallel} slots of {ctx_per_seq} tokens");
        }),
    )?;
    Ok(ExitCode::SUCCESS)
}
