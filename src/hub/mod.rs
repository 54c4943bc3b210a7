//! Getting models onto the machine: names → Hugging Face repos → verified files in the
//! local store.
//!
//! - [`names`]: pure parsing and choice logic (model references, quants, splits).
//! - [`api`]: the Hub HTTP API (listing, resolve), errors with the `HF_TOKEN` hint.
//! - [`download`]: parallel, resumable, sha256-verified downloads.
//! - [`remote_header`]: a remote GGUF's header over HTTP Range requests (plan before pull).
//! - [`store`]: the content-addressed store, its index (`models.json`), locks, and the
//!   Hugging Face cache that is reused instead of downloading twice.
//!
//! [`ensure_local`] is what `edge run NAME` uses (the installed copy, else a pull);
//! [`pull`] always asks the Hub for the current files.

pub mod api;
pub mod download;
pub mod names;
pub mod remote_header;
pub mod store;

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;

use crate::catalog::{Catalog, CatalogEntry};
use crate::term::human_bytes;
use api::{offline_from_env, HubClient, HubError};
use download::{download, sha256_file, DownloadOptions, Target};
use names::{choose_option, gguf_options, GgufOption, ModelRef, RemoteFile, RepoId};
use store::{
    find_cached, hf_cache_dir, now_unix, FileLock, InstalledFile, InstalledModel, ModelSource,
    Store,
};

/// Output settings for a pull.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullOptions {
    /// No progress bars or notes.
    pub quiet: bool,
    /// Notes on stderr even when it is not a terminal.
    pub verbose: bool,
}

/// Progress bars and notes on stderr: bars on a terminal only, never with `quiet`.
struct Ui {
    bars: bool,
    notes: bool,
}

impl Ui {
    fn new(o: &PullOptions) -> Ui {
        let tty = std::io::stderr().is_terminal();
        Ui {
            bars: tty && !o.quiet,
            notes: !o.quiet && (tty || o.verbose),
        }
    }

    fn note(&self, msg: impl AsRef<str>) {
        if self.notes {
            eprintln!("{}", msg.as_ref());
        }
    }

    fn bar(&self, len: u64, msg: &str) -> ProgressBar {
        let bar = crate::term::progress_bar(
            len,
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            !self.bars,
        );
        bar.set_message(msg.to_string());
        bar
    }
}

/// What a reference means for the store.
struct Key {
    /// The name in `models.json` (catalog name, `hf.co/ORG/REPO`, imported name).
    name: String,
    quant: Option<String>,
    preferred: Vec<String>,
    /// Repos to try, in order (empty: only an imported name can match).
    repos: Vec<RepoId>,
    display: String,
}

fn key_for(r: &ModelRef, catalog: &Catalog) -> Result<Key> {
    Ok(match r {
        ModelRef::Path(p) => bail!("{} is a file path, not a model name", p.display()),
        ModelRef::Hf { repo, quant } => Key {
            name: format!("hf.co/{repo}"),
            quant: quant.clone(),
            preferred: Vec::new(),
            repos: vec![repo.clone()],
            display: r.to_string(),
        },
        ModelRef::Name { name, quant } => match catalog.find(name) {
            Some(e) => entry_key(e, quant.clone(), r),
            None => Key {
                name: name.clone(),
                quant: quant.clone(),
                preferred: Vec::new(),
                repos: Vec::new(),
                display: r.to_string(),
            },
        },
    })
}

fn entry_key(e: &CatalogEntry, quant: Option<String>, r: &ModelRef) -> Key {
    Key {
        name: e.name.clone(),
        quant,
        preferred: e.quants.clone(),
        repos: e.repo_ids(),
        display: r.to_string(),
    }
}

