//! The argument groups several subcommands share, declared once and flattened into each
//! (`#[command(flatten)]`): placement, context, threads and sampling. Also the one
//! place that words library errors and planner suggestions as the flags users type,
//! and the plan-then-load step every model-loading command runs.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::chat_formats::BuiltinFormat;
use crate::engine::{ChatTemplateChoice, EngineError, LoadOptions, Model};
use crate::loading::{
    plan_file, plan_pair_files, LoadError, PlacementRequest, PlannedModel, PlannedPair,
};
use crate::planner::{KvType, Suggestion};
use crate::speculative::DraftLimits;
use crate::term::{human_bytes, parse_size};

/// Where the planner may put the weights. Every command that loads a model takes these.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Placement (the planner decides; these constrain it)")]
pub struct PlacementArgs {
    /// Device profile to plan for (see `edge profile list`; default: this machine).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// VRAM the plan may use (e.g. 6GiB), instead of the profile's.
    #[arg(long, value_name = "SIZE", value_parser = parse_size_or_zero)]
    pub vram: Option<u64>,
    /// RAM the plan may use, instead of the profile's.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub ram: Option<u64>,
    /// KV cache type (default: f16, q8_0 when f16 would push weights out of VRAM).
    #[arg(long, value_name = "TYPE", value_parser = parse_kv_type)]
    pub kv_type: Option<KvType>,
    /// Keep every routed expert on the CPU.
    #[arg(long)]
    pub cpu_moe: bool,
    /// Keep the routed experts of the first N layers on the CPU.
    #[arg(long, value_name = "N")]
    pub n_cpu_moe: Option<u32>,
    /// Keep tensors matching REGEX on the CPU: REGEX=CPU (repeatable; llama.cpp's -ot).
    #[arg(
        long = "override-tensor",
        visible_alias = "ot",
        value_name = "REGEX=CPU"
    )]
    pub override_tensor: Vec<String>,
    /// Tokens per ubatch, the physical batch (default 512).
    #[arg(long, visible_alias = "ubatch-size", value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub ubatch: Option<u64>,
    /// Use a ggml RPC server (`edge rpc-server`, llama.cpp's rpc-server) as a device:
    /// HOST:PORT (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    pub rpc: Vec<String>,
}

/// The context of commands that hold a conversation or a job per sequence.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct ContextArgs {
    /// Context size in tokens, per sequence (default: the model's training context up
    /// to 8192, halved down to 2048 until the plan fits the device).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..))]
    pub ctx: Option<u32>,
}

/// The chat template of commands that chat.
#[derive(Debug, Args, Clone, Default)]
pub struct TemplateArgs {
    /// Use this chat format instead of the model's own: a built-in name (chatml, gemma,
    /// llama3, phi3, mistral, plain) or a Jinja template file. Models without a template
    /// get one picked from their vocabulary.
    #[arg(long, value_name = "NAME|FILE")]
    pub chat_template: Option<String>,
}

