//! The simulated world: one [`SimStore`], one [`SimForge`], a [`SimClock`], and the current Baton
//! process (a real `Engine` plus the jobs its executor is running). Actions run through the real
//! engine; a kill drops the process and starts a new one over the same store.
//!
//! This is the scripted API the regression tests use directly; [`crate::driver`] chooses actions
//! at random from a seed.

use crate::actors::{self, Claimed, Delivery, Handles, Process, Protection, Reaped, Running, RunningJobs, Script};
use crate::check::{Checker, Ledger, Violation};
use crate::clock::SimClock;
use crate::forge::SimForge;
use crate::rng::Rng;
use crate::sched::{Task, block_on, interleave};
use crate::store::{FaultRates, Mutation, SimStore};
use baton_domain::{JobId, Pipeline, TaskId};
use baton_engine::{Budgets, Clock, Engine, EngineSettings, Input, InputOutcome, Limits, RepoSettings};
use baton_store::{Store, TaskRecord};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// Trace lines kept for a failure report.
pub const TRACE_LINES_MAX: usize = 50;

/// How a simulated world is set up.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub seed: u64,
    pub repos: Vec<String>,
    pub limits: Limits,
    pub faults: FaultRates,
    pub mutation: Mutation,
    /// A restart does not call `Engine::recover` (to prove the zombie test can fail).
    pub skip_recover: bool,
    /// Every Baton process keeps the engine's default owner `pid:<pid>`, as a container whose
    /// Baton is always PID 1 would. Otherwise each process gets its own owner.
    pub reuse_owner: bool,
    /// Engine protections removed on purpose, restoring old bugs (to prove each regression test
    /// can fail); empty in real runs.
    pub removed: Vec<Protection>,
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
            removed: Vec::new(),
        }
    }

    /// The same configuration with `removed` engine protections taken away.
    pub fn without(self, removed: &[Protection]) -> Self {
        WorldConfig { removed: removed.to_vec(), ..self }
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

/// One thing to do through the engine; several may run interleaved.
#[derive(Debug, Clone)]
pub enum Action {
    /// A ticket arrives; `external_ref` is the tracker's id when it came from a tracker.
    Create {
        repo: String,
        external_ref: Option<String>,
    },
    Claim,
    Finish {
        job: JobId,
        script: Script,
    },
    Deliver(Delivery),
    Submit(SentInput),
    QuotaTimer,
    ReaperTick,
    ReconcilerTick,
    /// The action, started only after its future was polled `yields` times (to place it late in
    /// an interleaving: a scripted race whose window opens after several store calls).
    After {
        yields: u32,
        action: Box<Action>,
    },
}

/// What an action returned.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a handful live at a time; boxing would only add noise
pub enum Outcome {
    Created(Result<TaskRecord, String>),
    Claimed(Claimed),
    Finished(JobId, Option<Delivery>, Result<InputOutcome, String>),
    Delivered(Delivery, Result<InputOutcome, String>),
    Submitted(SentInput, Result<InputOutcome, String>),
    Timer(Result<u32, String>),
    Reaper(Reaped),
    Reconciler,
}

/// Counts for the report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub steps: u64,
    pub kills: u64,
    pub claims: u64,
    pub results_applied: u64,
    pub results_suppressed: u64,
    pub inputs_duplicate: u64,
    pub engine_errors: u64,
    pub bursts: u64,
}

