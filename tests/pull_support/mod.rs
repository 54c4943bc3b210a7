//! An in-process stand-in for the Hugging Face Hub on 127.0.0.1, for the pull tests
//! and the download benchmark. It implements what edge calls, with the Hub's shapes:
//!
//! - `GET /api/models/{org}/{repo}/revision/{rev}` → `{"id", "sha", "siblings", …}`;
//! - `GET /api/models/{org}/{repo}/tree/{rev}?recursive=true` → entries
//!   `{"type","oid","size","path","lfs":{"oid","size","pointerSize"}}`, paginated with
//!   `Link: <…>; rel="next"` when a repo sets `page_size`;
//! - `HEAD|GET /{org}/{repo}/resolve/{rev}/{path}` → 302 to `/cdn/…` for LFS files with
//!   `X-Repo-Commit`, `ETag`, `X-Linked-Etag` (the sha256, quoted), `X-Linked-Size`;
//! - `GET /cdn/…` → the bytes, with `Range` (206 + `Content-Range`), or the whole file
//!   (200) when the `ignore_range` fault is set;
//! - errors as the Hub sends them: 401 (`X-Error-Code: RepoNotFound` without a token,
//!   `GatedRepo`), 403, 404 (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`).
//!
//! Faults for the tests: a per-connection throttle, a cut after N file bytes (then the
//! CDN drops every connection), stalls, and 5xx storms. Counters say what was served.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift), for files whose content is not read.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Clone)]
pub struct FakeFile {
    pub path: String,
    /// What the CDN serves.
    pub data: Arc<Vec<u8>>,
    /// The sha256 the listing (and `X-Linked-Etag`) claims.
    pub sha256: String,
    /// Stored with LFS (every GGUF on the Hub is).
    pub lfs: bool,
}

impl FakeFile {
    /// An LFS file whose listing matches its bytes.
    pub fn lfs(path: &str, data: Arc<Vec<u8>>) -> FakeFile {
        FakeFile {
            path: path.into(),
            sha256: sha256_hex(&data),
            data,
            lfs: true,
        }
    }

    /// An LFS file with a precomputed sha256 (or a wrong one, to corrupt on purpose).
    pub fn lfs_with_sha(path: &str, data: Arc<Vec<u8>>, sha256: &str) -> FakeFile {
        FakeFile {
            path: path.into(),
            sha256: sha256.into(),
            data,
            lfs: true,
        }
    }

    /// A small file kept in git (README, config).
    pub fn git(path: &str, data: &[u8]) -> FakeFile {
        FakeFile {
            path: path.into(),
            sha256: sha256_hex(data),
            data: Arc::new(data.to_vec()),
            lfs: false,
        }
    }
}

#[derive(Clone)]
pub struct FakeRepo {
    pub id: String,
    pub commit: String,
    pub files: Vec<FakeFile>,
    /// Gated: resolve needs `Authorization: Bearer <token>`.
    pub gated_token: Option<String>,
    /// Entries per tree page (0: one page).
    pub page_size: usize,
}

impl FakeRepo {
    pub fn new(id: &str, commit_seed: u8, files: Vec<FakeFile>) -> FakeRepo {
        FakeRepo {
            id: id.into(),
            commit: format!("{:02x}", commit_seed).repeat(20),
            files,
            gated_token: None,
            page_size: 0,
        }
    }
}

#[derive(Clone, Default)]
pub struct Faults {
    /// Bytes per second per connection on the CDN.
    pub throttle_bps: Option<u64>,
    /// After this many file bytes in total, the connection is cut and the CDN goes
    /// down (drops every new connection) until the faults are changed.
    pub cut_after: Option<u64>,
    /// The CDN drops every connection.
    pub cdn_down: bool,
    /// Every request (API, resolve, CDN) answers this status.
    pub storm: Option<u16>,
    /// The first `n` CDN requests answer `status`.
    pub cdn_errors: Option<(u16, u32)>,
    /// The first `n` CDN responses stop sending after `after` bytes (and hang).
    pub stall: Option<(u64, u32)>,
    /// The CDN ignores `Range` and always answers 200 with the whole file.
    pub ignore_range: bool,
}

#[derive(Default)]
pub struct Stats {
    pub file_bytes: AtomicU64,
    pub cdn_requests: AtomicU64,
    pub api_requests: AtomicU64,
    pub resolve_requests: AtomicU64,
    pub log: Mutex<Vec<String>>,
    /// The `Range` header of every CDN GET (`-` when there was none).
    pub ranges: Mutex<Vec<String>>,
}

