//! A remote GGUF's header (metadata and tensor table) read with HTTP Range requests, so
//! a model can be planned before it is downloaded: a few MB of a file of 20–250 GB.
//!
//! - [`remote_header_for`] resolves a catalog name or `hf.co/ORG/REPO[:QUANT]` exactly as
//!   `edge pull` does (same repos in the same order, same quant choice) without
//!   downloading, then reads the chosen file's header.
//! - [`fetch_remote_header`] reads the header of one file of a repo (every shard of a
//!   split GGUF: each shard has its own tensor table).
//!
//! The first request asks for `Range: bytes=0-(4 MiB - 1)`; while the header does not fit
//! (the parser says how far it wanted to read) the range doubles, up to 256 MiB. A server
//! that ignores Range (200 and the whole file) is read only as far as needed, then the
//! connection is dropped.

use std::io::Read;

use anyhow::{anyhow, bail, ensure, Context, Result};

use super::api::{offline_from_env, HubClient, HubError};
use super::download::{parse_content_range, DownloadOptions, Target};
use super::names::{choose_option, gguf_options, split_name, ModelRef, RepoId};
use super::{key_for, unknown_name, with_misses};
use crate::catalog::Catalog;
use crate::gguf_info::GgufFile;

const MIB: u64 = 1024 * 1024;

/// How much of a file may be read to find its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeLimits {
    /// The first request's length.
    pub initial: u64,
    /// Give up when the header is longer than this.
    pub max: u64,
}

impl Default for RangeLimits {
    fn default() -> Self {
        RangeLimits {
            initial: 4 * MIB,
            max: 256 * MIB,
        }
    }
}

/// The header of a remote model, with what it took to get it.
#[derive(Debug, Clone)]
pub struct RemoteHeader {
    /// The metadata of the (first) file and the tensors of every shard, in shard order.
    /// Tensor offsets are relative to their own shard's data section. `file_size` is the
    /// size of all shards on the server (what a pull downloads), not what was read.
    pub gguf: GgufFile,
    pub repo: RepoId,
    /// The commit the files were read at.
    pub revision: String,
    /// The repo paths read, in shard order.
    pub files: Vec<String>,
    /// The chosen quant (`Q4_K_M`), empty when the file name has none.
    pub quant: String,
    /// Response body bytes received.
    pub bytes_fetched: u64,
    /// HTTP requests made for the bytes (not counting the Hub API and resolve calls).
    pub requests: u32,
}

/// Resolves `model_ref` (a catalog name or `hf.co/ORG/REPO[:QUANT]`) as `edge pull` would,
/// from `HF_ENDPOINT`/`HF_TOKEN`, and reads the chosen file's header without downloading
/// it. Returns a display name (`NAME:QUANT`) and the header (see [`RemoteHeader::gguf`]).
pub fn remote_header_for(model_ref: &str) -> Result<(String, GgufFile)> {
    let r = ModelRef::parse(model_ref, |p| p.is_file()).map_err(anyhow::Error::msg)?;
    let offline = offline_from_env();
    let catalog = Catalog::load()?;
    let net = DownloadOptions::from_env()?;
    let client = HubClient::from_env(&net)?;
    let h = remote_header_with(&r, &catalog, &client, &net, offline, RangeLimits::default())?;
    Ok((display_name(&h, &r, &catalog), h.gguf))
}

/// `NAME:QUANT` for what was read: the catalog name (or `hf.co/ORG/REPO`) and the quant.
fn display_name(h: &RemoteHeader, r: &ModelRef, catalog: &Catalog) -> String {
    let base = key_for(r, catalog)
        .map(|k| k.name)
        .unwrap_or_else(|_| r.to_string());
    if h.quant.is_empty() {
        base
    } else {
        format!("{base}:{}", h.quant)
    }
}

