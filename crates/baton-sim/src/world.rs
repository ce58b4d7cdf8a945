//! The simulated world: one [`SimStore`], one [`SimForge`] (git and forge), the simulated
//! processes ([`SimProcs`]), a [`SimClock`], and the current Baton process — a real `Engine` built
//! over those ports, whose executors (spawned through [`SimSpawner`]) run the real job code: the
//! executor, the gates, the merge gate, the deploy step. Reaper, reconciler, quota timer and
//! outbox worker are the engine's own functions. A kill drops the process (its executors die
//! mid-await) and starts a new one over the same store, git and processes.
//!
//! This is the scripted API the regression tests use directly; [`crate::driver`] chooses actions
//! at random from a seed.

use crate::check::{Checker, Kind, Ledger, Violation};
use crate::clock::SimClock;
use crate::forge::SimForge;
use crate::ports::{
    DEPLOY_PROGRAM, FreezableSpawner, HEALTH_PROGRAM, Script, SimAgents, SimProcs, SimSpawner, SimSupervisor,
    TEST_PROGRAM,
};
use crate::rng::Rng;
use crate::sched::{Background, Task, run_with, yield_once};
use crate::store::{FaultRates, Isolation, Mutation, SimStore};
use baton_domain::{Event, JobId, JobOutcome, Pipeline, TaskId};
use baton_engine::{
    Budgets, Clock, Engine, EngineSettings, Features, Input, InputOutcome, Limits, NewTaskRequest, RepoSettings,
    Spawner,
};
use baton_runner::SupervisedCommands;
use baton_store::{JobFinish, JobRecord, JobStatus, Store, TaskKey, TaskRecord};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Trace lines kept for a failure report.
pub const TRACE_LINES_MAX: usize = 50;
/// Rounds a `Finish` waits for the job's executor to apply its result.
const FINISH_ROUNDS_MAX: u32 = 64;
/// Rounds the background is polled after the actions of a step ended.
const SETTLE_ROUNDS: u32 = 6;
/// The owner of the second instance, before its incarnation number.
const PEER_OWNER: &str = "sim-peer-";
/// Where the simulated installation lives (never touched on disk).
const ROOT: &str = "/nonexistent/baton-sim";

/// How a simulated world is set up.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub seed: u64,
    pub repos: Vec<String>,
    pub limits: Limits,
    pub faults: FaultRates,
    pub mutation: Mutation,
    /// A restart does not call `Engine::recover` and does not re-adopt (to prove the zombie test
    /// can fail).
    pub skip_recover: bool,
    /// Every Baton process keeps the engine's default owner `pid:<pid>`, as a container whose
    /// Baton is always PID 1 would. Otherwise each process gets its own owner.
    pub reuse_owner: bool,
    /// Every repository's `merge_batch` (1: no batches in the merge queue).
    pub merge_batch: u32,
    /// Every repository's post-deploy monitor window (0: the one `deploy_status` check).
    pub monitor_window_secs: u64,
    /// Repositories whose degraded deploys are reverted (`revert_on_degraded`).
    pub revert_repos: Vec<String>,
    /// Whether a revert waits for a human's deploy confirmation (`revert_confirm`).
    pub revert_confirm: bool,
    /// Per mille of deployed tasks whose health checks fail (see [`crate::ports::HealthPlan`]).
    pub unhealthy_per_mille: u32,
    /// How the store's concurrent calls see each other (SQLite's serial calls or PostgreSQL's
    /// READ COMMITTED statements).
    pub isolation: Isolation,
    /// A second Baton instance shares the store (as several `baton serve` share one PostgreSQL
    /// database): it heartbeats, claims through [`Action::OnPeer`] and runs its executors; a kill
    /// takes both instances down.
    pub peer: bool,
}

impl WorldConfig {
    /// One repository, concurrency 1, no faults: the base of the scripted scenarios.
    pub fn scripted(seed: u64) -> Self {
        WorldConfig {
            seed,
            repos: vec!["alpha".into()],
            limits: sim_limits(1, 1),
            faults: FaultRates { per_mille: 0, reply_lost_per_mille: 0 },
            mutation: Mutation::None,
            skip_recover: false,
            reuse_owner: false,
            merge_batch: 1,
            monitor_window_secs: 0,
            revert_repos: Vec::new(),
            revert_confirm: false,
            unhealthy_per_mille: 0,
            isolation: Isolation::Serial,
            peer: false,
        }
    }
}

/// Fast limits: short backoffs, a two-minute lease, few deferrals, a 15-minute job backstop.
pub fn sim_limits(running_max: u32, running_per_repo_max: u32) -> Limits {
    Limits {
        running_max,
        running_per_repo_max,
        stop_grace_secs: 0,
        poll_interval_ms: 10,
        lease_ttl_secs: 120,
        retry_max: 3,
        rollback_max: 3,
        retry_base_secs: 1,
        merge_defer_secs: 5,
        merge_defer_max: 12,
        job_backstop_secs: 900,
        reconcile_grace_secs: 30,
        ..Limits::default()
    }
}

/// A human input as sent (kept for replays).
#[derive(Debug, Clone)]
pub struct SentInput {
    pub task: TaskId,
    pub input: Input,
    pub key: Option<String>,
}

