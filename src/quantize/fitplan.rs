//! Quantize-to-fit, llama.cpp side: measures each tensor's error at each candidate type
//! on a sample of its rows (through ggml's own quantizers, weighted by the imatrix when
//! there is one), hands the numbers to `edge_quant::fit`, and turns the answer into
//! `--tensor-type` overrides for `llama_model_quantize`.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, Result};
use edge_quant::{
    classify, fit, ggml_type, layer_of, llama_quantizes, sensitivity, Candidate, FitError, Item,
    TensorClass,
};

use super::gguf_io::{align, read_rows_f32};
use super::source::Source;
use crate::engine::ffi;
use crate::gguf_info::TensorInfo;

/// Types the fitter may choose without an imatrix (ggml ids): K-quants, IQ3_S/IQ4_XS,
/// the 32-block types (for rows that are not multiples of 256) and Q8_0.
const CANDIDATES: &[u32] = &[10, 11, 21, 23, 12, 13, 14, 8, 2, 3, 6, 7, 20];
/// Extra types with an imatrix: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS.
const CANDIDATES_IMATRIX: &[u32] = &[16, 17, 22, 18];
/// Rows sampled per tensor to measure quantization error.
const SAMPLE_ROWS: u64 = 24;

/// The fitter's answer for one tensor.
#[derive(Debug, Clone)]
pub struct Choice {
    pub name: String,
    pub class: TensorClass,
    pub type_id: u32,
    pub bytes: u64,
}

/// Relative squared error of a quantized row, weighted by column importance.
fn weighted_nmse(orig: &[f32], deq: &[f32], imp: Option<&[f32]>) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (i, (&w, &q)) in orig.iter().zip(deq).enumerate() {
        let k = imp.map_or(1.0, |m| f64::from(m[i % m.len()]));
        num += k * f64::from(w - q).powi(2);
        den += k * f64::from(w).powi(2);
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// Candidate types left out of the fit, from `EDGE_FIT_EXCLUDE` (comma-separated ggml
/// type names). A diagnostic for benchmarks: e.g. an F16 made from a Q4_1 file is
/// exactly representable in Q4_1 again, and leaving Q4_1 out shows how the fit does
/// on weights without such a shortcut.
fn excluded_types() -> Vec<u32> {
    std::env::var("EDGE_FIT_EXCLUDE")
        .map(|v| {
            v.split(',')
                .filter_map(|n| edge_quant::ggml_type_by_name(n.trim()))
                .map(|g| g.id)
                .collect()
        })
        .unwrap_or_default()
}

/// Expected error when a tensor's rows cannot be read as floats (a quantized input):
/// 2^(-2·bpw) with a small penalty for the legacy formats.
fn nominal_nmse(type_id: u32) -> f64 {
    let g = match ggml_type(type_id) {
        Some(g) => g,
        None => return 1.0,
    };
    let family = match type_id {
        2 | 3 | 6 | 7 => 1.4,
        16..=23 | 29 => 0.85,
        _ => 1.0,
    };
    family * 4f64.powf(-g.bpw()) * 6.0
}

/// The sensitivity of a tensor class in this model (see `edge_quant::sensitivity`).
fn class_weight(src: &Source, class: TensorClass) -> f64 {
    let n_layers = src
        .gguf
        .arch_u64("block_count")
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1);
    sensitivity(
        class,
        src.tied_output && class == TensorClass::TokenEmbd,
        n_layers,
    )
}

