//! The only door to llama.cpp. Everything that touches it lives here: loading a model
//! with a plan's placement ([`Model::load_planned`]), the one context builder
//! ([`ContextSpec`], filled from a plan), the chat session with KV reuse across turns,
//! the continuous-batching decode loop, the bench loop, evaluation logits, the imatrix
//! callback, quantize calls, RPC devices and device detection. Other modules call these
//! with plain Rust types; `unsafe` lives in [`ffi`] alone.

mod backend;
mod batch;
mod bench;
mod context;
mod devices;
mod error;
pub mod ffi;
mod logits;
mod model;
mod sampling;
mod session;
mod speculative;

pub use backend::{backend, default_threads};
pub use batch::{
    run_batch, BatchFeed, BatchSpeculation, DecodeDone, DecodeJob, FinishReason, JobOutcome,
    TokenEvent, TokenLogprob, TokenText,
};
pub use bench::{run_test, TestParams};
pub use context::ContextSpec;
pub use devices::{add_rpc_servers, devices, DeviceInfo, DeviceKind};
pub use error::EngineError;
pub use ffi::{ImatrixAcc, QuantizeParams};
pub use llama_cpp_2::token::LlamaToken as Token;
pub use logits::{imatrix_collect, tokenize_text, LogitsRunner};
pub use model::{ChatTemplateChoice, LoadOptions, Model, Placement};
pub use sampling::{json_schema_grammar, GrammarSpec, Sampling, SamplingError};
pub use session::{GenOutput, GenRequest, Session, StopReason, Utf8Stream};
pub use speculative::{vocab_facts, Speculation};
