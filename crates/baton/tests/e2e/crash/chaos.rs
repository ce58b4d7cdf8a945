//! The crash test's kills, one kind at a time, chosen by a seeded generator: `baton serve` SIGKILLed
//! at a random moment, during a deploy, during the merge gate, or right after it recorded a launch;
//! a CLI call SIGKILLed mid-way and issued again; an agent's whole process group SIGKILLed;
//! `baton serve` frozen (SIGSTOP) longer than the lease TTL; the worktrees' disk filled up. The
//! test plays the human throughout (approves, confirms deploys, stops a few tasks).

use super::witness::{Violation, job_and_run};
use crate::support::{Env, Server, pid_alive};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator (splitmix64): the kill schedule is a function of the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn between(&mut self, (low, high): (u64, u64)) -> u64 {
        low + self.next() % (high - low + 1)
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> Option<&'t T> {
        (!items.is_empty()).then(|| &items[(self.next() % items.len() as u64) as usize])
    }
}

/// What a kill aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL `baton serve` at a random moment (preferably while a job runs).
    ServeRandom,
    /// SIGKILL `baton serve` while a deploy job runs (sometimes right after a STOP of its task).
    ServeInDeploy,
    /// SIGKILL `baton serve` while the lease holder's merge gate (deploy_staging) runs.
    ServeInMergeGate,
    /// SIGKILL `baton serve` within milliseconds of it recording a launch (`intent.json`): between
    /// the spawn and storing the pid.
    ServeAfterLaunch,
    /// SIGKILL a `baton task approve|confirm-deploy|stop|add` mid-way, then issue it again.
    CliMidway,
    /// SIGKILL an agent's whole process group (the shim and the agent).
    AgentGroup,
    /// SIGSTOP `baton serve` longer than the lease TTL, then SIGCONT.
    Freeze,
    /// Fill the worktrees' file system (a small tmpfs) for a moment.
    FullDisk,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::ServeRandom,
        Kind::ServeInDeploy,
        Kind::ServeInMergeGate,
        Kind::ServeAfterLaunch,
        Kind::CliMidway,
        Kind::AgentGroup,
        Kind::Freeze,
        Kind::FullDisk,
    ];

    /// The kind's short name (for `BATON_CRASH_KINDS`).
    pub fn key(self) -> &'static str {
        match self {
            Kind::ServeRandom => "serve",
            Kind::ServeInDeploy => "deploy",
            Kind::ServeInMergeGate => "merge",
            Kind::ServeAfterLaunch => "launch",
            Kind::CliMidway => "cli",
            Kind::AgentGroup => "group",
            Kind::Freeze => "freeze",
            Kind::FullDisk => "disk",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::ServeRandom => "SIGKILL serve, random moment",
            Kind::ServeInDeploy => "SIGKILL serve during a deploy",
            Kind::ServeInMergeGate => "SIGKILL serve during the merge gate",
            Kind::ServeAfterLaunch => "SIGKILL serve just after a launch",
            Kind::CliMidway => "SIGKILL a CLI call mid-way",
            Kind::AgentGroup => "SIGKILL an agent process group",
            Kind::Freeze => "SIGSTOP serve > lease TTL",
            Kind::FullDisk => "full disk (tmpfs worktrees)",
        }
    }
}

/// The kinds and their weights in the draw.
const WEIGHTS: &[(Kind, u64)] = &[
    (Kind::ServeRandom, 3),
    (Kind::ServeInDeploy, 2),
    (Kind::ServeInMergeGate, 2),
    (Kind::ServeAfterLaunch, 2),
    (Kind::CliMidway, 3),
    (Kind::AgentGroup, 2),
    (Kind::Freeze, 1),
    (Kind::FullDisk, 1),
];

/// How long the test lets things run before each kill: uniform in this range, in milliseconds.
const UPTIME_MS: (u64, u64) = (100, 900);
/// How long a kill waits for its moment (a running job, a deploy, ...) before it gives up and
/// kills anyway (counted as a fallback).
const BUSY_WAIT: Duration = Duration::from_secs(3);
/// How long a kill that needs a deploy or a merge gate waits for one.
const PIPELINE_WAIT: Duration = Duration::from_secs(6);
/// Normal `baton task stop` calls at most (besides the ones in CLI kills and deploy kills).
const STOPS_MAX: usize = 2;
/// Tasks stopped at most, by any means.
const STOPPED_MAX: usize = 5;
/// Tasks added by killed-and-reissued `baton task add` calls at most.
const EXTRAS_MAX: usize = 4;
/// A CLI call that does not finish in this long while the server is frozen is reported.
const FROZEN_CLI_TIMEOUT: Duration = Duration::from_secs(3);

