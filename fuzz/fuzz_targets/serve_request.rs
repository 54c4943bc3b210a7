//! `edge serve` request bodies (OpenAI chat and completions, Ollama chat and generate)
//! and the SSE frames written back: a body is parsed or refused with a FieldError whose
//! envelope serialises; a chunk built from hostile text is one SSE event.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::serve_request(data));
