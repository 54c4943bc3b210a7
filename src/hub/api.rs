//! The Hugging Face Hub HTTP API, the parts a pull needs:
//!
//! - `GET /api/models/{repo}/revision/{rev}`: the commit (`sha`) a revision points at;
//! - `GET /api/models/{repo}/tree/{commit}?recursive=true`: files with sizes and LFS
//!   sha256 (paginated with `Link: <…>; rel="next"`);
//! - `HEAD /{repo}/resolve/{commit}/{path}`: a 302 to the CDN for LFS files, with
//!   `X-Repo-Commit`, `X-Linked-Etag` (the sha256) and `X-Linked-Size`.
//!
//! `HF_ENDPOINT` replaces `https://huggingface.co`; `HF_TOKEN` (else the token file
//! that `hf auth login` writes) is sent to that host only, never to a CDN.

use std::time::Duration;

use serde::Deserialize;
use ureq::http::Response;
use ureq::Body;

use super::download::DownloadOptions;
use super::names::{
    check_repo_path, encode_path, encode_segment, is_commit_hex, is_sha256_hex, RemoteFile, RepoId,
};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A Hub request that failed, classified for the user and for offline fallback.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No connection could be made (offline, DNS, refused, stalled).
    #[error("cannot reach {endpoint} ({detail})")]
    Unreachable { endpoint: String, detail: String },
    /// 401/403: the message carries the `HF_TOKEN` hint.
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{what}: HTTP {status} from the server (gave up after {attempts} attempts)")]
    Server {
        what: String,
        status: u16,
        attempts: u32,
    },
    #[error("{what}: {detail}")]
    Other { what: String, detail: String },
}

/// Where the bytes of a file are.
#[derive(Debug, Clone)]
pub struct ResolvedFile {
    pub url: String,
    /// Send credentials with the download (only when it stays on the Hub's host).
    pub auth: Option<String>,
    /// `X-Linked-Size` (LFS) or `Content-Length`.
    pub size: Option<u64>,
    /// The sha256 from `X-Linked-Etag` (LFS files).
    pub sha256: Option<String>,
    pub commit: Option<String>,
}

pub struct HubClient {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
    opts: DownloadOptions,
}

/// `scheme://host[:port]`, lowercased: requests to the same origin get credentials.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty() {
        return None;
    }
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    ))
}

/// `HF_ENDPOINT` (validated, without a trailing `/`), else the public Hub.
pub fn endpoint_from_env() -> Result<String, String> {
    let Some(v) = std::env::var_os("HF_ENDPOINT").filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_ENDPOINT.to_string());
    };
    let v = v.to_string_lossy().trim().trim_end_matches('/').to_string();
    let lower = v.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || origin(&v).is_none() {
        return Err(format!("HF_ENDPOINT must be an http(s) URL, got '{v}'"));
    }
    Ok(v)
}

/// `HF_TOKEN` (or the legacy `HUGGING_FACE_HUB_TOKEN`), else `$HF_HOME/token`.
pub fn token_from_env() -> Option<String> {
    for k in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        if let Some(v) = std::env::var_os(k) {
            let v = v.to_string_lossy().trim().to_string();
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    let home = std::env::var_os("HF_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            directories::BaseDirs::new().map(|b| b.home_dir().join(".cache").join("huggingface"))
        })?;
    let t = std::fs::read_to_string(home.join("token")).ok()?;
    let t = t.trim();
    (!t.is_empty() && !t.contains(char::is_whitespace)).then(|| t.to_string())
}

/// True when `HF_HUB_OFFLINE` is 1/true/yes/on.
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

#[derive(Deserialize)]
struct ModelInfo {
    sha: Option<String>,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    oid: String,
    #[serde(default)]
    size: Option<u64>,
}

