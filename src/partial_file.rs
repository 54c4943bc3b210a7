//! Files written under a temporary name beside their target and renamed at the end, so
//! a reader sees the old file or the new one, never half of one. Every writer of edge
//! (quantize, imatrix, eval's cache, the store, synth, batch, profiles) goes through here,
//! so that:
//! - a partial left by a process that died (kill -9, power loss) is removed by the next
//!   writer into the same folder: its name carries the writer's PID, and a live writer
//!   holds a lock on it, so a running writer's partial is never touched;
//! - Ctrl-C removes this process's partials before it exits, where the command asks for
//!   it ([`remove_partials_on_ctrl_c`]);
//! - a write that needs more room than the disk has says so in one line, before it
//!   starts where the size is known, and after a failure that was a full disk.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime};

use crate::term::human_bytes;

/// The marker in a partial's name: `.NAME.edge-partial-PID[-N]`.
const MARKER: &str = ".edge-partial-";

/// A lock-free partial whose PID is alive belongs to a recycled PID only if it is older
/// than this; younger ones may be in the instant between creation and locking.
const REUSED_PID_AGE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("needs {} at {}, {} free", human_bytes(*.needed), .dir.display(), human_bytes(*.free))]
    NoSpace {
        needed: u64,
        dir: PathBuf,
        free: u64,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl WriteError {
    fn io(path: &Path, source: io::Error) -> Self {
        WriteError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A file being written under a temporary name beside `target`. Dropped without
/// [`PartialFile::commit`], it is removed.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    target: PathBuf,
    /// Held open, and locked on Unix, for as long as the write runs.
    handle: Option<File>,
    committed: bool,
}

impl PartialFile {
    /// Starts a write of `target`: removes the folder's stale partials, checks that
    /// `needed` bytes (when known) fit, and creates the empty, locked partial file.
    pub fn create(target: &Path, needed: Option<u64>) -> Result<Self, WriteError> {
        let dir = folder_of(target);
        sweep_stale(&dir);
        // Created first: a folder that refuses files (read-only, /proc) says so, rather
        // than reporting how little room it has.
        let path = partial_path(target);
        let handle = File::create(&path).map_err(|e| WriteError::io(target, e))?;
        lock(&handle);
        track(&path);
        let partial = PartialFile {
            path,
            target: target.to_path_buf(),
            handle: Some(handle),
            committed: false,
        };
        if let Some(needed) = needed {
            ensure_space(&dir, needed)?;
        }
        Ok(partial)
    }

    /// Where the bytes go until the commit.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open partial, for writers that write through it.
    pub fn file(&mut self) -> &mut File {
        self.handle
            .as_mut()
            .expect("the partial is open until commit")
    }

    /// Flushes the partial to disk and renames it to its target.
    pub fn commit(mut self) -> Result<(), WriteError> {
        if let Some(f) = self.handle.as_ref() {
            f.sync_all().map_err(|e| WriteError::io(&self.target, e))?;
        }
        // Unlocks on every platform, and lets Windows rename the file.
        self.handle = None;
        fs::rename(&self.path, &self.target).map_err(|e| WriteError::io(&self.target, e))?;
        self.committed = true;
        untrack(&self.path);
        Ok(())
    }

    /// The error for a failed write of `needed` bytes: removes the partial first, so the
    /// free space it reports is what the write had, and names a full disk as such.
    pub fn fail(mut self, err: io::Error, needed: Option<u64>) -> WriteError {
        self.remove();
        let dir = folder_of(&self.target);
        let free = fs4::available_space(&dir).ok();
        match (needed, free) {
            (Some(needed), Some(free)) if free < needed || is_disk_full(&err) => {
                WriteError::NoSpace { needed, dir, free }
            }
            _ => WriteError::io(&self.target, err),
        }
    }

    fn remove(&mut self) {
        self.handle = None;
        let _ = fs::remove_file(&self.path);
        untrack(&self.path);
        self.committed = true;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            self.remove();
        }
    }
}

/// Writes `bytes` to `path` through a partial file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let dir = folder_of(path);
    fs::create_dir_all(&dir).map_err(|e| WriteError::io(&dir, e))?;
    let mut partial = PartialFile::create(path, Some(bytes.len() as u64))?;
    match partial.file().write_all(bytes) {
        Ok(()) => partial.commit(),
        Err(e) => Err(partial.fail(e, Some(bytes.len() as u64))),
    }
}

/// Refuses a write of `needed` bytes into `dir` (or, before it is made, its nearest
/// existing parent) that cannot fit. Where the free space cannot be read (an exotic file
/// system), the write goes ahead and fails as it must.
pub fn ensure_space(dir: &Path, needed: u64) -> Result<(), WriteError> {
    let mut dir = dir;
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => return Ok(()),
        }
    }
    match fs4::available_space(dir) {
        Ok(free) if free < needed => Err(WriteError::NoSpace {
            needed,
            dir: dir.to_path_buf(),
            free,
        }),
        _ => Ok(()),
    }
}

/// Whether `err` says the disk (or the user's quota) is full.
pub fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || err.to_string().contains("No space left")
}

/// The folder a file at `path` lives in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.NAME.edge-partial-PID-N` beside `target`; N tells apart two writes of one process.
pub fn partial_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    folder_of(target).join(format!(".{name}{MARKER}{}-{n}", std::process::id()))
}

