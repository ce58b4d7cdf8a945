//! Scaffolding shared by the engine's integration tests: git in a test repository, a first
//! repository with one commit on `main`, its settings, engine settings around a one-stage
//! pipeline, a test agent's process and report, agents that note the work they find, a spawner
//! that collects executors for the test to run, a supervisor whose processes exit at once, and a
//! hand-moved clock, and an engine on real git and SQLite built of those that tests step job by
//! job. Each test binary uses what it needs.
// Test scaffolding: a failed setup step or a poisoned lock should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, dead_code)]

use baton_adapters::AdapterError;
use baton_adapters::agent::{Agent, AgentRequest};
use baton_domain::pipeline::{Actor, GateSpec, OnGateFail, Pipeline, StageSpec};
use baton_domain::{AgentReport, AgentStatus, Usage};
use baton_engine::{AgentFactory, BoxFuture, Clock, EngineError, EngineSettings, RepoSettings, Spawner, SystemClock};
use baton_runner::{ExitReport, LaunchRecord, Previous, ProcessSpec, RunError, RunLimits, Supervisor};
use baton_store::{JobRecord, JobStatus, NewEvent, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Runs git in `dir` with a fixed identity; its trimmed stdout. Panics when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Creates a repository at `repo` with one commit (`README`) on `main`.
pub fn init_repo(repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q", "-b", "main", "."]);
    std::fs::write(repo.join("README"), "app\n").unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "initial"]);
}

/// The local repository `app` at `repo` (prefix `APP`, default branch `main`), with no commands,
/// no coverage, no batches and no post-deploy monitoring.
pub fn repo_settings(repo: &Path) -> RepoSettings {
    RepoSettings {
        name: "app".into(),
        path: repo.to_path_buf(),
        url: None,
        push: None,
        delete_remote_branch: Default::default(),
        credentials_env: None,
        default_branch: "main".into(),
        prefix: "APP".into(),
        test: None,
        deploy: None,
        health: None,
        coverage: None,
        coverage_mode: Default::default(),
        coverage_min: 0.0,
        coverage_epsilon: 0.1,
        coverage_fail_open: true,
        security: None,
        merge_batch: 1,
        monitor_window_secs: 0,
        monitor_interval_secs: 30,
        monitor_failures: 3,
        revert_on_degraded: false,
        revert_confirm: false,
        serial: false,
        hooks: Default::default(),
        pipeline: None,
        forge: Default::default(),
    }
}

/// Executors are collected here and run by the test, one claim at a time.
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<BoxFuture>>);

impl Spawner for Collect {
    fn spawn(&self, work: BoxFuture) {
        self.0.lock().unwrap().push(work);
    }
}

impl Collect {
    /// Runs every executor collected so far, in order; how many.
    pub async fn run_all(&self) -> usize {
        let work: Vec<BoxFuture> = std::mem::take(&mut *self.0.lock().unwrap());
        let n = work.len();
        for future in work {
            future.await;
        }
        n
    }
}

/// The default pipeline cut to one stage, `analysis`, run by the `analyst` agent with no gates.
pub fn analysis_only() -> Pipeline {
    Pipeline {
        stages: vec![StageSpec {
            name: "analysis".into(),
            actor: Actor::Agent { role: "analyst".into() },
            artifact: None,
            gates: vec![],
            confirm_before: false,
            on_gate_fail: baton_domain::pipeline::OnGateFail::Retry,
            overrides: Default::default(),
            after_ship: false,
        }],
        ..Pipeline::default_pipeline()
    }
}

/// Engine settings over the repository `app` at `repo` ([`repo_settings`]), data under
/// `dir/data`, running `pipeline`; no `baton` binary (the tests' supervisors start nothing real).
pub fn engine_settings(dir: &Path, repo: &Path, pipeline: Pipeline) -> EngineSettings {
    EngineSettings {
        data_dir: dir.join("data"),
        limits: Default::default(),
        repos: vec![repo_settings(repo)],
        agents: Default::default(),
        pipeline,
        budgets: Default::default(),
        baton_exe: PathBuf::from("/nonexistent/baton"),
        env_passthrough: vec![],
    }
}