/// The simulated world.
pub struct World {
    pub config: WorldConfig,
    pub clock: Arc<SimClock>,
    pub store: Arc<SimStore>,
    pub forge: Arc<SimForge>,
    engine: Arc<Engine>,
    settings: EngineSettings,
    incarnation: u32,
    /// Jobs the current Baton process is running.
    running: RunningJobs,
    process: Arc<Mutex<Process>>,
    removed: Arc<BTreeSet<Protection>>,
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

fn settings_for(config: &WorldConfig) -> EngineSettings {
    let root = PathBuf::from("/nonexistent/baton-sim");
    EngineSettings {
        data_dir: root.join("data"),
        limits: config.limits.clone(),
        repos: config
            .repos
            .iter()
            .map(|name| RepoSettings {
                name: name.clone(),
                // Missing on purpose: the engine skips worktree removal for a missing repository.
                path: root.join(name),
                default_branch: "main".into(),
                prefix: name.to_uppercase(),
                test: None,
                deploy: None,
                health: None,
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
        store.set_claim_bumps_version(!config.removed.contains(&Protection::ClaimBumpsVersion));
        let removed = Arc::new(config.removed.iter().copied().collect());
        let forge =
            Arc::new(SimForge::new(&config.repos, store.clone(), clock.clone(), config.seed, config.faults.per_mille));
        let settings = settings_for(&config);
        let schedule_rng = Rng::fork(config.seed, 0x5C4E);
        let mut world = World {
            engine: Engine::builder(settings.clone(), store.clone()).clock(clock.clone()).build(),
            config,
            clock,
            store,
            forge,
            settings,
            incarnation: 0,
            running: Arc::new(Mutex::new(BTreeMap::new())),
            process: Arc::new(Mutex::new(Process::default())),
            removed,
            schedule_rng,
            ledger: Ledger::default(),
            checker: Checker::default(),
            trace: VecDeque::new(),
            counters: Counters::default(),
            task_numbers: 0,
            echo: false,
        };
        world.engine = world.start_engine();
        world
    }

    /// A new Baton process: a fresh engine (no in-memory state) over the same store, clock and forge.
    fn start_engine(&mut self) -> Arc<Engine> {
        self.incarnation += 1;
        let store: Arc<dyn Store> = self.store.clone();
        let clock: Arc<dyn Clock> = self.clock.clone();
        let mut builder = Engine::builder(self.settings.clone(), store).clock(clock).forge(self.forge.clone());
        if !self.config.reuse_owner {
            builder = builder.owner(format!("sim-process-{}", self.incarnation));
        }
        builder.build()
    }

    pub fn handles(&self) -> Handles {
        Handles {
            engine: self.engine.clone(),
            store: self.store.clone(),
            forge: self.forge.clone(),
            clock: self.clock.clone(),
            running: self.running.clone(),
            process: self.process.clone(),
            removed: self.removed.clone(),
        }
    }

    /// Jobs the current process runs whose executor has passed its start check, oldest first.
    pub fn running_jobs(&self) -> Vec<Running> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.values().filter(|r| r.task.is_some() && !r.finishing).cloned().collect()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn incarnation(&self) -> u32 {
        self.incarnation
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

    pub fn advance_clock(&mut self, ms: i64) {
        self.clock.advance_ms(ms);
        self.note(format!("clock +{:.1}s", ms as f64 / 1000.0));
    }

    fn future(&mut self, action: Action) -> Task<'static, Outcome> {
        let h = self.handles();
        match action {
            Action::Create { repo, external_ref } => {
                self.task_numbers += 1;
                let number = self.task_numbers;
                Box::pin(async move { Outcome::Created(actors::create(h, repo, number, external_ref).await) })
            }
            Action::Claim => Box::pin(async move { Outcome::Claimed(actors::claim(h).await) }),
            Action::Finish { job, script } => Box::pin(async move {
                let (delivery, result) = actors::finish(h, job, script).await;
                Outcome::Finished(job, delivery, result)
            }),
            Action::Deliver(delivery) => Box::pin(async move {
                let result = actors::deliver(h, delivery.clone()).await;
                Outcome::Delivered(delivery, result)
            }),
            Action::Submit(sent) => Box::pin(async move {
                let result = actors::submit(h, sent.task, sent.input.clone(), sent.key.clone()).await;
                Outcome::Submitted(sent, result)
            }),
            Action::QuotaTimer => Box::pin(async move { Outcome::Timer(actors::quota_timer(h).await) }),
            Action::ReaperTick => Box::pin(async move { Outcome::Reaper(actors::reaper_tick(h).await) }),
            Action::ReconcilerTick => Box::pin(async move {
                actors::reconciler_tick(h).await;
                Outcome::Reconciler
            }),
            Action::After { yields, action } => {
                let later = self.future(*action);
                Box::pin(async move {
                    for _ in 0..yields {
                        crate::sched::yield_once().await;
                    }
                    later.await
                })
            }
        }
    }

    /// Runs one action to completion.
    pub fn act(&mut self, action: Action) -> Outcome {
        self.run(vec![action]).pop().expect("one action yields one outcome")
    }

    /// Runs actions concurrently, their store calls interleaved in a seeded order.
    pub fn run(&mut self, actions: Vec<Action>) -> Vec<Outcome> {
        let concurrent = actions.len() > 1;
        let futures: Vec<_> = actions.into_iter().map(|a| self.future(a)).collect();
        let outcomes = if concurrent {
            self.counters.bursts += 1;
            self.store.set_interleaving(true);
            let outcomes = interleave(futures, &mut self.schedule_rng);
            self.store.set_interleaving(false);
            outcomes
        } else {
            futures.into_iter().map(block_on).collect()
        };
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
            Outcome::Claimed(claimed) => self.record_claim(claimed, "claimed"),
            Outcome::Finished(job, delivery, result) => {
                self.count_result(Some(*job), result);
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
            Outcome::Reaper(reaped) => {
                let mut parts = Vec::new();
                for adopted in &reaped.adopted {
                    parts.push(self.record_claim(adopted, "adopted"));
                }
                for (job, result) in &reaped.backstopped {
                    self.count_result(Some(*job), result);
                    parts.push(format!("backstop failed job {job}: {}", show(result)));
                }
                if reaped.leases_renewed + reaped.leases_reclaimed > 0 {
                    parts.push(format!(
                        "leases renewed {} reclaimed {}",
                        reaped.leases_renewed, reaped.leases_reclaimed
                    ));
                }
                parts.extend(reaped.errors.iter().cloned());
                format!("reaper: [{}]", parts.join("; "))
            }
            Outcome::Reconciler => "reconciler pass".into(),
            Outcome::Timer(result) => match result {
                Ok(n) => format!("quota timer resumed {n}"),
                Err(e) => {
                    self.counters.engine_errors += 1;
                    format!("quota timer failed: {e}")
                }
            },
        }
    }

    fn record_claim(&mut self, claimed: &Claimed, verb: &str) -> String {
        match claimed {
            Claimed::Nothing => format!("{verb}: nothing runnable"),
            Claimed::Error(e) => {
                self.counters.engine_errors += 1;
                format!("{verb}: claim failed: {e}")
            }
            Claimed::Stale(job) => format!("{verb} job {} ({}) but it was stale: closed", job.id, job.stage),
            Claimed::Started(job, task) => {
                self.counters.claims += 1;
                format!("{verb} job {} of task {} ({} attempt {})", job.id, task.id, job.stage, job.attempt)
            }
            Claimed::StartFailed(job, _, result) => {
                self.count_result(Some(job.id), result);
                format!("{verb} job {} but reading its task failed; reported: {}", job.id, show(result))
            }
        }
    }

    /// Kills Baton (its executors die with it) and starts a new process, which recovers
    /// (`Engine::recover`, then `adopt_orphans`, as `Engine::run` begins). When both succeeded,
    /// no job may be left running without an executor.
    pub fn kill_and_restart(&mut self) -> Vec<Violation> {
        self.counters.kills += 1;
        self.running = Arc::new(Mutex::new(BTreeMap::new()));
        let found = std::mem::take(&mut self.process.lock().unwrap_or_else(PoisonError::into_inner).found);
        self.process = Arc::new(Mutex::new(Process { found, ..Process::default() }));
        self.engine = self.start_engine();
        if self.config.skip_recover {
            self.note(format!("killed Baton; process {} started WITHOUT recovery", self.incarnation));
        } else {
            let recovered = block_on(actors::recover(self.handles()));
            self.note(format!("killed Baton; process {} recovered: {recovered:?}", self.incarnation));
            let adopted = block_on(actors::adopt_orphans(self.handles()));
            match &adopted {
                Ok(adopted) => {
                    for claimed in adopted {
                        let line = self.record_claim(claimed, "adopted");
                        self.note(line);
                    }
                }
                Err(error) => self.note(format!("adopting orphans failed: {error}")),
            }
            let failed = |c: &Claimed| matches!(c, Claimed::Error(_) | Claimed::StartFailed(..));
            if recovered.is_err() || adopted.as_ref().map_or(true, |a| a.iter().any(failed)) {
                return Vec::new();
            }
        }
        let watched: Vec<JobId> = self.running.lock().unwrap_or_else(PoisonError::into_inner).keys().copied().collect();
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
            Outcome::Claimed(Claimed::Started(job, _)) => Some(job.id),
            _ => None,
        }
    }

    /// Finishes a running job with `script` and returns what the engine answered.
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

    /// Checks the invariants now; all violations found.
    pub fn check(&mut self) -> Vec<Violation> {
        let mut found = self.forge.take_violations();
        found.append(&mut self.process.lock().unwrap_or_else(PoisonError::into_inner).found);
        found.extend(self.checker.check(&self.store, &self.ledger, self.clock.now_ms()));
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
                baton_domain::Hold::None => None,
            };
            if let Some(input) = input {
                let _ = self.submit(task, input, None);
                continue;
            }
            // Any running job: at concurrency 1 another task's job may hold the only slot.
            if let Some(job) = self.running_jobs().first().map(|r| r.job.id) {
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

fn show(result: &Result<InputOutcome, String>) -> String {
    match result {
        Ok(InputOutcome::Applied { note }) => format!("applied: {note}"),
        Ok(InputOutcome::Suppressed { reason }) => format!("suppressed: {reason}"),
        Ok(InputOutcome::Duplicate) => "duplicate".into(),
        Err(e) => format!("ERROR {e}"),
    }
}

fn outcome_name(event: &baton_domain::Event) -> String {
    match event {
        baton_domain::Event::JobFinished { outcome, .. } => match outcome {
            baton_domain::JobOutcome::Completed { verdicts } => {
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
            baton_domain::JobOutcome::NeedsInput { .. } => "needs input".into(),
            baton_domain::JobOutcome::Failed { reason } => format!("failed: {reason}"),
            baton_domain::JobOutcome::BudgetExceeded { .. } => "budget".into(),
            baton_domain::JobOutcome::QuotaExhausted { .. } => "quota".into(),
            baton_domain::JobOutcome::Infrastructure { reason } => format!("infrastructure: {reason}"),
        },
        other => other.kind().to_string(),
    }
}
