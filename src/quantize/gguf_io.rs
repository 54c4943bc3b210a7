//! Small GGUF helpers for quantization: the exact size of the header llama.cpp writes
//! for a quantized copy, reading tensor rows as f32, and a minimal GGUF writer (for
//! imatrix files).

use std::io::Write;
use std::path::Path;

use crate::gguf_info::{GgufFile, TensorInfo};
use crate::partial_file::PartialFile;
use anyhow::{anyhow, bail, Context, Result};

/// Byte sizes of a GGUF header's parts, walked from the file itself.
#[derive(Debug, Clone)]
pub struct HeaderLayout {
    /// (key, bytes of the whole KV entry).
    pub kv: Vec<(String, u64)>,
    /// Bytes of the tensor-info table.
    pub tensor_infos: u64,
    pub alignment: u64,
}

fn rd_u32(b: &[u8], p: &mut usize) -> Result<u32> {
    let s = b
        .get(*p..*p + 4)
        .ok_or_else(|| anyhow!("GGUF header is truncated"))?;
    *p += 4;
    Ok(u32::from_le_bytes(s.try_into()?))
}
fn rd_u64(b: &[u8], p: &mut usize) -> Result<u64> {
    let s = b
        .get(*p..*p + 8)
        .ok_or_else(|| anyhow!("GGUF header is truncated"))?;
    *p += 8;
    Ok(u64::from_le_bytes(s.try_into()?))
}
fn skip(b: &[u8], p: &mut usize, n: u64) -> Result<()> {
    let n = usize::try_from(n)?;
    if b.len().saturating_sub(*p) < n {
        bail!("GGUF header is truncated");
    }
    *p += n;
    Ok(())
}
fn skip_value(b: &[u8], p: &mut usize, ty: u32) -> Result<()> {
    match ty {
        0 | 1 | 7 => skip(b, p, 1),
        2 | 3 => skip(b, p, 2),
        4..=6 => skip(b, p, 4),
        10..=12 => skip(b, p, 8),
        8 => {
            let n = rd_u64(b, p)?;
            skip(b, p, n)
        }
        9 => {
            let et = rd_u32(b, p)?;
            let n = rd_u64(b, p)?;
            match et {
                0 | 1 | 7 => skip(b, p, n),
                2 | 3 => skip(b, p, n.checked_mul(2).ok_or_else(|| anyhow!("bad array"))?),
                4..=6 => skip(b, p, n.checked_mul(4).ok_or_else(|| anyhow!("bad array"))?),
                10..=12 => skip(b, p, n.checked_mul(8).ok_or_else(|| anyhow!("bad array"))?),
                8 => (0..n).try_for_each(|_| skip_value(b, p, 8)),
                _ => bail!("unsupported GGUF array element type {et}"),
            }
        }
        _ => bail!("unknown GGUF value type {ty}"),
    }
}

impl HeaderLayout {
    /// Walks the header of `path`, whose data section starts at `data_offset`.
    pub fn read(path: &Path, data_offset: u64) -> Result<HeaderLayout> {
        use std::os::unix::fs::FileExt;
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut buf = vec![0u8; usize::try_from(data_offset)?];
        file.read_exact_at(&mut buf, 0)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let b = &buf[..];
        let mut p = 8usize; // magic + version
        let n_tensors = rd_u64(b, &mut p)?;
        let n_kv = rd_u64(b, &mut p)?;
        let mut kv = Vec::new();
        let mut alignment = 32;
        for _ in 0..n_kv {
            let start = p;
            let klen = rd_u64(b, &mut p)?;
            let kstart = p;
            skip(b, &mut p, klen)?;
            let key = String::from_utf8_lossy(&b[kstart..p]).into_owned();
            let ty = rd_u32(b, &mut p)?;
            let vstart = p;
            skip_value(b, &mut p, ty)?;
            if key == "general.alignment" && ty == 4 {
                alignment = u64::from(u32::from_le_bytes(b[vstart..vstart + 4].try_into()?));
            }
            kv.push((key, (p - start) as u64));
        }
        let t0 = p;
        for _ in 0..n_tensors {
            let n = rd_u64(b, &mut p)?;
            skip(b, &mut p, n)?;
            let nd = rd_u32(b, &mut p)?;
            skip(b, &mut p, u64::from(nd) * 8 + 4 + 8)?;
        }
        Ok(HeaderLayout {
            kv,
            tensor_infos: (p - t0) as u64,
            alignment: alignment.max(1),
        })
    }

