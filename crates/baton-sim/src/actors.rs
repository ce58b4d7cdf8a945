//! What the simulator does in place of real processes: the claim loop's claim, the executor's
//! start check, scripted agent runs, the merge gate and the deploy actor — each mirroring
//! `baton_engine::executor` and `gates::merge` step by step, with git replaced by [`SimForge`] —
//! and the job result fed back through the real `Engine::apply_event`.
//!
//! Every function is an `async fn` over cloned [`Handles`], so the simulator can run several of
//! them interleaved and record what each returned afterwards.

use crate::check::{Kind, Violation};
use crate::clock::SimClock;
use crate::forge::{Passed, SimForge};
use crate::store::SimStore;
use baton_adapters::forge::{Forge, ForgeRepo, MergeOutcome};
use baton_domain::JobId;
use baton_domain::{Actor, Event, GateSpec, GateVerdict, Hold, JobOutcome, StageSpec, TaskId, Verdict};
use baton_engine::gates::merge_lease_name;
use baton_engine::{Clock, Engine, Input, InputOutcome, NewTaskRequest};
use baton_store::{
    Claim, JobFinish, JobRecord, JobStatus, LeaseOutcome, NewEvent, Store, TaskKey, TaskRecord, task_holder,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// How a simulated job ends. Stage actors read it in their own terms (see [`finish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Agents succeed and their gates pass; the merge gate rebases and re-tests green; deploy merges and is healthy.
    Pass,
    /// A gate fails: an agent stage's first automatic gate, the merge re-test, or the deploy health check.
    GateFail,
    /// The actor fails: agent error, rebase conflict in the merge gate, or the deploy command.
    Fail,
    /// The agent ends with questions.
    NeedsInput,
    /// The provider's quota runs out; resets after the given delay when the provider said.
    Quota { resets_in_ms: Option<i64> },
    /// A budget cap stops the agent.
    Budget,
    /// The job never finishes (until Baton is killed).
    Hang,
}

/// An engine protection the copies here mirror (each one fixed a bug this simulation found).
/// A world may remove some, restoring the old behaviour, to prove that the regression test
/// pinning it fails without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protection {
    /// `executor::execute`: the job leaves `running` only after its result is applied, so a
    /// reaper pass cannot re-adopt (and re-run) a job whose result is being applied.
    KeepJobUntilApplied,
    /// `executor::deploy`: merge only the head the last passing merge gate re-tested
    /// (`merge_gate_head`, from the gate verdict's `evidence`).
    MergeOnlyGatePassedHead,
    /// `executor::deploy`: right before merging, the task is still at this job and not terminal.
    DeployRechecksTask,
    /// `SqliteStore::claim_job`: a claim bumps the task version, so a STOP decided on the state
    /// before a deploy claim loses its compare-and-set and re-decides as deferred.
    ClaimBumpsVersion,
    /// `reaper::leases`: only a task whose hold is none or awaiting-confirm keeps the merge lease.
    LeaseOnlyForActiveHolds,
    /// `gates::merge::check`: after taking the lease, the task is still at this job and not
    /// terminal; otherwise the lease is released and the verdict is an error.
    MergeGateRechecksTask,
}

/// A job the current Baton process runs (the engine's `running` map plus what the simulated
/// executor read at start; `task` is `None` until the start check ran).
#[derive(Debug, Clone)]
pub struct Running {
    pub job: JobRecord,
    pub task: Option<TaskRecord>,
    /// Its executor is finishing it (one executor per job: it cannot finish twice).
    pub finishing: bool,
    /// Started by `adopt_orphans` (`Start::Adopt`) rather than a claim.
    pub adopted: bool,
}

/// The jobs the current process's executors watch, shared with in-flight actions.
pub type RunningJobs = Arc<Mutex<BTreeMap<JobId, Running>>>;

/// Jobs whose executor left the running set and is applying the result, and violations seen by
/// actions (checked with the next step).
#[derive(Debug, Default)]
pub struct Process {
    pub delivering: BTreeSet<JobId>,
    pub found: Vec<Violation>,
}

