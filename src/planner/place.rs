//! Placement (research §8 step 3): density-1 tensors to VRAM first, layer by layer from
//! the output end as llama.cpp's `n_gpu_layers` counts them; the KV type is quantized
//! before any routed expert is evicted; VRAM is then filled with whole routed-expert
//! layers, early layers first, then single expert tensors; RAM is limited and the SSD
//! tier (mmap, page cache misses) takes only what keeps the miss rate small.

use super::classify::TensorRole;
use super::cost::predict;
use super::memory::{compute_bytes, kv_layer_bytes, kv_type_usable};
use super::model::{KvType, ModelShape};
use super::plan::{
    ComputeBuffers, ExpertLayers, KvPlacement, LlamaParams, PlacedTensor, Plan, PlanRequest,
    Prediction, Suggestion, Tier, TierUse, Tiers, DEFAULT_CTX, DEFAULT_UBATCH, MAX_SSD_MISS_RATE,
    MIN_AUTO_CTX,
};
use crate::profile::DeviceProfile;

/// Memory available to the plan.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    has_gpu: bool,
    unified: bool,
    vram: u64,
    ram: u64,
}

/// VRAM the driver, CUDA/Metal context and allocator slack take: fit's 1 GiB margin on
/// big cards, less on small ones.
pub fn vram_reserve(vram: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    (384 * MIB + vram / 16).min(1024 * MIB)
}

fn capacity(profile: &DeviceProfile, req: &PlanRequest) -> Capacity {
    let ram_free = profile.memory.ram_bytes - profile.memory.os_reserve_bytes;
    let ram = req.ram.unwrap_or(ram_free);
    let unified = profile.memory.unified && req.vram.is_none() && !profile.gpus.is_empty();
    let vram = match req.vram {
        Some(v) => v,
        None if unified => {
            let ws =
                (profile.memory.ram_bytes as f64 * profile.memory.gpu_working_set_fraction) as u64;
            ws.min(ram)
        }
        None => profile
            .gpus
            .iter()
            .map(|g| g.vram_bytes.saturating_sub(vram_reserve(g.vram_bytes)))
            .sum(),
    };
    Capacity {
        has_gpu: vram > 0,
        unified,
        vram,
        ram,
    }
}

/// Upper bound on the weight bytes a plan can fit on `profile` with the default request:
/// VRAM (dedicated) plus RAM, less 1.5 GiB or 10 % for the KV cache and compute buffers
/// of a default context. Used to pick the best quant that fits before downloading.
pub fn max_weight_bytes(profile: &DeviceProfile) -> u64 {
    let cap = capacity(profile, &PlanRequest::default());
    let total = cap.ram + if cap.unified { 0 } else { cap.vram };
    total.saturating_sub((total / 10).max(3 << 29))
}

