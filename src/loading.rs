//! Loading a model the one way every command does: read its header (every shard of a
//! split model), plan it on the device ([`crate::planner`]), refuse a plan that does not
//! fit, and load it through the engine with the plan's placement, context and KV type.
//! `edge run`, `batch`, `bench`, `eval`, `imatrix` and `profile calibrate` all come
//! through here, so what `edge plan` prints is what they apply.

use std::path::{Path, PathBuf};

use crate::engine::{add_rpc_servers, ContextSpec, EngineError, LoadOptions, Model};
use crate::gguf_info::{GgufError, GgufFile};
use crate::hub::names::ModelRef;
use crate::hub::remote_header::{merge_shards, shard_paths};
use crate::planner::draft::{plan_pair, SpecForecast};
use crate::planner::model::ShapeError;
use crate::planner::plan::BadPattern;
use crate::planner::{plan, CpuPin, KvType, ModelShape, Pins, Plan, PlanRequest, Suggestion};
use crate::profile::{DeviceProfile, ProfileError};
use crate::speculative::vocab::{check_compatible, VocabMismatch};
use crate::term::human_bytes;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model file not found: {0}")]
    NotFound(String),
    #[error("{path}: {source}")]
    Header {
        path: PathBuf,
        #[source]
        source: GgufError,
    },
    #[error("{path}: {source}")]
    Shape {
        path: PathBuf,
        #[source]
        source: ShapeError,
    },
    #[error("{path}: {reason}")]
    Shards { path: PathBuf, reason: String },
    #[error(transparent)]
    BadPin(#[from] BadPattern),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The model is named, not a file, and the store or the Hub could not give it.
    #[error("{0:#}")]
    Hub(anyhow::Error),
    /// This machine could not be described (no `--profile` given).
    #[error("describing this machine: {0:#}")]
    Detect(anyhow::Error),
    #[error("draft model {draft} cannot draft for {target}: {reason}")]
    DraftVocab {
        draft: String,
        target: String,
        reason: VocabMismatch,
    },
    #[error("{label} does not fit on {profile}: {reason}")]
    DoesNotFit {
        label: String,
        profile: String,
        reason: String,
        suggestions: Vec<Suggestion>,
    },
}

/// Where the user wants the weights: a device profile or explicit memory sizes, KV
/// type, CPU pins and RPC devices. `None` leaves each choice to the planner.
#[derive(Debug, Clone, Default)]
pub struct PlacementRequest {
    /// A shipped or user profile name; `None` is this machine.
    pub profile: Option<String>,
    pub vram: Option<u64>,
    pub ram: Option<u64>,
    pub kv_type: Option<KvType>,
    pub cpu_moe: bool,
    pub n_cpu_moe: Option<u32>,
    /// Regexes of tensors to keep on the CPU (llama.cpp's `-ot REGEX=CPU`).
    pub cpu_patterns: Vec<String>,
    pub ubatch: Option<u64>,
    /// ggml RPC servers (`HOST:PORT`) to use as devices.
    pub rpc: Vec<String>,
}

impl PlacementRequest {
    pub fn pins(&self) -> Result<Pins, LoadError> {
        let cpu = self
            .cpu_patterns
            .iter()
            .map(|p| CpuPin::new(p))
            .collect::<Result<_, _>>()?;
        Ok(Pins {
            cpu_moe: self.cpu_moe,
            n_cpu_moe: self.n_cpu_moe,
            cpu,
        })
    }

    /// The planner's request for `ctx` tokens per sequence and `parallel` sequences.
    pub fn plan_request(&self, ctx: Option<u64>, parallel: u64) -> Result<PlanRequest, LoadError> {
        Ok(PlanRequest {
            ctx,
            vram: self.vram,
            ram: self.ram,
            kv_type: self.kv_type,
            flash_attn: None,
            n_ubatch: self.ubatch,
            parallel: (parallel > 1).then_some(parallel),
            pins: self.pins()?,
        })
    }

    /// Registers the RPC servers as devices; without an explicit VRAM size the plan may
    /// then use what they report free.
    pub fn with_rpc_devices(&self, verbose: bool) -> Result<PlacementRequest, LoadError> {
        let mut placement = self.clone();
        if !placement.rpc.is_empty() {
            let free = add_rpc_servers(&placement.rpc, verbose)?;
            placement.vram.get_or_insert(free);
        }
        Ok(placement)
    }

    /// The named profile, else this machine (calibrated if `edge profile calibrate` ran).
    pub fn device_profile(&self) -> Result<DeviceProfile, LoadError> {
        match &self.profile {
            Some(name) => Ok(crate::profile::find_profile(
                name,
                crate::profile::user_profile_dir().as_deref(),
            )?),
            None => crate::profile::detect::current_profile().map_err(LoadError::Detect),
        }
    }
}

/// A model file and the plan made for it.
#[derive(Debug, Clone)]
pub struct PlannedModel {
    pub path: PathBuf,
    /// What the user called it.
    pub label: String,
    pub shape: ModelShape,
    pub profile: DeviceProfile,
    pub plan: Plan,
}