/// The shared pieces every action needs.
#[derive(Clone)]
pub struct Handles {
    pub engine: Arc<Engine>,
    pub store: Arc<SimStore>,
    pub forge: Arc<SimForge>,
    pub clock: Arc<SimClock>,
    pub running: RunningJobs,
    pub process: Arc<Mutex<Process>>,
    /// Protections removed on purpose (empty in real runs).
    pub removed: Arc<BTreeSet<Protection>>,
}

impl Handles {
    fn running(&self) -> MutexGuard<'_, BTreeMap<JobId, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_running(&self, job: JobId) -> bool {
        self.running().contains_key(&job)
    }

    /// Whether the engine protection is in place (it always is, except in a broken variant).
    pub fn protects(&self, protection: Protection) -> bool {
        !self.removed.contains(&protection)
    }

    fn process(&self) -> MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A job result on its way to `Engine::apply_event`.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub task: TaskId,
    pub event: Event,
    pub finish: JobFinish,
}

impl Delivery {
    pub fn job(&self) -> baton_domain::JobId {
        self.finish.job
    }
}

/// What one claim-and-start (or adoption) did.
#[derive(Debug)]
pub enum Claimed {
    Nothing,
    /// The claim call failed (it may have committed: then the job is `running` with no runner).
    Error(String),
    /// The executor found the job stale at start and closed it.
    Stale(JobRecord),
    /// The job runs, with the task as read at start.
    Started(JobRecord, TaskRecord),
    /// Reading the task at start failed; the executor reported the job failed at once.
    StartFailed(JobRecord, Delivery, Result<InputOutcome, String>),
}

/// One claim of the claim loop, then `Engine::start_job` and the executor's start check.
pub async fn claim(h: Handles) -> Claimed {
    let engine = &h.engine;
    let limits = &engine.settings().limits;
    let claim = Claim {
        owner: engine.owner().to_string(),
        now_ms: h.clock.now_ms(),
        running_max: limits.running_max,
        running_per_repo_max: limits.running_per_repo_max,
    };
    match h.store.claim_job(&claim).await {
        Ok(Some(job)) => start(h, job).await,
        Ok(None) => Claimed::Nothing,
        Err(error) => Claimed::Error(error.to_string()),
    }
}

/// `Engine::start_job` + `run_job`'s first lines: register the job as running here, read the
/// task, close the job when it is stale.
pub async fn start(h: Handles, job: JobRecord) -> Claimed {
    start_as(h, job, false).await
}

async fn start_as(h: Handles, job: JobRecord, adopted: bool) -> Claimed {
    {
        let mut running = h.running();
        if running.contains_key(&job.id) {
            return Claimed::Nothing;
        }
        running.insert(job.id, Running { job: job.clone(), task: None, finishing: false, adopted });
    }
    match h.store.task(&TaskKey::Id(job.task_id)).await {
        Ok(Some(task)) if task.state.job == Some(job.id) && !task.state.is_terminal() => {
            if let Some(running) = h.running().get_mut(&job.id) {
                running.task = Some(task.clone());
            }
            // Agent stages re-adopt the recorded exit of the agent (no second agent run); merge
            // gates and deploys run again from the start.
            let reruns = h.engine.pipeline().stage(&job.stage).is_some_and(|s| !matches!(s.actor, Actor::Agent { .. }));
            if reruns && h.process().delivering.contains(&job.id) {
                h.process().found.push(Violation::new(
                    Kind::AdoptedWhileDelivering,
                    format!(
                        "job {} ({}) started a second run while its executor was still applying its result",
                        job.id, job.stage
                    ),
                ));
            }
            Claimed::Started(job, task)
        }
        Ok(_) => {
            h.running().remove(&job.id);
            let _ = h.store.close_job(job.id, JobStatus::Cancelled, serde_json::json!({ "stale": true })).await;
            Claimed::Stale(job)
        }
        Err(error) => {
            h.running().remove(&job.id);
            let delivery = delivery_for(&job, JobOutcome::Failed { reason: error.to_string() });
            let result = deliver(h.clone(), delivery.clone()).await;
            Claimed::StartFailed(job, delivery, result)
        }
    }
}

/// The result the executor would deliver for `job` ending with `outcome`.
pub fn delivery_for(job: &JobRecord, outcome: JobOutcome) -> Delivery {
    let status = match outcome {
        JobOutcome::Failed { .. } => JobStatus::Failed,
        _ => JobStatus::Done,
    };
    let finish = JobFinish { job: job.id, status, result: serde_json::json!({ "outcome": outcome, "sim": true }) };
    Delivery { task: job.task_id, event: Event::JobFinished { job: job.id, stage: job.stage.clone(), outcome }, finish }
}

