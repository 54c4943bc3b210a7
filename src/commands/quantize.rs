//! `edge quantize IN OUT --type T | --recipe NAME | --size BYTES | --bpw X`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use edge_quant::split::SplitLimits;
use edge_quant::types::{file_type_names, FILE_TYPES};
use edge_quant::{file_type_by_name, ggml_type, ggml_type_by_name, Recipe, TensorClass};
use serde_json::json;

use crate::engine::ffi::QuantizeParams;
use crate::quantize::imatrix_file::Imatrix;
use crate::quantize::split::{plan_from, ShardReport};
use crate::quantize::{dry_run, fitplan, quantize_atomic, Plan, Source};
use crate::term::{human_bytes, parse_size};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  edge quantize model-f16.gguf model-q4km.gguf --type Q4_K_M\n  \
edge quantize moe-bf16.gguf moe.gguf --recipe moe-balanced --imatrix imatrix.gguf\n  \
edge quantize model-f16.gguf small.gguf --size 3.5GiB --json\n  edge quantize model-f16.gguf --type Q4_K_M --dry-run\n  \
edge quantize model-f16.gguf model.gguf --type Q8_0 --split-max-size 2G   (model-00001-of-0000N.gguf, …)"
)]
pub struct QuantizeArgs {
    /// Input GGUF (F16, BF16 or F32; a quantized one with --allow-requantize).
    pub input: Option<PathBuf>,
    /// Output GGUF (not needed with --dry-run).
    pub output: Option<PathBuf>,
    /// llama.cpp file type: Q4_K_M, Q8_0, IQ4_XS, F16, … (`--list-types`).
    #[arg(long = "type", value_name = "TYPE")]
    pub ftype: Option<String>,
    /// A named mix from quant/recipes (or a recipe .toml file).
    #[arg(long, value_name = "NAME")]
    pub recipe: Option<String>,
    /// Fit the file into this many bytes (suffixes K, M, G, KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub size: Option<u64>,
    /// Fit to this average bits per weight.
    #[arg(long, value_name = "X")]
    pub bpw: Option<f64>,
    /// Fit to a device profile: the largest file the planner can place on it with a
    /// default context (see `edge profile list`, `edge plan`).
    #[arg(long, value_name = "PROFILE")]
    pub fit: Option<String>,
    /// Importance matrix (llama.cpp GGUF imatrix format, e.g. from `edge imatrix`).
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Per-tensor type, REGEX=TYPE (repeatable; first match wins).
    #[arg(long = "tensor-type", value_name = "REGEX=TYPE")]
    pub tensor_type: Vec<String>,
    /// Type of output.weight.
    #[arg(long, value_name = "TYPE")]
    pub output_tensor_type: Option<String>,
    /// Type of token_embd.weight.
    #[arg(long, value_name = "TYPE")]
    pub token_embedding_type: Option<String>,
    /// Allow requantizing tensors that are already quantized.
    #[arg(long)]
    pub allow_requantize: bool,
    /// Every tensor at the file type's base type (no llama.cpp mix rules).
    #[arg(long)]
    pub pure: bool,
    /// Split the output into shards of at most this many bytes each (llama.cpp's
    /// gguf-split layout: OUT-00001-of-0000N.gguf, …; suffixes as for --size).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split_max_size: Option<u64>,
    /// Split the output into shards of at most N tensors each.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub split_max_tensors: Option<u64>,
    /// Quantization threads (default: all cores).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Print the size per tensor class and in total; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// List the recipes and exit.
    #[arg(long)]
    pub list_recipes: bool,
    /// List the file types and exit.
    #[arg(long)]
    pub list_types: bool,
}

fn tensor_type(name: &str, what: &str) -> Result<u32> {
    ggml_type_by_name(name)
        .filter(|t| t.quantizable || matches!(t.id, 0 | 1 | 30))
        .map(|t| t.id)
        .ok_or_else(|| {
            anyhow!(
                "{what}: unknown tensor type '{name}' (types: {})",
                edge_quant::types::tensor_type_names().join(", ")
            )
        })
}

