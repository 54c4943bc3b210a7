//! Acceptance: full-size plans are sane. Header-only GGUFs with the exact tensor tables
//! of Qwen3-30B-A3B, Qwen3-235B-A22B, Llama 4 Scout and Maverick (Q4_K_M-class) are
//! planned on every shipped profile; a few pairs are checked against what follows from
//! the tensor table and the profile; `edge plan`'s
//! JSON has the documented shape; pins are honoured.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::*;
use edge::gguf_info::GgufFile;
use edge::planner::report::summary;
use edge::planner::{plan, KvType, ModelShape, Pins, Plan, PlanRequest, TensorRole, Tier};
use edge::profile::builtin_profiles;
use edge::synth::fullsize::{write_header_only, FullSizeModel};
use serde_json::Value;

const ALL: [FullSizeModel; 4] = [
    FullSizeModel::Qwen3_30bA3b,
    FullSizeModel::Qwen3_235bA22b,
    FullSizeModel::Llama4Scout,
    FullSizeModel::Llama4Maverick,
];

fn fixture(m: FullSizeModel) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = scratch().join(format!("{}.gguf", m.name()));
    if !path.exists() {
        write_header_only(m, &path).unwrap();
    }
    path
}

fn shape(m: FullSizeModel) -> &'static ModelShape {
    static SHAPES: OnceLock<Vec<(FullSizeModel, ModelShape)>> = OnceLock::new();
    let all = SHAPES.get_or_init(|| {
        ALL.iter()
            .map(|&m| {
                let g = GgufFile::open_header(&fixture(m)).unwrap();
                assert!(g.is_header_only());
                (m, ModelShape::from_gguf(&g).unwrap())
            })
            .collect()
    });
    &all.iter().find(|(k, _)| *k == m).unwrap().1
}

fn check_sane(p: &Plan, what: &str) {
    if p.fits {
        assert!(
            p.tiers.vram.used <= p.tiers.vram.capacity,
            "{what}: VRAM over capacity"
        );
        assert!(
            p.tiers.ram.used <= p.tiers.ram.capacity,
            "{what}: RAM over capacity"
        );
        assert!(p.predicted.decode_tok_s > 0.0 && p.predicted.prefill_tok_s > 0.0);
    } else {
        assert!(p.reason.is_some(), "{what}: refused without a reason");
        assert!(
            !p.suggestions.is_empty(),
            "{what}: refused without a suggestion"
        );
    }
    let expert_in_vram = p
        .tensors
        .iter()
        .any(|t| t.role == TensorRole::RoutedExpert && t.tier == Tier::Vram);
    if expert_in_vram {
        for t in &p.tensors {
            if t.role != TensorRole::RoutedExpert && t.role != TensorRole::TokenEmbd {
                assert_eq!(
                    t.tier,
                    Tier::Vram,
                    "{what}: {} outside VRAM while experts are in it",
                    t.name
                );
            }
        }
    }
}

#[test]
fn every_model_on_every_shipped_profile_is_sane() {
    let profiles = builtin_profiles();
    assert_eq!(profiles.len(), 15);
    let mut fits = 0;
    for m in ALL {
        for profile in &profiles {
            let p = plan(shape(m), profile, &PlanRequest::default());
            check_sane(&p, &format!("{} on {}", m.name(), profile.name));
            fits += p.fits as usize;
        }
    }
    // Some pairs fit (H100, big Macs), some cannot (Maverick on a Raspberry Pi).
    assert!(fits > 5 && fits < 56, "{fits} of 56 pairs fit");
}

#[test]
fn more_vram_never_predicts_slower_decode() {
    let gpu = builtin_profiles()
        .into_iter()
        .find(|p| p.name == "rtx4090-24gb")
        .unwrap();
    // With the KV type fixed, strictly monotone. With it automatic, the planner trades
    // q8_0 back for f16 once everything fits (a quality gain): that step may cost a
    // fraction of a percent of predicted speed, and only that step.
    for kv in [Some(KvType::F16), Some(KvType::Q8_0), None] {
        for m in [
            FullSizeModel::Qwen3_30bA3b,
            FullSizeModel::Llama4Scout,
            FullSizeModel::Qwen3_235bA22b,
        ] {
            let (mut last, mut last_kv) = (0.0, KvType::Q8_0);
            for gib in 0..=40 {
                let req = PlanRequest {
                    ctx: Some(8192),
                    vram: Some(gib << 30),
                    ram: Some(512 << 30),
                    kv_type: kv,
                    ..PlanRequest::default()
                };
                let p = plan(shape(m), &gpu, &req);
                check_sane(&p, &format!("{} with {gib} GiB", m.name()));
                assert!(p.fits, "{} with {gib} GiB VRAM and 512 GiB RAM", m.name());
                let upgraded_kv =
                    kv.is_none() && last_kv == KvType::Q8_0 && p.kv_type == KvType::F16;
                let floor = if upgraded_kv {
                    last * 0.99
                } else {
                    last * (1.0 - 1e-9)
                };
                assert!(
                    p.predicted.decode_tok_s >= floor,
                    "{} kv {kv:?}: {gib} GiB predicts {:.2} tok/s, less than {last:.2}",
                    m.name(),
                    p.predicted.decode_tok_s
                );
                last = p.predicted.decode_tok_s;
                last_kv = p.kv_type;
            }
        }
    }
}

