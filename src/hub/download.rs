//! Verified, resumable, parallel downloads of one file.
//!
//! - The file is split into chunks; up to `connections` workers fetch them with HTTP
//!   Range requests into `<dest>.incomplete` (written in place at each offset).
//! - Progress per chunk is saved to `<dest>.incomplete.json` (after an fsync of the
//!   data), so a rerun resumes where the last one stopped.
//! - Every request has a connect timeout and a per-read stall timeout; failures are
//!   retried with exponential backoff, bounded per chunk.
//! - When every chunk is in, the whole file is hashed: only a sha256 match renames it
//!   to `<dest>` (atomic); a mismatch deletes the partial file and fails.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::write_atomic;
use crate::partial_file::ensure_space;

const MIB: u64 = 1024 * 1024;

/// Network and download settings (see [`DownloadOptions::from_env`]).
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Parallel connections for one file.
    pub connections: usize,
    /// Smallest chunk when a file is split across connections.
    pub min_chunk: u64,
    /// Retries per request (per chunk, counted again after a retry that made progress).
    pub retries: u32,
    /// First backoff; doubles per retry up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A read that waits longer than this is a stall: the connection is dropped and
    /// the range retried.
    pub stall: Duration,
    pub connect_timeout: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connections: 8,
            min_chunk: 8 * MIB,
            retries: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            stall: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(20),
        }
    }
}

fn env_num(key: &str, lo: f64, hi: f64) -> Result<Option<f64>> {
    let Some(v) = std::env::var_os(key) else {
        return Ok(None);
    };
    let s = v.to_string_lossy();
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && (lo..=hi).contains(&n) => Ok(Some(n)),
        _ => bail!("{key} must be a number from {lo} to {hi}, got '{s}'"),
    }
}

impl DownloadOptions {
    /// Defaults, overridden by `EDGE_DOWNLOAD_CONNECTIONS` (1–64),
    /// `EDGE_DOWNLOAD_RETRIES` (0–100), `EDGE_DOWNLOAD_BACKOFF_MS`,
    /// `EDGE_DOWNLOAD_STALL_SECS` and `EDGE_DOWNLOAD_MIN_CHUNK_KIB`.
    pub fn from_env() -> Result<DownloadOptions> {
        let mut o = DownloadOptions::default();
        if let Some(n) = env_num("EDGE_DOWNLOAD_CONNECTIONS", 1.0, 64.0)? {
            o.connections = n as usize;
        }
        if let Some(n) = env_num("EDGE_DOWNLOAD_RETRIES", 0.0, 100.0)? {
            o.retries = n as u32;
        }
        if let Some(n) = env_num("EDGE_DOWNLOAD_BACKOFF_MS", 0.0, 600_000.0)? {
            o.backoff = Duration::from_millis(n as u64);
        }
        if let Some(n) = env_num("EDGE_DOWNLOAD_STALL_SECS", 0.1, 3600.0)? {
            o.stall = Duration::from_secs_f64(n);
        }
        if let Some(n) = env_num("EDGE_DOWNLOAD_MIN_CHUNK_KIB", 64.0, 4_194_304.0)? {
            o.min_chunk = n as u64 * 1024;
        }
        Ok(o)
    }

    /// The delay before retry number `attempt` (1-based), with ±25 % jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        exp.mul_f64(0.75 + rand::random::<f64>() * 0.5)
    }

    /// An HTTP agent with these timeouts. Redirects are not followed (the caller
    /// decides where credentials go); status codes are returned, not errors.
    pub fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_per_read(Some(self.stall))
            .timeout_per_write(Some(self.stall))
            .max_idle_connections_per_host(self.connections.max(3) + 1)
            .user_agent(format!("edge/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    }
}

/// Where to fetch the bytes: a URL and, for the Hub's own host only, credentials.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub auth: Option<String>,
}

/// What a download did.
#[derive(Debug, Clone, Default)]
pub struct DownloadReport {
    /// Bytes received over the network in this run.
    pub fetched: u64,
    /// Bytes already there from an earlier, interrupted run.
    pub resumed: u64,
    pub elapsed: Duration,
}

