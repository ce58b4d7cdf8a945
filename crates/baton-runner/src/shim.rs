//! `baton shim`: a tiny supervisor parent per agent. It leads the agent's process group, waits for
//! the agent, and records its exit status in `exit.json` (temp file + rename), so a Baton that was
//! restarted meanwhile can use the agent's result instead of starting a second agent.
//!
//! The shim ignores SIGTERM, SIGINT and SIGHUP itself (the agent, in the same group, receives
//! them and ends), so the exit is recorded on every stop but SIGKILL.
//!
//! The command's stdout and stderr reach their files through the shim: it masks every secret
//! named in [`REDACT_ENV`] (passed by Baton, removed from the command's environment) before a byte
//! is written, so no run log ever holds a key the command printed. A write to the files that fails
//! (a full disk) drops that chunk and never fails the command's own write.
//!
//! Baton launches the same contract from a smaller program where it can ([`embedded`]: the
//! `baton-shim` crate, carried inside the binary), and `baton shim` everywhere else — on a remote
//! host, or where a memory file may not be executed.

// The runner is the one crate allowed to spawn processes.
#![allow(clippy::disallowed_methods)]

use crate::process::ProcessSpec;
use baton_domain::redact::{Redactor, StreamRedactor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the exit record inside an agent run's directory.
pub const EXIT_FILE: &str = "exit.json";
/// File name of the launch record: the shim writes its own pid, process group and start time there
/// before it starts the command, so a Baton killed between its spawn and storing the pid still
/// finds the running process (and never starts a second one).
pub const LAUNCH_FILE: &str = "launch.json";
/// File name of the intent record Baton writes before it spawns anything into a run directory.
pub const INTENT_FILE: &str = "intent.json";

/// Environment variable carrying the secrets the shim masks in the output (a JSON array of
/// strings). The shim reads it and removes it before starting the command.
pub const REDACT_ENV: &str = "BATON_SHIM_REDACT";
/// How long the shim keeps copying output after the command exited (a background process it left
/// may hold the pipes open forever).
const DRAIN_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Who a launched process group is: the shim leads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchRecord {
    pub pid: u32,
    pub pgid: u32,
    /// Start time of the leader in clock ticks since boot (defeats pid reuse).
    pub start_ticks: Option<u64>,
}

/// Reads a launch record.
pub fn read_launch(path: &Path) -> Option<LaunchRecord> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// What an earlier launch into a run directory left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    /// Nothing was started there (no launch record, no exit record).
    Nothing,
    /// Its process group is still running.
    Running(LaunchRecord),
    /// It ended and recorded how.
    Exited(ExitRecord),
    /// It was started, but its group is gone without an exit record (killed with its shim).
    Vanished(LaunchRecord),
}

/// Reads what a run directory says about its launch (see [`Previous`]).
pub fn previous(run_dir: &Path) -> Previous {
    if let Some(exit) = read_exit(&run_dir.join(EXIT_FILE)) {
        return Previous::Exited(exit);
    }
    let Some(launch) = read_launch(&run_dir.join(LAUNCH_FILE)) else {
        return Previous::Nothing;
    };
    if same_group(launch.pgid, launch.start_ticks) {
        return Previous::Running(launch);
    }
    // The exit record may have landed between the two reads.
    match read_exit(&run_dir.join(EXIT_FILE)) {
        Some(exit) => Previous::Exited(exit),
        None => Previous::Vanished(launch),
    }
}

/// Whether the process group `pgid` is alive and (when `start_ticks` is known) still led by the
/// process that started then.
pub fn same_group(pgid: u32, start_ticks: Option<u64>) -> bool {
    crate::process::group_alive(pgid)
        && start_ticks.is_none_or(|ticks| crate::process::process_start_ticks(pgid) == Some(ticks))
}

