//! GGUF inspection without loading weights: header, metadata, tensor table.
//!
//! This is a validating reader. A GGUF comes from the network or the user's disk, so
//! every length, type and offset is checked before it is trusted: a corrupt or
//! truncated file yields a [`GgufError`], never a panic. llama.cpp itself aborts the
//! process on some bad metadata (missing MoE keys), so `edge run` validates here first.
//!
//! A header-only GGUF (metadata and tensor table, no data) is accepted by
//! [`GgufFile::parse_header`]; [`GgufFile::open`] also requires the data to be present.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use edge_quant::layer_of;
use serde::Serialize;

/// Why a GGUF could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is a directory, not a GGUF file")]
    IsDirectory(String),
    #[error("{0} is empty (0 bytes), not a GGUF file")]
    Empty(String),
    #[error("not a GGUF file (magic bytes are {0:?}, expected \"GGUF\")")]
    BadMagic(String),
    #[error("unsupported GGUF version {0} (edge reads versions 2 and 3)")]
    BadVersion(u32),
    #[error("GGUF header is truncated or corrupt: {0}")]
    Header(String),
    /// The bytes given end inside the header: `needed` bytes would have let parsing go on
    /// (it may need more after that). A truncated file, or a corrupt length.
    #[error(
        "GGUF header is truncated or corrupt: {what} runs past the end of the data (needs {needed} bytes, {available} available)"
    )]
    TruncatedHeader {
        what: String,
        needed: u64,
        available: u64,
    },
    #[error(
        "GGUF is truncated: tensor '{tensor}' needs bytes up to {needed} but the file has {actual}"
    )]
    TruncatedData {
        tensor: String,
        needed: u64,
        actual: u64,
    },
}

impl GgufError {
    /// For a header cut short ([`GgufError::TruncatedHeader`]): how many bytes from the
    /// start of the file the parser wanted when it ran out (more may be needed after).
    /// `None` for every other error: more bytes would not help.
    pub fn bytes_needed(&self) -> Option<u64> {
        match self {
            GgufError::TruncatedHeader { needed, .. } => Some(*needed),
            _ => None,
        }
    }
}

/// A metadata value. Large arrays (vocabularies, merges) are not decoded: only their
/// element type and length are kept, which is all inspection and planning need.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array {
        elem_type: u32,
        len: u64,
        /// Decoded elements, when the array is small enough to be worth it.
        values: Option<Vec<MetaValue>>,
    },
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            MetaValue::Bool(v) => Some(v.into()),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }
}