impl TemplateArgs {
    /// What was asked for, checked before any model loads.
    pub fn choice(&self) -> Result<Option<ChatTemplateChoice>> {
        let Some(arg) = &self.chat_template else {
            return Ok(None);
        };
        if let Some(f) = BuiltinFormat::by_name(arg) {
            return Ok(Some(ChatTemplateChoice::Builtin(f)));
        }
        let path = std::path::Path::new(arg);
        if !path.exists() {
            let names: Vec<&str> = crate::chat_formats::ALL.iter().map(|f| f.name()).collect();
            bail!(
                "--chat-template '{arg}' is neither a built-in format ({}) nor a file",
                names.join(", ")
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read chat template {}", path.display()))?;
        Ok(Some(ChatTemplateChoice::Source(text)))
    }
}

/// Applies `--chat-template` to a loaded model, and says which format a model
/// without a template got.
pub fn apply_template(model: &mut Model, choice: Option<&ChatTemplateChoice>) -> Result<()> {
    match choice {
        Some(c) => model.set_chat_template(c)?,
        None => match model.builtin_format {
            Some(BuiltinFormat::Plain) => eprintln!(
                "edge: note: {} has no chat template and no chat format was recognised in its vocabulary: plain completion (--chat-template picks one)",
                model.path.display()
            ),
            Some(f) => eprintln!(
                "edge: note: {} has no chat template; using the {} format (from its vocabulary)",
                model.path.display(),
                f.name()
            ),
            None => {}
        },
    }
    Ok(())
}

#[derive(Debug, Args, Clone, Copy, Default)]
pub struct ThreadArgs {
    /// CPU threads (default: physical cores).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

impl ThreadArgs {
    pub fn get(&self) -> u32 {
        self.threads.unwrap_or_else(crate::engine::default_threads)
    }
}

/// Speculative decoding. Output is what plain decoding gives; only the speed changes.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Speculative decoding (output unchanged, only faster)")]
pub struct SpecArgs {
    /// A small model with the same vocabulary drafts tokens that the model checks in
    /// one batch: anything `edge run` takes, or `auto` (the catalog's draft for this
    /// model, e.g. qwen3-0.6b for Qwen 3 4B and up; --lookup where there is none).
    #[arg(long, value_name = "MODEL")]
    pub draft: Option<String>,
    /// Draft from n-grams of the prompt and the text so far (no draft model): fast on
    /// output that copies its input.
    #[arg(long, conflicts_with = "draft")]
    pub lookup: bool,
    /// Most tokens drafted per step; fewer are drafted when they do not pay.
    #[arg(long, value_name = "N", default_value_t = DraftLimits::default().max as u32,
          value_parser = clap::value_parser!(u32).range(1..=128))]
    pub draft_max: u32,
    /// Fewest tokens worth verifying: a shorter draft is dropped.
    #[arg(long, value_name = "N", default_value_t = DraftLimits::default().min as u32,
          value_parser = clap::value_parser!(u32).range(1..=128))]
    pub draft_min: u32,
    /// A draft model stops drafting where its own top probability falls below P
    /// (default 0: with small drafts their argmax is usually right even when unsure).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub draft_p_min: f32,
}

fn probability(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability between 0 and 1")),
    }
}

/// What [`SpecArgs`] asked for, with the draft model found.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecChoice {
    Off,
    Lookup(DraftLimits),
    Draft {
        path: std::path::PathBuf,
        label: String,
        limits: DraftLimits,
    },
}

impl SpecArgs {
    pub fn limits(&self) -> Result<DraftLimits> {
        if self.draft_min > self.draft_max {
            bail!(
                "--draft-min {} is above --draft-max {}",
                self.draft_min,
                self.draft_max
            );
        }
        Ok(DraftLimits {
            max: self.draft_max as usize,
            min: self.draft_min as usize,
            p_min: self.draft_p_min,
        })
    }

    /// Finds (pulls) the draft model for the target `model` (as the user named it) at
    /// `path`.
    pub fn choice(&self, model: &str, path: &Path) -> Result<SpecChoice> {
        let limits = self.limits()?;
        if self.lookup {
            return Ok(SpecChoice::Lookup(limits));
        }
        let Some(draft) = &self.draft else {
            return Ok(SpecChoice::Off);
        };
        let name = if draft == "auto" {
            match auto_draft(model, path)? {
                Some(name) => name,
                None => return Ok(SpecChoice::Lookup(limits)),
            }
        } else {
            draft.clone()
        };
        let draft_path = crate::resolve::resolve_model(&name)?;
        Ok(SpecChoice::Draft {
            label: if draft == "auto" {
                name
            } else {
                draft_path.display().to_string()
            },
            path: draft_path,
            limits,
        })
    }
}