/// How the supervised agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// Reads an exit record, if the agent has ended.
pub fn read_exit(path: &Path) -> Option<ExitRecord> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Whether an agent started under a shim survives: its process group is alive (and its leader is
/// the process started at `start_ticks`, when known: pids get reused), or it recorded its exit in
/// `run_dir`. Such an agent must be re-adopted, never started a second time.
pub fn survives(pgid: Option<u32>, start_ticks: Option<u64>, run_dir: &Path) -> bool {
    let alive = pgid.is_some_and(|pgid| same_group(pgid, start_ticks));
    alive || matches!(previous(run_dir), Previous::Running(_) | Previous::Exited(_))
}

/// The small supervisor `crates/baton-shim`, built by this crate's build script and carried inside
/// the binary (empty when it could not be built there).
static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/baton-shim"));

/// The argument that makes the embedded shim exit at once with success (the start-up check).
const PROBE: &str = "--probe";

/// The embedded shim, ready to start: the path of a sealed, read-only memory file holding the
/// program (`/proc/self/fd/N`, which a child resolves before its exec closes the descriptor).
/// It starts in well under half the time the whole `baton` binary takes to load, around every
/// agent and repository command. `None` when it is missing, memory files may not be executed
/// here, or it does not start: Baton then launches `baton shim`, which does the same.
pub fn embedded() -> Option<&'static Path> {
    static PROGRAM: std::sync::OnceLock<Option<(std::fs::File, PathBuf)>> = std::sync::OnceLock::new();
    PROGRAM.get_or_init(load_embedded).as_ref().map(|(_, path)| path.as_path())
}

fn load_embedded() -> Option<(std::fs::File, PathBuf)> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    if EMBEDDED.is_empty() {
        return None;
    }
    let mut writable =
        std::fs::File::from(memfd_create("baton-shim", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).ok()?);
    writable.write_all(EMBEDDED).ok()?;
    let seals = SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(&writable, FcntlArg::F_ADD_SEALS(seals)).ok()?;
    // A program open for writing cannot be executed: keep a read-only descriptor of it instead.
    let program = std::fs::File::open(format!("/proc/self/fd/{}", writable.as_raw_fd())).ok()?;
    drop(writable);
    let path = PathBuf::from(format!("/proc/self/fd/{}", program.as_raw_fd()));
    let starts = std::process::Command::new(&path)
        .arg(PROBE)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    starts.then_some((program, path))
}

/// Wraps `spec` so that the shim at `shim_program` (`baton` itself, or the [`embedded`] one) runs
/// it and records its exit in `exit_file`; the shim masks `redactor`'s secrets in the command's
/// output.
pub fn wrap(spec: ProcessSpec, shim_program: &Path, exit_file: &Path, redactor: &Redactor) -> ProcessSpec {
    let mut args =
        vec!["shim".to_string(), "--exit-file".to_string(), exit_file.display().to_string(), "--".to_string()];
    args.push(spec.program.clone());
    args.extend(spec.args.iter().cloned());
    let mut env: Vec<(String, String)> = spec.env.iter().filter(|(name, _)| name != REDACT_ENV).cloned().collect();
    if !redactor.is_empty() {
        let secrets = serde_json::to_string(redactor.secrets()).unwrap_or_else(|_| "[]".into());
        env.push((REDACT_ENV.to_string(), secrets));
    }
    ProcessSpec { program: shim_program.display().to_string(), args, env, ..spec }
}

