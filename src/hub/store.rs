//! The local model store and the Hugging Face cache.
//!
//! Layout under the store root (`$EDGE_HOME`, else the data dir from `directories`,
//! `~/.local/share/edge` on Linux) follows the Hugging Face cache, so files are
//! content-addressed and never overwritten in place:
//!
//! ```text
//! hub/models--ORG--REPO/blobs/<sha256>                verified files only
//! hub/models--ORG--REPO/blobs/<sha256>.incomplete     a download in progress (+ .json state)
//! hub/models--ORG--REPO/blobs/<sha256>.lock           held while one process fetches it
//! hub/models--ORG--REPO/snapshots/<commit>/<path>     symlink -> ../../blobs/<sha256>
//! hub/models--ORG--REPO/refs/main                     the commit last pulled
//! models.json                                         installed names (the index)
//! models.lock                                         held while models.json changes
//! ```

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::names::{
    choose_option, gguf_options, is_commit_hex, is_sha256_hex, GgufOption, RemoteFile, RepoId,
};

/// `$EDGE_HOME` when set (made absolute).
pub fn edge_home_override() -> Option<PathBuf> {
    let v = std::env::var_os("EDGE_HOME").filter(|v| !v.is_empty())?;
    Some(absolute(Path::new(&v)))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`).
pub fn hf_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("HF_HUB_CACHE") {
        return Some(absolute(&p));
    }
    if let Some(p) = env("HF_HOME") {
        return Some(absolute(&p).join("hub"));
    }
    if let Some(p) = env("XDG_CACHE_HOME") {
        return Some(absolute(&p).join("huggingface").join("hub"));
    }
    directories::BaseDirs::new()
        .map(|b| b.home_dir().join(".cache").join("huggingface").join("hub"))
}

/// Where the installed file of a model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelSource {
    /// Pulled from a Hugging Face repo at a commit.
    Hf {
        repo: String,
        revision: String,
        commit: String,
    },
    /// A local file registered with `edge import` (never deleted by edge).
    Import { file: PathBuf },
}

/// One file of an installed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledFile {
    /// Where llama.cpp reads it.
    pub path: PathBuf,
    /// Path inside the repo (pulled models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_path: Option<String>,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// An installed model: one name, one quant, its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledModel {
    /// Catalog name, `hf.co/ORG/REPO`, or the imported name.
    pub name: String,
    pub quant: Option<String>,
    pub source: ModelSource,
    /// The file to load (the first shard of a split model).
    pub path: PathBuf,
    pub files: Vec<InstalledFile>,
    pub size: u64,
    pub added_unix: u64,
}

impl InstalledModel {
    /// `NAME:QUANT`, or `NAME` without a quant.
    pub fn id(&self) -> String {
        match &self.quant {
            Some(q) => format!("{}:{q}", self.name),
            None => self.name.clone(),
        }
    }

    /// True when `name` (case-insensitive) and, if given, `quant` match.
    pub fn matches(&self, name: &str, quant: Option<&str>) -> bool {
        self.name.eq_ignore_ascii_case(name)
            && quant.is_none_or(|q| {
                self.quant
                    .as_deref()
                    .is_some_and(|mine| mine.eq_ignore_ascii_case(q))
            })
    }

    /// Every file is there with its recorded size.
    pub fn files_present(&self) -> bool {
        self.files
            .iter()
            .all(|f| fs::metadata(&f.path).is_ok_and(|m| m.is_file() && m.len() == f.size))
    }
}

/// `models.json`: the installed names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub models: Vec<InstalledModel>,
}

impl Manifest {
    /// Installed models for `name` (and `quant`, when given).
    pub fn find(&self, name: &str, quant: Option<&str>) -> Vec<&InstalledModel> {
        self.models
            .iter()
            .filter(|m| m.matches(name, quant))
            .collect()
    }

    /// The one to use for `name` without a quant: the first by `preferred` quant order,
    /// else the most recently added.
    pub fn best(
        &self,
        name: &str,
        quant: Option<&str>,
        preferred: &[String],
    ) -> Option<&InstalledModel> {
        let found = self.find(name, quant);
        found.iter().copied().min_by_key(|m| {
            let rank = m
                .quant
                .as_deref()
                .and_then(|q| preferred.iter().position(|p| p.eq_ignore_ascii_case(q)))
                .unwrap_or(usize::MAX);
            (rank, std::cmp::Reverse(m.added_unix))
        })
    }

    /// Adds `m`, replacing an entry with the same name and quant; returns the old one.
    pub fn upsert(&mut self, m: InstalledModel) -> Option<InstalledModel> {
        let q = m.quant.clone();
        match self
            .models
            .iter_mut()
            .find(|o| o.matches(&m.name, q.as_deref()) && o.quant.is_some() == q.is_some())
        {
            Some(o) => Some(std::mem::replace(o, m)),
            None => {
                self.models.push(m);
                None
            }
        }
    }
}

/// Opens (creating it and its folder if needed) the file that carries a lock.
fn open_lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))
}

/// An exclusive advisory lock on a file, released on drop.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock, calling `on_wait` once if another process holds it.
    pub fn acquire(path: &Path, on_wait: impl FnOnce()) -> Result<FileLock> {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock()
                    .with_context(|| format!("locking {}", path.display()))?;
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        Ok(FileLock { _file: file })
    }

    /// Like [`FileLock::acquire`], but gives up when the holder shows no sign of life:
    /// `activity` returns the time of its last progress (file writes), and after
    /// `max_idle` without any the wait ends with an error instead of hanging.
    pub fn acquire_watching(
        path: &Path,
        on_wait: impl FnOnce(),
        activity: impl Fn() -> Option<SystemTime>,
        max_idle: std::time::Duration,
    ) -> Result<FileLock> {
        let file = open_lock_file(path)?;
        let mut on_wait = Some(on_wait);
        let waiting_since = SystemTime::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
            if let Some(f) = on_wait.take() {
                f();
            }
            let last = activity().map_or(waiting_since, |t| t.max(waiting_since));
            if last.elapsed().unwrap_or_default() > max_idle {
                bail!(
                    "another edge process holds {} and has made no progress for {} s; stop it and try again",
                    path.display(),
                    max_idle.as_secs()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// `$EDGE_HOME`, else the platform data dir.
    pub fn open() -> Result<Store> {
        if let Some(home) = edge_home_override() {
            return Ok(Store { root: home });
        }
        let dirs = directories::ProjectDirs::from("", "", "edge").ok_or_else(|| {
            anyhow!("cannot find a home directory for the model store; set EDGE_HOME")
        })?;
        Ok(Store {
            root: dirs.data_dir().to_path_buf(),
        })
    }

    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store {
            root: absolute(&root.into()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn hub_dir(&self) -> PathBuf {
        self.root.join("hub")
    }

    pub fn repo_dir(&self, repo: &RepoId) -> PathBuf {
        self.hub_dir().join(repo.cache_folder())
    }

    pub fn blob_path(&self, repo: &RepoId, sha256: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(sha256)
    }

    /// `snapshots/<commit>/<repo path>`; `repo_path` must have passed `check_repo_path`.
    pub fn snapshot_path(&self, repo: &RepoId, commit: &str, repo_path: &str) -> PathBuf {
        let mut p = self.repo_dir(repo).join("snapshots").join(commit);
        for c in repo_path.split('/') {
            p.push(c);
        }
        p
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("models.json")
    }

    pub fn load_manifest(&self) -> Result<Manifest> {
        let path = self.manifest_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_str(&text).with_context(|| {
            format!(
                "the model index {} is damaged (move it away to start a new one)",
                path.display()
            )
        })
    }

    /// Runs `f` on the manifest under the store lock and saves it atomically.
    pub fn update_manifest<T>(&self, f: impl FnOnce(&mut Manifest) -> Result<T>) -> Result<T> {
        let _lock = FileLock::acquire(&self.root.join("models.lock"), || {})?;
        let mut m = self.load_manifest()?;
        let out = f(&mut m)?;
        m.version = 1;
        let text = serde_json::to_string_pretty(&m)?;
        write_atomic(&self.manifest_path(), text.as_bytes())?;
        Ok(out)
    }

    /// Links `snapshots/<commit>/<path>` to the blob (a relative symlink on Unix, a hard
    /// link or copy elsewhere), replacing a stale link atomically.
    pub fn link_snapshot(
        &self,
        repo: &RepoId,
        commit: &str,
        repo_path: &str,
        sha256: &str,
    ) -> Result<PathBuf> {
        let link = self.snapshot_path(repo, commit, repo_path);
        let blob = self.blob_path(repo, sha256);
        let dir = link.parent().ok_or_else(|| anyhow!("bad snapshot path"))?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // ../ once per folder between the link and the repo folder, then blobs/<sha>.
        let depth = repo_path.split('/').count() + 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(sha256);
        if fs::read_link(&link).is_ok_and(|t| t == target) {
            return Ok(link);
        }
        crate::partial_file::sweep_stale(dir);
        let tmp = crate::partial_file::partial_path(&link);
        make_link(&target, &blob, &tmp)
            .with_context(|| format!("linking {} to {}", link.display(), blob.display()))?;
        fs::rename(&tmp, &link).with_context(|| format!("installing {}", link.display()))?;
        Ok(link)
    }

    /// Writes `refs/<revision>` (`main`) with the commit.
    pub fn write_ref(&self, repo: &RepoId, revision: &str, commit: &str) -> Result<()> {
        let p = self.repo_dir(repo).join("refs").join(revision);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d)?;
        }
        write_atomic(&p, commit.as_bytes())
    }

    /// Removes what `gone` used and nothing else still uses: snapshot links and blobs in
    /// this store (never imported files, never the Hugging Face cache).
    pub fn collect_garbage(&self, gone: &InstalledModel, keep: &Manifest) -> Result<()> {
        let ModelSource::Hf { repo, .. } = &gone.source else {
            return Ok(());
        };
        let Ok(repo) = RepoId::parse(repo) else {
            return Ok(());
        };
        let used_paths: Vec<&Path> = keep
            .models
            .iter()
            .flat_map(|m| m.files.iter().map(|f| f.path.as_path()))
            .collect();
        let used_blobs: Vec<(&str, &str)> = keep
            .models
            .iter()
            .filter_map(|m| match &m.source {
                ModelSource::Hf { repo, .. } => Some((repo.as_str(), m)),
                _ => None,
            })
            .flat_map(|(r, m)| {
                m.files
                    .iter()
                    .filter_map(move |f| f.sha256.as_deref().map(|s| (r, s)))
            })
            .collect();
        let snapshots = self.repo_dir(&repo).join("snapshots");
        for f in &gone.files {
            if !f.path.starts_with(&snapshots) {
                continue;
            }
            if !used_paths.contains(&f.path.as_path()) {
                let _ = fs::remove_file(&f.path);
                // Empty folders up to snapshots/.
                let mut d = f.path.parent();
                while let Some(dir) = d {
                    if dir == snapshots || fs::remove_dir(dir).is_err() {
                        break;
                    }
                    d = dir.parent();
                }
            }
            if let Some(sha) = f.sha256.as_deref().filter(|s| is_sha256_hex(s)) {
                let repo_s = repo.to_string();
                if !used_blobs.contains(&(repo_s.as_str(), sha)) {
                    let _ = fs::remove_file(self.blob_path(&repo, sha));
                }
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn make_link(relative_target: &Path, _blob: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(relative_target, link)
}

#[cfg(not(unix))]
fn make_link(_relative_target: &Path, blob: &Path, link: &Path) -> io::Result<()> {
    fs::hard_link(blob, link).or_else(|_| fs::copy(blob, link).map(|_| ()))
}

/// Writes a file through a partial file and a rename, so readers see old or new.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(crate::partial_file::write_atomic(path, bytes)?)
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A model found in a cache folder without the network.
#[derive(Debug, Clone)]
pub struct CachedModel {
    pub commit: String,
    pub option: GgufOption,
    /// Local paths, in shard order.
    pub paths: Vec<PathBuf>,
}

/// Looks for `repo` in a Hugging Face style cache folder (`hub_dir`): the commit in
/// `refs/main` (else the newest snapshot), its GGUFs, the quant chosen as online.
pub fn find_cached(
    hub_dir: &Path,
    repo: &RepoId,
    want: Option<&str>,
    preferred: &[String],
) -> Option<CachedModel> {
    let repo_dir = hub_dir.join(repo.cache_folder());
    let snapshots = repo_dir.join("snapshots");
    let mut commits: Vec<String> = Vec::new();
    if let Ok(c) = fs::read_to_string(repo_dir.join("refs").join("main")) {
        let c = c.trim().to_string();
        if is_commit_hex(&c) {
            commits.push(c);
        }
    }
    let mut others: Vec<(SystemTime, String)> = fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let t = e.metadata().and_then(|m| m.modified()).ok()?;
            (is_commit_hex(&name) && !commits.contains(&name)).then_some((t, name))
        })
        .collect();
    others.sort_by_key(|o| std::cmp::Reverse(o.0));
    commits.extend(others.into_iter().map(|(_, c)| c));
    for commit in commits {
        let root = snapshots.join(&commit);
        let mut files = Vec::new();
        walk_ggufs(&root, &root, 0, &mut files);
        let options = gguf_options(&files);
        let Ok(opt) = choose_option(&options, want, preferred, None) else {
            continue;
        };
        let paths: Vec<PathBuf> = opt
            .files
            .iter()
            .map(|f| {
                let mut p = root.clone();
                p.extend(f.path.split('/'));
                p
            })
            .collect();
        return Some(CachedModel {
            commit,
            option: opt.clone(),
            paths,
        });
    }
    None
}

fn walk_ggufs(root: &Path, dir: &Path, depth: usize, out: &mut Vec<RemoteFile>) {
    if depth > 4 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        // Follows symlinks: a snapshot entry is a link to its blob.
        let Ok(meta) = fs::metadata(&p) else { continue };
        if meta.is_dir() {
            walk_ggufs(root, &p, depth + 1, out);
            continue;
        }
        let Ok(rel) = p.strip_prefix(root) else {
            continue;
        };
        let parts: Option<Vec<String>> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str().map(str::to_string),
                _ => None,
            })
            .collect();
        let Some(parts) = parts else { continue };
        let sha256 = fs::read_link(&p)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| is_sha256_hex(n));
        out.push(RemoteFile {
            path: parts.join("/"),
            size: meta.len(),
            sha256,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, quant: Option<&str>, added: u64) -> InstalledModel {
        InstalledModel {
            name: name.into(),
            quant: quant.map(str::to_string),
            source: ModelSource::Import {
                file: PathBuf::from("/x"),
            },
            path: PathBuf::from("/x"),
            files: vec![],
            size: 1,
            added_unix: added,
        }
    }

    #[test]
    fn manifest_lookup_and_upsert() {
        let mut m = Manifest::default();
        assert!(m.upsert(model("qwen3-8b", Some("Q8_0"), 1)).is_none());
        assert!(m.upsert(model("qwen3-8b", Some("Q4_K_M"), 2)).is_none());
        assert!(m.upsert(model("mine", None, 3)).is_none());
        assert!(m.upsert(model("qwen3-8b", Some("q8_0"), 4)).is_some());
        assert_eq!(m.models.len(), 3);
        assert_eq!(m.find("QWEN3-8B", None).len(), 2);
        assert_eq!(m.find("qwen3-8b", Some("q4_k_m")).len(), 1);
        assert_eq!(m.find("mine", Some("Q4")).len(), 0);
        // Most recent without a preference; the preferred quant otherwise.
        // (the replaced entry is the newest, with the spelling it was given)
        assert_eq!(
            m.best("qwen3-8b", None, &[]).unwrap().quant.as_deref(),
            Some("q8_0")
        );
        let pref = vec!["Q4_K_M".to_string()];
        assert_eq!(
            m.best("qwen3-8b", None, &pref).unwrap().quant.as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(model("a", Some("Q8_0"), 0).id(), "a:Q8_0");
    }

    #[test]
    fn snapshot_links_and_cached_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let repo = RepoId::parse("org/Repo-GGUF").unwrap();
        let commit = "c".repeat(40);
        let files = [
            (
                "Q4_K_M/M-Q4_K_M-00001-of-00002.gguf",
                "1".repeat(64),
                b"one".as_slice(),
            ),
            (
                "Q4_K_M/M-Q4_K_M-00002-of-00002.gguf",
                "2".repeat(64),
                b"two".as_slice(),
            ),
            ("M-Q8_0.gguf", "3".repeat(64), b"three".as_slice()),
        ];
        for (path, sha, data) in &files {
            let blob = store.blob_path(&repo, sha);
            fs::create_dir_all(blob.parent().unwrap()).unwrap();
            fs::write(&blob, data).unwrap();
            let link = store.link_snapshot(&repo, &commit, path, sha).unwrap();
            assert_eq!(fs::read(&link).unwrap(), *data);
            // Idempotent.
            store.link_snapshot(&repo, &commit, path, sha).unwrap();
        }
        store.write_ref(&repo, "main", &commit).unwrap();
        let c = find_cached(&store.hub_dir(), &repo, Some("q4_k_m"), &[]).unwrap();
        assert_eq!(c.commit, commit);
        assert_eq!(c.paths.len(), 2);
        assert!(c.paths[0].ends_with("Q4_K_M/M-Q4_K_M-00001-of-00002.gguf"));
        assert_eq!(
            c.option.files[1].sha256.as_deref(),
            Some("2".repeat(64).as_str())
        );
        let c = find_cached(&store.hub_dir(), &repo, None, &["Q8_0".into()]).unwrap();
        assert_eq!(c.option.quant, "Q8_0");
        assert!(find_cached(&store.hub_dir(), &repo, Some("Q2_K"), &[]).is_none());
        let other = RepoId::parse("org/other").unwrap();
        assert!(find_cached(&store.hub_dir(), &other, None, &[]).is_none());
    }

    #[test]
    fn lock_waits_for_a_live_holder_and_gives_up_on_a_silent_one() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let held = FileLock::acquire(&p, || {}).unwrap();
        let mut waited = false;
        let e =
            FileLock::acquire_watching(&p, || waited = true, || None, Duration::from_millis(300))
                .err()
                .unwrap();
        assert!(waited);
        assert!(e.to_string().contains("no progress"), "{e}");
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        // The holder reports activity, so the wait outlasts max_idle.
        FileLock::acquire_watching(
            &p,
            || {},
            || Some(SystemTime::now()),
            Duration::from_millis(100),
        )
        .unwrap();
        t.join().unwrap();
    }

    #[test]
    fn manifest_round_trip_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        assert_eq!(store.load_manifest().unwrap(), Manifest::default());
        store
            .update_manifest(|m| {
                m.upsert(model("a", None, 1));
                Ok(())
            })
            .unwrap();
        assert_eq!(store.load_manifest().unwrap().models.len(), 1);
        fs::write(store.manifest_path(), b"{not json").unwrap();
        let e = format!("{:#}", store.load_manifest().unwrap_err());
        assert!(e.contains("damaged"), "{e}");
    }
}