struct Inner {
    repos: Mutex<Vec<FakeRepo>>,
    faults: Mutex<Faults>,
    stats: Stats,
    served_total: AtomicU64,
    port: u16,
}

pub struct FakeHub {
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Inner {
            repos: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            stats: Stats::default(),
            served_total: AtomicU64::new(0),
            port,
        });
        let i2 = inner.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                let inner = i2.clone();
                thread::spawn(move || {
                    let _ = handle(&inner, stream);
                });
            }
        });
        FakeHub {
            url: format!("http://127.0.0.1:{port}"),
            inner,
        }
    }

    /// Adds a repo, replacing one with the same id.
    pub fn put_repo(&self, repo: FakeRepo) {
        let mut repos = self.inner.repos.lock().unwrap();
        repos.retain(|r| r.id != repo.id);
        repos.push(repo);
    }

    pub fn set_faults(&self, f: Faults) {
        *self.inner.faults.lock().unwrap() = f;
        self.inner.served_total.store(0, Ordering::SeqCst);
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// File bytes the CDN has sent.
    pub fn file_bytes(&self) -> u64 {
        self.inner.stats.file_bytes.load(Ordering::SeqCst)
    }

    pub fn cdn_requests(&self) -> u64 {
        self.inner.stats.cdn_requests.load(Ordering::SeqCst)
    }

    pub fn api_requests(&self) -> u64 {
        self.inner.stats.api_requests.load(Ordering::SeqCst)
    }

    pub fn resolve_requests(&self) -> u64 {
        self.inner.stats.resolve_requests.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> Vec<String> {
        self.inner.stats.log.lock().unwrap().clone()
    }

    /// The `Range` headers of the CDN GETs so far (`-` for none).
    pub fn ranges(&self) -> Vec<String> {
        self.inner.stats.ranges.lock().unwrap().clone()
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if headers.len() > 100 {
            return None;
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Request {
        method,
        path,
        query,
        headers,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut h = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    let mut has_len = false;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") {
            has_len = true;
        }
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        h.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    h.push_str("\r\n");
    stream.write_all(h.as_bytes())?;
    if !head {
        stream.write_all(body)?;
    }
    stream.flush()
}

fn error(
    stream: &mut TcpStream,
    status: u16,
    code: &str,
    message: &str,
    head: bool,
) -> std::io::Result<()> {
    let body = format!("{{\"error\":{message:?}}}");
    respond(
        stream,
        status,
        &[
            ("Content-Type", "application/json".into()),
            ("X-Error-Code", code.into()),
            ("X-Error-Message", message.into()),
        ],
        body.as_bytes(),
        head,
    )
}

fn handle(inner: &Arc<Inner>, mut stream: TcpStream) -> std::io::Result<()> {
    let Some(req) = read_request(&stream) else {
        return Ok(());
    };
    let head = req.method == "HEAD";
    inner
        .stats
        .log
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method, req.path));
    let faults = inner.faults.lock().unwrap().clone();
    let path = req.path.clone();
    let counter = if path.starts_with("/api/models/") {
        &inner.stats.api_requests
    } else if path.starts_with("/cdn/") {
        &inner.stats.cdn_requests
    } else {
        &inner.stats.resolve_requests
    };
    counter.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = faults.storm {
        return respond(&mut stream, status, &[], b"storm", head);
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        return api(inner, &mut stream, &req, rest);
    }
    if let Some(rest) = path.strip_prefix("/cdn/") {
        return cdn(inner, stream, &req, rest, &faults);
    }
    // /{org}/{repo}/resolve/{rev}/{path...}
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() == 5 && segs[2] == "resolve" {
        let id = format!("{}/{}", segs[0], segs[1]);
        let Some(repo) = find_repo(inner, &id) else {
            return repo_not_found(&mut stream, &req, head);
        };
        if segs[3] != "main" && segs[3] != repo.commit {
            return error(&mut stream, 404, "RevisionNotFound", "Invalid rev id", head);
        }
        if let Some(tok) = &repo.gated_token {
            match req.header("authorization") {
                None => {
                    return error(
                        &mut stream,
                        401,
                        "GatedRepo",
                        &format!("Access to model {id} is restricted. You must have access to it and be authenticated to access it. Please log in."),
                        head,
                    )
                }
                Some(a) if a != format!("Bearer {tok}") => {
                    return error(
                        &mut stream,
                        403,
                        "GatedRepo",
                        &format!("Access to model {id} is restricted and you are not in the authorized list."),
                        head,
                    )
                }
                Some(_) => {}
            }
        }
        let file_path = percent_decode(segs[4]);
        let Some((idx, f)) = repo
            .files
            .iter()
            .enumerate()
            .find(|(_, f)| f.path == file_path)
        else {
            return error(&mut stream, 404, "EntryNotFound", "Entry not found", head);
        };
        let gitoid = &sha256_hex(f.path.as_bytes())[..40];
        if f.lfs {
            let loc = format!(
                "http://127.0.0.1:{}/cdn/{}/{}",
                inner.port,
                id.replace('/', "--"),
                idx
            );
            return respond(
                &mut stream,
                302,
                &[
                    ("Location", loc),
                    ("X-Repo-Commit", repo.commit.clone()),
                    ("ETag", format!("\"{gitoid}\"")),
                    ("X-Linked-Etag", format!("\"{}\"", f.sha256)),
                    ("X-Linked-Size", f.data.len().to_string()),
                ],
                b"Found. Redirecting",
                head,
            );
        }
        return respond(
            &mut stream,
            200,
            &[
                ("X-Repo-Commit", repo.commit.clone()),
                ("ETag", format!("\"{gitoid}\"")),
            ],
            &f.data,
            head,
        );
    }
    error(&mut stream, 404, "", "Not found", head)
}

fn find_repo(inner: &Inner, id: &str) -> Option<FakeRepo> {
    inner
        .repos
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.id == id)
        .cloned()
}