/// The process a test agent asks for: `test-agent` in the worktree, output to the run's files.
pub fn agent_process(request: &AgentRequest) -> ProcessSpec {
    ProcessSpec {
        program: "test-agent".into(),
        args: vec![],
        cwd: request.worktree.clone(),
        env: vec![],
        stdin: None,
        stdout: request.stdout_path(),
        stderr: request.stderr_path(),
    }
}

/// A run that succeeded, at `cost_usd`.
pub fn succeeded(cost_usd: Option<f64>) -> AgentReport {
    AgentReport {
        status: AgentStatus::Succeeded,
        usage: Usage::default(),
        cost_usd,
        model: None,
        session_id: None,
        turns: None,
        final_text: None,
    }
}

/// An agent that asks for [`agent_process`] and reports success, whatever the process did.
pub struct SucceedingAgent;

impl Agent for SucceedingAgent {
    fn adapter(&self) -> &str {
        "test"
    }
    fn model(&self) -> Option<&str> {
        None
    }
    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        Ok(agent_process(request))
    }
    fn parse(&self, _stdout: &str, _stderr: &str, _exit: &ExitReport) -> AgentReport {
        succeeded(None)
    }
}

/// Agents that note which earlier work files (`work-*`) their worktree holds when they start,
/// sorted and joined by commas, in `seen`; then write their own (`work-N.txt`, N the count of
/// runs so far, committed by the executor). Each run reports `cost_usd`.
pub struct WorkNotingAgents {
    pub seen: Arc<Mutex<Vec<String>>>,
    pub cost_usd: Option<f64>,
}

impl AgentFactory for WorkNotingAgents {
    fn agent(&self, _settings: &EngineSettings, _role: &str) -> Result<Arc<dyn Agent>, EngineError> {
        Ok(Arc::new(WorkNotingAgent { seen: self.seen.clone(), cost_usd: self.cost_usd }))
    }
}

struct WorkNotingAgent {
    seen: Arc<Mutex<Vec<String>>>,
    cost_usd: Option<f64>,
}

impl Agent for WorkNotingAgent {
    fn adapter(&self) -> &str {
        "test"
    }
    fn model(&self) -> Option<&str> {
        None
    }
    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        let mut seen = self.seen.lock().unwrap();
        let mut found: Vec<String> = std::fs::read_dir(&request.worktree)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("work-"))
            .collect();
        found.sort();
        seen.push(found.join(","));
        std::fs::write(request.worktree.join(format!("work-{}.txt", seen.len())), "work\n").unwrap();
        Ok(agent_process(request))
    }
    fn parse(&self, _stdout: &str, _stderr: &str, _exit: &ExitReport) -> AgentReport {
        succeeded(self.cost_usd)
    }
}

/// Called with each launch's run directory before it "starts" (a test's moment to act).
pub type OnLaunch = Box<dyn Fn(PathBuf) -> BoxFuture + Send + Sync>;

/// A supervisor whose every process "runs" at once and exits 0, recording each launch's run
/// directory; `on_launch`, when set, runs first. A process whose stop was asked for by the time
/// it is waited for ends stopped instead (SIGTERM), its run directory recorded in `stopped`.
#[derive(Default)]
pub struct InstantSupervisor {
    pub launched: Mutex<Vec<PathBuf>>,
    pub stopped: Mutex<Vec<PathBuf>>,
    pub on_launch: Option<OnLaunch>,
}