/// A ggml tensor type, with the block geometry needed to size tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// (name, elements per block, bytes per block), as in ggml's type traits.
    fn traits(self) -> Option<(&'static str, u64, u64)> {
        Some(match self.0 {
            0 => ("F32", 1, 4),
            1 => ("F16", 1, 2),
            2 => ("Q4_0", 32, 18),
            3 => ("Q4_1", 32, 20),
            6 => ("Q5_0", 32, 22),
            7 => ("Q5_1", 32, 24),
            8 => ("Q8_0", 32, 34),
            9 => ("Q8_1", 32, 36),
            10 => ("Q2_K", 256, 84),
            11 => ("Q3_K", 256, 110),
            12 => ("Q4_K", 256, 144),
            13 => ("Q5_K", 256, 176),
            14 => ("Q6_K", 256, 210),
            15 => ("Q8_K", 256, 292),
            16 => ("IQ2_XXS", 256, 66),
            17 => ("IQ2_XS", 256, 74),
            18 => ("IQ3_XXS", 256, 98),
            19 => ("IQ1_S", 256, 50),
            20 => ("IQ4_NL", 32, 18),
            21 => ("IQ3_S", 256, 110),
            22 => ("IQ2_S", 256, 82),
            23 => ("IQ4_XS", 256, 136),
            24 => ("I8", 1, 1),
            25 => ("I16", 1, 2),
            26 => ("I32", 1, 4),
            27 => ("I64", 1, 8),
            28 => ("F64", 1, 8),
            29 => ("IQ1_M", 256, 56),
            30 => ("BF16", 1, 2),
            34 => ("TQ1_0", 256, 54),
            35 => ("TQ2_0", 256, 66),
            39 => ("MXFP4", 32, 17),
            40 => ("NVFP4", 64, 36),
            41 => ("Q1_0", 128, 18),
            42 => ("Q2_0", 64, 18),
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        self.traits().map(|t| t.0).unwrap_or("unknown")
    }
    pub fn is_known(self) -> bool {
        self.traits().is_some()
    }
    /// Bytes for a tensor of this type and shape, or None when the shape does not fit
    /// the type's blocks (or overflows).
    pub fn bytes_for(self, dims: &[u64]) -> Option<u64> {
        let (_, block, block_bytes) = self.traits()?;
        let row = *dims.first()?;
        if row % block != 0 {
            return None;
        }
        let rows = dims[1..]
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        (row / block).checked_mul(block_bytes)?.checked_mul(rows)
    }
}

/// Named ggml types, for code that writes or sizes tensor tables (`use
/// crate::gguf_info::ggml_types::{F16, Q8_0}`).
pub mod ggml_types {
    use super::GgmlType;

    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q5_0: GgmlType = GgmlType(6);
    pub const Q5_1: GgmlType = GgmlType(7);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q5_K: GgmlType = GgmlType(13);
    pub const Q6_K: GgmlType = GgmlType(14);
    pub const BF16: GgmlType = GgmlType(30);
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.traits() {
            Some(t) => f.write_str(t.0),
            None => write!(f, "type{}", self.0),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: dims[0] is the row length.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
    pub bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF header: metadata and tensor table.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset of the tensor data section.
    pub data_offset: u64,
    /// Size of the bytes that were parsed (the whole file for [`GgufFile::open`]).
    pub file_size: u64,
}

/// Arrays longer than this are kept as (type, length) only.
const MAX_DECODED_ARRAY: u64 = 4096;
/// Sanity bounds against hostile headers that would make us allocate wildly.
const MAX_COUNT: u64 = 1 << 24;
const MAX_DIMS: u32 = 4;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        let n = usize::try_from(n)
            .map_err(|_| GgufError::Header(format!("{what}: length {n} too large")))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| GgufError::TruncatedHeader {
                what: what.to_string(),
                needed: (self.pos as u64).saturating_add(n as u64),
                available: self.buf.len() as u64,
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        // GGUF strings are UTF-8 by the spec; a key, name or value that is not is
        // corrupt or hostile, and a lossy copy would describe bytes that are not there.
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError::Header(format!("{}: not valid UTF-8", what.escape_debug())))
    }
    fn skip_string(&mut self, what: &str) -> Result<(), GgufError> {
        let len = self.u64(what)?;
        self.take(len, what).map(|_| ())
    }

    fn value(&mut self, ty: u32, key: &str) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(key)?[0]),
            1 => MetaValue::I8(self.array::<1>(key)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => MetaValue::U32(self.u32(key)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => MetaValue::Bool(self.array::<1>(key)?[0] != 0),
            8 => MetaValue::Str(self.string(key)?),
            9 => {
                let elem_type = self.u32(key)?;
                let len = self.u64(key)?;
                if len > MAX_COUNT * 4 {
                    return Err(GgufError::Header(format!(
                        "array '{key}' claims {len} elements"
                    )));
                }
                if elem_type == 9 {
                    return Err(GgufError::Header(format!(
                        "nested array in '{key}' is not supported"
                    )));
                }
                if len <= MAX_DECODED_ARRAY {
                    let mut values = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        values.push(self.value(elem_type, key)?);
                    }
                    MetaValue::Array {
                        elem_type,
                        len,
                        values: Some(values),
                    }
                } else {
                    self.skip_values(elem_type, len, key)?;
                    MetaValue::Array {
                        elem_type,
                        len,
                        values: None,
                    }
                }
            }
            10 => MetaValue::U64(self.u64(key)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(GgufError::Header(format!(
                    "metadata '{key}' has unknown value type {other}"
                )))
            }
        })
    }

    fn skip_values(&mut self, elem_type: u32, len: u64, key: &str) -> Result<(), GgufError> {
        let fixed = match elem_type {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            8 => None,
            other => {
                return Err(GgufError::Header(format!(
                    "array '{key}' has unknown element type {other}"
                )))
            }
        };
        match fixed {
            Some(size) => {
                let total = len
                    .checked_mul(size)
                    .ok_or_else(|| GgufError::Header(format!("array '{key}' is too large")))?;
                self.take(total, key).map(|_| ())
            }
            None => {
                for _ in 0..len {
                    self.skip_string(key)?;
                }
                Ok(())
            }
        }
    }
}

