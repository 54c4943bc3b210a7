//! The model catalog and device profiles (`profiles/*.toml`, `--profile FILE`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::toml_data(data));
