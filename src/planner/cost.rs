//! Cost model (research §4.2): decode is memory-bound, so a token costs the bytes each
//! tier reads over that tier's effective bandwidth, plus one GPU<->CPU round trip per
//! layer with CPU-resident weights, fixed per-token and per-layer overheads, and the
//! page-cache misses of SSD-resident experts. Prefill is compute-bound, except that
//! CPU-resident weights are copied to the GPU once per ubatch (only the experts used).

use super::classify::TensorRole;
use super::memory::kv_layer_bytes;
use super::model::ModelShape;
use super::plan::{CostTerm, Plan, Prediction, Tier};
use crate::profile::{DeviceProfile, OverheadCounts, ReadGroup};

/// Passes over the F32 KQ matrix without flash attention: written by the KQ product,
/// read and written by the masked softmax, read by the V product.
const KQ_PASSES: f64 = 4.0;

/// Bytes read per token in each [`ReadGroup`], for the report.
#[derive(Default)]
struct GroupReads([f64; 4]);

impl GroupReads {
    fn add(&mut self, group: ReadGroup, bytes: f64) {
        self.0[group as usize] += bytes;
    }

    /// "0.62 for K/IQ-quant (410 MB), 0.80 for F32/F16/BF16 (12 MB)": the efficiency
    /// actually applied to each group that is read.
    fn describe(&self, eff: impl Fn(ReadGroup) -> f64) -> String {
        let parts: Vec<String> = ReadGroup::ALL
            .into_iter()
            .filter(|&g| self.0[g as usize] > 0.0)
            .map(|g| {
                format!(
                    "{:.2} for {} ({:.0} MB)",
                    eff(g),
                    g.label(),
                    self.0[g as usize] / 1e6
                )
            })
            .collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Context depth at which decode is predicted: the middle of a 128-token reply to a
/// fresh prompt, as `edge bench -n 128` measures it.
pub const DECODE_DEPTH: u64 = 64;
/// llama.cpp offloads an op on CPU-resident weights to the GPU from this batch size on
/// (`GGML_OP_OFFLOAD_MIN_BATCH`).
pub const OP_OFFLOAD_MIN_BATCH: u64 = 32;

/// Bytes per millisecond for a bandwidth in GB/s.
fn per_ms(gbs: f64) -> f64 {
    gbs * 1e6
}

fn term(name: &str, ms: f64, detail: String) -> CostTerm {
    CostTerm {
        name: name.to_string(),
        ms,
        detail,
    }
}

pub fn predict(shape: &ModelShape, profile: &DeviceProfile, plan: &Plan) -> Prediction {
    let e = &profile.efficiency;
    let has_gpu = plan.tiers.vram.capacity > 0;
    // A GPU given only as a --vram budget on a GPU-less profile (an RPC device) runs the
    // CPU's kernels at the CPU's bandwidth.
    let (gpu_bw, gpu_flops) = match profile.gpus.first() {
        Some(g) => (g.bandwidth_gbs, g.fp16_tflops * 1e3),
        None => (profile.cpu.mem_bandwidth_gbs, profile.cpu.matmul_gflops),
    };
    // Per weight type: a real GPU by the profile's GPU factors, an RPC stand-in by the
    // CPU's.
    let gpu_read_eff = |ty: &str| -> f64 {
        if profile.gpus.is_empty() {
            e.cpu_bandwidth_for(ty)
        } else {
            e.gpu_bandwidth_for(ty)
        }
    };
    let gpu_compute_eff = |ty: &str, expert: bool| -> f64 {
        if profile.gpus.is_empty() {
            e.cpu_compute
        } else {
            e.gpu_compute_for(ty, expert)
        }
    };
    let cpu_bw = profile.cpu.mem_bandwidth_gbs;
    let cpu_gflops = profile.cpu.matmul_gflops;
    let (k, n_exp) = shape.experts.unwrap_or((1, 1));
    let n_layer = shape.n_layer as usize;

    // ---- decode ----
    // vram, ram, ssd bytes per token. CPU-side reads cost by weight type: on few cores
    // decode is bound by dequantizing, so quantized weights stream at a lower share of
    // the bandwidth than F16 does, and routed experts (k small matrices) slower than
    // dense ones (`efficiency.cpu_type_bandwidth` / `cpu_expert_bandwidth`, fitted by
    // `edge profile calibrate`).
    let mut read = [0f64; 3];
    let mut t_cpu = 0f64;
    let mut t_gpu = 0f64;
    // Bytes per read group on each side, for the report.
    let mut gpu_groups = GroupReads::default();
    let mut cpu_groups = GroupReads::default();
    let mut layer_has_cpu = vec![false; n_layer];
    for t in &plan.tensors {
        let slot = match t.tier {
            Tier::Vram => 0,
            Tier::Ram => 1,
            Tier::Ssd => 2,
        };
        let bytes = t.density * t.bytes as f64;
        let expert = t.role == TensorRole::RoutedExpert;
        read[slot] += bytes;
        if t.tier != Tier::Vram {
            t_cpu += if expert {
                profile.cpu_expert_read_ms(&t.ggml_type, bytes)
            } else {
                profile.cpu_read_ms(&t.ggml_type, bytes)
            };
            cpu_groups.add(ReadGroup::of_weight(&t.ggml_type, expert), bytes);
        } else {
            t_gpu += bytes / per_ms(gpu_bw * gpu_read_eff(&t.ggml_type));
            gpu_groups.add(ReadGroup::of(&t.ggml_type), bytes);
        }
        // A tied output head is token_embd itself: every token multiplies by all of it,
        // on the GPU copy when the output layer is offloaded, else on the CPU.
        if shape.tied_output && t.role == TensorRole::TokenEmbd {
            let whole = t.bytes as f64;
            if plan.llama.n_gpu_layers >= 1 {
                read[0] += whole;
                t_gpu += whole / per_ms(gpu_bw * gpu_read_eff(&t.ggml_type));
                gpu_groups.add(ReadGroup::of(&t.ggml_type), whole);
            } else {
                read[slot] += whole;
                t_cpu += profile.cpu_read_ms(&t.ggml_type, whole);
                cpu_groups.add(ReadGroup::of(&t.ggml_type), whole);
            }
        }
        if t.tier != Tier::Vram && t.role != TensorRole::TokenEmbd {
            if let Some(il) = t.layer {
                if (il as usize) < n_layer {
                    layer_has_cpu[il as usize] = true;
                }
            }
        }
    }
    let first_gpu_layer = n_layer - plan.llama.n_gpu_layers.saturating_sub(1) as usize;
    let depth = DECODE_DEPTH.min(plan.ctx);
    let mut kv_read = [0f64; 2];
    for il in 0..n_layer {
        let per_cell = kv_layer_bytes(shape, il, 1, 1, plan.kv_type) as f64
            / super::memory::kv_cells(shape, il, 1, 1) as f64;
        let on_gpu = has_gpu && il >= first_gpu_layer;
        kv_read[if on_gpu { 0 } else { 1 }] += per_cell * depth as f64;
    }
    let kv_ty = plan.kv_type.ggml().name();
    t_gpu += kv_read[0] / per_ms(gpu_bw * gpu_read_eff(kv_ty));
    t_cpu += profile.cpu_read_ms(kv_ty, kv_read[1]);
    cpu_groups.add(ReadGroup::of(kv_ty), kv_read[1]);
    let t_ssd = read[2] / per_ms(profile.ssd.rand_read_gbs);
    let cpu_layers = if has_gpu {
        layer_has_cpu.iter().filter(|&&c| c).count()
    } else {
        n_layer
    };
    // Device changes along one token's path: embedding lookup (CPU), per layer the
    // attention device then the FFN device (CPU when any of its weights are on the CPU),
    // then the output head. Each change is a synchronisation; a round trip is two.
    let mut changes = 0usize;
    if has_gpu {
        let mut at_gpu = false;
        let mut step = |gpu: bool| {
            if gpu != at_gpu {
                changes += 1;
                at_gpu = gpu;
            }
        };
        for (il, &cpu) in layer_has_cpu.iter().enumerate() {
            let layer_on_gpu = il >= first_gpu_layer;
            step(layer_on_gpu);
            step(layer_on_gpu && !cpu);
        }
        step(plan.llama.n_gpu_layers >= 1);
    }
    let t_sync = changes as f64 / 2.0 * e.sync_ms;
    // Graph nodes the CPU runs: all of them without a GPU, else those of the layers
    // with CPU-resident weights.
    let cpu_nodes = if has_gpu {
        layer_has_cpu
            .iter()
            .enumerate()
            .filter(|(_, &c)| c)
            .map(|(il, _)| shape.graph_nodes_layer(il as u32))
            .sum()
    } else {
        shape.graph_nodes()
    };
    // Kernels the GPU launches per token: the nodes of the layers it runs.
    let gpu_nodes = if has_gpu {
        shape.graph_nodes().saturating_sub(cpu_nodes)
    } else {
        0
    };
    let t_gpu_nodes = gpu_nodes as f64 * e.gpu_node_overhead_ms;
    let rebuilt_nodes = shape.rebuilt_graph_nodes();
    // Routed-expert matrices read on the CPU: k per CPU-resident expert tensor.
    let expert_slices = plan
        .tensors
        .iter()
        .filter(|t| t.role == TensorRole::RoutedExpert && (t.tier != Tier::Vram || !has_gpu))
        .count() as u64
        * k;
    let counts = OverheadCounts {
        layers: cpu_layers as u64,
        nodes: cpu_nodes,
        rebuilt_nodes,
        expert_slices,
    };
    let t_fixed = profile.cpu_overhead_ms(&counts);
    let mut decode_terms = Vec::new();
    if has_gpu {
        gpu_groups.add(ReadGroup::of(kv_ty), kv_read[0]);
        let gpu_eff_of = |g: ReadGroup| gpu_read_eff(g.example_type());
        decode_terms.push(term(
            "vram reads",
            t_gpu,
            format!(
                "{:.0} MB weights + {:.1} MB KV at {:.0} GB/s x {}",
                read[0] / 1e6,
                kv_read[0] / 1e6,
                gpu_bw,
                gpu_groups.describe(gpu_eff_of)
            ),
        ));
        if gpu_nodes > 0 && e.gpu_node_overhead_ms > 0.0 {
            decode_terms.push(term(
                "gpu kernels",
                t_gpu_nodes,
                format!(
                    "{gpu_nodes} graph nodes x {:.1} us",
                    e.gpu_node_overhead_ms * 1e3
                ),
            ));
        }
    }
    let cpu_eff_of = |g: ReadGroup| match g {
        ReadGroup::ExpertKQuant => e.cpu_expert_bandwidth.unwrap_or(e.cpu_bandwidth),
        g => e.cpu_bandwidth_for(g.example_type()),
    };
    decode_terms.push(term(
        "ram reads",
        t_cpu,
        format!(
            "{:.0} MB weights + {:.1} MB KV at {:.0} GB/s x {}",
            (read[1] + read[2]) / 1e6,
            kv_read[1] / 1e6,
            cpu_bw,
            cpu_groups.describe(cpu_eff_of)
        ),
    ));
    if read[2] > 0.0 {
        decode_terms.push(term(
            "ssd page faults",
            t_ssd,
            format!(
                "{:.0} MB of expert reads miss the page cache, at {:.1} GB/s",
                read[2] / 1e6,
                profile.ssd.rand_read_gbs
            ),
        ));
    }
    if has_gpu {
        decode_terms.push(term(
            "gpu<->cpu syncs",
            t_sync,
            format!(
                "{changes} GPU<->CPU switches x {:.2} ms per round trip",
                e.sync_ms
            ),
        ));
    }
    decode_terms.push(term(
        "overhead",
        t_fixed,
        if e.node_overhead_ms > 0.0 {
            let rebuild = if rebuilt_nodes > 0 && e.graph_build_node_ms > 0.0 {
                format!(
                    " + graph rebuilt per token: {rebuilt_nodes} nodes x {:.2} us",
                    e.graph_build_node_ms * 1e3
                )
            } else {
                String::new()
            };
            let slices = if expert_slices > 0 && e.expert_slice_ms > 0.0 {
                format!(
                    " + {expert_slices} expert matrices x {:.2} us",
                    e.expert_slice_ms * 1e3
                )
            } else {
                String::new()
            };
            format!(
                "{:.3} ms per token + {cpu_nodes} CPU graph nodes x {:.2} us{rebuild}{slices}",
                e.token_overhead_ms,
                e.node_overhead_ms * 1e3
            )
        } else {
            format!(
                "{:.2} ms per token + {cpu_layers} CPU layers x {:.3} ms",
                e.token_overhead_ms, e.layer_overhead_ms
            )
        },
    ));
    let t_tok: f64 = decode_terms.iter().map(|t| t.ms).sum();

    // ---- prefill, per ubatch of U tokens from an empty context ----
    let u = plan.n_ubatch.min(plan.ctx).max(1) as f64;
    let touched = 1.0 - (1.0 - k as f64 / n_exp as f64).powf(u);
    let mut flops = [0f64; 2]; // gpu, cpu
    let mut t_gpu_compute = 0f64;
    // The weights the GPU reads per ubatch: all of a dense one, the experts the ubatch's
    // tokens route to (`touched`) of an MoE one. Compute and these reads overlap.
    let mut t_gpu_weight_reads = 0f64;
    let mut upload_bytes = 0f64;
    let mut cpu_weight_bytes = 0f64;
    let offload = has_gpu && (u as u64) >= OP_OFFLOAD_MIN_BATCH;
    for t in &plan.tensors {
        if t.role == TensorRole::TokenEmbd {
            continue;
        }
        let expert = t.role == TensorRole::RoutedExpert;
        let share = if expert { k as f64 / n_exp as f64 } else { 1.0 };
        let used = if expert { touched } else { 1.0 };
        let f = 2.0 * u * t.n_elements as f64 * share;
        if t.tier == Tier::Vram || offload {
            flops[0] += f;
            t_gpu_compute += f / (gpu_flops * gpu_compute_eff(&t.ggml_type, expert) * 1e6);
            t_gpu_weight_reads +=
                used * t.bytes as f64 / per_ms(gpu_bw * gpu_read_eff(&t.ggml_type));
            if t.tier != Tier::Vram {
                // Offloaded op: the used part of the weight crosses PCIe.
                upload_bytes += used * t.bytes as f64;
            }
        } else {
            flops[1] += f;
            cpu_weight_bytes += t.bytes as f64;
        }
    }
    // Attention scores over the ubatch itself (causal, half the square on average).
    let attn = 2.0 * u * u * (shape.n_head * (shape.head_dim_k + shape.head_dim_v)) as f64 * 0.5;
    let attn_total = attn * n_layer as f64;
    let attn_gpu_share = if has_gpu {
        (n_layer - first_gpu_layer.min(n_layer)) as f64 / n_layer.max(1) as f64
    } else {
        0.0
    };
    flops[0] += attn_total * attn_gpu_share;
    flops[1] += attn_total * (1.0 - attn_gpu_share);
    t_gpu_compute +=
        attn_total * attn_gpu_share / (gpu_flops * gpu_compute_eff("F16", false) * 1e6);
    // Without flash attention the GPU writes the ubatch's KQ scores (F32, one u x u matrix
    // per head) and reads them back through the mask, softmax and V product.
    let kq_traffic = if plan.flash_attn {
        0.0
    } else {
        KQ_PASSES * 4.0 * u * u * shape.n_head as f64 * n_layer as f64 * attn_gpu_share
    };
    let t_kq = kq_traffic / per_ms(gpu_bw * gpu_read_eff("F32"));

    let mut prefill_terms = Vec::new();
    if has_gpu {
        let bound = if t_gpu_weight_reads > t_gpu_compute {
            "weight reads"
        } else {
            "compute"
        };
        prefill_terms.push(term(
            "gpu compute",
            t_gpu_compute.max(t_gpu_weight_reads),
            format!(
                "{:.1} GFLOP per ubatch of {u} at {:.0} GFLOPS x {:.2} (quantized), x {:.2} (float); {:.1} ms of weight reads; {bound}-bound",
                flops[0] / 1e9,
                gpu_flops,
                gpu_compute_eff("Q4_K", false),
                gpu_compute_eff("F16", false),
                t_gpu_weight_reads,
            ),
        ));
        if kq_traffic > 0.0 {
            prefill_terms.push(term(
                "attention scores",
                t_kq,
                format!(
                    "{:.0} MB of KQ traffic without flash attention",
                    kq_traffic / 1e6
                ),
            ));
        }
        if gpu_nodes > 0 && e.gpu_node_overhead_ms > 0.0 {
            prefill_terms.push(term(
                "gpu kernels",
                t_gpu_nodes,
                format!(
                    "{gpu_nodes} graph nodes x {:.1} us",
                    e.gpu_node_overhead_ms * 1e3
                ),
            ));
        }
    }
    if upload_bytes > 0.0 {
        let h2d = profile
            .gpus
            .first()
            .map(|g| g.h2d_pageable_gbs)
            .filter(|&b| b > 0.0)
            .unwrap_or(cpu_bw * e.cpu_bandwidth);
        prefill_terms.push(term(
            "host->gpu copies",
            upload_bytes / per_ms(h2d),
            format!(
                "{:.0} MB of CPU weights ({:.0}% of experts used per ubatch) at {h2d:.1} GB/s",
                upload_bytes / 1e6,
                touched * 100.0
            ),
        ));
    }
    if flops[1] > 0.0 {
        let compute = flops[1] / (cpu_gflops * e.cpu_compute * 1e6);
        let memory = cpu_weight_bytes / per_ms(cpu_bw * e.cpu_bandwidth);
        prefill_terms.push(term(
            "cpu compute",
            compute.max(memory),
            format!(
                "{:.1} GFLOP per ubatch of {u} at {:.0} GFLOPS x {:.2}",
                flops[1] / 1e9,
                cpu_gflops,
                e.cpu_compute
            ),
        ));
    }
    prefill_terms.push(term(
        "overhead",
        t_fixed,
        "per-ubatch graph overhead".into(),
    ));
    let t_ubatch: f64 = prefill_terms.iter().map(|t| t.ms).sum();

    Prediction {
        decode_tok_s: if t_tok > 0.0 { 1000.0 / t_tok } else { 0.0 },
        prefill_tok_s: if t_ubatch > 0.0 {
            u * 1000.0 / t_ubatch
        } else {
            0.0
        },
        graph_nodes: shape.graph_nodes(),
        decode_terms,
        prefill_terms,
    }
}