/// How each MoE layer's routed experts are placed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ExpertLayer {
    AllVram,
    Partial,
    NoneVram,
}

/// Checks a default plan of `m` on `profile_name` against what follows from the GGUF's
/// tensor table and the profile alone, not from the planner's own output: every tensor
/// placed once at its table size, the tier sums, the capacities, whole expert layers in
/// VRAM from the first layer on, no VRAM left that a CPU expert tensor would fit in.
fn check_placement_derived(m: FullSizeModel, profile_name: &str) -> Plan {
    let what = format!("{} on {profile_name}", m.name());
    let prof = builtin_profiles()
        .into_iter()
        .find(|p| p.name == profile_name)
        .unwrap();
    let g = GgufFile::open_header(&fixture(m)).unwrap();
    let p = plan(shape(m), &prof, &PlanRequest::default());
    check_sane(&p, &what);

    // Every tensor of the table, once, at the table's size.
    let table: std::collections::HashMap<&str, u64> = g
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.bytes))
        .collect();
    assert_eq!(p.tensors.len(), g.tensors.len(), "{what}");
    for t in &p.tensors {
        assert_eq!(
            table.get(t.name.as_str()),
            Some(&t.bytes),
            "{what}: {}",
            t.name
        );
    }
    let on = |tier: Tier| -> u64 {
        p.tensors
            .iter()
            .filter(|t| t.tier == tier)
            .map(|t| t.bytes)
            .sum()
    };
    let total: u64 = g.tensors.iter().map(|t| t.bytes).sum();
    assert_eq!(
        on(Tier::Vram) + on(Tier::Ram) + on(Tier::Ssd),
        total,
        "{what}"
    );
    assert_eq!(p.tiers.ssd.used, on(Tier::Ssd), "{what}");
    // Each tier holds at least its weights and its share of the KV cache.
    assert!(
        p.tiers.vram.used >= on(Tier::Vram) + p.kv.vram_bytes,
        "{what}"
    );
    assert!(p.tiers.ram.used >= on(Tier::Ram) + p.kv.ram_bytes, "{what}");
    assert_eq!(p.kv.vram_bytes + p.kv.ram_bytes, p.kv.bytes, "{what}");

    // Capacities: RAM less the OS reserve; dedicated VRAM less a driver reserve of at
    // most 1 GiB per card; on unified memory, the GPU's working set of the same RAM.
    let ram_free = prof.memory.ram_bytes - prof.memory.os_reserve_bytes;
    assert_eq!(p.tiers.ram.capacity, ram_free, "{what}");
    if prof.memory.unified {
        let ws = (prof.memory.ram_bytes as f64 * prof.memory.gpu_working_set_fraction) as u64;
        assert_eq!(p.tiers.vram.capacity, ws.min(ram_free), "{what}");
    } else {
        let physical: u64 = prof.gpus.iter().map(|g| g.vram_bytes).sum();
        assert!(p.tiers.vram.capacity <= physical, "{what}");
        assert!(
            p.tiers.vram.capacity + ((prof.gpus.len() as u64) << 30) >= physical,
            "{what}: more than 1 GiB per card held back"
        );
    }
    if p.fits {
        assert!(p.tiers.vram.used <= p.tiers.vram.capacity, "{what}");
        assert!(p.tiers.ram.used <= p.tiers.ram.capacity, "{what}");
    }
    // What does not fit in VRAM and RAM must be on the SSD.
    assert!(
        on(Tier::Ssd) + p.tiers.vram.capacity + p.tiers.ram.capacity >= total,
        "{what}: weights unaccounted for"
    );

    // Routed experts, layer by layer.
    let n_layer = shape(m).n_layer;
    let mut layers = Vec::new();
    for il in 0..n_layer {
        let experts: Vec<_> = p
            .tensors
            .iter()
            .filter(|t| t.role == TensorRole::RoutedExpert && t.layer == Some(il))
            .collect();
        if experts.is_empty() {
            continue;
        }
        let in_vram = experts.iter().filter(|t| t.tier == Tier::Vram).count();
        layers.push(if in_vram == experts.len() {
            ExpertLayer::AllVram
        } else if in_vram > 0 {
            ExpertLayer::Partial
        } else {
            ExpertLayer::NoneVram
        });
    }
    let count = |k: ExpertLayer| layers.iter().filter(|&&l| l == k).count() as u32;
    assert_eq!(p.expert_layers.vram, count(ExpertLayer::AllVram), "{what}");
    assert_eq!(
        p.expert_layers.partial,
        count(ExpertLayer::Partial),
        "{what}"
    );
    assert_eq!(p.expert_layers.cpu, count(ExpertLayer::NoneVram), "{what}");
    // Whole layers in VRAM come first, from the first MoE layer on (their layers are
    // the same size, so once one does not fit, no later one does).
    let whole = count(ExpertLayer::AllVram) as usize;
    assert!(
        layers[..whole].iter().all(|&l| l == ExpertLayer::AllVram),
        "{what}: whole expert layers in VRAM are not the first ones: {layers:?}"
    );
    // Experts go to VRAM only once every density-1 tensor is there (check_sane), and
    // then llama.cpp offloads every layer plus the output.
    let any_expert_in_vram = layers.iter().any(|&l| l != ExpertLayer::NoneVram);
    if any_expert_in_vram {
        assert_eq!(p.llama.n_gpu_layers, n_layer + 1, "{what}");
    }
    // No VRAM is wasted: a CPU expert tensor that fit in what is left would be there.
    if p.fits && any_expert_in_vram {
        let free = p.tiers.vram.capacity - p.tiers.vram.used;
        if let Some(smallest) = p
            .tensors
            .iter()
            .filter(|t| t.role == TensorRole::RoutedExpert && t.tier != Tier::Vram)
            .map(|t| t.bytes)
            .min()
        {
            assert!(
                free < smallest,
                "{what}: {free} bytes of VRAM left, a {smallest}-byte expert tensor on the CPU"
            );
        }
    }
    eprintln!("{what}: {}", summary(&p));
    p
}

