//! Supervised processes: own process group, files for output, timeouts, TERM→grace→KILL.

// The runner is the one crate allowed to spawn processes.
#![allow(clippy::disallowed_methods)]

use crate::RunError;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What to run and where its output goes.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment: the parent's environment is never inherited.
    pub env: Vec<(String, String)>,
    /// File fed to stdin; `None` means /dev/null.
    pub stdin: Option<PathBuf>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// Time limits of a supervised run.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub timeout: Duration,
    /// No new output on stdout or stderr for this long counts as a stall.
    pub stall_timeout: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
}

/// How a supervised run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReport {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stalled: bool,
    /// Stopped on request (STOP or a budget).
    pub stopped: bool,
    pub duration_ms: u64,
}

/// Why Baton ended a supervised process itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    Stopped,
    Timeout,
    Stall,
}

fn report(code: Option<i32>, signal: Option<i32>, reason: Option<EndReason>, started: Instant) -> ExitReport {
    ExitReport {
        code,
        signal,
        timed_out: reason == Some(EndReason::Timeout),
        stalled: reason == Some(EndReason::Stall),
        stopped: reason == Some(EndReason::Stopped),
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

impl ExitReport {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.stalled && !self.stopped
    }

    /// One sentence saying how the process ended.
    pub fn describe(&self) -> String {
        if self.stopped {
            "stopped on request".to_string()
        } else if self.timed_out {
            format!("killed after the wall-clock timeout ({} s)", self.duration_ms / 1000)
        } else if self.stalled {
            "killed after producing no output for the stall timeout".to_string()
        } else if let Some(code) = self.code {
            format!("exited with code {code}")
        } else if let Some(signal) = self.signal {
            format!("killed by signal {signal}")
        } else {
            "ended without an exit status".to_string()
        }
    }
}

/// A running supervised process.
#[derive(Debug)]
pub struct Supervised {
    child: tokio::process::Child,
    pub pid: u32,
    /// The process group id (equal to the pid: the child leads its own group).
    pub pgid: u32,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

fn open_output(path: &PathBuf) -> Result<std::fs::File, RunError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|source| RunError::Io { what: parent.display().to_string(), source })?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    // Run logs may quote anything an agent saw: owner-only, like the rest of the data dir.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| RunError::Io { what: path.display().to_string(), source })
}

/// Starts `spec` as the leader of a new process group.
pub fn spawn(spec: &ProcessSpec) -> Result<Supervised, RunError> {
    spawn_as(spec, None)
}

/// [`spawn`], with `arg0` as the process's own name for itself (what `ps` shows) when given.
pub fn spawn_as(spec: &ProcessSpec, arg0: Option<&str>) -> Result<Supervised, RunError> {
    let stdin = match &spec.stdin {
        Some(path) => Stdio::from(
            std::fs::File::open(path).map_err(|source| RunError::Io { what: path.display().to_string(), source })?,
        ),
        None => Stdio::null(),
    };
    // Whatever runs there may write there: Baton no longer knows that worktree is clean (unless
    // it fingerprinted the files first, to check them again afterwards).
    crate::git::clean_marks::started_in(&spec.cwd);
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(Stdio::from(open_output(&spec.stdout)?))
        .stderr(Stdio::from(open_output(&spec.stderr)?))
        .process_group(0)
        // Agents must outlive Baton (files, not pipes; no kill on drop) so a restart can find them.
        .kill_on_drop(false);
    if let Some(arg0) = arg0 {
        command.arg0(arg0);
    }
    let child = command.spawn().map_err(|source| RunError::Spawn { program: spec.program.clone(), source })?;
    let pid = child.id().unwrap_or(0);
    Ok(Supervised {
        child,
        pid,
        pgid: pid,
        stdout: spec.stdout.clone(),
        stderr: spec.stderr.clone(),
        started: Instant::now(),
    })
}

fn output_len(supervised: &Supervised) -> u64 {
    let len = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    len(&supervised.stdout) + len(&supervised.stderr)
}

impl Supervised {
    /// Waits for the process, enforcing `limits`; a `true` on `stop` stops the group at once.
    pub async fn wait(&mut self, limits: RunLimits, mut stop: watch::Receiver<bool>) -> ExitReport {
        let mut last_len = output_len(self);
        let mut last_output = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        let mut reason: Option<EndReason> = None;
        let status = loop {
            tokio::select! {
                status = self.child.wait() => break status.ok(),
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        reason = Some(EndReason::Stopped);
                        break self.terminate(limits.stop_grace).await;
                    }
                }
                _ = ticker.tick() => {
                    let len = output_len(self);
                    if len != last_len {
                        last_len = len;
                        last_output = Instant::now();
                    }
                    if self.started.elapsed() >= limits.timeout {
                        reason = Some(EndReason::Timeout);
                        break self.terminate(limits.stop_grace).await;
                    }
                    if last_output.elapsed() >= limits.stall_timeout {
                        reason = Some(EndReason::Stall);
                        break self.terminate(limits.stop_grace).await;
                    }
                }
            }
        };
        use std::os::unix::process::ExitStatusExt;
        report(status.and_then(|s| s.code()), status.and_then(|s| s.signal()), reason, self.started)
    }

    async fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        stop_group(self.pgid, grace).await;
        self.child.wait().await.ok()
    }
}

