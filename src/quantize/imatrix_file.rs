//! llama.cpp's GGUF imatrix format: per weight tensor `NAME.in_sum2` (F32
//! `[ne0, n_mat]`, the summed squared activations per input column, one row per expert
//! for MoE `_exps` tensors) and `NAME.counts` (F32 `[1, n_mat]`, tokens seen per
//! expert); metadata `general.type = imatrix`, `imatrix.datasets`,
//! `imatrix.chunk_count`, `imatrix.chunk_size`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::gguf_io::{read_rows_f32, write_gguf, Kv};
use crate::gguf_info::GgufFile;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImatrixEntry {
    /// Sum of squared activations, `ne0` per matrix (expert), concatenated.
    pub sums: Vec<f32>,
    /// Activations (tokens) seen per matrix.
    pub counts: Vec<f32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, ImatrixEntry>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    pub chunk_size: u32,
}

impl Imatrix {
    /// Loads a GGUF imatrix (as written by `edge imatrix` or `llama-imatrix`).
    pub fn load(path: &Path) -> Result<Imatrix> {
        let gguf = GgufFile::open(path)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("imatrix {}", path.display()))?;
        let not_imatrix = || {
            anyhow!(
                "{} is not an imatrix GGUF (no imatrix.chunk_count; edge reads llama.cpp's GGUF imatrix format)",
                path.display()
            )
        };
        let chunk_count = gguf
            .get_u64("imatrix.chunk_count")
            .ok_or_else(not_imatrix)? as u32;
        let chunk_size = gguf.get_u64("imatrix.chunk_size").unwrap_or(0) as u32;
        let datasets = match gguf.get("imatrix.datasets") {
            Some(crate::gguf_info::MetaValue::Array {
                values: Some(vs), ..
            }) => vs
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut entries = BTreeMap::new();
        for t in &gguf.tensors {
            let Some(name) = t.name.strip_suffix(".in_sum2") else {
                continue;
            };
            let counts_t = gguf
                .tensors
                .iter()
                .find(|c| c.name == format!("{name}.counts"))
                .ok_or_else(|| anyhow!("{}: {name} has no .counts", path.display()))?;
            let bad = || {
                anyhow!(
                    "{}: tensor {} is not F32 or is truncated",
                    path.display(),
                    t.name
                )
            };
            let rows_of = |dims: &[u64]| dims.iter().skip(1).product::<u64>();
            let sums = read_rows_f32(&file, &gguf, t, 0, rows_of(&t.dims)).ok_or_else(bad)?;
            let counts = read_rows_f32(&file, &gguf, counts_t, 0, rows_of(&counts_t.dims))
                .ok_or_else(bad)?;
            if counts.is_empty() || sums.len() % counts.len() != 0 || t.ggml_type.0 != 0 {
                bail!("{}: {name}: inconsistent imatrix shapes", path.display());
            }
            entries.insert(name.to_string(), ImatrixEntry { sums, counts });
        }
        if entries.is_empty() {
            return Err(not_imatrix());
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count,
            chunk_size,
        })
    }

    /// Writes the GGUF imatrix format (tensor names sorted, as llama-imatrix does).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Vec<u64>, &[f32])> = Vec::new();
        for (name, e) in &self.entries {
            let n_mat = e.counts.len() as u64;
            if n_mat == 0 || e.sums.is_empty() {
                continue;
            }
            tensors.push((
                format!("{name}.in_sum2"),
                vec![e.sums.len() as u64 / n_mat, n_mat],
                &e.sums,
            ));
            tensors.push((format!("{name}.counts"), vec![1, n_mat], &e.counts));
        }
        let kvs = [
            ("general.type", Kv::Str("imatrix".into())),
            ("imatrix.datasets", Kv::StrArray(self.datasets.clone())),
            ("imatrix.chunk_count", Kv::U32(self.chunk_count)),
            ("imatrix.chunk_size", Kv::U32(self.chunk_size)),
        ];
        write_gguf(path, &kvs, &tensors)
    }

    /// Adds another imatrix's sums and counts (same model).
    pub fn merge(&mut self, other: &Imatrix) -> Result<()> {
        for (name, e) in &other.entries {
            match self.entries.get_mut(name) {
                Some(mine) => {
                    if mine.sums.len() != e.sums.len() || mine.counts.len() != e.counts.len() {
                        bail!("cannot merge imatrix entry {name}: different shapes");
                    }
                    mine.sums.iter_mut().zip(&e.sums).for_each(|(a, b)| *a += b);
                    mine.counts
                        .iter_mut()
                        .zip(&e.counts)
                        .for_each(|(a, b)| *a += b);
                }
                None => {
                    self.entries.insert(name.clone(), e.clone());
                }
            }
        }
        self.chunk_count += other.chunk_count;
        for d in &other.datasets {
            if !self.datasets.contains(d) {
                self.datasets.push(d.clone());
            }
        }
        Ok(())
    }

    /// Mean squared activation per column (per expert), as llama-quantize computes it
    /// from the file: sums / count, 1.0 for matrices that saw no token.
    pub fn means(&self) -> Vec<(String, Vec<f32>)> {
        self.entries
            .iter()
            .map(|(name, e)| {
                let n = e.counts.len().max(1);
                let ne0 = e.sums.len() / n;
                let mut v = vec![1.0f32; e.sums.len()];
                for (j, &c) in e.counts.iter().enumerate() {
                    if c > 0.0 {
                        for i in 0..ne0 {
                            v[j * ne0 + i] = e.sums[j * ne0 + i] / c;
                        }
                    }
                }
                (name.clone(), v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_merge_means() {
        let dir = tempfile::tempdir().unwrap();
        let mut im = Imatrix {
            chunk_count: 2,
            chunk_size: 512,
            datasets: vec!["a.txt".into()],
            ..Default::default()
        };
        im.entries.insert(
            "blk.0.ffn_up_exps.weight".into(),
            ImatrixEntry {
                sums: vec![2.0, 4.0, 6.0, 8.0, 0.0, 0.0],
                counts: vec![2.0, 4.0, 0.0],
            },
        );
        let p = dir.path().join("im.gguf");
        im.save(&p).unwrap();
        let back = Imatrix::load(&p).unwrap();
        assert_eq!(back, im);
        let means = back.means();
        assert_eq!(means[0].1, vec![1.0, 2.0, 1.5, 2.0, 1.0, 1.0]);
        let mut m = back.clone();
        m.merge(&im).unwrap();
        assert_eq!(m.chunk_count, 4);
        assert_eq!(
            m.entries["blk.0.ffn_up_exps.weight"].counts,
            vec![4.0, 8.0, 0.0]
        );
    }
}