impl GgufFile {
    /// Opens and validates a complete GGUF file (header and tensor data bounds).
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let parsed = Self::open_header(path)?;
        parsed.check_data_present(parsed.file_size)?;
        Ok(parsed)
    }

    /// True when the file holds the header only (no tensor data at all), as the
    /// planner's full-size tensor tables do.
    pub fn is_header_only(&self) -> bool {
        !self.tensors.is_empty() && self.file_size <= self.data_offset
    }

    /// Opens a GGUF and parses its header without requiring the tensor data.
    pub fn open_header(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(GgufError::IsDirectory(path.display().to_string()));
        }
        if meta.len() == 0 {
            return Err(GgufError::Empty(path.display().to_string()));
        }
        let file = std::fs::File::open(path).map_err(io)?;
        let map = read_header_bytes(&file).map_err(io)?;
        let parsed = Self::parse_header(&map)?;
        Ok(Self {
            file_size: meta.len(),
            ..parsed
        })
    }

    /// Parses the header and tensor table from the first bytes of a GGUF. The tensor
    /// data need not be present (header-only GGUFs, HTTP range reads).
    pub fn parse_header(buf: &[u8]) -> Result<Self, GgufError> {
        if buf.len() < 4 {
            return Err(GgufError::BadMagic(
                String::from_utf8_lossy(buf).into_owned(),
            ));
        }
        if &buf[..4] != b"GGUF" {
            return Err(GgufError::BadMagic(
                String::from_utf8_lossy(&buf[..4])
                    .escape_debug()
                    .to_string(),
            ));
        }
        let mut cur = Cursor { buf, pos: 4 };
        let version = cur.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::BadVersion(version));
        }
        let n_tensors = cur.u64("tensor count")?;
        let n_kv = cur.u64("metadata count")?;
        if n_tensors > MAX_COUNT || n_kv > MAX_COUNT {
            return Err(GgufError::Header(format!(
                "implausible counts: {n_tensors} tensors, {n_kv} metadata entries"
            )));
        }
        let mut metadata = Vec::with_capacity(n_kv.min(1024) as usize);
        for i in 0..n_kv {
            let key = cur.string(&format!("metadata key #{i}"))?;
            let ty = cur.u32(&key)?;
            let value = cur.value(ty, &key)?;
            metadata.push((key, value));
        }
        let alignment = metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(32);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(GgufError::Header(format!(
                "invalid general.alignment {alignment}"
            )));
        }
        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16) as usize);
        for i in 0..n_tensors {
            let name = cur.string(&format!("tensor name #{i}"))?;
            let n_dims = cur.u32(&name)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::Header(format!(
                    "tensor '{name}' has {n_dims} dimensions"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(cur.u64(&name)?);
            }
            let ggml_type = GgmlType(cur.u32(&name)?);
            let offset = cur.u64(&name)?;
            if !ggml_type.is_known() {
                return Err(GgufError::Header(format!(
                    "tensor '{name}' has unknown ggml type {} (this edge build does not support it)",
                    ggml_type.0
                )));
            }
            let bytes = ggml_type.bytes_for(&dims).ok_or_else(|| {
                GgufError::Header(format!(
                    "tensor '{name}' shape {dims:?} does not fit type {ggml_type}"
                ))
            })?;
            if offset % alignment != 0 {
                return Err(GgufError::Header(format!(
                    "tensor '{name}' offset {offset} is not aligned to {alignment}"
                )));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                bytes,
            });
        }
        let header_end = cur.pos as u64;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        Ok(Self {
            version,
            alignment,
            metadata,
            tensors,
            data_offset,
            file_size: buf.len() as u64,
        })
    }

    /// Fails when any tensor's bytes lie beyond `file_size`.
    pub fn check_data_present(&self, file_size: u64) -> Result<(), GgufError> {
        for t in &self.tensors {
            let end = self
                .data_offset
                .saturating_add(t.offset)
                .saturating_add(t.bytes);
            if end > file_size {
                return Err(GgufError::TruncatedData {
                    tensor: t.name.clone(),
                    needed: end,
                    actual: file_size,
                });
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetaValue::as_str)
    }
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(MetaValue::as_u64)
    }
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
    /// `{arch}.{suffix}` as an integer.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get_u64(&format!("{arch}.{suffix}"))
    }
    /// Length of an array-valued key (e.g. the vocabulary).
    pub fn array_len(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            MetaValue::Array { len, .. } => Some(*len),
            _ => None,
        }
    }
}