fn unknown_name(key: &Key, catalog: &Catalog) -> anyhow::Error {
    let names: Vec<&str> = catalog.entries().iter().map(|e| e.name.as_str()).collect();
    // Ollama spells sizes as tags (`qwen3:0.6b`); the catalog as names (`qwen3-0.6b`).
    let as_tag = key
        .quant
        .as_ref()
        .map(|q| format!("{}-{}", key.name, q.to_ascii_lowercase()))
        .and_then(|n| catalog.find(&n).map(|e| e.name.as_str()));
    let hint = match as_tag.or_else(|| closest(&key.name, &names)) {
        Some(n) => format!("did you mean {n}? "),
        None => String::new(),
    };
    anyhow!(
        "unknown model '{}': not in the catalog and not imported ({hint}see `edge list --catalog`, or use hf.co/ORG/REPO[:QUANT] or a path to a .gguf)",
        key.display
    )
}

/// The catalog name within edit distance 3 of `name`, if one is clearly closest.
fn closest<'a>(name: &str, names: &[&'a str]) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    names
        .iter()
        .map(|n| (dist(name, n), *n))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, n)| n)
}

/// The local file for a model name or `hf.co/…` reference: the installed copy, else a
/// pull (or, offline, the Hugging Face cache).
pub fn ensure_local(r: &ModelRef, opts: &PullOptions) -> Result<PathBuf> {
    let ui = Ui::new(opts);
    let store = Store::open()?;
    let catalog = Catalog::load()?;
    let key = key_for(r, &catalog)?;
    let manifest = store.load_manifest()?;
    if let Some(m) = manifest.best(&key.name, key.quant.as_deref(), &key.preferred) {
        if m.files_present() {
            return Ok(m.path.clone());
        }
        if let ModelSource::Import { file } = &m.source {
            bail!(
                "{}: the imported file {} is missing or has changed size (import it again, or `edge rm {}`)",
                m.id(),
                file.display(),
                m.id()
            );
        }
        ui.note(format!(
            "{}: files are missing from the store; fetching them again",
            m.id()
        ));
    }
    if key.repos.is_empty() {
        return Err(unknown_name(&key, &catalog));
    }
    if offline_from_env() {
        return match find_offline(&store, &key) {
            Some(p) => Ok(p),
            None => bail!(
                "offline mode (HF_HUB_OFFLINE=1): {} is not in the local store or the Hugging Face cache; pull it with network access first",
                key.display
            ),
        };
    }
    let outcome = pull_key(&store, &key, &ui, true)?;
    Ok(outcome.model.path)
}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub model: InstalledModel,
    /// Bytes downloaded in this run.
    pub fetched: u64,
    /// Bytes found in the Hugging Face cache or already in the store.
    pub reused: u64,
    /// The model was already installed at this commit.
    pub up_to_date: bool,
    /// Set when the Hub was not asked (offline); the text says why.
    pub offline_note: Option<String>,
}

/// `edge pull`: asks the Hub for the current files and installs them.
pub fn pull(r: &ModelRef, opts: &PullOptions) -> Result<PullOutcome> {
    let ui = Ui::new(opts);
    let store = Store::open()?;
    let catalog = Catalog::load()?;
    let key = key_for(r, &catalog)?;
    let manifest = store.load_manifest()?;
    let installed = manifest
        .best(&key.name, key.quant.as_deref(), &key.preferred)
        .cloned();
    if key.repos.is_empty() {
        return match installed {
            Some(m) if matches!(m.source, ModelSource::Import { .. }) => Ok(PullOutcome {
                offline_note: Some(format!("{} is an imported model: nothing to pull", m.id())),
                model: m,
                fetched: 0,
                reused: 0,
                up_to_date: true,
            }),
            _ => Err(unknown_name(&key, &catalog)),
        };
    }
    if offline_from_env() {
        return match installed {
            Some(m) if m.files_present() => Ok(PullOutcome {
                offline_note: Some(format!(
                    "offline mode (HF_HUB_OFFLINE=1): {} is installed; not checked for updates",
                    m.id()
                )),
                model: m,
                fetched: 0,
                reused: 0,
                up_to_date: true,
            }),
            _ => bail!(
                "offline mode (HF_HUB_OFFLINE=1): cannot pull {}",
                key.display
            ),
        };
    }
    pull_key(&store, &key, &ui, false)
}