/// `--draft auto`: the catalog entry's `draft`; for a file, the catalog's draft of the
/// first entry of its architecture that has one, unless the file is that draft's size
/// or smaller. `None`: lookup.
fn auto_draft(model: &str, path: &Path) -> Result<Option<String>> {
    let catalog = crate::catalog::Catalog::load()?;
    let base = model.split(':').next().unwrap_or(model);
    if let Some(entry) = catalog.find(base) {
        return Ok(entry.draft.clone());
    }
    let header = crate::loading::open_header(path)?;
    let Some(arch) = header.architecture().map(str::to_string) else {
        return Ok(None);
    };
    let facts = crate::gguf_info::ModelFacts::from_gguf(&header).map_err(anyhow::Error::msg)?;
    let draft = catalog
        .entries()
        .iter()
        .filter(|e| e.arch == arch)
        .find_map(|e| e.draft.as_deref())
        .and_then(|d| catalog.find(d));
    Ok(draft
        .filter(|d| (facts.n_params as f64) > d.params_b * 1.5e9)
        .map(|d| d.name.clone()))
}

#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Sampling (edge batch and serve: for requests that set none)")]
pub struct SamplingArgs {
    /// Temperature; 0 means greedy and deterministic.
    #[arg(long, value_name = "T", value_parser = non_negative_f32)]
    pub temp: Option<f32>,
    /// Top-k sampling (0 disables).
    #[arg(long, value_name = "K")]
    pub top_k: Option<u32>,
    /// Top-p (nucleus) sampling, in (0, 1].
    #[arg(long, value_name = "P", value_parser = unit_f32)]
    pub top_p: Option<f32>,
    /// Min-p sampling, in [0, 1].
    #[arg(long, value_name = "P", value_parser = unit_f32)]
    pub min_p: Option<f32>,
    /// Random seed (default: random; with --temp 0 the seed does not matter). For
    /// `edge batch`, the base seed each request's seed derives from with its custom_id
    /// (default 0), unless the request sets its own.
    #[arg(long, value_name = "N")]
    pub seed: Option<u32>,
}

impl SamplingArgs {
    pub fn overrides(&self) -> crate::chat::SamplingOverrides {
        crate::chat::SamplingOverrides {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            seed: self.seed,
        }
    }
}

impl PlacementArgs {
    /// The library's request: `--override-tensor` patterns must end in `=CPU`.
    pub fn request(&self) -> Result<PlacementRequest> {
        let mut cpu_patterns = Vec::new();
        for o in &self.override_tensor {
            let (pattern, device) = o
                .rsplit_once('=')
                .ok_or_else(|| anyhow::anyhow!("--override-tensor '{o}': expected REGEX=CPU"))?;
            if !device.eq_ignore_ascii_case("cpu") {
                anyhow::bail!(
                    "--override-tensor '{o}': only CPU pins are supported (VRAM placement is the planner's job)"
                );
            }
            cpu_patterns.push(pattern.to_string());
        }
        Ok(PlacementRequest {
            profile: self.profile.clone(),
            vram: self.vram,
            ram: self.ram,
            kv_type: self.kv_type,
            cpu_moe: self.cpu_moe,
            n_cpu_moe: self.n_cpu_moe,
            cpu_patterns,
            ubatch: self.ubatch,
            rpc: self.rpc.clone(),
        })
    }
}

fn parse_size_or_zero(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        Ok(0)
    } else {
        parse_size(s)
    }
}

fn parse_kv_type(s: &str) -> Result<KvType, String> {
    KvType::parse(s).ok_or_else(|| format!("'{s}' is not a KV type (f16, q8_0, q4_0)"))
}

fn non_negative_f32(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("'{s}' must be a finite number >= 0"))
    }
}

fn unit_f32(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("'{s}' must be between 0 and 1"))
    }
}

/// A planner suggestion in the words and flags a user types.
pub fn suggestion_hint(s: &Suggestion) -> String {
    match s {
        Suggestion::ShorterContext {
            ctx,
            current_ctx,
            kv_bytes,
        } => format!(
            "a shorter context: --ctx {ctx} (the KV cache at {current_ctx} is {})",
            human_bytes(*kv_bytes)
        ),
        Suggestion::QuantizedKv => "a quantized KV cache: --kv-type q8_0".into(),
        Suggestion::FewerSequences { parallel, current } => {
            format!("fewer sequences: --parallel {parallel} (instead of {current})")
        }
        Suggestion::FewerPins => "fewer pins (--cpu-moe, --n-cpu-moe, --override-tensor)".into(),
        Suggestion::LargerDevice { profile } => {
            format!("a device with more memory, e.g. --profile {profile}")
        }
        // No flag to name: the planner's own words.
        Suggestion::SmallerQuant { .. } | Suggestion::FarTooLarge { .. } => s.to_string(),
    }
}

