//! The engine's process ports in memory: [`SimProcs`] is the simulated operating system — process
//! groups with run directories, launch and exit records, output files — behind the real
//! [`Supervisor`] trait (the engine's real `SupervisedCommands` runs repository commands over it); [`SimAgents`] builds the agent that reads a
//! simulated run's output; [`SimSpawner`] hands the engine's executors to the world's scheduler.
//!
//! A process never ends by itself: the world releases a job with a [`Script`], and every process of
//! that job (running, or launched later) ends as the script says — an agent writing its artifacts
//! into the worktree first. Processes outlive a killed Baton, as under `baton shim`. What ran is
//! witnessed here, independently of the store: agent executions per job and deploys per head.

use crate::forge::{Passed, SimForge};
use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::agent::{Agent, AgentRequest};
use baton_domain::{AgentReport, AgentStatus, JobId, TaskId, Usage};
use baton_engine::{AgentFactory, BoxFuture, Clock, EngineError, EngineSettings, Spawner};
use baton_runner::shim::ExitRecord;
use baton_runner::{ExitReport, LaunchRecord, Previous, ProcessSpec, RunError, RunLimits, Supervisor};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;

/// How a simulated job ends. Each part of the job reads it in its own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Agents succeed and write what their gates want; every command exits 0.
    Pass,
    /// An agent leaves its artifact out (or its verdict says no); the test, re-test and health
    /// commands exit 1.
    GateFail,
    /// The agent exits 1; the test, re-test and deploy commands exit 1.
    Fail,
    /// The agent ends with questions.
    NeedsInput,
    /// The provider's quota runs out; resets after the given delay when the provider said.
    Quota { resets_in_ms: Option<i64> },
    /// Nothing of the job ever ends (until stopped or killed).
    Hang,
}

/// The simulated programs: `sim-agent` and the repository's commands.
pub const AGENT_PROGRAM: &str = "sim-agent";
pub const TEST_PROGRAM: &str = "sim-test";
pub const DEPLOY_PROGRAM: &str = "sim-deploy";
pub const HEALTH_PROGRAM: &str = "sim-health";

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Live,
    Exited(ExitRecord),
    /// Killed together with its shim: no exit record.
    Vanished,
}

#[derive(Debug, Clone)]
struct Proc {
    job: Option<JobId>,
    owner: String,
    program: String,
    args: Vec<String>,
    cwd: PathBuf,
    stdout: PathBuf,
    pgid: u32,
    started_ms: i64,
    state: State,
    /// The worktree head when it started (what a test or deploy acts on).
    head: Option<(String, Option<String>, String)>,
}

/// One execution witnessed by the simulated operating system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub job: Option<JobId>,
    pub program: String,
    pub run_dir: PathBuf,
    /// For commands: the worktree head it acted on.
    pub head: Option<String>,
    pub started_ms: i64,
    /// `None` while it runs; `Some(true)` when it exited 0.
    pub succeeded: Option<bool>,
    /// When it ended (exit, stop, or killed).
    pub ended_ms: Option<i64>,
    /// Killed with its shim: no exit record.
    pub vanished: bool,
    /// The Baton process (instance) that started it.
    pub instance: String,
}

#[derive(Debug, Default)]
struct Procs {
    next_pgid: u32,
    by_dir: BTreeMap<PathBuf, Proc>,
    scripts: BTreeMap<JobId, Script>,
    outputs: BTreeMap<PathBuf, Vec<u8>>,
    executions: Vec<Execution>,
}

/// Which deployed tasks are unhealthy after their deploy: drawn once per task, at its first
/// post-deploy health check, from the world's seed. An unhealthy task fails that many checks in a
/// row — one is a flake the monitor rides out (it degrades after two), more is a degraded deploy.
/// A revert the monitor filed deploys the change back out and is always healthy.
#[derive(Debug)]
pub struct HealthPlan {
    rng: crate::rng::Rng,
    unhealthy_per_mille: u32,
    fails_left: BTreeMap<TaskId, u32>,
}

