//! Synthetic tiny random-weight GGUF models for tests (placeholder)
