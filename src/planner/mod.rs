//! The expert-offload planner: from a GGUF's tensor table and a device profile, decide
//! where every tensor lives (VRAM, RAM, SSD through mmap), the context and KV type, and
//! predict decode and prefill speed, before anything loads. Pure logic, no llama.cpp:
//! `plan(shape, profile, request)` is a function of its inputs.

pub mod classify;
pub mod context;
pub mod cost;
pub mod draft;
pub mod fit;
pub mod memory;
pub mod model;
pub mod place;
pub mod plan;
pub mod report;

pub use classify::{decode_read_bytes, role_of, TensorRole};
pub use model::{KvType, ModelShape};
pub use place::plan;
pub use plan::{CpuPin, Pins, Plan, PlanRequest, Prediction, Suggestion, Tier};