/// Finds a model without the network: this store's snapshots, then the HF cache.
fn find_offline(store: &Store, key: &Key) -> Option<PathBuf> {
    let mut hubs = vec![store.hub_dir()];
    if let Some(h) = hf_cache_dir() {
        hubs.push(h);
    }
    for repo in &key.repos {
        for hub in &hubs {
            if let Some(c) = find_cached(hub, repo, key.quant.as_deref(), &key.preferred) {
                return c.paths.into_iter().next();
            }
        }
    }
    None
}

fn pull_key(store: &Store, key: &Key, ui: &Ui, fallback_offline: bool) -> Result<PullOutcome> {
    let net = DownloadOptions::from_env()?;
    let client = HubClient::from_env(&net)?;
    let mut misses: Vec<String> = Vec::new();
    for repo in &key.repos {
        let commit = match client.repo_commit(repo, "main") {
            Ok(c) => c,
            Err(e @ HubError::Unreachable { .. }) => {
                if fallback_offline {
                    if let Some(p) = find_offline(store, key) {
                        ui.note(format!("{e}; using the cached {}", p.display()));
                        let model = cached_model(key, &p);
                        return Ok(PullOutcome {
                            model,
                            fetched: 0,
                            reused: 0,
                            up_to_date: true,
                            offline_note: Some(e.to_string()),
                        });
                    }
                    bail!("{e}, and {} is not in the local cache", key.display);
                }
                return Err(e.into());
            }
            // The next repo may have it; all misses are reported together.
            Err(e @ (HubError::NotFound(_) | HubError::Auth(_))) => {
                misses.push(e.to_string());
                continue;
            }
            Err(e) => return Err(with_misses(e.into(), &misses)),
        };
        let files = client.list_files(repo, &commit)?;
        let options = gguf_options(&files);
        // Without a named quant, the best one that the planner says fits this machine.
        let budget = if key.quant.is_none() {
            machine_weight_budget()
        } else {
            None
        };
        match choose_option(&options, key.quant.as_deref(), &key.preferred, budget) {
            Ok(opt) => {
                let opt = opt.clone();
                return install(store, &client, &net, key, repo, &commit, &opt, ui);
            }
            Err(e) => misses.push(format!("{repo}: {e}")),
        }
    }
    bail!("{}: {}", key.display, misses.join("; "))
}

fn with_misses(e: anyhow::Error, misses: &[String]) -> anyhow::Error {
    if misses.is_empty() {
        e
    } else {
        e.context(format!("also tried: {}", misses.join("; ")))
    }
}

/// An index entry for a file found offline (not saved).
fn cached_model(key: &Key, path: &Path) -> InstalledModel {
    let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    InstalledModel {
        name: key.name.clone(),
        quant: key.quant.clone(),
        source: ModelSource::Import {
            file: path.to_path_buf(),
        },
        path: path.to_path_buf(),
        files: vec![InstalledFile {
            path: path.to_path_buf(),
            repo_path: None,
            size,
            sha256: None,
        }],
        size,
        added_unix: now_unix(),
    }
}

#[allow(clippy::too_many_arguments)]
fn install(
    store: &Store,
    client: &HubClient,
    net: &DownloadOptions,
    key: &Key,
    repo: &RepoId,
    commit: &str,
    opt: &GgufOption,
    ui: &Ui,
) -> Result<PullOutcome> {
    let manifest = store.load_manifest()?;
    let quant = (!opt.quant.is_empty()).then(|| opt.quant.clone());
    let up_to_date = manifest.find(&key.name, quant.as_deref()).iter().any(|m| {
        m.quant == quant
            && matches!(&m.source, ModelSource::Hf { commit: c, .. } if c == commit)
            && m.files_present()
    });
    let mut fetched = 0;
    let mut reused = 0;
    let mut shas = Vec::new();
    for f in &opt.files {
        let sha = f.sha256.clone().ok_or_else(|| {
            anyhow!(
                "{repo}/{} has no LFS sha256 in the listing; refusing a download that cannot be verified",
                f.path
            )
        })?;
        match ensure_blob(store, client, net, repo, commit, f, &sha, ui)? {
            Fetched::Downloaded(n) => fetched += n,
            Fetched::Reused => reused += f.size,
            Fetched::Present => {}
        }
        shas.push(sha);
    }
    let model = store.update_manifest(|m| {
        let mut files = Vec::new();
        for (f, sha) in opt.files.iter().zip(&shas) {
            let blob = store.blob_path(repo, sha);
            if !fs::metadata(&blob).is_ok_and(|md| md.len() == f.size) {
                bail!("{} vanished while installing; pull again", blob.display());
            }
            let link = store.link_snapshot(repo, commit, &f.path, sha)?;
            files.push(InstalledFile {
                path: link,
                repo_path: Some(f.path.clone()),
                size: f.size,
                sha256: Some(sha.clone()),
            });
        }
        store.write_ref(repo, "main", commit)?;
        let model = InstalledModel {
            name: key.name.clone(),
            quant: quant.clone(),
            source: ModelSource::Hf {
                repo: repo.to_string(),
                revision: "main".into(),
                commit: commit.to_string(),
            },
            path: files[0].path.clone(),
            files,
            size: opt.size,
            added_unix: now_unix(),
        };
        if let Some(old) = m.upsert(model.clone()) {
            store.collect_garbage(&old, m)?;
        }
        Ok(model)
    })?;
    Ok(PullOutcome {
        model,
        fetched,
        reused,
        up_to_date: up_to_date && fetched == 0,
        offline_note: None,
    })
}