/// The plan's report as `edge plan` prints it.
pub fn plan_report(planned: &PlannedModel) -> String {
    crate::planner::report::render(&planned.plan, &planned.title(), &suggestion_hint)
}

/// The target's plan, the draft's, and what speculation is forecast to give.
pub fn pair_report(pair: &PlannedPair) -> String {
    let f = &pair.forecast;
    format!(
        "{}\nDraft model:\n{}\nSpeculation: {:.1} tok/s forecast ({:.2}x plain {:.1} tok/s) with \
         {} draft tokens per step at an assumed {:.0} % acceptance; the draft decodes at \
         {:.1} tok/s. Measured acceptance replaces the assumption as it runs.\n",
        plan_report(&pair.target),
        plan_report(&pair.draft),
        f.spec_tok_s,
        f.spec_tok_s / f.plain_tok_s.max(1e-9),
        f.plain_tok_s,
        f.draft_len,
        100.0 * f.acceptance,
        f.draft_tok_s,
    )
}

/// A model loaded for generation, with its draft model when one drafts for it.
pub struct LoadedModel {
    pub planned: PlannedModel,
    pub model: Model,
    pub draft: Option<(PlannedModel, Model)>,
}

/// Plans and loads the model and, for `--draft`, the draft beside it (vocabularies
/// checked first, both planned together, the draft loaded first).
pub fn plan_and_load_with_draft(
    path: &Path,
    label: &str,
    placement: &PlacementArgs,
    ctx: Option<u64>,
    parallel: u64,
    opts: &LoadOptions,
    spec: &SpecChoice,
) -> Result<LoadedModel> {
    let SpecChoice::Draft {
        path: draft_path,
        label: draft_label,
        limits,
    } = spec
    else {
        let (planned, model) = plan_and_load(path, label, placement, ctx, parallel, opts)?;
        return Ok(LoadedModel {
            planned,
            model,
            draft: None,
        });
    };
    let pair = plan_pair_for(
        path,
        label,
        draft_path,
        draft_label,
        placement,
        ctx,
        parallel,
        limits.max,
        opts.verbose,
    )?;
    if opts.verbose {
        eprint!("{}", pair_report(&pair));
    }
    pair.target.check_fits().map_err(|e| with_hints(e.into()))?;
    let draft = pair.draft.load(opts).map_err(|e| with_hints(e.into()))?;
    let model = pair.target.load(opts).map_err(|e| with_hints(e.into()))?;
    Ok(LoadedModel {
        planned: pair.target,
        model,
        draft: Some((pair.draft, draft)),
    })
}

/// Plans a model with its draft ([`crate::loading::plan_pair_files`]).
#[allow(clippy::too_many_arguments)]
pub fn plan_pair_for(
    path: &Path,
    label: &str,
    draft_path: &Path,
    draft_label: &str,
    placement: &PlacementArgs,
    ctx: Option<u64>,
    parallel: u64,
    max_draft: usize,
    verbose: bool,
) -> Result<PlannedPair> {
    plan_pair_files(
        path,
        label,
        draft_path,
        draft_label,
        &placement.request()?,
        ctx,
        parallel,
        max_draft,
        verbose,
    )
    .map_err(|e| with_hints(e.into()))
}

