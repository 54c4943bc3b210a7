//! A model's reply parsed for reasoning and tool calls in every format, whole and
//! streamed in pieces cut at fuzzer-chosen places: the two must agree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::tool_calls(data));
