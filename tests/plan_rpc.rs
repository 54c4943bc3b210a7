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
        // Everything fits in 1 GiB; then take one MoE layer's experts (less a KiB) away
        // so the plan must keep some experts on the CPU.
        let (vram, plan) = tight_plan(home, model, &["--ctx", "512", "--kv-type", "f16"]);

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
            ];
            let placement = rpc_placement(rpc.then_some(endpoint.as_str()), vram);
            args.extend(placement.iter().map(String::as_str));
            args.extend_from_slice(&[model, "Tell me a story about a dragon."]);
            let o = edge().env("EDGE_HOME", home).args(&args).output().unwrap();
            assert!(o.status.success(), "{arch} rpc={rpc}: {}", stderr(&o));
            (stdout(&o), stderr(&o))
        };
        let (rpc_out, log) = run(true);
        let (cpu_out, cpu_log) = run(false);

        // Every layer and the output run on RPC0, the experts the plan keeps in RAM (and
        // only those) are overridden to the CPU, RPC0 holds exactly the VRAM tensors.
        let got = assert_log_applies_plan(&arch.to_string(), &log, &plan);
        let rpc_mib = mib_after(&log, "RPC0[");
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
    // `edge plan` registers the devices it is given too, rather than ignoring them.
    let o = run_edge(&["plan", "--rpc", "nonsense", model.to_str().unwrap()]);
    assert_clean_failure(&o, "HOST:PORT");
}