fn list_recipes(json: bool) -> Result<ExitCode> {
    let all = Recipe::all_builtin();
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|r| {
                json!({"name": r.name, "description": r.description, "base": r.base.name,
                       "moe": r.is_moe(),
                       "types": r.types.iter().map(|(k, t)| (k.clone(), t.name.to_ascii_uppercase())).collect::<HashMap<_, _>>()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in &all {
            println!("{:<16} {}", r.name, r.description);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: QuantizeArgs, verbose: bool) -> Result<ExitCode> {
    if args.list_recipes {
        return list_recipes(args.json);
    }
    if args.list_types {
        for f in FILE_TYPES {
            println!("{:<10} {}", f.name, f.description);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut args = args;
    if let Some(name) = args.fit.clone() {
        if args.size.is_some() || args.bpw.is_some() {
            bail!("--fit sets the size itself; drop --size/--bpw");
        }
        if let Some(input) = args.input.clone() {
            args.size = Some(fit_budget(&input, &name)?);
        }
    }
    let modes = [
        args.ftype.is_some(),
        args.recipe.is_some(),
        args.size.is_some(),
        args.bpw.is_some(),
    ];
    match modes.iter().filter(|&&m| m).count() {
        0 => bail!("say what to make: --type TYPE, --recipe NAME, --size BYTES or --bpw X"),
        1 => {}
        _ => bail!("--type, --recipe, --size and --bpw are alternatives: give one"),
    }
    let input = args.input.clone().ok_or_else(|| {
        anyhow!("missing the input GGUF (edge quantize IN.gguf OUT.gguf --type TYPE)")
    })?;
    if args.output.is_none() && !args.dry_run {
        bail!("missing the output path (or pass --dry-run)");
    }
    if let Some(b) = args.bpw {
        if !(b.is_finite() && b > 0.0 && b <= 32.0) {
            bail!("--bpw {b}: must be between 0 and 32");
        }
    }

    // Everything that can be checked without llama.cpp, first.
    let ftype = match &args.ftype {
        Some(t) => Some(
            file_type_by_name(t)
                .ok_or_else(|| anyhow!("unknown file type '{t}' (types: {})", file_type_names()))?,
        ),
        None => None,
    };
    let recipe = match &args.recipe {
        Some(r) if r.ends_with(".toml") || Path::new(r).is_file() => {
            let text =
                std::fs::read_to_string(r).with_context(|| format!("cannot read recipe {r}"))?;
            let name = Path::new(r)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| r.clone());
            Some(Recipe::parse(&name, &text)?)
        }
        Some(r) => Some(Recipe::builtin(r)?),
        None => None,
    };
    let mut user_overrides = Vec::new();
    for tt in &args.tensor_type {
        let (re, ty) = tt
            .rsplit_once('=')
            .ok_or_else(|| anyhow!("--tensor-type {tt}: expected REGEX=TYPE"))?;
        if re.is_empty() {
            bail!("--tensor-type {tt}: empty pattern");
        }
        regex_check(re).with_context(|| format!("--tensor-type {tt}"))?;
        user_overrides.push((re.to_string(), tensor_type(ty, "--tensor-type")?));
    }
    let output_type = args
        .output_tensor_type
        .as_deref()
        .map(|t| tensor_type(t, "--output-tensor-type"))
        .transpose()?;
    let embd_type = args
        .token_embedding_type
        .as_deref()
        .map(|t| tensor_type(t, "--token-embedding-type"))
        .transpose()?;
    let split = (args.split_max_size.is_some() || args.split_max_tensors.is_some()).then_some(
        SplitLimits {
            max_bytes: args.split_max_size,
            max_tensors: args.split_max_tensors,
        },
    );
    if let Some(out) = &args.output {
        check_output(&input, out)?;
        if split.is_some() {
            check_split_output(&input, out)?;
        }
    }

    let src = Source::open(&input)?;
    let imatrix = match &args.imatrix {
        Some(p) => {
            if !p.exists() {
                bail!("imatrix {}: no such file", p.display());
            }
            Some(Imatrix::load(p)?)
        }
        None => None,
    };
    crate::engine::backend(verbose)?;
    let threads = args
        .threads
        .map(|t| t as i32)
        .unwrap_or_else(|| num_cpus::get() as i32);

    let mut params = QuantizeParams {
        threads,
        allow_requantize: args.allow_requantize,
        pure: args.pure,
        output_tensor_type: output_type,
        token_embedding_type: embd_type,
        imatrix: imatrix.as_ref().map(Imatrix::means).unwrap_or_default(),
        ..Default::default()
    };
    let mut budget = None;
    let mut fit_note = String::new();
    if let Some(ft) = ftype {
        params.ftype = ft.ftype;
        params.tensor_types = user_overrides.clone();
        if ft.needs_imatrix && imatrix.is_none() {
            bail!(
                "{} needs an importance matrix: pass --imatrix FILE (make one with `edge imatrix MODEL --text FILE -o imatrix.gguf`)",
                ft.name
            );
        }
    } else if let Some(r) = &recipe {
        params.ftype = r.base.ftype;
        params.tensor_types = user_overrides.clone();
        params.tensor_types.extend(recipe_overrides(r, &src));
        if params.token_embedding_type.is_none() {
            params.token_embedding_type = r.type_for(TensorClass::TokenEmbd).map(|t| t.id);
        }
        if params.output_tensor_type.is_none() {
            params.output_tensor_type = r.type_for(TensorClass::Output).map(|t| t.id);
        }
    } else {
        let target = match (args.size, args.bpw) {
            (Some(s), _) => s,
            (None, Some(b)) => {
                src.layout.quantized_header_bytes() + (b * src.n_elements() as f64 / 8.0) as u64
            }
            _ => unreachable!("one mode is set"),
        };
        if !user_overrides.is_empty() || output_type.is_some() || embd_type.is_some() {
            bail!("--size/--bpw choose every tensor's type; drop --tensor-type, --output-tensor-type and --token-embedding-type");
        }
        if src
            .gguf
            .tensors
            .iter()
            .any(|t| !matches!(t.ggml_type.0, 0 | 1 | 30))
            && !args.allow_requantize
        {
            bail!(
                "{} is already quantized; --size/--bpw need an F16/BF16/F32 model (or pass --allow-requantize)",
                input.display()
            );
        }
        let started = Instant::now();
        let means: HashMap<String, Vec<f32>> = params.imatrix.iter().cloned().collect();
        let items = fitplan::build_items(
            &src,
            imatrix.as_ref().map(|_| &means),
            threads.max(1) as usize,
        )?;
        let choices = fitplan::solve(&src, &items, target)?;
        let main_type = dominant_type(&choices);
        params.ftype = FILE_TYPES
            .iter()
            .find(|f| f.default_type == main_type)
            .map_or(15, |f| f.ftype);
        params.pure = true;
        params.tensor_types = fitplan::overrides(&choices, &src);
        budget = Some(target);
        fit_note = format!(
            "fitted {} tensors to {} in {:.1}s{}",
            choices.len(),
            human_bytes(target),
            started.elapsed().as_secs_f64(),
            if imatrix.is_some() {
                " with the imatrix"
            } else {
                ""
            }
        );
    }

    let plan = dry_run(&src, &params)?;
    if let Some(b) = budget {
        if plan.file_bytes > b {
            bail!(
                "internal: the fitted mix is {} bytes, over the budget of {b}",
                plan.file_bytes
            );
        }
    }
    if imatrix.is_none() {
        if let Some(t) = plan.needing_imatrix().first() {
            bail!(
                "{} would be {}, a type that needs an importance matrix: pass --imatrix FILE (make one with `edge imatrix`)",
                t.name,
                t.to.to_ascii_uppercase()
            );
        }
    }
    if let Some(im) = &imatrix {
        for t in plan.needing_imatrix() {
            let ok = im.entries.get(&t.name).is_some_and(|e| {
                let per_mat = t.dims.first().copied().unwrap_or(0) as usize;
                let n_mat = t.dims.get(2).copied().unwrap_or(1) as usize;
                e.sums.len() == per_mat * n_mat
            });
            if !ok {
                bail!(
                    "the imatrix has no usable data for {}, which {} needs (was it computed for this model?)",
                    t.name,
                    t.to.to_ascii_uppercase()
                );
            }
        }
    }
    if !args.allow_requantize {
        if let Some(t) = plan
            .tensors
            .iter()
            .find(|t| t.from != t.to && ggml_type_by_name(&t.from).is_some_and(|g| g.quantizable))
        {
            bail!(
                "{} is already quantized ({} is {}); pass --allow-requantize to requantize it (quality suffers)",
                input.display(),
                t.name,
                t.from.to_ascii_uppercase()
            );
        }
    }

    // The shard plan, checked before the (slow) quantization.
    let shards = match split {
        Some(l) => {
            let out = args
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from(default_output_name(&input)));
            Some(plan_from(&src, &plan, &out, l)?)
        }
        None => None,
    };
    if args.dry_run {
        report(
            &src,
            &plan,
            None,
            budget,
            &fit_note,
            shards.as_deref(),
            args.json,
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out = args
        .output
        .as_deref()
        .ok_or_else(|| anyhow!("missing the output path"))?;
    if !fit_note.is_empty() && !args.json {
        eprintln!("{fit_note}");
    }
    let started = Instant::now();
    let written = quantize_atomic(&src, out, &params, &plan, true, split)?;
    let secs = started.elapsed().as_secs_f64();
    if written.shards.len() <= 1 && written.bytes != plan.file_bytes {
        eprintln!(
            "edge: note: wrote {} bytes, the plan said {} (run with -v for llama.cpp's log)",
            written.bytes, plan.file_bytes
        );
    }
    let shards = split.map(|_| written.shards.as_slice());
    report(
        &src,
        &plan,
        Some((out, written.bytes, secs)),
        budget,
        &fit_note,
        shards,
        args.json,
    );
    Ok(ExitCode::SUCCESS)
}

/// The type with the most bytes in a fitted mix (names the file type).
fn dominant_type(choices: &[fitplan::Choice]) -> u32 {
    let mut by: HashMap<u32, u64> = HashMap::new();
    for c in choices {
        if ggml_type(c.type_id).is_some_and(|g| g.quantizable) {
            *by.entry(c.type_id).or_default() += c.bytes;
        }
    }
    by.into_iter()
        .max_by_key(|(_, b)| *b)
        .map_or(12, |(t, _)| t)
}

/// A recipe as llama.cpp overrides: one suffix pattern per class present in the model.
fn recipe_overrides(r: &Recipe, src: &Source) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in &src.gguf.tensors {
        let class = edge_quant::classify(&t.name);
        if matches!(class, TensorClass::TokenEmbd | TensorClass::Output) || !seen.insert(class) {
            continue;
        }
        if let Some(ty) = r.type_for(class) {
            out.push((format!("\\.{}\\.weight$", class.key()), ty.id));
        }
    }
    out
}

/// Rejects patterns llama.cpp's std::regex would throw on (unbalanced groups/brackets),
/// so a typo is a clear error rather than a failed quantization.
fn regex_check(re: &str) -> Result<()> {
    let (mut paren, mut bracket, mut escaped) = (0i32, false, false);
    for ch in re.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' => escaped = true,
            '[' if !bracket => bracket = true,
            ']' if bracket => bracket = false,
            '(' if !bracket => paren += 1,
            ')' if !bracket => {
                paren -= 1;
                if paren < 0 {
                    bail!("unbalanced ')' in the pattern");
                }
            }
            _ => {}
        }
    }
    if paren != 0 || bracket || escaped {
        bail!("unbalanced pattern '{re}'");
    }
    Ok(())
}

fn check_output(input: &Path, out: &Path) -> Result<()> {
    if out.is_dir() {
        bail!("output {} is a directory", out.display());
    }
    if let (Ok(a), Ok(b)) = (input.canonicalize(), out.canonicalize()) {
        if a == b {
            bail!("the output would overwrite the input {}", input.display());
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            out.display(),
            parent.display()
        );
    }
    Ok(())
}

/// The name a dry run without an output path plans shards under: the input's.
fn default_output_name(input: &Path) -> String {
    input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.gguf".into())
}

/// With a split, no shard may overwrite the input.
fn check_split_output(input: &Path, out: &Path) -> Result<()> {
    let Ok(inp) = input.canonicalize() else {
        return Ok(());
    };
    let stem = out.to_string_lossy();
    let prefix = stem.strip_suffix(".gguf").unwrap_or(&stem);
    let name = inp.file_name().map(|n| n.to_string_lossy().into_owned());
    let out_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let same_dir = out_dir.canonicalize().ok() == inp.parent().map(Path::to_path_buf);
    if let (true, Some(name)) = (same_dir, name) {
        let base = Path::new(prefix)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with(&format!("{base}-")) && name.contains("-of-") {
            bail!(
                "the output's shards would overwrite the input {}",
                input.display()
            );
        }
    }
    Ok(())
}

fn report(
    src: &Source,
    plan: &Plan,
    written: Option<(&Path, u64, f64)>,
    budget: Option<u64>,
    fit_note: &str,
    shards: Option<&[ShardReport]>,
    as_json: bool,
) {
    let in_bytes = src.gguf.file_size;
    if as_json {
        let mut v = json!({
            "input": src.path.display().to_string(),
            "input_bytes": in_bytes,
            "file_bytes": plan.file_bytes,
            "tensor_bytes": plan.tensor_bytes,
            "header_bytes": plan.header_bytes,
            "bpw": plan.bpw,
            "classes": plan.by_class(),
            "tensors": plan.tensors,
        });
        if let Some(b) = budget {
            v["budget"] = json!(b);
        }
        if let Some((out, n, secs)) = written {
            v["output"] = json!(out.display().to_string());
            v["written_bytes"] = json!(n);
            v["seconds"] = json!(secs);
        }
        if let Some(sh) = shards {
            v["shards"] = json!(sh);
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    if !fit_note.is_empty() && written.is_none() {
        println!("{fit_note}");
    }
    println!(
        "{:<16} {:>7} {:>12} {:>12}  types",
        "class", "tensors", "before", "after"
    );
    for c in plan.by_class() {
        let types: Vec<String> = c
            .types
            .iter()
            .map(|(t, n)| format!("{}×{n}", t.to_ascii_uppercase()))
            .collect();
        println!(
            "{:<16} {:>7} {:>12} {:>12}  {}",
            c.class,
            c.tensors,
            human_bytes(c.bytes_in),
            human_bytes(c.bytes),
            types.join(" ")
        );
    }
    println!(
        "total: {} -> {} ({} bytes, {:.2} bpw){}",
        human_bytes(in_bytes),
        human_bytes(plan.file_bytes),
        plan.file_bytes,
        plan.bpw,
        budget.map_or(String::new(), |b| format!(", budget {b} bytes"))
    );
    if let Some(sh) = shards {
        if sh.len() == 1 {
            println!(
                "split: everything fits in one file ({})",
                sh[0].path.display()
            );
        } else {
            println!("split into {} shards:", sh.len());
            for s in sh {
                println!(
                    "  {}  {} tensors, {} ({} bytes)",
                    s.path.display(),
                    s.tensors,
                    human_bytes(s.bytes),
                    s.bytes
                );
            }
        }
    }
    if let Some((out, n, secs)) = written {
        match shards {
            Some(sh) if sh.len() > 1 => println!(
                "wrote {} shards of {} ({} bytes) in {:.1}s",
                sh.len(),
                out.display(),
                n,
                secs
            ),
            _ => println!("wrote {} ({} bytes) in {:.1}s", out.display(), n, secs),
        }
    }
}

/// Weight bytes that fit `profile` by the planner, for `--fit PROFILE`.
fn fit_budget(input: &Path, profile: &str) -> Result<u64> {
    let profile =
        crate::profile::find_profile(profile, crate::profile::user_profile_dir().as_deref())?;
    let gguf = crate::loading::open_header(input)?;
    let shape = crate::planner::ModelShape::from_gguf(&gguf)
        .map_err(anyhow::Error::new)
        .with_context(|| input.display().to_string())?;
    let budget =
        crate::planner::place::fitting_weight_bytes(&shape, &profile).ok_or_else(|| {
            anyhow!(
                "{}: even at 1 bit per weight this model does not fit {}",
                input.display(),
                profile.name
            )
        })?;
    eprintln!(
        "edge: {} holds {} of weights for this model (planner, default context)",
        profile.name,
        human_bytes(budget)
    );
    // --size counts the whole file: the header (metadata, tokenizer) comes on top.
    Ok(budget + gguf.data_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1.5K"), Ok(1500));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1 GB"), Ok(1_000_000_000));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("-3").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn patterns() {
        assert!(regex_check("ffn_(up|gate)_exps").is_ok());
        assert!(regex_check("attn_[qkv]\\.weight").is_ok());
        assert!(regex_check("ffn_(up").is_err());
        assert!(regex_check("a)").is_err());
        assert!(regex_check("[abc").is_err());
    }
}