/// A job result as an executor feeds it to `Engine::apply_event` (kept for late re-deliveries).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub task: TaskId,
    pub event: Event,
    pub finish: JobFinish,
}

impl Delivery {
    pub fn job(&self) -> JobId {
        self.finish.job
    }
}

/// The result the executor delivers for `job` ending with `outcome`.
pub fn delivery_for(job: &JobRecord, outcome: JobOutcome) -> Delivery {
    let status = match outcome {
        JobOutcome::Failed { .. } | JobOutcome::Infrastructure { .. } => JobStatus::Failed,
        _ => JobStatus::Done,
    };
    let finish = JobFinish { job: job.id, status, result: serde_json::json!({ "outcome": outcome }), claimed_by: None };
    Delivery { task: job.task_id, event: Event::JobFinished { job: job.id, stage: job.stage.clone(), outcome }, finish }
}

/// One thing to do through the engine; several may run interleaved (with the executors).
#[derive(Debug, Clone)]
pub enum Action {
    /// A ticket arrives; `external_ref` is the tracker's id when it came from a tracker.
    Create {
        repo: String,
        external_ref: Option<String>,
    },
    /// One claim of the claim loop (`Engine::claim_next`, which starts the real executor).
    Claim,
    /// The job's processes end as `script` says; waits for its executor to apply the result.
    Finish {
        job: JobId,
        script: Script,
    },
    /// A job result fed to `Engine::apply_event` again.
    Deliver(Delivery),
    Submit(SentInput),
    QuotaTimer,
    ReaperTick,
    ReconcilerTick,
    /// The outbox worker's pass.
    OutboxTick,
    /// Someone kills the job's process groups, shims included (no exit record).
    KillGroup {
        job: JobId,
    },
    /// A human declares that `task` waits for `on` (SPEC §6.4) through the engine, which refuses
    /// cycles; `unchecked` writes it straight to the store instead, as a declaration racing
    /// another could, leaving a cycle to the reconciler's backstop.
    Depend {
        task: TaskId,
        on: TaskId,
        unchecked: bool,
    },
    /// The engine loop's check for jobs running here that are no longer this instance's
    /// (`Engine::stop_jobs_taken_away`).
    StopTakenAway,
    /// A human unfreezes `repo` (`baton repo unfreeze`).
    Unfreeze {
        repo: String,
    },
    /// The action, started only after its future was polled `yields` times (to place it late in
    /// an interleaving: a scripted race whose window opens after several store calls).
    After {
        yields: u32,
        action: Box<Action>,
    },
    /// The action done by the second instance ([`WorldConfig::peer`]); by the first without one.
    OnPeer(Box<Action>),
}

/// What an action returned.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a handful live at a time; boxing would only add noise
pub enum Outcome {
    Created(Result<TaskRecord, String>),
    /// The claimed job (its executor started), nothing runnable, or the claim's error.
    Claimed(Result<Option<JobRecord>, String>),
    Finished(JobId, Option<Delivery>, Result<InputOutcome, String>),
    Delivered(Delivery, Result<InputOutcome, String>),
    Submitted(SentInput, Result<InputOutcome, String>),
    Timer(Result<u32, String>),
    Reaper,
    Reconciler,
    Outbox(u32),
    KilledGroup(JobId, u32),
    Depended(TaskId, TaskId, Result<bool, String>),
    Unfrozen(String, Result<(), String>),
    TakenAway(Result<u32, String>),
}

/// Counts for the report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub steps: u64,
    pub kills: u64,
    pub group_kills: u64,
    pub claims: u64,
    pub results_applied: u64,
    pub results_suppressed: u64,
    pub inputs_duplicate: u64,
    pub engine_errors: u64,
    pub bursts: u64,
    /// Claims the second instance won ([`WorldConfig::peer`]).
    pub peer_claims: u64,
    /// Times the second instance's process was stopped ([`World::freeze_peer`]).
    pub peer_stops: u64,
}

/// The simulated world.
pub struct World {
    pub config: WorldConfig,
    pub clock: Arc<SimClock>,
    pub store: Arc<SimStore>,
    pub forge: Arc<SimForge>,
    pub procs: Arc<SimProcs>,
    spawner: Arc<SimSpawner>,
    /// The executors of the current Baton process.
    background: Vec<Background>,
    engine: Arc<Engine>,
    /// The second instance, when the world has one ([`WorldConfig::peer`]).
    peer: Option<Arc<Engine>>,
    peer_incarnation: u32,
    /// Set while the second instance's process is stopped: its executors are not polled, it
    /// heartbeats no more and takes no actions (its processes run on).
    peer_frozen: Arc<AtomicBool>,
    settings: EngineSettings,
    incarnation: u32,
    /// Orders concurrent futures.
    schedule_rng: Rng,
    pub ledger: Ledger,
    pub checker: Checker,
    trace: VecDeque<String>,
    pub counters: Counters,
    task_numbers: u32,
    /// Print every trace line as it happens (`baton-sim --seed S --trace`).
    pub echo: bool,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("seed", &self.config.seed).field("incarnation", &self.incarnation).finish()
    }
}

/// The repository that runs through a pipeline of its own (when the world has it): every task of
/// the others goes through the default pipeline.
const SHORT_PIPELINE_REPO: &str = "beta";