/// Feeds a job result to the engine, exactly as the executor does.
pub async fn deliver(h: Handles, delivery: Delivery) -> Result<InputOutcome, String> {
    h.engine.apply_event(delivery.task, &delivery.event, Some(delivery.finish), None).await.map_err(|e| e.to_string())
}

/// Runs the rest of a started job under `script` and delivers its result, as `executor::execute`:
/// the job leaves the running set only after its result is applied (`finish_job`, then remove).
/// Returns the delivery (for duplicates) and what the engine answered.
pub async fn finish(h: Handles, job: JobId, script: Script) -> (Option<Delivery>, Result<InputOutcome, String>) {
    let taken = h.running().get_mut(&job).filter(|r| !r.finishing && r.task.is_some()).map(|r| {
        r.finishing = true;
        r.clone()
    });
    let Some(Running { job, task: Some(task), adopted, .. }) = taken else {
        return (None, Err(format!("job {job} is not running in this process")));
    };
    let outcome = match h.engine.pipeline().stage(&job.stage).cloned() {
        None => JobOutcome::Failed { reason: format!("stage `{}` is not in the pipeline", job.stage) },
        Some(stage) => match &stage.actor {
            Actor::Agent { .. } => agent_run(&h, &job, &task, &stage, &script, adopted),
            Actor::None => {
                let verdicts = evaluate_gates(&h, &job, &task, &stage, &script).await;
                JobOutcome::Completed { verdicts }
            }
            Actor::Deploy => match deploy(&h, &job, &task, &script).await {
                Err(reason) => JobOutcome::Failed { reason },
                Ok(()) => JobOutcome::Completed { verdicts: evaluate_gates(&h, &job, &task, &stage, &script).await },
            },
        },
    };
    // As `executor::execute`: the result is applied, and only then is the job no longer ours (a
    // reaper pass before that must not adopt it). The old order is kept for the broken variant.
    let keep = h.protects(Protection::KeepJobUntilApplied);
    if !keep {
        h.running().remove(&job.id);
    }
    h.process().delivering.insert(job.id);
    let delivery = delivery_for(&job, outcome);
    let result = deliver(h.clone(), delivery.clone()).await;
    h.process().delivering.remove(&job.id);
    if keep {
        h.running().remove(&job.id);
    }
    (Some(delivery), result)
}

/// A scripted agent run: it commits on the task branch, then ends as scripted.
///
/// An adopted job whose agent already ran re-adopts that run (`executor::adoptable` finds its
/// recorded exit): no second agent, no new commit.
fn agent_run(
    h: &Handles,
    job: &JobRecord,
    task: &TaskRecord,
    stage: &StageSpec,
    script: &Script,
    adopted: bool,
) -> JobOutcome {
    if !(adopted && h.forge.agent_exited(job.id)) {
        h.forge.commit(task.id, &task.repo);
        h.forge.record_agent_exit(job.id);
    }
    let now = h.clock.now_ms();
    match script {
        Script::Pass | Script::Hang => JobOutcome::Completed { verdicts: automatic_gates(stage, None) },
        Script::GateFail => JobOutcome::Completed { verdicts: automatic_gates(stage, Some(0)) },
        Script::Fail => JobOutcome::Failed { reason: "agent exited 1".into() },
        Script::NeedsInput => JobOutcome::NeedsInput { questions: "Which database?".into() },
        Script::Quota { resets_in_ms } => JobOutcome::QuotaExhausted {
            reason: "usage limit reached".into(),
            resets_at_ms: resets_in_ms.map(|ms| now + ms),
        },
        Script::Budget => JobOutcome::BudgetExceeded { reason: "task cap $1.00 reached".into() },
    }
}

/// Pass verdicts for the stage's automatic gates; the gate at `failing` (if any) fails instead.
fn automatic_gates(stage: &StageSpec, failing: Option<usize>) -> Vec<GateVerdict> {
    stage
        .gates
        .iter()
        .filter(|g| **g != GateSpec::HumanApproval)
        .enumerate()
        .map(|(i, gate)| {
            if Some(i) == failing {
                GateVerdict::new(gate.name(), Verdict::Fail, "scripted failure")
            } else {
                GateVerdict::new(gate.name(), Verdict::Pass, "scripted pass")
            }
        })
        .collect()
}