#[test]
fn placements_follow_from_the_tensor_table_and_the_profile() {
    // An 8 GB card cannot hold Qwen3-30B-A3B's ~17 GiB: everything dense in VRAM, some
    // expert layers with it, the rest in RAM, nothing on the SSD.
    let p = check_placement_derived(FullSizeModel::Qwen3_30bA3b, "rtx4060-8gb");
    assert!(p.fits);
    assert!(p.expert_layers.vram > 0 && p.expert_layers.cpu > 0);
    assert_eq!(p.tiers.ssd.used, 0);
    // Scout (~61 GiB) on 24 GB, and Qwen3-235B-A22B (~132 GiB) on 80 GB: the same split.
    for (m, prof) in [
        (FullSizeModel::Llama4Scout, "rtx4090-24gb"),
        (FullSizeModel::Qwen3_235bA22b, "h100-80gb"),
    ] {
        let p = check_placement_derived(m, prof);
        assert!(p.fits, "{} on {prof}", m.name());
        assert!(p.expert_layers.vram > 0 && p.expert_layers.cpu > 0);
        assert_eq!(p.tiers.ssd.used, 0);
    }
    // Maverick (~226 GiB) fits a 512 GB Mac's GPU working set whole: every tensor but
    // the embedding table (looked up on the CPU) in the GPU's share.
    let p = check_placement_derived(FullSizeModel::Llama4Maverick, "mac-studio-m3-ultra-512gb");
    assert!(p.fits);
    for t in &p.tensors {
        if t.role != TensorRole::TokenEmbd {
            assert_eq!(t.tier, Tier::Vram, "{}", t.name);
        }
    }
    assert_eq!((p.expert_layers.partial, p.expert_layers.cpu), (0, 0));
    // Scout on an 8 GB card with 32 GB of RAM: more than both hold, so experts spill to
    // the SSD; so large a share of expert reads would fault that the plan is refused.
    let p = check_placement_derived(FullSizeModel::Llama4Scout, "rtx4060-8gb");
    let cpu_experts: u64 = p
        .tensors
        .iter()
        .filter(|t| t.role == TensorRole::RoutedExpert && t.tier != Tier::Vram)
        .map(|t| t.bytes)
        .sum();
    let miss = p.tiers.ssd.used as f64 / cpu_experts as f64;
    assert!(p.tiers.ssd.used > 0);
    assert!(miss > edge::planner::plan::MAX_SSD_MISS_RATE, "{miss}");
    assert!(!p.fits && p.reason.is_some());
}

