//! Fitting the cost model's efficiency factors to measured speeds: to published
//! llama-bench results (`crate::published`) and to this machine's GPU
//! (`edge profile calibrate`). Least squares on log(predicted / measured) over decode and
//! prefill, by Nelder-Mead in log space, with a pull towards prior values so a factor
//! few observations see stays near its prior. Pure logic: the predictions are the
//! planner's own.

use serde::Serialize;

use super::model::ModelShape;
use super::place::plan;
use super::plan::PlanRequest;
use crate::profile::{DeviceProfile, Efficiency, ReadGroup, FLOAT_TYPES, LEGACY_QUANT_TYPES};

/// The efficiency factors a backend shares across its devices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Factor {
    GpuBandwidth,
    GpuLegacyBandwidth,
    GpuFloatBandwidth,
    GpuNodeOverheadMs,
    TokenOverheadMs,
    GpuCompute,
    GpuFloatCompute,
    GpuExpertCompute,
    CpuBandwidth,
    CpuLegacyBandwidth,
    CpuFloatBandwidth,
    CpuCompute,
}

/// Every factor, in fit order.
pub const ALL_FACTORS: [Factor; 12] = [
    Factor::GpuBandwidth,
    Factor::GpuLegacyBandwidth,
    Factor::GpuFloatBandwidth,
    Factor::GpuNodeOverheadMs,
    Factor::TokenOverheadMs,
    Factor::GpuCompute,
    Factor::GpuFloatCompute,
    Factor::GpuExpertCompute,
    Factor::CpuBandwidth,
    Factor::CpuLegacyBandwidth,
    Factor::CpuFloatBandwidth,
    Factor::CpuCompute,
];

impl Factor {
    pub fn key(self) -> &'static str {
        match self {
            Factor::GpuBandwidth => "gpu_bandwidth",
            Factor::GpuLegacyBandwidth => "gpu_legacy_bandwidth",
            Factor::GpuFloatBandwidth => "gpu_float_bandwidth",
            Factor::GpuNodeOverheadMs => "gpu_node_overhead_ms",
            Factor::TokenOverheadMs => "token_overhead_ms",
            Factor::GpuCompute => "gpu_compute",
            Factor::GpuFloatCompute => "gpu_float_compute",
            Factor::GpuExpertCompute => "gpu_expert_compute",
            Factor::CpuBandwidth => "cpu_bandwidth",
            Factor::CpuLegacyBandwidth => "cpu_type_bandwidth (legacy quants)",
            Factor::CpuFloatBandwidth => "cpu_type_bandwidth (floats)",
            Factor::CpuCompute => "cpu_compute",
        }
    }

    /// Efficiencies are shares of a peak; overheads are milliseconds.
    fn upper_bound(self) -> f64 {
        match self {
            Factor::GpuNodeOverheadMs => 0.05,
            Factor::TokenOverheadMs => 20.0,
            Factor::CpuBandwidth | Factor::CpuLegacyBandwidth | Factor::CpuFloatBandwidth => {
                crate::profile::MAX_CPU_READ_EFFICIENCY
            }
            _ => 1.0,
        }
    }

    /// Weight of the pull towards the prior value, per squared log unit: efficiencies
    /// have physical priors (a share of a peak), overheads hardly any (they span 0.1 to
    /// 10 ms between backends and llama.cpp versions).
    fn prior_weight(self) -> f64 {
        match self {
            Factor::GpuNodeOverheadMs | Factor::TokenOverheadMs => 0.002,
            _ => 0.05,
        }
    }

    pub fn get(self, e: &Efficiency) -> f64 {
        match self {
            Factor::GpuBandwidth => e.gpu_bandwidth,
            Factor::GpuLegacyBandwidth => e.gpu_bandwidth_for("Q4_0"),
            Factor::GpuFloatBandwidth => e.gpu_bandwidth_for("F16"),
            Factor::GpuNodeOverheadMs => e.gpu_node_overhead_ms,
            Factor::TokenOverheadMs => e.token_overhead_ms,
            Factor::GpuCompute => e.gpu_compute,
            Factor::GpuFloatCompute => e.gpu_compute_for("F16", false),
            Factor::GpuExpertCompute => e.gpu_compute_for("Q4_K", true),
            Factor::CpuBandwidth => e.cpu_bandwidth,
            Factor::CpuLegacyBandwidth => e.cpu_bandwidth_for("Q4_0"),
            Factor::CpuFloatBandwidth => e.cpu_bandwidth_for("F16"),
            Factor::CpuCompute => e.cpu_compute,
        }
    }

    pub fn set(self, e: &mut Efficiency, v: f64) {
        match self {
            Factor::GpuBandwidth => e.gpu_bandwidth = v,
            Factor::GpuLegacyBandwidth => e.gpu_legacy_bandwidth = Some(v),
            Factor::GpuFloatBandwidth => e.gpu_float_bandwidth = Some(v),
            Factor::GpuNodeOverheadMs => e.gpu_node_overhead_ms = v,
            Factor::TokenOverheadMs => e.token_overhead_ms = v,
            Factor::GpuCompute => e.gpu_compute = v,
            Factor::GpuFloatCompute => e.gpu_float_compute = Some(v),
            Factor::GpuExpertCompute => e.gpu_expert_compute = Some(v),
            Factor::CpuBandwidth => e.cpu_bandwidth = v,
            Factor::CpuLegacyBandwidth => {
                for t in LEGACY_QUANT_TYPES {
                    e.cpu_type_bandwidth.insert(t.to_string(), v);
                }
            }
            Factor::CpuFloatBandwidth => {
                for t in FLOAT_TYPES {
                    e.cpu_type_bandwidth.insert(t.to_string(), v);
                }
            }
            Factor::CpuCompute => e.cpu_compute = v,
        }
    }
}

