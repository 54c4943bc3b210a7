//! `edge plan` on a model that is not downloaded: the header comes over HTTP Range
//! requests from the Hugging Face stand-in on 127.0.0.1, and nothing is installed.

mod common;
mod pull_support;

use std::sync::Arc;

use common::*;
use edge::synth::fullsize::{write_header_only, FullSizeModel};
use pull_support::*;
use serde_json::Value;

/// The header-only Qwen3-30B-A3B fixture (its tensor data would be 18 GB): the reader
/// must take it from Range requests and accept that the data is not there.
fn remote_file() -> Vec<u8> {
    let path = scratch().join("remote-qwen3-30b.gguf");
    write_header_only(FullSizeModel::Qwen3_30bA3b, &path).unwrap();
    std::fs::read(&path).unwrap()
}

#[test]
fn plans_a_remote_model_from_its_header_alone() {
    let hub = FakeHub::start();
    let data = remote_file();
    hub.put_repo(FakeRepo::new(
        "someone/Qwen3-30B-A3B-GGUF",
        9,
        vec![FakeFile::lfs(
            "Qwen3-30B-A3B-Q4_K_M.gguf",
            Arc::new(data.clone()),
        )],
    ));
    let home = tempfile::tempdir().unwrap();
    let hf = tempfile::tempdir().unwrap();
    let plan = |args: &[&str]| {
        edge()
            .env("EDGE_HOME", home.path())
            .env("HF_HOME", hf.path())
            .env("HF_ENDPOINT", &hub.url)
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .args(args)
            .output()
            .unwrap()
    };
    let o = plan(&[
        "plan",
        "hf.co/someone/Qwen3-30B-A3B-GGUF:Q4_K_M",
        "--profile",
        "rtx4060-8gb",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(p["fits"], true);
    assert_eq!(p["tensors"].as_array().unwrap().len(), 579);
    // Only the header travelled.
    let fetched = hub.file_bytes();
    assert!(
        fetched > 0 && fetched < 16 << 20,
        "fetched {fetched} bytes of {}",
        data.len()
    );
    // Nothing was installed.
    let o = edge()
        .env("EDGE_HOME", home.path())
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list.as_array().map(|a| a.len()), Some(0), "{list}");

    // The text form names the quant it planned.
    let o = plan(&[
        "plan",
        "hf.co/someone/Qwen3-30B-A3B-GGUF",
        "--profile",
        "rtx4060-8gb",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Q4_K_M"), "{}", stdout(&o));

    // Offline, a model that is not here cannot be planned: one clear line.
    let o = edge()
        .env("EDGE_HOME", home.path())
        .env("HF_HOME", hf.path())
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "plan",
            "hf.co/someone/Qwen3-30B-A3B-GGUF",
            "--profile",
            "rtx4060-8gb",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&o, "offline");
}