/// [`remote_header_for`] with everything injected: the parsed reference, the catalog, the
/// Hub client, the network settings, whether the Hub may be asked, and the range limits.
pub fn remote_header_with(
    r: &ModelRef,
    catalog: &Catalog,
    client: &HubClient,
    net: &DownloadOptions,
    offline: bool,
    limits: RangeLimits,
) -> Result<RemoteHeader> {
    let key = key_for(r, catalog)?;
    if key.repos.is_empty() {
        return Err(unknown_name(&key, catalog));
    }
    if offline {
        bail!(
            "offline mode (HF_HUB_OFFLINE=1): cannot read the header of {} from the Hub; pull it with network access first, or give the path of a local .gguf",
            key.display
        );
    }
    // The same walk as `pull_key`: the catalog's repos in order, misses reported together.
    let mut misses: Vec<String> = Vec::new();
    for repo in &key.repos {
        let commit = match client.repo_commit(repo, "main") {
            Ok(c) => c,
            Err(e @ (HubError::NotFound(_) | HubError::Auth(_))) => {
                misses.push(e.to_string());
                continue;
            }
            Err(e) => return Err(with_misses(e.into(), &misses)),
        };
        let files = client.list_files(repo, &commit)?;
        let options = gguf_options(&files);
        match choose_option(&options, key.quant.as_deref(), &key.preferred, None) {
            Ok(opt) => {
                let paths: Vec<String> = opt.files.iter().map(|f| f.path.clone()).collect();
                let mut h = fetch_shards(client, net, repo, &commit, &paths, limits)
                    .with_context(|| format!("reading the GGUF header of {}", key.display))?;
                h.quant = opt.quant.clone();
                return Ok(h);
            }
            Err(e) => misses.push(format!("{repo}: {e}")),
        }
    }
    bail!("{}: {}", key.display, misses.join("; "))
}

/// Reads the header of `path` in `repo` at `revision` (a branch or commit). When the file
/// is the first shard of a split GGUF (`split.count` > 1), the other shards are read too,
/// by llama.cpp's shard naming (`PREFIX-0000i-of-0000n.gguf`).
pub fn fetch_remote_header(
    client: &HubClient,
    net: &DownloadOptions,
    repo: &RepoId,
    revision: &str,
    path: &str,
    limits: RangeLimits,
) -> Result<RemoteHeader> {
    let first = fetch_one(client, net, repo, revision, path, limits)?;
    let count = first.gguf.get_u64("split.count").unwrap_or(1);
    if count <= 1 {
        return finish(repo, revision, vec![path.to_string()], vec![first]);
    }
    let paths = shard_paths(path, count)?;
    let mut shards = vec![first];
    for p in &paths[1..] {
        shards.push(fetch_one(client, net, repo, revision, p, limits)?);
    }
    finish(repo, revision, paths, shards)
}

/// Reads every shard in `paths` (in order) and merges them.
fn fetch_shards(
    client: &HubClient,
    net: &DownloadOptions,
    repo: &RepoId,
    revision: &str,
    paths: &[String],
    limits: RangeLimits,
) -> Result<RemoteHeader> {
    let mut shards = Vec::with_capacity(paths.len());
    for p in paths {
        shards.push(fetch_one(client, net, repo, revision, p, limits)?);
    }
    finish(repo, revision, paths.to_vec(), shards)
}

fn finish(
    repo: &RepoId,
    revision: &str,
    paths: Vec<String>,
    shards: Vec<Fetched>,
) -> Result<RemoteHeader> {
    let bytes_fetched = shards.iter().map(|s| s.bytes_fetched).sum();
    let requests = shards.iter().map(|s| s.requests).sum();
    let parts: Vec<(GgufFile, u64)> = shards.into_iter().map(|s| (s.gguf, s.size)).collect();
    let gguf = merge_shards(&paths, parts).map_err(anyhow::Error::msg)?;
    Ok(RemoteHeader {
        gguf,
        repo: repo.clone(),
        revision: revision.to_string(),
        files: paths,
        quant: String::new(),
        bytes_fetched,
        requests,
    })
}

/// The paths of all `count` shards of a split GGUF whose first shard is `first`.
pub fn shard_paths(first: &str, count: u64) -> Result<Vec<String>> {
    let s = split_name(first).with_context(|| {
        format!("{first} says it is split in {count} (split.count) but its name is not PREFIX-00001-of-{count:05}.gguf")
    })?;
    ensure!(
        s.index == 1 && u64::from(s.count) == count,
        "{first}: the name says shard {} of {} but split.count is {count}",
        s.index,
        s.count
    );
    Ok((1..=s.count)
        .map(|i| format!("{}-{i:05}-of-{:05}.gguf", s.prefix, s.count))
        .collect())
}

