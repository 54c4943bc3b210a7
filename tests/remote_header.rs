//! `edge::hub::remote_header`: a remote GGUF's header read with HTTP Range requests from
//! the in-process Hugging Face stand-in (tests/pull_support) on 127.0.0.1.

mod pull_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edge::catalog::Catalog;
use edge::gguf_info::GgufFile;
use edge::hub::api::HubClient;
use edge::hub::download::DownloadOptions;
use edge::hub::names::{ModelRef, RepoId};
use edge::hub::remote_header::{
    fetch_remote_header, remote_header_for, remote_header_with, RangeLimits, RemoteHeader,
};
use edge::synth::fullsize::{write_header_only, FullSizeModel};
use edge::synth::{write_gguf, SynthArch, SynthSpec};
use pull_support::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn net() -> DownloadOptions {
    DownloadOptions {
        retries: 2,
        backoff: Duration::from_millis(10),
        stall: Duration::from_secs(10),
        ..Default::default()
    }
}

fn client(hub: &FakeHub) -> HubClient {
    HubClient::new(hub.url.clone(), None, &net())
}

/// A synthetic qwen3moe of about 28 MB (8 layers) with a ~10 KB header.
fn big_model(dir: &Path) -> Vec<u8> {
    let mut spec = SynthSpec::new(SynthArch::Qwen3Moe);
    spec.n_layer = 8;
    let path = dir.join("moe.gguf");
    write_gguf(&spec, &path).unwrap();
    std::fs::read(path).unwrap()
}

fn fixture(dir: &Path, m: FullSizeModel) -> Vec<u8> {
    let path = dir.join(format!("{m}.gguf"));
    write_header_only(m, &path).unwrap();
    std::fs::read(path).unwrap()
}

fn serve(hub: &FakeHub, repo: &str, files: &[(&str, &[u8])]) {
    let files = files
        .iter()
        .map(|(p, d)| FakeFile::lfs(p, Arc::new(d.to_vec())))
        .collect();
    hub.put_repo(FakeRepo::new(repo, 7, files));
}

fn fetch(
    hub: &FakeHub,
    repo: &str,
    path: &str,
    limits: RangeLimits,
) -> anyhow::Result<RemoteHeader> {
    let repo = RepoId::parse(repo).unwrap();
    fetch_remote_header(&client(hub), &net(), &repo, "main", path, limits)
}

fn parse_header(bytes: &[u8]) -> GgufFile {
    GgufFile::parse_header(bytes).unwrap()
}

/// Same metadata, tensor table and layout.
fn assert_same_header(remote: &GgufFile, local: &GgufFile) {
    assert_eq!(remote.version, local.version);
    assert_eq!(remote.alignment, local.alignment);
    assert_eq!(remote.data_offset, local.data_offset);
    assert_eq!(remote.metadata, local.metadata);
    assert_eq!(remote.tensors.len(), local.tensors.len());
    for (r, l) in remote.tensors.iter().zip(&local.tensors) {
        assert_eq!(
            (&r.name, &r.dims, r.ggml_type, r.offset, r.bytes),
            (&l.name, &l.dims, l.ggml_type, l.offset, l.bytes)
        );
    }
}

const SMALL_START: RangeLimits = RangeLimits {
    initial: KIB,
    max: 256 * MIB,
};

#[test]
fn range_requests_read_only_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let data = big_model(dir.path());
    let hub = FakeHub::start();
    serve(&hub, "test/Moe-GGUF", &[("moe-F16.gguf", &data)]);

    let h = fetch(&hub, "test/Moe-GGUF", "moe-F16.gguf", SMALL_START).unwrap();
    let local = GgufFile::open(&dir.path().join("moe.gguf")).unwrap();
    assert_same_header(&h.gguf, &local);
    assert_eq!(
        h.gguf.file_size,
        data.len() as u64,
        "the size on the server"
    );
    assert!(!h.gguf.is_header_only());
    assert_eq!(h.files, ["moe-F16.gguf"]);
    assert_eq!(h.revision, "main");

    // 1 KiB, then doubling (or straight to what the parser asked for) up to the ~10 KB
    // header: a few requests and a tiny fraction of the 28 MB file.
    let ranges = hub.ranges();
    assert_eq!(ranges[0], "bytes=0-1023");
    assert!(ranges.len() >= 2 && ranges.len() <= 8, "{ranges:?}");
    assert_eq!(h.requests as usize, ranges.len());
    for w in ranges.windows(2) {
        // Each request continues where the last one stopped.
        let end = |r: &str| r.rsplit('-').next().unwrap().parse::<u64>().unwrap();
        let start = |r: &str| {
            r.trim_start_matches("bytes=")
                .split('-')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(start(&w[1]), end(&w[0]) + 1, "{ranges:?}");
    }
    // The server counts a piece after sending it, so its count may lag, never lead.
    assert!(hub.file_bytes() <= h.bytes_fetched);
    assert!(
        h.bytes_fetched < 64 * KIB && h.bytes_fetched * 100 < data.len() as u64,
        "{} of {} bytes",
        h.bytes_fetched,
        data.len()
    );
}

