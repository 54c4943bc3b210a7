//! Acceptance: the planner's predicted model-weight, KV-cache and compute-buffer bytes
//! match what llama.cpp allocates (read from its own load log), within 3 % or 1 MiB,
//! for the real SmolLM2 model and the synthetic qwen3, qwen3moe and llama4 models at
//! ctx 512, 4096 and the model's maximum. The decode graph's node count, which the cost
//! model charges per-node overheads on, must equal the one llama.cpp reports.

mod common;

use common::*;
use edge::synth::SynthArch;
use serde_json::Value;

const MIB: f64 = 1024.0 * 1024.0;

/// (weights, kv, compute) in MiB as the plan predicts them for a CPU-only device, and the
/// graph's node count.
fn predicted(model: &str, ctx: u64) -> ((f64, f64, f64), u64) {
    let o = run_edge(&[
        "plan",
        model,
        "--profile",
        "cpu-laptop-16gb",
        "--ctx",
        &ctx.to_string(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(p["fits"], true);
    assert_eq!(p["ctx"].as_u64(), Some(ctx));
    let weights: u64 = p["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bytes"].as_u64().unwrap())
        .sum();
    (
        (
            weights as f64 / MIB,
            p["kv"]["bytes"].as_u64().unwrap() as f64 / MIB,
            p["compute"]["ram_bytes"].as_u64().unwrap() as f64 / MIB,
        ),
        p["predicted"]["graph_nodes"].as_u64().unwrap(),
    )
}

/// The same as llama.cpp reports them when `edge run` loads the model with the plan.
fn allocated(model: &str, ctx: u64) -> ((f64, f64, f64), u64) {
    let o = run_edge(&[
        "run",
        "-v",
        "--profile",
        "cpu-laptop-16gb",
        "--ctx",
        &ctx.to_string(),
        "--temp",
        "0",
        "--max-tokens",
        "1",
        model,
        "hi",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    let sum = |needle: &str| -> f64 {
        log.lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| l.split('=').nth(1))
            .filter_map(|v| v.trim().trim_end_matches("MiB").trim().parse::<f64>().ok())
            .sum()
    };
    let reserve_compute: f64 = log
        .lines()
        .filter(|l| l.starts_with("sched_reserve:") && l.contains("compute buffer size ="))
        .filter_map(|l| l.split('=').nth(1))
        .filter_map(|v| v.trim().trim_end_matches("MiB").trim().parse::<f64>().ok())
        .sum();
    // "sched_reserve: graph: nodes = 111, splits = 1, ..."
    let nodes = log
        .lines()
        .filter_map(|l| l.split("graph: nodes = ").nth(1))
        .filter_map(|v| v.split(',').next()?.trim().parse::<u64>().ok())
        .next_back()
        .expect("llama.cpp's graph node count in the log");
    (
        (
            sum("model buffer size ="),
            sum("KV buffer size ="),
            reserve_compute,
        ),
        nodes,
    )
}

fn close(what: &str, predicted: f64, actual: f64) {
    let tolerance = (actual * 0.03).max(1.0);
    assert!(
        (predicted - actual).abs() <= tolerance,
        "{what}: predicted {predicted:.2} MiB, llama.cpp allocated {actual:.2} MiB"
    );
}

fn check(model: &str, contexts: &[u64]) {
    for &ctx in contexts {
        let (p, p_nodes) = predicted(model, ctx);
        let (a, a_nodes) = allocated(model, ctx);
        eprintln!("{model} ctx {ctx}: predicted {p:?} allocated {a:?}");
        assert_eq!(p_nodes, a_nodes, "{model}: decode graph nodes");
        assert!(
            a.0 > 0.0 && a.1 > 0.0 && a.2 > 0.0,
            "missing llama.cpp report: {a:?}"
        );
        close(&format!("{model} ctx {ctx} weights"), p.0, a.0);
        close(&format!("{model} ctx {ctx} KV cache"), p.1, a.1);
        close(&format!("{model} ctx {ctx} compute buffers"), p.2, a.2);
    }
}

#[test]
fn smollm2_memory_is_predicted() {
    // SmolLM2's training context is 8192.
    check(smollm2().to_str().unwrap(), &[512, 4096, 8192]);
}

#[test]
fn synthetic_models_memory_is_predicted() {
    for arch in [SynthArch::Qwen3, SynthArch::Qwen3Moe, SynthArch::Llama4] {
        let model = synth_model(arch);
        // 4096 is their maximum; llama4's chunked layers get their own (SWA) cache.
        check(model.to_str().unwrap(), &[512, 4096]);
    }
}
