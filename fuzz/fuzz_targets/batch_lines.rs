//! `edge batch` input and output files: every input line parsed as a request; the same
//! bytes read back as an output file that a crash may have torn (resume bookkeeping):
//! repaired, keyed and merged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::batch_lines(data));