/// Per kind: how often it was drawn, and how often it hit what it aimed at.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub drawn: usize,
    pub hit: usize,
}

/// The worktrees' file system: a small tmpfs the test can fill (root only). Unmounted on drop.
pub struct SmallDisk {
    pub mount: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` on `dir` when this process may (root, mount works); `Err` says why not.
    pub fn mount(dir: &Path, size: &str) -> Result<SmallDisk, String> {
        // The effective uid is the second figure of `Uid:` in /proc/self/status.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
        if euid != Some("0") {
            return Err("not running as root".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(SmallDisk { mount: dir.to_path_buf() })
    }

    fn filler(&self) -> PathBuf {
        self.mount.join(".crash-filler")
    }

    /// Fills the file system; true when it reported a full disk.
    fn fill(&self) -> bool {
        use std::io::Write;
        let Ok(mut file) = std::fs::File::create(self.filler()) else {
            return false;
        };
        let chunk = vec![0u8; 1 << 20];
        loop {
            if let Err(error) = file.write_all(&chunk) {
                return error.raw_os_error() == Some(nix::libc::ENOSPC);
            }
        }
    }

    fn drain(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        self.drain();
        let _ = Command::new("umount").arg("-l").arg(&self.mount).output();
    }
}

/// The running chaos: the server, the generator, and what was done to them.
pub struct Chaos<'e> {
    env: &'e Env,
    pub rng: Rng,
    pub server: Server,
    /// Servers started so far.
    pub servers: u32,
    runs: PathBuf,
    witness: PathBuf,
    lease_ttl: Duration,
    disk: Option<SmallDisk>,
    /// Run directories of the agent process groups the test SIGKILLed.
    pub killed_groups: BTreeSet<PathBuf>,
    /// Tasks the test stopped (each ends cancelled, or done when the STOP came too late).
    pub stopped: BTreeSet<String>,
    normal_stops: usize,
    /// Titles of tasks added by killed-and-reissued `baton task add` calls.
    pub extras: Vec<String>,
    pub tally: BTreeMap<Kind, Tally>,
    /// What each kill landed on, in words ("serve: agent running", "cli approve: killed mid-way").
    pub landed: BTreeMap<String, usize>,
    /// Broken invariants noticed during the chaos (a CLI input lost or doubled).
    pub violations: Vec<Violation>,
    /// The second half of the chaos: no more STOPs.
    pub late: bool,
    /// Only these kinds are drawn (`BATON_CRASH_KINDS`); all when empty.
    only: Vec<Kind>,
}

fn status_of(output: &Output) -> String {
    match (output.status.code(), output.status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "?".into(),
    }
}

fn hold(task: &Value) -> &str {
    task["state"]["hold"]["kind"].as_str().unwrap_or("none")
}

fn stage(task: &Value) -> &str {
    task["state"]["stage"].as_str().unwrap_or("?")
}

fn terminal(task: &Value) -> bool {
    matches!(stage(task), "done" | "cancelled")
}

fn work_item(task: &Value) -> String {
    task["work_item_id"].as_str().unwrap_or("?").to_string()
}

/// The clock ticks since boot at which process `pid` started (`/proc/<pid>/stat` field 22).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Subdirectories of `dir`.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

/// Every `intent.json` under the runs directory (agent runs, gate commands, deploys: all three
/// levels down).
fn intents(runs: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    for first in subdirs(runs) {
        for second in subdirs(&first) {
            for third in subdirs(&second) {
                let intent = third.join("intent.json");
                if intent.exists() {
                    found.insert(intent);
                }
            }
        }
    }
    found
}

/// Agent process groups alive now: (run directory, job id, process group), from the launch records
/// the shims wrote (`<runs>/<work item>/<stage>-job<id>/run<n>/launch.json`, no `exit.json`).
fn live_agent_groups(runs: &Path) -> Vec<(PathBuf, i64, u32)> {
    let mut found = Vec::new();
    for task_dir in subdirs(runs) {
        for job_dir in subdirs(&task_dir) {
            for run_dir in subdirs(&job_dir) {
                let Some((job, _)) = job_and_run(&run_dir.display().to_string()) else { continue };
                if run_dir.join("exit.json").exists() {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(run_dir.join("launch.json")) else { continue };
                let Ok(launch) = serde_json::from_str::<Value>(&text) else { continue };
                let (Some(pgid), ticks) = (launch["pgid"].as_u64(), launch["start_ticks"].as_u64()) else {
                    continue;
                };
                let pgid = pgid as u32;
                if pid_alive(u64::from(pgid)) && ticks.is_none_or(|t| start_ticks(pgid) == Some(t)) {
                    found.push((run_dir, job, pgid));
                }
            }
        }
    }
    found
}

/// Runs `command` with a time limit; `None` when it had to be killed.
fn run_with_timeout(mut command: Command, timeout: Duration) -> Option<Output> {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("baton runs");
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return child.wait_with_output().ok();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl<'e> Chaos<'e> {
    pub fn new(env: &'e Env, rng: Rng, witness: PathBuf, lease_ttl: Duration, disk: Option<SmallDisk>) -> Chaos<'e> {
        let mut tally = BTreeMap::new();
        for (kind, _) in WEIGHTS {
            tally.insert(*kind, Tally::default());
        }
        Chaos {
            env,
            rng,
            server: env.serve(1),
            servers: 1,
            runs: env.root.join("data/runs"),
            witness,
            lease_ttl,
            disk,
            killed_groups: BTreeSet::new(),
            stopped: BTreeSet::new(),
            normal_stops: 0,
            extras: Vec::new(),
            tally,
            landed: BTreeMap::new(),
            violations: Vec::new(),
            late: false,
            only: Vec::new(),
        }
    }

    /// Draws only `kinds` from now on (empty: all).
    pub fn only(&mut self, kinds: Vec<Kind>) {
        self.only = kinds;
    }

    fn note(&mut self, what: impl Into<String>) {
        *self.landed.entry(what.into()).or_default() += 1;
    }

    fn restart(&mut self) {
        self.server.kill9();
        // Sometimes the human acts while no server runs (the CLI works without one).
        if self.rng.one_in(3) {
            self.env.play_human(&self.env.tasks());
        }
        self.servers += 1;
        self.server = self.env.serve(self.servers);
    }

    fn running_jobs(&self) -> Vec<Value> {
        self.env.json(&["status"])["running_jobs"].as_array().cloned().unwrap_or_default()
    }

    /// Plays the human until `probe` finds its moment or `timeout` passes.
    fn wait_for<T>(&mut self, timeout: Duration, probe: impl FnMut(&mut Self) -> Option<T>) -> Option<T> {
        self.wait(timeout, true, probe)
    }

    /// Waits until `probe` finds its moment or `timeout` passes, playing the human when `human`.
    fn wait<T>(&mut self, timeout: Duration, human: bool, mut probe: impl FnMut(&mut Self) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = probe(self) {
                return Some(found);
            }
            let tasks = self.env.tasks();
            if !tasks.is_empty() && tasks.iter().all(terminal) || Instant::now() > deadline {
                return None;
            }
            if human {
                self.env.play_human(&tasks);
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Whether the test may stop another task now: a few, and only in the first half of the chaos
    /// (a STOP whose CLI was killed mid-way leaves its effects claimed for a minute).
    fn may_stop(&self) -> bool {
        self.stopped.len() < STOPPED_MAX && !self.late
    }

    /// Lets things run for a seeded while, playing the human; now and then stops a task.
    pub fn run_a_while(&mut self) {
        let until = Instant::now() + Duration::from_millis(self.rng.between(UPTIME_MS));
        while Instant::now() < until {
            let tasks = self.env.tasks();
            self.env.play_human(&tasks);
            if self.normal_stops < STOPS_MAX && self.may_stop() && self.rng.one_in(40) {
                let active: Vec<String> = tasks.iter().filter(|t| !terminal(t)).map(work_item).collect();
                if let Some(id) = self.rng.pick(&active).cloned() {
                    let out = self.env.run(&["task", "stop", &id]);
                    if out.status.success() {
                        self.normal_stops += 1;
                        self.stopped.insert(id);
                    }
                }
            }
            std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
        }
    }

    /// Draws a kind and performs it.
    pub fn kill(&mut self) {
        let kinds: Vec<(Kind, u64)> = WEIGHTS
            .iter()
            .copied()
            .filter(|(kind, _)| *kind != Kind::FullDisk || self.disk.is_some())
            .filter(|(kind, _)| self.only.is_empty() || self.only.contains(kind))
            .collect();
        let total: u64 = kinds.iter().map(|(_, w)| w).sum();
        let mut draw = self.rng.next() % total;
        let kind = kinds
            .iter()
            .find(|(_, weight)| {
                let hit = draw < *weight;
                draw = draw.saturating_sub(*weight);
                hit
            })
            .map_or(Kind::ServeRandom, |(kind, _)| *kind);
        let hit = match kind {
            Kind::ServeRandom => self.serve_random(),
            Kind::ServeInDeploy => self.serve_in_deploy(),
            Kind::ServeInMergeGate => self.serve_in_merge_gate(),
            Kind::ServeAfterLaunch => self.serve_after_launch(),
            Kind::CliMidway => self.cli_midway(),
            Kind::AgentGroup => self.agent_group(),
            Kind::Freeze => self.freeze(),
            Kind::FullDisk => self.full_disk(),
        };
        let tally = self.tally.entry(kind).or_default();
        tally.drawn += 1;
        tally.hit += usize::from(hit);
    }

    /// What the running jobs were doing: `merge`/`deploy`, `agent` (its agent process alive),
    /// `post_agent` (agent exited: commit, gates, or result not yet collected), `setup`.
    fn phases(&self) -> Vec<&'static str> {
        self.running_jobs()
            .iter()
            .map(|job| match (job["stage"].as_str(), job["pid"].as_u64()) {
                (Some("deploy_staging"), _) => "merge gate",
                (Some("deploy"), _) => "deploy",
                (_, Some(pid)) if pid_alive(pid) => "agent",
                (_, Some(_)) => "post_agent",
                (_, None) => "setup",
            })
            .collect()
    }

    fn serve_random(&mut self) -> bool {
        // A kill while only humans are awaited tests little: wait a little for a job to run.
        let phases = self.wait_for(BUSY_WAIT, |chaos| Some(chaos.phases()).filter(|p| !p.is_empty()));
        match &phases {
            Some(phases) => {
                for phase in phases {
                    self.note(format!("serve killed with a job in {phase}"));
                }
            }
            None => self.note("serve killed with no job running"),
        }
        self.restart();
        phases.is_some()
    }

    /// A deploy job: (task id, job id), and whether its deploy command runs now.
    fn deploy_running(&self) -> Option<(i64, bool)> {
        let job = self.running_jobs().into_iter().find(|j| j["stage"] == "deploy")?;
        let log = std::fs::read_to_string(self.witness.join(super::witness::DEPLOYS_LOG)).unwrap_or_default();
        let (starts, ends) = log
            .lines()
            .fold((0, 0), |(s, e), l| (s + usize::from(l.starts_with("start")), e + usize::from(l.starts_with("end"))));
        Some((job["task_id"].as_i64()?, starts > ends))
    }

    fn serve_in_deploy(&mut self) -> bool {
        // Half the time: wait until the deploy command itself runs, then a little more.
        let in_command = self.rng.one_in(2);
        let found = self.wait_for(PIPELINE_WAIT, |chaos| {
            chaos.deploy_running().filter(|(_, command)| *command || !in_command).map(|(task, _)| task)
        });
        let Some(task) = found else {
            self.note("serve killed: no deploy came (fallback)");
            self.restart();
            return false;
        };
        if in_command {
            std::thread::sleep(Duration::from_millis(self.rng.between((0, 700))));
        }
        // Sometimes the human stops the task just before: the STOP arrives too late to cancel it.
        if self.may_stop() && self.rng.one_in(4) {
            let id = self.env.tasks().iter().find(|t| t["id"].as_i64() == Some(task)).map(work_item);
            if let Some(id) = id
                && self.env.run(&["task", "stop", &id]).status.success()
            {
                self.stopped.insert(id);
                self.note("task stopped during its deploy");
            }
        }
        let still = self.deploy_running();
        self.note(match still {
            Some((_, true)) => "serve killed during the deploy command",
            Some((_, false)) => "serve killed in the deploy job, outside the command",
            None => "serve killed just after a deploy job ended",
        });
        self.restart();
        true
    }

    fn serve_in_merge_gate(&mut self) -> bool {
        let found = self.wait_for(PIPELINE_WAIT, |chaos| {
            let status = chaos.env.json(&["status"]);
            let holders: Vec<String> = status["leases"]
                .as_array()
                .map(|l| l.iter().filter_map(|l| l["holder"].as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            status["running_jobs"].as_array()?.iter().find_map(|j| {
                let holder = format!("task:{}", j["task_id"].as_i64()?);
                (j["stage"] == "deploy_staging" && holders.contains(&holder)).then_some(())
            })
        });
        if found.is_none() {
            self.note("serve killed: no merge gate came (fallback)");
            self.restart();
            return false;
        }
        std::thread::sleep(Duration::from_millis(self.rng.between((0, 500))));
        self.note("serve killed in the merge gate (lease held)");
        self.restart();
        true
    }

    fn serve_after_launch(&mut self) -> bool {
        let before = intents(&self.runs);
        let delay = Duration::from_micros(self.rng.between((0, 2000)));
        let deadline = Instant::now() + BUSY_WAIT;
        let mut last_human = Instant::now();
        let fresh = loop {
            if let Some(new) = intents(&self.runs).difference(&before).next().cloned() {
                break Some(new);
            }
            if Instant::now() > deadline {
                break None;
            }
            // The human still acts now and then (a deploy waits for its confirmation).
            if last_human.elapsed() > Duration::from_millis(300) {
                self.env.play_human(&self.env.tasks());
                last_human = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let Some(intent) = fresh else {
            self.note("serve killed: no launch came (fallback)");
            self.restart();
            return false;
        };
        std::thread::sleep(delay);
        self.server.kill9();
        let dir = intent.parent().unwrap_or(&intent);
        let what = match dir.file_name().and_then(|n| n.to_str()).unwrap_or("") {
            name if name.starts_with("run") => "an agent",
            name if name.starts_with("cmd-") => "a gate command",
            _ => "a deploy",
        };
        let launched = if dir.join("launch.json").exists() { "after" } else { "before" };
        self.note(format!("serve killed just after {what} launch, {launched} the shim's launch record"));
        self.servers += 1;
        self.server = self.env.serve(self.servers);
        true
    }

    fn cli_midway(&mut self) -> bool {
        // Without the human acting, something soon waits for an approval or a confirmation.
        let tasks = self
            .wait(BUSY_WAIT, false, |chaos| {
                let tasks = chaos.env.tasks();
                tasks.iter().any(|t| matches!(hold(t), "awaiting_approval" | "awaiting_confirm")).then_some(tasks)
            })
            .unwrap_or_else(|| self.env.tasks());
        let waiting = |kind: &str| -> Vec<String> { tasks.iter().filter(|t| hold(t) == kind).map(work_item).collect() };
        let active: Vec<String> = tasks.iter().filter(|t| !terminal(t)).map(work_item).collect();
        let mut ops: Vec<(&str, String)> = Vec::new();
        for id in waiting("awaiting_approval") {
            ops.push(("approve", id));
        }
        for id in waiting("awaiting_confirm") {
            ops.push(("confirm-deploy", id));
        }
        if self.may_stop()
            && self.rng.one_in(4)
            && let Some(id) = self.rng.pick(&active)
        {
            ops.push(("stop", id.clone()));
        }
        if self.extras.len() < EXTRAS_MAX && (ops.is_empty() || self.rng.one_in(6)) {
            ops.push(("add", format!("crash extra {}", self.extras.len() + 1)));
        }
        let Some((op, target)) = self.rng.pick(&ops).cloned() else {
            self.note("cli: nothing to call (no kill)");
            return false;
        };
        let args: Vec<String> = match op {
            "add" => {
                let reference = target.replace(' ', "-");
                ["task", "add", "--repo", "demo", "--title", &target, "--external-ref", &reference]
                    .map(str::to_string)
                    .to_vec()
            }
            op => ["task", op, &target].map(str::to_string).to_vec(),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self.env.command().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(self.rng.between((1, 30))));
        let _ = child.kill();
        let first = child.wait().unwrap();
        let midway = first.signal() == Some(9);
        self.note(format!("cli {op}: {}", if midway { "killed mid-way" } else { "finished before the kill" }));
        if op == "stop" {
            self.stopped.insert(target.clone());
        }
        if op == "add" {
            self.extras.push(target.clone());
        }
        // Issued again: whatever the first call did, the input applies exactly once.
        let again = self.env.run(&args);
        let tasks = self.env.tasks();
        let lost = |text: String| Violation { task: Some(target.clone()), text };
        match op {
            "add" => {
                let same: Vec<String> = tasks.iter().filter(|t| t["title"] == target.as_str()).map(work_item).collect();
                // 0: created now (the first call died before its commit); 4: the ticket already
                // has its live task (printed), nothing created.
                if same.len() != 1 || !matches!(again.status.code(), Some(0 | 4)) {
                    self.violations.push(Violation {
                        task: same.first().cloned(),
                        text: format!(
                            "`task add {target}` killed ({first:?}) and issued again ({}): {} tasks with that title: {same:?}",
                            status_of(&again),
                            same.len()
                        ),
                    });
                }
            }
            op => {
                let Some(task) = tasks.iter().find(|t| work_item(t) == target) else {
                    return true;
                };
                let (state, waits) = (task["state"].clone(), hold(task).to_string());
                let kept = match op {
                    "approve" => waits != "awaiting_approval",
                    "confirm-deploy" => waits != "awaiting_confirm",
                    _ => terminal(task) || !state["cancel_requested"].is_null(),
                };
                if !kept {
                    self.violations.push(lost(format!(
                        "`task {op} {target}` killed mid-way and issued again ({}), yet the task is at {state}",
                        status_of(&again)
                    )));
                }
            }
        }
        true
    }

    fn agent_group(&mut self) -> bool {
        // Only first attempts (from the agents' own witness lines): a second kill of the same
        // stage would use up its retries.
        let deadline = Instant::now() + BUSY_WAIT;
        let mut last_human = Instant::now();
        let found = loop {
            let witness = super::witness::Witness::read(&self.witness);
            let first_attempts: BTreeSet<String> =
                witness.agents.into_iter().filter(|a| a.attempt == 1 && !a.ended).map(|a| a.run_dir).collect();
            let groups: Vec<(PathBuf, u32)> = live_agent_groups(&self.runs)
                .into_iter()
                .filter(|(dir, _, _)| first_attempts.contains(&dir.display().to_string()))
                .map(|(dir, _, pgid)| (dir, pgid))
                .collect();
            if let Some(group) = self.rng.pick(&groups).cloned() {
                break Some(group);
            }
            if Instant::now() > deadline {
                break None;
            }
            if last_human.elapsed() > Duration::from_millis(300) {
                self.env.play_human(&self.env.tasks());
                last_human = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let Some((run_dir, pgid)) = found else {
            self.note("agent group: none running on a first attempt (no kill)");
            return false;
        };
        std::thread::sleep(Duration::from_millis(self.rng.between((0, 200))));
        // A group whose leader is a zombie has ended already (killpg still "succeeds" on it).
        let alive = crate::support::pid_alive(u64::from(pgid));
        if alive && killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL).is_ok() {
            self.killed_groups.insert(run_dir);
            self.note("agent process group killed");
            true
        } else {
            self.note("agent group ended before the kill");
            false
        }
    }

    fn freeze(&mut self) -> bool {
        // Best while a task holds the merge lease: it outlives its TTL while the server sleeps.
        let leased = self
            .wait_for(BUSY_WAIT, |chaos| {
                let status = chaos.env.json(&["status"]);
                status["leases"].as_array().is_some_and(|l| !l.is_empty()).then_some(())
            })
            .is_some();
        let pid = Pid::from_raw(self.server.child.id() as i32);
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP serve");
        let until = Instant::now() + self.lease_ttl + Duration::from_millis(self.rng.between((300, 1200)));
        // Reading works while the server is frozen: it may hold SQLite's write lock, but a
        // read-only command needs no write lock.
        let mut blocked = None;
        while Instant::now() < until {
            let mut status = self.env.command();
            status.args(["--json", "status"]);
            let started = Instant::now();
            match run_with_timeout(status, FROZEN_CLI_TIMEOUT) {
                Some(out) if out.status.success() => {}
                Some(out) => {
                    blocked = Some(format!(
                        "failed after {:.1?}: {}",
                        started.elapsed(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
                None => blocked = Some(format!("did not answer within {FROZEN_CLI_TIMEOUT:?}")),
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        kill(pid, Signal::SIGCONT).expect("SIGCONT serve");
        if let Some(how) = blocked {
            self.violations.push(Violation {
                task: None,
                text: format!("a read-only `baton status` while `baton serve` was frozen (SIGSTOP) {how}"),
            });
        }
        self.note(if leased { "serve frozen holding the merge lease" } else { "serve frozen, no lease held" });
        true
    }

    fn full_disk(&mut self) -> bool {
        let Some(disk) = &self.disk else { return false };
        let full = disk.fill();
        let hold_for = Duration::from_millis(self.rng.between((300, 1200)));
        let until = Instant::now() + hold_for;
        while Instant::now() < until {
            self.env.play_human(&self.env.tasks());
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(disk) = &self.disk {
            disk.drain();
        }
        self.note(if full { "worktrees' disk full" } else { "worktrees' disk could not be filled" });
        full
    }
}