/// Reads just enough of the file to hold the header: metadata can be large
/// (vocabularies), so it grows the read until the header parses or the file ends.
/// The tensor data itself is never read.
/// llama.cpp's `LLAMA_MAX_LAYERS`: a block count above it is corrupt or hostile (and
/// would have edge allocate per-layer tables of that size).
pub const MAX_LAYERS: u64 = 512;

/// The most header bytes read from a file: real headers (a 256k-token vocabulary with
/// merges, thousands of tensors) stay far below; a corrupt length does not get more.
const MAX_HEADER_BYTES: u64 = 1 << 30;

fn read_header_bytes(file: &std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let len = file.metadata()?.len();
    let mut want = (16u64 << 20).min(len);
    let mut buf = Vec::new();
    let mut reader = std::io::BufReader::new(file);
    loop {
        let need = want as usize - buf.len();
        let mut chunk = vec![0u8; need];
        reader.read_exact(&mut chunk)?;
        buf.extend_from_slice(&chunk);
        match GgufFile::parse_header(&buf) {
            Err(e) if want < len => match e.bytes_needed() {
                // A header that claims more than any real one needs is refused by the
                // parse of what was read, rather than read whole into memory.
                Some(needed) if want < MAX_HEADER_BYTES => {
                    want = (want * 4).max(needed).min(len).min(MAX_HEADER_BYTES)
                }
                _ => return Ok(buf),
            },
            _ => return Ok(buf),
        }
    }
}

/// Mixture-of-experts facts of a model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MoeFacts {
    pub n_expert: u64,
    pub n_expert_used: u64,
    pub n_expert_shared: u64,
    pub expert_ff: Option<u64>,
    /// Layer indices that have routed experts.
    pub moe_layers: Vec<u32>,
}

/// What `edge show` prints and what the planner needs, derived from a GGUF header.
#[derive(Debug, Clone, Serialize)]
pub struct ModelFacts {
    pub architecture: String,
    pub name: Option<String>,
    pub file_size: u64,
    pub n_params: u64,
    /// Bytes per ggml type, largest first.
    pub quant_mix: Vec<QuantShare>,
    pub n_layer: Option<u64>,
    pub n_embd: Option<u64>,
    pub n_head: Option<u64>,
    pub n_head_kv: Option<u64>,
    pub context_length: Option<u64>,
    pub vocab_size: Option<u64>,
    pub moe: Option<MoeFacts>,
    pub has_chat_template: bool,
    pub n_tensors: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuantShare {
    pub ggml_type: String,
    pub bytes: u64,
    pub n_tensors: usize,
}

impl ModelFacts {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, String> {
        let architecture = gguf
            .architecture()
            .ok_or("GGUF has no general.architecture key")?
            .to_string();
        let mut mix: BTreeMap<GgmlType, (u64, usize)> = BTreeMap::new();
        for t in &gguf.tensors {
            let e = mix.entry(t.ggml_type).or_default();
            e.0 += t.bytes;
            e.1 += 1;
        }
        let mut quant_mix: Vec<QuantShare> = mix
            .into_iter()
            .map(|(ty, (bytes, n))| QuantShare {
                ggml_type: ty.to_string(),
                bytes,
                n_tensors: n,
            })
            .collect();
        quant_mix.sort_by_key(|q| std::cmp::Reverse(q.bytes));

