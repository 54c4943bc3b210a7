//! Quantization library for edge. Filled in by the quantization issue.
