//! edge: run GGUF-quantized LLMs on laptops and small devices.
//!
//! The binary (`src/main.rs`) only parses arguments (`cli`) and dispatches to `commands`,
//! each a thin layer over one library call. Only `engine` talks to llama.cpp; every
//! command that loads a model goes through `loading`, which plans it (`planner`, on a
//! `profile`) and loads it with the plan applied. Pure logic (GGUF inspection, chat
//! templates, thinking parsing, planning, batch formats, model names) is kept apart from
//! llama.cpp so it can be unit-tested without a model. Modules import each other without
//! circles (`scripts/check-module-cycles.py`).

pub mod batch;
pub mod calibrate;
pub mod catalog;
pub mod chat;
pub mod chat_formats;
pub mod chat_template;
pub mod cli;
pub mod commands;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod gguf_info;
pub mod hub;
pub mod loading;
pub mod partial_file;
pub mod planner;
pub mod profile;
pub mod published;
pub mod quantize;
pub mod request;
pub mod resolve;
pub mod serve;
pub mod speculative;
pub mod synth;
pub mod term;
#[doc(hidden)]
pub mod test_data;
pub mod thinking;
pub mod tools;
