//! A GGUF header from arbitrary bytes: parsed, checked against its data, turned into
//! model facts and a model shape, validated as llama.cpp would load it, and planned on
//! a profile. Any of these may refuse; none may panic, hang or allocate wildly.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::gguf_header(data));