/// The stage's automatic gates after the actor ran (`gates::evaluate_all`), with the timeline rows.
async fn evaluate_gates(
    h: &Handles,
    job: &JobRecord,
    task: &TaskRecord,
    stage: &StageSpec,
    script: &Script,
) -> Vec<GateVerdict> {
    let mut verdicts = Vec::new();
    for gate in &stage.gates {
        let verdict = match gate {
            GateSpec::HumanApproval => continue,
            GateSpec::Mergeable => merge_gate(h, job, task, script).await,
            GateSpec::DeployStatus if *script == Script::GateFail => {
                GateVerdict::new("deploy_status", Verdict::Fail, "health check failed")
            }
            other => GateVerdict::new(other.name(), Verdict::Pass, "scripted pass"),
        };
        let _ = h
            .store
            .append_event(NewEvent {
                task: task.id,
                at_ms: h.clock.now_ms(),
                kind: "gate".into(),
                stage: stage.name.clone(),
                message: format!("{} {:?}", verdict.gate, verdict.verdict).to_lowercase(),
                detail: serde_json::Value::Null,
            })
            .await;
        verdicts.push(verdict);
    }
    verdicts
}

/// Whether the task is still at `job` and not terminal (read from the store; a failed read counts
/// as "changed", as the engine's `.ok().flatten()`).
async fn still_at(h: &Handles, task: TaskId, job: JobId) -> bool {
    let current = h.store.task(&TaskKey::Id(task)).await.ok().flatten();
    current.is_some_and(|t| t.state.job == Some(job) && !t.state.is_terminal())
}

/// `gates::merge::check`: take the lease (busy → defer), re-check the task, rebase onto main's
/// head, squash, re-test; a pass names the re-tested head as its evidence.
async fn merge_gate(h: &Handles, job: &JobRecord, task: &TaskRecord, script: &Script) -> GateVerdict {
    const GATE: &str = "mergeable";
    let lease = merge_lease_name(&task.repo);
    let ttl_ms = h.engine.settings().limits.lease_ttl_secs as i64 * 1000;
    match h.store.acquire_lease(&lease, &task_holder(task.id), ttl_ms, h.clock.now_ms()).await {
        Ok(LeaseOutcome::Acquired { .. }) => {
            // The task may have been stopped between the claim and the lease: never hold the
            // repo's lease for a task that is no longer running this job.
            if h.protects(Protection::MergeGateRechecksTask) && !still_at(h, task.id, job.id).await {
                let _ = h.store.release_lease(&lease, &task_holder(task.id)).await;
                return GateVerdict::new(GATE, Verdict::Error, "the task changed while the merge gate started");
            }
        }
        Ok(LeaseOutcome::Busy { holder }) => {
            return GateVerdict::new(GATE, Verdict::Defer, format!("merge lease of {} is held by {holder}", task.repo));
        }
        Err(error) => return GateVerdict::new(GATE, Verdict::Error, format!("cannot take the merge lease: {error}")),
    }
    let Some(base) = h.forge.main_head(&task.repo) else {
        return GateVerdict::new(GATE, Verdict::Error, "default branch not found");
    };
    if *script == Script::Fail {
        return GateVerdict::new(GATE, Verdict::Fail, format!("rebase onto {base} conflicts"));
    }
    let head = h.forge.rebase_and_squash(task.id, &base);
    if *script == Script::GateFail {
        return GateVerdict::new(GATE, Verdict::Fail, format!("re-test on top of {base} failed"));
    }
    h.forge.record_passed(&head, Passed { task: task.id, repo: task.repo.clone(), base: base.clone() });
    let mut verdict =
        GateVerdict::new(GATE, Verdict::Pass, format!("rebased onto {base}, squashed to {head} and re-tested"));
    verdict.evidence = Some(head);
    verdict
}