enum Fetched {
    Present,
    Reused,
    Downloaded(u64),
}

fn blob_ok(p: &Path, size: u64) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == size)
}

#[allow(clippy::too_many_arguments)]
fn ensure_blob(
    store: &Store,
    client: &HubClient,
    net: &DownloadOptions,
    repo: &RepoId,
    commit: &str,
    f: &RemoteFile,
    sha: &str,
    ui: &Ui,
) -> Result<Fetched> {
    let blob = store.blob_path(repo, sha);
    if blob_ok(&blob, f.size) {
        return Ok(Fetched::Present);
    }
    let lock_path = blob.with_file_name(format!("{sha}.lock"));
    let partial = download::partial_path(&blob);
    let activity = || {
        [partial.clone(), download::state_path(&blob)]
            .iter()
            .filter_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
    };
    let max_idle = (net.stall * 20).max(std::time::Duration::from_secs(60));
    let _lock = FileLock::acquire_watching(
        &lock_path,
        || {
            ui.note(format!(
                "waiting for another edge process that is downloading {}",
                f.path
            ))
        },
        activity,
        max_idle,
    )?;
    if blob_ok(&blob, f.size) {
        return Ok(Fetched::Present);
    }
    if let Some(hf) = hf_cache_dir() {
        let cand = hf.join(repo.cache_folder()).join("blobs").join(sha);
        if cand != blob && blob_ok(&cand, f.size) {
            let bar = ui.bar(f.size, &format!("checking cached {}", f.path));
            let actual = sha256_file(&cand, &bar);
            bar.finish_and_clear();
            match actual {
                Ok(a) if a == sha => {
                    adopt(&cand, &blob)?;
                    ui.note(format!("{}: reused from the Hugging Face cache", f.path));
                    return Ok(Fetched::Reused);
                }
                _ => ui.note(format!(
                    "{}: the copy in the Hugging Face cache does not match its sha256; downloading",
                    f.path
                )),
            }
        }
    }
    if partial.exists() {
        ui.note(format!("{}: resuming an earlier download", f.path));
    }
    let bar = ui.bar(f.size, &f.path);
    let expected_size = f.size;
    let resolve = || -> Result<Target> {
        let r = client.resolve(repo, commit, &f.path)?;
        if let Some(s) = r.sha256.as_deref() {
            if s != sha {
                bail!(
                    "the server reports sha256 {s} for {} but the listing says {sha}; the repo changed, pull again",
                    f.path
                );
            }
        }
        if let Some(n) = r.size {
            if n != expected_size {
                bail!(
                    "the server reports {n} bytes for {} but the listing says {expected_size}",
                    f.path
                );
            }
        }
        Ok(Target {
            url: r.url,
            auth: r.auth,
        })
    };
    let result = download(client.agent(), &resolve, &blob, f.size, sha, net, &bar)
        .with_context(|| format!("downloading {repo}/{}", f.path));
    bar.finish_and_clear();
    let report = result?;
    if report.elapsed.as_secs_f64() > 0.0 {
        ui.note(format!(
            "{}: {} in {:.1} s ({}/s){}",
            f.path,
            human_bytes(report.fetched),
            report.elapsed.as_secs_f64(),
            human_bytes((report.fetched as f64 / report.elapsed.as_secs_f64()) as u64),
            if report.resumed > 0 {
                format!(", resumed at {}", human_bytes(report.resumed))
            } else {
                String::new()
            }
        ));
    }
    Ok(Fetched::Downloaded(report.fetched))
}