/// The content did not match the LFS sha256 (the partial file is deleted).
#[derive(Debug, thiserror::Error)]
#[error("sha256 mismatch: expected {expected}, got {actual} (the download was discarded)")]
pub struct ShaMismatch {
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    version: u32,
    size: u64,
    sha256: String,
    chunk_size: u64,
    done: Vec<u64>,
}

fn chunk_size_for(size: u64, opts: &DownloadOptions) -> u64 {
    if opts.connections <= 1 || size <= opts.min_chunk {
        return size.max(1);
    }
    let per = size.div_ceil(opts.connections as u64 * 4);
    per.clamp(opts.min_chunk.max(1), (256 * MIB).max(opts.min_chunk))
}

fn sidecar(dest: &Path, suffix: &str) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The partial file of `dest`.
pub fn partial_path(dest: &Path) -> PathBuf {
    sidecar(dest, ".incomplete")
}

/// The progress file of a partial download of `dest`.
pub fn state_path(dest: &Path) -> PathBuf {
    sidecar(dest, ".incomplete.json")
}

fn load_state(dest: &Path, size: u64, sha256: &str) -> Option<State> {
    let text = fs::read_to_string(state_path(dest)).ok()?;
    let st: State = serde_json::from_str(&text).ok()?;
    let plen = fs::metadata(partial_path(dest)).ok()?.len();
    let chunks = size.max(1).div_ceil(st.chunk_size.max(1));
    let ok = st.version == 1
        && st.size == size
        && st.sha256.eq_ignore_ascii_case(sha256)
        && st.chunk_size > 0
        && plen == size
        && st.done.len() as u64 == chunks
        && st
            .done
            .iter()
            .enumerate()
            .all(|(i, d)| *d <= chunk_len(size, st.chunk_size, i));
    ok.then_some(st)
}

fn chunk_len(size: u64, chunk: u64, i: usize) -> u64 {
    let start = i as u64 * chunk;
    chunk.min(size.saturating_sub(start))
}

#[cfg(unix)]
fn write_all_at(f: &File, buf: &[u8], off: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, off)
}

#[cfg(windows)]
fn write_all_at(f: &File, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_write(buf, off)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}

/// Hashes a file, advancing `bar`.
pub fn sha256_file(path: &Path, bar: &ProgressBar) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        h.update(&buf[..n]);
        bar.inc(n as u64);
    }
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

enum Fail {
    /// Try again after a backoff.
    Retry(anyhow::Error),
    /// The URL may have expired: resolve it again, then retry.
    Refresh(anyhow::Error),
    /// Give up now.
    Fatal(anyhow::Error),
}

struct Job<'a> {
    agent: &'a ureq::Agent,
    resolve: &'a (dyn Fn() -> Result<Target> + Sync),
    file: File,
    size: u64,
    chunk: u64,
    done: Vec<AtomicU64>,
    next: AtomicUsize,
    running: AtomicUsize,
    abort: AtomicBool,
    error: Mutex<Option<anyhow::Error>>,
    target: Mutex<Option<Arc<Target>>>,
    fetched: AtomicU64,
    bar: &'a ProgressBar,
    opts: &'a DownloadOptions,
}

struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Job<'_> {
    fn chunk_range(&self, i: usize) -> (u64, u64) {
        (i as u64 * self.chunk, chunk_len(self.size, self.chunk, i))
    }

    fn fail(&self, e: anyhow::Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.abort.store(true, Ordering::SeqCst);
    }

    fn target(&self) -> Result<Arc<Target>> {
        let mut slot = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let t = Arc::new((self.resolve)()?);
        *slot = Some(t.clone());
        Ok(t)
    }

    fn forget_target(&self, old: &Arc<Target>) {
        let mut slot = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|t| Arc::ptr_eq(t, old)) {
            *slot = None;
        }
    }

    fn worker(&self) {
        let _guard = Running(&self.running);
        loop {
            if self.abort.load(Ordering::SeqCst) {
                return;
            }
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.done.len() {
                return;
            }
            if let Err(e) = self.fetch_chunk(i) {
                self.fail(e);
                return;
            }
        }
    }

    fn fetch_chunk(&self, i: usize) -> Result<()> {
        let (_, len) = self.chunk_range(i);
        let mut failures = 0u32;
        loop {
            if self.abort.load(Ordering::SeqCst) || self.done[i].load(Ordering::SeqCst) >= len {
                return Ok(());
            }
            let target = self.target()?;
            let before = self.done[i].load(Ordering::SeqCst);
            let err = match self.attempt(i, &target) {
                Ok(()) => continue,
                Err(Fail::Fatal(e)) => return Err(e),
                Err(Fail::Retry(e)) => e,
                Err(Fail::Refresh(e)) => {
                    self.forget_target(&target);
                    e
                }
            };
            if self.done[i].load(Ordering::SeqCst) > before {
                failures = 0;
            }
            failures += 1;
            if failures > self.opts.retries {
                let tries = self.opts.retries + 1;
                return Err(err.context(format!(
                    "gave up after {tries} attempt{}",
                    if tries == 1 { "" } else { "s" }
                )));
            }
            // Sleep in slices so an abort elsewhere is seen quickly.
            let until = Instant::now() + self.opts.delay(failures);
            while Instant::now() < until && !self.abort.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
            }
        }
    }

    fn attempt(&self, i: usize, t: &Target) -> Result<(), Fail> {
        let (start, len) = self.chunk_range(i);
        let from = start + self.done[i].load(Ordering::SeqCst);
        let to = start + len - 1;
        let mut req = self
            .agent
            .get(&t.url)
            .header("Range", format!("bytes={from}-{to}"));
        if let Some(a) = &t.auth {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|e| match e {
            ureq::Error::BadUri(_) | ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
                Fail::Fatal(anyhow!("{e}"))
            }
            e => Fail::Retry(anyhow!("{}", describe_ureq(&e, self.opts))),
        })?;
        let status = resp.status().as_u16();
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let skip = match status {
            206 => {
                let cr = header("content-range").unwrap_or_default();
                match parse_content_range(&cr) {
                    Some((a, _, total)) if a == from && total.is_none_or(|t| t == self.size) => 0,
                    Some((_, _, Some(total))) if total != self.size => {
                        return Err(Fail::Fatal(anyhow!(
                            "the file on the server is {total} bytes, the listing said {}",
                            self.size
                        )))
                    }
                    _ => {
                        return Err(Fail::Retry(anyhow!(
                            "bad Content-Range '{cr}' for bytes {from}-{to}"
                        )))
                    }
                }
            }
            200 => {
                if let Some(n) = header("content-length").and_then(|v| v.parse::<u64>().ok()) {
                    if n != self.size {
                        return Err(Fail::Fatal(anyhow!(
                            "the file on the server is {n} bytes, the listing said {}",
                            self.size
                        )));
                    }
                }
                // The server ignored Range: skip to our offset.
                from
            }
            401 | 403 | 404 | 410 => {
                return Err(Fail::Refresh(anyhow!(
                    "HTTP {status} from the download URL"
                )))
            }
            408 | 429 | 500..=599 => {
                return Err(Fail::Retry(anyhow!("HTTP {status} from the server")))
            }
            416 => {
                return Err(Fail::Fatal(anyhow!(
                    "the server refused the byte range {from}-{to}"
                )))
            }
            s => {
                return Err(Fail::Fatal(anyhow!(
                    "unexpected HTTP {s} from the download URL"
                )))
            }
        };
        let mut reader = resp.into_body().into_reader();
        if skip > 0 {
            let skipped = io::copy(&mut (&mut reader).take(skip), &mut io::sink())
                .map_err(|e| Fail::Retry(anyhow!("{}", describe_io(&e, self.opts))))?;
            if skipped < skip {
                return Err(Fail::Retry(anyhow!("the connection closed early")));
            }
        }
        let mut pos = from;
        let end = to + 1;
        let mut buf = vec![0u8; 256 * 1024];
        while pos < end {
            if self.abort.load(Ordering::SeqCst) {
                return Ok(());
            }
            let want = buf.len().min((end - pos) as usize);
            let n = match reader.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Fail::Retry(anyhow!(
                        "the connection closed after {} of {} bytes",
                        pos - from,
                        end - from
                    )))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fail::Retry(anyhow!("{}", describe_io(&e, self.opts)))),
            };
            write_all_at(&self.file, &buf[..n], pos)
                .map_err(|e| Fail::Fatal(anyhow!("writing the partial file: {e}")))?;
            pos += n as u64;
            self.done[i].fetch_add(n as u64, Ordering::SeqCst);
            self.fetched.fetch_add(n as u64, Ordering::Relaxed);
            self.bar.inc(n as u64);
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u64> {
        self.done.iter().map(|d| d.load(Ordering::SeqCst)).collect()
    }
}

