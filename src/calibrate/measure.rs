//! The measurements of `edge profile calibrate`: memory read bandwidth, SSD sequential and
//! random read, and the fit of the CPU decode cost model to timed decodes
//! (`T_tok = token_overhead_ms + n_nodes * node_overhead_ms + read / (cpu_bandwidth * BW)`, with
//! `n_nodes` the nodes of llama.cpp's decode graph).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::gguf_info::GgufFile;
use crate::planner::classify::{decode_density, expert_counts, role_of, TensorRole};
use crate::planner::memory::{kv_cells, kv_layer_bytes};
use crate::planner::{KvType, ModelShape};
use crate::profile::{OverheadCounts, ReadGroup, MAX_CPU_READ_EFFICIENCY};
use crate::term::human_bytes;

/// Size of one random read.
pub const RAND_READ: usize = 2 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct SsdResult {
    pub dir: PathBuf,
    pub file_bytes: u64,
    pub seq_read_gbs: f64,
    pub rand_read_gbs: f64,
    pub rand_reads: usize,
    /// The page cache was dropped before each read pass (else the figures may be RAM speed).
    pub cache_dropped: bool,
}

/// Bytes one decoded token reads, per ggml type (upper case): every tensor at its decode
/// density ([`crate::planner::classify::decode_density`], as `decode_read_bytes`), plus the
/// output head when it is tied to the token embedding: llama.cpp then multiplies by all
/// of `token_embd` for the logits, although the embedding itself is only gathered.
pub fn decode_reads_by_type(gguf: &GgufFile) -> BTreeMap<String, f64> {
    reads_by_type(gguf, |_| true)
}

/// The part of [`decode_reads_by_type`] that is routed-expert weights.
pub fn decode_expert_reads_by_type(gguf: &GgufFile) -> BTreeMap<String, f64> {
    reads_by_type(gguf, |role| role == TensorRole::RoutedExpert)
}

fn reads_by_type(gguf: &GgufFile, keep: impl Fn(TensorRole) -> bool) -> BTreeMap<String, f64> {
    let experts = expert_counts(gguf);
    let tied = !gguf.tensors.iter().any(|t| t.name == "output.weight");
    let mut out = BTreeMap::new();
    for t in &gguf.tensors {
        let role = role_of(&t.name);
        if !keep(role) {
            continue;
        }
        let mut density = decode_density(t, role, experts);
        if tied && role == TensorRole::TokenEmbd {
            density += 1.0;
        }
        *out.entry(t.ggml_type.name().to_ascii_uppercase())
            .or_insert(0.0) += density * t.bytes as f64;
    }
    out
}

/// KV-cache bytes one token reads at context depth `depth` (F16 cache), as the planner
/// counts them.
pub fn kv_read_bytes(shape: &ModelShape, depth: u64) -> f64 {
    (0..shape.n_layer as usize)
        .map(|il| {
            let per_cell = kv_layer_bytes(shape, il, 1, 1, KvType::F16) as f64
                / kv_cells(shape, il, 1, 1).max(1) as f64;
            per_cell * depth as f64
        })
        .sum()
}

/// One timed decode, as the fit sees it: the reads split by [`ReadGroup`] (the F16 KV
/// cache counts as float data), each in ms at the measured memory bandwidth and
/// efficiency 1.
#[derive(Debug, Clone, Copy)]
pub struct DecodeSample {
    /// Graph nodes, rebuilt nodes and expert matrices the overheads are fitted on
    /// (`layers` is not used: the per-node term replaces it).
    pub counts: OverheadCounts,
    /// Indexed by `ReadGroup as usize`.
    pub read_ms: [f64; 4],
    /// Measured time per token, ms.
    pub measured_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub token_overhead_ms: f64,
    pub node_overhead_ms: f64,
    pub graph_build_node_ms: f64,
    pub expert_slice_ms: f64,
    /// Bandwidth efficiency per [`ReadGroup`] (indexed by `ReadGroup as usize`).
    pub efficiency: [f64; 4],
    /// Which were fitted (else kept at the value given).
    pub fitted: [bool; 4],
    /// Mean absolute relative error of the fit over the models, %.
    pub mean_abs_error_pct: f64,
    pub notes: Vec<String>,
}

