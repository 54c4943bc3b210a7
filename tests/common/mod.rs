//! Shared helpers for the integration tests: test-data paths, the edge binary, and
//! synthetic models written once per test process.
#![allow(dead_code)]

pub mod rpc;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use edge::synth::{write_gguf, SynthArch, SynthSpec, SynthVocab};

/// `$EDGE_TEST_DATA`, default `<repo>/target/test-data` (see scripts/fetch-test-data.sh).
pub fn test_data() -> PathBuf {
    edge::test_data::dir()
}

/// A test-data file; panics with the fix when it is missing (tests never skip silently).
pub fn data_file(rel: &str) -> PathBuf {
    edge::test_data::require(rel)
}

pub fn smollm2() -> PathBuf {
    data_file("smollm2-135m-instruct-q4_1.gguf")
}

pub fn qwen3_tokenizer_dir() -> PathBuf {
    data_file("qwen3-tokenizer")
}

/// A scratch dir that lives for the whole test process.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

/// A synthetic model with the toy vocabulary, written once per process.
pub fn synth_model(arch: SynthArch) -> PathBuf {
    let path = scratch().join(format!("synth-{}.gguf", arch.as_str()));
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        write_gguf(&SynthSpec::new(arch), &path).expect("write synthetic model");
    }
    path
}

/// A synthetic qwen3/qwen3moe model with Qwen 3's real tokenizer and template.
pub fn synth_qwen3_real_vocab(arch: SynthArch) -> PathBuf {
    let path = scratch().join(format!("synth-{}-qwenvocab.gguf", arch.as_str()));
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let dir = qwen3_tokenizer_dir();
        let mut spec = SynthSpec::new(arch);
        spec.vocab = SynthVocab::Qwen3Files {
            tokenizer_json: dir.join("tokenizer.json"),
            tokenizer_config_json: dir.join("tokenizer_config.json"),
        };
        write_gguf(&spec, &path).expect("write synthetic model");
    }
    path
}

pub fn edge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edge"));
    c.env("NO_COLOR", "1").env_remove("EDGE_HOME");
    c
}

pub fn run_edge(args: &[&str]) -> Output {
    edge().args(args).output().expect("spawn edge")
}

/// `edge run MODEL` answers "Paris" to the capital of France, greedily.
pub fn answers_paris(model: &Path) {
    let o = run_edge(&[
        "run",
        model.to_str().unwrap(),
        "Name the capital of France.",
        "--temp",
        "0",
        "--max-tokens",
        "24",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Paris"),
        "{}: {}",
        model.display(),
        stdout(&o)
    );
}

/// `edge run MODEL` loads the model and generates: the run succeeds, `--stats` counts
/// at least one generated token, and text reaches stdout. For random-weight models,
/// whose text means nothing.
pub fn generates(model: &Path) {
    let o = run_edge(&[
        "run",
        model.to_str().unwrap(),
        "Hello",
        "--temp",
        "0",
        "--max-tokens",
        "6",
        "--stats",
    ]);
    assert!(o.status.success(), "{}: {}", model.display(), stderr(&o));
    let err = stderr(&o);
    let generated: u64 = err
        .split("generation ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no generation stats in: {err}"));
    assert!(generated >= 1, "{}: nothing generated", model.display());
    assert!(!o.stdout.is_empty(), "{}: no output", model.display());
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run: non-zero exit, no signal (no panic abort/segfault), and one
/// clear `edge: error:` line on stderr.
pub fn assert_clean_failure(o: &Output, expect_in_msg: &str) {
    use std::os::unix::process::ExitStatusExt;
    let err = stderr(o);
    assert!(
        o.status.signal().is_none(),
        "killed by a signal: {:?}\n{err}",
        o.status
    );
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one line, got: {err}");
    assert!(lines[0].starts_with("edge: error: "), "{err}");
    assert!(
        lines[0]
            .to_lowercase()
            .contains(&expect_in_msg.to_lowercase()),
        "expected '{expect_in_msg}' in: {err}"
    );
}

/// SmolLM2 requantized to `ty` (`F16` with --allow-requantize from the Q4_1 file, any
/// other type from that F16), written once per test process.
pub fn smollm2_as(ty: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let out = scratch().join(format!("smollm2-{}.gguf", ty.to_lowercase()));
    let src = if ty == "F16" {
        smollm2()
    } else {
        smollm2_as("F16")
    };
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !out.exists() {
        let o = run_edge(&[
            "quantize",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            "--type",
            ty,
            "--allow-requantize",
        ]);
        assert!(o.status.success(), "quantize to {ty}: {}", stderr(&o));
    }
    out
}

/// Copies a GGUF without the metadata key `key` (tensor data kept, realigned).
pub fn gguf_without_key(src: &Path, key: &str, dst: &Path) {
    let data = std::fs::read(src).unwrap();
    let u32_at = |p: usize| u32::from_le_bytes(data[p..p + 4].try_into().unwrap());
    let u64_at = |p: usize| u64::from_le_bytes(data[p..p + 8].try_into().unwrap());
    fn value_len(data: &[u8], ty: u32, p: usize) -> usize {
        let u64_at = |p: usize| u64::from_le_bytes(data[p..p + 8].try_into().unwrap()) as usize;
        match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => 8 + u64_at(p),
            9 => {
                let et = u32::from_le_bytes(data[p..p + 4].try_into().unwrap());
                let n = u64_at(p + 4);
                let mut q = p + 12;
                for _ in 0..n {
                    q += value_len(data, et, q);
                }
                q - p
            }
            _ => panic!("unknown GGUF type {ty}"),
        }
    }
    assert_eq!(&data[0..4], b"GGUF");
    let n_tensors = u64_at(8);
    let n_kv = u64_at(16);
    let mut p = 24;
    let mut kvs = Vec::new();
    let mut alignment = 32u64;
    let mut dropped = false;
    for _ in 0..n_kv {
        let start = p;
        let klen = u64_at(p) as usize;
        let k = std::str::from_utf8(&data[p + 8..p + 8 + klen])
            .unwrap()
            .to_string();
        p += 8 + klen;
        let ty = u32_at(p);
        p += 4;
        if k == "general.alignment" {
            alignment = u64::from(u32_at(p));
        }
        p += value_len(&data, ty, p);
        if k == key {
            dropped = true;
        } else {
            kvs.push(&data[start..p]);
        }
    }
    assert!(dropped, "{key} not in {}", src.display());
    let tensors_start = p;
    for _ in 0..n_tensors {
        let nlen = u64_at(p) as usize;
        p += 8 + nlen;
        let nd = u32_at(p) as usize;
        p += 4 + 8 * nd + 4 + 8;
    }
    let tensors = &data[tensors_start..p];
    let old_data_start = (p as u64).div_ceil(alignment) * alignment;
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[0..8]);
    out.extend_from_slice(&n_tensors.to_le_bytes());
    out.extend_from_slice(&((kvs.len()) as u64).to_le_bytes());
    for kv in kvs {
        out.extend_from_slice(kv);
    }
    out.extend_from_slice(tensors);
    let new_start = (out.len() as u64).div_ceil(alignment) * alignment;
    out.resize(new_start as usize, 0);
    out.extend_from_slice(&data[old_data_start as usize..]);
    std::fs::write(dst, out).unwrap();
}