/// Share of a model's bytes a weight group must have for a run of it to fit that group's
/// factor: a group that is only the output head does not pin its factor down.
pub const MIN_GROUP_SHARE: f64 = 0.25;

/// The weight groups that make up at least [`MIN_GROUP_SHARE`] of `shape`'s bytes.
pub fn weight_groups(shape: &ModelShape) -> Vec<ReadGroup> {
    let total = shape.weight_bytes().max(1) as f64;
    let mut share = [0f64; 4];
    for t in &shape.tensors {
        share[ReadGroup::of(&t.ggml_type) as usize] += t.bytes as f64 / total;
    }
    ReadGroup::ALL
        .into_iter()
        .filter(|g| share[*g as usize] >= MIN_GROUP_SHARE)
        .collect()
}

/// The factors a run of `shape` depends on, (decode, prefill), sorted: those of its
/// weight groups on the GPU (`on_gpu`) or the CPU, the per-token overhead, and on the GPU
/// the per-node cost and, for an MoE model, the routed-expert compute.
pub fn factors_for(shape: &ModelShape, on_gpu: bool) -> (Vec<Factor>, Vec<Factor>) {
    let mut decode = vec![Factor::TokenOverheadMs];
    let mut prefill = Vec::new();
    for g in weight_groups(shape) {
        if on_gpu {
            decode.push(match g {
                ReadGroup::Float => Factor::GpuFloatBandwidth,
                ReadGroup::Legacy => Factor::GpuLegacyBandwidth,
                _ => Factor::GpuBandwidth,
            });
            prefill.push(match g {
                ReadGroup::Float => Factor::GpuFloatCompute,
                _ => Factor::GpuCompute,
            });
        } else {
            decode.push(match g {
                ReadGroup::Float => Factor::CpuFloatBandwidth,
                ReadGroup::Legacy => Factor::CpuLegacyBandwidth,
                _ => Factor::CpuBandwidth,
            });
            prefill.push(Factor::CpuCompute);
        }
    }
    if on_gpu {
        decode.push(Factor::GpuNodeOverheadMs);
        if shape.is_moe() {
            prefill.push(Factor::GpuExpertCompute);
        }
    }
    for list in [&mut decode, &mut prefill] {
        list.sort_by_key(|f| *f as usize);
        list.dedup();
    }
    (decode, prefill)
}

/// One measured run: the model, the device it ran on, the request that mirrors the run,
/// and what was measured (tok/s).
pub struct Observation<'a> {
    pub profile: DeviceProfile,
    pub shape: &'a ModelShape,
    pub request: PlanRequest,
    pub decode_tok_s: Option<f64>,
    pub prefill_tok_s: Option<f64>,
}