fn describe_ureq(e: &ureq::Error, opts: &DownloadOptions) -> String {
    match e {
        ureq::Error::Timeout(_) => {
            format!("stalled: no data for {:.1} s", opts.stall.as_secs_f64())
        }
        ureq::Error::Io(io) => describe_io(io, opts),
        e => e.to_string(),
    }
}

fn describe_io(e: &io::Error, opts: &DownloadOptions) -> String {
    let text = e.to_string();
    if e.kind() == io::ErrorKind::TimedOut || text.contains("timeout") {
        format!("stalled: no data for {:.1} s", opts.stall.as_secs_f64())
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        "the connection was cut".to_string()
    } else {
        format!("network error: {text}")
    }
}

/// `bytes A-B/TOTAL` (TOTAL may be `*`).
pub(super) fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let a = a.trim().parse().ok()?;
    let b = b.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a, b, total))
}

fn save_state(job: &Job, dest: &Path, sha256: &str) {
    let done = job.snapshot();
    // Data first, then the claim that it is there.
    if job.file.sync_data().is_err() {
        return;
    }
    let st = State {
        version: 1,
        size: job.size,
        sha256: sha256.to_ascii_lowercase(),
        chunk_size: job.chunk,
        done,
    };
    if let Ok(text) = serde_json::to_string(&st) {
        let _ = write_atomic(&state_path(dest), text.as_bytes());
    }
}