#[test]
fn full_size_fixtures_come_back_with_the_default_range() {
    let dir = tempfile::tempdir().unwrap();
    let hub = FakeHub::start();
    for m in [FullSizeModel::Qwen3_235bA22b, FullSizeModel::Llama4Maverick] {
        let data = fixture(dir.path(), m);
        let repo = format!("test/{m}");
        let file = format!("{m}-Q4_K_M.gguf");
        serve(&hub, &repo, &[(&file, &data)]);
        let before = hub.ranges().len();
        let h = fetch(&hub, &repo, &file, RangeLimits::default()).unwrap();
        assert_same_header(&h.gguf, &parse_header(&data));
        assert!(h.gguf.is_header_only(), "{m}");
        let ranges = hub.ranges()[before..].to_vec();
        assert_eq!(ranges[0], "bytes=0-4194303", "{m}");
        if data.len() as u64 > 4 * MIB {
            // Llama 4's header (202,048 tokens) is over 4 MiB: a second request for the rest.
            assert_eq!(ranges.len(), 2, "{m}: {ranges:?}");
            assert!(ranges[1].starts_with("bytes=4194304-"), "{ranges:?}");
        } else {
            assert_eq!(ranges.len(), 1, "{m}: {ranges:?}");
        }
        assert_eq!(
            h.bytes_fetched,
            data.len() as u64,
            "{m}: the whole header, no more"
        );
    }
}

#[test]
fn a_server_that_ignores_range_is_read_only_as_far_as_needed() {
    let dir = tempfile::tempdir().unwrap();
    let data = big_model(dir.path());
    let hub = FakeHub::start();
    serve(&hub, "test/Moe-GGUF", &[("moe-F16.gguf", &data)]);
    hub.set_faults(Faults {
        ignore_range: true,
        ..Default::default()
    });
    let h = fetch(&hub, "test/Moe-GGUF", "moe-F16.gguf", SMALL_START).unwrap();
    assert_same_header(&h.gguf, &parse_header(&data));
    assert_eq!(h.gguf.file_size, data.len() as u64);
    // One response (200, the whole file), read while the header grew, then dropped.
    assert_eq!(h.requests, 1);
    assert_eq!(hub.ranges(), ["bytes=0-1023"]);
    assert!(h.bytes_fetched < 64 * KIB, "{}", h.bytes_fetched);
}

#[test]
fn truncated_and_corrupt_remote_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = big_model(dir.path());
    let header_len = parse_header(&data).data_offset as usize;
    let mut huge_key = data.clone();
    // The first metadata key's length (after magic, version and the two counts): 2^40.
    huge_key[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let hub = FakeHub::start();
    serve(
        &hub,
        "test/Bad-GGUF",
        &[
            ("cut-in-header.gguf", &data[..header_len / 2]),
            ("cut-in-data.gguf", &data[..data.len() / 2]),
            ("not-gguf.gguf", &pseudo_random(100_000, 3)),
            ("huge-key.gguf", &huge_key),
            ("empty.gguf", b""),
        ],
    );
    let err = |path: &str, limits: RangeLimits| {
        let e = fetch(&hub, "test/Bad-GGUF", path, limits).unwrap_err();
        format!("{e:#}")
    };
    let e = err("cut-in-header.gguf", SMALL_START);
    assert!(e.contains("ends inside its GGUF header"), "{e}");
    assert!(e.contains("test/Bad-GGUF/cut-in-header.gguf"), "{e}");
    let e = err("cut-in-header.gguf", RangeLimits::default());
    assert!(e.contains("ends inside its GGUF header"), "{e}");
    let e = err("cut-in-data.gguf", SMALL_START);
    assert!(
        e.contains("truncated") && e.contains("on the server"),
        "{e}"
    );
    let e = err("not-gguf.gguf", SMALL_START);
    assert!(e.contains("not a GGUF file"), "{e}");
    let before = hub.ranges().len();
    let e = err("huge-key.gguf", SMALL_START);
    assert!(e.contains("longer than 256 MiB"), "{e}");
    // Gave up after the first 1 KiB, without asking for more.
    assert_eq!(hub.ranges()[before..], ["bytes=0-1023"]);
    let e = err("empty.gguf", SMALL_START);
    assert!(e.contains("empty"), "{e}");
    let e = err("missing.gguf", SMALL_START);
    assert!(e.contains("not found"), "{e}");
}

