//! `--split-max-size` / `--split-max-tensors`: llama.cpp's C API can only keep an
//! input's split (`keep_split`), so edge splits the quantized file itself, in the layout
//! of llama.cpp's `gguf-split`: `NAME-00001-of-0000N.gguf`, tensors in file order, all
//! metadata in the first shard, `split.no`/`split.count`/`split.tensors.count` in every
//! shard. The plan (which tensors go where) is `edge_quant::split`'s.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use edge_quant::split::{plan_shards, shard_name, Shard, ShardHeaders, ShardTensor, SplitLimits};
use serde::Serialize;

use super::gguf_io::{align, tensor_info_bytes, HeaderLayout, SPLIT_KEYS};
use super::source::{Plan, Source};
use crate::gguf_info::GgufFile;
use crate::partial_file::PartialFile;

/// Bytes of the three split keys: `split.no` (u16), `split.count` (u16),
/// `split.tensors.count` (i32).
const SPLIT_KV_BYTES: u64 = (8 + 8 + 4 + 2) + (8 + 11 + 4 + 2) + (8 + 19 + 4 + 4);
/// Bytes of `general.alignment` (u32), repeated in every shard when the model sets it.
const ALIGNMENT_KV_BYTES: u64 = 8 + 17 + 4 + 4;

/// One shard, planned or written.
#[derive(Debug, Clone, Serialize)]
pub struct ShardReport {
    pub path: PathBuf,
    pub tensors: usize,
    pub bytes: u64,
}

fn headers(kv_bytes: u64, has_alignment_key: bool, alignment: u64) -> ShardHeaders {
    let other_align = if has_alignment_key {
        ALIGNMENT_KV_BYTES
    } else {
        0
    };
    ShardHeaders {
        first: 24 + kv_bytes + SPLIT_KV_BYTES,
        other: 24 + SPLIT_KV_BYTES + other_align,
        alignment,
    }
}

fn reports(out: &Path, shards: &[Shard]) -> Vec<ShardReport> {
    if shards.len() == 1 {
        return vec![ShardReport {
            path: out.to_path_buf(),
            tensors: shards[0].tensors.len(),
            bytes: 0,
        }];
    }
    shards
        .iter()
        .enumerate()
        .map(|(i, s)| ShardReport {
            path: shard_path(out, i, shards.len()),
            tensors: s.tensors.len(),
            bytes: s.file_bytes,
        })
        .collect()
}

/// The path of shard `no` (0-based) of `count` for the output `out`.
pub fn shard_path(out: &Path, no: usize, count: usize) -> PathBuf {
    PathBuf::from(shard_name(&out.to_string_lossy(), no, count))
}

/// The shards a quantization described by `plan` would be split into. One shard means
/// no split: the output is written whole, as `out` (its size is then the plan's).
/// Fails when `--split-max-size` cannot hold even the first shard's metadata.
pub fn plan_from(
    src: &Source,
    plan: &Plan,
    out: &Path,
    limits: SplitLimits,
) -> Result<Vec<ShardReport>> {
    let a = src.layout.alignment;
    let tensors: Vec<ShardTensor> = plan
        .tensors
        .iter()
        .map(|t| ShardTensor {
            info_bytes: tensor_info_bytes(&t.name, t.dims.len()),
            data_bytes: align(t.bytes, a),
        })
        .collect();
    let has_align = src.layout.kv.iter().any(|(k, _)| k == "general.alignment");
    let h = headers(src.layout.quantized_kv_bytes(), has_align, a);
    if let Some(m) = limits.max_bytes {
        let meta = align(h.first, a);
        if m < meta {
            bail!(
                "a shard size limit of {m} bytes is smaller than the model's metadata ({meta} bytes), which the first shard holds"
            );
        }
    }
    let shards = plan_shards(&tensors, h, limits);
    let mut r = reports(out, &shards);
    if r.len() == 1 {
        r[0].bytes = plan.file_bytes;
    }
    Ok(r)
}

fn kv_header(buf: &mut Vec<u8>, key: &str, ty: u32) {
    buf.extend((key.len() as u64).to_le_bytes());
    buf.extend(key.as_bytes());
    buf.extend(ty.to_le_bytes());
}

