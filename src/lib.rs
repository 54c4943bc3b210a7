//! edge: run GGUF-quantized LLMs on laptops and small devices.
//!
//! The binary (`src/main.rs`) only parses arguments and dispatches to `commands`.
//! Pure logic (GGUF inspection, chat templates, thinking parsing, model resolution)
//! is kept apart from llama.cpp (`engine`) so it can be unit-tested without a model.

pub mod batch;
pub mod calibrate;
pub mod catalog;
pub mod chat;
pub mod chat_template;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod gguf_info;
pub mod hub;
pub mod loading;
pub mod planner;
pub mod profile;
pub mod quantize;
pub mod resolve;
pub mod synth;
pub mod term;
pub mod thinking;
