//! `edge serve`: an OpenAI- and Ollama-compatible HTTP server on one loaded model.
//!
//! The HTTP side (axum on tokio) validates, renders and tokenizes each request, then
//! queues it for the engine thread ([`worker`]), which runs the continuous-batching
//! scheduler `edge batch` uses, one slot per `--parallel`. Answers come back per token
//! over a channel; a client that disconnects closes it and its slot frees at the next
//! decode step.

pub mod generation;
pub mod http;
pub mod metrics;
pub mod ollama;
pub mod ollama_routes;
pub mod openai_routes;
pub mod protocol;
pub mod state;
pub mod worker;

pub use http::{serve, ServeConfig, ServedModels};
