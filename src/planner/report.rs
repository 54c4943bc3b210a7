//! Human-readable rendering of a plan, and the one-line placement summary golden tests pin.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::classify::TensorRole;
use super::plan::{Plan, Suggestion, Tier};
use crate::term::human_bytes;

/// One line that pins what the planner decided: layers, expert split, KV and context.
pub fn summary(plan: &Plan) -> String {
    let mut by_tier: BTreeMap<Tier, u64> = BTreeMap::new();
    for t in &plan.tensors {
        *by_tier.entry(t.tier).or_default() += t.bytes;
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    format!(
        "fits={} ngl={} experts(vram/partial/cpu)={}/{}/{} kv={} ctx={} weights(vram/ram/ssd)={:.1}/{:.1}/{:.1}GiB",
        plan.fits,
        plan.llama.n_gpu_layers,
        plan.expert_layers.vram,
        plan.expert_layers.partial,
        plan.expert_layers.cpu,
        plan.kv_type.name(),
        plan.ctx,
        gib(by_tier.get(&Tier::Vram).copied().unwrap_or(0)),
        gib(by_tier.get(&Tier::Ram).copied().unwrap_or(0)),
        gib(by_tier.get(&Tier::Ssd).copied().unwrap_or(0)),
    )
}

/// The llama.cpp command-line equivalent of the plan.
pub fn llama_args(plan: &Plan) -> String {
    let l = &plan.llama;
    let mut s = format!(
        "-ngl {} -c {} -ub {} -fa {} -ctk {} -ctv {}",
        l.n_gpu_layers,
        l.n_ctx,
        l.n_ubatch,
        if l.flash_attn { "on" } else { "off" },
        l.type_k.name(),
        l.type_v.name()
    );
    for o in &l.tensor_overrides {
        let _ = write!(s, " -ot '{o}'");
    }
    s
}

/// Renders the plan as the table `edge plan` prints.
pub fn render(plan: &Plan, title: &str, word: &dyn Fn(&Suggestion) -> String) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "  context {} tokens{}, KV cache {} ({}), flash attention {}, ubatch {}{}",
        plan.ctx,
        if plan.parallel > 1 {
            format!(" x {} sequences", plan.parallel)
        } else {
            String::new()
        },
        plan.kv_type.name(),
        human_bytes(plan.kv.bytes),
        if plan.flash_attn { "on" } else { "off" },
        plan.n_ubatch,
        if plan.unified_memory {
            ", unified memory"
        } else {
            ""
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<18} {:<5} {:>8} {:>12}",
        "group", "tier", "tensors", "bytes"
    );
    let mut groups: BTreeMap<(TensorRole, Tier), (usize, u64)> = BTreeMap::new();
    for t in &plan.tensors {
        let g = groups.entry((t.role, t.tier)).or_default();
        g.0 += 1;
        g.1 += t.bytes;
    }
    for ((role, tier), (n, bytes)) in &groups {
        let _ = writeln!(
            out,
            "  {:<18} {:<5} {:>8} {:>12}",
            role.label(),
            tier.name(),
            n,
            human_bytes(*bytes)
        );
    }
    for (what, tier, bytes) in [
        ("KV cache", "vram", plan.kv.vram_bytes),
        ("KV cache", "ram", plan.kv.ram_bytes),
        ("compute buffers", "vram", plan.compute.vram_bytes),
        ("compute buffers", "ram", plan.compute.ram_bytes),
    ] {
        if bytes > 0 {
            let _ = writeln!(
                out,
                "  {what:<18} {tier:<5} {:>8} {:>12}",
                "",
                human_bytes(bytes)
            );
        }
    }
    let _ = writeln!(out);
    let tier_line = |name: &str, used: u64, cap: u64| {
        format!(
            "  {name:<5} {:>12} of {:>12}\n",
            human_bytes(used),
            human_bytes(cap)
        )
    };
    if plan.tiers.vram.capacity > 0 {
        out.push_str(&tier_line(
            "vram",
            plan.tiers.vram.used,
            plan.tiers.vram.capacity,
        ));
    }
    out.push_str(&tier_line(
        "ram",
        plan.tiers.ram.used,
        plan.tiers.ram.capacity,
    ));
    if plan.tiers.ssd.used > 0 {
        let _ = writeln!(
            out,
            "  ssd   {:>12} read through mmap, page-cache miss rate {:.1}%",
            human_bytes(plan.tiers.ssd.used),
            plan.ssd_miss_rate * 100.0
        );
    }
    let el = plan.expert_layers;
    if el.vram + el.partial + el.cpu > 0 {
        let _ = writeln!(
            out,
            "  expert layers: {} in VRAM, {} split, {} on the CPU",
            el.vram, el.partial, el.cpu
        );
    }
    let _ = writeln!(out);
    let p = &plan.predicted;
    let _ = writeln!(out, "  predicted decode  {:>8.1} tok/s", p.decode_tok_s);
    for t in &p.decode_terms {
        let _ = writeln!(out, "    {:<18} {:>8.2} ms  {}", t.name, t.ms, t.detail);
    }
    let _ = writeln!(out, "  predicted prefill {:>8.1} tok/s", p.prefill_tok_s);
    for t in &p.prefill_terms {
        let _ = writeln!(out, "    {:<18} {:>8.2} ms  {}", t.name, t.ms, t.detail);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  llama.cpp: {}", llama_args(plan));
    if !plan.fits {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  does not fit: {}",
            plan.reason.as_deref().unwrap_or("unknown")
        );
        for s in &plan.suggestions {
            let _ = writeln!(out, "  try: {}", word(s));
        }
    }
    out
}
