//! An `edge rpc-server` on 127.0.0.1 as a second device, a profile that treats it as a
//! GPU, and readers of the plan's JSON and llama.cpp's load log: the proof that a plan
//! is applied on a machine without a GPU.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{edge, scratch, stderr, stdout};

pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_rpc_server() -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = edge()
        .args(["rpc-server", "--port", &port.to_string(), "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rpc-server");
    let server = Server(child);
    let endpoint = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while TcpStream::connect(&endpoint).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "rpc-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, endpoint)
}

/// A user profile describing the RPC device as a GPU (fast memory, cheap syncs), so the
/// cost model prefers to offload even these tiny models.
pub fn profile_home() -> &'static Path {
    let home = scratch().join("rpc-home");
    let dir = home.join("profiles");
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/rtx4060-8gb.toml"),
    )
    .unwrap();
    // Tiny test models decode in microseconds: the shipped fixed costs would make the
    // CPU-only plan faster and leave the RPC device unused.
    let text: String = shipped
        .replace("name = \"rtx4060-8gb\"", "name = \"rpc-test-gpu\"")
        .lines()
        .map(|l| match l.split(" = ").next() {
            Some("sync_ms") => "sync_ms = 0.01".to_string(),
            Some("token_overhead_ms") => "token_overhead_ms = 0.01".to_string(),
            Some("gpu_node_overhead_ms") => "gpu_node_overhead_ms = 0.0".to_string(),
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect();
    assert!(text.contains("token_overhead_ms = 0.01"), "{text}");
    std::fs::write(dir.join("rpc-test-gpu.toml"), text).unwrap();
    Box::leak(home.into_boxed_path())
}

/// `edge plan MODEL --profile rpc-test-gpu --vram VRAM ARGS --json`.
pub fn plan_json(home: &Path, model: &str, vram: u64, plan_args: &[&str]) -> Value {
    let vram = vram.to_string();
    let mut args = vec![
        "plan",
        model,
        "--profile",
        "rpc-test-gpu",
        "--vram",
        &vram,
        "--json",
    ];
    args.extend_from_slice(plan_args);
    let o = edge().env("EDGE_HOME", home).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// A VRAM size one MoE layer's experts (less a KiB) short of what the whole model needs
/// with `plan_args`, so the plan must keep some routed experts on the CPU; and that plan.
pub fn tight_plan(home: &Path, model: &str, plan_args: &[&str]) -> (u64, Value) {
    let roomy = plan_json(home, model, 1 << 30, plan_args);
    let experts: Vec<(String, u64)> = tensors_in(&roomy, "vram")
        .into_iter()
        .filter(|(n, _)| n.contains("_exps"))
        .collect();
    assert!(
        !experts.is_empty(),
        "{model}: no experts in VRAM with 1 GiB"
    );
    let layer = |n: &str| n.split('.').nth(1).unwrap_or("").to_string();
    let last = layer(&experts.last().unwrap().0);
    let last_layer_experts: u64 = experts
        .iter()
        .filter(|(n, _)| layer(n) == last)
        .map(|(_, b)| b)
        .sum();
    let vram = roomy["tiers"]["vram"]["used"].as_u64().unwrap() - last_layer_experts + 1024;
    let plan = plan_json(home, model, vram, plan_args);
    assert_eq!(plan["fits"], true, "{model}: the tight plan does not fit");
    assert!(
        tensors_in(&plan, "ram")
            .iter()
            .any(|(n, _)| n.contains("_exps")),
        "{model}: the tight plan kept every expert in VRAM"
    );
    (vram, plan)
}

/// Checks llama.cpp's load log (`-v`) against a plan: every layer it offloads is on
/// RPC0, exactly the routed experts the plan keeps in RAM are overridden to the CPU, and
/// RPC0's model buffer is the plan's VRAM tensors. Returns that buffer's size, MiB.
pub fn assert_log_applies_plan(what: &str, log: &str, plan: &Value) -> f64 {
    let n_layer = plan["llama"]["n_gpu_layers"].as_u64().unwrap() - 1;
    for il in 0..n_layer {
        assert!(
            log.contains(&format!("layer {il:>3} assigned to device RPC0")),
            "{what}: layer {il} not on RPC0:\n{log}"
        );
    }
    let on_cpu: Vec<String> = tensors_in(plan, "ram")
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.contains("_exps"))
        .collect();
    for name in &on_cpu {
        assert!(
            log.contains(&format!("tensor {name} (")),
            "{what}: {name} was not kept on the CPU:\n{log}"
        );
    }
    let overridden = log.matches("buffer type overridden to CPU").count();
    assert_eq!(overridden, on_cpu.len(), "{what}:\n{log}");
    let want =
        tensors_in(plan, "vram").iter().map(|(_, b)| b).sum::<u64>() as f64 / (1024.0 * 1024.0);
    let rpc_model = log
        .lines()
        .find(|l| l.contains("RPC0[") && l.contains("model buffer size"))
        .unwrap_or_else(|| panic!("{what}: no RPC0 model buffer:\n{log}"));
    let got: f64 = rpc_model
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches("MiB")
        .trim()
        .parse()
        .unwrap();
    assert!(
        (got - want).abs() < 0.05,
        "{what}: RPC0 model buffer {got} MiB, plan {want} MiB"
    );
    got
}

pub fn tensors_in(plan: &Value, tier: &str) -> Vec<(String, u64)> {
    plan["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["tier"] == tier)
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

pub fn mib_after(log: &str, needle: &str) -> f64 {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split('=').nth(1))
        .filter_map(|v| v.trim().trim_end_matches("MiB").trim().parse::<f64>().ok())
        .sum()
}

/// The arguments that plan a command on the RPC device (`rpc-test-gpu`) with `vram`
/// of it, or CPU only when `endpoint` is `None`.
pub fn rpc_placement(endpoint: Option<&str>, vram: u64) -> Vec<String> {
    let mut args = vec!["--profile".to_string(), "rpc-test-gpu".to_string()];
    match endpoint {
        Some(ep) => args.extend(["--rpc".into(), ep.into(), "--vram".into(), vram.to_string()]),
        None => args.extend(["--vram".into(), "0".into()]),
    }
    args
}