/// A GGUF by hand: `kv` as (key, GGUF type, value bytes), F32 tensors with zero data.
fn gguf_bytes(kv: &[(&str, u32, Vec<u8>)], tensors: &[(&str, Vec<u64>)]) -> Vec<u8> {
    fn s(b: &mut Vec<u8>, v: &str) {
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, ty, v) in kv {
        s(&mut b, k);
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(v);
    }
    let mut offset = 0u64;
    for (name, dims) in tensors {
        s(&mut b, name);
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        offset += (dims.iter().product::<u64>() * 4).div_ceil(32) * 32;
    }
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.resize(b.len() + offset as usize, 0);
    b
}

fn split_shard(no: u16, count: u16, n_tensors: i32, names: &[&str], no_is: u16) -> Vec<u8> {
    let str_val = |v: &str| {
        let mut b = (v.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(v.as_bytes());
        b
    };
    let mut kv = Vec::new();
    if no == 0 {
        kv.push(("general.architecture", 8, str_val("llama")));
        kv.push(("llama.block_count", 4, 3u32.to_le_bytes().to_vec()));
    }
    kv.push(("split.no", 2, no_is.to_le_bytes().to_vec()));
    kv.push(("split.count", 2, count.to_le_bytes().to_vec()));
    kv.push(("split.tensors.count", 5, n_tensors.to_le_bytes().to_vec()));
    let tensors: Vec<(&str, Vec<u64>)> = names.iter().map(|n| (*n, vec![64, 4])).collect();
    gguf_bytes(&kv, &tensors)
}

#[test]
fn split_models_merge_every_shard() {
    let hub = FakeHub::start();
    let names = [
        ["token_embd.weight", "blk.0.attn_q.weight"],
        ["blk.1.attn_q.weight", "blk.1.attn_k.weight"],
        ["blk.2.attn_q.weight", "output.weight"],
    ];
    let shards: Vec<Vec<u8>> = (0..3)
        .map(|i| split_shard(i, 3, 6, &names[i as usize], i))
        .collect();
    let paths: Vec<String> = (1..=3)
        .map(|i| format!("Q4_K_M/S-Q4_K_M-{i:05}-of-00003.gguf"))
        .collect();
    let mut files: Vec<(&str, &[u8])> = paths
        .iter()
        .map(String::as_str)
        .zip(shards.iter().map(Vec::as_slice))
        .collect();
    files.push(("S-Q8_0.gguf", &shards[0]));
    serve(&hub, "test/Split-GGUF", &files);
    let total: u64 = shards.iter().map(|s| s.len() as u64).sum();

    // Through the resolver, as `edge pull` would choose (Q4_K_M before Q8_0).
    let catalog = Catalog::builtin().unwrap();
    let r = ModelRef::parse("hf.co/test/Split-GGUF", |_| false).unwrap();
    let h = remote_header_with(&r, &catalog, &client(&hub), &net(), false, SMALL_START).unwrap();
    assert_eq!(h.files, paths);
    assert_eq!(h.quant, "Q4_K_M");
    let got: Vec<&str> = h.gguf.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(got, names.concat());
    assert_eq!(h.gguf.file_size, total);
    assert_eq!(h.gguf.architecture(), Some("llama"));
    assert_eq!(h.revision, "07".repeat(20), "pinned to the commit");

    // From the first shard's path alone: split.count names the others.
    let h2 = fetch(&hub, "test/Split-GGUF", &paths[0], SMALL_START).unwrap();
    assert_eq!(h2.files, paths);
    assert_eq!(h2.gguf.tensors.len(), 6);

    // A shard that claims the wrong place in the set.
    let bad = split_shard(1, 3, 6, &names[1], 5);
    let mut files2 = files.clone();
    files2[1] = (paths[1].as_str(), &bad);
    serve(&hub, "test/Split-GGUF", &files2);
    let e =
        remote_header_with(&r, &catalog, &client(&hub), &net(), false, SMALL_START).unwrap_err();
    assert!(
        format!("{e:#}").contains("split metadata says shard 5 of 3"),
        "{e:#}"
    );
}

#[test]
fn quant_choice_follows_pull() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path(), FullSizeModel::Qwen3_30bA3b);
    let other = big_model(dir.path());
    let hub = FakeHub::start();
    serve(
        &hub,
        "Qwen/Qwen3-30B-A3B-GGUF",
        &[
            ("Qwen3-30B-A3B-Q8_0.gguf", &other),
            ("Qwen3-30B-A3B-Q4_K_M.gguf", &data),
        ],
    );
    let catalog = Catalog::builtin().unwrap();
    let get = |s: &str| {
        let r = ModelRef::parse(s, |_| false).unwrap();
        remote_header_with(
            &r,
            &catalog,
            &client(&hub),
            &net(),
            false,
            RangeLimits::default(),
        )
    };
    let h = get("qwen3-30b-a3b").unwrap();
    assert_eq!(h.files, ["Qwen3-30B-A3B-Q4_K_M.gguf"]);
    assert_eq!(h.gguf.arch_u64("block_count"), Some(48));
    assert_eq!(h.repo.to_string(), "Qwen/Qwen3-30B-A3B-GGUF");
    let h = get("qwen3-30b-a3b:q8_0").unwrap();
    assert_eq!(h.quant, "Q8_0");
    assert_eq!(h.gguf.arch_u64("block_count"), Some(8));
    let h = get("hf.co/Qwen/Qwen3-30B-A3B-GGUF").unwrap();
    assert_eq!(h.quant, "Q4_K_M");
    let e = format!("{:#}", get("qwen3-30b-a3b:Q2_K").unwrap_err());
    assert!(e.contains("no Q2_K GGUF") && e.contains("Q4_K_M"), "{e}");
    let e = format!("{:#}", get("not-a-model").unwrap_err());
    assert!(e.contains("unknown model"), "{e}");
    let e = format!("{:#}", get("hf.co/nobody/Nothing-GGUF").unwrap_err());
    assert!(e.contains("nobody/Nothing-GGUF"), "{e}");
    // Offline: a clear error before any request.
    let before = hub.api_requests();
    let r = ModelRef::parse("qwen3-30b-a3b", |_| false).unwrap();
    let e = remote_header_with(
        &r,
        &catalog,
        &client(&hub),
        &net(),
        true,
        RangeLimits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("HF_HUB_OFFLINE=1"), "{e}");
    assert_eq!(hub.api_requests(), before);
}