/// Fits `factors` to `observations`, starting from and pulled towards their values in
/// `prior`; returns the fitted values, in the order of `factors`, within their bounds.
/// An observation whose model does not fit its profile under some factors counts as a
/// large error there.
pub fn fit_factors(
    observations: &[Observation],
    factors: &[Factor],
    prior: &Efficiency,
) -> Vec<f64> {
    let start: Vec<f64> = factors
        .iter()
        .map(|f| f.get(prior).max(1e-4).ln())
        .collect();
    let values = |x: &[f64]| -> Vec<f64> {
        factors
            .iter()
            .zip(x)
            .map(|(f, v)| v.exp().min(f.upper_bound()))
            .collect()
    };
    let loss = |x: &[f64]| -> f64 {
        let vals = values(x);
        let mut sum = 0.0;
        for o in observations {
            let mut profile = o.profile.clone();
            for (f, v) in factors.iter().zip(&vals) {
                f.set(&mut profile.efficiency, *v);
            }
            let p = plan(o.shape, &profile, &o.request);
            if !p.fits {
                sum += 10.0;
                continue;
            }
            for (pred, meas) in [
                (p.predicted.decode_tok_s, o.decode_tok_s),
                (p.predicted.prefill_tok_s, o.prefill_tok_s),
            ] {
                if let Some(m) = meas.filter(|&m| m > 0.0) {
                    sum += (pred.max(1e-9) / m).ln().powi(2);
                }
            }
        }
        let pull: f64 = factors
            .iter()
            .zip(x.iter().zip(&start))
            .map(|(f, (a, b))| f.prior_weight() * (a - b).powi(2))
            .sum();
        sum + pull
    };
    let best = nelder_mead(&loss, &start, 1.0, 600);
    values(&best)
}

/// Minimises `f` from `x0` (simplex steps of `step`), `iters` iterations.
pub fn nelder_mead(f: &dyn Fn(&[f64]) -> f64, x0: &[f64], step: f64, iters: usize) -> Vec<f64> {
    let n = x0.len();
    if n == 0 {
        return Vec::new();
    }
    let mut simplex: Vec<(Vec<f64>, f64)> = (0..=n)
        .map(|i| {
            let mut x = x0.to_vec();
            if i > 0 {
                x[i - 1] += step;
            }
            let v = f(&x);
            (x, v)
        })
        .collect();
    for _ in 0..iters {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let centroid: Vec<f64> = (0..n)
            .map(|j| simplex[..n].iter().map(|(x, _)| x[j]).sum::<f64>() / n as f64)
            .collect();
        let worst = simplex[n].clone();
        let towards = |t: f64| -> Vec<f64> {
            centroid
                .iter()
                .zip(&worst.0)
                .map(|(c, w)| c + t * (w - c))
                .collect()
        };
        let reflected = towards(-1.0);
        let fr = f(&reflected);
        if fr < simplex[0].1 {
            let expanded = towards(-2.0);
            let fe = f(&expanded);
            simplex[n] = if fe < fr {
                (expanded, fe)
            } else {
                (reflected, fr)
            };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (reflected, fr);
        } else {
            let contracted = towards(0.5);
            let fc = f(&contracted);
            if fc < worst.1 {
                simplex[n] = (contracted, fc);
            } else {
                let best = simplex[0].0.clone();
                for s in simplex.iter_mut().skip(1) {
                    let x: Vec<f64> =
                        s.0.iter()
                            .zip(&best)
                            .map(|(a, b)| b + 0.5 * (a - b))
                            .collect();
                    let v = f(&x);
                    *s = (x, v);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nelder_mead_finds_a_quadratic_minimum() {
        let f = |x: &[f64]| (x[0] - 1.5).powi(2) + 3.0 * (x[1] + 0.5).powi(2);
        let x = nelder_mead(&f, &[0.0, 0.0], 1.0, 300);
        assert!(
            (x[0] - 1.5).abs() < 1e-4 && (x[1] + 0.5).abs() < 1e-4,
            "{x:?}"
        );
    }
}
