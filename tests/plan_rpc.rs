//! Acceptance: the plan is really applied on a second device without a GPU. An
//! `edge rpc-server` on 127.0.0.1 serves this machine's CPU as a ggml RPC device; the
//! tensors the plan puts in "VRAM" are allocated on it (RPC0), the experts it keeps in
//! RAM on the CPU, as llama.cpp's own load log reports, and greedy output is identical
//! to a CPU-only run.

mod common;

use std::net::TcpListener;

use common::rpc::*;
use common::*;
use edge::synth::SynthArch;

#[test]
fn plan_is_applied_on_an_rpc_device_and_output_matches_cpu() {
    let (_server, endpoint) = start_rpc_server();
    let home = profile_home();
    for arch in [SynthArch::Qwen3Moe, SynthArch::Llama4] {
        let model = synth_model(arch);
        let model = model.to_str().unwrap();
        // Everything fits in 1 GiB; then take one MoE layer's experts (minus a byte) away
        // so the plan must keep some experts on the CPU.
        let roomy = plan_json(home, model, 1 << 30, &[]);
        let experts: Vec<(String, u64)> = tensors_in(&roomy, "vram")
            .into_iter()
            .filter(|(n, _)| n.contains("_exps"))
            .collect();
        assert!(!experts.is_empty(), "{arch}: no experts in VRAM with 1 GiB");
        let last_layer_experts: u64 = {
            let last = experts
                .last()
                .unwrap()
                .0
                .split('.')
                .nth(1)
                .unwrap()
                .to_string();
            experts
                .iter()
                .filter(|(n, _)| n.split('.').nth(1) == Some(last.as_str()))
                .map(|(_, b)| b)
                .sum()
        };
        let vram = roomy["tiers"]["vram"]["used"].as_u64().unwrap() - last_layer_experts + 1024;
        let plan = plan_json(home, model, vram, &[]);
        assert_eq!(plan["fits"], true);
        let n_layer = plan["llama"]["n_gpu_layers"].as_u64().unwrap() - 1;
        let on_cpu: Vec<String> = tensors_in(&plan, "ram")
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.contains("_exps"))
            .collect();
        assert!(
            !on_cpu.is_empty(),
            "{arch}: the tight plan kept every expert in VRAM"
        );
        let vram_bytes: u64 = tensors_in(&plan, "vram").iter().map(|(_, b)| b).sum();

        let run = |rpc: bool| {
            let mut args = vec![
                "run",
                "-v",
                "--ctx",
                "512",
                "--kv-type",
                "f16",
                "--temp",
                "0",
                "--max-tokens",
                "24",
                "--profile",
                "rpc-test-gpu",
            ];
            let vram_s = vram.to_string();
            if rpc {
                args.extend_from_slice(&["--rpc", &endpoint, "--vram", &vram_s]);
            } else {
                args.extend_from_slice(&["--vram", "0"]);
            }
            args.extend_from_slice(&[model, "Tell me a story about a dragon."]);
            let o = edge().env("EDGE_HOME", home).args(&args).output().unwrap();
            assert!(o.status.success(), "{arch} rpc={rpc}: {}", stderr(&o));
            (stdout(&o), stderr(&o))
        };
        let (rpc_out, log) = run(true);
        let (cpu_out, cpu_log) = run(false);

        // Every layer and the output run on RPC0.
        for il in 0..n_layer {
            assert!(
                log.contains(&format!("layer {il:>3} assigned to device RPC0")),
                "{arch}: layer {il} not on RPC0:\n{log}"
            );
        }
        // The experts the plan keeps in RAM are overridden to the CPU, and only those.
        for name in &on_cpu {
            assert!(
                log.contains(&format!("tensor {name} ("))
                    && log.contains("buffer type overridden to CPU"),
                "{arch}: {name} was not kept on the CPU:\n{log}"
            );
        }
        let overridden = log.matches("buffer type overridden to CPU").count();
        assert_eq!(overridden, on_cpu.len(), "{arch}:\n{log}");
        // RPC0 holds exactly the plan's VRAM tensors.
        let rpc_mib = mib_after(&log, "RPC0[");
        let want = vram_bytes as f64 / (1024.0 * 1024.0);
        let rpc_model = log
            .lines()
            .find(|l| l.contains("RPC0[") && l.contains("model buffer size"))
            .unwrap_or_else(|| panic!("{arch}: no RPC0 model buffer:\n{log}"));
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
            "{arch}: RPC0 model buffer {got} MiB, plan {want} MiB"
        );
        assert!(rpc_mib > got, "{arch}: no KV/compute on RPC0");
        assert!(!cpu_log.contains("RPC0"), "{arch}: CPU-only run used RPC");

        assert!(!rpc_out.is_empty());
        assert_eq!(
            rpc_out, cpu_out,
            "{arch}: greedy output differs between RPC and CPU"
        );
    }
}

#[test]
fn unreachable_rpc_server_is_a_clean_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let model = synth_model(SynthArch::Qwen3Moe);
    let o = run_edge(&[
        "run",
        "--rpc",
        &format!("127.0.0.1:{port}"),
        model.to_str().unwrap(),
        "hi",
    ]);
    assert_clean_failure(&o, "RPC server");
    let o = run_edge(&["run", "--rpc", "nonsense", model.to_str().unwrap(), "hi"]);
    assert_clean_failure(&o, "HOST:PORT");
}