/// As the Hub: 401 without a token (existence is not revealed), 404 with one.
fn repo_not_found(stream: &mut TcpStream, req: &Request, head: bool) -> std::io::Result<()> {
    let status = if req.header("authorization").is_some() {
        404
    } else {
        401
    };
    error(stream, status, "RepoNotFound", "Repository not found", head)
}

fn api(
    inner: &Arc<Inner>,
    stream: &mut TcpStream,
    req: &Request,
    rest: &str,
) -> std::io::Result<()> {
    // {org}/{repo}/revision/{rev}  or  {org}/{repo}/tree/{rev}
    let segs: Vec<&str> = rest.splitn(4, '/').collect();
    if segs.len() != 4 {
        return error(stream, 404, "", "Not found", false);
    }
    let id = format!("{}/{}", segs[0], segs[1]);
    let Some(repo) = find_repo(inner, &id) else {
        return repo_not_found(stream, req, false);
    };
    let rev = percent_decode(segs[3]);
    if rev != "main" && rev != repo.commit {
        return error(stream, 404, "RevisionNotFound", "Invalid rev id", false);
    }
    match segs[2] {
        "revision" => {
            let siblings: Vec<String> = repo
                .files
                .iter()
                .map(|f| format!("{{\"rfilename\":{:?}}}", f.path))
                .collect();
            let body = format!(
                "{{\"_id\":\"x\",\"id\":{:?},\"private\":false,\"gated\":{},\"sha\":{:?},\"siblings\":[{}]}}",
                repo.id,
                if repo.gated_token.is_some() { "\"manual\"" } else { "false" },
                repo.commit,
                siblings.join(",")
            );
            respond(
                stream,
                200,
                &[("Content-Type", "application/json".into())],
                body.as_bytes(),
                false,
            )
        }
        "tree" => {
            let start: usize = req
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("cursor="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let page = if repo.page_size == 0 {
                repo.files.len()
            } else {
                repo.page_size
            };
            let end = (start + page).min(repo.files.len());
            let entries: Vec<String> = repo.files[start.min(end)..end]
                .iter()
                .map(|f| {
                    let oid = &sha256_hex(f.path.as_bytes())[..40];
                    if f.lfs {
                        format!(
                            "{{\"type\":\"file\",\"oid\":\"{oid}\",\"size\":{},\"path\":{:?},\"lfs\":{{\"oid\":\"{}\",\"size\":{},\"pointerSize\":134}}}}",
                            f.data.len(),
                            f.path,
                            f.sha256,
                            f.data.len()
                        )
                    } else {
                        format!(
                            "{{\"type\":\"file\",\"oid\":\"{oid}\",\"size\":{},\"path\":{:?}}}",
                            f.data.len(),
                            f.path
                        )
                    }
                })
                .collect();
            let mut headers = vec![("Content-Type", "application/json".to_string())];
            if end < repo.files.len() {
                headers.push((
                    "Link",
                    format!(
                        "<http://127.0.0.1:{}/api/models/{}/tree/{}?recursive=true&cursor={end}>; rel=\"next\"",
                        inner.port, repo.id, segs[3]
                    ),
                ));
            }
            respond(
                stream,
                200,
                &headers,
                format!("[{}]", entries.join(",")).as_bytes(),
                false,
            )
        }
        _ => error(stream, 404, "", "Not found", false),
    }
}

fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let r = v.trim().strip_prefix("bytes=")?;
    let (a, b) = r.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse::<u64>().ok()?.min(len.checked_sub(1)?)
    };
    (a <= b).then_some((a, b))
}