/// One header per shard (with the shard's size on the server) → one [`GgufFile`]: the first
/// shard's metadata, every shard's tensors, `file_size` the total. Checks `split.no`,
/// `split.count` and `split.tensors.count` when there are several shards.
pub fn merge_shards(paths: &[String], shards: Vec<(GgufFile, u64)>) -> Result<GgufFile, String> {
    let n = shards.len();
    if n == 0 {
        return Err("no files to read".into());
    }
    if n > 1 {
        for (i, ((g, _), path)) in shards.iter().zip(paths).enumerate() {
            let no = g.get_u64("split.no");
            let count = g.get_u64("split.count");
            if no != Some(i as u64) || count != Some(n as u64) {
                return Err(format!(
                    "{path}: split metadata says shard {} of {}, expected {} of {n}",
                    no.map_or("?".into(), |v| v.to_string()),
                    count.map_or("?".into(), |v| v.to_string()),
                    i
                ));
            }
        }
    }
    let mut shards = shards.into_iter();
    let (mut merged, first_size) = shards.next().expect("one shard");
    let mut total = first_size;
    for (g, size) in shards {
        merged.tensors.extend(g.tensors);
        total = total.saturating_add(size);
    }
    if n > 1 {
        if let Some(want) = merged.get_u64("split.tensors.count") {
            if want != merged.tensors.len() as u64 {
                return Err(format!(
                    "the shards hold {} tensors but split.tensors.count is {want}",
                    merged.tensors.len()
                ));
            }
        }
    }
    merged.file_size = total;
    Ok(merged)
}

/// The next range end when the header did not fit in `have` bytes: at least double, at
/// least what the parser asked for, within the file and the limit.
pub fn next_want(
    have: u64,
    want: u64,
    needed: u64,
    total: Option<u64>,
    max: u64,
) -> Result<u64, String> {
    if total.is_some_and(|t| have >= t) {
        return Err(format!(
            "the file ends inside its GGUF header (it is {have} bytes, the header needs at least {needed}): truncated or corrupt"
        ));
    }
    if needed > max || have >= max {
        return Err(format!(
            "the GGUF header would be longer than {} MiB (it needs at least {needed} bytes): corrupt, or larger than edge reads",
            max / MIB
        ));
    }
    let next = want.saturating_mul(2).max(needed).min(max);
    Ok(total.map_or(next, |t| next.min(t)))
}

/// One file's header.
struct Fetched {
    gguf: GgufFile,
    /// The file's size on the server.
    size: u64,
    bytes_fetched: u64,
    requests: u32,
}

fn fetch_one(
    client: &HubClient,
    net: &DownloadOptions,
    repo: &RepoId,
    revision: &str,
    path: &str,
    limits: RangeLimits,
) -> Result<Fetched> {
    let mut src = HttpSource {
        client,
        net,
        repo,
        revision,
        path,
        target: None,
        total: None,
        stream: None,
        fetched: 0,
        requests: 0,
    };
    let result = read_header(&mut src, limits);
    let (gguf, len) = result.with_context(|| format!("{repo}/{path}"))?;
    let size = src.total.unwrap_or(len);
    // A header-only file (the planner's fixtures) is fine; otherwise every tensor's bytes
    // must lie within the file.
    let header_only = !gguf.tensors.is_empty() && size <= gguf.data_offset;
    if !header_only {
        gguf.check_data_present(size)
            .with_context(|| format!("{repo}/{path} on the server"))?;
    }
    Ok(Fetched {
        gguf: GgufFile {
            file_size: size,
            ..gguf
        },
        size,
        bytes_fetched: src.fetched,
        requests: src.requests,
    })
}

/// Where the bytes come from, from the start of the file.
trait ByteSource {
    /// Makes `buf` (the file's first `buf.len()` bytes) at least `want` bytes long, or the
    /// whole file when it is shorter (then [`ByteSource::total`] is known).
    fn fill_to(&mut self, buf: &mut Vec<u8>, want: u64) -> Result<()>;
    /// The file's size, once known.
    fn total(&self) -> Option<u64>;
}