#[async_trait::async_trait]
impl Supervisor for InstantSupervisor {
    async fn launch(&self, _spec: ProcessSpec, run_dir: &Path, _owner: &str) -> Result<LaunchRecord, RunError> {
        if let Some(hook) = &self.on_launch {
            hook(run_dir.to_path_buf()).await;
        }
        self.launched.lock().unwrap().push(run_dir.to_path_buf());
        Ok(LaunchRecord { pid: 0, pgid: 0, start_ticks: None })
    }
    fn owner(&self, _run_dir: &Path) -> Option<String> {
        None
    }
    fn read_output(&self, _path: &Path) -> Vec<u8> {
        Vec::new()
    }
    fn previous(&self, _run_dir: &Path) -> Previous {
        Previous::Nothing
    }
    async fn wait(
        &self,
        _launch: &LaunchRecord,
        run_dir: &Path,
        _outputs: [&Path; 2],
        _already_ran: Duration,
        _limits: RunLimits,
        stop: watch::Receiver<bool>,
    ) -> ExitReport {
        if *stop.borrow() {
            self.stopped.lock().unwrap().push(run_dir.to_path_buf());
            return ExitReport {
                code: None,
                signal: Some(15),
                timed_out: false,
                stalled: false,
                stopped: true,
                duration_ms: 1,
            };
        }
        ExitReport { code: Some(0), signal: None, timed_out: false, stalled: false, stopped: false, duration_ms: 1 }
    }
    fn is_same_group(&self, _pgid: u32, _start_ticks: Option<u64>) -> bool {
        false
    }
    async fn stop_group(&self, _pgid: u32, _grace: Duration) {}
    fn shims_under(&self, _runs_dir: &Path) -> Vec<(u32, u32, PathBuf)> {
        Vec::new()
    }
    fn archive(&self, _run_dir: &Path) -> Result<(), RunError> {
        Ok(())
    }
}

/// A clock the test moves by hand (sleeps are real).
pub struct TestClock(pub AtomicI64);

impl TestClock {
    pub fn at(now_ms: i64) -> Self {
        TestClock(AtomicI64::new(now_ms))
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture {
        SystemClock.sleep(duration)
    }
}

/// A pipeline stage with no artifact, no confirmation and no overrides.
pub fn stage(name: &str, actor: Actor, gates: Vec<GateSpec>, on_gate_fail: OnGateFail) -> StageSpec {
    StageSpec {
        name: name.into(),
        actor,
        artifact: None,
        gates,
        confirm_before: false,
        on_gate_fail,
        overrides: Default::default(),
        after_ship: false,
    }
}

/// Declares `instance` dead while it runs a job, as another instance's reaper does: its running
/// job goes back to the queue, guarded on its claim, with the event that says why. That job.
pub async fn declare_dead(store: &dyn Store, instance: &str) -> JobRecord {
    let running = store.jobs_with_status(JobStatus::Running).await.unwrap();
    let job = running.into_iter().find(|j| j.owner.as_deref() == Some(instance)).expect("a job claimed there");
    let event = NewEvent {
        task: job.task_id,
        at_ms: 1,
        kind: "instance_dead".into(),
        stage: job.stage.clone(),
        message: format!("{instance} was silent past its grace period: its job goes back to the queue"),
        detail: serde_json::json!({ "job": job.id.0, "instance": instance }),
    };
    assert!(store.take_over_job(job.id, instance, 0, event).await.unwrap());
    job
}

/// An engine on real git and the SQLite store at `db`: agents that note the work they find (each
/// run costing `cost_usd`), a supervisor whose processes exit at once, executors collected for the
/// test to run through [`NotingEngine::step`], and a hand-moved clock.
pub struct NotingEngine {
    pub engine: Arc<baton_engine::Engine>,
    pub spawner: Arc<Collect>,
    pub clock: Arc<TestClock>,
}

impl NotingEngine {
    pub async fn open(
        settings: EngineSettings,
        db: &Path,
        seen: Arc<Mutex<Vec<String>>>,
        cost_usd: Option<f64>,
    ) -> Self {
        let store = baton_store_sqlite::SqliteStore::open(db).await.unwrap();
        let spawner = Arc::new(Collect::default());
        let clock = Arc::new(TestClock::at(1_800_000_000_000));
        let engine = baton_engine::Engine::builder(settings, Arc::new(store))
            .agents(Arc::new(WorkNotingAgents { seen, cost_usd }))
            .supervisor(Arc::new(InstantSupervisor::default()))
            .spawner(spawner.clone())
            .clock(clock.clone())
            .build();
        NotingEngine { engine, spawner, clock }
    }

    /// Ten minutes on, claims the next runnable job and runs its executor to the end; the job's
    /// stage. Panics when no job is runnable.
    pub async fn step(&self) -> String {
        self.clock.0.fetch_add(600_000, Ordering::SeqCst);
        let job = self.engine.claim_next().await.unwrap().expect("a runnable job");
        let work: Vec<BoxFuture> = std::mem::take(&mut *self.spawner.0.lock().unwrap());
        for future in work {
            future.await;
        }
        job.stage
    }
}
