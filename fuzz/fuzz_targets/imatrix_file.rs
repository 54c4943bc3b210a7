//! An imatrix GGUF from arbitrary bytes (`--imatrix FILE`, `imatrix --resume/--merge`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::imatrix_file(data));