/// The default pipeline without architecture and review: the named pipeline of
/// [`SHORT_PIPELINE_REPO`].
fn short_pipeline() -> Pipeline {
    let mut pipeline = Pipeline::default_pipeline();
    pipeline.stages.retain(|s| s.name != "architecture" && s.name != "review");
    pipeline
}

fn settings_for(config: &WorldConfig) -> EngineSettings {
    let root = PathBuf::from(ROOT);
    let argv = |program: &str| Some(vec![program.to_string()]);
    EngineSettings {
        data_dir: root.join("data"),
        limits: config.limits.clone(),
        repos: config
            .repos
            .iter()
            .map(|name| RepoSettings {
                name: name.clone(),
                path: root.join(name),
                default_branch: "main".into(),
                url: None,
                push: None,
                delete_remote_branch: baton_engine::DeleteRemoteBranch::default(),
                credentials_env: None,
                prefix: name.to_uppercase(),
                test: argv(TEST_PROGRAM),
                deploy: argv(DEPLOY_PROGRAM),
                health: argv(HEALTH_PROGRAM),
                coverage: None,
                coverage_mode: Default::default(),
                coverage_min: 0.0,
                coverage_epsilon: 0.1,
                coverage_fail_open: true,
                security: None,
                merge_batch: config.merge_batch,
                monitor_window_secs: config.monitor_window_secs,
                monitor_interval_secs: 30,
                monitor_failures: 2,
                revert_on_degraded: config.revert_repos.contains(name),
                revert_confirm: config.revert_confirm,
                serial: false,
                hooks: Default::default(),
                pipeline: (name == SHORT_PIPELINE_REPO)
                    .then(|| baton_engine::NamedPipeline { name: "short".into(), pipeline: short_pipeline() }),
                forge: Default::default(),
            })
            .collect(),
        agents: BTreeMap::new(),
        pipeline: Pipeline::default_pipeline(),
        budgets: Budgets::default(),
        baton_exe: root.join("baton"),
        env_passthrough: vec![],
    }
}

impl World {
    pub fn new(config: WorldConfig) -> Self {
        let clock = Arc::new(SimClock::default());
        let store = Arc::new(SimStore::new(clock.clone(), config.seed, config.faults, config.mutation));
        store.set_isolation(config.isolation);
        let forge = Arc::new(SimForge::new(
            &PathBuf::from(ROOT),
            &config.repos,
            store.clone(),
            clock.clone(),
            config.seed,
            config.faults.per_mille,
        ));
        let health = crate::ports::HealthPlan::new(config.seed, config.unhealthy_per_mille);
        let procs = Arc::new(SimProcs::new(clock.clone(), forge.clone(), store.clone(), health));
        let settings = settings_for(&config);
        let spawner = Arc::new(SimSpawner::default());
        let schedule_rng = Rng::fork(config.seed, 0x5C4E);
        let engine = Engine::builder(settings.clone(), store.clone()).build();
        let mut world = World {
            config,
            clock,
            store,
            forge,
            procs,
            spawner,
            background: Vec::new(),
            engine,
            peer: None,
            peer_incarnation: 0,
            peer_frozen: Arc::new(AtomicBool::new(false)),
            settings,
            incarnation: 0,
            schedule_rng,
            ledger: Ledger::default(),
            checker: Checker::default(),
            trace: VecDeque::new(),
            counters: Counters::default(),
            task_numbers: 0,
            echo: false,
        };
        world.engine = world.start_engine();
        world.start_peer();
        world
    }

    /// Starts the second instance (when the world has one) under a new owner, its instance row
    /// written fresh; the previous peer's row goes, so its jobs are a previous run's to recover.
    fn start_peer(&mut self) {
        if !self.config.peer {
            return;
        }
        if self.peer.is_some() {
            let old = format!("{PEER_OWNER}{}", self.peer_incarnation);
            self.store.forget_instance(&old);
        }
        self.peer_incarnation += 1;
        let owner = format!("{PEER_OWNER}{}", self.peer_incarnation);
        // A new process: whatever froze the last one is over.
        self.peer_frozen = Arc::new(AtomicBool::new(false));
        let spawner = Arc::new(FreezableSpawner { inner: self.spawner.clone(), frozen: self.peer_frozen.clone() });
        self.peer = Some(self.build_engine_with(Some(owner), spawner));
        self.peer_heartbeat();
    }

    /// The peer's heartbeat as of now (written directly: no store call, so no fault or yield).
    fn peer_heartbeat(&self) {
        if self.peer_is_frozen() {
            return;
        }
        if let Some(peer) = &self.peer {
            let now = self.clock.now_ms();
            self.store.beat(baton_store::InstanceRecord {
                id: peer.owner().to_string(),
                host: "sim-peer".into(),
                pid: 0,
                started_at_ms: now,
                heartbeat_at_ms: now,
            });
        }
    }

    /// A new Baton process: a fresh engine (no in-memory state) over the same ports.
    fn start_engine(&mut self) -> Arc<Engine> {
        self.incarnation += 1;
        let owner = if self.config.reuse_owner { None } else { Some(format!("sim-process-{}", self.incarnation)) };
        self.build_engine(owner)
    }