/// Downloads `size` bytes with sha256 `sha256` to `dest`, resuming a partial file.
///
/// `resolve` gives the URL; it is called when the first request is made and again
/// when the URL stops working (401/403/404/410: signed CDN URLs expire).
/// `dest` appears only complete and verified; on failure the partial file and its
/// state stay for the next run, except after a sha256 mismatch (both are deleted).
pub fn download(
    agent: &ureq::Agent,
    resolve: &(dyn Fn() -> Result<Target> + Sync),
    dest: &Path,
    size: u64,
    sha256: &str,
    opts: &DownloadOptions,
    bar: &ProgressBar,
) -> Result<DownloadReport> {
    let started = Instant::now();
    let partial = partial_path(dest);
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let state = match load_state(dest, size, sha256) {
        Some(st) => st,
        None => {
            ensure_space(dest.parent().unwrap_or(Path::new(".")), size)?;
            let f = File::create(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            f.set_len(size)
                .with_context(|| format!("sizing {}", partial.display()))?;
            let chunk = chunk_size_for(size, opts);
            State {
                version: 1,
                size,
                sha256: sha256.to_ascii_lowercase(),
                chunk_size: chunk,
                done: vec![0; size.max(1).div_ceil(chunk) as usize],
            }
        }
    };
    let resumed: u64 = state.done.iter().sum();
    if resumed > 0 {
        ensure_space(dest.parent().unwrap_or(Path::new(".")), size - resumed)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&partial)
        .with_context(|| format!("opening {}", partial.display()))?;
    bar.set_length(size);
    bar.set_position(resumed);
    bar.reset_eta();

    let job = Job {
        agent,
        resolve,
        file,
        size,
        chunk: state.chunk_size,
        done: state.done.iter().map(|d| AtomicU64::new(*d)).collect(),
        next: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        abort: AtomicBool::new(false),
        error: Mutex::new(None),
        target: Mutex::new(None),
        fetched: AtomicU64::new(0),
        bar,
        opts,
    };
    let pending = (0..job.done.len())
        .filter(|&i| job.done[i].load(Ordering::SeqCst) < job.chunk_range(i).1)
        .count();
    if pending > 0 {
        save_state(&job, dest, sha256);
        let workers = opts.connections.max(1).min(pending);
        job.running.store(workers, Ordering::SeqCst);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| job.worker());
            }
            let mut last_save = Instant::now();
            while job.running.load(Ordering::SeqCst) > 0 {
                std::thread::sleep(Duration::from_millis(50));
                if last_save.elapsed() >= Duration::from_secs(2) {
                    save_state(&job, dest, sha256);
                    last_save = Instant::now();
                }
            }
        });
        save_state(&job, dest, sha256);
    }
    let fetched = job.fetched.load(Ordering::SeqCst);
    if let Some(e) = job.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let complete =
        (0..job.done.len()).all(|i| job.done[i].load(Ordering::SeqCst) >= job.chunk_range(i).1);
    if !complete {
        bail!("the download stopped before the end");
    }
    job.file.sync_all().context("flushing the download")?;
    drop(job);

    bar.set_position(0);
    bar.reset_eta();
    let actual = sha256_file(&partial, bar)?;
    if !actual.eq_ignore_ascii_case(sha256) {
        let _ = fs::remove_file(&partial);
        let _ = fs::remove_file(state_path(dest));
        return Err(ShaMismatch {
            expected: sha256.to_ascii_lowercase(),
            actual,
        }
        .into());
    }
    fs::rename(&partial, dest).with_context(|| format!("installing {}", dest.display()))?;
    let _ = fs::remove_file(state_path(dest));
    #[cfg(unix)]
    if let Some(dir) = dest.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(DownloadReport {
        fetched,
        resumed,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking() {
        let mut o = DownloadOptions {
            connections: 1,
            ..Default::default()
        };
        assert_eq!(chunk_size_for(100 * MIB, &o), 100 * MIB);
        o.connections = 8;
        assert_eq!(chunk_size_for(4 * MIB, &o), 4 * MIB);
        assert_eq!(chunk_size_for(100 * MIB, &o), 8 * MIB);
        assert_eq!(chunk_size_for(20_000 * MIB, &o), 256 * MIB);
        assert_eq!(chunk_size_for(0, &o), 1);
        assert_eq!(chunk_len(10, 4, 2), 2);
        assert_eq!(chunk_len(10, 4, 3), 0);
    }

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((0, 9, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes x-1/2"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let o = DownloadOptions {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..Default::default()
        };
        let d1 = o.delay(1);
        assert!(d1 >= Duration::from_millis(75) && d1 <= Duration::from_millis(125));
        let d3 = o.delay(3);
        assert!(d3 >= Duration::from_millis(300) && d3 <= Duration::from_millis(500));
        assert!(o.delay(30) <= Duration::from_millis(1250));
    }

    #[test]
    fn state_is_only_trusted_when_it_matches() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob");
        let sha = "a".repeat(64);
        fs::write(partial_path(&dest), vec![0u8; 10]).unwrap();
        let st = State {
            version: 1,
            size: 10,
            sha256: sha.clone(),
            chunk_size: 4,
            done: vec![4, 1, 0],
        };
        fs::write(state_path(&dest), serde_json::to_string(&st).unwrap()).unwrap();
        assert!(load_state(&dest, 10, &sha).is_some());
        assert!(load_state(&dest, 11, &sha).is_none());
        assert!(load_state(&dest, 10, &"b".repeat(64)).is_none());
        let bad = State {
            done: vec![5, 0, 0],
            ..st
        };
        fs::write(state_path(&dest), serde_json::to_string(&bad).unwrap()).unwrap();
        assert!(load_state(&dest, 10, &sha).is_none());
    }
}