/// Grows the prefix until the header parses. Returns it and the prefix length.
fn read_header(src: &mut dyn ByteSource, limits: RangeLimits) -> Result<(GgufFile, u64)> {
    let mut buf: Vec<u8> = Vec::new();
    let mut want = limits.initial.clamp(4, limits.max.max(4));
    loop {
        if let Some(t) = src.total() {
            want = want.min(t);
        }
        src.fill_to(&mut buf, want)?;
        let have = buf.len() as u64;
        match GgufFile::parse_header(&buf) {
            Ok(g) => return Ok((g, have)),
            Err(e) => match e.bytes_needed() {
                Some(needed) => {
                    want = next_want(have, want, needed, src.total(), limits.max)
                        .map_err(|why| anyhow!("{why} ({e})"))?;
                }
                None if have == 0 => bail!("the file is empty (0 bytes), not a GGUF file"),
                None => return Err(anyhow::Error::new(e).context("not a usable GGUF")),
            },
        }
    }
}

/// Bytes over HTTP: Range requests to the resolved URL, or one streamed response when the
/// server ignores Range.
struct HttpSource<'a> {
    client: &'a HubClient,
    net: &'a DownloadOptions,
    repo: &'a RepoId,
    revision: &'a str,
    path: &'a str,
    target: Option<Target>,
    total: Option<u64>,
    /// A 200 response (the whole file from byte 0) still being read; its position is the
    /// buffer's length.
    stream: Option<ureq::BodyReader<'static>>,
    fetched: u64,
    requests: u32,
}

/// What one request gave.
enum Answer {
    /// The body is bytes `from..` of the file (206), `len` of them.
    Partial {
        body: ureq::BodyReader<'static>,
        len: u64,
    },
    /// The server ignored Range: the body is the whole file.
    Whole(ureq::BodyReader<'static>),
    /// 416: `from` is at or past the end.
    PastEnd,
}

impl HttpSource<'_> {
    fn target(&mut self) -> Result<Target> {
        if let Some(t) = &self.target {
            return Ok(t.clone());
        }
        let r = self
            .client
            .resolve(self.repo, self.revision, self.path)
            .map_err(anyhow::Error::new)?;
        if let Some(size) = r.size {
            self.total.get_or_insert(size);
        }
        let t = Target {
            url: r.url,
            auth: r.auth,
        };
        self.target = Some(t.clone());
        Ok(t)
    }

    /// `GET` bytes `from..=to`, with retries on transport errors, 408/429/5xx and bodies cut
    /// short, and one new resolve when the URL stops working (signed URLs expire).
    fn request(&mut self, from: u64, to: u64) -> Result<Answer> {
        let mut failures = 0u32;
        let mut refreshed = false;
        loop {
            let t = self.target()?;
            self.requests += 1;
            let mut req = self
                .client
                .agent()
                .get(&t.url)
                .header("Range", format!("bytes={from}-{to}"));
            if let Some(a) = &t.auth {
                req = req.header("Authorization", a);
            }
            let err = match req.call() {
                Err(
                    e @ (ureq::Error::BadUri(_) | ureq::Error::Tls(_) | ureq::Error::Rustls(_)),
                ) => return Err(anyhow!("{e}")),
                Err(e) => anyhow!("network error: {e}"),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let header = |k: &str| {
                        resp.headers()
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    match status {
                        206 => {
                            let cr = header("content-range").unwrap_or_default();
                            let Some((a, b, total)) = parse_content_range(&cr) else {
                                bail!("bad Content-Range '{cr}' for bytes {from}-{to}");
                            };
                            if a != from || b < a {
                                bail!("the server sent bytes {a}-{b} for bytes {from}-{to}");
                            }
                            if let Some(total) = total {
                                self.total = Some(total);
                            }
                            return Ok(Answer::Partial {
                                body: resp.into_body().into_reader(),
                                len: b - a + 1,
                            });
                        }
                        200 => {
                            if let Some(n) = header("content-length").and_then(|v| v.parse().ok()) {
                                self.total = Some(n);
                            }
                            return Ok(Answer::Whole(resp.into_body().into_reader()));
                        }
                        416 => {
                            let cr = header("content-range").unwrap_or_default();
                            if let Some(total) = cr
                                .trim()
                                .strip_prefix("bytes */")
                                .and_then(|v| v.trim().parse().ok())
                            {
                                self.total = Some(total);
                            }
                            return Ok(Answer::PastEnd);
                        }
                        401 | 403 | 404 | 410 if !refreshed => {
                            refreshed = true;
                            self.target = None;
                            continue;
                        }
                        401 | 403 | 404 | 410 => {
                            bail!("HTTP {status} from the download URL")
                        }
                        408 | 429 | 500..=599 => anyhow!("HTTP {status} from the server"),
                        s => bail!("unexpected HTTP {s} from the download URL"),
                    }
                }
            };
            failures += 1;
            if failures > self.net.retries {
                return Err(err.context(format!("gave up after {failures} attempts")));
            }
            std::thread::sleep(self.net.delay(failures));
        }
    }