/// Library errors with the flag a user would reach for added.
pub fn with_hints(err: anyhow::Error) -> anyhow::Error {
    let engine = err.downcast_ref::<EngineError>().or_else(|| {
        err.downcast_ref::<LoadError>().and_then(|e| match e {
            LoadError::Engine(e) => Some(e),
            _ => None,
        })
    });
    match engine {
        Some(EngineError::PromptTooLong { .. }) => err.context("use --ctx to raise the context"),
        Some(EngineError::TextTooShort { .. }) => {
            err.context("use a longer text or a smaller --ctx")
        }
        _ => match err.downcast_ref::<LoadError>() {
            Some(LoadError::DoesNotFit {
                label, suggestions, ..
            }) => {
                let tries: Vec<String> = suggestions.iter().map(suggestion_hint).collect();
                let tail = if tries.is_empty() {
                    String::new()
                } else {
                    format!("; try {}", tries.join("; or "))
                };
                anyhow::anyhow!("{err} (see `edge plan {label}`){tail}")
            }
            _ => err,
        },
    }
}

/// Plans `path` for `ctx` tokens per sequence and `parallel` sequences (RPC devices
/// registered first); library errors get their flag hints.
pub fn plan_for(
    path: &Path,
    label: &str,
    placement: &PlacementArgs,
    ctx: Option<u64>,
    parallel: u64,
    verbose: bool,
) -> Result<PlannedModel> {
    plan_file(path, label, &placement.request()?, ctx, parallel, verbose)
        .map_err(|e| with_hints(e.into()))
}

/// Prints the plan with `-v`, refuses one that does not fit, and loads the model with
/// it applied.
pub fn load_planned(planned: &PlannedModel, opts: &LoadOptions) -> Result<Model> {
    if opts.verbose {
        eprint!("{}", plan_report(planned));
    }
    planned.load(opts).map_err(|e| with_hints(e.into()))
}

/// [`plan_for`], then [`load_planned`].
pub fn plan_and_load(
    path: &Path,
    label: &str,
    placement: &PlacementArgs,
    ctx: Option<u64>,
    parallel: u64,
    opts: &LoadOptions,
) -> Result<(PlannedModel, Model)> {
    let planned = plan_for(path, label, placement, ctx, parallel, opts.verbose)?;
    let model = load_planned(&planned, opts)?;
    Ok((planned, model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_tensor_must_pin_to_the_cpu() {
        let args = |o: &str| PlacementArgs {
            override_tensor: vec![o.to_string()],
            ..Default::default()
        };
        let r = args("ffn_.*_exps=CPU").request().unwrap();
        assert_eq!(r.cpu_patterns, vec!["ffn_.*_exps".to_string()]);
        assert!(args("ffn_.*_exps=CUDA0").request().is_err());
        assert!(args("no-device").request().is_err());
    }

    #[test]
    fn suggestions_name_the_flags_users_type() {
        let cases = [
            (
                Suggestion::ShorterContext {
                    ctx: 1024,
                    current_ctx: 4096,
                    kv_bytes: 720 << 20,
                },
                "--ctx 1024",
            ),
            (Suggestion::QuantizedKv, "--kv-type q8_0"),
            (
                Suggestion::FewerSequences {
                    parallel: 2,
                    current: 8,
                },
                "--parallel 2",
            ),
            (
                Suggestion::LargerDevice {
                    profile: "rtx4090-24gb".into(),
                },
                "--profile rtx4090-24gb",
            ),
        ];
        for (s, flag) in cases {
            assert!(suggestion_hint(&s).contains(flag), "{s:?}");
        }
    }

    #[test]
    fn library_errors_get_their_flag_hint() {
        let e = with_hints(
            EngineError::PromptTooLong {
                prompt: 300,
                n_ctx: 64,
                n_ctx_train: 8192,
            }
            .into(),
        );
        assert!(format!("{e:#}").contains("--ctx"), "{e:#}");
        let e = with_hints(
            LoadError::DoesNotFit {
                label: "m.gguf".into(),
                profile: "tiny".into(),
                reason: "RAM".into(),
                suggestions: vec![Suggestion::QuantizedKv],
            }
            .into(),
        );
        let text = format!("{e:#}");
        assert!(
            text.contains("edge plan m.gguf") && text.contains("--kv-type q8_0"),
            "{text}"
        );
    }
}