/// The largest total weight size (all tensors scaled alike) for which `shape` still gets
/// a fitting plan on `profile` with the default request; `None` when not even 1/16 of
/// the current size fits. For quantize-to-fit a device.
pub fn fitting_weight_bytes(shape: &ModelShape, profile: &DeviceProfile) -> Option<u64> {
    let scaled = |f: f64| {
        let mut s = shape.clone();
        for t in &mut s.tensors {
            t.bytes = (t.bytes as f64 * f) as u64;
        }
        s.file_bytes = (s.file_bytes as f64 * f) as u64;
        s
    };
    let fits = |f: f64| plan_inner(&scaled(f), profile, &PlanRequest::default()).fits;
    let (mut lo, mut hi) = (1.0 / 16.0, 1.0);
    if !fits(lo) {
        return None;
    }
    if fits(hi) {
        return Some(shape.weight_bytes());
    }
    for _ in 0..24 {
        let mid = (lo + hi) / 2.0;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some((shape.weight_bytes() as f64 * lo) as u64)
}

/// Plans `shape` on `profile`. Pure: no I/O, no llama.cpp. A plan that does not fit
/// carries a reason and suggestions.
pub fn plan(shape: &ModelShape, profile: &DeviceProfile, req: &PlanRequest) -> Plan {
    let mut p = plan_inner(shape, profile, req);
    if !p.fits {
        p.suggestions = suggestions(shape, profile, &capacity(profile, req), req, &p);
    }
    p
}

fn plan_inner(shape: &ModelShape, profile: &DeviceProfile, req: &PlanRequest) -> Plan {
    let with_gpu = plan_on(shape, profile, req, capacity(profile, req));
    let cap = capacity(profile, req);
    if !cap.has_gpu || cap.unified {
        return with_gpu;
    }
    // A GPU too small to hold much can cost more in CPU<->GPU syncs than it saves in
    // bandwidth: keep the CPU-only plan when it is predicted faster.
    let cpu_only = plan_on(
        shape,
        profile,
        req,
        Capacity {
            has_gpu: false,
            vram: 0,
            ..cap
        },
    );
    if cpu_only.fits
        && (!with_gpu.fits || cpu_only.predicted.decode_tok_s > with_gpu.predicted.decode_tok_s)
    {
        let mut p = cpu_only;
        p.tiers.vram.capacity = cap.vram;
        return p;
    }
    with_gpu
}

fn plan_on(shape: &ModelShape, profile: &DeviceProfile, req: &PlanRequest, cap: Capacity) -> Plan {
    let flash_attn = req.flash_attn.unwrap_or(true);
    let n_ubatch = req.n_ubatch.unwrap_or(DEFAULT_UBATCH).max(1);
    let train = shape.n_ctx_train.max(256);
    let ctx_choices: Vec<u64> = match req.ctx {
        Some(c) => vec![c.max(1)],
        None => {
            let top = DEFAULT_CTX.min(train);
            let mut v = vec![top];
            let mut c = top / 2;
            while c >= MIN_AUTO_CTX.min(top) && c < top {
                v.push(c);
                c /= 2;
            }
            v
        }
    };
    let kv_choices: Vec<KvType> = match req.kv_type {
        Some(t) => vec![t],
        None => [KvType::F16, KvType::Q8_0]
            .into_iter()
            .filter(|&t| kv_type_usable(shape, t, flash_attn))
            .collect(),
    };

    let mut first_failure: Option<Plan> = None;
    for &ctx in &ctx_choices {
        let mut fitting: Option<Plan> = None;
        for &kv in &kv_choices {
            let p = place(shape, profile, &cap, req, ctx, kv, flash_attn, n_ubatch);
            if !p.fits {
                first_failure.get_or_insert(p);
                continue;
            }
            // Quantize KV only when f16 would push a tensor out of VRAM (or RAM).
            let evicts = evicted_bytes(&p) > 0;
            let better = match &fitting {
                None => true,
                Some(f) => evicted_bytes(f) > evicted_bytes(&p),
            };
            if better {
                fitting = Some(p);
            }
            if !evicts {
                break;
            }
        }
        if let Some(p) = fitting {
            return p;
        }
    }
    first_failure.expect("at least one attempt")
}

/// Bytes of tensors the plan keeps out of the fastest tier they could use.
fn evicted_bytes(p: &Plan) -> u64 {
    let best = if p.tiers.vram.capacity > 0 {
        Tier::Vram
    } else {
        Tier::Ram
    };
    p.tensors
        .iter()
        .filter(|t| t.role != TensorRole::TokenEmbd && !t.pinned && t.tier > best)
        .map(|t| t.bytes)
        .sum()
}

#[allow(clippy::too_many_arguments)]
fn place(
    shape: &ModelShape,
    profile: &DeviceProfile,
    cap: &Capacity,
    req: &PlanRequest,
    ctx: u64,
    kv_type: KvType,
    flash_attn: bool,
    n_ubatch: u64,
) -> Plan {
    let n_layer = shape.n_layer as usize;
    let mut tensors: Vec<PlacedTensor> = shape
        .tensors
        .iter()
        .map(|t| PlacedTensor {
            name: t.name.clone(),
            bytes: t.bytes,
            tier: Tier::Ram,
            role: t.role,
            layer: t.layer,
            density: t.density,
            n_elements: t.n_elements,
            pinned: req.pins.forces_cpu(t),
            ggml_type: t.ggml_type.clone(),
        })
        .collect();
    // Each sequence has its own KV stream of `ctx` cells.
    let parallel = req.parallel.unwrap_or(1).max(1);
    let kv_per_layer: Vec<u64> = (0..n_layer)
        .map(|il| kv_layer_bytes(shape, il, ctx, n_ubatch, kv_type) * parallel)
        .collect();
    let compute_full = compute_bytes(shape, ctx, n_ubatch, flash_attn);

    // Density-1 bytes per layer (what moves with a layer under n_gpu_layers).
    let mut dense_per_layer = vec![0u64; n_layer];
    let mut output_bytes = 0u64;
    for t in &tensors {
        if t.pinned || t.role == TensorRole::RoutedExpert || t.role == TensorRole::TokenEmbd {
            continue;
        }
        match t.layer {
            Some(il) if (il as usize) < n_layer => dense_per_layer[il as usize] += t.bytes,
            _ => output_bytes += t.bytes,
        }
    }
    if shape.tied_output {
        // llama.cpp duplicates token_embd as the output head on the output's device.
        output_bytes += shape.token_embd_bytes();
    }

    // GPU compute buffer: the full graph runs there once anything is offloaded. The host
    // keeps a buffer for the embedding lookup and any CPU-side op.
    let mut vram_used = 0u64;
    let mut n_gpu_layers = 0u32;
    let gpu_compute = if cap.has_gpu { compute_full } else { 0 };
    if cap.has_gpu && gpu_compute + output_bytes <= cap.vram {
        vram_used = gpu_compute + output_bytes;
        n_gpu_layers = 1;
        for il in (0..n_layer).rev() {
            let need = dense_per_layer[il] + kv_per_layer[il];
            if vram_used + need > cap.vram {
                break;
            }
            vram_used += need;
            n_gpu_layers += 1;
        }
    }
    // Layers il >= first_gpu_layer are on the GPU (llama.cpp's i_gpu_start).
    let gpu_layers = n_gpu_layers.saturating_sub(1) as usize;
    let first_gpu_layer = n_layer - gpu_layers;
    let on_gpu_layer = |layer: Option<u32>| match layer {
        Some(il) => (il as usize) >= first_gpu_layer && (il as usize) < n_layer,
        None => n_gpu_layers >= 1,
    };
    for t in tensors.iter_mut() {
        let dense_tensor = t.role != TensorRole::RoutedExpert && t.role != TensorRole::TokenEmbd;
        if dense_tensor && !t.pinned && on_gpu_layer(t.layer) {
            t.tier = Tier::Vram;
        }
    }

    // Routed experts: only once every density-1 tensor is in VRAM; whole layers first,
    // early layers first (late layers route more narrowly, which favours prefill when
    // they stay on the CPU), then single tensors of the remaining layers, largest first.
    let all_dense_on_gpu = cap.has_gpu && gpu_layers == n_layer;
    let mut expert_layers = ExpertLayers::default();
    if all_dense_on_gpu {
        let mut leftovers: Vec<usize> = Vec::new();
        for il in 0..n_layer as u32 {
            let idx: Vec<usize> = tensors
                .iter()
                .enumerate()
                .filter(|(_, t)| {
                    t.role == TensorRole::RoutedExpert && t.layer == Some(il) && !t.pinned
                })
                .map(|(i, _)| i)
                .collect();
            let bytes: u64 = idx.iter().map(|&i| tensors[i].bytes).sum();
            if bytes > 0 && vram_used + bytes <= cap.vram {
                vram_used += bytes;
                for &i in &idx {
                    tensors[i].tier = Tier::Vram;
                }
            } else {
                leftovers.extend(idx);
            }
        }
        leftovers.sort_by(|&a, &b| tensors[b].bytes.cmp(&tensors[a].bytes).then(a.cmp(&b)));
        for i in leftovers {
            if vram_used + tensors[i].bytes <= cap.vram {
                vram_used += tensors[i].bytes;
                tensors[i].tier = Tier::Vram;
            }
        }
    }
    for il in 0..n_layer as u32 {
        let (mut on_vram, mut total) = (0, 0);
        for t in tensors
            .iter()
            .filter(|t| t.role == TensorRole::RoutedExpert && t.layer == Some(il))
        {
            total += 1;
            on_vram += (t.tier == Tier::Vram) as u32;
        }
        if total == 0 {
            continue;
        }
        if on_vram == total {
            expert_layers.vram += 1;
        } else if on_vram > 0 {
            expert_layers.partial += 1;
        } else {
            expert_layers.cpu += 1;
        }
    }

    // KV and compute buffers.
    let kv_vram: u64 = (first_gpu_layer..n_layer)
        .map(|il| kv_per_layer[il])
        .sum::<u64>()
        * (cap.has_gpu as u64);
    let kv_total: u64 = kv_per_layer.iter().sum();
    let kv_ram = kv_total - kv_vram;
    let any_cpu_compute = !cap.has_gpu
        || gpu_layers < n_layer
        || tensors
            .iter()
            .any(|t| t.role == TensorRole::RoutedExpert && t.tier != Tier::Vram);
    let ram_compute = if !cap.has_gpu {
        compute_full
    } else if any_cpu_compute {
        // CPU-side ops of an offloaded graph: MoE expert matmuls and CPU layers; the
        // output stage stays on the GPU.
        compute_bytes_without_output(shape, ctx, n_ubatch, flash_attn)
    } else {
        // Embedding rows for one ubatch.
        n_ubatch * shape.n_embd * 4
    };

    // RAM: CPU tensors live in the page cache (mmap) alongside the CPU KV and compute.
    // On unified memory the GPU share comes out of the same pool.
    let cpu_tensor_bytes: u64 = tensors
        .iter()
        .filter(|t| t.tier == Tier::Ram)
        .map(|t| t.bytes)
        .sum();
    let shared_pool = if cap.unified { vram_used } else { 0 };
    let mut ram_used = cpu_tensor_bytes + kv_ram + ram_compute + shared_pool;
    let mut ssd_used = 0u64;
    let cpu_expert_bytes: u64 = tensors
        .iter()
        .filter(|t| t.role == TensorRole::RoutedExpert && t.tier == Tier::Ram)
        .map(|t| t.bytes)
        .sum();
    if ram_used > cap.ram {
        // Spill the coldest tensors (routed experts, late layers first) to the SSD tier.
        let mut order: Vec<usize> = tensors
            .iter()
            .enumerate()
            .filter(|(_, t)| t.role == TensorRole::RoutedExpert && t.tier == Tier::Ram)
            .map(|(i, _)| i)
            .collect();
        order.sort_by(|&a, &b| tensors[b].layer.cmp(&tensors[a].layer).then(b.cmp(&a)));
        for i in order {
            if ram_used <= cap.ram {
                break;
            }
            tensors[i].tier = Tier::Ssd;
            ram_used -= tensors[i].bytes;
            ssd_used += tensors[i].bytes;
        }
    }
    let ssd_miss_rate = if ssd_used == 0 {
        0.0
    } else {
        ssd_used as f64 / cpu_expert_bytes.max(1) as f64
    };

    let mut reason = None;
    if cap.has_gpu && vram_used > cap.vram {
        reason = Some(format!(
            "VRAM: needs {} but {} is available",
            crate::term::human_bytes(vram_used),
            crate::term::human_bytes(cap.vram)
        ));
    } else if ram_used > cap.ram {
        reason = Some(format!(
            "RAM: {} must stay resident (weights that are read for every token, KV cache, \
             compute buffers) but {} is available",
            crate::term::human_bytes(ram_used),
            crate::term::human_bytes(cap.ram)
        ));
    } else if ssd_miss_rate > MAX_SSD_MISS_RATE {
        reason = Some(format!(
            "RAM: {} of routed experts would be read from the SSD, a page-cache miss rate of \
             {:.0}% (at most {:.0}% keeps decoding usable)",
            crate::term::human_bytes(ssd_used),
            ssd_miss_rate * 100.0,
            MAX_SSD_MISS_RATE * 100.0
        ));
    }
    let fits = reason.is_none();

    let llama = LlamaParams {
        n_gpu_layers,
        tensor_overrides: overrides(&tensors, shape, req, first_gpu_layer, cap.has_gpu),
        type_k: kv_type,
        type_v: kv_type,
        flash_attn,
        n_ctx: ctx * parallel,
        n_ubatch,
        use_mmap: true,
    };
    let tiers = Tiers {
        vram: TierUse {
            used: if cap.has_gpu { vram_used } else { 0 },
            capacity: if cap.has_gpu { cap.vram } else { 0 },
        },
        ram: TierUse {
            used: ram_used,
            capacity: cap.ram,
        },
        ssd: TierUse {
            used: ssd_used,
            capacity: shape.file_bytes,
        },
    };
    let mut plan = Plan {
        fits,
        reason,
        suggestions: Vec::new(),
        ctx,
        parallel,
        kv_type,
        flash_attn,
        n_ubatch,
        unified_memory: cap.unified,
        tiers,
        kv: KvPlacement {
            kv_type,
            bytes: kv_total,
            vram_bytes: kv_vram,
            ram_bytes: kv_ram,
        },
        compute: ComputeBuffers {
            vram_bytes: gpu_compute,
            ram_bytes: ram_compute,
        },
        tensors,
        expert_layers,
        ssd_miss_rate,
        predicted: Prediction::default(),
        llama,
    };
    plan.predicted = predict(shape, profile, &plan);
    plan
}

fn compute_bytes_without_output(shape: &ModelShape, ctx: u64, n_ubatch: u64, fa: bool) -> u64 {
    let mut no_vocab = shape.clone();
    no_vocab.n_vocab = 0;
    compute_bytes(&no_vocab, ctx, n_ubatch, fa)
}

/// `-ot` patterns that keep the plan's CPU tensors of GPU layers on the CPU: the user's
/// own pins, then one pattern per run of layers with the same CPU expert tensors.
fn overrides(
    tensors: &[PlacedTensor],
    shape: &ModelShape,
    req: &PlanRequest,
    first_gpu_layer: usize,
    has_gpu: bool,
) -> Vec<String> {
    let mut out: Vec<String> = req
        .pins
        .cpu
        .iter()
        .map(|p| format!("{}=CPU", p.pattern))
        .collect();
    if !has_gpu {
        return out;
    }
    // Per layer: the names (after `blk.N.`) of routed tensors kept off VRAM.
    let mut by_layer: Vec<(u32, Vec<String>)> = Vec::new();
    for il in first_gpu_layer as u32..shape.n_layer {
        let mut kinds: Vec<String> = tensors
            .iter()
            .filter(|t| {
                t.role == TensorRole::RoutedExpert
                    && t.layer == Some(il)
                    && t.tier != Tier::Vram
                    && !req.pins.cpu.iter().any(|p| p.matches(&t.name))
            })
            .filter_map(|t| {
                t.name
                    .split_once('.')
                    .and_then(|(_, r)| r.split_once('.'))
                    .map(|(_, k)| k.to_string())
            })
            .collect();
        kinds.sort();
        if !kinds.is_empty() {
            by_layer.push((il, kinds));
        }
    }
    // Group layers with identical tensor sets.
    let mut groups: Vec<(Vec<u32>, Vec<String>)> = Vec::new();
    for (il, kinds) in by_layer {
        match groups.iter_mut().find(|(_, k)| *k == kinds) {
            Some((layers, _)) => layers.push(il),
            None => groups.push((vec![il], kinds)),
        }
    }
    for (layers, kinds) in groups {
        let layer_alt = layers
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("|");
        let kind_alt = kinds
            .iter()
            .map(|k| regex::escape(k))
            .collect::<Vec<_>>()
            .join("|");
        out.push(format!("^blk\\.({layer_alt})\\.({kind_alt})$=CPU"));
    }
    out
}

/// What would fit instead, most useful first.
fn suggestions(
    shape: &ModelShape,
    profile: &DeviceProfile,
    cap: &Capacity,
    req: &PlanRequest,
    failed: &Plan,
) -> Vec<Suggestion> {
    let mut out = Vec::new();
    let weights = shape.weight_bytes();
    let resident_budget = cap.ram + if cap.unified { 0 } else { cap.vram };
    let other = failed.kv.bytes + failed.compute.ram_bytes + failed.compute.vram_bytes;
    // Weights shrink roughly with bits per weight; at most 5 % of CPU experts may miss.
    let room = resident_budget.saturating_sub(other);
    if room > 0 && weights > room {
        let ratio = room as f64 / weights as f64;
        let bpw_now = weights as f64 * 8.0
            / shape
                .tensors
                .iter()
                .map(|t| t.n_elements)
                .sum::<u64>()
                .max(1) as f64;
        let bpw = bpw_now * ratio * 0.95;
        let quant = if bpw >= 4.8 {
            "Q4_K_M"
        } else if bpw >= 3.9 {
            "Q3_K_M or IQ4_XS"
        } else if bpw >= 2.9 {
            "Q2_K or IQ3_XXS"
        } else if bpw >= 2.0 {
            "IQ2_XXS"
        } else {
            ""
        };
        if quant.is_empty() {
            out.push(Suggestion::FarTooLarge {
                weight_bytes: weights,
                budget_bytes: resident_budget,
            });
        } else {
            out.push(Suggestion::SmallerQuant {
                bits_per_weight: (bpw * 10.0).round() / 10.0,
                quant: quant.to_string(),
                budget_bytes: resident_budget,
            });
        }
    }
    if failed.kv.bytes > 0 {
        let smaller = (failed.ctx / 4).max(512);
        if smaller < failed.ctx {
            out.push(Suggestion::ShorterContext {
                ctx: smaller,
                current_ctx: failed.ctx,
                kv_bytes: failed.kv.bytes,
            });
        }
        if req.kv_type.is_some_and(|t| t == KvType::F16) {
            out.push(Suggestion::QuantizedKv);
        }
        if failed.parallel > 1 {
            // The most sequences that would fit, found by the planner itself.
            let fewer = (1..failed.parallel).rev().find(|&n| {
                let r = PlanRequest {
                    parallel: Some(n),
                    ..req.clone()
                };
                plan_inner(shape, profile, &r).fits
            });
            if let Some(n) = fewer {
                out.push(Suggestion::FewerSequences {
                    parallel: n,
                    current: failed.parallel,
                });
            }
        }
    }
    if !req.pins.is_empty() {
        out.push(Suggestion::FewerPins);
    }
    // Name shipped profiles on which the same request fits.
    let mut fitting: Vec<(u64, String)> = crate::profile::builtin_profiles()
        .into_iter()
        .filter(|p| p.name != profile.name)
        .filter(|p| {
            let r = PlanRequest {
                vram: None,
                ram: None,
                ..req.clone()
            };
            plan_inner(shape, p, &r).fits
        })
        .map(|p| (p.memory.ram_bytes + p.vram_bytes(), p.name))
        .collect();
    fitting.sort();
    if let Some((_, name)) = fitting.first() {
        out.push(Suggestion::LargerDevice {
            profile: name.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::model::PlanTensor;
    use crate::planner::plan::CpuPin;
    use crate::profile::find_profile;
    use regex::Regex;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// A Qwen3-MoE-like shape: `n_layer` layers, each with attention of `attn` bytes and
    /// three routed expert tensors of `exp` bytes each (128 experts, 8 active).
    fn moe_shape(n_layer: u32, attn: u64, exp: u64) -> ModelShape {
        let mut tensors = vec![
            tensor(
                "token_embd.weight",
                300 * MIB,
                TensorRole::TokenEmbd,
                None,
                1.0 / 151936.0,
            ),
            tensor("output.weight", 300 * MIB, TensorRole::Output, None, 1.0),
            tensor("output_norm.weight", 8192, TensorRole::Output, None, 1.0),
        ];
        for il in 0..n_layer {
            tensors.push(tensor(
                &format!("blk.{il}.attn_q.weight"),
                attn,
                TensorRole::Attention,
                Some(il),
                1.0,
            ));
            tensors.push(tensor(
                &format!("blk.{il}.ffn_gate_inp.weight"),
                MIB,
                TensorRole::Router,
                Some(il),
                1.0,
            ));
            for kind in ["gate", "up", "down"] {
                tensors.push(tensor(
                    &format!("blk.{il}.ffn_{kind}_exps.weight"),
                    exp,
                    TensorRole::RoutedExpert,
                    Some(il),
                    8.0 / 128.0,
                ));
            }
        }
        ModelShape {
            architecture: "qwen3moe".into(),
            n_layer,
            n_embd: 2048,
            n_head: 32,
            n_head_kv: vec![4; n_layer as usize],
            head_dim_k: 128,
            head_dim_v: 128,
            n_vocab: 151936,
            n_ctx_train: 40960,
            n_ff_dense: 0,
            n_ff_exp: 768,
            n_ff_shexp: 0,
            experts: Some((8, 128)),
            swa_window: None,
            swa_layers: vec![false; n_layer as usize],
            tied_output: false,
            yarn: None,
            file_bytes: 0,
            tensors,
        }
    }

    fn tensor(
        name: &str,
        bytes: u64,
        role: TensorRole,
        layer: Option<u32>,
        density: f64,
    ) -> PlanTensor {
        PlanTensor {
            name: name.into(),
            bytes,
            n_elements: bytes * 2,
            role,
            layer,
            density,
            ggml_type: "Q4_K".into(),
        }
    }

    fn gpu_profile() -> DeviceProfile {
        find_profile("rtx4060-8gb", None).unwrap()
    }

    fn request(vram: u64) -> PlanRequest {
        PlanRequest {
            ctx: Some(8192),
            vram: Some(vram),
            ..PlanRequest::default()
        }
    }

    fn check_invariants(p: &Plan) {
        assert!(p.tiers.vram.used <= p.tiers.vram.capacity || !p.fits);
        assert!(p.tiers.ram.used <= p.tiers.ram.capacity || !p.fits);
        let any_expert_in_vram = p
            .tensors
            .iter()
            .any(|t| t.role == TensorRole::RoutedExpert && t.tier == Tier::Vram);
        if any_expert_in_vram {
            for t in &p.tensors {
                if t.role != TensorRole::RoutedExpert
                    && t.role != TensorRole::TokenEmbd
                    && !t.pinned
                {
                    assert_eq!(
                        t.tier,
                        Tier::Vram,
                        "{} left VRAM while experts are in it",
                        t.name
                    );
                }
            }
        }
    }

    #[test]
    fn cpu_only_device_keeps_everything_in_ram() {
        let shape = moe_shape(8, 10 * MIB, 50 * MIB);
        let profile = find_profile("cpu-laptop-16gb", None).unwrap();
        let p = plan(&shape, &profile, &PlanRequest::default());
        assert!(p.fits, "{:?}", p.reason);
        assert_eq!(p.llama.n_gpu_layers, 0);
        assert!(p.tensors.iter().all(|t| t.tier == Tier::Ram));
        assert_eq!(p.kv_type, KvType::F16);
        assert_eq!(p.ctx, 8192);
        assert!(p.predicted.decode_tok_s > 0.0 && p.predicted.prefill_tok_s > 0.0);
    }

    #[test]
    fn big_gpu_takes_everything_with_f16_kv() {
        let shape = moe_shape(8, 10 * MIB, 50 * MIB);
        let p = plan(&shape, &gpu_profile(), &request(8 * GIB));
        assert!(p.fits);
        assert_eq!(p.llama.n_gpu_layers, 9);
        assert!(p.llama.tensor_overrides.is_empty());
        assert_eq!(p.kv_type, KvType::F16);
        assert_eq!(p.expert_layers.vram, 8);
        check_invariants(&p);
    }

    #[test]
    fn kv_is_quantized_before_experts_are_evicted() {
        let shape = moe_shape(8, 10 * MIB, 50 * MIB);
        let all = plan(&shape, &gpu_profile(), &request(8 * GIB));
        // Just too small for everything with an f16 KV cache, enough with q8_0.
        let q8_kv = all.kv.bytes * 34 / 64 + 2 * MIB;
        let p = plan(
            &shape,
            &gpu_profile(),
            &request(all.tiers.vram.used - all.kv.bytes + q8_kv),
        );
        assert!(p.fits);
        assert_eq!(p.kv_type, KvType::Q8_0);
        assert_eq!(
            p.expert_layers.vram,
            8,
            "{}",
            crate::planner::report::summary(&p)
        );
        // A forced f16 cache evicts experts instead.
        let mut r = request(p.tiers.vram.capacity);
        r.kv_type = Some(KvType::F16);
        let f16 = plan(&shape, &gpu_profile(), &r);
        assert!(f16.expert_layers.vram < 8);
        assert!(f16.predicted.decode_tok_s < p.predicted.decode_tok_s);
    }

    #[test]
    fn experts_fill_whole_layers_early_first_then_single_tensors() {
        let shape = moe_shape(8, 10 * MIB, 50 * MIB);
        let all = plan(&shape, &gpu_profile(), &request(8 * GIB));
        let experts_total = 8 * 150 * MIB;
        // Room for 3 whole expert layers and 2 more tensors.
        let vram = all.tiers.vram.used - experts_total + 3 * 150 * MIB + 100 * MIB + MIB;
        let mut r = request(vram);
        r.kv_type = Some(KvType::F16);
        let p = plan(&shape, &gpu_profile(), &r);
        assert!(p.fits);
        assert_eq!((p.expert_layers.vram, p.expert_layers.partial), (3, 1));
        for il in 0..3 {
            assert!(p
                .tensors
                .iter()
                .filter(|t| t.layer == Some(il) && t.role == TensorRole::RoutedExpert)
                .all(|t| t.tier == Tier::Vram));
        }
        // Every layer with CPU experts gets an override; the layers run on the GPU.
        assert_eq!(p.llama.n_gpu_layers, 9);
        let ot = p.llama.tensor_overrides.join(" ");
        for il in 4..8 {
            assert!(ot.contains(&format!("{il}")), "{ot}");
        }
        let re: Vec<Regex> = p
            .llama
            .tensor_overrides
            .iter()
            .map(|o| Regex::new(o.trim_end_matches("=CPU")).unwrap())
            .collect();
        for t in &p.tensors {
            let overridden = re.iter().any(|r| r.is_match(&t.name));
            assert_eq!(
                overridden,
                t.tier != Tier::Vram && t.role == TensorRole::RoutedExpert,
                "{}",
                t.name
            );
        }
        check_invariants(&p);
    }

    #[test]
    fn more_vram_never_predicts_slower_decode() {
        let shape = moe_shape(16, 20 * MIB, 40 * MIB);
        let mut last = 0.0;
        for step in 0..40 {
            let p = plan(&shape, &gpu_profile(), &request(step * 64 * MIB));
            if !p.fits {
                continue;
            }
            check_invariants(&p);
            assert!(
                p.predicted.decode_tok_s >= last - 1e-9,
                "{} MiB: {} < {last}",
                step * 64,
                p.predicted.decode_tok_s
            );
            last = p.predicted.decode_tok_s;
        }
        assert!(last > 0.0);
    }

    #[test]
    fn pins_are_constraints_not_failures() {
        let shape = moe_shape(8, 10 * MIB, 50 * MIB);
        let mut r = request(400 * MIB);
        r.pins.n_cpu_moe = Some(2);
        let p = plan(&shape, &gpu_profile(), &r);
        assert!(p.fits, "{:?}", p.reason);
        for t in &p.tensors {
            if t.role == TensorRole::RoutedExpert && t.layer.unwrap() < 2 {
                assert_eq!(t.tier, Tier::Ram);
            }
        }
        r.pins.cpu_moe = true;
        r.pins.cpu.push(CpuPin::new("attn_q").unwrap());
        let p = plan(&shape, &gpu_profile(), &r);
        assert!(p.fits);
        assert!(p
            .tensors
            .iter()
            .filter(|t| t.role == TensorRole::RoutedExpert)
            .all(|t| t.tier == Tier::Ram));
        assert!(p
            .tensors
            .iter()
            .filter(|t| t.name.contains("attn_q"))
            .all(|t| t.tier == Tier::Ram));
        assert!(p.llama.tensor_overrides.iter().any(|o| o == "attn_q=CPU"));
    }

    #[test]
    fn ram_shortfall_spills_few_experts_to_ssd_or_refuses() {
        let shape = moe_shape(8, 10 * MIB, 50 * MIB);
        let profile = find_profile("cpu-laptop-16gb", None).unwrap();
        let base = plan(
            &shape,
            &profile,
            &PlanRequest {
                ctx: Some(4096),
                ..Default::default()
            },
        );
        // 2 % of the expert bytes over: spilled to the SSD tier, with its cost shown.
        let experts = 8 * 150 * MIB;
        let r = PlanRequest {
            ctx: Some(4096),
            ram: Some(base.tiers.ram.used - experts / 50),
            kv_type: Some(KvType::F16),
            ..Default::default()
        };
        let p = plan(&shape, &profile, &r);
        assert!(p.fits, "{:?}", p.reason);
        assert!(p.tiers.ssd.used > 0 && p.ssd_miss_rate <= MAX_SSD_MISS_RATE);
        assert!(p
            .predicted
            .decode_terms
            .iter()
            .any(|t| t.name == "ssd page faults"));
        assert!(p.predicted.decode_tok_s < base.predicted.decode_tok_s);
        // Half the experts over: refused, with suggestions.
        let r = PlanRequest {
            ctx: Some(4096),
            ram: Some(base.tiers.ram.used - experts / 2),
            kv_type: Some(KvType::F16),
            ..Default::default()
        };
        let p = plan(&shape, &profile, &r);
        assert!(!p.fits);
        assert!(
            p.reason.as_deref().unwrap().contains("miss rate"),
            "{:?}",
            p.reason
        );
        assert!(!p.suggestions.is_empty());
    }

    #[test]
    fn automatic_context_shrinks_before_refusing() {
        let shape = moe_shape(8, 10 * MIB, 10 * MIB);
        let profile = find_profile("cpu-laptop-16gb", None).unwrap();
        let full = plan(&shape, &profile, &PlanRequest::default());
        assert_eq!(full.ctx, 8192);
        let r = PlanRequest {
            ram: Some(full.tiers.ram.used - full.kv.bytes / 2),
            kv_type: Some(KvType::F16),
            ..Default::default()
        };
        let p = plan(&shape, &profile, &r);
        assert!(p.fits);
        assert!(p.ctx < 8192);
    }

    #[test]
    fn unified_memory_has_one_pool_with_a_working_set_cap() {
        let shape = moe_shape(8, 10 * MIB, 50 * MIB);
        let mut profile = find_profile("macbook-air-m2-16gb", None).unwrap();
        let p = plan(&shape, &profile, &PlanRequest::default());
        assert!(p.fits && p.unified_memory);
        assert!(
            p.tiers.vram.capacity
                <= (profile.memory.ram_bytes as f64 * profile.memory.gpu_working_set_fraction)
                    as u64
        );
        assert!(p
            .tensors
            .iter()
            .filter(|t| t.role != TensorRole::TokenEmbd)
            .all(|t| t.tier == Tier::Vram));
        // GPU-tier bytes count against RAM too.
        assert!(p.tiers.ram.used >= p.tiers.vram.used);
        // A smaller working set keeps some experts on the CPU side of the same pool.
        profile.memory.gpu_working_set_fraction = 0.06;
        let p = plan(&shape, &profile, &PlanRequest::default());
        assert!(p.fits);
        assert!(p.expert_layers.cpu + p.expert_layers.partial > 0);
        check_invariants(&p);
    }
}