impl PlannedModel {
    /// The heading of the plan's report.
    pub fn title(&self) -> String {
        plan_title(&self.label, &self.shape, &self.profile)
    }

    /// The context the plan chose, for `threads` CPU threads.
    pub fn context(&self, threads: u32) -> ContextSpec {
        ContextSpec::from_plan(&self.plan, threads)
    }

    /// Refuses a plan that does not fit, with the planner's reason and suggestions.
    pub fn check_fits(&self) -> Result<(), LoadError> {
        if self.plan.fits {
            return Ok(());
        }
        Err(LoadError::DoesNotFit {
            label: self.label.clone(),
            profile: self.profile.name.clone(),
            reason: self
                .plan
                .reason
                .clone()
                .unwrap_or_else(|| "not enough memory".into()),
            suggestions: self.plan.suggestions.clone(),
        })
    }

    /// Loads the model with the plan's placement, after [`Self::check_fits`].
    pub fn load(&self, opts: &LoadOptions) -> Result<Model, LoadError> {
        self.check_fits()?;
        Ok(Model::load_planned(&self.path, opts, &self.plan)?)
    }
}

/// "Plan for LABEL (ARCH, SIZE of weights) on PROFILE (DESCRIPTION)".
pub fn plan_title(label: &str, shape: &ModelShape, profile: &DeviceProfile) -> String {
    format!(
        "Plan for {label} ({}, {} of weights) on {} ({})",
        shape.architecture,
        human_bytes(shape.weight_bytes()),
        profile.name,
        profile.description
    )
}

/// Plans the local model file `path` for `ctx` tokens per sequence (`None`: the
/// planner's default) and `parallel` sequences. RPC servers in `placement` are
/// registered first; without an explicit VRAM size the plan may use what they report
/// free.
pub fn plan_file(
    path: &Path,
    label: &str,
    placement: &PlacementRequest,
    ctx: Option<u64>,
    parallel: u64,
    verbose: bool,
) -> Result<PlannedModel, LoadError> {
    let placement = placement.with_rpc_devices(verbose)?;
    let shape = open_shape(path)?;
    let profile = placement.device_profile()?;
    let request = placement.plan_request(ctx, parallel)?;
    let plan = plan(&shape, &profile, &request);
    Ok(PlannedModel {
        path: path.to_path_buf(),
        label: label.to_string(),
        shape,
        profile,
        plan,
    })
}

/// A target and its draft model, planned together ([`crate::planner::draft`]).
#[derive(Debug, Clone)]
pub struct PlannedPair {
    pub target: PlannedModel,
    pub draft: PlannedModel,
    pub forecast: SpecForecast,
}

/// Checks that the draft at `draft_path` shares the target's vocabulary (reading only
/// the vocabularies), then plans the draft first and the target in what is left.
#[allow(clippy::too_many_arguments)]
pub fn plan_pair_files(
    target_path: &Path,
    label: &str,
    draft_path: &Path,
    draft_label: &str,
    placement: &PlacementRequest,
    ctx: Option<u64>,
    parallel: u64,
    max_draft: usize,
    verbose: bool,
) -> Result<PlannedPair, LoadError> {
    let target_vocab = crate::engine::vocab_facts(target_path)?;
    let draft_vocab = crate::engine::vocab_facts(draft_path)?;
    check_compatible(&target_vocab, &draft_vocab).map_err(|reason| LoadError::DraftVocab {
        draft: draft_label.to_string(),
        target: label.to_string(),
        reason,
    })?;
    let placement = placement.with_rpc_devices(verbose)?;
    let target_shape = open_shape(target_path)?;
    let draft_shape = open_shape(draft_path)?;
    let profile = placement.device_profile()?;
    let request = placement.plan_request(ctx, parallel)?;
    let pair = plan_pair(&target_shape, &draft_shape, &profile, &request, max_draft);
    let planned = |path: &Path, label: &str, shape, plan| PlannedModel {
        path: path.to_path_buf(),
        label: label.to_string(),
        shape,
        profile: profile.clone(),
        plan,
    };
    let draft = planned(draft_path, draft_label, draft_shape, pair.draft);
    if !draft.plan.fits {
        let reason = draft.plan.reason.clone().unwrap_or_default();
        return Err(LoadError::DoesNotFit {
            label: format!("draft model {draft_label}"),
            profile: profile.name.clone(),
            reason,
            suggestions: Vec::new(),
        });
    }
    Ok(PlannedPair {
        target: planned(target_path, label, target_shape, pair.target),
        draft,
        forecast: pair.forecast,
    })
}

/// What the planner needs of the local model file `path` (every shard's tensors).
fn open_shape(path: &Path) -> Result<ModelShape, LoadError> {
    let gguf = open_header(path)?;
    ModelShape::from_gguf(&gguf).map_err(|source| LoadError::Shape {
        path: path.to_path_buf(),
        source,
    })
}