    fn start_engine_named(&mut self, owner: String) -> Arc<Engine> {
        self.build_engine(Some(owner))
    }

    fn build_engine(&mut self, owner: Option<String>) -> Arc<Engine> {
        let spawner: Arc<dyn Spawner> = self.spawner.clone();
        self.build_engine_with(owner, spawner)
    }

    fn build_engine_with(&mut self, owner: Option<String>, spawner: Arc<dyn Spawner>) -> Arc<Engine> {
        let instance = owner.clone().unwrap_or_else(|| format!("sim-process-{} (default owner)", self.incarnation));
        let supervisor = SimSupervisor(self.procs.clone(), instance);
        let store: Arc<dyn Store> = self.store.clone();
        let clock: Arc<dyn Clock> = self.clock.clone();
        let mut builder = Engine::builder(self.settings.clone(), store)
            .clock(clock)
            .spawner(spawner)
            .vcs(self.forge.clone())
            .forge(self.forge.clone())
            .supervisor(Arc::new(supervisor.clone()))
            .commands(Arc::new(SupervisedCommands::new(Arc::new(supervisor))))
            .agents(Arc::new(SimAgents))
            .features(Features::all_on());
        if let Some(owner) = owner {
            builder = builder.owner(owner);
        }
        builder.build()
    }

    /// Whether the second instance's process is stopped ([`World::freeze_peer`]).
    pub fn peer_is_frozen(&self) -> bool {
        self.peer_frozen.load(Ordering::SeqCst)
    }

    /// Stops the second instance's process where it is (`SIGSTOP`, a suspended machine): its
    /// executors stay mid-await, it heartbeats no more, the processes it started run on. Once it
    /// is silent past `instance_grace_secs` the first instance declares it dead and takes its jobs
    /// over.
    pub fn freeze_peer(&mut self) {
        if self.peer.is_some() {
            self.peer_frozen.store(true, Ordering::SeqCst);
            self.counters.peer_stops += 1;
            self.note("second instance frozen".into());
        }
    }

