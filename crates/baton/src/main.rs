//! The `baton` binary: parses the command line, loads configuration, and wires the crates together.
//!
//! Exit codes: 0 success · 1 runtime error · 2 bad usage or configuration · 3 task not found ·
//! 4 the input changed nothing (suppressed: e.g. approve when nothing awaits approval) ·
//! 5 the demo ended with a task short of its expected end.

#[macro_use]
mod output;
mod bench;
mod cli;
mod coverage_cmd;
mod db_cmd;
mod demo;
mod depend_cmd;
mod lessons_cmd;
mod logging;
mod mock_llm_cmd;
mod online;
mod proposals_cmd;
mod repo_cmd;
mod serve;
mod task_cmd;
mod token_cmd;
mod trackers;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(code) = shim_fast_path() {
        return code;
    }
    let cli = cli::Cli::parse();
    init_tracing(&cli);
    // The per-process helpers (`baton shim` around every agent and command, the script agent)
    // start by the thousand and do one thing each: one thread, no worker pool to start.
    let mut builder = match &cli.command {
        cli::Command::Shim { .. } | cli::Command::AgentScript { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(cli::run(cli));
    // Do not wait for detached job tasks: agents are separate processes and survive by design.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

/// `baton shim --exit-file FILE -- COMMAND…` exactly as Baton launches it (around every agent and
/// repository command, nine times a ticket): run without building the whole command line's
/// parser, without logging (the shim shares the command's stderr and stays silent) and on one
/// thread. Any other shape — `--help`, a mistake — goes through the parser as usual.
fn shim_fast_path() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "shim" || args.next()? != "--exit-file" {
        return None;
    }
    let exit_file = std::path::PathBuf::from(args.next()?);
    if args.next()? != "--" {
        return None;
    }
    let command: Vec<String> = args.map(|a| a.into_string().ok()).collect::<Option<_>>()?;
    if command.is_empty() || exit_file.as_os_str().is_empty() {
        return None;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let code = runtime.block_on(baton_runner::shim::run(exit_file, command));
    Some(ExitCode::from(baton_runner::shim::exit_status(code)))
}

fn init_tracing(cli: &cli::Cli) {
    let default = match &cli.command {
        cli::Command::Serve => "info",
        // The shim shares the agent's stderr: it must stay silent.
        cli::Command::Shim { .. } => "off",
        // The benches seed large backlogs in one statement on purpose: no slow-statement warning.
        cli::Command::Bench(_) => "warn,sqlx::query=error",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(logging::RedactingStderr).try_init();
}
