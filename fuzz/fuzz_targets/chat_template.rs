//! A hostile chat template with hostile messages: the input is the template, a NUL,
//! then a JSON array of messages. Compiling and rendering may fail, never crash, and
//! stay within the template limits (fuel, output size).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::chat_template(data));