/// The PID in a partial file's name, or None for any other name.
pub fn partial_owner(file_name: &str) -> Option<u32> {
    if !file_name.starts_with('.') {
        return None;
    }
    let (_, tail) = file_name.rsplit_once(MARKER)?;
    let pid = tail.split('-').next()?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the partial files in `dir` whose writer is gone; returns how many. A partial
/// is stale when its lock can be taken and its PID is not running, or is running but
/// the file is old (the PID was recycled). This process's own partials are left alone.
pub fn sweep_stale(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = partial_owner(&name.to_string_lossy()) else {
            continue;
        };
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        // The store links a snapshot through a partial symlink, renamed within
        // microseconds: it cannot be locked, and only a dead writer leaves one.
        let stale = if kind.is_symlink() {
            !pid_is_running(pid)
        } else {
            kind.is_file() && is_stale(&path, pid)
        };
        if pid != me && stale && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn is_stale(path: &Path, pid: u32) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    if !lock_is_free(&f) {
        return false;
    }
    if !pid_is_running(pid) {
        return true;
    }
    let age = f
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    age.is_some_and(|a| a > REUSED_PID_AGE)
}

/// Whether another process holds the partial's lock. On Unix the lock is advisory and
/// a writer's own lock does not stop llama.cpp writing through another handle. Windows
/// locks are mandatory, so a writer there holds no lock; an open file cannot be removed
/// on Windows anyway, which protects a running writer just as well.
#[cfg(unix)]
fn lock(f: &File) {
    let _ = f.try_lock();
}

#[cfg(not(unix))]
fn lock(_f: &File) {}

#[cfg(unix)]
fn lock_is_free(f: &File) -> bool {
    // Taken and released at once (closing the handle releases it too).
    f.try_lock().is_ok() && f.unlock().is_ok()
}

#[cfg(not(unix))]
fn lock_is_free(_f: &File) -> bool {
    true
}

#[cfg(unix)]
fn pid_is_running(pid: u32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks existence; EPERM means it exists under another user.
    if matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH)) {
        return false;
    }
    // A killed writer stays a zombie until its parent reaps it, which in a container
    // without an init may be never: a zombie writes nothing.
    !is_zombie(pid)
}

#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    // /proc/PID/stat: "PID (COMM) STATE ...", COMM may hold spaces and parentheses.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn is_zombie(_pid: u32) -> bool {
    false
}

#[cfg(not(unix))]
fn pid_is_running(_pid: u32) -> bool {
    // Without a cheap check, rely on the age rule: old unlocked partials are stale.
    true
}

/// This process's partial files, removed if the user interrupts (Ctrl-C) a write.
static PARTIALS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Makes Ctrl-C remove this process's partial files, then exit as a shell would (130).
/// For commands whose long work is a write (quantize); a command with a Ctrl-C handler
/// of its own (run, serve) keeps it, and the next writer sweeps what it leaves.
pub fn remove_partials_on_ctrl_c() {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if let Ok(ps) = PARTIALS.lock() {
                for p in ps.iter() {
                    let _ = fs::remove_file(p);
                }
            }
            eprintln!();
            std::process::exit(130);
        });
    });
}

fn track(p: &Path) {
    if let Ok(mut ps) = PARTIALS.lock() {
        ps.push(p.to_path_buf());
    }
}

fn untrack(p: &Path) {
    if let Ok(mut ps) = PARTIALS.lock() {
        ps.retain(|q| q != p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_writer_pid() {
        let p = partial_path(Path::new("/a/b/model.gguf"));
        assert_eq!(p.parent(), Some(Path::new("/a/b")));
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".model.gguf.edge-partial-"), "{name}");
        assert_eq!(partial_owner(&name), Some(std::process::id()));
        assert_eq!(partial_owner(".x.gguf.edge-partial-123"), Some(123));
        assert_eq!(partial_owner(".x.gguf.edge-partial-123-4"), Some(123));
        for other in [
            "model.gguf",
            "x.edge-partial-12",
            ".x.edge-partial-",
            ".x.edge-partial-abc",
        ] {
            assert_eq!(partial_owner(other), None, "{other}");
        }
    }

    #[test]
    fn a_dead_writers_partial_is_swept_and_a_live_ones_is_not() {
        let dir = tempfile::tempdir().unwrap();
        // A PID far above pid_max (4194304 at most on Linux) is never running.
        let dead = dir.path().join(".m.gguf.edge-partial-99999999-0");
        fs::write(&dead, b"half").unwrap();
        // A live writer: another process (flock(1), util-linux) holding the lock.
        let live = dir.path().join(".n.gguf.edge-partial-1-0");
        let mut holder = std::process::Command::new("flock")
            .arg(&live)
            .args(["sleep", "30"])
            .spawn()
            .expect("flock(1) from util-linux");
        let other = dir.path().join("keep.gguf");
        fs::write(&other, b"user data").unwrap();
        // Wait until flock(1) has created the file and taken the lock.
        for _ in 0..250 {
            if live.exists() && !lock_is_free(&File::open(&live).unwrap()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(live.exists(), "flock did not start");
        assert_eq!(sweep_stale(dir.path()), 1);
        assert!(!dead.exists());
        assert!(other.exists());
        assert!(live.exists(), "a locked partial was removed");
        let _ = holder.kill();
        let _ = holder.wait();
        // PID 1 is running and the lock is free, but the file is young: kept.
        assert_eq!(sweep_stale(dir.path()), 0);
        assert!(live.exists());
    }

    #[test]
    fn a_dropped_partial_leaves_nothing_and_a_commit_renames() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        {
            let mut p = PartialFile::create(&target, Some(4)).unwrap();
            p.file().write_all(b"half").unwrap();
            assert!(p.path().exists());
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&target, b"whole").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"whole");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn too_little_space_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = PartialFile::create(&dir.path().join("x"), Some(u64::MAX)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("needs "), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(msg.contains(" free") && !msg.contains('\n'), "{msg}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