/// Puts a verified file from the Hugging Face cache into the store without copying:
/// a hard link, else (another file system) a symlink to it.
fn adopt(from: &Path, to: &Path) -> Result<()> {
    if let Some(d) = to.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(from, to)
            .with_context(|| format!("linking {} to {}", to.display(), from.display()))
    }
    #[cfg(not(unix))]
    {
        let tmp = download::partial_path(to);
        fs::copy(from, &tmp).with_context(|| format!("copying {}", from.display()))?;
        fs::rename(&tmp, to).with_context(|| format!("installing {}", to.display()))
    }
}

/// `edge rm`: removes an installed name and the files nothing else uses.
pub fn remove(r: &ModelRef) -> Result<InstalledModel> {
    let store = Store::open()?;
    let catalog = Catalog::load()?;
    let key = key_for(r, &catalog)?;
    store.update_manifest(|m| {
        let found: Vec<InstalledModel> = m
            .find(&key.name, key.quant.as_deref())
            .into_iter()
            .cloned()
            .collect();
        let gone = match found.len() {
            0 => bail!("{} is not installed (see `edge list`)", key.display),
            1 => found.into_iter().next().expect("one"),
            _ => bail!(
                "{} matches {} installed models ({}); name one with :QUANT",
                key.display,
                found.len(),
                found.iter().map(|m| m.id()).collect::<Vec<_>>().join(", ")
            ),
        };
        m.models.retain(|x| *x != gone);
        store.collect_garbage(&gone, m)?;
        Ok(gone)
    })
}

