//! One module per subcommand, each thin: its arguments, one library call, the printing.
//! Each exposes `run(args, verbose) -> anyhow::Result<ExitCode>`. No command module
//! imports another; what several share is in `args` (argument groups, error hints,
//! plan-then-load) and `signals` (Ctrl-C).

pub mod args;
pub mod batch;
pub mod bench;
pub mod eval;
pub mod imatrix;
pub mod import;
pub mod list;
pub mod plan;
pub mod profile;
pub mod pull;
pub mod quantize;
pub mod rm;
pub mod rpc_server;
pub mod run;
pub mod serve;
pub mod show;
pub mod signals;
pub mod synth;
pub mod version;
