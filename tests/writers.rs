//! Writers leave nothing behind: `edge quantize` killed with SIGKILL mid-write and run
//! again; two writers in one folder; `quantize` and `imatrix` on a disk that is too
//! small, or that fills while they write (a tmpfs of a few MB: these tests mount one,
//! which needs root, as these machines and CI have).
//!
//! Run with `cargo test --release --test writers`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use edge::gguf_info::GgufFile;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tmpfs of `size` (mount(8) syntax), unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount(8) for the full-disk test: {e}"));
        assert!(
            o.status.success(),
            "cannot mount a {size} tmpfs at {} (the full-disk tests need root, as CI has): {}",
            dir.path().display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The file names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".edge-partial-"))
        .collect()
}

/// `edge quantize SRC OUT --type TY`, started in the background.
fn spawn_quantize(src: &Path, out: &Path, ty: &str) -> Child {
    edge()
        .args(["quantize", s(src), s(out), "--type", ty])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edge quantize")
}

/// Waits until a partial file in `dir` holds more than 1 MB: the write is under way.
fn wait_for_partial(dir: &Path, child: &mut Child) -> PathBuf {
    let start = Instant::now();
    loop {
        if let Some(p) = partials(dir)
            .into_iter()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 1 << 20))
        {
            return p;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("edge quantize ended ({status}) before it was caught mid-write");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no partial file appeared in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A complete GGUF: its header parses and every tensor's data is in the file.
fn assert_complete(path: &Path) {
    let g = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    g.check_data_present(std::fs::metadata(path).unwrap().len())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn quantize_killed_mid_write_then_rerun_leaves_a_whole_file_and_no_partial() {
    let f16 = smollm2_as("F16");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let mut child = spawn_quantize(&f16, &out, "Q4_K_M");
    let partial = wait_for_partial(dir.path(), &mut child);
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    assert!(!out.exists(), "a killed run left a file under OUT's name");
    assert!(
        partial.exists(),
        "the test did not catch the write in progress"
    );

    let o = run_edge(&["quantize", s(&f16), s(&out), "--type", "Q4_K_M"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        names(dir.path()),
        vec!["out.gguf"],
        "the stale partial stayed"
    );
    assert_complete(&out);
    answers_paris(&out);
}

#[test]
fn a_running_writers_partial_is_never_removed() {
    // A second writer into the same folder sweeps stale partials while the first one
    // writes: the first one's partial is live (its PID runs, its lock is held).
    let f16 = smollm2_as("F16");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    let mut first = spawn_quantize(&f16, &a, "Q8_0");
    wait_for_partial(dir.path(), &mut first);
    let o = run_edge(&["quantize", s(&f16), s(&b), "--type", "Q4_K_M"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(names(dir.path()), vec!["a.gguf", "b.gguf"]);
    assert_complete(&a);
    assert_complete(&b);
}

#[test]
fn quantize_refuses_a_disk_without_room_before_writing() {
    let f16 = smollm2_as("F16");
    let disk = Tmpfs::mount("50m");
    let out = disk.path().join("o.gguf");
    let planned = {
        let o = run_edge(&["quantize", s(&f16), "--type", "Q8_0", "--dry-run", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["file_bytes"].as_u64().unwrap()
    };
    let o = run_edge(&["quantize", s(&f16), s(&out), "--type", "Q8_0"]);
    let want = format!(
        "needs {} at {}, 50.00 MiB free",
        edge::term::human_bytes(planned),
        disk.path().display()
    );
    assert_clean_failure(&o, &want);
    assert!(names(disk.path()).is_empty(), "{:?}", names(disk.path()));
    // A split copies the whole file into shards: it needs room for both.
    let o = run_edge(&[
        "quantize",
        s(&f16),
        s(&out),
        "--type",
        "Q8_0",
        "--split-max-size",
        "40M",
    ]);
    assert_clean_failure(
        &o,
        &format!("needs {} at", edge::term::human_bytes(2 * planned)),
    );
    assert!(names(disk.path()).is_empty(), "{:?}", names(disk.path()));
}

#[test]
fn quantize_on_a_disk_that_fills_while_it_writes_is_one_line_and_leaves_nothing() {
    let f16 = smollm2_as("F16");
    // Q4_K_M SmolLM2 is about 101 MiB: it fits 150 MB when quantize starts, then another
    // program takes 100 MB of it.
    let disk = Tmpfs::mount("150m");
    let out = disk.path().join("o.gguf");
    let mut child = spawn_quantize(&f16, &out, "Q4_K_M");
    wait_for_partial(disk.path(), &mut child);
    let filler = disk.path().join("other-program.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x5au8; 1 << 20];
        for _ in 0..100 {
            if f.write_all(&block).is_err() {
                break; // the disk is full: that is the point
            }
        }
    }
    let o = child.wait_with_output().unwrap();
    assert_clean_failure(&o, "needs ");
    let line = stderr(&o);
    assert!(
        line.contains(&format!("at {}, ", disk.path().display())) && line.contains(" free"),
        "{line}"
    );
    assert!(!line.contains("iostream"), "{line}");
    assert_eq!(names(disk.path()), vec!["other-program.bin"]);
}

#[test]
fn imatrix_on_a_full_disk_is_one_line_and_leaves_nothing() {
    let model = synth_model(edge::synth::SynthArch::Qwen3Moe);
    let text = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let imatrix_to = |out: &Path| {
        run_edge(&[
            "imatrix",
            s(&model),
            "--text",
            s(&text),
            "--ctx",
            "64",
            "--chunks",
            "2",
            "-o",
            s(out),
        ])
    };
    let disk = Tmpfs::mount("32k");
    let o = imatrix_to(&disk.path().join("imatrix.gguf"));
    assert_clean_failure(&o, &format!("at {}, 32.00 KiB free", disk.path().display()));
    assert!(stderr(&o).contains("needs "), "{}", stderr(&o));
    assert!(names(disk.path()).is_empty(), "{:?}", names(disk.path()));
    // The same run with room writes the file.
    let roomy = tempfile::tempdir().unwrap();
    let o = imatrix_to(&roomy.path().join("imatrix.gguf"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(roomy.path()), vec!["imatrix.gguf"]);
}