/// Read bandwidth of `threads` threads summing their share of a `bytes` buffer, GB/s, best
/// of `reps`. The buffer is written first (untouched pages would all map the zero page).
pub fn measure_mem_bandwidth(threads: usize, bytes: usize, reps: usize) -> f64 {
    let n = bytes / 8;
    let mut buf: Vec<u64> = Vec::with_capacity(n);
    buf.extend((0..n as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let buf = std::hint::black_box(buf);
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let started = Instant::now();
        let total = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|c| s.spawn(move || sum_words(c)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box(total);
        best = best.max((n * 8) as f64 / secs / 1e9);
    }
    best
}

/// Sums with eight independent lanes, so the loop vectorises and is bound by memory.
fn sum_words(c: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut blocks = c.chunks_exact(8);
    for b in &mut blocks {
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(b[i]);
        }
    }
    let rest = blocks
        .remainder()
        .iter()
        .fold(0u64, |a, &x| a.wrapping_add(x));
    std::hint::black_box(acc.iter().fold(rest, |a, &x| a.wrapping_add(x)))
}

/// Free bytes for an unprivileged user on `dir`'s filesystem.
#[cfg(unix)]
fn free_space(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

#[cfg(not(unix))]
fn free_space(_dir: &Path) -> Option<u64> {
    None
}

/// Drops `file`'s pages from the page cache; false where the OS offers no way.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn drop_cache(file: &File) -> bool {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    posix_fadvise(file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).is_ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn drop_cache(_file: &File) -> bool {
    false
}

/// Sequential and random (2 MiB) read bandwidth of a fresh `bytes` file in `dir`. The file
/// is a `NamedTempFile`, deleted when it drops, also on errors and when `stop` is set
/// (Ctrl-C), which is checked between blocks. `Ok(Err(reason))`: skipped.
pub fn measure_ssd(
    dir: &Path,
    bytes: u64,
    random_reads: usize,
    stop: &AtomicBool,
) -> Result<Result<SsdResult, String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let margin = 1u64 << 30;
    if let Some(free) = free_space(dir) {
        if free < bytes + margin {
            return Ok(Err(format!(
                "only {} free in {} (needs {} plus 1 GiB to spare)",
                human_bytes(free),
                dir.display(),
                human_bytes(bytes)
            )));
        }
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".edge-calibrate-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a test file in {}", dir.display()))?;
    // Pseudo-random content, different in every block (no compression or dedup shortcut).
    let block = 8usize << 20;
    let mut data = vec![0u8; block];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut written = 0u64;
    while written < bytes {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        for w in data.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.copy_from_slice(&state.to_le_bytes());
        }
        let n = block.min((bytes - written) as usize);
        tmp.write_all(&data[..n]).context("writing the test file")?;
        written += n as u64;
    }
    tmp.as_file().sync_all().context("syncing the test file")?;
    let mut dropped = drop_cache(tmp.as_file());

    // Sequential: one pass in 8 MiB reads through a fresh handle.
    let mut f = tmp.reopen().context("reopening the test file")?;
    let started = Instant::now();
    let mut total = 0u64;
    let mut check = 0u8;
    loop {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let n = f.read(&mut data).context("reading the test file")?;
        if n == 0 {
            break;
        }
        check ^= data[n - 1];
        total += n as u64;
    }
    let seq = total as f64 / started.elapsed().as_secs_f64() / 1e9;
    std::hint::black_box(check);

    // Random: 2 MiB reads at 4 KiB-aligned offsets, queue depth 1, like page-faulting an
    // expert slice out of an mmap'd model.
    dropped &= drop_cache(tmp.as_file());
    let span = bytes.saturating_sub(RAND_READ as u64) / 4096;
    let reads = random_reads.min((bytes / RAND_READ as u64).max(1) as usize);
    let mut rng = state | 1;
    let mut buf = vec![0u8; RAND_READ];
    let started = Instant::now();
    for _ in 0..reads {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let offset = if span == 0 {
            0
        } else {
            (rng >> 20) % span * 4096
        };
        read_at(&f, &mut buf, offset)?;
        check ^= buf[RAND_READ - 1];
    }
    let rand = (reads * RAND_READ) as f64 / started.elapsed().as_secs_f64() / 1e9;
    std::hint::black_box(check);
    drop(f);
    tmp.close().context("removing the test file")?;
    Ok(Ok(SsdResult {
        dir: dir.to_path_buf(),
        file_bytes: bytes,
        seq_read_gbs: seq,
        rand_read_gbs: rand,
        rand_reads: reads,
        cache_dropped: dropped,
    }))
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    f.read_exact_at(buf, offset)
        .context("reading the test file")
}

#[cfg(not(unix))]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = f;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf).context("reading the test file")
}