fn header(resp: &Response<Body>, k: &str) -> Option<String> {
    resp.headers()
        .get(k)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn unquote(s: &str) -> &str {
    let s = s.trim().trim_start_matches("W/");
    s.trim_matches('"')
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    for part in link.split(',') {
        let mut pieces = part.split(';');
        let url = pieces.next()?.trim();
        if pieces.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        }) {
            return Some(
                url.trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string(),
            );
        }
    }
    None
}

/// How often a transport failure is retried: a failed name lookup (offline) never, a
/// refused or unreachable connection once, timeouts and resets `retries` times.
fn transport_retries(e: &ureq::Error, retries: u32) -> u32 {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::HostNotFound => 0,
        ureq::Error::ConnectionFailed => retries.min(1),
        ureq::Error::Timeout(_) => retries,
        ureq::Error::Io(io) => match io.kind() {
            K::ConnectionRefused
            | K::NetworkUnreachable
            | K::HostUnreachable
            | K::AddrNotAvailable => retries.min(1),
            _ if io.to_string().contains("lookup") => 0,
            _ => retries,
        },
        _ => 0,
    }
}

impl HubClient {
    pub fn new(endpoint: String, token: Option<String>, opts: &DownloadOptions) -> HubClient {
        HubClient {
            agent: opts.agent(),
            endpoint,
            token,
            opts: opts.clone(),
        }
    }

