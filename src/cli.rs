//! Command-line definitions (clap). `main.rs` parses these and dispatches.

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Run(RunArgs),
    /// Describe a GGUF without loading its weights.
    Show(ShowArgs),
    /// Measure prompt-processing and generation speed (llama-bench compatible).
    Bench(BenchArgs),
    /// Download a model (catalog name, hf.co/ORG/REPO[:QUANT]) into the local store.
    Pull(crate::commands::pull::PullArgs),
    /// List the models in the local store.
    List(crate::commands::list::ListArgs),
    /// Remove a model from the local store.
    Rm(crate::commands::rm::RmArgs),
    /// Register a local GGUF file under a name.
    Import(crate::commands::import::ImportArgs),
    /// Quantize a GGUF (llama.cpp types, recipes, quantize-to-fit).
    Quantize(crate::commands::quantize::QuantizeArgs),
    /// Compute an importance matrix (llama.cpp's imatrix GGUF format).
    Imatrix(crate::commands::imatrix::ImatrixArgs),
    /// Perplexity and KL divergence against a reference model.
    Eval(crate::commands::eval::EvalArgs),
    /// Run a JSONL file of requests offline (OpenAI batch format), resumable.
    Batch(crate::commands::batch::BatchArgs),
    /// Plan where each tensor lives on a device (VRAM, RAM, SSD) and predict the speed.
    Plan(crate::commands::plan::PlanArgs),
    /// Serve this machine's CPU as a ggml RPC device for `edge run --rpc`.
    RpcServer(crate::commands::rpc_server::RpcServerArgs),
    /// Device profiles for the planner: list, show, detect this machine, calibrate it.
    Profile(crate::commands::profile::ProfileArgs),
    /// Write a tiny random-weight GGUF (qwen3, qwen3moe, llama4) for tests and demos.
    #[command(hide = true)]
    Synth(SynthArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model: a catalog name (qwen3-0.6b[:q4_k_m]), hf.co/ORG/REPO[:QUANT], or a path to a .gguf
    /// (the first shard of a split model). Pulled when missing.
    pub model: String,
    /// Prompt to answer; without it (and with stdin a terminal) edge starts a chat.
    pub prompt: Option<String>,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Thinking mode for models that support it (default: on where the template allows).
    #[arg(long, value_enum)]
    pub think: Option<OnOff>,
    /// Force `</think>` after this many reasoning tokens.
    #[arg(long, value_name = "N")]
    pub think_budget: Option<u32>,
    /// Do not print the model's reasoning.
    #[arg(long)]
    pub hide_thinking: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Context size in tokens (default: the model's, capped at 4096).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..))]
    pub ctx: Option<u32>,
    /// Maximum tokens to generate per answer.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: Option<u32>,
    /// CPU threads (default: physical cores).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Print load time, prompt and generation speed to stderr.
    #[arg(long)]
    pub stats: bool,
    #[command(flatten)]
    pub placement: crate::commands::plan::PlacementArgs,
    /// Print the placement plan and exit without loading the model.
    #[arg(long)]
    pub plan_only: bool,
    /// Use a ggml RPC server (`edge rpc-server`, llama.cpp's rpc-server) as a device:
    /// HOST:PORT (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    pub rpc: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct SamplingArgs {
    /// Temperature; 0 means greedy and deterministic.
    #[arg(long, value_name = "T", value_parser = non_negative_f32)]
    pub temp: Option<f32>,
    /// Top-k sampling (0 disables).
    #[arg(long, value_name = "K")]
    pub top_k: Option<u32>,
    /// Top-p (nucleus) sampling, in (0, 1].
    #[arg(long, value_name = "P", value_parser = unit_f32)]
    pub top_p: Option<f32>,
    /// Min-p sampling, in [0, 1].
    #[arg(long, value_name = "P", value_parser = unit_f32)]
    pub min_p: Option<f32>,
    /// Random seed (default: random; with --temp 0 the seed does not matter).
    #[arg(long, value_name = "N")]
    pub seed: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Model name or path to a .gguf file (a header-only GGUF works too).
    pub model: String,
    /// Print the full tensor table.
    #[arg(long)]
    pub tensors: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model name or path to a .gguf file.
    pub model: String,
    /// Prompt tokens for the prompt-processing test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: u32,
    /// Tokens for the generation test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: u32,
    /// CPU threads (default: physical cores).
    #[arg(short = 't', long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Repetitions per test.
    #[arg(short = 'r', long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub repetitions: u32,
    /// Logical batch size.
    #[arg(short = 'b', long, default_value_t = 2048)]
    pub batch_size: u32,
    /// Physical batch size.
    #[arg(long, default_value_t = 512)]
    pub ubatch_size: u32,
    /// Print llama-bench-compatible JSON (`llama-bench -o json`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// qwen3, qwen3moe or llama4 (with --full-size: the output path instead).
    #[arg(value_name = "ARCH")]
    pub arch: Option<String>,
    /// Output .gguf path.
    #[arg(value_name = "OUT")]
    pub output: Option<std::path::PathBuf>,
    /// Write a header-only GGUF (no tensor data) with the full-size Q4_K_M tensor table of
    /// NAME: qwen3-30b-a3b, qwen3-235b-a22b, llama4-scout or llama4-maverick.
    /// Usage: edge synth --full-size NAME OUT.gguf
    #[arg(long, value_name = "NAME", conflicts_with_all = ["qwen3_tokenizer", "layers", "experts", "experts_used", "template", "embd", "ff", "heads", "kv_heads"])]
    pub full_size: Option<String>,
    /// Use Qwen 3's real tokenizer from this folder (tokenizer.json, tokenizer_config.json).
    #[arg(long)]
    pub qwen3_tokenizer: Option<std::path::PathBuf>,
    /// Number of layers (default per architecture).
    #[arg(long)]
    pub layers: Option<u32>,
    /// Number of experts (MoE architectures).
    #[arg(long)]
    pub experts: Option<u32>,
    /// Experts used per token (MoE architectures).
    #[arg(long)]
    pub experts_used: Option<u32>,
    /// Embedding width (default 256). Wider models are bandwidth-bound like real ones.
    #[arg(long, value_name = "N")]
    pub embd: Option<u32>,
    /// Feed-forward width, per expert in MoE models (default 256).
    #[arg(long, value_name = "N")]
    pub ff: Option<u32>,
    /// Attention heads (default 4; head size stays 64).
    #[arg(long, value_name = "N")]
    pub heads: Option<u32>,
    /// KV heads (default 2; must divide --heads).
    #[arg(long, value_name = "N")]
    pub kv_heads: Option<u32>,
    /// Replace the chat template with the contents of this file.
    #[arg(long)]
    pub template: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

fn non_negative_f32(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("'{s}' must be a finite number >= 0"))
    }
}

fn unit_f32(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("'{s}' must be between 0 and 1"))
    }
}
