//! `edge quantize --split-max-size / --split-max-tensors`: the output in llama.cpp's
//! gguf-split layout, on the real SmolLM2 model.
//!
//! Run with `cargo test --release --test quantize_split`.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use edge::gguf_info::{GgufFile, MetaValue};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_of(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// Files in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn quantize(input: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut a = vec![
        "quantize",
        s(input),
        s(out),
        "--type",
        "Q8_0",
        "--allow-requantize",
        "--json",
    ];
    a.extend_from_slice(extra);
    json_of(&run_edge(&a))
}

fn meta_u64(g: &GgufFile, key: &str) -> Option<u64> {
    match g.get(key)? {
        MetaValue::U16(v) => Some(u64::from(*v)),
        MetaValue::I32(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// Every tensor's (name, type, dims, data) across `paths`, in order.
fn tensors(paths: &[PathBuf]) -> Vec<(String, u32, Vec<u64>, Vec<u8>)> {
    let mut out = Vec::new();
    for p in paths {
        let g = GgufFile::open(p).unwrap();
        let f = std::fs::File::open(p).unwrap();
        for t in &g.tensors {
            let mut data = vec![0u8; t.bytes as usize];
            f.read_exact_at(&mut data, g.data_offset + t.offset)
                .unwrap();
            out.push((t.name.clone(), t.ggml_type.0, t.dims.clone(), data));
        }
    }
    out
}

#[test]
fn split_by_size_keeps_every_tensor_and_the_first_shard_answers_paris() {
    let model = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.gguf");
    quantize(&model, &whole, &[]);

    let sdir = dir.path().join("split");
    std::fs::create_dir(&sdir).unwrap();
    let out = sdir.join("model.gguf");
    const MAX: u64 = 60_000_000;
    let plan = quantize(&model, &out, &["--split-max-size", "60M", "--dry-run"]);
    assert!(
        files(&sdir).is_empty(),
        "a dry run wrote {:?}",
        files(&sdir)
    );
    let r = quantize(&model, &out, &["--split-max-size", "60M"]);
    assert_eq!(
        plan["shards"], r["shards"],
        "the dry run's plan is what is written"
    );

    let shards = r["shards"].as_array().unwrap();
    let n = shards.len();
    assert!(n >= 2, "{r}");
    let names: Vec<String> = (1..=n)
        .map(|i| format!("model-{i:05}-of-{n:05}.gguf"))
        .collect();
    assert_eq!(files(&sdir), names, "shards only, no partial files");
    let paths: Vec<PathBuf> = names.iter().map(|n| sdir.join(n)).collect();
    let mut total = 0;
    for (i, (p, rep)) in paths.iter().zip(shards).enumerate() {
        let len = std::fs::metadata(p).unwrap().len();
        assert!(len <= MAX, "{} is {len} bytes", p.display());
        assert_eq!(rep["bytes"], len, "{rep}");
        total += len;
        let g = GgufFile::open(p).unwrap();
        assert_eq!(rep["tensors"], g.tensors.len() as u64);
        assert_eq!(meta_u64(&g, "split.no"), Some(i as u64));
        assert_eq!(meta_u64(&g, "split.count"), Some(n as u64));
        assert_eq!(meta_u64(&g, "split.tensors.count"), Some(272));
        // All metadata in the first shard, only the split keys in the others.
        assert_eq!(g.get("tokenizer.ggml.tokens").is_some(), i == 0);
        assert_eq!(g.architecture().is_some(), i == 0);
        if i > 0 {
            assert_eq!(g.metadata.len(), 3, "{:?}", g.metadata);
        }
    }
    assert_eq!(r["written_bytes"], total);

    // The same tensors, in the same order, with the same bytes as the unsplit file.
    let a = tensors(std::slice::from_ref(&whole));
    let b = tensors(&paths);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!(x == y, "tensor {} differs", x.0);
    }
    let data = |t: &[(String, u32, Vec<u64>, Vec<u8>)]| t.iter().map(|x| x.3.len()).sum::<usize>();
    assert_eq!(data(&a), data(&b));

    // llama.cpp follows split.count from the first shard.
    answers_paris(&paths[0]);
}

#[test]
fn split_by_tensor_count_and_a_split_that_fits_in_one_file() {
    let model = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let r = quantize(&model, &out, &["--split-max-tensors", "100"]);
    let counts: Vec<u64> = r["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tensors"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![100, 100, 72]);
    assert_eq!(
        files(dir.path()),
        vec![
            "m-00001-of-00003.gguf",
            "m-00002-of-00003.gguf",
            "m-00003-of-00003.gguf"
        ]
    );

    // Everything fits: one plain file under the output's name, no split keys.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let o = run_edge(&[
        "quantize",
        s(&model),
        s(&out),
        "--type",
        "Q8_0",
        "--allow-requantize",
        "--split-max-size",
        "1G",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("fits in one file"), "{}", stdout(&o));
    assert_eq!(files(dir.path()), vec!["m.gguf"]);
    let g = GgufFile::open(&out).unwrap();
    assert!(g.get("split.count").is_none());
}

#[test]
fn bad_split_values_fail_cleanly() {
    let model = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    // Usage errors: clap's exit code 2, one `edge: error:` line.
    for (flag, v) in [
        ("--split-max-size", "0"),
        ("--split-max-size", "-5M"),
        ("--split-max-size", "lots"),
        ("--split-max-size", "12XB"),
        ("--split-max-tensors", "0"),
        ("--split-max-tensors", "-1"),
    ] {
        let arg = format!("{flag}={v}");
        let o = run_edge(&[
            "quantize",
            s(&model),
            s(&out),
            "--type",
            "Q8_0",
            "--allow-requantize",
            &arg,
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {v}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].starts_with("edge: error: "), "{err}");
        assert!(lines[0].contains(flag), "{err}");
    }
    // Too small for the model's metadata (SmolLM2's vocabulary alone is ~1 MB).
    let o = run_edge(&[
        "quantize",
        s(&model),
        s(&out),
        "--type",
        "Q8_0",
        "--allow-requantize",
        "--split-max-size",
        "100K",
    ]);
    assert_clean_failure(&o, "smaller than the model's metadata");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}