/// `executor::merge_gate_head`: the head the task's last passing merge gate re-tested (from the
/// deploy_staging job's recorded result).
async fn merge_gate_head(h: &Handles, task: TaskId) -> Option<String> {
    let jobs = h.store.jobs_for_task(task).await.ok()?;
    jobs.iter().rev().filter(|j| j.status == JobStatus::Done).find_map(|j| {
        let outcome = j.result.as_ref()?.get("outcome")?.clone();
        let JobOutcome::Completed { verdicts } = serde_json::from_value::<JobOutcome>(outcome).ok()? else {
            return None;
        };
        verdicts.into_iter().find(|v| v.gate == "mergeable" && v.verdict == Verdict::Pass)?.evidence
    })
}

/// `executor::deploy`: renew the lease, check that `HEAD` is the head the merge gate re-tested,
/// re-check the task, fast-forward main from `HEAD^` to `HEAD`, run `deploy`.
async fn deploy(h: &Handles, job: &JobRecord, task: &TaskRecord, script: &Script) -> Result<(), String> {
    let lease = merge_lease_name(&task.repo);
    let ttl_ms = h.engine.settings().limits.lease_ttl_secs as i64 * 1000;
    match h.store.acquire_lease(&lease, &task_holder(task.id), ttl_ms, h.clock.now_ms()).await {
        Ok(LeaseOutcome::Acquired { .. }) => {}
        Ok(LeaseOutcome::Busy { holder }) => {
            return Err(format!("the merge lease of {} is held by {holder}; the merge gate must run again", task.repo));
        }
        Err(error) => return Err(format!("cannot renew the merge lease: {error}")),
    }
    let branch = h.forge.worktree(task.id, &task.repo);
    let head = branch.last().cloned().ok_or("the worktree has no HEAD")?;
    // Merge exactly the head the merge gate re-tested, and nothing else (main is sacred).
    if h.protects(Protection::MergeOnlyGatePassedHead) {
        match merge_gate_head(h, task.id).await {
            Some(passed) if passed == head => {}
            Some(passed) => {
                return Err(format!(
                    "the worktree is at {head}, not at {passed} that the merge gate re-tested; refusing to merge"
                ));
            }
            None => return Err("no merge-gate pass recorded for this task; refusing to merge".into()),
        }
    }
    let base = branch.iter().rev().nth(1).cloned().ok_or("the retested head has no parent")?;
    // The task may have been stopped since this job was claimed: never merge for a cancelled task.
    if h.protects(Protection::DeployRechecksTask) && !still_at(h, task.id, job.id).await {
        return Err("the task changed before the merge; not merging".into());
    }
    let repo = ForgeRepo { name: task.repo.clone(), path: "/nonexistent".into(), default_branch: "main".into() };
    match h.forge.fast_forward(&repo, &base, &head).await {
        Ok(MergeOutcome::Merged) | Ok(MergeOutcome::AlreadyMerged) => {}
        Ok(MergeOutcome::Moved { current }) => {
            return Err(format!("main moved to {current} since the merge gate; refusing to merge (main is sacred)"));
        }
        Err(error) => return Err(format!("merge failed: {error}")),
    }
    if *script == Script::Fail {
        return Err("`deploy` exited 1".into());
    }
    Ok(())
}

/// A human input through `Engine::submit`.
pub async fn submit(h: Handles, task: TaskId, input: Input, key: Option<String>) -> Result<InputOutcome, String> {
    h.engine.submit(&TaskKey::Id(task), input, "sim-human", key).await.map_err(|e| e.to_string())
}

/// A task created through `Engine::create_task`.
pub async fn create(h: Handles, repo: String, number: u32, external_ref: Option<String>) -> Result<TaskRecord, String> {
    let request = NewTaskRequest {
        repo,
        title: format!("Simulated ticket {number}"),
        body: "Generated by baton-sim.".into(),
        external_ref,
    };
    h.engine.create_task(request).await.map_err(|e| e.to_string())
}

/// The claim loop's quota timer.
pub async fn quota_timer(h: Handles) -> Result<u32, String> {
    h.engine.resume_due_quota_pauses().await.map_err(|e| e.to_string())
}

/// Startup recovery of a new Baton process.
pub async fn recover(h: Handles) -> Result<u32, String> {
    h.engine.recover().await.map_err(|e| e.to_string())
}