    /// The stopped second instance runs again: its executors carry on from where they were while
    /// its loop, a few polls later, heartbeats and stops the jobs taken away from it meanwhile.
    pub fn thaw_peer(&mut self, loop_after_polls: u32) -> Outcome {
        self.peer_frozen.store(false, Ordering::SeqCst);
        self.note("second instance thawed".into());
        let check = Action::After {
            yields: loop_after_polls,
            action: Box::new(Action::OnPeer(Box::new(Action::StopTakenAway))),
        };
        let outcome = self.run(vec![check]).pop().expect("one action yields one outcome");
        self.peer_heartbeat();
        outcome
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// Jobs that are running: watched by an executor of this process, or with a process still
    /// running (an agent that outlived the Baton that started it). Oldest first.
    pub fn running_jobs(&self) -> Vec<JobRecord> {
        let mut jobs = self.engine.running_here();
        if let Some(peer) = &self.peer {
            jobs.extend(peer.running_here());
        }
        for job in self.store.peek_running_jobs() {
            if !jobs.contains(&job) && self.procs.has_live(job) {
                jobs.push(job);
            }
        }
        jobs.sort();
        jobs.into_iter().filter_map(|job| self.store.peek_job(job)).filter(|j| j.status == JobStatus::Running).collect()
    }

    /// Faults on or off, in the store and the forge.
    pub fn arm_faults(&self, armed: bool) {
        self.store.arm_faults(armed);
        self.forge.arm_faults(armed);
    }

    pub fn note(&mut self, line: String) {
        let line = format!("#{:<4} t+{:>7.1}s  {line}", self.counters.steps, self.clock.elapsed_ms() as f64 / 1000.0);
        if self.echo {
            eprintln!("{line}");
        }
        if self.trace.len() == TRACE_LINES_MAX {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    pub fn trace(&self) -> Vec<String> {
        self.trace.iter().cloned().collect()
    }

    pub fn task(&self, id: TaskId) -> TaskRecord {
        self.store.peek_task(id).unwrap_or_else(|| panic!("task {id} does not exist"))
    }

    /// Time passes; the executors get to see it (sleeps end, timeouts fire).
    pub fn advance_clock(&mut self, ms: i64) {
        self.clock.advance_ms(ms);
        self.peer_heartbeat();
        self.note(format!("clock +{:.1}s", ms as f64 / 1000.0));
        self.run(Vec::new());
    }

    fn future(&mut self, action: Action) -> Task<'static, Outcome> {
        let engine = self.engine.clone();
        self.future_on(engine, action)
    }

    fn future_on(&mut self, engine: Arc<Engine>, action: Action) -> Task<'static, Outcome> {
        match action {
            Action::Create { repo, external_ref } => {
                self.task_numbers += 1;
                let number = self.task_numbers;
                Box::pin(async move {
                    let request = NewTaskRequest {
                        repo,
                        title: format!("Simulated ticket {number}"),
                        body: "Generated by baton-sim.".into(),
                        external_ref,
                    };
                    Outcome::Created(engine.create_task(request).await.map_err(|e| e.to_string()))
                })
            }
            Action::Claim => {
                Box::pin(async move { Outcome::Claimed(engine.claim_next().await.map_err(|e| e.to_string())) })
            }
            Action::Finish { job, script } => {
                let procs = self.procs.clone();
                let store = self.store.clone();
                let peer = self.peer.clone();
                Box::pin(async move {
                    procs.release(job, script.clone());
                    if !procs.has_live(job) {
                        let ended = |other| store.peek_job(other).is_some_and(|j| j.status != JobStatus::Running);
                        procs.release_left_deploys(job, script, ended);
                    }
                    // Whichever instance runs the job applies its result.
                    let watched =
                        || engine.is_running_here(job) || peer.as_ref().is_some_and(|p| p.is_running_here(job));
                    for _ in 0..FINISH_ROUNDS_MAX {
                        if !watched() {
                            break;
                        }
                        yield_once().await;
                    }
                    let (delivery, result) = finished(&store, job, watched());
                    Outcome::Finished(job, delivery, result)
                })
            }
            Action::Deliver(delivery) => Box::pin(async move {
                let result = engine
                    .apply_event(delivery.task, &delivery.event, Some(delivery.finish.clone()), None)
                    .await
                    .map_err(|e| e.to_string());
                Outcome::Delivered(delivery, result)
            }),
            Action::Depend { task, on, unchecked } => {
                let store = self.store.clone();
                Box::pin(async move {
                    let result = if unchecked {
                        let now = engine.clock().now_ms();
                        store.add_dependency(task, on, "sim-race", now).await.map_err(|e| e.to_string())
                    } else {
                        engine
                            .declare_dependency(&TaskKey::Id(task), &TaskKey::Id(on), "sim-human")
                            .await
                            .map(|declared| declared.created)
                            .map_err(|e| e.to_string())
                    };
                    Outcome::Depended(task, on, result)
                })
            }
            Action::Submit(sent) => Box::pin(async move {
                let result = engine
                    .submit(&TaskKey::Id(sent.task), sent.input.clone(), "sim-human", sent.key.clone())
                    .await
                    .map_err(|e| e.to_string());
                Outcome::Submitted(sent, result)
            }),
            Action::Unfreeze { repo } => Box::pin(async move {
                let result = baton_engine::monitor::unfreeze(&engine, &repo, "sim-human").await;
                Outcome::Unfrozen(repo, result.map(|_| ()).map_err(|e| e.to_string()))
            }),
            Action::QuotaTimer => {
                Box::pin(
                    async move { Outcome::Timer(engine.resume_due_quota_pauses().await.map_err(|e| e.to_string())) },
                )
            }
            Action::ReaperTick => Box::pin(async move {
                baton_engine::reaper::tick(&engine).await;
                Outcome::Reaper
            }),
            Action::ReconcilerTick => Box::pin(async move {
                baton_engine::reconciler::tick(&engine).await;
                Outcome::Reconciler
            }),
            Action::OutboxTick => {
                Box::pin(async move { Outcome::Outbox(baton_engine::effects::drain(&engine, None).await) })
            }
            Action::KillGroup { job } => {
                let procs = self.procs.clone();
                Box::pin(async move { Outcome::KilledGroup(job, procs.kill_group(job)) })
            }
            // A stopped process does nothing: the first instance acts alone meanwhile.
            Action::OnPeer(action) => {
                let peer = self.peer.clone().filter(|_| !self.peer_is_frozen()).unwrap_or(engine);
                self.future_on(peer, *action)
            }
            Action::StopTakenAway => {
                Box::pin(
                    async move { Outcome::TakenAway(engine.stop_jobs_taken_away().await.map_err(|e| e.to_string())) },
                )
            }
            Action::After { yields, action } => {
                let later = self.future_on(engine, *action);
                Box::pin(async move {
                    for _ in 0..yields {
                        yield_once().await;
                    }
                    later.await
                })
            }
        }
    }

    /// Runs one action to completion (with the executors).
    pub fn act(&mut self, action: Action) -> Outcome {
        self.run(vec![action]).pop().expect("one action yields one outcome")
    }

    /// Runs actions concurrently with the executors, their store calls interleaved in a seeded order.
    pub fn run(&mut self, actions: Vec<Action>) -> Vec<Outcome> {
        let concurrent = actions.len() > 1;
        let futures: Vec<_> = actions.into_iter().map(|a| self.future(a)).collect();
        if concurrent {
            self.counters.bursts += 1;
            self.store.set_interleaving(true);
        }
        let spawner = self.spawner.clone();
        let outcomes =
            run_with(futures, &mut self.background, &|| spawner.take(), &mut self.schedule_rng, SETTLE_ROUNDS);
        self.store.set_interleaving(false);
        for outcome in &outcomes {
            let line = self.record(outcome);
            self.note(line);
        }
        outcomes
    }

    fn count_result(&mut self, job: Option<JobId>, result: &Result<InputOutcome, String>) {
        match result {
            Ok(InputOutcome::Applied { .. }) => {
                self.counters.results_applied += 1;
                if let Some(job) = job {
                    *self.ledger.applied_jobs.entry(job).or_insert(0) += 1;
                }
            }
            Ok(InputOutcome::Suppressed { .. }) => self.counters.results_suppressed += 1,
            Ok(InputOutcome::Duplicate) => self.counters.inputs_duplicate += 1,
            Err(_) => self.counters.engine_errors += 1,
        }
    }

    /// Updates the world after an action and says what happened in one line.
    fn record(&mut self, outcome: &Outcome) -> String {
        match outcome {
            Outcome::Created(Ok(task)) => {
                self.ledger.created.push(task.id);
                format!("created task {} {} (ticket {:?})", task.id, task.work_item_id, task.external_ref)
            }
            Outcome::Created(Err(e)) => {
                self.counters.engine_errors += 1;
                format!("create failed: {e}")
            }
            Outcome::Claimed(Ok(Some(job))) => {
                self.counters.claims += 1;
                if job.owner.as_deref().is_some_and(|owner| owner.starts_with(PEER_OWNER)) {
                    self.counters.peer_claims += 1;
                }
                format!("claimed job {} of task {} ({} attempt {})", job.id, job.task_id, job.stage, job.attempt)
            }
            Outcome::Claimed(Ok(None)) => "claim: nothing runnable".into(),
            Outcome::Claimed(Err(e)) => {
                self.counters.engine_errors += 1;
                format!("claim failed: {e}")
            }
            Outcome::Finished(job, delivery, result) => {
                if let Ok(InputOutcome::Applied { .. }) = result {
                    self.counters.results_applied += 1;
                }
                let what = delivery.as_ref().map_or("?".to_string(), |d| outcome_name(&d.event));
                format!("job {job} finished ({what}): {}", show(result))
            }
            Outcome::Delivered(delivery, result) => {
                self.count_result(Some(delivery.job()), result);
                format!(
                    "job {} result delivered again ({}): {}",
                    delivery.job(),
                    outcome_name(&delivery.event),
                    show(result)
                )
            }
            Outcome::Submitted(sent, result) => {
                if let (Some(key), Ok(InputOutcome::Applied { .. } | InputOutcome::Suppressed { .. })) =
                    (&sent.key, result)
                {
                    *self.ledger.decided_keys.entry(key.clone()).or_insert(0) += 1;
                }
                self.count_result(None, result);
                format!(
                    "human {} on task {} (key {}): {}",
                    sent.input.kind(),
                    sent.task,
                    sent.key.as_deref().unwrap_or("none"),
                    show(result)
                )
            }
            Outcome::Depended(task, on, result) => match result {
                Ok(created) => format!("task {task} declared to wait for task {on} (new: {created})"),
                Err(why) => format!("task {task} may not wait for task {on}: {why}"),
            },
            Outcome::Unfrozen(repo, result) => match result {
                Ok(()) => format!("human unfroze {repo}"),
                Err(why) => format!("unfreezing {repo} refused: {why}"),
            },
            Outcome::TakenAway(Ok(n)) => format!("stopped {n} job(s) no longer this instance's"),
            Outcome::TakenAway(Err(e)) => {
                self.counters.engine_errors += 1;
                format!("checking for jobs taken away failed: {e}")
            }
            Outcome::Reaper => "reaper pass".into(),
            Outcome::Reconciler => "reconciler pass".into(),
            Outcome::Outbox(n) => format!("outbox worker carried out {n} effect(s)"),
            Outcome::KilledGroup(job, n) => {
                self.counters.group_kills += 1;
                format!("killed {n} process group(s) of job {job}")
            }
            Outcome::Timer(result) => match result {
                Ok(n) => format!("quota timer resumed {n}"),
                Err(e) => {
                    self.counters.engine_errors += 1;
                    format!("quota timer failed: {e}")
                }
            },
        }
    }

    /// Kills Baton in the middle of `action`: its future is polled `polls` times (store calls
    /// interleaved, so each poll gets about one call further), then dropped with the process, as a
    /// SIGKILL would leave it; then [`World::kill_and_restart`].
    pub fn kill_during(&mut self, action: Action, polls: u32) -> Vec<Violation> {
        let what = format!("{action:?}");
        let mut future = self.future(action);
        self.store.set_interleaving(true);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut polled = 0;
        let mut finished = false;
        while polled < polls && !finished {
            polled += 1;
            finished = future.as_mut().poll(&mut cx).is_ready();
        }
        self.store.set_interleaving(false);
        drop(future);
        let cut = if finished { "after it ended" } else { "in its middle" };
        self.note(format!("kill during {what} {cut} ({polled} polls)"));
        self.kill_and_restart()
    }

    /// Kills Baton (its executors die mid-await with it) and starts a new process, which starts
    /// as `Engine::run` does: `recover`, `adopt_orphans`, the start-up sweep. When recovery
    /// succeeded, no job may be left running without an executor.
    pub fn kill_and_restart(&mut self) -> Vec<Violation> {
        self.counters.kills += 1;
        self.background.clear();
        drop(self.spawner.take());
        self.engine = self.start_engine();
        self.start_peer();
        if self.config.skip_recover {
            // Nothing re-adopts or requeues: whatever was running is left without an executor.
            self.note(format!("killed Baton; process {} started WITHOUT recovery", self.incarnation));
            return self.checker.check_no_zombies(&self.store, &self.engine.running_here());
        }
        let engine = self.engine.clone();
        let start: Task<'static, Result<(u32, u32), String>> = Box::pin(async move {
            let recovered = engine.recover().await.map_err(|e| e.to_string())?;
            let adopted = engine.adopt_orphans().await.map_err(|e| e.to_string())?;
            baton_engine::reaper::sweep_at_start(&engine).await;
            Ok((recovered, adopted))
        });
        let spawner = self.spawner.clone();
        let result = run_with(vec![start], &mut self.background, &|| spawner.take(), &mut self.schedule_rng, 0)
            .pop()
            .expect("one start");
        self.note(format!("killed Baton; process {} started: recovered/adopted {result:?}", self.incarnation));
        if result.is_err() {
            return Vec::new();
        }
        let watched = self.engine.running_here();
        self.checker.check_no_zombies(&self.store, &watched)
    }

    /// Creates a task (panics if the engine refuses: scripted scenarios run without faults).
    pub fn create_task(&mut self, repo: &str) -> TaskId {
        match self.act(Action::Create { repo: repo.to_string(), external_ref: None }) {
            Outcome::Created(Ok(task)) => task.id,
            other => panic!("creating a task failed: {other:?}"),
        }
    }

    /// One claim of the claim loop; the started job, if any.
    pub fn claim(&mut self) -> Option<JobId> {
        match self.act(Action::Claim) {
            Outcome::Claimed(Ok(Some(job))) => Some(job.id),
            _ => None,
        }
    }

    /// Ends a running job's processes with `script` and returns what its executor delivered.
    pub fn finish(&mut self, job: JobId, script: Script) -> (Option<Delivery>, Result<InputOutcome, String>) {
        match self.act(Action::Finish { job, script }) {
            Outcome::Finished(_, delivery, result) => (delivery, result),
            other => panic!("finish returned {other:?}"),
        }
    }

    pub fn submit(&mut self, task: TaskId, input: Input, key: Option<&str>) -> Result<InputOutcome, String> {
        let sent = SentInput { task, input, key: key.map(str::to_string) };
        match self.act(Action::Submit(sent)) {
            Outcome::Submitted(_, result) => result,
            other => panic!("submit returned {other:?}"),
        }
    }

    /// A human input given through the CLI: another Baton process (its own engine over the same
    /// store, git and processes) that exits right after the call. The server keeps running.
    pub fn cli_submit(&mut self, task: TaskId, input: Input, key: Option<&str>) -> Result<InputOutcome, String> {
        let cli = self.start_engine_named("cli".to_string());
        let key = key.map(str::to_string);
        let call: Task<'static, Result<InputOutcome, String>> =
            Box::pin(async move { cli.submit(&TaskKey::Id(task), input, "cli", key).await.map_err(|e| e.to_string()) });
        let spawner = self.spawner.clone();
        let result = run_with(vec![call], &mut self.background, &|| spawner.take(), &mut self.schedule_rng, 0)
            .pop()
            .expect("one call");
        self.note(format!("cli input on task {task}: {}", show(&result)));
        result
    }

    /// Checks the invariants now; all violations found.
    pub fn check(&mut self) -> Vec<Violation> {
        let mut found = self.forge.take_violations();
        found.extend(self.checker.check(&self.store, &self.ledger, self.clock.now_ms()));
        let taken_over = self.taken_over_jobs();
        let executions = self.procs.executions();
        found.extend(self.checker.check_executions(&executions, &self.forge, &taken_over));
        let frozen = self.peer.as_ref().filter(|_| self.peer_is_frozen()).map(|peer| peer.owner().to_string());
        found.extend(self.checker.check_lost_runs(&self.store, &executions, &taken_over, frozen.as_deref()));
        found
    }

    /// Jobs requeued from an instance declared dead, with when (their `instance_dead` events):
    /// such a job's stage runs afresh wherever it is claimed next (the exit its agent may have
    /// recorded lies on the dead instance's machine).
    pub fn taken_over_jobs(&self) -> BTreeMap<JobId, Vec<i64>> {
        self.store.peek(|s| {
            let mut taken: BTreeMap<JobId, Vec<i64>> = BTreeMap::new();
            for event in s.events.iter().filter(|e| e.kind == "instance_dead") {
                if let Some(job) = event.detail.get("job").and_then(serde_json::Value::as_i64) {
                    taken.entry(JobId(job)).or_default().push(event.at_ms);
                }
            }
            taken
        })
    }

    /// After draining: what cancelled and done tasks must have left behind (nothing), and every
    /// agent run closed.
    pub fn check_cleaned_up(&self) -> Vec<Violation> {
        let mut found = Vec::new();
        let worktrees = self.forge.worktree_paths();
        let branches = self.forge.branch_names();
        let shipped = self.forge.shipped_tasks();
        let root = self.settings.worktrees_dir();
        for task in self.store.peek_tasks().iter().filter(|t| t.state.is_terminal()) {
            let path = root.join(&task.repo).join(&task.work_item_id);
            if worktrees.contains(&path) {
                found.push(Violation::new(
                    Kind::LeftBehind,
                    format!("{} task {} kept its worktree", task.state.stage, task.id),
                ));
            }
            if task.state.stage == baton_domain::pipeline::CANCELLED && shipped.contains(&task.id) {
                found.push(Violation::new(
                    Kind::ShippedCancelled,
                    format!("task {} ended cancelled, but a default branch holds its change", task.id),
                ));
            }
            if task.state.stage == baton_domain::pipeline::CANCELLED && branches.contains(&task.branch) {
                found.push(Violation::new(
                    Kind::LeftBehind,
                    format!("cancelled task {} kept branch {}", task.id, task.branch),
                ));
            }
        }
        // A change on a default branch goes on to its deploy stage (or ends): never blocked before it.
        for task in self.store.peek_tasks().iter().filter(|t| shipped.contains(&t.id)) {
            let blocked = matches!(task.state.hold, baton_domain::Hold::Blocked { .. });
            if blocked && task.state.stage != crate::forge::DEPLOY_STAGE {
                found.push(Violation::new(
                    Kind::ShippedHeldBack,
                    format!("task {} is {} while a default branch holds its change", task.id, task.state.display()),
                ));
            }
        }
        found.extend(self.checker.check_runs_closed(&self.store));
        found
    }

    /// Drives the task with passing jobs (its own and any other running job) and a helpful human
    /// until `done(task)` holds; false when `steps_max` steps were not enough.
    pub fn drive_until(&mut self, task: TaskId, steps_max: u32, done: impl Fn(&TaskRecord) -> bool) -> bool {
        for _ in 0..steps_max {
            let record = self.task(task);
            if done(&record) {
                return true;
            }
            if record.state.is_terminal() {
                return false;
            }
            let input = match record.state.hold {
                baton_domain::Hold::AwaitingApproval => Some(Input::Approve),
                baton_domain::Hold::AwaitingConfirm => Some(Input::ConfirmDeploy),
                baton_domain::Hold::NeedsInput { .. } => Some(Input::Answer { text: "Use SQLite.".into() }),
                baton_domain::Hold::PausedBudget { .. } | baton_domain::Hold::PausedQuota { .. } => Some(Input::Resume),
                baton_domain::Hold::Blocked { .. } => return false,
                baton_domain::Hold::None | baton_domain::Hold::MergeQueue | baton_domain::Hold::Monitoring { .. } => {
                    None
                }
            };
            if let Some(input) = input {
                let _ = self.submit(task, input, None);
                continue;
            }
            // Any running job: at concurrency 1 another task's job may hold the only slot.
            if let Some(job) = self.running_jobs().first().map(|r| r.id) {
                let _ = self.finish(job, Script::Pass);
                continue;
            }
            if self.claim().is_none() {
                // Nothing runnable yet: a backoff or a deferral; let time pass.
                self.advance_clock(5_000);
            }
        }
        done(&self.task(task))
    }
}