/// Fits `T = token + n_nodes * node + rebuilt_nodes * build + expert_slices * slice +
/// sum_g read_ms[g] / e_g` by
/// non-negative least squares on relative errors, with each `e_g` in
/// (0, [`MAX_CPU_READ_EFFICIENCY`]] (`1 / e` is `1 / MAX + x`, `x >= 0`). A group is fitted only when some model spends at least a tenth of
/// its time on it and it is most of that model's reads; otherwise its efficiency stays at
/// the value given (`defaults`, indexed by `ReadGroup as usize`).
pub fn fit_decode(samples: &[DecodeSample], defaults: [f64; 4]) -> Fit {
    let free: Vec<bool> = ReadGroup::ALL
        .iter()
        .map(|&g| {
            samples.iter().any(|s| {
                let r = s.read_ms[g as usize];
                let all: f64 = s.read_ms.iter().sum();
                r >= 0.1 * s.measured_ms && r >= 0.5 * all
            })
        })
        .collect();
    let mut notes = Vec::new();
    for (g, &f) in ReadGroup::ALL.iter().zip(&free) {
        if !f {
            notes.push(format!(
                "no timed model is bound by {} reads: their efficiency stays {:.3}",
                g.label(),
                defaults[*g as usize]
            ));
        }
    }
    // Unknowns: token, node, graph build, expert slice, then x_g for each free group. A
    // column no model exercises (no rebuilt graph, no MoE) is zero and stays 0.
    let rows: Vec<(Vec<f64>, f64, f64)> = samples
        .iter()
        .map(|s| {
            let mut features = vec![
                1.0,
                s.counts.nodes as f64,
                s.counts.rebuilt_nodes as f64,
                s.counts.expert_slices as f64,
            ];
            let mut target = s.measured_ms;
            for (g, &f) in free.iter().enumerate() {
                let read = s.read_ms[g];
                if f {
                    features.push(read);
                    target -= read / MAX_CPU_READ_EFFICIENCY;
                } else {
                    target -= read / defaults[g];
                }
            }
            (features, target, s.measured_ms)
        })
        .collect();
    let k = 4 + free.iter().filter(|&&f| f).count();
    let x = if samples.is_empty() {
        vec![0.0; k]
    } else {
        nnls(&rows, k)
    };
    let mut effs = defaults;
    let mut next = 4;
    for (g, &f) in free.iter().enumerate() {
        if f {
            effs[g] = (1.0 / (1.0 / MAX_CPU_READ_EFFICIENCY + x[next]))
                .clamp(1e-3, MAX_CPU_READ_EFFICIENCY);
            next += 1;
        }
    }
    let (a, b, c, d) = (x[0], x[1], x[2], x[3]);
    let predict = |s: &DecodeSample| {
        a + b * s.counts.nodes as f64
            + c * s.counts.rebuilt_nodes as f64
            + d * s.counts.expert_slices as f64
            + s.read_ms.iter().zip(&effs).map(|(r, e)| r / e).sum::<f64>()
    };
    let mean_abs_error_pct = if samples.is_empty() {
        0.0
    } else {
        samples
            .iter()
            .map(|s| ((predict(s) - s.measured_ms) / s.measured_ms).abs() * 100.0)
            .sum::<f64>()
            / samples.len() as f64
    };
    Fit {
        token_overhead_ms: a,
        node_overhead_ms: b,
        graph_build_node_ms: c,
        expert_slice_ms: d,
        efficiency: effs,
        fitted: [free[0], free[1], free[2], free[3]],
        mean_abs_error_pct,
        notes,
    }
}

/// Non-negative least squares for a handful of unknowns: every subset of free variables
/// solved by weighted normal equations, the best feasible one kept. Rows are
/// `(features, target, scale)`; each residual is divided by its `scale`.
fn nnls(rows: &[(Vec<f64>, f64, f64)], k: usize) -> Vec<f64> {
    let mut best = (f64::INFINITY, vec![0.0; k]);
    for mask in 0u32..(1 << k) {
        let free: Vec<usize> = (0..k).filter(|i| mask & (1 << i) != 0).collect();
        let x = match solve_subset(rows, k, &free) {
            Some(x) => x,
            None => continue,
        };
        if x.iter().any(|&v| v < 0.0) {
            continue;
        }
        let sse: f64 = rows
            .iter()
            .map(|(f, y, s)| {
                let pred: f64 = f.iter().zip(&x).map(|(a, b)| a * b).sum();
                ((pred - y) / s).powi(2)
            })
            .sum();
        if sse < best.0 {
            best = (sse, x);
        }
    }
    best.1
}

