//! Short commands run to completion: repo `test`/`deploy`/`health`, gates, hooks.

use crate::RunError;
use crate::process::{ExitReport, ProcessSpec, RunLimits, spawn};
use std::path::PathBuf;
use std::time::Duration;

/// A command to run in a directory with an explicit environment.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Where stdout and stderr (combined) are written.
    pub log: PathBuf,
}

/// The result of a finished command.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub exit: ExitReport,
    /// The last lines of its combined output, for failure reasons.
    pub tail: String,
}

/// Bytes of output kept in [`CommandOutput::tail`].
pub const OUTPUT_TAIL_BYTES_MAX: usize = 2_000;

/// Runs `spec` in its own process group and waits for it.
pub async fn run_command(spec: &CommandSpec) -> Result<CommandOutput, RunError> {
    let (program, args) = spec.argv.split_first().ok_or(RunError::EmptyCommand)?;
    let process = ProcessSpec {
        program: program.clone(),
        args: args.to_vec(),
        cwd: spec.cwd.clone(),
        env: spec.env.clone(),
        stdin: None,
        stdout: spec.log.clone(),
        stderr: spec.log.clone(),
    };
    let start_len = std::fs::metadata(&spec.log).map(|m| m.len()).unwrap_or(0);
    let mut child = spawn(&process)?;
    let limits = RunLimits { timeout: spec.timeout, stall_timeout: spec.timeout, stop_grace: Duration::from_secs(5) };
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let exit = child.wait(limits, stop).await;
    let tail = read_tail(&spec.log, start_len);
    Ok(CommandOutput { exit, tail })
}

/// The last [`OUTPUT_TAIL_BYTES_MAX`] bytes written to `path` after offset `from`.
pub fn read_tail(path: &PathBuf, from: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let new = bytes.get(from as usize..).unwrap_or(&[]);
    let start = new.len().saturating_sub(OUTPUT_TAIL_BYTES_MAX);
    String::from_utf8_lossy(&new[start..]).trim().to_string()
}
