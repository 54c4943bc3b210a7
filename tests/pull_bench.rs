//! Download benchmark: against a local server that throttles each connection, the
//! parallel download must reach at least 3x the rate of a single stream.
//!
//! Sizes: `EDGE_BENCH_MIB` (default 4) at `EDGE_BENCH_KIB_PER_S` per connection
//! (default 2048); `scripts/bench-download.sh` runs a larger case and prints the figure.

mod pull_support;

use std::sync::Arc;
use std::time::Instant;

use edge::hub::api::HubClient;
use edge::hub::download::{download, DownloadOptions, Target};
use edge::hub::names::RepoId;
use indicatif::ProgressBar;
use pull_support::*;

fn env_u64(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn timed(hub: &FakeHub, repo: &FakeRepo, opts: &DownloadOptions, sha: &str, size: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(sha);
    let client = HubClient::new(hub.url.clone(), None, opts);
    let id = RepoId::parse(&repo.id).unwrap();
    let path = repo.files[0].path.clone();
    let resolve = || -> anyhow::Result<Target> {
        let r = client.resolve(&id, &repo.commit, &path)?;
        Ok(Target {
            url: r.url,
            auth: r.auth,
        })
    };
    let t = Instant::now();
    let report = download(
        client.agent(),
        &resolve,
        &dest,
        size,
        sha,
        opts,
        &ProgressBar::hidden(),
    )
    .expect("download");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(report.fetched, size);
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), size);
    secs
}

#[test]
fn parallel_download_is_at_least_3x_a_single_stream() {
    let mib = env_u64("EDGE_BENCH_MIB", 4);
    let kib_per_s = env_u64("EDGE_BENCH_KIB_PER_S", 2048);
    let connections = env_u64("EDGE_BENCH_CONNECTIONS", 8) as usize;
    let size = mib * 1024 * 1024;
    let data = Arc::new(pseudo_random(size as usize, 99));
    let sha = sha256_hex(&data);
    let hub = FakeHub::start();
    let repo = FakeRepo::new(
        "bench/bench-GGUF",
        9,
        vec![FakeFile::lfs("B-Q4_0.gguf", data)],
    );
    hub.put_repo(repo.clone());
    hub.set_faults(Faults {
        throttle_bps: Some(kib_per_s * 1024),
        ..Default::default()
    });

    let single = DownloadOptions {
        connections: 1,
        ..Default::default()
    };
    let parallel = DownloadOptions {
        connections,
        min_chunk: (size / (connections as u64 * 4)).clamp(64 * 1024, 8 * 1024 * 1024),
        ..Default::default()
    };
    let t1 = timed(&hub, &repo, &single, &sha, size);
    let tn = timed(&hub, &repo, &parallel, &sha, size);
    let rate = |t: f64| size as f64 / t / (1024.0 * 1024.0);
    let ratio = t1 / tn;
    println!(
        "download benchmark: {mib} MiB, {kib_per_s} KiB/s per connection: single stream {:.2} MiB/s ({t1:.2} s), {connections} connections {:.2} MiB/s ({tn:.2} s): {ratio:.1}x",
        rate(t1),
        rate(tn)
    );
    assert!(ratio >= 3.0, "parallel is only {ratio:.2}x a single stream");
}