fn tensor_item(
    src: &Source,
    file: &std::fs::File,
    t: &TensorInfo,
    imatrix: Option<&HashMap<String, Vec<f32>>>,
) -> Item {
    let class = classify(&t.name);
    let a = src.layout.alignment;
    let keep = || Item {
        name: t.name.clone(),
        class,
        candidates: vec![Candidate {
            type_id: t.ggml_type.0,
            bytes: align(t.bytes, a),
            loss: 0.0,
        }],
    };
    if !llama_quantizes(&t.name, t.dims.len()) {
        return keep();
    }
    let ne0 = t.dims[0];
    let rows_per_mat = t.dims.get(1).copied().unwrap_or(1);
    let total_rows: u64 = t.dims.iter().skip(1).product();
    let imp = imatrix.and_then(|m| m.get(&t.name));
    let with_im = imp.is_some();
    let weight = class_weight(src, class);

    let mut types: Vec<u32> = CANDIDATES.to_vec();
    if with_im {
        types.extend_from_slice(CANDIDATES_IMATRIX);
    }
    let excluded = excluded_types();
    types.retain(|t| !excluded.contains(t));
    let mut cands: Vec<Candidate> = Vec::new();
    if matches!(t.ggml_type.0, 0 | 1 | 30) {
        cands.push(Candidate {
            type_id: t.ggml_type.0,
            bytes: align(t.bytes, a),
            loss: 0.0,
        });
    }
    // Sample rows spread over the whole tensor (all experts).
    let n = SAMPLE_ROWS.min(total_rows).max(1);
    let samples: Vec<(u64, Vec<f32>)> = (0..n)
        .filter_map(|i| {
            let r = i * total_rows / n;
            read_rows_f32(file, &src.gguf, t, r, 1).map(|row| (r, row))
        })
        .collect();
    for ty in types {
        let Some(g) = ggml_type(ty) else { continue };
        let Some(bytes) = g.tensor_bytes(&t.dims) else {
            continue;
        };
        let nmse = if samples.is_empty() {
            nominal_nmse(ty)
        } else {
            let mut sum = 0.0;
            let mut ok = true;
            for (r, row) in &samples {
                let expert = r / rows_per_mat.max(1);
                let im_row: Option<&[f32]> = imp.and_then(|v| {
                    let s = (expert * ne0) as usize;
                    v.get(s..s + ne0 as usize).or_else(|| v.get(..ne0 as usize))
                });
                match ffi::quantize_roundtrip(ty, row, ne0 as usize, im_row) {
                    Some(deq) => sum += weighted_nmse(row, &deq, im_row),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                continue;
            }
            sum / samples.len() as f64
        };
        cands.push(Candidate {
            type_id: ty,
            bytes: align(bytes, a),
            loss: weight * nmse,
        });
    }
    if cands.is_empty() {
        return keep();
    }
    Item {
        name: t.name.clone(),
        class,
        candidates: cands,
    }
}

/// Measures every tensor (in parallel) and returns the fitter's items, in file order.
pub fn build_items(
    src: &Source,
    imatrix: Option<&HashMap<String, Vec<f32>>>,
    threads: usize,
) -> Result<Vec<Item>> {
    let file = std::fs::File::open(&src.path)
        .map_err(|e| anyhow!("cannot read {}: {e}", src.path.display()))?;
    let tensors = &src.gguf.tensors;
    let threads = threads.clamp(1, 64);
    let mut items: Vec<Option<Item>> = vec![None; tensors.len()];
    std::thread::scope(|s| {
        let chunks: Vec<_> = items
            .chunks_mut(tensors.len().div_ceil(threads))
            .enumerate()
            .collect();
        let per = tensors.len().div_ceil(threads);
        for (ci, chunk) in chunks {
            let file = &file;
            s.spawn(move || {
                for (j, slot) in chunk.iter_mut().enumerate() {
                    *slot = Some(tensor_item(src, file, &tensors[ci * per + j], imatrix));
                }
            });
        }
    });
    let items: Vec<Item> = items.into_iter().flatten().collect();
    if std::env::var_os("EDGE_FIT_DEBUG").is_some() {
        for it in &items {
            let c: Vec<String> = it
                .candidates
                .iter()
                .map(|c| {
                    let n = ggml_type(c.type_id).map_or("?", |g| g.name);
                    format!("{n}:{}:{:.3e}", c.bytes, c.loss)
                })
                .collect();
            // Loss = sensitivity x NMSE: the weight lets a reader recover the NMSE.
            eprintln!(
                "{} weight={} {}",
                it.name,
                class_weight(src, it.class),
                c.join(" ")
            );
        }
    }
    Ok(items)
}

/// Fits `items` to `budget` bytes of file (the header included).
pub fn solve(src: &Source, items: &[Item], budget: u64) -> Result<Vec<Choice>> {
    let header = src.layout.quantized_header_bytes();
    let min_total = header + edge_quant::fit::min_bytes(items);
    let tensor_budget = budget.checked_sub(header).ok_or(FitError::TooSmall {
        budget,
        min: min_total,
    });
    let sol = tensor_budget
        .and_then(|b| fit(items, b))
        .map_err(|e| match e {
            FitError::TooSmall { .. } => anyhow!(
                "the budget of {budget} bytes is smaller than the smallest possible mix for {} ({min_total} bytes)",
                src.path.display()
            ),
            other => anyhow!("{other}"),
        })?;
    Ok(items
        .iter()
        .zip(&sol.choice)
        .map(|(it, &c)| Choice {
            name: it.name.clone(),
            class: it.class,
            type_id: it.candidates[c].type_id,
            bytes: it.candidates[c].bytes,
        })
        .collect())
}

/// Regex overrides (first match wins in llama.cpp) that give every tensor its chosen
/// type: one pattern per (tensor kind, type), listing the layers.
pub fn overrides(choices: &[Choice], src: &Source) -> Vec<(String, u32)> {
    let mut groups: BTreeMap<(String, u32), Vec<u32>> = BTreeMap::new();
    let mut singles: Vec<(String, u32)> = Vec::new();
    for c in choices {
        let dims = src
            .gguf
            .tensors
            .iter()
            .find(|t| t.name == c.name)
            .map_or(0, |t| t.dims.len());
        if !llama_quantizes(&c.name, dims) {
            continue;
        }
        match (layer_of(&c.name), c.name.splitn(3, '.').nth(2)) {
            (Some(l), Some(suffix)) => groups
                .entry((suffix.to_string(), c.type_id))
                .or_default()
                .push(l),
            _ => singles.push((format!("^{}$", escape(&c.name)), c.type_id)),
        }
    }
    let mut out = singles;
    for ((suffix, ty), layers) in groups {
        let alt: Vec<String> = layers.iter().map(u32::to_string).collect();
        out.push((
            format!("^blk\\.({})\\.{}$", alt.join("|"), escape(&suffix)),
            ty,
        ));
    }
    out
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        if "\\.^$|?*+()[]{}".contains(ch) {
            o.push('\\');
        }
        o.push(ch);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmse_weights_columns() {
        let o = [1.0, 1.0];
        let q = [1.0, 0.0];
        assert_eq!(weighted_nmse(&o, &q, None), 0.5);
        assert!((weighted_nmse(&o, &q, Some(&[3.0, 1.0])) - 0.25).abs() < 1e-12);
        assert!(nominal_nmse(8) < nominal_nmse(12));
        assert!(nominal_nmse(12) < nominal_nmse(10));
        assert_eq!(escape("blk.0.a_b.weight"), "blk\\.0\\.a_b\\.weight");
    }
}