/// Whether any process of the group is alive. Zombies do not count: an orphan whose new parent
/// never reaps it (pid 1 in some containers) must not look alive forever.
pub fn group_alive(pgid: u32) -> bool {
    if pgid <= 1 || killpg(Pid::from_raw(pgid as i32), None).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .any(|stat| stat.pgid == pgid && stat.live())
}

/// The fields of `/proc/<pid>/stat` Baton reads.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    state: char,
    pgid: u32,
    /// Start time in clock ticks since boot (field 22).
    start_ticks: u64,
}

impl ProcStat {
    /// Running or sleeping: neither a zombie nor dead.
    fn live(self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses): state (field 3), ppid, pgrp, ...
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// SIGTERM to the whole group, wait up to `grace`, then SIGKILL whatever is left.
pub async fn stop_group(pgid: u32, grace: Duration) {
    if pgid <= 1 {
        return;
    }
    let group = Pid::from_raw(pgid as i32);
    if killpg(group, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !group_alive(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Agents have been seen ignoring SIGTERM and spinning for days: SIGKILL is not optional.
    let _ = killpg(group, Signal::SIGKILL);
}

/// The start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22): with the
/// pid it identifies a process across pid reuse.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|stat| stat.start_ticks)
}

/// Waits for an agent Baton did not start in this process (re-adopted after a restart): its exit
/// comes from the shim's record; a group that vanished without one was killed.
pub async fn wait_adopted(
    pgid: u32,
    exit_file: &std::path::Path,
    outputs: [&std::path::Path; 2],
    already_ran: Duration,
    limits: RunLimits,
    mut stop: watch::Receiver<bool>,
) -> ExitReport {
    let started = Instant::now() - already_ran.min(Duration::from_secs(365 * 86_400));
    let len = || outputs.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum::<u64>();
    let mut last_len = len();
    let mut last_output = Instant::now();
    let mut reason: Option<EndReason> = None;
    loop {
        if let Some(record) = crate::shim::read_exit(exit_file) {
            return report(record.code, record.signal, reason, started);
        }
        if !group_alive(pgid) {
            // Gone without a record: killed (SIGKILL) or lost; the exit file may land a moment late.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let record = crate::shim::read_exit(exit_file);
            let (code, signal) = record.map_or((None, Some(9)), |r| (r.code, r.signal));
            return report(code, signal, reason, started);
        }
        let current = len();
        if current != last_len {
            last_len = current;
            last_output = Instant::now();
        }
        if reason.is_none() {
            if *stop.borrow() {
                reason = Some(EndReason::Stopped);
            } else if started.elapsed() >= limits.timeout {
                reason = Some(EndReason::Timeout);
            } else if last_output.elapsed() >= limits.stall_timeout {
                reason = Some(EndReason::Stall);
            }
            if reason.is_some() {
                stop_group(pgid, limits.stop_grace).await;
                continue;
            }
        }
        // A closed stop channel must not turn this into a busy loop.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(200), stop.changed()).await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Running `baton shim` processes whose exit file lies under `runs_dir`: (pid, process group,
/// exit file). Only a process that leads its group counts, as every shim Baton starts does: the
/// shim's child, between its fork and its exec, shows the shim's very command line in the shim's
/// group, and is not a second shim of that run.
pub fn find_shims(runs_dir: &str) -> Vec<(u32, u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> =
                cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).to_string()).collect();
            let exit_file = args.iter().skip_while(|a| *a != "--exit-file").nth(1)?;
            let is_shim = args.get(1).is_some_and(|a| a == "shim") && exit_file.starts_with(runs_dir);
            if !is_shim {
                return None;
            }
            let stat = proc_stat(pid)?;
            (stat.live() && stat.pgid == pid).then(|| (pid, stat.pgid, PathBuf::from(exit_file)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // This test's own process parses as live, with a stable start time, in a live group.
    #[test]
    fn proc_stat_reads_this_process() {
        let pid = std::process::id();
        let stat = proc_stat(pid).expect("own /proc entry");
        assert!(stat.live());
        assert_eq!(process_start_ticks(pid), Some(stat.start_ticks));
        assert!(group_alive(stat.pgid));
        assert!(proc_stat(u32::MAX).is_none());
    }
}