    /// Reads from `body` into `buf` until it holds `want` bytes or the body ends.
    fn read_into(
        &mut self,
        body: &mut ureq::BodyReader<'static>,
        buf: &mut Vec<u8>,
        want: u64,
    ) -> Result<bool> {
        let need = want.saturating_sub(buf.len() as u64);
        let n = body
            .take(need)
            .read_to_end(buf)
            .map_err(|e| anyhow!("network error: {e}"))?;
        self.fetched += n as u64;
        Ok((n as u64) < need)
    }
}

impl ByteSource for HttpSource<'_> {
    fn fill_to(&mut self, buf: &mut Vec<u8>, want: u64) -> Result<()> {
        let mut short_reads = 0u32;
        while (buf.len() as u64) < want {
            if let Some(mut body) = self.stream.take() {
                let ended = self.read_into(&mut body, buf, want)?;
                if ended {
                    self.total = Some(buf.len() as u64);
                    return Ok(());
                }
                self.stream = Some(body);
                continue;
            }
            let have = buf.len() as u64;
            if self.total.is_some_and(|t| have >= t) {
                return Ok(());
            }
            match self.request(have, want - 1)? {
                Answer::Partial { mut body, len } => {
                    let before = buf.len();
                    let ended = self.read_into(&mut body, buf, have + len)?;
                    if ended {
                        // Cut short: keep what came and ask again (bounded).
                        short_reads += 1;
                        if short_reads > self.net.retries {
                            bail!(
                                "the connection closed after {} of {len} bytes",
                                buf.len() - before
                            );
                        }
                        std::thread::sleep(self.net.delay(short_reads));
                    }
                }
                Answer::Whole(mut body) => {
                    // The whole file from byte 0: skip what is already here, then keep
                    // reading this response as the header grows.
                    let skipped = std::io::copy(&mut (&mut body).take(have), &mut std::io::sink())
                        .map_err(|e| anyhow!("network error: {e}"))?;
                    self.fetched += skipped;
                    if skipped < have {
                        bail!("the server's answer is shorter than the part already read");
                    }
                    self.stream = Some(body);
                }
                Answer::PastEnd => {
                    self.total.get_or_insert(have);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn total(&self) -> Option<u64> {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_doubles_and_jumps_to_what_the_parser_needs() {
        let max = 256 * MIB;
        assert_eq!(
            next_want(4 * MIB, 4 * MIB, 4 * MIB + 10, None, max),
            Ok(8 * MIB)
        );
        assert_eq!(
            next_want(4 * MIB, 4 * MIB, 20 * MIB, None, max),
            Ok(20 * MIB)
        );
        assert_eq!(
            next_want(4 * MIB, 4 * MIB, 5 * MIB, Some(6 * MIB), max),
            Ok(6 * MIB)
        );
        assert_eq!(
            next_want(200 * MIB, 200 * MIB, 201 * MIB, None, max),
            Ok(max)
        );
        let e = next_want(max, max, max + 1, None, max).unwrap_err();
        assert!(e.contains("longer than 256 MiB"), "{e}");
        let e = next_want(MIB, MIB, u64::MAX, None, max).unwrap_err();
        assert!(e.contains("corrupt"), "{e}");
        let e = next_want(1000, 4 * MIB, 1200, Some(1000), max).unwrap_err();
        assert!(e.contains("ends inside its GGUF header"), "{e}");
    }

    #[test]
    fn shard_names() {
        assert_eq!(
            shard_paths("Q4_K_M/M-Q4_K_M-00001-of-00003.gguf", 3).unwrap(),
            [
                "Q4_K_M/M-Q4_K_M-00001-of-00003.gguf",
                "Q4_K_M/M-Q4_K_M-00002-of-00003.gguf",
                "Q4_K_M/M-Q4_K_M-00003-of-00003.gguf",
            ]
        );
        assert!(shard_paths("M-00002-of-00003.gguf", 3).is_err());
        assert!(shard_paths("M-00001-of-00002.gguf", 3).is_err());
        assert!(shard_paths("M.gguf", 2).is_err());
    }
}