        let mut moe_layers: Vec<u32> = gguf
            .tensors
            .iter()
            .filter(|t| t.name.contains("_exps."))
            .filter_map(|t| layer_of(&t.name))
            .collect();
        moe_layers.sort_unstable();
        moe_layers.dedup();
        let n_expert = gguf.arch_u64("expert_count").unwrap_or(0);
        let has_shexp = gguf.tensors.iter().any(|t| t.name.contains("_shexp."));
        let moe = (n_expert > 0 || !moe_layers.is_empty()).then(|| MoeFacts {
            n_expert,
            n_expert_used: gguf.arch_u64("expert_used_count").unwrap_or(0),
            n_expert_shared: gguf
                .arch_u64("expert_shared_count")
                .unwrap_or(u64::from(has_shexp)),
            expert_ff: gguf.arch_u64("expert_feed_forward_length").or_else(|| {
                gguf.tensors
                    .iter()
                    .find(|t| t.name.ends_with("ffn_down_exps.weight"))
                    .map(|t| t.dims[0])
            }),
            moe_layers,
        });
        Ok(Self {
            name: gguf.get_str("general.name").map(str::to_string),
            file_size: gguf.file_size,
            n_params: gguf.tensors.iter().map(TensorInfo::n_elements).sum(),
            quant_mix,
            n_layer: gguf.arch_u64("block_count"),
            n_embd: gguf.arch_u64("embedding_length"),
            n_head: gguf.arch_u64("attention.head_count"),
            n_head_kv: gguf
                .arch_u64("attention.head_count_kv")
                .or_else(|| gguf.arch_u64("attention.head_count")),
            context_length: gguf.arch_u64("context_length"),
            vocab_size: gguf.array_len("tokenizer.ggml.tokens"),
            has_chat_template: gguf.get_str("tokenizer.chat_template").is_some(),
            n_tensors: gguf.tensors.len(),
            moe,
            architecture,
        })
    }
}

/// Checks that llama.cpp can load this header without hitting one of its asserts
/// (which abort the process instead of returning an error).
/// Fewest layers a llama4 model can have: llama.cpp's chunked attention leaves every
/// 4th layer global, and its global KV cache must not be empty.
pub const LLAMA4_MIN_LAYERS: u64 = 4;

pub fn check_loadable(gguf: &GgufFile) -> Result<(), String> {
    let arch = gguf
        .architecture()
        .ok_or("GGUF has no general.architecture key")?;
    if gguf.tensors.iter().any(|t| t.name.contains("_exps.")) {
        for key in ["expert_count", "expert_used_count"] {
            match gguf.arch_u64(key) {
                Some(n) if n > 0 => {}
                _ => {
                    return Err(format!(
                        "MoE model but {arch}.{key} is missing or zero in the GGUF metadata"
                    ))
                }
            }
        }
        let n_expert = gguf.arch_u64("expert_count").unwrap_or(0);
        let n_used = gguf.arch_u64("expert_used_count").unwrap_or(0);
        if n_used > n_expert {
            return Err(format!(
                "{arch}.expert_used_count ({n_used}) exceeds expert_count ({n_expert})"
            ));
        }
    }
    for required in ["block_count", "embedding_length"] {
        if gguf.arch_u64(required).is_none() {
            return Err(format!("GGUF metadata lacks {arch}.{required}"));
        }
    }
    if let Some(n) = gguf.arch_u64("block_count").filter(|&n| n > MAX_LAYERS) {
        return Err(format!(
            "{arch}.block_count is {n}: llama.cpp takes at most {MAX_LAYERS} layers"
        ));
    }
    // llama.cpp gives llama4 chunked attention on 3 of every 4 layers; with fewer than 4
    // layers its global-attention KV cache has no layer and decoding aborts the process.
    let n_layer = gguf.arch_u64("block_count").unwrap_or(0);
    if arch == "llama4"
        && n_layer < LLAMA4_MIN_LAYERS
        && gguf.arch_u64("attention.sliding_window") != Some(0)
    {
        return Err(format!(
            "llama4 model with {n_layer} layers: llama.cpp needs at least {LLAMA4_MIN_LAYERS} (every 4th layer is the global-attention one)"
        ));
    }
    if gguf.tensors.is_empty() {
        return Err("GGUF has no tensors (a header-only file cannot be run)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_str(buf: &mut Vec<u8>, s: &str) {
        buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
    }

    /// A tiny GGUF: arch "llama", one F32 [32, 2] tensor.
    fn tiny() -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        push_str(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        push_str(&mut b, "llama");
        push_str(&mut b, "llama.block_count");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        push_str(&mut b, "blk.0.ffn_up_exps.weight");
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&32u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        b.extend(std::iter::repeat_n(0u8, 32 * 2 * 4));
        b
    }

    #[test]
    fn parses_a_valid_file() {
        let buf = tiny();
        let g = GgufFile::parse_header(&buf).unwrap();
        g.check_data_present(buf.len() as u64).unwrap();
        assert_eq!(g.architecture(), Some("llama"));
        assert_eq!(g.tensors[0].bytes, 256);
        let facts = ModelFacts::from_gguf(&g).unwrap();
        assert_eq!(facts.n_params, 64);
        assert_eq!(facts.moe.as_ref().unwrap().moe_layers, vec![0]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let buf = tiny();
        for cut in 0..buf.len() {
            let part = &buf[..cut];
            let ok = GgufFile::parse_header(part).and_then(|g| g.check_data_present(cut as u64));
            assert!(ok.is_err(), "cut at {cut} should fail");
        }
    }

    #[test]
    fn truncated_headers_say_how_many_bytes_they_need() {
        let buf = tiny();
        let full = GgufFile::parse_header(&buf).unwrap();
        let mut parsed_at = None;
        for cut in 4..buf.len() {
            match GgufFile::parse_header(&buf[..cut]) {
                Ok(_) => {
                    parsed_at.get_or_insert(cut);
                }
                Err(e) => {
                    assert!(
                        parsed_at.is_none(),
                        "cut {cut} failed after a shorter one parsed"
                    );
                    let needed = e.bytes_needed().expect("truncation");
                    assert!(
                        needed > cut as u64 && needed <= full.data_offset,
                        "{cut}: {e}"
                    );
                }
            }
        }
        assert!(parsed_at.is_some_and(|c| c as u64 <= full.data_offset));
        assert_eq!(
            GgufFile::parse_header(b"GG").unwrap_err().bytes_needed(),
            None
        );
        let mut bad = buf.clone();
        bad[4] = 9; // version 9
        assert_eq!(
            GgufFile::parse_header(&bad).unwrap_err().bytes_needed(),
            None
        );
    }

    /// The header bytes that `g` describes, written back independently of the parser:
    /// a parse is a correct description of a file when these are the file's first bytes.
    fn header_bytes(g: &GgufFile) -> Vec<u8> {
        fn str_(b: &mut Vec<u8>, s: &str) {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        }
        fn type_id(v: &MetaValue) -> u32 {
            match v {
                MetaValue::U8(_) => 0,
                MetaValue::I8(_) => 1,
                MetaValue::U16(_) => 2,
                MetaValue::I16(_) => 3,
                MetaValue::U32(_) => 4,
                MetaValue::I32(_) => 5,
                MetaValue::F32(_) => 6,
                MetaValue::Bool(_) => 7,
                MetaValue::Str(_) => 8,
                MetaValue::Array { .. } => 9,
                MetaValue::U64(_) => 10,
                MetaValue::I64(_) => 11,
                MetaValue::F64(_) => 12,
            }
        }
        fn value(b: &mut Vec<u8>, v: &MetaValue) {
            match v {
                MetaValue::U8(x) => b.push(*x),
                MetaValue::I8(x) => b.extend(x.to_le_bytes()),
                MetaValue::U16(x) => b.extend(x.to_le_bytes()),
                MetaValue::I16(x) => b.extend(x.to_le_bytes()),
                MetaValue::U32(x) => b.extend(x.to_le_bytes()),
                MetaValue::I32(x) => b.extend(x.to_le_bytes()),
                MetaValue::F32(x) => b.extend(x.to_le_bytes()),
                MetaValue::Bool(x) => b.push(*x as u8),
                MetaValue::Str(s) => str_(b, s),
                MetaValue::Array {
                    elem_type,
                    len,
                    values,
                } => {
                    b.extend(elem_type.to_le_bytes());
                    b.extend(len.to_le_bytes());
                    let values = values.as_ref().expect("a small array is decoded");
                    assert_eq!(values.len() as u64, *len);
                    for e in values {
                        assert_eq!(type_id(e), *elem_type);
                        value(b, e);
                    }
                }
                MetaValue::U64(x) => b.extend(x.to_le_bytes()),
                MetaValue::I64(x) => b.extend(x.to_le_bytes()),
                MetaValue::F64(x) => b.extend(x.to_le_bytes()),
            }
        }
        let mut b = b"GGUF".to_vec();
        b.extend(g.version.to_le_bytes());
        b.extend((g.tensors.len() as u64).to_le_bytes());
        b.extend((g.metadata.len() as u64).to_le_bytes());
        for (k, v) in &g.metadata {
            str_(&mut b, k);
            b.extend(type_id(v).to_le_bytes());
            value(&mut b, v);
        }
        for t in &g.tensors {
            str_(&mut b, &t.name);
            b.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(t.ggml_type.0.to_le_bytes());
            b.extend(t.offset.to_le_bytes());
        }
        b
    }

    #[test]
    fn corrupt_bytes_are_refused_or_described_exactly() {
        let buf = tiny();
        let (mut refused, mut accepted) = (0, 0);
        for i in 4..buf.len().min(200) {
            for v in [0u8, 0xff, 0x7f] {
                let mut b = buf.clone();
                b[i] = v;
                let parsed = GgufFile::parse_header(&b).and_then(|g| {
                    g.check_data_present(b.len() as u64)?;
                    Ok(g)
                });
                let Ok(g) = parsed else {
                    refused += 1;
                    continue;
                };
                accepted += 1;
                // Every field the parse reports is in the bytes, at its place.
                let h = header_bytes(&g);
                assert_eq!(&b[..h.len()], &h[..], "byte {i} = {v:#x}: misdescribed");
                assert_eq!(
                    g.data_offset,
                    (h.len() as u64).next_multiple_of(g.alignment)
                );
                for t in &g.tensors {
                    assert_eq!(Some(t.bytes), t.ggml_type.bytes_for(&t.dims), "{}", t.name);
                    assert!(g.data_offset + t.offset + t.bytes <= b.len() as u64);
                }
                // The model facts are either refused or derived from that description.
                if let Ok(f) = ModelFacts::from_gguf(&g) {
                    let n: u64 = g.tensors.iter().map(|t| t.n_elements()).sum();
                    assert_eq!(f.n_params, n, "byte {i} = {v:#x}");
                }
            }
        }
        // Corrupt counts, lengths and types are refused; a changed letter of a name or a
        // changed dimension that still matches the data is a different, valid file.
        assert!(
            refused > 100 && accepted > 10,
            "{refused} refused, {accepted} accepted"
        );
    }

    #[test]
    fn moe_without_expert_count_is_rejected_before_llama_cpp() {
        let g = GgufFile::parse_header(&tiny()).unwrap();
        let err = check_loadable(&g).unwrap_err();
        assert!(err.contains("expert_count"), "{err}");
    }

    #[test]
    fn type_sizes_match_ggml() {
        assert_eq!(GgmlType(12).bytes_for(&[256, 2]), Some(288));
        assert_eq!(GgmlType(3).bytes_for(&[64]), Some(40));
        assert_eq!(GgmlType(12).bytes_for(&[100]), None);
    }
}