#[test]
fn plan_json_has_the_documented_shape() {
    let path = fixture(FullSizeModel::Qwen3_30bA3b);
    let o = run_edge(&[
        "plan",
        path.to_str().unwrap(),
        "--profile",
        "rtx4060-8gb",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(p["fits"], true);
    assert!(p["ctx"].as_u64().unwrap() >= 4096);
    assert!(["f16", "q8_0", "q4_0"].contains(&p["kv_type"].as_str().unwrap()));
    for tier in ["vram", "ram", "ssd"] {
        assert!(p["tiers"][tier]["used"].is_u64() && p["tiers"][tier]["capacity"].is_u64());
    }
    let tensors = p["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 579);
    for t in tensors {
        assert!(t["name"].is_string() && t["bytes"].is_u64());
        assert!(["vram", "ram", "ssd"].contains(&t["tier"].as_str().unwrap()));
    }
    assert!(p["predicted"]["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(p["predicted"]["prefill_tok_s"].as_f64().unwrap() > 0.0);
    let l = &p["llama"];
    assert!(l["n_gpu_layers"].is_u64());
    assert!(l["tensor_overrides"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o.as_str().unwrap().ends_with("=CPU")));
    assert!(l["type_k"].is_string() && l["type_v"].is_string());
    assert!(l["flash_attn"].is_boolean() && l["n_ubatch"].is_u64());
}

#[test]
fn a_plan_that_cannot_fit_is_refused_with_suggestions() {
    let path = fixture(FullSizeModel::Llama4Maverick);
    let o = run_edge(&[
        "plan",
        path.to_str().unwrap(),
        "--profile",
        "raspberry-pi5-8gb",
        "--json",
    ]);
    assert!(!o.status.success());
    let p: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(p["fits"], false);
    assert!(p["reason"].as_str().unwrap().contains("RAM"));
    assert!(!p["suggestions"].as_array().unwrap().is_empty());
    assert_clean_failure(&o, "does not fit on raspberry-pi5-8gb");
    // The text form says why and what would fit.
    let o = run_edge(&[
        "plan",
        path.to_str().unwrap(),
        "--profile",
        "raspberry-pi5-8gb",
    ]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("does not fit:") && stdout(&o).contains("try:"));
}

#[test]
fn user_pins_with_a_tight_vram_still_fit() {
    let path = fixture(FullSizeModel::Qwen3_30bA3b);
    let o = run_edge(&[
        "plan",
        path.to_str().unwrap(),
        "--profile",
        "rtx4060-8gb",
        "--vram",
        "3GiB",
        "--n-cpu-moe",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(p["fits"], true);
    for t in p["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if name.starts_with("blk.0.ffn_") && name.contains("_exps")
            || name.starts_with("blk.1.ffn_") && name.contains("_exps")
        {
            assert_eq!(t["tier"], "ram", "{name}");
        }
    }
    assert!(p["tiers"]["vram"]["used"].as_u64().unwrap() <= 3 << 30);
    // The pure planner agrees and keeps density-1 tensors first.
    let pins = Pins {
        n_cpu_moe: Some(2),
        ..Pins::default()
    };
    let gpu = builtin_profiles()
        .into_iter()
        .find(|p| p.name == "rtx4060-8gb")
        .unwrap();
    let p = plan(
        shape(FullSizeModel::Qwen3_30bA3b),
        &gpu,
        &PlanRequest {
            vram: Some(3 << 30),
            pins,
            ..Default::default()
        },
    );
    check_sane(&p, "pinned");
    assert!(p.fits);
}

#[test]
fn bad_plan_inputs_fail_cleanly() {
    let path = fixture(FullSizeModel::Qwen3_30bA3b);
    let p = path.to_str().unwrap();
    assert_clean_failure(
        &run_edge(&["plan", p, "--profile", "nope"]),
        "unknown profile 'nope'",
    );
    assert_clean_failure(&run_edge(&["plan", "/nonexistent/x.gguf"]), "not found");
    let o = run_edge(&["plan", p, "--vram", "lots"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_clean_failure(
        &run_edge(&["plan", p, "--override-tensor", "exps=CUDA0"]),
        "only CPU pins",
    );
    assert_clean_failure(
        &run_edge(&["plan", p, "--override-tensor", "(=CPU"]),
        "bad tensor pattern",
    );
    let junk = scratch().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf at all").unwrap();
    assert_clean_failure(&run_edge(&["plan", junk.to_str().unwrap()]), "junk.gguf");
}
