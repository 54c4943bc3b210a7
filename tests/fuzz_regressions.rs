//! Every input a fuzz target (`fuzz/`, `scripts/fuzz.sh`) ever crashed on, replayed
//! through the same code on stable: `tests/fuzz-regressions/<target>/<input>`.
//!
//! Run with `cargo test --release --test fuzz_regressions`.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 7] = [
    ("gguf_header", edge::fuzzing::gguf_header),
    ("batch_lines", edge::fuzzing::batch_lines),
    ("chat_template", edge::fuzzing::chat_template),
    ("imatrix_file", edge::fuzzing::imatrix_file),
    ("toml_data", edge::fuzzing::toml_data),
    ("serve_request", edge::fuzzing::serve_request),
    ("tool_calls", edge::fuzzing::tool_calls),
];

#[test]
fn every_kept_fuzz_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut ran = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some((_, target)) = TARGETS.iter().find(|(n, _)| *n == name) else {
            panic!("{}: no fuzz target named {name}", dir.display());
        };
        for input in std::fs::read_dir(&dir).unwrap() {
            let path = input.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            eprintln!("{name}: {}", path.display());
            target(&bytes);
            ran += 1;
        }
    }
    assert!(ran > 0, "no regression inputs under {}", root.display());
}

/// The targets also take what the fuzzers start from: real files, whole.
#[test]
fn real_files_run_clean() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for p in std::fs::read_dir(repo.join("profiles")).unwrap() {
        let path = p.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            edge::fuzzing::toml_data(&std::fs::read(path).unwrap());
        }
    }
    let smol = edge::test_data::require("smollm2-135m-instruct-q4_1.gguf");
    let header = std::fs::read(&smol).unwrap();
    edge::fuzzing::gguf_header(&header[..header.len().min(4 << 20)]);
    let templates = edge::test_data::require("templates");
    for t in std::fs::read_dir(templates).unwrap() {
        let mut input = std::fs::read(t.unwrap().path()).unwrap();
        input.extend_from_slice(
            b"\0[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"hi\"}]",
        );
        edge::fuzzing::chat_template(&input);
    }
}
