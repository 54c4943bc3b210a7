//! `edge eval MODEL --text FILE [--ref REF.gguf] [--ctx 512]`: perplexity, and KL
//! divergence against a reference, as llama.cpp's `llama-perplexity --kl-divergence`
//! defines them (see `crate::quantize::eval`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::args::{plan_and_load, with_hints, PlacementArgs, ThreadArgs};
use crate::engine::{ContextSpec, LoadOptions, Model};
use crate::quantize::eval::{evaluate, EvalOptions};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The model to evaluate (.gguf).
    pub model: PathBuf,
    /// Evaluation text (UTF-8).
    #[arg(long, value_name = "FILE")]
    pub text: PathBuf,
    /// Reference model (e.g. the F16): adds KL divergence, PPL ratio, same-top-token %.
    #[arg(long = "ref", value_name = "REF.gguf")]
    pub reference: Option<PathBuf>,
    /// Tokens per chunk (llama-perplexity's -c).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(8..=131072))]
    pub ctx: u32,
    /// Evaluate at most this many chunks.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunks: Option<u64>,
    /// Where the reference log-probs are cached (default: edge's cache dir).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
}

pub fn run(args: EvalArgs, verbose: bool) -> Result<ExitCode> {
    let text = std::fs::read(&args.text)
        .with_context(|| format!("cannot read the text {}", args.text.display()))?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", args.text.display()))?;
    if text.trim().is_empty() {
        bail!("{} is empty", args.text.display());
    }
    // Each model (and the reference) is planned for one chunk of context and loaded
    // with that plan applied.
    let threads = args.threads.get();
    let load = |path: &std::path::Path| -> Result<(Model, ContextSpec)> {
        let label = path.display().to_string();
        let opts = LoadOptions {
            verbose,
            progress: false,
        };
        let (planned, model) = plan_and_load(
            path,
            &label,
            &args.placement,
            Some(u64::from(args.ctx)),
            1,
            &opts,
        )?;
        Ok((model, planned.context(threads)))
    };
    let opts = EvalOptions {
        n_ctx: args.ctx,
        max_chunks: args.chunks.map(|c| c as usize),
        cache_dir: args.cache_dir.clone(),
        load: &load,
    };
    let r = evaluate(&args.model, args.reference.as_deref(), &text, &opts).map_err(with_hints)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("model              {}", r.model);
    println!(
        "tokens scored      {} ({} chunks of {})",
        r.tokens_scored, r.chunks, r.n_ctx
    );
    println!("PPL                {:.4} ± {:.4}", r.ppl, r.ppl_unc);
    if let (Some(k), Some(reference)) = (&r.kld, &r.reference) {
        println!(
            "reference          {reference}{}",
            if r.reference_cached { " (cached)" } else { "" }
        );
        println!("PPL(ref)           {:.4}", k.ppl_ref);
        println!(
            "ln(PPL/PPL(ref))   {:.6} ± {:.6}  (ratio {:.4})",
            k.ln_ppl_ratio, k.ln_ppl_ratio_unc, k.ppl_ratio
        );
        println!(
            "mean KLD           {:.6} ± {:.6}",
            k.kld_mean, k.kld_mean_unc
        );
        println!("median KLD         {:.6}", k.kld_median);
        println!("99% KLD            {:.6}", k.kld_p99);
        println!("99.9% KLD          {:.6}", k.kld_p999);
        println!("max KLD            {:.6}", k.kld_max);
        println!("same top token     {:.2} %", k.same_top_pct);
    }
    Ok(ExitCode::SUCCESS)
}
