//! `edge plan MODEL`: where every tensor of a GGUF would live on a device, with which
//! context and KV type, and how fast it would run, before anything loads. MODEL can be
//! a local or header-only GGUF, or a name that is not downloaded yet (its header is read
//! over HTTP Range requests).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use crate::gguf_info::GgufFile;
use crate::hub::names::ModelRef;
use crate::hub::remote_header::{merge_shards, shard_paths};
use crate::planner::{plan, CpuPin, KvType, ModelShape, Pins, Plan, PlanRequest};
use crate::profile::DeviceProfile;
use crate::term::{human_bytes, parse_size};

/// Placement options shared by `edge plan` and `edge run`.
#[derive(Debug, Args, Clone, Default)]
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
    /// Keep tensors matching REGEX on the CPU: REGEX=CPU (repeatable).
    #[arg(long = "override-tensor", short = 'o', value_name = "REGEX=CPU")]
    pub override_tensor: Vec<String>,
    /// Tokens per ubatch (default 512).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub ubatch: Option<u64>,
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

impl PlacementArgs {
    pub fn pins(&self) -> Result<Pins> {
        let mut cpu = Vec::new();
        for o in &self.override_tensor {
            let (pattern, device) = o
                .rsplit_once('=')
                .ok_or_else(|| anyhow!("--override-tensor '{o}': expected REGEX=CPU"))?;
            if !device.eq_ignore_ascii_case("cpu") {
                bail!(
                    "--override-tensor '{o}': only CPU pins are supported (VRAM placement is the planner's job)"
                );
            }
            cpu.push(CpuPin::new(pattern).map_err(anyhow::Error::msg)?);
        }
        Ok(Pins {
            cpu_moe: self.cpu_moe,
            n_cpu_moe: self.n_cpu_moe,
            cpu,
        })
    }

    pub fn request(&self, ctx: Option<u64>) -> Result<PlanRequest> {
        Ok(PlanRequest {
            ctx,
            vram: self.vram,
            ram: self.ram,
            kv_type: self.kv_type,
            flash_attn: None,
            n_ubatch: self.ubatch,
            pins: self.pins()?,
        })
    }

    /// The named profile, else this machine (calibrated if `edge profile calibrate` ran).
    pub fn device_profile(&self) -> Result<DeviceProfile> {
        match &self.profile {
            Some(name) => Ok(crate::profile::find_profile(
                name,
                crate::profile::user_profile_dir().as_deref(),
            )?),
            None => crate::profile::current_profile(),
        }
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A .gguf (header-only works), a catalog name or hf.co/ORG/REPO[:QUANT]; names that
    /// are not downloaded are planned from their header, fetched with HTTP Range requests.
    pub model: String,
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// Context size in tokens (default: up to 8192, shrunk to fit when left open).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(16..))]
    pub ctx: Option<u64>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs) -> Result<ExitCode> {
    let (label, gguf) = model_header(&args.model)?;
    let shape = ModelShape::from_gguf(&gguf)
        .map_err(anyhow::Error::msg)
        .with_context(|| label.clone())?;
    let profile = args.placement.device_profile()?;
    let request = args.placement.request(args.ctx)?;
    let p = plan(&shape, &profile, &request);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!(
            "{}",
            crate::planner::report::render(&p, &title(&label, &shape, &profile))
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

pub fn title(label: &str, shape: &ModelShape, profile: &DeviceProfile) -> String {
    format!(
        "Plan for {label} ({}, {} of weights) on {} ({})",
        shape.architecture,
        human_bytes(shape.weight_bytes()),
        profile.name,
        profile.description
    )
}

/// Plans a local model file for `edge run`.
pub fn plan_for_file(
    path: &Path,
    placement: &PlacementArgs,
    ctx: Option<u64>,
) -> Result<(Plan, String)> {
    let gguf = open_local(path)?;
    let shape = ModelShape::from_gguf(&gguf)
        .map_err(anyhow::Error::msg)
        .with_context(|| path.display().to_string())?;
    let profile = placement.device_profile()?;
    let request = placement.request(ctx)?;
    let p = plan(&shape, &profile, &request);
    let label = path.display().to_string();
    let text = crate::planner::report::render(&p, &title(&label, &shape, &profile));
    Ok((p, text))
}

/// The header of MODEL: a local file, an installed name, or a remote file's header.
fn model_header(model: &str) -> Result<(String, GgufFile)> {
    match ModelRef::parse(model, |p| p.is_file()).map_err(anyhow::Error::msg)? {
        ModelRef::Path(path) => {
            if !path.exists() {
                bail!("model file not found: {model}");
            }
            Ok((path.display().to_string(), open_local(&path)?))
        }
        r => {
            if let Some(path) = crate::hub::installed_path(&r)? {
                return Ok((model.to_string(), open_local(&path)?));
            }
            crate::hub::remote_header::remote_header_for(model)
        }
    }
}

/// Opens a local GGUF header; for a split model, merges every shard's tensor table (the
/// same naming and checks as a remote split model).
pub fn open_local(path: &Path) -> Result<GgufFile> {
    let gguf = GgufFile::open_header(path).with_context(|| path.display().to_string())?;
    let count = gguf.get_u64("split.count").unwrap_or(1);
    if count <= 1 {
        return Ok(gguf);
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{}: not a file name", path.display()))?;
    let names = shard_paths(name, count)?;
    let first_size = gguf.file_size;
    let mut shards = vec![(gguf, first_size)];
    for shard in names.iter().skip(1) {
        let shard = path.with_file_name(shard);
        let part = GgufFile::open_header(&shard)
            .with_context(|| format!("shard {} of {}", shard.display(), path.display()))?;
        let size = part.file_size;
        shards.push((part, size));
    }
    merge_shards(&names, shards)
        .map_err(anyhow::Error::msg)
        .with_context(|| path.display().to_string())
}