/// Splits the GGUF `whole` into shards named after `out`, each written to a partial
/// file first; the caller renames them with [`commit`]. Returns None when everything
/// fits in one shard (then `whole` is the output as it is).
pub fn write_shards(
    whole: &Path,
    out: &Path,
    limits: SplitLimits,
) -> Result<Option<Vec<(PartialFile, ShardReport)>>> {
    let gguf = GgufFile::open(whole).map_err(|e| anyhow!("{}: {e}", whole.display()))?;
    let layout = HeaderLayout::read(whole, gguf.data_offset)?;
    let a = layout.alignment;
    let mut raw = vec![0u8; usize::try_from(gguf.data_offset)?];
    let input = File::open(whole).with_context(|| format!("cannot read {}", whole.display()))?;
    input
        .read_exact_at(&mut raw, 0)
        .with_context(|| format!("cannot read {}", whole.display()))?;
    let version = u32::from_le_bytes(raw[4..8].try_into()?);

    // The KV pairs as they are, split keys dropped; the alignment key kept apart.
    let mut kv_all: Vec<u8> = Vec::new();
    let mut n_kv_all = 0u64;
    let mut kv_align: Option<Vec<u8>> = None;
    let mut p = 24usize;
    for (key, size) in &layout.kv {
        let entry = &raw[p..p + usize::try_from(*size)?];
        p += entry.len();
        if SPLIT_KEYS.contains(&key.as_str()) {
            continue;
        }
        if key == "general.alignment" {
            kv_align = Some(entry.to_vec());
        }
        kv_all.extend_from_slice(entry);
        n_kv_all += 1;
    }

    let tensors: Vec<ShardTensor> = gguf
        .tensors
        .iter()
        .map(|t| ShardTensor {
            info_bytes: tensor_info_bytes(&t.name, t.dims.len()),
            data_bytes: align(t.bytes, a),
        })
        .collect();
    let shards = plan_shards(
        &tensors,
        headers(kv_all.len() as u64, kv_align.is_some(), a),
        limits,
    );
    if shards.len() == 1 {
        return Ok(None);
    }
    if shards.len() > usize::from(u16::MAX) {
        bail!(
            "the split would make {} shards, more than a GGUF split can count",
            shards.len()
        );
    }
    let n_tensors_total = i32::try_from(gguf.tensors.len())?;
    // Dropped on an error, the partials written so far are removed.
    let mut written: Vec<(PartialFile, ShardReport)> = Vec::new();
    {
        for (no, (shard, report)) in shards.iter().zip(reports(out, &shards)).enumerate() {
            let mut partial = PartialFile::create(&report.path, None)?;
            let tmp = partial.path().to_path_buf();
            let mut h: Vec<u8> = Vec::new();
            h.extend(b"GGUF");
            h.extend(version.to_le_bytes());
            h.extend((shard.tensors.len() as u64).to_le_bytes());
            let (kv, n_kv): (&[u8], u64) = match (no, &kv_align) {
                (0, _) => (&kv_all, n_kv_all),
                (_, Some(e)) => (e, 1),
                (_, None) => (&[], 0),
            };
            h.extend((n_kv + 3).to_le_bytes());
            h.extend_from_slice(kv);
            // gguf-split's order: it sets split.count last (a placeholder re-set at the
            // end moves to the back).
            kv_header(&mut h, "split.no", 2);
            h.extend((no as u16).to_le_bytes());
            kv_header(&mut h, "split.tensors.count", 5);
            h.extend(n_tensors_total.to_le_bytes());
            kv_header(&mut h, "split.count", 2);
            h.extend((shards.len() as u16).to_le_bytes());
            let mut offset = 0u64;
            for t in &gguf.tensors[shard.tensors.clone()] {
                h.extend((t.name.len() as u64).to_le_bytes());
                h.extend(t.name.as_bytes());
                h.extend((t.dims.len() as u32).to_le_bytes());
                for d in &t.dims {
                    h.extend(d.to_le_bytes());
                }
                h.extend(t.ggml_type.0.to_le_bytes());
                h.extend(offset.to_le_bytes());
                offset += align(t.bytes, a);
            }
            h.resize(usize::try_from(align(h.len() as u64, a))?, 0);
            let f = partial.file();
            f.write_all(&h)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            let mut inp = &input;
            for t in &gguf.tensors[shard.tensors.clone()] {
                inp.seek(SeekFrom::Start(gguf.data_offset + t.offset))?;
                let n = std::io::copy(&mut inp.take(t.bytes), f)
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                if n != t.bytes {
                    bail!("{}: tensor {} is truncated", whole.display(), t.name);
                }
                f.write_all(&vec![0u8; usize::try_from(align(t.bytes, a) - t.bytes)?])
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
            }
            f.sync_all()
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            let len = f.metadata()?.len();
            if len != shard.file_bytes {
                bail!(
                    "internal: shard {} is {len} bytes, the plan said {}",
                    report.path.display(),
                    shard.file_bytes
                );
            }
            written.push((partial, report));
        }
    }
    Ok(Some(written))
}

/// Renames the shards' partial files to their names; on a failure, removes every
/// shard (renamed or not), so no partial set is left.
pub fn commit(shards: Vec<(PartialFile, ShardReport)>) -> Result<Vec<ShardReport>> {
    let mut done: Vec<ShardReport> = Vec::new();
    let mut rest = shards.into_iter();
    for (partial, report) in rest.by_ref() {
        if let Err(e) = partial.commit() {
            for r in &done {
                let _ = std::fs::remove_file(&r.path);
            }
            // The remaining partials are removed as `rest` drops.
            return Err(e.into());
        }
        done.push(report);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_key_sizes() {
        let mut h = Vec::new();
        kv_header(&mut h, "split.no", 2);
        h.extend(0u16.to_le_bytes());
        kv_header(&mut h, "split.count", 2);
        h.extend(0u16.to_le_bytes());
        kv_header(&mut h, "split.tensors.count", 5);
        h.extend(0i32.to_le_bytes());
        assert_eq!(h.len() as u64, SPLIT_KV_BYTES);
        let mut g = Vec::new();
        kv_header(&mut g, "general.alignment", 4);
        g.extend(32u32.to_le_bytes());
        assert_eq!(g.len() as u64, ALIGNMENT_KV_BYTES);
        assert_eq!(
            shard_path(Path::new("/x/m.gguf"), 1, 2),
            PathBuf::from("/x/m-00002-of-00002.gguf")
        );
    }
}