/// `edge import FILE --as NAME`: registers a local GGUF under a name (no copy).
pub fn import(file: &Path, name: &str, force: bool) -> Result<InstalledModel> {
    let (base, quant) = match name.split_once(':') {
        Some((b, q)) => (b, Some(q)),
        None => (name, None),
    };
    let base = base.to_ascii_lowercase();
    names::check_model_name(&base).map_err(|e| anyhow!("invalid name '{name}': {e}"))?;
    let quant = match quant {
        Some(q) => {
            Some(names::normalize_quant(q).map_err(|e| anyhow!("invalid name '{name}': {e}"))?)
        }
        None => None,
    };
    let catalog = Catalog::load()?;
    if catalog.find(&base).is_some() {
        bail!("'{base}' is a catalog name; import under another name");
    }
    let path = fs::canonicalize(file).with_context(|| format!("{}", file.display()))?;
    let meta = fs::metadata(&path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    let gguf = crate::gguf_info::GgufFile::open_header(&path)
        .with_context(|| format!("{} is not a usable GGUF", path.display()))?;
    if !gguf.is_header_only() {
        gguf.check_data_present(meta.len())
            .with_context(|| format!("{} is not a usable GGUF", path.display()))?;
    }
    let quant = quant.or_else(|| names::quant_of_path(&path.to_string_lossy()));
    let store = Store::open()?;
    let model = InstalledModel {
        name: base.clone(),
        quant,
        source: ModelSource::Import { file: path.clone() },
        path: path.clone(),
        files: vec![InstalledFile {
            path: path.clone(),
            repo_path: None,
            size: meta.len(),
            sha256: None,
        }],
        size: meta.len(),
        added_unix: now_unix(),
    };
    store.update_manifest(|m| {
        let existing = m.find(&base, None);
        if !existing.is_empty() && !force {
            bail!(
                "'{base}' is already installed ({}); use --force to replace it, or `edge rm {base}`",
                existing.iter().map(|x| x.id()).collect::<Vec<_>>().join(", ")
            );
        }
        let old: Vec<InstalledModel> = m.find(&base, None).into_iter().cloned().collect();
        m.models.retain(|x| !x.matches(&base, None));
        for o in &old {
            store.collect_garbage(o, m)?;
        }
        m.models.push(model.clone());
        Ok(model)
    })
}

/// The installed models, and whether each one's files are all there.
pub fn installed() -> Result<Vec<(InstalledModel, bool)>> {
    let store = Store::open()?;
    let m = store.load_manifest()?;
    Ok(m.models
        .into_iter()
        .map(|x| {
            let ok = x.files_present();
            (x, ok)
        })
        .collect())
}

/// The sha256 the store recorded for the model file at `path` (pulled files are
/// verified against it), if any.
pub fn known_sha256(path: &Path) -> Option<String> {
    let store = Store::open().ok()?;
    let manifest = store.load_manifest().ok()?;
    manifest
        .models
        .iter()
        .flat_map(|m| m.files.iter())
        .find(|f| f.path == path)
        .and_then(|f| f.sha256.clone())
}

/// The installed file for a model name, without pulling anything (`None` when it is not
/// installed or its files are gone).
pub fn installed_path(r: &ModelRef) -> Result<Option<PathBuf>> {
    let store = Store::open()?;
    let catalog = Catalog::load()?;
    let key = key_for(r, &catalog)?;
    let manifest = store.load_manifest()?;
    Ok(manifest
        .best(&key.name, key.quant.as_deref(), &key.preferred)
        .filter(|m| m.files_present())
        .map(|m| m.path.clone()))
}

/// The most weight bytes this machine can hold for a plan to fit (VRAM plus RAM, less
/// room for a default context's KV cache and compute buffers), from its calibrated or
/// detected profile. `EDGE_PULL_BUDGET` (bytes or sizes like `8GiB`) overrides it.
fn machine_weight_budget() -> Option<u64> {
    if let Ok(v) = std::env::var("EDGE_PULL_BUDGET") {
        return crate::term::parse_size(&v).ok();
    }
    let profile = crate::profile::current_profile().ok()?;
    Some(crate::planner::place::max_weight_bytes(&profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names() {
        let names = ["qwen3-0.6b", "qwen3-8b", "smollm2-135m"];
        assert_eq!(closest("qwen3-8", &names), Some("qwen3-8b"));
        assert_eq!(closest("qwen-8b", &names), Some("qwen3-8b"));
        assert_eq!(closest("mistral-7b", &names), None);
    }

    #[test]
    fn keys_for_references() {
        let c = Catalog::builtin().unwrap();
        let r = ModelRef::parse("Qwen3-8B:q8_0", |_| false).unwrap();
        let k = key_for(&r, &c).unwrap();
        assert_eq!(k.name, "qwen3-8b");
        assert_eq!(k.quant.as_deref(), Some("Q8_0"));
        assert_eq!(k.repos[0].to_string(), "Qwen/Qwen3-8B-GGUF");
        let r = ModelRef::parse("llama-4-scout", |_| false).unwrap();
        assert_eq!(key_for(&r, &c).unwrap().name, "llama4-scout");
        let r = ModelRef::parse("hf.co/a/b:Q4_0", |_| false).unwrap();
        let k = key_for(&r, &c).unwrap();
        assert_eq!(k.name, "hf.co/a/b");
        assert_eq!(k.repos.len(), 1);
        let r = ModelRef::parse("my-own", |_| false).unwrap();
        assert!(key_for(&r, &c).unwrap().repos.is_empty());
        let e = unknown_name(
            &key_for(&ModelRef::parse("qwen3-8", |_| false).unwrap(), &c).unwrap(),
            &c,
        );
        assert!(e.to_string().contains("did you mean qwen3-8b"), "{e}");
        let ollama = ModelRef::parse("qwen3:0.6b", |_| false).unwrap();
        let e = unknown_name(&key_for(&ollama, &c).unwrap(), &c);
        assert!(e.to_string().contains("did you mean qwen3-0.6b"), "{e}");
    }
}