    /// From `HF_ENDPOINT` and `HF_TOKEN`.
    pub fn from_env(opts: &DownloadOptions) -> anyhow::Result<HubClient> {
        let endpoint = endpoint_from_env().map_err(anyhow::Error::msg)?;
        Ok(HubClient::new(endpoint, token_from_env(), opts))
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn auth_for(&self, url: &str) -> Option<String> {
        let t = self.token.as_ref()?;
        (origin(url) == origin(&self.endpoint)).then(|| format!("Bearer {t}"))
    }

    /// One request with retries on 408/429/5xx and transport errors.
    fn send(
        &self,
        head: bool,
        url: &str,
        what: &str,
        repo: &RepoId,
    ) -> Result<Response<Body>, HubError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let auth = self.auth_for(url);
            let result = if head {
                let mut r = self.agent.head(url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            } else {
                let mut r = self.agent.get(url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            };
            // Transport failures: a missing host fails at once (offline), a refused
            // connection is tried twice, timeouts as often as server errors.
            let delay = match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if !matches!(status, 408 | 429 | 500..=599) {
                        return self.check_status(resp, what, repo);
                    }
                    if attempt > self.opts.retries {
                        return Err(HubError::Server {
                            what: what.to_string(),
                            status,
                            attempts: attempt,
                        });
                    }
                    header(&resp, "retry-after")
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(self.opts.max_backoff))
                        .unwrap_or_else(|| self.opts.delay(attempt))
                }
                Err(e) => {
                    let limit = transport_retries(&e, self.opts.retries);
                    if attempt > limit {
                        return Err(match e {
                            e @ (ureq::Error::BadUri(_) | ureq::Error::Http(_)) => {
                                HubError::Other {
                                    what: what.to_string(),
                                    detail: e.to_string(),
                                }
                            }
                            ureq::Error::Timeout(_) => HubError::Unreachable {
                                endpoint: self.endpoint.clone(),
                                detail: format!(
                                    "no answer within {:.1} s",
                                    self.opts.stall.as_secs_f64()
                                ),
                            },
                            ureq::Error::Io(io) => HubError::Unreachable {
                                endpoint: self.endpoint.clone(),
                                detail: io.to_string(),
                            },
                            e => HubError::Unreachable {
                                endpoint: self.endpoint.clone(),
                                detail: e.to_string(),
                            },
                        });
                    }
                    self.opts.delay(attempt)
                }
            };
            std::thread::sleep(delay);
        }
    }

    fn check_status(
        &self,
        resp: Response<Body>,
        what: &str,
        repo: &RepoId,
    ) -> Result<Response<Body>, HubError> {
        let status = resp.status().as_u16();
        if status < 400 {
            return Ok(resp);
        }
        let code = header(&resp, "x-error-code").unwrap_or_default();
        let has_token = self.token.is_some();
        let page = format!("{}/{repo}", self.endpoint);
        Err(match status {
            401 if code == "GatedRepo" && !has_token => HubError::Auth(format!(
                "{repo} is gated (HTTP 401): accept its terms on {page} and set HF_TOKEN to an access token of that account"
            )),
            401 if has_token => HubError::Auth(format!(
                "the token in HF_TOKEN was rejected for {repo} (HTTP 401): check it, or whether it can read the repo"
            )),
            401 => HubError::Auth(format!(
                "{repo}: authentication required (HTTP 401): the repo is gated, private or missing; set HF_TOKEN to a Hugging Face access token that can read it"
            )),
            403 => HubError::Auth(format!(
                "access denied to {repo} (HTTP 403): accept its terms on {page} and check that HF_TOKEN can read it"
            )),
            404 => HubError::NotFound(match code.as_str() {
                "RepoNotFound" => format!("repository {repo} not found on {}", self.endpoint),
                "RevisionNotFound" => format!("{what}: revision not found in {repo}"),
                "EntryNotFound" => format!("{what}: file not found in {repo}"),
                _ => format!("{what}: not found (HTTP 404)"),
            }),
            s => HubError::Other {
                what: what.to_string(),
                detail: format!("unexpected HTTP {s}"),
            },
        })
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        resp: Response<Body>,
        what: &str,
    ) -> Result<T, HubError> {
        let text = resp
            .into_body()
            .into_with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| HubError::Other {
                what: what.to_string(),
                detail: format!("reading the answer: {e}"),
            })?;
        serde_json::from_str(&text).map_err(|e| HubError::Other {
            what: what.to_string(),
            detail: format!("unexpected answer from the Hub API: {e}"),
        })
    }

    /// The commit `revision` (`main`) points at.
    pub fn repo_commit(&self, repo: &RepoId, revision: &str) -> Result<String, HubError> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode_segment(revision)
        );
        let what = format!("{repo}@{revision}");
        let resp = self.send(false, &url, &what, repo)?;
        let info: ModelInfo = Self::read_json(resp, &what)?;
        match info.sha {
            Some(s) if is_commit_hex(&s) => Ok(s.to_ascii_lowercase()),
            Some(s) => Err(HubError::Other {
                what,
                detail: format!("the Hub API returned an invalid commit id {s:?}"),
            }),
            None => Err(HubError::Other {
                what,
                detail: "the Hub API returned no commit id".into(),
            }),
        }
    }

    /// Every file of the repo at `commit`, checked: a path that could escape the
    /// store (absolute, `..`) or a malformed sha256 rejects the whole listing.
    pub fn list_files(&self, repo: &RepoId, commit: &str) -> Result<Vec<RemoteFile>, HubError> {
        let what = format!("listing {repo}");
        let mut url = format!(
            "{}/api/models/{repo}/tree/{}?recursive=true",
            self.endpoint,
            encode_segment(commit)
        );
        let mut out = Vec::new();
        for _page in 0..1000 {
            let resp = self.send(false, &url, &what, repo)?;
            let next = header(&resp, "link").and_then(|l| next_link(&l));
            let entries: Vec<TreeEntry> = Self::read_json(resp, &what)?;
            for e in entries {
                check_repo_path(&e.path).map_err(|detail| HubError::Other {
                    what: what.clone(),
                    detail,
                })?;
                if e.kind != "file" {
                    continue;
                }
                let sha256 = match e.lfs {
                    Some(l) => {
                        if !is_sha256_hex(&l.oid) {
                            return Err(HubError::Other {
                                what,
                                detail: format!("malformed LFS sha256 for {:?}", e.path),
                            });
                        }
                        if l.size.is_some_and(|s| s != e.size) {
                            return Err(HubError::Other {
                                what,
                                detail: format!("inconsistent sizes for {:?}", e.path),
                            });
                        }
                        Some(l.oid.to_ascii_lowercase())
                    }
                    None => None,
                };
                out.push(RemoteFile {
                    path: e.path,
                    size: e.size,
                    sha256,
                });
            }
            match next {
                None => return Ok(out),
                Some(n) => {
                    // Relative links resolve against the current page; credentials
                    // only ever go to the endpoint's own host (`auth_for`).
                    let n = if n.starts_with('/') {
                        format!("{}{n}", origin(&url).unwrap_or_default())
                    } else {
                        n
                    };
                    let lower = n.to_ascii_lowercase();
                    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                        return Err(HubError::Other {
                            what,
                            detail: format!("bad next-page link {n:?}"),
                        });
                    }
                    url = n;
                }
            }
        }
        Err(HubError::Other {
            what,
            detail: "too many pages".into(),
        })
    }

    /// Where to download `path` from. Same-host redirects (renamed repos) are
    /// followed; a redirect to another host (the CDN) is the answer.
    pub fn resolve(
        &self,
        repo: &RepoId,
        commit: &str,
        path: &str,
    ) -> Result<ResolvedFile, HubError> {
        let what = "the download URL".to_string();
        let mut url = format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            encode_segment(commit),
            encode_path(path)
        );
        let mut size = None;
        let mut sha256 = None;
        let mut commit_hdr = None;
        for _hop in 0..6 {
            let resp = self.send(true, &url, &what, repo)?;
            let status = resp.status().as_u16();
            size =
                size.or_else(|| header(&resp, "x-linked-size").and_then(|v| v.parse::<u64>().ok()));
            sha256 = sha256.or_else(|| {
                header(&resp, "x-linked-etag")
                    .map(|v| unquote(&v).to_ascii_lowercase())
                    .filter(|v| is_sha256_hex(v))
            });
            commit_hdr = commit_hdr.or_else(|| header(&resp, "x-repo-commit"));
            if (300..400).contains(&status) {
                let Some(loc) = header(&resp, "location") else {
                    return Err(HubError::Other {
                        what,
                        detail: format!("HTTP {status} without a Location"),
                    });
                };
                let next = if loc.starts_with('/') {
                    format!("{}{loc}", origin(&url).unwrap_or_default())
                } else {
                    loc
                };
                let lower = next.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                    return Err(HubError::Other {
                        what,
                        detail: format!("redirect to an unsupported URL {next:?}"),
                    });
                }
                if origin(&next) != origin(&self.endpoint) {
                    return Ok(ResolvedFile {
                        url: next,
                        auth: None,
                        size,
                        sha256,
                        commit: commit_hdr,
                    });
                }
                url = next;
                continue;
            }
            size = size.or_else(|| header(&resp, "content-length").and_then(|v| v.parse().ok()));
            return Ok(ResolvedFile {
                auth: self.auth_for(&url),
                url,
                size,
                sha256,
                commit: commit_hdr,
            });
        }
        Err(HubError::Other {
            what,
            detail: "too many redirects".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin("https://HF.co:443/a/b?x").as_deref(),
            Some("https://hf.co:443")
        );
        assert_eq!(
            origin("http://127.0.0.1:9/x").as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(origin("nope"), None);
        assert_ne!(
            origin("https://huggingface.co/x"),
            origin("https://cdn-lfs.hf.co/x")
        );
    }

    #[test]
    fn link_headers() {
        let l = r#"<https://huggingface.co/api/models/a/b/tree/main?cursor=xyz>; rel="next""#;
        assert_eq!(
            next_link(l).as_deref(),
            Some("https://huggingface.co/api/models/a/b/tree/main?cursor=xyz")
        );
        assert_eq!(next_link(r#"<https://x/y>; rel="prev""#), None);
    }

    #[test]
    fn etags() {
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("W/\"abc\""), "abc");
    }
}
