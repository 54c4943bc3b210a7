//! edge's entry point: parse arguments, dispatch to a subcommand, turn errors into one
//! clear line on stderr and a non-zero exit code.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use edge::cli::{Cli, Command};
use edge::commands;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    if cli.version {
        println!("{}", commands::version::long_version());
        return ExitCode::SUCCESS;
    }
    let result = match cli.command {
        Some(Command::Run(args)) => commands::run::run(args, cli.verbose),
        Some(Command::Show(args)) => commands::show::run(args),
        Some(Command::Bench(args)) => commands::bench::run(args, cli.verbose),
        Some(Command::Pull(args)) => commands::pull::run(args, cli.verbose),
        Some(Command::List(args)) => commands::list::run(args, cli.verbose),
        Some(Command::Rm(args)) => commands::rm::run(args, cli.verbose),
        Some(Command::Import(args)) => commands::import::run(args, cli.verbose),
        Some(Command::Quantize(args)) => commands::quantize::run(args, cli.verbose),
        Some(Command::Imatrix(args)) => commands::imatrix::run(args, cli.verbose),
        Some(Command::Eval(args)) => commands::eval::run(args, cli.verbose),
        Some(Command::Batch(args)) => commands::batch::run(args, cli.verbose),
        Some(Command::Serve(args)) => commands::serve::run(args, cli.verbose),
        Some(Command::Plan(args)) => commands::plan::run(args, cli.verbose),
        Some(Command::RpcServer(args)) => commands::rpc_server::run(args, cli.verbose),
        Some(Command::Profile(args)) => commands::profile::run(args, cli.verbose),
        Some(Command::Synth(args)) => commands::synth::run(args),
        None => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line: the context chain joined, as users read it.
            let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
            eprintln!("edge: error: {}", chain.join(": ").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// clap's own errors, reduced to one line (help and version still print in full).
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) || err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = err.print();
        return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
    }
    let text = err.to_string();
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let message = message.join(" ");
    let message = message.trim_start_matches("error: ");
    eprintln!("edge: error: {message} (see edge --help)");
    ExitCode::from(2)
}
