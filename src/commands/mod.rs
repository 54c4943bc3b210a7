//! One module per subcommand. Each exposes `run(args, verbose) -> anyhow::Result<ExitCode>`.

pub mod bench;
pub mod progress;
pub mod run;
pub mod show;
pub mod synth;
pub mod version;
