//! Quantization library for edge: ggml/llama.cpp type tables, tensor classes, recipes
//! (per-class type mixes kept as TOML data in `recipes/`), and quantize-to-fit (a
//! per-tensor type choice under a byte budget). Pure Rust: no llama.cpp here; the
//! `edge` crate drives `llama_model_quantize` with what this crate decides.

pub mod classify;
pub mod fit;
pub mod recipe;
pub mod split;
pub mod types;

pub use classify::{classify, layer_of, llama_quantizes, TensorClass};
pub use fit::{fit, sensitivity, Candidate, FitError, Item, Solution};
pub use recipe::{Recipe, RecipeError};
pub use types::{file_type_by_name, ggml_type, ggml_type_by_name, FileType, GgmlType};