/// What a finished job delivered, read back from the store: the result its executor recorded, and
/// whether that result moved the task (a transition finished the job) or was stale.
fn finished(store: &SimStore, job: JobId, still_running: bool) -> (Option<Delivery>, Result<InputOutcome, String>) {
    let Some(row) = store.peek_job(job) else {
        return (None, Err(format!("job {job} does not exist")));
    };
    if still_running || row.status == JobStatus::Running {
        return (None, Err(format!("job {job} is still running")));
    }
    let delivery = row.outcome().map(|outcome| Delivery {
        task: row.task_id,
        event: Event::JobFinished { job, stage: row.stage.clone(), outcome },
        finish: JobFinish { job, status: row.status, result: row.result.clone().unwrap_or_default(), claimed_by: None },
    });
    let applied = store.commits().iter().rev().find(|c| c.finish_job == Some(job)).map(|c| c.kind.clone());
    let result = match applied {
        Some(kind) => Ok(InputOutcome::Applied { note: format!("{kind} → {}", row.stage) }),
        None => {
            Ok(InputOutcome::Suppressed { reason: format!("job {job} ended {:?} without moving its task", row.status) })
        }
    };
    (delivery, result)
}

fn show(result: &Result<InputOutcome, String>) -> String {
    match result {
        Ok(InputOutcome::Applied { note }) => format!("applied: {note}"),
        Ok(InputOutcome::Suppressed { reason }) => format!("suppressed: {reason}"),
        Ok(InputOutcome::Duplicate) => "duplicate".into(),
        Err(e) => format!("ERROR {e}"),
    }
}

fn outcome_name(event: &Event) -> String {
    match event {
        Event::JobFinished { outcome, .. } => match outcome {
            JobOutcome::Completed { verdicts } => {
                let failing: Vec<&str> = verdicts
                    .iter()
                    .filter(|v| v.verdict != baton_domain::Verdict::Pass)
                    .map(|v| v.gate.as_str())
                    .collect();
                if failing.is_empty() {
                    "completed".into()
                } else {
                    format!("completed, not passing: {}", failing.join(","))
                }
            }
            JobOutcome::NeedsInput { .. } => "needs input".into(),
            JobOutcome::Failed { reason } => format!("failed: {reason}"),
            JobOutcome::BudgetExceeded { .. } => "budget".into(),
            JobOutcome::QuotaExhausted { .. } => "quota".into(),
            JobOutcome::Infrastructure { reason } => format!("infrastructure: {reason}"),
            JobOutcome::LeaseLost { reason } => format!("lease lost: {reason}"),
        },
        other => other.kind().to_string(),
    }
}