/// Failures in a row an unhealthy task's checks may have (`u32::MAX`: never healthy again).
const HEALTH_FAILS: [u32; 4] = [1, 2, 3, u32::MAX];

impl HealthPlan {
    pub fn new(seed: u64, unhealthy_per_mille: u32) -> Self {
        HealthPlan { rng: crate::rng::Rng::fork(seed, 0x4EA1), unhealthy_per_mille, fails_left: BTreeMap::new() }
    }

    /// Whether this check of `task` passes.
    fn check(&mut self, task: TaskId, revert: bool) -> bool {
        let HealthPlan { rng, unhealthy_per_mille, fails_left } = self;
        let left = fails_left.entry(task).or_insert_with(|| {
            if revert || !rng.chance(*unhealthy_per_mille) { 0 } else { rng.pick(&HEALTH_FAILS).copied().unwrap_or(1) }
        });
        if *left == 0 {
            return true;
        }
        *left -= 1;
        false
    }
}

/// The simulated operating system's processes (shared by the supervisor and the command runner).
pub struct SimProcs {
    inner: Mutex<Procs>,
    clock: Arc<dyn Clock>,
    forge: Arc<SimForge>,
    store: Arc<crate::store::SimStore>,
    health: Mutex<HealthPlan>,
}

impl std::fmt::Debug for SimProcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimProcs")
    }
}

fn job_of(owner: &str) -> Option<JobId> {
    owner.strip_prefix("job:")?.parse().ok().map(JobId)
}