/// The shim's body: runs `argv` as a child (same process group), copies its output through the
/// redactor into the shim's own stdout and stderr (the run's files), waits, records.
/// Returns the exit code to exit with (the agent's, or 128 + signal).
pub async fn run(exit_file: PathBuf, argv: Vec<String>) -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    // Registering handlers makes the shim survive these signals; exec resets them in the child.
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    let Some((program, args)) = argv.split_first() else {
        eprintln!("baton shim: no command given");
        return 2;
    };
    let redactor = std::env::var(REDACT_ENV)
        .ok()
        .and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok())
        .map(Redactor::new)
        .unwrap_or_default();
    // Before the command starts: who this process group is, for a Baton that must adopt it.
    let pid = std::process::id();
    let launch = LaunchRecord {
        pid,
        pgid: nix::unistd::getpgrp().as_raw() as u32,
        start_ticks: crate::process::process_start_ticks(pid),
    };
    write_json(&exit_file.with_file_name(LAUNCH_FILE), &launch);
    // The output goes through pipes even with nothing to mask: a write to the run's files that
    // fails (a full disk) drops that chunk here, and never fails the command's own write.
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .env_remove(REDACT_ENV)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(false)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            eprintln!("baton shim: cannot start `{program}`: {error}");
            write_record(&exit_file, ExitRecord { code: Some(127), signal: None });
            return 127;
        }
    };
    let out = copy_redacted(child.stdout.take(), own_output(false), redactor.stream());
    let err = copy_redacted(child.stderr.take(), own_output(true), redactor.stream());
    let copying = async { tokio::join!(out, err) };
    tokio::pin!(copying);
    let mut copied = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            _ = &mut copying, if !copied => copied = true,
            _ = recv(&mut term) => {}
            _ = recv(&mut int) => {}
            _ = recv(&mut hup) => {}
        }
    };
    // Everything the command wrote is in the files before its exit is recorded: readers parse the
    // output once they see the exit record.
    if !copied {
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut copying).await;
    }
    use std::os::unix::process::ExitStatusExt;
    let record = ExitRecord { code: status.and_then(|s| s.code()), signal: status.and_then(|s| s.signal()) };
    write_record(&exit_file, record);
    record.code.unwrap_or_else(|| 128 + record.signal.unwrap_or(0))
}

/// [`run`]'s code as the shim process's exit status (codes past 0–255 are clamped to them).
pub fn exit_status(code: i32) -> u8 {
    u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX)
}

/// The shim's own stdout or stderr — the run's output files — as an async writer.
fn own_output(stderr: bool) -> Option<FileWriter> {
    use std::os::fd::AsFd;
    let owned = if stderr {
        std::io::stderr().as_fd().try_clone_to_owned()
    } else {
        std::io::stdout().as_fd().try_clone_to_owned()
    };
    Some(FileWriter(std::fs::File::from(owned.ok()?)))
}

/// A file written in place: the run's output files are local files, where a write returns at once,
/// so no thread of a blocking pool is started (and torn down) for each shim.
struct FileWriter(std::fs::File);

impl tokio::io::AsyncWrite for FileWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(std::io::Write::write(&mut self.0, buf))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(std::io::Write::flush(&mut self.0))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Copies `from` into `to` through `redactor` until end of stream. A failed write (a full disk)
/// drops that chunk and keeps draining, so the command never blocks on a pipe nobody reads.
async fn copy_redacted<R, W>(from: Option<R>, to: Option<W>, mut redactor: StreamRedactor)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(mut from) = from else { return };
    let mut to = to;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let ready = redactor.push(&buffer[..n]);
                if let Some(to) = to.as_mut().filter(|_| !ready.is_empty()) {
                    let _ = to.write_all(&ready).await;
                    let _ = to.flush().await;
                }
            }
        }
    }
    let rest = redactor.finish();
    if let Some(to) = to.as_mut() {
        let _ = to.write_all(&rest).await;
        let _ = to.flush().await;
    }
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

fn write_record(path: &Path, record: ExitRecord) {
    write_json(path, &record);
}

/// Writes `value` as JSON by temp file and rename, so a reader never sees half of it.
pub fn write_json(path: &Path, value: &impl Serialize) {
    let temp = path.with_extension("json.tmp");
    let written = serde_json::to_string(value)
        .map_err(std::io::Error::other)
        .and_then(|text| std::fs::write(&temp, text))
        .and_then(|_| std::fs::rename(&temp, path));
    if let Err(error) = written {
        eprintln!("baton shim: cannot write {}: {error}", path.display());
    }
}