/// The environment entry point (`HF_ENDPOINT`, `HF_HUB_OFFLINE`). The only test here that
/// touches the environment; the others inject everything.
#[test]
fn remote_header_for_reads_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path(), FullSizeModel::Llama4Scout);
    let hub = FakeHub::start();
    serve(
        &hub,
        "unsloth/Llama-4-Scout-17B-16E-Instruct-GGUF",
        &[("Llama-4-Scout-17B-16E-Instruct-Q4_K_M.gguf", &data)],
    );
    std::env::set_var("HF_ENDPOINT", &hub.url);
    std::env::set_var("HF_HOME", dir.path());
    std::env::set_var("EDGE_HOME", dir.path());
    std::env::set_var("EDGE_DOWNLOAD_RETRIES", "1");
    for k in [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "EDGE_CATALOG",
    ] {
        std::env::remove_var(k);
    }
    // The catalog's first repo for llama4-scout (unsloth) answers.
    let (name, g) = remote_header_for("llama4-scout").unwrap();
    assert_eq!(name, "llama4-scout:Q4_K_M");
    assert_same_header(&g, &parse_header(&data));
    let (name, _) = remote_header_for("hf.co/unsloth/Llama-4-Scout-17B-16E-Instruct-GGUF").unwrap();
    assert_eq!(
        name,
        "hf.co/unsloth/Llama-4-Scout-17B-16E-Instruct-GGUF:Q4_K_M"
    );

    std::env::set_var("HF_HUB_OFFLINE", "1");
    let before = hub.api_requests() + hub.resolve_requests() + hub.cdn_requests();
    for r in [
        "llama4-scout",
        "hf.co/unsloth/Llama-4-Scout-17B-16E-Instruct-GGUF",
    ] {
        let e = remote_header_for(r).unwrap_err().to_string();
        assert!(e.contains("offline mode (HF_HUB_OFFLINE=1)"), "{e}");
    }
    assert_eq!(
        hub.api_requests() + hub.resolve_requests() + hub.cdn_requests(),
        before
    );
    std::env::remove_var("HF_HUB_OFFLINE");
    let e = remote_header_for("./missing.gguf").unwrap_err().to_string();
    assert!(e.contains("file path"), "{e}");
}