impl SimProcs {
    pub fn new(
        clock: Arc<dyn Clock>,
        forge: Arc<SimForge>,
        store: Arc<crate::store::SimStore>,
        health: HealthPlan,
    ) -> Self {
        SimProcs {
            inner: Mutex::new(Procs { next_pgid: 1000, ..Procs::default() }),
            clock,
            forge,
            store,
            health: Mutex::new(health),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Procs> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Releases `job`: every process it has or will have ends as `script` says.
    pub fn release(&self, job: JobId, script: Script) {
        let live: Vec<PathBuf> = {
            let mut procs = self.lock();
            procs.scripts.insert(job, script);
            procs
                .by_dir
                .iter()
                .filter(|(_, p)| p.job == Some(job) && p.state == State::Live)
                .map(|(d, _)| d.clone())
                .collect()
        };
        for dir in live {
            self.play(&dir);
        }
    }

    /// Ends, as `script` says, the live deploys launched by a job other than `job` that `ended`
    /// says has ended: a deploy's run directory is keyed by its head, so a later job of the task
    /// waits for the deploy an earlier one left running (launched, then the job deferred or its
    /// Baton was killed) and would wait forever for a process no job finishes.
    pub fn release_left_deploys(&self, job: JobId, script: Script, ended: impl Fn(JobId) -> bool) {
        let left: Vec<JobId> = {
            let procs = self.lock();
            procs
                .by_dir
                .values()
                .filter(|p| p.state == State::Live && p.program == DEPLOY_PROGRAM)
                .filter_map(|p| p.job)
                .filter(|other| *other != job && ended(*other))
                .collect()
        };
        for other in left {
            self.release(other, script.clone());
        }
    }

    /// Whether `job` has a process running.
    pub fn has_live(&self, job: JobId) -> bool {
        self.lock().by_dir.values().any(|p| p.job == Some(job) && p.state == State::Live)
    }

    /// Kills the whole process group of every live process of `job` (shim included: no record).
    pub fn kill_group(&self, job: JobId) -> u32 {
        let mut procs = self.lock();
        let mut killed = 0;
        for proc in procs.by_dir.values_mut() {
            if proc.job == Some(job) && proc.state == State::Live {
                proc.state = State::Vanished;
                killed += 1;
            }
        }
        let now = self.clock.now_ms();
        for execution in procs.executions.iter_mut().filter(|e| e.job == Some(job) && e.ended_ms.is_none()) {
            execution.succeeded = Some(false);
            execution.ended_ms = Some(now);
            execution.vanished = true;
        }
        killed
    }

    /// Every execution so far, in start order.
    pub fn executions(&self) -> Vec<Execution> {
        self.lock().executions.clone()
    }

    /// Plays the script of the process in `dir` to its end, if its job has one.
    fn play(&self, dir: &Path) {
        let (proc, script) = {
            let procs = self.lock();
            let Some(proc) = procs.by_dir.get(dir).filter(|p| p.state == State::Live).cloned() else {
                return;
            };
            let script = proc.job.and_then(|j| procs.scripts.get(&j).cloned());
            (proc, script)
        };
        let Some(script) = script.filter(|s| *s != Script::Hang) else {
            return;
        };
        let (code, output) = if proc.program == AGENT_PROGRAM {
            self.agent_ends(&proc, &script)
        } else {
            self.command_ends(&proc, &script)
        };
        self.exit(dir, &proc, code, output);
    }

    /// A post-deploy health check (owner `monitor:<task>`) ends at once, as the health plan says.
    fn check_health(&self, dir: &Path, task: TaskId) {
        let Some(proc) = self.lock().by_dir.get(dir).filter(|p| p.state == State::Live).cloned() else {
            return;
        };
        let revert = self.store.peek_task(task).is_some_and(|t| t.title.starts_with("Revert "));
        let ok = self.health.lock().unwrap_or_else(PoisonError::into_inner).check(task, revert);
        let code = i32::from(!ok);
        self.exit(dir, &proc, code, format!("{} exited {code}", proc.program));
    }

    /// Records that the process in `dir` exited with `code`, having written `output`.
    fn exit(&self, dir: &Path, proc: &Proc, code: i32, output: String) {
        let mut procs = self.lock();
        procs.outputs.insert(proc.stdout.clone(), output.into_bytes());
        if let Some(live) = procs.by_dir.get_mut(dir) {
            live.state = State::Exited(ExitRecord { code: Some(code), signal: None });
        }
        let start = proc.started_ms;
        let now = self.clock.now_ms();
        if let Some(execution) = procs.executions.iter_mut().rev().find(|e| e.run_dir == dir && e.started_ms == start) {
            execution.succeeded = Some(code == 0);
            execution.ended_ms = Some(now);
        }
    }

    /// An agent's end: its files in the worktree, its exit code and its output line.
    fn agent_ends(&self, proc: &Proc, script: &Script) -> (i32, String) {
        let stage = proc.args.first().cloned().unwrap_or_default();
        let work_item = proc.args.get(1).cloned().unwrap_or_default();
        let artifact = proc.args.get(2).cloned().filter(|a| !a.is_empty());
        let write_artifact = |verdict: Option<&str>| {
            if let Some(name) = &artifact {
                let content = match verdict {
                    Some(v) => format!("---\nverdict: {v}\n---\nSimulated {stage}.\n"),
                    None => format!("# Simulated {stage}\n"),
                };
                self.forge.write(&proc.cwd, &format!("docs/baton/{work_item}/{name}"), &content);
            }
        };
        let verdict_pass = match stage.as_str() {
            "review" => Some("approve"),
            "testing" => Some("pass"),
            _ => None,
        };
        match script {
            Script::Pass | Script::Hang => {
                write_artifact(verdict_pass);
                self.forge.write(&proc.cwd, &format!("src/{work_item}.rs"), &format!("// {stage}\n"));
                (0, "sim:succeeded".into())
            }
            Script::GateFail => {
                match verdict_pass {
                    Some(_) => write_artifact(Some(if stage == "review" { "changes_requested" } else { "fail" })),
                    None if stage == "development" => {
                        self.forge.write(&proc.cwd, &format!("src/{work_item}.rs"), "// broken\n")
                    }
                    None => {}
                }
                (0, "sim:succeeded".into())
            }
            Script::Fail => (1, "sim:failed".into()),
            Script::NeedsInput => (0, "sim:needs_input".into()),
            Script::Quota { resets_in_ms } => {
                let at = resets_in_ms.map(|ms| self.clock.now_ms() + ms);
                (1, format!("sim:quota:{}", at.map_or("none".to_string(), |a| a.to_string())))
            }
        }
    }

    /// A repository command's end; a green re-test in the merge gate is recorded as a pass of the
    /// head it tested (the independent witness "main is sacred" is checked against).
    fn command_ends(&self, proc: &Proc, script: &Script) -> (i32, String) {
        let fails = matches!(
            (proc.program.as_str(), script),
            (TEST_PROGRAM, Script::GateFail | Script::Fail)
                | (HEALTH_PROGRAM, Script::GateFail)
                | (DEPLOY_PROGRAM, Script::Fail)
        );
        let code = i32::from(fails);
        let merge_gate = proc.job.and_then(|j| self.store.peek_job(j)).is_some_and(|j| j.stage == "deploy_staging");
        if code == 0
            && proc.program == TEST_PROGRAM
            && merge_gate
            && let Some((head, Some(base), repo)) = proc.head.clone()
            && let Some(task) = proc.job.and_then(|j| self.store.peek_job(j)).map(|j| j.task_id)
        {
            self.forge.record_passed(&head, Passed { task, repo, base });
        }
        (code, format!("{} exited {code}", proc.program))
    }

    fn record(&self, dir: &Path) -> Previous {
        let procs = self.lock();
        let Some(proc) = procs.by_dir.get(dir) else {
            return Previous::Nothing;
        };
        let launch = LaunchRecord { pid: proc.pgid, pgid: proc.pgid, start_ticks: None };
        match &proc.state {
            State::Live => Previous::Running(launch),
            State::Exited(exit) => Previous::Exited(*exit),
            State::Vanished => Previous::Vanished(launch),
        }
    }

    fn start(&self, spec: &ProcessSpec, run_dir: &Path, owner: &str, instance: &str) -> LaunchRecord {
        let head = self.forge.head_and_base(&spec.cwd);
        let now = self.clock.now_ms();
        let pgid = {
            let mut procs = self.lock();
            procs.next_pgid += 1;
            let pgid = procs.next_pgid;
            let proc = Proc {
                job: job_of(owner),
                owner: owner.to_string(),
                program: spec.program.clone(),
                args: spec.args.clone(),
                cwd: spec.cwd.clone(),
                stdout: spec.stdout.clone(),
                pgid,
                started_ms: now,
                state: State::Live,
                head: head.clone(),
            };
            procs.executions.push(Execution {
                job: proc.job,
                program: proc.program.clone(),
                run_dir: run_dir.to_path_buf(),
                head: head.map(|(h, _, _)| h),
                started_ms: now,
                succeeded: None,
                ended_ms: None,
                vanished: false,
                instance: instance.to_string(),
            });
            procs.by_dir.insert(run_dir.to_path_buf(), proc);
            pgid
        };
        match owner.strip_prefix("monitor:").and_then(|t| t.parse::<i64>().ok()) {
            Some(task) => self.check_health(run_dir, TaskId(task)),
            None => self.play(run_dir),
        }
        LaunchRecord { pid: pgid, pgid, start_ticks: None }
    }

    fn stop(&self, pgid: u32) {
        let mut procs = self.lock();
        let mut stopped = None;
        for (dir, proc) in procs.by_dir.iter_mut() {
            if proc.pgid == pgid && proc.state == State::Live {
                // SIGTERM: the command dies, the shim records it.
                proc.state = State::Exited(ExitRecord { code: None, signal: Some(15) });
                stopped = Some((dir.clone(), proc.started_ms));
            }
        }
        let now = self.clock.now_ms();
        if let Some((dir, start)) = stopped
            && let Some(execution) =
                procs.executions.iter_mut().rev().find(|e| e.run_dir == dir && e.started_ms == start)
        {
            execution.succeeded = Some(false);
            execution.ended_ms = Some(now);
        }
    }
}

/// Waits for a simulated process group: ready when it ended, stopping it on request or timeout.
struct Wait {
    procs: Arc<SimProcs>,
    run_dir: PathBuf,
    pgid: u32,
    started_ms: i64,
    limits: RunLimits,
    stop: watch::Receiver<bool>,
    reason: Option<&'static str>,
}

impl Future for Wait {
    type Output = ExitReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ExitReport> {
        let now = self.procs.clock.now_ms();
        let state =
            self.procs.lock().by_dir.get(&self.run_dir).filter(|p| p.pgid == self.pgid).map(|p| p.state.clone());
        let duration_ms = (now - self.started_ms).max(0) as u64;
        let report = |code, signal, reason: Option<&str>| ExitReport {
            code,
            signal,
            timed_out: reason == Some("timeout"),
            stalled: false,
            stopped: reason == Some("stop"),
            duration_ms,
        };
        match state {
            Some(State::Exited(exit)) => return Poll::Ready(report(exit.code, exit.signal, self.reason)),
            Some(State::Vanished) | None => return Poll::Ready(report(None, Some(9), self.reason)),
            Some(State::Live) => {}
        }
        if self.reason.is_none() {
            if *self.stop.borrow() {
                self.reason = Some("stop");
            } else if duration_ms >= self.limits.timeout.as_millis() as u64 {
                self.reason = Some("timeout");
            }
            if self.reason.is_some() {
                self.procs.stop(self.pgid);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The simulated [`Supervisor`]: the processes, and the instance whose supervisor this is
/// (recorded on each execution).
#[derive(Debug, Clone)]
pub struct SimSupervisor(pub Arc<SimProcs>, pub String);

#[async_trait]
impl Supervisor for SimSupervisor {
    async fn launch(&self, spec: ProcessSpec, run_dir: &Path, owner: &str) -> Result<LaunchRecord, RunError> {
        Ok(self.0.start(&spec, run_dir, owner, &self.1))
    }

    fn owner(&self, run_dir: &Path) -> Option<String> {
        self.0.lock().by_dir.get(run_dir).map(|p| p.owner.clone())
    }

    fn read_output(&self, path: &Path) -> Vec<u8> {
        self.0.lock().outputs.get(path).cloned().unwrap_or_default()
    }

    fn previous(&self, run_dir: &Path) -> Previous {
        self.0.record(run_dir)
    }

    async fn wait(
        &self,
        launch: &LaunchRecord,
        run_dir: &Path,
        _outputs: [&Path; 2],
        already_ran: Duration,
        limits: RunLimits,
        stop: watch::Receiver<bool>,
    ) -> ExitReport {
        let started_ms = self.0.clock.now_ms() - already_ran.as_millis() as i64;
        Wait {
            procs: self.0.clone(),
            run_dir: run_dir.to_path_buf(),
            pgid: launch.pgid,
            started_ms,
            limits,
            stop,
            reason: None,
        }
        .await
    }

    fn is_same_group(&self, pgid: u32, _start_ticks: Option<u64>) -> bool {
        self.0.lock().by_dir.values().any(|p| p.pgid == pgid && p.state == State::Live)
    }

    async fn stop_group(&self, pgid: u32, _grace: Duration) {
        self.0.stop(pgid);
    }

    fn shims_under(&self, _runs_dir: &Path) -> Vec<(u32, u32, PathBuf)> {
        let procs = self.0.lock();
        procs.by_dir.iter().filter(|(_, p)| p.state == State::Live).map(|(d, p)| (p.pgid, p.pgid, d.clone())).collect()
    }

    fn archive(&self, run_dir: &Path) -> Result<(), RunError> {
        let mut procs = self.0.lock();
        if procs.by_dir.get(run_dir).is_some_and(|p| p.state == State::Live) {
            return Err(RunError::Io {
                what: run_dir.display().to_string(),
                source: std::io::Error::other("its process group is still running"),
            });
        }
        procs.by_dir.remove(run_dir);
        Ok(())
    }
}

/// Builds [`SimAgent`]s: each reads a simulated agent's one output line.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimAgents;

impl AgentFactory for SimAgents {
    fn agent(&self, settings: &EngineSettings, _role: &str) -> Result<Arc<dyn Agent>, EngineError> {
        // Each repository's pipeline, found by the work item's prefix (`DEMO-001` → `DEMO`).
        let pipelines = settings
            .repos
            .iter()
            .map(|repo| (repo.prefix.clone(), settings.effective_pipeline_for(&repo.name)))
            .collect();
        Ok(Arc::new(SimAgent { pipelines, pipeline: settings.effective_pipeline() }))
    }
}

/// The simulated agent: `sim-agent <stage> <work item> <artifact>`; its output is one line.
#[derive(Debug, Clone)]
pub struct SimAgent {
    pipelines: std::collections::BTreeMap<String, baton_domain::Pipeline>,
    pipeline: baton_domain::Pipeline,
}

impl Agent for SimAgent {
    fn adapter(&self) -> &str {
        "sim"
    }

    fn model(&self) -> Option<&str> {
        None
    }

    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        let prefix = request.work_item.rsplit_once('-').map_or("", |(prefix, _)| prefix);
        let pipeline = self.pipelines.get(prefix).unwrap_or(&self.pipeline);
        let artifact = pipeline.stage(&request.stage).and_then(|s| s.artifact.clone()).unwrap_or_default();
        Ok(ProcessSpec {
            program: AGENT_PROGRAM.into(),
            args: vec![request.stage.clone(), request.work_item.clone(), artifact],
            cwd: request.worktree.clone(),
            env: Vec::new(),
            stdin: None,
            stdout: request.stdout_path(),
            stderr: request.stderr_path(),
        })
    }

    fn parse(&self, stdout: &str, _stderr: &str, exit: &ExitReport) -> AgentReport {
        let line = stdout.trim();
        let status = if let Some(at) = line.strip_prefix("sim:quota:") {
            AgentStatus::QuotaExhausted { message: "usage limit reached".into(), resets_at_ms: at.parse().ok() }
        } else if line == "sim:needs_input" {
            AgentStatus::NeedsInput { questions: "Which database?".into() }
        } else if line == "sim:succeeded" && exit.success() {
            AgentStatus::Succeeded
        } else {
            AgentStatus::Failed { message: format!("agent {}", exit.describe()) }
        };
        AgentReport {
            status,
            usage: Usage::default(),
            cost_usd: None,
            model: None,
            session_id: None,
            turns: None,
            final_text: None,
        }
    }
}

/// Hands spawned executors to the world, which polls them in its seeded schedule.
#[derive(Default)]
pub struct SimSpawner {
    spawned: Mutex<Vec<BoxFuture>>,
}

impl std::fmt::Debug for SimSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimSpawner")
    }
}

impl SimSpawner {
    /// The futures spawned since the last call.
    pub fn take(&self) -> Vec<BoxFuture> {
        std::mem::take(&mut *self.spawned.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Spawner for SimSpawner {
    fn spawn(&self, work: BoxFuture) {
        self.spawned.lock().unwrap_or_else(PoisonError::into_inner).push(work);
    }
}

/// The second instance's spawner: its executors go to the same scheduler, each behind a gate that
/// keeps it pending while `frozen` is set — the whole Baton process stopped (a `SIGSTOP`, a
/// suspended machine), while the processes it started run on.
#[derive(Debug)]
pub struct FreezableSpawner {
    pub inner: Arc<SimSpawner>,
    pub frozen: Arc<AtomicBool>,
}

impl Spawner for FreezableSpawner {
    fn spawn(&self, work: BoxFuture) {
        let frozen = self.frozen.clone();
        let mut work = work;
        self.inner.spawn(Box::pin(std::future::poll_fn(move |cx| {
            if frozen.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
            work.as_mut().poll(cx)
        })));
    }
}
