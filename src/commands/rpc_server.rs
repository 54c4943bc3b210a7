//! `edge rpc-server`: serve this machine's CPU to other edge (or llama.cpp) processes
//! as a ggml RPC device (`edge run --rpc HOST:PORT`). Same protocol as llama.cpp's
//! rpc-server, built from the same ggml.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::args::ThreadArgs;

#[derive(Debug, Args)]
pub struct RpcServerArgs {
    /// Address to listen on. Anything but loopback exposes the device to the network,
    /// without authentication.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port.
    #[arg(short, long, default_value_t = 50052)]
    pub port: u16,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

pub fn run(args: RpcServerArgs, verbose: bool) -> Result<ExitCode> {
    crate::engine::backend(verbose)?;
    let endpoint = format!("{}:{}", args.host, args.port);
    // Refuse a busy port with a clear message (ggml would only log and exit).
    match std::net::TcpListener::bind(&endpoint) {
        Ok(l) => drop(l),
        Err(e) => bail!("cannot listen on {endpoint}: {e}"),
    }
    if args.host != "127.0.0.1" && args.host != "localhost" && args.host != "::1" {
        eprintln!("edge: warning: the RPC device at {endpoint} is open to the network without authentication");
    }
    let threads = args.threads.get() as usize;
    eprintln!("edge: serving the CPU as a ggml RPC device at {endpoint} (Ctrl-C stops)");
    crate::engine::ffi::rpc_serve_cpu(&endpoint, threads)?;
    Ok(ExitCode::SUCCESS)
}