/// What a reaper pass did.
#[derive(Debug, Default)]
pub struct Reaped {
    pub adopted: Vec<Claimed>,
    pub backstopped: Vec<(JobId, Result<InputOutcome, String>)>,
    pub leases_renewed: u32,
    pub leases_reclaimed: u32,
    pub errors: Vec<String>,
}

/// One pass of `baton_engine::reaper::tick`, copied step by step (its `adopt_orphans` would spawn
/// the real executor, and `backstop`/`leases` are private): re-adopt running jobs no executor of
/// this process watches, fail jobs past the backstop, renew live holders' leases and reclaim the rest.
pub async fn reaper_tick(h: Handles) -> Reaped {
    let mut reaped = Reaped::default();
    match adopt_orphans(h.clone()).await {
        Ok(adopted) => reaped.adopted = adopted,
        Err(error) => reaped.errors.push(format!("adopt: {error}")),
    }
    backstop(&h, &mut reaped).await;
    leases(&h, &mut reaped).await;
    reaped
}

/// `Engine::adopt_orphans`: every running job no executor here watches is started again
/// (`Start::Adopt`; no agent process survives in the simulation, so the stage runs afresh).
pub async fn adopt_orphans(h: Handles) -> Result<Vec<Claimed>, String> {
    let jobs = h.store.jobs_with_status(JobStatus::Running).await.map_err(|e| e.to_string())?;
    let mut adopted = Vec::new();
    for job in jobs {
        if !h.is_running(job.id) {
            h.store.set_job_owner(job.id, h.engine.owner()).await.map_err(|e| e.to_string())?;
            adopted.push(start_as(h.clone(), job, true).await);
        }
    }
    Ok(adopted)
}

async fn backstop(h: &Handles, reaped: &mut Reaped) {
    let Ok(running) = h.store.jobs_with_status(JobStatus::Running).await else {
        return;
    };
    let now = h.clock.now_ms();
    let backstop_ms = h.engine.settings().limits.job_backstop_secs as i64 * 1000;
    for job in running.into_iter().filter(|j| j.started_at_ms.is_some_and(|s| now - s > backstop_ms)) {
        let outcome = JobOutcome::Failed { reason: "ran longer than the backstop; stopped by the reaper".into() };
        let delivery = delivery_for(&job, outcome);
        let result = deliver(h.clone(), delivery).await;
        // `signal_stop` stops an agent, whose executor then reports a stale result; a merge gate or
        // deploy does not watch the signal and runs on. Either way the executor stays.
        reaped.backstopped.push((job.id, result));
    }
}

async fn leases(h: &Handles, reaped: &mut Reaped) {
    let Ok(leases) = h.store.leases().await else {
        return;
    };
    let now = h.clock.now_ms();
    let ttl_ms = h.engine.settings().limits.lease_ttl_secs as i64 * 1000;
    for lease in leases {
        let task = match lease.holder.strip_prefix("task:").and_then(|id| id.parse::<i64>().ok()) {
            Some(id) => h.store.task(&TaskKey::Id(TaskId(id))).await.ok().flatten(),
            None => None,
        };
        // A blocked or paused task must not keep the repo's merges waiting for a human.
        let active_hold = |hold: &Hold| {
            matches!(hold, Hold::None | Hold::AwaitingConfirm) || !h.protects(Protection::LeaseOnlyForActiveHolds)
        };
        let holds_legitimately = task.as_ref().is_some_and(|t| {
            !t.state.is_terminal()
                && active_hold(&t.state.hold)
                && h.engine
                    .pipeline()
                    .stage(&t.state.stage)
                    .is_some_and(|s| s.gates.contains(&GateSpec::Mergeable) || s.actor == Actor::Deploy)
        });
        if holds_legitimately {
            if lease.expires_at_ms - now < ttl_ms / 2
                && matches!(h.store.renew_lease(&lease.name, &lease.holder, ttl_ms, now).await, Ok(true))
            {
                reaped.leases_renewed += 1;
            }
            continue;
        }
        if let Ok(true) = h.store.release_lease(&lease.name, &lease.holder).await {
            reaped.leases_reclaimed += 1;
        }
    }
}

/// The real reconciler pass (`baton_engine::reconciler::tick`).
pub async fn reconciler_tick(h: Handles) {
    baton_engine::reconciler::tick(&h.engine).await;
}
