//! One module per subcommand. Each exposes `run(args, verbose) -> anyhow::Result<ExitCode>`.

pub mod batch;
pub mod bench;
pub mod eval;
pub mod imatrix;
pub mod import;
pub mod list;
pub mod plan;
pub mod profile;
pub mod progress;
pub mod pull;
pub mod quantize;
pub mod rm;
pub mod rpc_server;
pub mod run;
pub mod show;
pub mod signals;
pub mod synth;
pub mod version;