fn solve_subset(rows: &[(Vec<f64>, f64, f64)], k: usize, free: &[usize]) -> Option<Vec<f64>> {
    let m = free.len();
    let mut x = vec![0.0; k];
    if m == 0 {
        return Some(x);
    }
    // Normal equations A^T A z = A^T y on the scaled rows, as an augmented matrix.
    let mut a = vec![vec![0.0f64; m + 1]; m];
    for (f, y, s) in rows {
        for (i, &vi) in free.iter().enumerate() {
            let fi = f[vi] / s;
            for (j, &vj) in free.iter().enumerate() {
                a[i][j] += fi * f[vj] / s;
            }
            a[i][m] += fi * y / s;
        }
    }
    for col in 0..m {
        let pivot = (col..m).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let p = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let factor = row[col] / p[col];
                for (v, pv) in row.iter_mut().zip(&p).skip(col) {
                    *v -= factor * pv;
                }
            }
        }
    }
    for (i, &var) in free.iter().enumerate() {
        x[var] = a[i][m] / a[i][i];
    }
    Some(x)
}

/// The median of timings in ns (the mean of the middle two for an even count; NaN for
/// none).
pub fn median_ns(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    match v.len() {
        0 => f64::NAN,
        n if !n.is_multiple_of(2) => v[n / 2] as f64,
        n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads in MB at 10 GB/s (0.1 ms per MB): K-quant, legacy-quant, float.
    fn sample(n_nodes: u64, k_mb: f64, legacy_mb: f64, float_mb: f64, ms: f64) -> DecodeSample {
        DecodeSample {
            counts: OverheadCounts {
                nodes: n_nodes,
                ..Default::default()
            },
            read_ms: [k_mb * 0.1, legacy_mb * 0.1, float_mb * 0.1, 0.0],
            measured_ms: ms,
        }
    }

    #[test]
    fn read_groups_split_k_quants_legacy_quants_and_floats() {
        assert_eq!(ReadGroup::of("Q4_K"), ReadGroup::KQuant);
        assert_eq!(ReadGroup::of("iq4_xs"), ReadGroup::KQuant);
        assert_eq!(ReadGroup::of("Q4_1"), ReadGroup::Legacy);
        assert_eq!(ReadGroup::of("q8_0"), ReadGroup::Legacy);
        assert_eq!(ReadGroup::of("BF16"), ReadGroup::Float);
    }

    #[test]
    fn the_fit_recovers_known_coefficients() {
        // 0.2 ms + 0.03 ms/node (+0.01 per rebuilt node); K-quants at efficiency 0.5,
        // legacy quants at 0.25, floats at 0.8.
        let t = |n: u64, rb: u64, k: f64, l: f64, f: f64| {
            0.2 + 0.03 * n as f64
                + 0.01 * rb as f64
                + k * 0.1 / 0.5
                + l * 0.1 / 0.25
                + f * 0.1 / 0.8
        };
        let mut rebuilt = sample(40, 0.0, 0.0, 4.0, t(40, 40, 0.0, 0.0, 4.0));
        rebuilt.counts.rebuilt_nodes = 40;
        // An MoE model: 24 expert matrices at 0.02 ms each, and 30 MB of K-quant experts
        // at efficiency 0.4.
        let mut moe = sample(
            50,
            20.0,
            0.0,
            1.0,
            t(50, 0, 20.0, 0.0, 1.0) + 24.0 * 0.02 + 30.0 * 0.1 / 0.4,
        );
        moe.counts.expert_slices = 24;
        moe.read_ms[ReadGroup::ExpertKQuant as usize] = 3.0;
        // Another, fewer slices, so slices and expert reads are told apart.
        let mut moe2 = sample(
            60,
            5.0,
            0.0,
            1.0,
            t(60, 0, 5.0, 0.0, 1.0) + 8.0 * 0.02 + 40.0 * 0.1 / 0.4,
        );
        moe2.counts.expert_slices = 8;
        moe2.read_ms[ReadGroup::ExpertKQuant as usize] = 4.0;
        let samples = vec![
            sample(2, 0.0, 0.0, 1.5, t(2, 0, 0.0, 0.0, 1.5)),
            sample(12, 0.0, 0.0, 9.0, t(12, 0, 0.0, 0.0, 9.0)),
            sample(8, 0.0, 0.0, 240.0, t(8, 0, 0.0, 0.0, 240.0)),
            sample(30, 0.0, 66.0, 1.0, t(30, 0, 0.0, 66.0, 1.0)),
            sample(24, 0.0, 30.0, 2.0, t(24, 0, 0.0, 30.0, 2.0)),
            sample(20, 50.0, 0.0, 2.0, t(20, 0, 50.0, 0.0, 2.0)),
            rebuilt,
            moe,
            moe2,
        ];
        let f = fit_decode(&samples, [0.55; 4]);
        assert_eq!(f.fitted, [true; 4], "{f:?}");
        assert!((f.token_overhead_ms - 0.2).abs() < 1e-6, "{f:?}");
        assert!((f.node_overhead_ms - 0.03).abs() < 1e-6, "{f:?}");
        assert!((f.graph_build_node_ms - 0.01).abs() < 1e-6, "{f:?}");
        assert!((f.expert_slice_ms - 0.02).abs() < 1e-6, "{f:?}");
        for (got, want) in f.efficiency.iter().zip([0.5, 0.25, 0.8, 0.4]) {
            assert!((got - want).abs() < 1e-6, "{f:?}");
        }
        assert!(f.mean_abs_error_pct < 1e-6);
    }

    #[test]
    fn the_fit_keeps_coefficients_non_negative_and_efficiency_capped() {
        // Far faster than the memory bandwidth allows (cache-resident): efficiency capped.
        let samples = vec![
            sample(2, 0.0, 0.0, 100.0, 5.0),
            sample(4, 0.0, 0.0, 200.0, 10.0),
        ];
        let f = fit_decode(&samples, [0.55; 4]);
        assert!(f.efficiency[ReadGroup::Float as usize] <= MAX_CPU_READ_EFFICIENCY);
        assert!(f.token_overhead_ms >= 0.0 && f.node_overhead_ms >= 0.0);
        assert_eq!(f.graph_build_node_ms, 0.0);
        // No quantized model: those efficiencies stay as given, with a note.
        assert_eq!(f.fitted, [false, false, true, false]);
        assert_eq!(f.efficiency[ReadGroup::KQuant as usize], 0.55);
        assert!(f.notes.iter().any(|n| n.contains("K/IQ")), "{f:?}");
        // Only overhead-bound models: all stay; the overheads are fitted.
        let samples = vec![
            sample(2, 0.0, 0.0, 0.001, 0.3),
            sample(12, 0.0, 0.0, 0.001, 0.8),
        ];
        let f = fit_decode(&samples, [0.5, 0.4, 0.6, 0.3]);
        assert_eq!(f.efficiency, [0.5, 0.4, 0.6, 0.3]);
        assert!((f.node_overhead_ms - 0.05).abs() < 1e-3, "{f:?}");
    }

    #[test]
    fn a_tied_output_head_is_read_whole() {
        use crate::synth::{write_gguf, SynthArch, SynthSpec};
        let dir = tempfile::tempdir().unwrap();
        for (arch, tied) in [(SynthArch::Qwen3, true), (SynthArch::Qwen3Moe, false)] {
            let path = dir.path().join(format!("{arch}.gguf"));
            write_gguf(&SynthSpec::new(arch), &path).unwrap();
            let gguf = GgufFile::open(&path).unwrap();
            let reads = decode_reads_by_type(&gguf);
            let total: f64 = reads.values().sum();
            let planner = crate::planner::decode_read_bytes(&gguf) as f64;
            let embd = gguf
                .tensors
                .iter()
                .find(|t| t.name == "token_embd.weight")
                .unwrap()
                .bytes as f64;
            // Both count a tied output head as token_embd read whole.
            assert!((total - planner).abs() < 2.0, "{arch}: {reads:?}");
            assert!(!tied || total > embd, "{arch}: {reads:?}");
            assert!(
                reads.contains_key("F16") && reads.contains_key("F32"),
                "{reads:?}"
            );
        }
    }

    #[test]
    fn memory_bandwidth_is_positive() {
        assert!(measure_mem_bandwidth(2, 8 << 20, 2) > 0.0);
    }

    #[test]
    fn ssd_measurement_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        match measure_ssd(dir.path(), 4 << 20, 2, &AtomicBool::new(false)).unwrap() {
            Ok(r) => assert!(r.seq_read_gbs > 0.0 && r.rand_read_gbs > 0.0),
            Err(skip) => assert!(skip.contains("free"), "{skip}"),
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