    /// Bytes of the KV pairs llama_model_quantize writes for this input: the input's
    /// pairs without the split keys, with `general.quantization_version` and
    /// `general.file_type` as u32.
    pub fn quantized_kv_bytes(&self) -> u64 {
        const SET_U32: [&str; 2] = ["general.quantization_version", "general.file_type"];
        let mut total = 0;
        for (k, size) in &self.kv {
            if SPLIT_KEYS.contains(&k.as_str()) || SET_U32.contains(&k.as_str()) {
                continue;
            }
            total += size;
        }
        for k in SET_U32 {
            total += 8 + k.len() as u64 + 4 + 4;
        }
        total
    }

    /// Bytes of the header llama_model_quantize writes for this input (padded): the
    /// magic and counts, [`Self::quantized_kv_bytes`] and the same tensor table.
    pub fn quantized_header_bytes(&self) -> u64 {
        align(
            4 + 4 + 8 + 8 + self.quantized_kv_bytes() + self.tensor_infos,
            self.alignment,
        )
    }
}

/// The keys of a split GGUF's shards (llama.cpp's `LLM_KV_SPLIT_*`).
pub const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];

/// Bytes of one tensor-info entry: name, n_dims, dims, type, offset.
pub fn tensor_info_bytes(name: &str, n_dims: usize) -> u64 {
    8 + name.len() as u64 + 4 + 8 * n_dims as u64 + 4 + 8
}

pub fn align(n: u64, a: u64) -> u64 {
    n.div_ceil(a) * a
}

/// Reads rows `[first, first + n)` of a 2-D view (`dims[0]` per row, all higher dims
/// flattened) of an F32/F16/BF16 tensor as f32. None for other types or a short file.
pub fn read_rows_f32(
    file: &std::fs::File,
    gguf: &GgufFile,
    t: &TensorInfo,
    first: u64,
    n: u64,
) -> Option<Vec<f32>> {
    use std::os::unix::fs::FileExt;
    let ne0 = *t.dims.first()?;
    let esize = match t.ggml_type.0 {
        0 => 4,
        1 | 30 => 2,
        _ => return None,
    };
    let start = gguf.data_offset + t.offset + first * ne0 * esize;
    let mut bytes = vec![0u8; usize::try_from(n * ne0 * esize).ok()?];
    file.read_exact_at(&mut bytes, start).ok()?;
    Some(match t.ggml_type.0 {
        0 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        1 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    })
}

/// A metadata value for [`write_gguf`].
pub enum Kv {
    Str(String),
    U32(u32),
    StrArray(Vec<String>),
}

/// Writes a GGUF v3 file with F32 tensors `(name, dims, data)`, through a partial file
/// renamed at the end.
pub fn write_gguf(
    path: &Path,
    kvs: &[(&str, Kv)],
    tensors: &[(String, Vec<u64>, &[f32])],
) -> Result<()> {
    const ALIGN: u64 = 32;
    let mut h: Vec<u8> = Vec::new();
    let s = |h: &mut Vec<u8>, v: &str| {
        h.extend((v.len() as u64).to_le_bytes());
        h.extend(v.as_bytes());
    };
    h.extend(b"GGUF");
    h.extend(3u32.to_le_bytes());
    h.extend((tensors.len() as u64).to_le_bytes());
    h.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        s(&mut h, k);
        match v {
            Kv::Str(x) => {
                h.extend(8u32.to_le_bytes());
                s(&mut h, x);
            }
            Kv::U32(x) => {
                h.extend(4u32.to_le_bytes());
                h.extend(x.to_le_bytes());
            }
            Kv::StrArray(xs) => {
                h.extend(9u32.to_le_bytes());
                h.extend(8u32.to_le_bytes());
                h.extend((xs.len() as u64).to_le_bytes());
                for x in xs {
                    s(&mut h, x);
                }
            }
        }
    }
    let mut offset = 0u64;
    for (name, dims, data) in tensors {
        s(&mut h, name);
        h.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            h.extend(d.to_le_bytes());
        }
        h.extend(0u32.to_le_bytes()); // F32
        h.extend(offset.to_le_bytes());
        offset = align(offset + data.len() as u64 * 4, ALIGN);
    }
    h.resize(align(h.len() as u64, ALIGN) as usize, 0);
    // The exact size, so a disk without room refuses before the first byte.
    let total = h.len() as u64 + offset;
    let mut partial = PartialFile::create(path, Some(total))?;
    let written = (|| -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(partial.file());
        f.write_all(&h)?;
        for (_, _, data) in tensors {
            let mut n = 0u64;
            for v in data.iter() {
                f.write_all(&v.to_le_bytes())?;
                n += 4;
            }
            f.write_all(&vec![0u8; (align(n, ALIGN) - n) as usize])?;
        }
        f.flush()
    })();
    match written {
        Ok(()) => partial.commit()?,
        Err(e) => return Err(partial.fail(e, Some(total)).into()),
    }
    Ok(())
}
