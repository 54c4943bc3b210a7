//! An input model for quantization, validated, and the plan of what a quantization writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use edge_quant::{ggml_type, TensorClass};
use serde::Serialize;

use super::gguf_io::HeaderLayout;
use crate::gguf_info::{check_loadable, GgufFile};

/// An input model, validated.
pub struct Source {
    pub path: PathBuf,
    pub gguf: GgufFile,
    pub layout: HeaderLayout,
    /// No `output.weight`: the token embedding table is also the output head.
    pub tied_output: bool,
}

impl Source {
    pub fn open(path: &Path) -> Result<Source> {
        let gguf = GgufFile::open(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        check_loadable(&gguf).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if gguf.tensors.is_empty() {
            bail!("{}: the GGUF has no tensors", path.display());
        }
        let layout = HeaderLayout::read(path, gguf.data_offset)
            .with_context(|| path.display().to_string())?;
        let tied_output = !gguf.tensors.iter().any(|t| t.name == "output.weight");
        Ok(Source {
            path: path.to_path_buf(),
            gguf,
            layout,
            tied_output,
        })
    }

    pub fn n_elements(&self) -> u64 {
        self.gguf.tensors.iter().map(|t| t.n_elements()).sum()
    }
}

/// One tensor of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    pub name: String,
    pub class: String,
    pub dims: Vec<u64>,
    pub from: String,
    pub to: String,
    #[serde(skip)]
    pub to_id: u32,
    /// Bytes in the output, without padding.
    pub bytes: u64,
    pub bytes_in: u64,
}

/// What a quantization will write, tensor by tensor, as llama.cpp's dry run decides it.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub tensors: Vec<PlanEntry>,
    pub header_bytes: u64,
    /// The exact size of the output file.
    pub file_bytes: u64,
    pub tensor_bytes: u64,
    pub bpw: f64,
}

impl Plan {
    /// Tensors that llama.cpp will quantize to a type that needs an imatrix.
    pub fn needing_imatrix(&self) -> Vec<&PlanEntry> {
        self.tensors
            .iter()
            .filter(|t| t.from != t.to)
            .filter(|t| !matches!(t.class.as_str(), "token_embd" | "output"))
            .filter(|t| ggml_type(t.to_id).is_some_and(|g| g.needs_imatrix()))
            .collect()
    }

    /// Per class: tensors, bytes in, bytes out, and how many tensors per type.
    pub fn by_class(&self) -> Vec<ClassSummary> {
        let mut m: BTreeMap<String, ClassSummary> = BTreeMap::new();
        for t in &self.tensors {
            let e = m.entry(t.class.clone()).or_insert_with(|| ClassSummary {
                class: t.class.clone(),
                ..Default::default()
            });
            e.tensors += 1;
            e.bytes_in += t.bytes_in;
            e.bytes += t.bytes;
            *e.types.entry(t.to.clone()).or_default() += 1;
        }
        let mut v: Vec<ClassSummary> = m.into_values().collect();
        v.sort_by_key(|c| TensorClass::from_key(&c.class).unwrap_or(TensorClass::Other));
        v
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassSummary {
    pub class: String,
    pub tensors: usize,
    pub bytes_in: u64,
    pub bytes: u64,
    pub types: BTreeMap<String, usize>,
}