/// The header of MODEL: a local file, an installed name, or (not downloaded) the
/// remote file's header read with HTTP Range requests. Returns a label and the header.
pub fn model_header(model: &str) -> Result<(String, GgufFile), LoadError> {
    match ModelRef::parse(model, |p| p.is_file()).map_err(|e| LoadError::Hub(anyhow::anyhow!(e)))? {
        ModelRef::Path(path) => {
            if !path.exists() {
                return Err(LoadError::NotFound(model.to_string()));
            }
            Ok((path.display().to_string(), open_header(&path)?))
        }
        r => {
            if let Some(path) = crate::hub::installed_path(&r).map_err(LoadError::Hub)? {
                return Ok((model.to_string(), open_header(&path)?));
            }
            crate::hub::remote_header::remote_header_for(model).map_err(LoadError::Hub)
        }
    }
}

/// Opens a local GGUF header; for a split model, merges every shard's tensor table (the
/// same naming and checks as a remote split model).
pub fn open_header(path: &Path) -> Result<GgufFile, LoadError> {
    let header = |p: &Path| {
        GgufFile::open_header(p).map_err(|source| LoadError::Header {
            path: p.to_path_buf(),
            source,
        })
    };
    let gguf = header(path)?;
    let count = gguf.get_u64("split.count").unwrap_or(1);
    if count <= 1 {
        return Ok(gguf);
    }
    let shards_err = |reason: String| LoadError::Shards {
        path: path.to_path_buf(),
        reason,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| shards_err("not a file name".into()))?;
    let names = shard_paths(name, count).map_err(|e| shards_err(format!("{e:#}")))?;
    let first_size = gguf.file_size;
    let mut shards = vec![(gguf, first_size)];
    for shard in names.iter().skip(1) {
        let part = header(&path.with_file_name(shard))?;
        let size = part.file_size;
        shards.push((part, size));
    }
    merge_shards(&names, shards).map_err(shards_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> PlacementRequest {
        PlacementRequest {
            profile: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn one_sequence_is_the_planners_default_and_pins_are_checked() {
        let r = PlacementRequest {
            cpu_moe: true,
            cpu_patterns: vec!["attn_q".into()],
            ubatch: Some(256),
            ..Default::default()
        };
        let req = r.plan_request(Some(1024), 1).unwrap();
        assert_eq!(req.parallel, None);
        assert_eq!((req.ctx, req.n_ubatch), (Some(1024), Some(256)));
        assert!(req.pins.cpu_moe && req.pins.cpu.len() == 1);
        assert_eq!(r.plan_request(None, 4).unwrap().parallel, Some(4));
        let bad = PlacementRequest {
            cpu_patterns: vec!["(unclosed".into()],
            ..Default::default()
        };
        match bad.plan_request(None, 1) {
            Err(LoadError::BadPin(e)) => assert_eq!(e.pattern, "(unclosed"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_plan_that_does_not_fit_is_refused_with_its_suggestions() {
        let path = crate::test_data::require("smollm2-135m-instruct-q4_1.gguf");
        let label = "smollm2";
        // 16 sequences of 32k tokens cannot fit a laptop's 5.5 GiB free, even in q8_0.
        let many = plan_file(
            &path,
            label,
            &profile("cpu-laptop-8gb"),
            Some(32768),
            16,
            false,
        )
        .unwrap();
        assert_eq!(many.plan.parallel, 16);
        assert_eq!(many.plan.llama.n_ctx, 16 * 32768);
        match many.check_fits() {
            Err(LoadError::DoesNotFit {
                label: l,
                profile,
                suggestions,
                ..
            }) => {
                assert_eq!((l.as_str(), profile.as_str()), (label, "cpu-laptop-8gb"));
                assert!(
                    suggestions
                        .iter()
                        .any(|s| matches!(s, Suggestion::FewerSequences { parallel, current: 16 } if *parallel < 16)),
                    "{suggestions:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // One sequence fits; its context spec is the plan's.
        let one = plan_file(
            &path,
            label,
            &profile("cpu-laptop-8gb"),
            Some(4096),
            1,
            false,
        )
        .unwrap();
        one.check_fits().unwrap();
        let spec = one.context(3);
        assert_eq!((spec.n_ctx, spec.n_seq, spec.threads), (4096, 1, 3));
        assert_eq!(spec.n_ubatch as u64, one.plan.n_ubatch);
        assert_eq!(spec.type_k, Some(one.plan.llama.type_k));
    }

    #[test]
    fn missing_and_broken_headers_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.gguf");
        std::fs::write(&junk, b"not a gguf at all").unwrap();
        assert!(matches!(open_header(&junk), Err(LoadError::Header { .. })));
        let missing = dir.path().join("missing.gguf");
        assert!(matches!(
            model_header(missing.to_str().unwrap()),
            Err(LoadError::NotFound(_)) | Err(LoadError::Hub(_))
        ));
    }
}
