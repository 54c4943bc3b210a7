//! The command line (clap): the top-level flags and the subcommands. Each subcommand's
//! arguments live in its own module under `commands`; the groups several share live in
//! `commands::args`. `main.rs` parses these and dispatches.

use clap::{Parser, Subcommand};

use crate::commands;

#[derive(Debug, Parser)]
#[command(
    name = "edge",
    about = "Run GGUF-quantized LLMs on laptops and small devices",
    disable_version_flag = true
)]
pub struct Cli {
    /// Show llama.cpp's own logs on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Print the version, the llama.cpp build and the compiled backends.
    #[arg(short = 'V', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Chat with a model, or answer one prompt and exit.
    Run(commands::run::RunArgs),
    /// Describe a GGUF without loading its weights.
    Show(commands::show::ShowArgs),
    /// Measure prompt-processing and generation speed (llama-bench compatible).
    Bench(commands::bench::BenchArgs),
    /// Download a model (catalog name, hf.co/ORG/REPO[:QUANT]) into the local store.
    Pull(commands::pull::PullArgs),
    /// List the models in the local store.
    List(commands::list::ListArgs),
    /// Remove a model from the local store.
    Rm(commands::rm::RmArgs),
    /// Register a local GGUF file under a name.
    Import(commands::import::ImportArgs),
    /// Quantize a GGUF (llama.cpp types, recipes, quantize-to-fit).
    Quantize(commands::quantize::QuantizeArgs),
    /// Compute an importance matrix (llama.cpp's imatrix GGUF format).
    Imatrix(commands::imatrix::ImatrixArgs),
    /// Perplexity and KL divergence against a reference model.
    Eval(commands::eval::EvalArgs),
    /// Run a JSONL file of requests offline (OpenAI batch format), resumable.
    Batch(commands::batch::BatchArgs),
    /// Serve the model over HTTP: OpenAI- and Ollama-compatible, continuous batching.
    Serve(commands::serve::ServeArgs),
    /// Plan where each tensor lives on a device (VRAM, RAM, SSD) and predict the speed.
    Plan(commands::plan::PlanArgs),
    /// Serve this machine's CPU as a ggml RPC device for `edge run --rpc`.
    RpcServer(commands::rpc_server::RpcServerArgs),
    /// Device profiles for the planner: list, show, detect this machine, calibrate it.
    Profile(commands::profile::ProfileArgs),
    /// Write a tiny random-weight GGUF (qwen3, qwen3moe, llama4) for tests and demos.
    #[command(hide = true)]
    Synth(commands::synth::SynthArgs),
}