fn take_one(slot: &mut Option<(u64, u32)>) -> Option<u64> {
    match slot {
        Some((v, n)) if *n > 0 => {
            *n -= 1;
            Some(*v)
        }
        _ => None,
    }
}

fn cdn(
    inner: &Arc<Inner>,
    mut stream: TcpStream,
    req: &Request,
    rest: &str,
    faults: &Faults,
) -> std::io::Result<()> {
    if faults.cdn_down {
        let _ = stream.shutdown(Shutdown::Both);
        return Ok(());
    }
    {
        let mut f = inner.faults.lock().unwrap();
        if let Some((status, n)) = f.cdn_errors.as_mut() {
            if *n > 0 {
                *n -= 1;
                let status = *status;
                drop(f);
                return respond(&mut stream, status, &[], b"error", req.method == "HEAD");
            }
        }
    }
    let stall_after = {
        let mut f = inner.faults.lock().unwrap();
        take_one(&mut f.stall)
    };
    let Some((id, idx)) = rest.rsplit_once('/') else {
        return error(&mut stream, 404, "", "Not found", false);
    };
    let id = id.replacen("--", "/", 1);
    let Some(repo) = find_repo(inner, &id) else {
        return error(&mut stream, 404, "", "Not found", false);
    };
    let Some(file) = idx.parse::<usize>().ok().and_then(|i| repo.files.get(i)) else {
        return error(&mut stream, 404, "", "Not found", false);
    };
    let data = file.data.clone();
    let len = data.len() as u64;
    let head = req.method == "HEAD";
    let etag = format!("\"{}\"", file.sha256);
    if !head {
        inner
            .stats
            .ranges
            .lock()
            .unwrap()
            .push(req.header("range").unwrap_or("-").to_string());
    }
    let range = if faults.ignore_range {
        None
    } else {
        req.header("range")
    };
    let (status, start, end) = match range {
        Some(r) => match parse_range(r, len) {
            Some((a, b)) => (206, a, b + 1),
            None => {
                return respond(
                    &mut stream,
                    416,
                    &[("Content-Range", format!("bytes */{len}"))],
                    b"",
                    head,
                )
            }
        },
        None => (200, 0, len),
    };
    let mut headers = vec![
        ("Content-Length", (end - start).to_string()),
        (
            "Accept-Ranges",
            if faults.ignore_range { "none" } else { "bytes" }.to_string(),
        ),
        ("ETag", etag),
        ("Content-Type", "application/octet-stream".into()),
    ];
    if status == 206 {
        headers.push(("Content-Range", format!("bytes {start}-{}/{len}", end - 1)));
    }
    respond(&mut stream, status, &headers, b"", true)?;
    if head {
        return Ok(());
    }
    let began = Instant::now();
    let mut sent: u64 = 0;
    let mut pos = start;
    const PIECE: u64 = 16 * 1024;
    while pos < end {
        let mut n = PIECE.min(end - pos);
        if let Some(limit) = stall_after {
            if sent >= limit {
                // Hang without closing: the client must notice the stall.
                thread::sleep(Duration::from_secs(20));
                return Ok(());
            }
            n = n.min(limit - sent);
        }
        if let Some(cut) = faults.cut_after {
            let total = inner.served_total.load(Ordering::SeqCst);
            if total >= cut {
                inner.faults.lock().unwrap().cdn_down = true;
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            n = n.min(cut - total);
        }
        let chunk = &data[pos as usize..(pos + n) as usize];
        stream.write_all(chunk)?;
        pos += n;
        sent += n;
        inner.served_total.fetch_add(n, Ordering::SeqCst);
        inner.stats.file_bytes.fetch_add(n, Ordering::SeqCst);
        if let Some(bps) = faults.throttle_bps {
            let due = Duration::from_secs_f64(sent as f64 / bps as f64);
            let el = began.elapsed();
            if due > el {
                thread::sleep(due - el);
            }
        }
    }
    stream.flush()?;
    // Drain nothing; close.
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 64];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.read(&mut sink);
    Ok(())
}

/// The real SmolLM2 bytes and their sha256, read once per test process.
pub fn smollm2_bytes(path: &std::path::Path) -> (Arc<Vec<u8>>, String) {
    static DATA: OnceLock<(Arc<Vec<u8>>, String)> = OnceLock::new();
    DATA.get_or_init(|| {
        let data = std::fs::read(path).expect("read SmolLM2");
        let sha = sha256_hex(&data);
        (Arc::new(data), sha)
    })
    .clone()
}
