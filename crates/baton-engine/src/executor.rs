//! Runs one claimed job: prepares the worktree, runs the stage's actor (agent or deploy),
//! commits the work, evaluates the gates, and returns the job's outcome; [`execute`] feeds it back
//! as a `JobFinished` event.
//!
//! Everything external goes through the engine's ports (store, clock, vcs, supervisor, commands,
//! agents, forge). Every process runs under `baton shim` with a run directory that records the
//! intent, the launch and the exit, so a job re-adopted after a crash waits for what survives or
//! takes its recorded exit and never starts a second agent or a second deploy.

use crate::EngineError;
use crate::budgets;
use crate::engine::{Engine, InputOutcome, forge_repo};
use crate::features::Feature;
use crate::gates::{self, GateContext, RepoCommand, artifact_relative_path};
use crate::hooks::{self, Hook, HookSite};
use crate::prompts::{self, ArtifactText, PromptContext, PromptTask};
use crate::sandbox::Confinement;
use crate::settings::{AgentSettings, RepoSettings};
use crate::workspace::worktree_path;
use baton_adapters::agent::{Agent, AgentRequest, LiveProgress};
use baton_adapters::forge::MergeOutcome;
use baton_domain::{Actor, AgentReport, AgentStatus, Event, GateVerdict, JobId, JobOutcome, StageSpec, Verdict};
use baton_runner::{LaunchRecord, Previous, Provenance, RunLimits};
use baton_store::{
    AgentRunFinish, JobFinish, JobRecord, JobStatus, LeaseOutcome, NewAgentRun, NewEvent, TaskKey, TaskRecord,
    task_holder,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How often a running agent's job row is checked for a STOP from another process.
const STOP_POLL_MS: u64 = 500;
/// How often a running agent's output is read for progress and budget checks.
const MONITOR_TICK_MS: u64 = 200;
/// Progress notes recorded per tick at most (a chatty agent must not flood the timeline).
const PROGRESS_NOTES_PER_TICK_MAX: usize = 20;
/// Bytes of an earlier artifact included in a prompt.
const ARTIFACT_PROMPT_BYTES_MAX: usize = 20_000;
/// Environment variables every agent and repo command gets (when set), before pass-through.
const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM"];

/// How a job comes to this executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Freshly claimed: run the stage.
    Fresh,
    /// Running when a previous Baton died (or its executor vanished): re-adopt what it started
    /// (wait for it, or take its recorded result) instead of starting it a second time.
    Adopt,
}

/// The job being run, with the engine whose ports it uses.
struct JobContext<'a> {
    engine: &'a Engine,
    task: &'a TaskRecord,
    job: &'a JobRecord,
    repo: &'a RepoSettings,
    stage: &'a StageSpec,
    worktree: PathBuf,
    run_dir: PathBuf,
    env: Vec<(String, String)>,
    external_ms: &'a AtomicU64,
    stop: watch::Receiver<bool>,
    start: Start,
    /// The attempt's free loopback port (`BATON_PORT`), the same for its hooks and its agent.
    port: Option<u16>,
}

impl JobContext<'_> {
    /// The variables naming the task to hooks and agents ([`hooks::task_env`]).
    fn task_env(&self) -> Vec<(String, String)> {
        hooks::task_env(self.task, &self.stage.name, &self.worktree, self.port)
    }

    /// Runs one workspace hook of this job (`Err`: a hook that fails the attempt failed).
    async fn hook(&self, hook: Hook) -> Result<(), String> {
        let mut env = minimal_env(self.engine);
        env.extend(self.task_env());
        let site = HookSite {
            task: self.task,
            repo: self.repo,
            stage: &self.stage.name,
            worktree: &self.worktree,
            runs_under: self.run_dir.clone(),
            owner: format!("job:{}", self.job.id),
            env,
            stop: self.stop.clone(),
        };
        timed(self, hooks::run(self.engine, &site, hook)).await
    }

    /// The narrow view gates and the deploy step get.
    fn gates(&self) -> GateContext<'_> {
        GateContext {
            store: self.engine.store().as_ref(),
            clock: self.engine.clock().as_ref(),
            vcs: self.engine.vcs().as_ref(),
            commands: self.engine.commands().as_ref(),
            forge: self.engine.forge().as_ref(),
            pipeline: self.engine.pipeline_for(&self.task.repo),
            task: self.task,
            job: self.job,
            repo: self.repo,
            stage: self.stage,
            worktree: &self.worktree,
            run_dir: &self.run_dir,
            env: &self.env,
            limits: &self.engine.settings().limits,
            external_ms: self.external_ms,
            stop: self.stop.clone(),
            queues: self.engine.queues(),
            features: self.engine.features(),
        }
    }
}

/// The environment of repository commands: the minimal set, pass-through, and the task's names.
fn repo_env(engine: &Engine, task: &TaskRecord) -> Vec<(String, String)> {
    let mut env = minimal_env(engine);
    env.push(("BATON_WORK_ITEM".into(), task.work_item_id.clone()));
    env.push(("BATON_REPO".into(), task.repo.clone()));
    env.push(("BATON_BRANCH".into(), task.branch.clone()));
    env
}

/// The minimal environment for agents and repo commands: a fixed allowlist plus pass-through.
pub fn minimal_env(engine: &Engine) -> Vec<(String, String)> {
    BASE_ENV
        .iter()
        .map(|name| name.to_string())
        .chain(engine.settings().env_passthrough.iter().cloned())
        .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
        .collect()
}

/// Executes `job` and applies its result. Never panics; failures become `JobOutcome::Failed`, or
/// `JobOutcome::Infrastructure` when the machine rather than the code failed.
/// The caller has registered the job in `engine.running` (with the sender of `stop`).
pub async fn execute(engine: Arc<Engine>, job: JobRecord, stop_rx: watch::Receiver<bool>, start: Start) {
    let started = engine.clock().now_ms();
    let external_ms = AtomicU64::new(0);
    let mut worktree = None;
    let outcome = run_job(&engine, &job, &external_ms, stop_rx, start, &mut worktree).await;
    // An adoption that failed before it could watch what it adopted (a store read, the agent's
    // configuration) ends the job: what the earlier Baton started must not run on beside the
    // job's next attempt, unwatched.
    if start == Start::Adopt && outcome.is_err() {
        stop_what_was_adopted(&engine, &job).await;
    }
    let touched_git = !matches!(outcome, Ok(None));
    // Only an agent moves the branch away from the default branch (its commit); a gates-only stage
    // leaves the last job's diff stat true, and after a deploy the branch is on the default branch
    // (nothing to count: the dashboard keeps showing the change's last stat).
    let moves_branch = engine
        .pipeline_for(&job.repo)
        .stage(&job.stage)
        .is_some_and(|stage| matches!(stage.actor, Actor::Agent { .. }));
    let diff_stat = match worktree {
        Some(worktree) if touched_git && moves_branch => diff_stat(&engine, &job.repo, &worktree).await,
        _ => None,
    };
    let advanced = finish_job(&engine, &job, outcome, started, &external_ms, diff_stat).await;
    // A task that ended while this job ran had its worktree and branch removed by its own
    // cleanup; this job may have re-created them since. Leave nothing behind. When the job's own
    // result moved the task, the task had not ended before it, and an end it reached by that very
    // transition carries its own clean-up (leases, worktree), which runs after this job's git work:
    // nothing to read then.
    if touched_git
        && !advanced
        && let Ok(Some(task)) = engine.store().task(&TaskKey::Id(job.task_id)).await
        && task.state.is_terminal()
    {
        crate::effects::clean_up_ended(&engine, &task).await;
    }
    // Only now is the job no longer ours: a reaper pass before this point must not adopt it.
    if let Ok(mut running) = engine.running.lock() {
        running.remove(&job.id);
    }
    engine.job_left(job.id);
}

/// Stops the process group an earlier Baton started for `job`, if it still runs.
async fn stop_what_was_adopted(engine: &Engine, job: &JobRecord) {
    match live_group(engine, job).await {
        Ok(Some(pgid)) => {
            tracing::warn!(job = %job.id, stage = %job.stage, pgid, "the adoption failed: stopping the process group it adopted");
            let grace = Duration::from_secs(engine.settings().limits.stop_grace_secs);
            engine.supervisor().stop_group(pgid, grace).await;
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(job = %job.id, "the adoption failed, and what it adopted cannot be found: {error}")
        }
    }
}

/// The process group `job` still has running, wherever it is named: on the job row (while that
/// group is still the one started for it); in the shim's launch record of the job's last agent
/// run (a Baton killed before the row took the group); or, for a deploy job, in the run directory
/// of the deploy command it started (keyed by the head its `merged` event records, and never on
/// the job row; no deploy runs before that event is written). What the reaper's backstop and a
/// failed adoption stop before the job's end is recorded. `Err` when the store could not be read:
/// that says nothing about whether a group runs, so the job's end must not be recorded on it (read
/// as "none", a deploy ran on after the reaper recorded its job's end, and a change landed under
/// it: seed 77003305).
pub(crate) async fn live_group(engine: &Engine, job: &JobRecord) -> Result<Option<u32>, String> {
    let supervisor = engine.supervisor();
    if let Some(pgid) = job.pgid.filter(|pgid| supervisor.is_same_group(*pgid, job.proc_start)) {
        return Ok(Some(pgid));
    }
    let runs = engine.store().agent_runs(job.task_id).await.map_err(|e| format!("cannot read the agent runs: {e}"))?;
    if let Some(run) = runs.iter().rev().find(|r| r.job_id == job.id)
        && let Previous::Running(launch) = supervisor.previous(Path::new(&run.log_path))
    {
        return Ok(Some(launch.pgid));
    }
    let deploys = engine.pipeline_for(&job.repo).stage(&job.stage).is_some_and(|s| s.actor == Actor::Deploy);
    if !deploys {
        return Ok(None);
    }
    let merges = merges_by_job(engine, job.task_id, job.id).await.ok_or("cannot read the task's timeline")?;
    let Some((head, _)) = merges.last() else { return Ok(None) };
    Ok(match engine.commands().previous(&repo_deploy_run_dir(engine, &job.repo, head)) {
        Previous::Running(launch) => Some(launch.pgid),
        _ => None,
    })
}

/// What the task's branch in `worktree` changes relative to `repo`'s default branch, after this
/// job (the dashboard's diff stat); `None` when the worktree is gone or nothing changed.
async fn diff_stat(engine: &Engine, repo: &str, worktree: &Path) -> Option<String> {
    let repo = engine.settings().repo(repo)?;
    if !engine.vcs().exists(worktree) {
        return None;
    }
    engine.vcs().diff_stat(worktree, &repo.default_ref()).await
}

/// Applies the job's outcome through the normal transition (or closes a stale job); `true` when
/// that transition committed (the task moved on this job's result).
async fn finish_job(
    engine: &Arc<Engine>,
    job: &JobRecord,
    outcome: Result<Option<JobOutcome>, EngineError>,
    started_ms: i64,
    external_ms: &AtomicU64,
    diff_stat: Option<String>,
) -> bool {
    // Declared dead while it ran (a stopped process, a suspended machine), this instance had the
    // job taken over: it is another instance's to run and end now, not ours to close or finish.
    if taken_away(engine, job.id).await {
        tracing::warn!(job = %job.id, stage = %job.stage, "the job was taken over by another instance meanwhile; leaving it to that instance");
        return false;
    }
    let outcome = match outcome {
        Ok(Some(outcome)) => outcome,
        Ok(None) => {
            let stale = JobFinish {
                job: job.id,
                status: JobStatus::Cancelled,
                result: serde_json::json!({ "stale": true }),
                claimed_by: Some(engine.owner().to_string()),
            };
            let _ = engine.close_job_under_claim(&stale, JobStatus::Cancelled, engine.clock().now_ms()).await;
            return false;
        }
        Err(error) if error.is_infrastructure() => JobOutcome::Infrastructure { reason: error.to_string() },
        Err(error) => JobOutcome::Failed { reason: error.to_string() },
    };
    let wall_ms = (engine.clock().now_ms() - started_ms).max(0) as u64;
    let external = external_ms.load(Ordering::Relaxed).min(wall_ms);
    let status = match outcome {
        JobOutcome::Failed { .. } | JobOutcome::Infrastructure { .. } => JobStatus::Failed,
        _ => JobStatus::Done,
    };
    let finish = JobFinish {
        job: job.id,
        status,
        result: serde_json::json!({
            "outcome": outcome,
            "wall_ms": wall_ms,
            "external_ms": external,
            "overhead_ms": wall_ms - external,
            "diff_stat": diff_stat,
        }),
        claimed_by: Some(engine.owner().to_string()),
    };
    let event = Event::JobFinished { job: job.id, stage: job.stage.clone(), outcome };
    match engine.apply_event(job.task_id, &event, Some(finish), None).await {
        Ok(outcome) => matches!(outcome, InputOutcome::Applied { .. }),
        Err(error) => {
            tracing::error!(job = %job.id, "applying the result of job failed: {error}");
            false
        }
    }
}

/// Runs `work` (git, a process), counting its time as external work.
async fn timed<T>(ctx: &JobContext<'_>, work: impl std::future::Future<Output = T>) -> T {
    let clock = ctx.engine.clock();
    let started = clock.now_ms();
    let result = work.await;
    ctx.external_ms.fetch_add((clock.now_ms() - started).max(0) as u64, Ordering::Relaxed);
    result
}

/// Runs the job; `worktree_used` gets the task's worktree once the job knows it (the diff stat
/// after the job reads it there, without reading the task again).
async fn run_job(
    engine: &Engine,
    job: &JobRecord,
    external_ms: &AtomicU64,
    stop: watch::Receiver<bool>,
    start: Start,
    worktree_used: &mut Option<PathBuf>,
) -> Result<Option<JobOutcome>, EngineError> {
    let Some(task) = engine.store().task(&TaskKey::Id(job.task_id)).await? else {
        return Ok(None);
    };
    if task.state.job != Some(job.id) || task.state.is_terminal() {
        return Ok(None);
    }
    let settings = engine.settings();
    let repo = settings
        .repo(&task.repo)
        .ok_or_else(|| EngineError::Invalid(format!("repository `{}` is no longer configured", task.repo)))?;
    let stage = engine
        .pipeline_for(&task.repo)
        .stage(&job.stage)
        .ok_or_else(|| EngineError::Invalid(format!("stage `{}` is not in the pipeline", job.stage)))?;
    let worktree = worktree_path(&settings.worktrees_dir(), &task.repo, &task.work_item_id)?;
    *worktree_used = Some(worktree.clone());
    let run_dir = job_run_dir(&settings.runs_dir(), &task.work_item_id, &job.stage, job.id);
    let ctx = JobContext {
        engine,
        task: &task,
        job,
        repo,
        stage,
        worktree,
        run_dir,
        env: repo_env(engine, &task),
        external_ms,
        stop,
        start,
        // Not finding a free port is no reason to fail the attempt: hooks and agent go without.
        port: baton_runner::net::free_local_port()
            .inspect_err(|error| tracing::warn!(task = %task.work_item_id, "no free port for BATON_PORT: {error}"))
            .ok(),
    };
    // A `url` repository: Baton's clone is created on first use and fetched before a new worktree,
    // and before every job of a task that ran on another instance too (which pushes the task
    // branch there): the branch is taken up from the remote when another instance pushed to it
    // since this one did, so the work continues where it was left.
    if let Some(remote) = repo.remote() {
        let elsewhere = ran_elsewhere(engine, &task, job.id).await;
        if elsewhere || !engine.vcs().exists(&ctx.worktree) {
            timed(&ctx, engine.vcs().sync_remote(&repo.path, &remote, &repo.default_branch)).await?;
        }
        if elsewhere {
            timed(&ctx, engine.vcs().take_branch(&repo.path, &remote, &ctx.worktree, &task.branch)).await?;
        }
    }
    let created = !engine.vcs().exists(&ctx.worktree);
    timed(&ctx, engine.vcs().ensure_worktree(&repo.path, &ctx.worktree, &task.branch, &repo.default_ref())).await?;
    // A re-adopted agent's uncommitted work must survive; every other start cleans leftovers.
    let adopting_agent = start == Start::Adopt && matches!(stage.actor, Actor::Agent { .. });
    if !adopting_agent {
        timed(&ctx, engine.vcs().clean(&ctx.worktree)).await?;
    }
    if created && let Err(reason) = ctx.hook(Hook::AfterCreate).await {
        // The next attempt creates the worktree afresh and runs the hook again (the branch and
        // its commits stay).
        if let Err(error) = timed(&ctx, engine.vcs().remove_worktree(&repo.path, &ctx.worktree)).await {
            tracing::warn!(task = %task.work_item_id, "removing the worktree after a failed after_create: {error}");
        }
        return Ok(Some(JobOutcome::Failed { reason }));
    }
    let mut shipped = None;
    match &stage.actor {
        Actor::Agent { role } => {
            let run = run_agent(&ctx, role).await?;
            // Nor does a run stopped because the job was taken away commit or push: the branch is
            // the new claimant's to move.
            if taken_away(engine, job.id).await {
                return Ok(None);
            }
            if let Some(reason) = run.hook_failure {
                return Ok(Some(JobOutcome::Failed { reason }));
            }
            let message = format!("{} {}: {role} run", task.work_item_id, stage.name);
            let private_objects = crate::sandbox::written_private_objects(&ctx.run_dir);
            timed(&ctx, engine.vcs().commit_all(&ctx.worktree, &message, private_objects.as_deref())).await?;
            if let Some(reason) = push_task_branch(&ctx).await {
                return Ok(Some(JobOutcome::Failed { reason }));
            }
            if let Some(reason) = run.budget_stop {
                return Ok(Some(JobOutcome::BudgetExceeded { reason }));
            }
            match run.report.status {
                // The agent could not write its work because the machine failed (a full disk):
                // not the code's fault, and nothing for the next prompt.
                AgentStatus::Failed { message } if baton_runner::is_infrastructure(&message) => {
                    return Ok(Some(JobOutcome::Infrastructure { reason: message }));
                }
                AgentStatus::Failed { message } => return Ok(Some(JobOutcome::Failed { reason: message })),
                AgentStatus::NeedsInput { questions } => return Ok(Some(JobOutcome::NeedsInput { questions })),
                AgentStatus::QuotaExhausted { message, resets_at_ms } => {
                    return Ok(Some(JobOutcome::QuotaExhausted { reason: message, resets_at_ms }));
                }
                AgentStatus::Succeeded => {}
            }
        }
        Actor::Deploy => match deploy(&ctx).await {
            Err(Refused::LeaseLost(reason)) => return Ok(Some(JobOutcome::LeaseLost { reason })),
            Err(Refused::Wait(reason)) => {
                let verdicts = vec![GateVerdict::new(baton_domain::MERGED_VERDICT, Verdict::Defer, reason)];
                return Ok(Some(JobOutcome::Completed { verdicts }));
            }
            Err(Refused::Landed { reason, head }) => {
                let mut waits = GateVerdict::new(baton_domain::MERGED_VERDICT, Verdict::Defer, reason);
                waits.evidence = Some(head);
                return Ok(Some(JobOutcome::Completed { verdicts: vec![waits] }));
            }
            Err(Refused::Machine(reason)) => return Ok(Some(JobOutcome::Infrastructure { reason })),
            Err(Refused::Other(reason)) if gates::is_infrastructure(&reason) => {
                return Ok(Some(JobOutcome::Infrastructure { reason }));
            }
            Err(Refused::Other(reason)) => return Ok(Some(JobOutcome::Failed { reason })),
            // The default branch holds the change now: the verdicts say so, whatever follows.
            Ok(Deployed { merged, failed: Some(failed) }) => {
                let verdicts = vec![merged, failed];
                record_verdicts(engine, &task, stage, &verdicts).await;
                return Ok(Some(JobOutcome::Completed { verdicts }));
            }
            Ok(Deployed { merged, failed: None }) => shipped = Some(merged),
        },
        Actor::None => {}
    }
    let mut verdicts: Vec<GateVerdict> = shipped.into_iter().collect();
    let gates = switched_on_gates(&ctx).await;
    verdicts.extend(gates::evaluate_all(&ctx.gates(), &gates).await);
    verdicts.extend(landed_with_batch(&ctx, &verdicts).await);
    record_verdicts(engine, &task, stage, &verdicts).await;
    // A retro whose gates passed: its proposals are recorded before the task reaches done, so
    // the hand-off written then lists them (idempotently: a retried job records nothing twice).
    if stage.after_ship
        && matches!(&stage.actor, Actor::Agent { role } if role == crate::retro::ROLE)
        && verdicts.iter().all(|v| v.verdict == Verdict::Pass)
    {
        let path = stage.artifact.as_deref().map(|name| artifact_relative_path(&task.work_item_id, name));
        let text = match path {
            Some(path) => timed(&ctx, engine.vcs().read_file(&ctx.worktree, &path)).await,
            None => None,
        };
        crate::retro::record(engine, &task, &stage.name, text.as_deref()).await;
    }
    // The merge gate rewrites the task branch (rebased, squashed): the remote gets it too, so the
    // instance that runs the next job (the deploy) finds exactly the head that was re-tested.
    if matches!(stage.actor, Actor::None)
        && let Some(reason) = push_task_branch(&ctx).await
    {
        return Ok(Some(JobOutcome::Failed { reason }));
    }
    // A gate that failed because the machine did (a full disk in the merge gate's rebase, a git
    // lock) says nothing about the code: retry the stage without spending an attempt or a rollback.
    let broken = verdicts.iter().find(|v| {
        v.verdict != Verdict::Pass && v.gate != baton_domain::MERGED_VERDICT && gates::is_infrastructure(&v.reason)
    });
    if let Some(broken) = broken
        && verdicts.iter().all(|v| v.gate != baton_domain::MERGED_VERDICT)
    {
        return Ok(Some(JobOutcome::Infrastructure {
            reason: format!("{}: {}", broken.gate, first_line(&broken.reason)),
        }));
    }
    Ok(Some(JobOutcome::Completed { verdicts }))
}

/// Whether a job of the task other than `job` ran on another instance: then its newest work may
/// be on the remote, not in this instance's clone.
async fn ran_elsewhere(engine: &Engine, task: &TaskRecord, job: baton_domain::JobId) -> bool {
    let Ok(jobs) = engine.store().jobs_for_task(task.id).await else {
        return false;
    };
    jobs.iter().filter(|j| j.id != job).filter_map(|j| j.owner.as_deref()).any(|owner| owner != engine.owner())
}

/// Pushes the task branch of a `url` repository (with a lease on what Baton pushed last). An
/// unreachable remote only leaves a warning: the work is in Baton's clone and the next push
/// carries it. `Some(reason)`: the push was refused (someone else pushed to the branch).
async fn push_task_branch(ctx: &JobContext<'_>) -> Option<String> {
    let (engine, repo) = (ctx.engine, ctx.repo);
    let remote = repo.remote().filter(|_| repo.pushes())?;
    let pushed = timed(ctx, engine.vcs().push_branch(&repo.path, &remote, &ctx.task.branch, &repo.default_branch));
    let error = pushed.await.err()?.to_string();
    if baton_runner::is_infrastructure(&error) {
        let _ = engine
            .store()
            .append_event(NewEvent {
                task: ctx.task.id,
                at_ms: engine.clock().now_ms(),
                kind: "warning".into(),
                stage: ctx.stage.name.clone(),
                message: format!(
                    "pushing {} failed; the next push carries it: {}",
                    ctx.task.branch,
                    first_line(&error)
                ),
                detail: serde_json::Value::Null,
            })
            .await;
        return None;
    }
    Some(error)
}

/// The stage's gates that are switched on for the task's repository (`[features]`); each one
/// switched off is recorded on the timeline as skipped, never dropped silently.
async fn switched_on_gates(ctx: &JobContext<'_>) -> Vec<baton_domain::GateSpec> {
    let features = ctx.engine.features();
    let mut on = Vec::new();
    for gate in &ctx.stage.gates {
        match Feature::of_gate(gate) {
            Some(feature) if !features.enabled(feature, &ctx.repo.name) => {
                let _ = ctx
                    .engine
                    .store()
                    .append_event(NewEvent {
                        task: ctx.task.id,
                        at_ms: ctx.engine.clock().now_ms(),
                        kind: "gate_skipped".into(),
                        stage: ctx.stage.name.clone(),
                        message: format!(
                            "{} skipped: switched off for {} ([features] {})",
                            gate.name(),
                            ctx.repo.name,
                            feature.name()
                        ),
                        detail: serde_json::json!({ "gate": gate.name(), "feature": feature.name() }),
                    })
                    .await;
            }
            _ => on.push(gate.clone()),
        }
    }
    on
}

/// Records each verdict on the task's timeline.
async fn record_verdicts(engine: &Engine, task: &TaskRecord, stage: &StageSpec, verdicts: &[GateVerdict]) {
    for verdict in verdicts {
        let _ = engine
            .store()
            .append_event(NewEvent {
                task: task.id,
                at_ms: engine.clock().now_ms(),
                kind: "gate".into(),
                stage: stage.name.clone(),
                // Only the verdict's name is lower-cased: the reason keeps its case (paths, work
                // items, output are case-sensitive facts).
                message: format!(
                    "{} {}: {}",
                    verdict.gate,
                    format!("{:?}", verdict.verdict).to_lowercase(),
                    first_line(&verdict.reason)
                ),
                detail: serde_json::to_value(verdict).unwrap_or_default(),
            })
            .await;
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The environment the agent `agent` (as resolved for the stage) gets: the engine's minimal set,
/// the task's ids and `BATON_PORT`, the agent's own pass-through names and its API key variable. Nothing else of Baton's environment reaches it.
fn agent_env(engine: &Engine, agent: Option<&AgentSettings>, ctx: &JobContext<'_>) -> Vec<(String, String)> {
    let mut env = minimal_env(engine);
    // The task's ids and the attempt's port; the adapters add the run's own context variables
    // (`BATON_WORK_ITEM`, `BATON_STAGE`, `BATON_ATTEMPT`, …) themselves.
    let own = ["BATON_WORK_ITEM", "BATON_STAGE", "BATON_ATTEMPT"];
    env.extend(ctx.task_env().into_iter().filter(|(name, _)| !own.contains(&name.as_str())));
    if let Some(settings) = agent {
        let names = settings.env.iter().chain(settings.api_key_env.iter());
        for name in names {
            if let Ok(value) = std::env::var(name)
                && !env.iter().any(|(k, _)| k == name)
            {
                env.push((name.clone(), value));
            }
        }
    }
    env
}

/// Cost of `usage` on `model` from the pricing table in force (the built-in one, or a user's file
/// laid over it); `None` (unpriced) for an unknown model.
pub fn price(engine: &Engine, model: Option<&str>, usage: &baton_domain::Usage) -> Option<f64> {
    let model = model?;
    let priced = engine.prices().cost_usd(model, usage)?;
    if priced.how == baton_domain::pricing::MatchKind::Prefix {
        tracing::info!(model, matched = %priced.matched_id, "priced by longest prefix");
    }
    Some(priced.usd)
}

/// The earlier artifacts of this task, in file-name order.
async fn earlier_artifacts(ctx: &JobContext<'_>) -> Vec<ArtifactText> {
    let vcs = ctx.engine.vcs();
    let dir = format!("docs/baton/{}", ctx.task.work_item_id);
    let mut artifacts = Vec::new();
    for name in vcs.list_dir(&ctx.worktree, &dir).await {
        let Some(mut content) = vcs.read_file(&ctx.worktree, &format!("{dir}/{name}")).await else {
            continue;
        };
        if content.len() > ARTIFACT_PROMPT_BYTES_MAX {
            let mut cut = ARTIFACT_PROMPT_BYTES_MAX;
            while !content.is_char_boundary(cut) {
                cut -= 1;
            }
            content.truncate(cut);
            content.push_str("\n[truncated]");
        }
        artifacts.push(ArtifactText { name, content });
    }
    artifacts
}

/// The result of one agent run; `budget_stop` says why a budget stopped it (before or during).
struct AgentRun {
    report: AgentReport,
    budget_stop: Option<String>,
    /// The `before_run` hook failed: the agent did not run, the attempt fails with this reason.
    hook_failure: Option<String>,
}

async fn run_agent(ctx: &JobContext<'_>, role: &str) -> Result<AgentRun, EngineError> {
    let engine = ctx.engine;
    // The stage's own agent entry, adapter or model (stage override > agent role > defaults).
    let agent_settings = engine.settings().agent_for_stage(role, ctx.stage);
    let overrides = &ctx.stage.overrides;
    let agent = match &agent_settings {
        Some(settings) if overrides.agent.is_some() || overrides.adapter.is_some() || overrides.model.is_some() => {
            engine.agents().stage_agent(engine.settings(), role, settings)?
        }
        _ => engine.agents().agent(engine.settings(), role)?,
    };
    if ctx.start == Start::Adopt {
        if let Some(adopted) = adoptable(ctx).await? {
            tracing::info!(task = %ctx.task.work_item_id, job = %ctx.job.id, "re-adopting the agent started before a restart");
            return after_run(ctx, supervise(ctx, role, agent, adopted).await).await;
        }
        // Nothing survived to adopt: the stage runs afresh from a clean worktree, and the run
        // that died without a trace is closed as lost.
        engine.close_lost_runs(ctx.job.id, "the agent died with the Baton that ran it and left no exit record").await?;
        timed(ctx, engine.vcs().clean(&ctx.worktree)).await?;
    }
    let run_number = engine.store().count_agent_runs(ctx.task.id, &ctx.stage.name).await? + 1;
    let artifact_path = ctx.stage.artifact.as_deref().map(|name| artifact_relative_path(&ctx.task.work_item_id, name));
    // The retro reads the task's hand-off and every lesson of the repository instead of the
    // lessons of one stage.
    let retro =
        if role == crate::retro::ROLE { Some(crate::retro::prompt_context(engine, ctx.task).await) } else { None };
    let lessons = if retro.is_some() {
        String::new()
    } else {
        crate::lessons::prompt_section(engine, &ctx.task.repo, &ctx.stage.name, &ctx.task.work_item_id).await
    };
    let prompt = prompts::render_with(
        &engine.settings().data_dir.join("prompts"),
        ctx.stage.overrides.prompt_template.as_deref(),
        &PromptContext {
            task: PromptTask {
                work_item: ctx.task.work_item_id.clone(),
                title: ctx.task.title.clone(),
                body: ctx.task.body.clone(),
                branch: ctx.task.branch.clone(),
            },
            stage: ctx.stage.name.clone(),
            role: role.to_string(),
            attempt: ctx.task.state.attempt,
            run: run_number,
            artifact_path,
            failure: ctx.task.state.failure.clone(),
            answers: ctx.task.state.answers.clone(),
            artifacts: earlier_artifacts(ctx).await,
            retro,
        },
    )?;
    // Appended after the template, so an overridden template still carries the lessons.
    let prompt = prompt + &lessons;
    let run_dir = ctx.run_dir.join(format!("run{run_number}"));
    // Only agent runs are confined (repository commands are not); see `sandbox::agent_policy`.
    let agent_settings = agent_settings.as_ref();
    let confinement = engine.sandbox().map_or(Confinement::Unsandboxed, |s| s.confinement(agent_settings));
    if let Confinement::Refused(reason) = &confinement {
        return Ok(AgentRun { report: AgentReport::failed(reason.clone()), budget_stop: None, hook_failure: None });
    }
    let request = AgentRequest {
        work_item: ctx.task.work_item_id.clone(),
        title: ctx.task.title.clone(),
        stage: ctx.stage.name.clone(),
        role: role.to_string(),
        attempt: ctx.task.state.attempt,
        run_number,
        worktree: ctx.worktree.clone(),
        run_dir: run_dir.clone(),
        prompt,
        base_env: agent_env(engine, agent_settings, ctx),
        resume_session: resume_session(ctx).await?,
        sandboxed: matches!(confinement, Confinement::Sandboxed { .. }),
    };
    let mut spec = agent.prepare(&request)?;
    if let (Confinement::Sandboxed { bwrap, network }, Some(sandbox)) = (&confinement, engine.sandbox()) {
        let policy = crate::sandbox::agent_policy(
            engine.settings(),
            sandbox.settings(),
            agent_settings,
            *network,
            ctx.repo,
            &request,
        );
        spec = baton_runner::sandbox::wrap(spec, bwrap, &policy);
    }
    let limits_before = budgets::limits_for_stage(engine, ctx.task, ctx.stage).await?;
    if let Some(reason) = budgets::exceeded(&limits_before, 0.0) {
        return Ok(AgentRun {
            report: AgentReport::failed(reason.clone()),
            budget_stop: Some(reason),
            hook_failure: None,
        });
    }
    if let Err(reason) = ctx.hook(Hook::BeforeRun).await {
        return Ok(AgentRun {
            report: AgentReport::failed(reason.clone()),
            budget_stop: None,
            hook_failure: Some(reason),
        });
    }
    // Taken over while this process stood still (a stopped process, a suspended machine, between
    // the claim and here): the agent runs wherever the job is claimed now, not here as well. The
    // job's end is then that instance's to record (see `finish_job`).
    if taken_away(engine, ctx.job.id).await {
        return Err(EngineError::Refused(format!(
            "job {} was taken over by another instance; its agent is not started here",
            ctx.job.id
        )));
    }
    // The run's row comes first: whatever happens from here on, its spend has a place, and a
    // restarted Baton finds its run directory (where the shim records the launch and the exit).
    let started_at_ms = engine.clock().now_ms();
    let run_id = engine
        .store()
        .insert_agent_run(NewAgentRun {
            job: ctx.job.id,
            task: ctx.task.id,
            stage: ctx.stage.name.clone(),
            adapter: agent.adapter().to_string(),
            model: agent.model().map(str::to_string),
            pid: None,
            started_at_ms,
            log_path: run_dir.display().to_string(),
        })
        .await?;
    let launch = match engine.supervisor().launch(spec, &run_dir, &format!("job:{}", ctx.job.id)).await {
        Ok(launch) => launch,
        Err(error) => {
            let _ = engine.store().close_agent_run(run_id, "failed", &error.to_string(), engine.clock().now_ms()).await;
            return Err(error.into());
        }
    };
    let recorded = engine
        .store()
        .record_launch(ctx.job.id, engine.owner(), run_id, launch.pid, launch.pgid, launch.start_ticks)
        .await;
    let unrecorded = match recorded {
        Ok(true) => None,
        // Taken over (or stopped) between the check above and the launch: the job runs under
        // another claim, or not at all, and this agent must not run beside that claim's own.
        Ok(false) => Some((
            "stopped: as it started, its job was taken over by another instance or stopped".to_string(),
            EngineError::Refused(format!(
                "job {} was taken over by another instance or stopped as its agent started; the agent was stopped",
                ctx.job.id
            )),
        )),
        // An agent this job cannot account for must not run on beside the next attempt.
        Err(error) => Some((format!("stopped: its process could not be recorded ({error})"), error.into())),
    };
    if let Some((why, error)) = unrecorded {
        let grace = Duration::from_secs(engine.settings().limits.stop_grace_secs);
        engine.supervisor().stop_group(launch.pgid, grace).await;
        let _ = engine.store().close_agent_run(run_id, "stopped", &why, engine.clock().now_ms()).await;
        return Err(error);
    }
    tracing::info!(
        task = %ctx.task.work_item_id, stage = %ctx.stage.name, adapter = agent.adapter(),
        model = agent.model().unwrap_or("default"), pid = launch.pid, run = run_id, "agent started"
    );
    let run =
        Supervision { run_id, run_number, run_dir, started_at_ms, launch, limits: limits_before, recorded: false };
    after_run(ctx, supervise(ctx, role, agent, run).await).await
}

/// Runs the `after_run` hook once the agent ended (a failure is only a warning), passing the
/// run's result through.
async fn after_run(ctx: &JobContext<'_>, run: Result<AgentRun, EngineError>) -> Result<AgentRun, EngineError> {
    let _ = ctx.hook(Hook::AfterRun).await;
    run
}

/// A running (or finished) agent process and its run record.
struct Supervision {
    run_id: i64,
    run_number: u32,
    run_dir: PathBuf,
    started_at_ms: i64,
    launch: LaunchRecord,
    /// The budget caps in force for this run, with the spend before it.
    limits: Vec<budgets::BudgetLimit>,
    /// Its end was already recorded (by a Baton that died before applying the job's result).
    recorded: bool,
}

/// The agent run of this job that an earlier Baton started, when its agent is still running or
/// has recorded its exit; `None` when there is nothing to adopt (the stage then runs afresh).
async fn adoptable(ctx: &JobContext<'_>) -> Result<Option<Supervision>, EngineError> {
    let runs = ctx.engine.store().agent_runs(ctx.task.id).await?;
    let Some(run) = runs.into_iter().rev().find(|r| r.job_id == ctx.job.id) else {
        return Ok(None);
    };
    let run_dir = PathBuf::from(&run.log_path);
    // The shim's own launch record names the process even when the kill landed before its pid
    // reached the job row; older runs fall back to the row.
    let from_row = ctx.job.pgid.map(|pgid| LaunchRecord {
        pid: ctx.job.pid.unwrap_or(pgid),
        pgid,
        start_ticks: ctx.job.proc_start,
    });
    let launch = match ctx.engine.supervisor().previous(&run_dir) {
        Previous::Running(launch) => Some(launch),
        Previous::Exited(_) => baton_runner::shim::read_launch(&run_dir.join(baton_runner::shim::LAUNCH_FILE))
            .or(from_row)
            .or(Some(LaunchRecord { pid: 0, pgid: 0, start_ticks: None })),
        Previous::Vanished(_) | Previous::Nothing => None,
    };
    let Some(launch) = launch else {
        return Ok(None);
    };
    // A kill between the job row and the run record taking the pid leaves the run without it: the
    // adopted process is this run's, so its record names it (what `task show` and the spend refer to).
    if run.pid.is_none() && launch.pid != 0 {
        ctx.engine.store().set_agent_run_pid(run.id, launch.pid).await?;
    }
    let run_number = run_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("run"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    Ok(Some(Supervision {
        run_id: run.id,
        run_number,
        run_dir,
        started_at_ms: run.started_at_ms,
        launch,
        limits: budgets::limits_for_stage(ctx.engine, ctx.task, ctx.stage).await?,
        recorded: run.ended_at_ms.is_some(),
    }))
}

/// Watches the agent to its end (budgets, STOP, timeouts), then records its report.
async fn supervise(
    ctx: &JobContext<'_>,
    role: &str,
    agent: Arc<dyn Agent>,
    run: Supervision,
) -> Result<AgentRun, EngineError> {
    let engine = ctx.engine;
    let Supervision { run_id, run_number, run_dir, started_at_ms, launch, limits: limits_before, recorded } = run;
    let stdout_path = run_dir.join("stdout.log");
    let stderr_path = run_dir.join("stderr.log");
    let limits = &engine.settings().limits;
    // A stage's own limits win over `[limits]`.
    let overrides = &ctx.stage.overrides;
    let run_limits = RunLimits {
        timeout: Duration::from_secs(overrides.timeout_secs.unwrap_or(limits.agent_timeout_secs)),
        stall_timeout: Duration::from_secs(overrides.stall_timeout_secs.unwrap_or(limits.stall_timeout_secs)),
        stop_grace: Duration::from_secs(limits.stop_grace_secs),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let monitor = Monitor {
        ctx,
        agent: agent.clone(),
        stdout: stdout_path.clone(),
        stderr: stderr_path.clone(),
        limits: limits_before,
        local_stop: ctx.stop.clone(),
        stop: stop_tx,
        done: done_rx,
    };
    let waiting = async {
        let already_ms = (engine.clock().now_ms() - started_at_ms).max(0) as u64;
        let exit = engine
            .supervisor()
            .wait(
                &launch,
                &run_dir,
                [&stdout_path, &stderr_path],
                Duration::from_millis(already_ms),
                run_limits,
                stop_rx,
            )
            .await;
        let _ = done_tx.send(true);
        exit
    };
    let (exit, (stop, progress)) = tokio::join!(waiting, monitor.run());
    ctx.external_ms.fetch_add(exit.duration_ms, Ordering::Relaxed);
    let budget_stop = match &stop {
        Some(Stopped::Budget(reason)) => Some(reason.clone()),
        _ => None,
    };
    // A run Baton ended (STOP, a budget, the reaper) is stopped whatever its exit code: some CLIs
    // exit 0 on SIGTERM. A STOP from another process may have ended it before the monitor looked.
    let stopped = stop.is_some() || exit.stopped || job_ended_elsewhere(ctx).await;
    let output = |path: &Path| String::from_utf8_lossy(&engine.supervisor().read_output(path)).to_string();
    let (stdout, stderr) = (output(&stdout_path), output(&stderr_path));
    let mut report = agent.parse(&stdout, &stderr, &exit);
    if stopped {
        let why = budget_stop
            .as_ref()
            .map_or_else(|| "stopped on request".to_string(), |r| format!("stopped by budget: {r}"));
        report.status = AgentStatus::Failed { message: why };
    }
    // A run stopped mid-way has no final figures: keep what it reported while running.
    if report.usage == baton_domain::Usage::default() {
        report.usage = progress.usage;
    }
    if report.cost_usd.is_none() {
        report.cost_usd = progress.cost_usd;
    }
    if report.model.is_none() {
        report.model = progress.model.clone().or_else(|| agent.model().map(str::to_string));
    }
    if report.cost_usd.is_none() {
        report.cost_usd = price(engine, report.model.as_deref(), &report.usage);
    }
    engine
        .store()
        .finish_agent_run(
            run_id,
            AgentRunFinish {
                ended_at_ms: engine.clock().now_ms(),
                exit_code: exit.code,
                report: report.clone(),
                stopped,
            },
        )
        .await?;
    let status = match (&budget_stop, &report.status) {
        (Some(reason), _) => format!("stopped by budget: {reason}"),
        (None, AgentStatus::Failed { message }) if stopped => message.clone(),
        (None, AgentStatus::Succeeded) => "succeeded".to_string(),
        (None, AgentStatus::NeedsInput { .. }) => "ended with questions".to_string(),
        (None, AgentStatus::Failed { message }) => format!("failed: {message}"),
        (None, AgentStatus::QuotaExhausted { message, .. }) => format!("hit the provider quota: {message}"),
    };
    let cost = report.cost_usd.map_or("unpriced".to_string(), baton_domain::money);
    let model = report.model.clone().unwrap_or_else(|| "model unknown".into());
    tracing::info!(
        task = %ctx.task.work_item_id, stage = %ctx.stage.name, adapter = agent.adapter(), model = %model,
        pid = launch.pid, run = run_id, status = %status, input_tokens = report.usage.input_tokens,
        output_tokens = report.usage.output_tokens, cost = %cost, duration_s = exit.duration_ms as f64 / 1000.0,
        "agent ended"
    );
    // A run whose end an earlier Baton recorded is on the timeline already.
    if recorded {
        return Ok(AgentRun { report, budget_stop, hook_failure: None });
    }
    let _ = engine
        .store()
        .append_event(NewEvent {
            task: ctx.task.id,
            at_ms: engine.clock().now_ms(),
            kind: "agent".into(),
            stage: ctx.stage.name.clone(),
            message: format!(
                "{role} run {run_number} ({}, {model}) {status} in {:.1} s · {} in / {} out · {cost}",
                agent.adapter(),
                exit.duration_ms as f64 / 1000.0,
                report.usage.input_tokens + report.usage.cache_read_tokens + report.usage.cache_write_tokens,
                report.usage.output_tokens
            ),
            detail: serde_json::json!({ "run_id": run_id, "pid": launch.pid, "exit": exit.code, "usage": report.usage }),
        })
        .await;
    budgets::warn_once(engine, ctx.task).await;
    Ok(AgentRun { report, budget_stop, hook_failure: None })
}

/// Whether `job` was taken over from this instance (declared dead while silent past the grace
/// period): back in the queue, or running under another instance's claim. An ended job is not
/// (a STOP or the reaper ended it: the usual paths handle that).
async fn taken_away(engine: &Engine, job: JobId) -> bool {
    match engine.store().job(job).await {
        Ok(Some(row)) => match row.status {
            JobStatus::Queued => true,
            JobStatus::Running => !row.runs_under_claim(engine.owner()),
            _ => false,
        },
        _ => false,
    }
}

/// Whether this job's row left `running` while its agent ran (a STOP or the reaper ended it).
async fn job_ended_elsewhere(ctx: &JobContext<'_>) -> bool {
    matches!(ctx.engine.store().job(ctx.job.id).await, Ok(Some(row)) if row.status != JobStatus::Running)
}

/// Why the monitor stopped a running agent.
#[derive(Debug, Clone, PartialEq)]
enum Stopped {
    /// A STOP (local or from another process), or the reaper.
    Requested,
    /// Its live cost reached a budget cap; the reason names the cap.
    Budget(String),
}

/// Watches a running agent: forwards a local stop, notices a STOP from another process (the job
/// row left `running`), reads the agent's stdout line by line for live progress, and stops the
/// agent when its live cost reaches a budget cap. Returns why it stopped it, when it did.
struct Monitor<'a> {
    ctx: &'a JobContext<'a>,
    agent: Arc<dyn Agent>,
    stdout: PathBuf,
    stderr: PathBuf,
    limits: Vec<budgets::BudgetLimit>,
    local_stop: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl Monitor<'_> {
    async fn run(mut self) -> (Option<Stopped>, LiveProgress) {
        let engine = self.ctx.engine;
        let mut progress = LiveProgress::default();
        let mut reading = Reading::default();
        let mut since_stop_poll = Duration::ZERO;
        let tick = Duration::from_millis(MONITOR_TICK_MS);
        loop {
            tokio::select! {
                biased;
                changed = self.local_stop.changed() => {
                    if changed.is_err() || *self.local_stop.borrow() {
                        let _ = self.stop.send(true);
                        return (Some(Stopped::Requested), progress);
                    }
                }
                _ = self.done.changed() => {
                    self.read_lines(&mut reading, &mut progress).await;
                    return (None, progress);
                }
                _ = engine.clock().sleep(tick) => {
                    self.read_lines(&mut reading, &mut progress).await;
                    if let Some(reason) = self.budget_reached(&progress) {
                        tracing::warn!(task = %self.ctx.task.work_item_id, "stopping the agent: {reason}");
                        let _ = self.stop.send(true);
                        return (Some(Stopped::Budget(reason)), progress);
                    }
                    since_stop_poll += tick;
                    if since_stop_poll >= Duration::from_millis(STOP_POLL_MS) {
                        since_stop_poll = Duration::ZERO;
                        if let Ok(Some(row)) = engine.store().job(self.ctx.job.id).await
                            && row.status != JobStatus::Running
                        {
                            let _ = self.stop.send(true);
                            return (Some(Stopped::Requested), progress);
                        }
                    }
                }
            }
        }
    }

    fn budget_reached(&self, progress: &LiveProgress) -> Option<String> {
        if self.limits.is_empty() {
            return None;
        }
        let model = progress.model.as_deref().or(self.agent.model());
        let live_usd = progress.cost_usd.or_else(|| price(self.ctx.engine, model, &progress.usage)).unwrap_or(0.0);
        budgets::exceeded(&self.limits, live_usd)
    }

    /// Feeds complete new stdout and stderr lines to the adapter and records its progress notes
    /// and, once each, the waits on the provider it saw.
    async fn read_lines(&self, reading: &mut Reading, progress: &mut LiveProgress) {
        let agent = &self.agent;
        for line in new_lines(self.ctx.engine, &self.stdout, &mut reading.stdout) {
            agent.observe(line.trim_end(), progress);
        }
        for line in new_lines(self.ctx.engine, &self.stderr, &mut reading.stderr) {
            agent.observe_stderr(line.trim_end(), progress);
        }
        let notes = progress.notes.drain(..).map(|note| ("progress", note));
        let waits = progress.waits.drain(..).filter(|wait| reading.waits_seen.insert(wait.clone()));
        let events: Vec<(&str, String)> = notes.chain(waits.map(|wait| ("waiting", wait))).collect();
        let engine = self.ctx.engine;
        for (kind, message) in events.into_iter().take(PROGRESS_NOTES_PER_TICK_MAX) {
            let _ = engine
                .store()
                .append_event(NewEvent {
                    task: self.ctx.task.id,
                    at_ms: engine.clock().now_ms(),
                    kind: kind.into(),
                    stage: self.ctx.stage.name.clone(),
                    message,
                    detail: serde_json::Value::Null,
                })
                .await;
        }
    }
}

/// How far the monitor has read one output file: the offset and an incomplete last line.
#[derive(Debug, Default)]
struct Cursor {
    offset: u64,
    partial: String,
}

/// The monitor's reading of the agent's output, and the provider waits already recorded.
#[derive(Debug, Default)]
struct Reading {
    stdout: Cursor,
    stderr: Cursor,
    waits_seen: std::collections::BTreeSet<String>,
}

/// The complete lines added to `path` since `cursor`, which moves past them.
fn new_lines(engine: &Engine, path: &Path, cursor: &mut Cursor) -> Vec<String> {
    let bytes = engine.supervisor().read_output(path);
    let Some(new) = bytes.get(cursor.offset as usize..) else {
        return Vec::new();
    };
    cursor.offset = bytes.len() as u64;
    cursor.partial.push_str(&String::from_utf8_lossy(new));
    let mut lines = Vec::new();
    while let Some(end) = cursor.partial.find('\n') {
        lines.push(cursor.partial.drain(..=end).collect());
    }
    lines
}

/// The session of this stage's last run that ended with questions, when the task has answers.
async fn resume_session(ctx: &JobContext<'_>) -> Result<Option<String>, EngineError> {
    if ctx.task.state.answers.is_empty() {
        return Ok(None);
    }
    let runs = ctx.engine.store().agent_runs(ctx.task.id).await?;
    Ok(runs
        .into_iter()
        .rev()
        .find(|r| r.stage == ctx.stage.name && r.status.as_deref() == Some("needs_input"))
        .and_then(|r| r.session_id))
}

/// The head the task's last passing merge gate re-tested (from the deploy_staging job's result).
async fn merge_gate_head(ctx: &JobContext<'_>) -> Result<Option<String>, baton_store::StoreError> {
    retested_head(ctx.engine.store().as_ref(), ctx.task.id).await
}

/// The head `task`'s last passing merge gate re-tested, read from its jobs' results.
pub(crate) async fn retested_head(
    store: &dyn baton_store::Store,
    task: baton_domain::TaskId,
) -> Result<Option<String>, baton_store::StoreError> {
    let jobs = store.jobs_for_task(task).await?;
    Ok(jobs
        .iter()
        .rev()
        .filter(|j| j.status == JobStatus::Done)
        .find_map(|j| j.outcome().and_then(|o| o.retested_head().map(str::to_string))))
}

/// The `merged` verdict of a change of a merge-queue batch (not its last) whose merge gate just
/// passed: it passes only once the default branch holds the batch's commit, which carries it. Its
/// merge is then done, like a deploy's: a STOP that waited for this run arrived too late.
async fn landed_with_batch(ctx: &JobContext<'_>, verdicts: &[GateVerdict]) -> Option<GateVerdict> {
    let passed = verdicts.iter().find(|v| v.gate == "mergeable" && v.verdict == Verdict::Pass)?;
    let head = passed.evidence.clone()?;
    let entry = ctx.engine.store().queue_entry(ctx.task.id).await.ok().flatten()?;
    if !crate::queue::is_batch_member(&entry) {
        return None;
    }
    let message = format!("{} holds its batch's commit {}", ctx.repo.default_branch, &head[..head.len().min(10)]);
    let mut merged = GateVerdict::new(baton_domain::MERGED_VERDICT, Verdict::Pass, message);
    merged.evidence = Some(head);
    Some(merged)
}

/// What the deploy actor did once the default branch holds the re-tested head.
struct Deployed {
    /// The `merged` verdict, with the head as its evidence.
    merged: GateVerdict,
    /// The `deploy` command's failure, when it failed after the merge.
    failed: Option<GateVerdict>,
}

/// Why the deploy actor merged nothing.
enum Refused {
    /// The merge lease is another task's now: the merge gate must rebase and re-test again.
    LeaseLost(String),
    /// Another change's landing must finish first: the deploy stage runs again after a pause,
    /// with the change's place and tested head kept.
    Wait(String),
    /// The change landed (by an earlier run of the job) and its deploy waits for the merge lease:
    /// the deploy stage runs again after a pause; `head` is what the default branch holds.
    Landed {
        reason: String,
        head: String,
    },
    /// The machine failed (a store that cannot be read): nothing is known about the change.
    Machine(String),
    Other(String),
}

impl From<&str> for Refused {
    fn from(reason: &str) -> Self {
        Refused::Other(reason.to_string())
    }
}

impl From<String> for Refused {
    fn from(reason: String) -> Self {
        Refused::Other(reason)
    }
}

/// The merge lease this deploy job took (`held`) goes back when the job stops short of the merge
/// because its task moved on or the job is no longer this instance's: unless the task, read now,
/// may still hold it (the job taken over and running on another instance, under the same task's
/// name). Kept, it held the repository's merges for a task the reaper had just blocked until a
/// later reaper pass reclaimed it (seed 290000647). A failed read leaves it to that pass.
async fn give_back_lease(ctx: &JobContext<'_>, lease: &str, held: bool) {
    if !held {
        return;
    }
    let engine = ctx.engine;

    match engine.store().task(&TaskKey::Id(ctx.task.id)).await {
        // Released only while the task is as read, as the reaper releases (`reaper::leases`): a
        // retry claimed since may have taken the lease again under the same name.
        Ok(Some(task)) if !crate::reaper::may_hold_merge_lease(engine, &task) => {
            let _ = engine.store().release_lease_if_unmoved(lease, task.id, task.version).await;
        }
        Ok(None) => {
            let _ = engine.store().release_lease(lease, &task_holder(ctx.task.id)).await;
        }
        _ => {}
    }
}

/// The deploy actor: fast-forward the default branch to the retested head, then run `deploy`.
/// `Err` means nothing was merged, or (`Machine`) nothing was deployed: a merge whose `merged`
/// line could not be written.
async fn deploy(ctx: &JobContext<'_>) -> Result<Deployed, Refused> {
    let engine = ctx.engine;
    // A store that cannot be read is the machine's failure, never the change's: the step runs
    // again (a STOP waiting for it keeps waiting; the change may have landed in an earlier run).
    let entry = match engine.store().queue_entry(ctx.task.id).await {
        Ok(entry) => entry,
        Err(error) => return Err(Refused::Machine(format!("cannot read the merge queue: {error}"))),
    };
    if let Some(entry) = &entry
        && crate::queue::is_batch_member(entry)
    {
        return deploy_batch_member(ctx, entry).await;
    }
    let worktree_head = timed(ctx, engine.vcs().rev(&ctx.worktree, "HEAD")).await.ok_or("the worktree has no HEAD")?;
    // The last change of a batch lands the batch's commit: its build's tree on the batch's base.
    let batch_tail = entry.as_ref().is_some_and(|e| e.batch == Some(ctx.task.id));
    // Merge exactly the head the merge gate re-tested, and nothing else (main is sacred).
    let passed = merge_gate_head(ctx)
        .await
        .map_err(|error| Refused::Machine(format!("cannot read the task's jobs: {error}")))?;
    let head = match passed {
        Some(passed) if passed == worktree_head => passed,
        Some(passed) if batch_tail && timed(ctx, engine.vcs().same_tree(&ctx.worktree, "HEAD", &passed)).await => {
            passed
        }
        Some(passed) => {
            return Err(format!(
                "the worktree is at {worktree_head}, not at {passed} that the merge gate re-tested; refusing to merge"
            )
            .into());
        }
        None => return Err("no merge-gate pass recorded for this task; refusing to merge".into()),
    };
    // A change tested alone is one commit on the base recorded with it in the merge queue; else
    // (a batch's commit, or no entry any more) git says what the head's parent is.
    let landing_base = crate::queue::landing_base(
        engine.vcs().as_ref(),
        &ctx.repo.path,
        &ctx.worktree,
        entry.as_ref(),
        &head,
        batch_tail,
    );
    let base = timed(ctx, landing_base).await.ok_or("the retested head has no parent")?;
    let gates = ctx.gates();
    let deploy_argv = RepoCommand::Deploy.argv(&gates);
    // A deploy of this head still running (this job started it before a restart) is waited for
    // before anything else: the head has landed (a deploy starts only after), and this job stays
    // running while it waits, so no other change lands under it (`deploying_elsewhere`). Sent to
    // wait for the lease or another deploy instead, the job left that deploy running unseen, and
    // a change landed on top of it (seed 33120).
    let deploying = deploy_argv.is_some()
        && matches!(engine.commands().previous(&deploy_run_dir(ctx, &head)), Previous::Running(_));
    let lease = gates::merge_lease_name(&ctx.repo.name);
    let ttl_ms = engine.settings().limits.lease_ttl_secs as i64 * 1000;
    // Taken only while this job is the task's active one: a job the reaper stopped (or a STOP, or
    // a retry) took the lease after its task was blocked, and a failed give-back kept the
    // repository's merges waiting for a blocked task (seed 530000976).
    let now = engine.clock().now_ms();
    let Some(acquired) =
        engine.store().acquire_lease_for_job(&lease, ctx.task.id, ctx.job.id, ttl_ms, now).await.transpose()
    else {
        return Err("the task changed before the merge; not merging".into());
    };
    // Whether this run holds the lease now, waiting for its own running deploy or not.
    let holds_lease = matches!(acquired, Ok(LeaseOutcome::Acquired { .. }));
    let lease_lost = match acquired {
        Ok(LeaseOutcome::Acquired { .. }) => None,
        Ok(LeaseOutcome::Busy { .. }) if deploying => None,
        Ok(LeaseOutcome::Busy { holder }) => Some(format!("the merge lease of {} is held by {holder}", ctx.repo.name)),
        Err(_) if deploying => None,
        Err(error) => return Err(Refused::Machine(format!("cannot renew the merge lease: {error}"))),
    };
    // Without the lease, the change may still have landed by an earlier run of this job (a Baton
    // killed between the merge and the end of the job, its lease expired meanwhile): then it is
    // deployed, never sent back to the merge queue (where it would have nothing left to merge).
    // Its deploy runs under the lease like any other: while another task holds it, that task may
    // land on top of this commit during the deploy, which could then take the target back behind
    // the default branch (a human's retry of a failed deploy, say, while the queue moved on). It
    // waits for the lease, keeping its place; landed on top by then, the later deploy carries it.
    let mut landed = match lease_lost {
        Some(reason) => {
            let main = landed_before(ctx, &base, &head).await.ok_or(Refused::LeaseLost(reason.clone()))?;
            if main == head {
                let reason = format!(
                    "{reason}; {} has landed on {} and deploys once that lease is free",
                    &head[..head.len().min(10)],
                    ctx.repo.default_branch
                );
                return Err(Refused::Landed { reason, head });
            }
            Some(main)
        }
        None => None,
    };
    // The task may have been stopped since this job was claimed: never merge for a cancelled task.
    let current = match engine.store().task(&TaskKey::Id(ctx.task.id)).await {
        Ok(current) => current,
        Err(error) => return Err(Refused::Machine(format!("cannot read the task before the merge: {error}"))),
    };
    let Some(current) = current.filter(|t| t.state.job == Some(ctx.job.id) && !t.state.is_terminal()) else {
        give_back_lease(ctx, &lease, holds_lease).await;
        return Err("the task changed before the merge; not merging".into());
    };
    // A STOP that waited for this job (it might have merged before a restart, or its change had
    // landed while it waited for the lease): nothing new is merged. A change that already landed
    // is deployed, and the STOP arrived too late.
    if let Some(by) = &current.state.cancel_requested
        && landed.is_none()
        && !deploying
    {
        match landed_before(ctx, &base, &head).await {
            Some(main) => landed = Some(main),
            None => return Err(format!("stop requested by {by} before the merge; not merging").into()),
        }
    }
    // Nor for a job this instance no longer owns: declared dead (silent past the grace period),
    // its job was requeued and may be running on another instance now.
    let job_now = match engine.store().job(ctx.job.id).await {
        Ok(job) => job,
        Err(error) => return Err(Refused::Machine(format!("cannot read the job before the merge: {error}"))),
    };
    if !job_now.is_some_and(|j| j.status == JobStatus::Running && j.owner.as_deref() == Some(engine.owner())) {
        give_back_lease(ctx, &lease, holds_lease).await;
        return Err("this job was taken over by another instance before the merge; not merging".into());
    }
    let landed = match landed {
        Some(main) => Some(main),
        None if deploying => Some(head.clone()),
        None => match merge_under_lease(ctx, &lease, ttl_ms, &base, &head).await {
            Ok(already_merged) => already_merged.then(|| head.clone()),
            // The lease lost or main moved on since: landed by an earlier run after all, or back
            // to the queue.
            Err(Refused::LeaseLost(reason)) => {
                Some(landed_before(ctx, &base, &head).await.ok_or(Refused::LeaseLost(reason))?)
            }
            Err(refused) => return Err(refused),
        },
    };
    let already_merged = landed.is_some();
    let moved_past = landed.filter(|main| *main != head);
    // A batch's commit is on the default branch now: the deploy runs on exactly that commit (the
    // worktree had the same tree on its own branch), and the change never goes back to the queue.
    if batch_tail && let Err(error) = timed(ctx, engine.vcs().reset_to(&ctx.worktree, &head)).await {
        return Err(format!("cannot move the worktree to the batch's commit: {error}").into());
    }
    // A deploy job of this task merged on another instance, since declared dead and the job taken
    // over, and no job recorded the deploy's outcome since: that instance may have run the deploy
    // (its record lies on its own machine), so it never runs again here; a human checks the target
    // and retries.
    let taken_over = match &deploy_argv {
        Some(_) if already_merged => merged_elsewhere_unrecorded(ctx, &head).await,
        _ => None,
    };
    // Landed by an earlier run and not deployed yet (a human's retry of the task a deploy of unknown
    // outcome blocked), while that deploy's freeze is open: it may still be running on the target,
    // so this one waits for the unfreeze, keeping its place.
    if deploy_argv.is_some() && already_merged && taken_over.is_none() && moved_past.is_none() && !deploying {
        let freeze = crate::monitor::unknown_deploy_freeze(engine, ctx.task)
            .await
            .map_err(|error| Refused::Machine(format!("cannot read the repository's freezes: {error}")))?;
        if let Some(freeze) = freeze {
            if holds_lease {
                let _ = engine.store().release_lease(&lease, &task_holder(ctx.task.id)).await;
            }
            let reason = format!(
                "{} is frozen ({}): {} has landed on {} and deploys once a person has checked the target and run \
                 `baton repo unfreeze {}`",
                ctx.repo.name,
                freeze.reason,
                &head[..head.len().min(10)],
                ctx.repo.default_branch,
                ctx.repo.name
            );
            return Err(Refused::Landed { reason, head });
        }
    }
    let short = &head[..head.len().min(10)];
    let landed = match ctx.repo.forge.merge_style {
        crate::settings::MergeStyle::FastForward => "fast-forwarded to",
        crate::settings::MergeStyle::Squash => "squash-merged at",
        crate::settings::MergeStyle::Merge => "merged at",
    };
    let recorded = engine
        .store()
        .append_event(NewEvent {
            task: ctx.task.id,
            at_ms: engine.clock().now_ms(),
            kind: "merged".into(),
            stage: ctx.stage.name.clone(),
            message: format!("{} {landed} {short}", ctx.repo.default_branch),
            // Which job on which instance merged: an instance that takes the job over reads it.
            detail: serde_json::json!({
                "base": base, "head": head, "job": ctx.job.id.0, "instance": engine.owner(),
            }),
        })
        .await;
    // No deploy runs without that line: the reaper's backstop finds a hung deploy's group by it
    // (without it, the job's end was recorded while its deploy ran on, and a change landed under
    // it: seed 31001051), and an instance that takes this job over after this one is declared dead
    // reads it to know a deploy may have run here. The change has landed; the next attempt finds
    // it there and deploys.
    if let (Err(error), Some(_)) = (&recorded, &deploy_argv) {
        return Err(Refused::Machine(format!(
            "{short} has landed on {}, but the merge could not be recorded on the timeline ({error}); \
             deploying once it is",
            ctx.repo.default_branch
        )));
    }
    ratchet_coverage(ctx, &head).await;
    let mut merged = GateVerdict::new(
        baton_domain::MERGED_VERDICT,
        Verdict::Pass,
        format!("{} {landed} {short}", ctx.repo.default_branch),
    );
    merged.evidence = Some(head.clone());
    let failed = match (deploy_argv, taken_over) {
        (None, _) => None,
        // Landed by an earlier run, and a later change landed on top before this deploy ran (it
        // cannot, short of a lease stolen mid-merge): that change's deploy carries this commit;
        // deploying the older one now could take the target back to it.
        (Some(_), _) if let Some(main) = &moved_past => {
            note_moved_past(ctx, &head, main).await;
            None
        }
        // That deploy may still be running there: the repository freezes before this job's
        // outcome takes the task out of the merge queue, so no later change lands and deploys
        // over it.
        (Some(_), Some(instance)) => {
            let frozen = match crate::monitor::freeze_unknown_deploy(engine, ctx.task, &head, &instance).await {
                Ok(frozen) => frozen,
                Err(error) => {
                    return Err(Refused::Machine(format!(
                        "cannot freeze the repository over an unknown deploy: {error}"
                    )));
                }
            };
            let then = if frozen {
                format!("then `baton repo unfreeze {}` and `baton task retry`", ctx.task.repo)
            } else {
                "then `baton task retry`".to_string()
            };
            Some(format!(
                "{short} was merged by a deploy job of this task on instance {instance}, which was declared dead \
                 before that job recorded its deploy; its deploy may have run there and its outcome is unknown \
                 here, so it is not run again: check the target, {then} to deploy again"
            ))
        }
        (Some(argv), None) => deploy_command(ctx, &gates, &head, &argv).await,
    };
    let failed = failed.map(|reason| GateVerdict::new("deploy", Verdict::Fail, reason));
    Ok(Deployed { merged, failed })
}

/// The default branch's head when it already holds `head` (this job merged it in an earlier run,
/// then its Baton died before the job's end was recorded); `None` when it does not.
async fn landed_before(ctx: &JobContext<'_>, base: &str, head: &str) -> Option<String> {
    let engine = ctx.engine;
    if let Some(remote) = ctx.repo.remote() {
        timed(ctx, engine.vcs().sync_remote(&ctx.repo.path, &remote, &ctx.repo.default_branch)).await.ok()?;
    }
    let main = timed(ctx, engine.vcs().rev(&ctx.repo.path, &ctx.repo.default_ref())).await?;
    let landed =
        main == head || (main != base && timed(ctx, engine.vcs().is_ancestor(&ctx.repo.path, head, &main)).await);
    landed.then_some(main)
}

/// The change (work item) whose tested head is `base` and whose deploy stage has not ended (its
/// queue entry goes when it does), when it is landing (it took the lease: merged, or about to) or
/// the default branch is at `base`: nothing lands on top of a commit before its deploy ran on
/// exactly that commit. The entry's state is the store's word, the same on every instance; the
/// default branch is read only for an entry that is not landing (a lease lost while its Baton
/// was down), and for a `url` repository that read is the last fetch, which the entry's state
/// does not depend on.
async fn unshipped_landing(ctx: &JobContext<'_>, base: &str) -> Option<String> {
    let engine = ctx.engine;
    // A queue that cannot be read holds the merge back (the next attempt reads it again): read as
    // empty, it let a change land on top of one still deploying.
    let entries = match engine.store().queue_entries_with_head(&ctx.repo.name, base).await {
        Ok(entries) => entries,
        Err(error) => return Some(format!("(the merge queue could not be read: {error})")),
    };
    let mut others = entries.into_iter().filter(|e| e.task != ctx.task.id).peekable();
    let first = others.peek()?.work_item_id.clone();
    // Of a batch, every member was tested as `base`: any one of them landing holds this merge.
    if let Some(landing) = others.find(|e| e.state == baton_store::QueueState::Landing) {
        return Some(landing.work_item_id);
    }
    let main = timed(ctx, engine.vcs().rev(&ctx.repo.path, &ctx.repo.default_ref())).await?;
    (main == base).then_some(first)
}

/// Another task of this repository whose deploy job is running, by work item (or why the running
/// jobs could not be read: then nothing merges either).
async fn deploying_elsewhere(ctx: &JobContext<'_>) -> Option<String> {
    let engine = ctx.engine;
    let running = match engine.store().jobs_with_status(JobStatus::Running).await {
        Ok(running) => running,
        Err(error) => return Some(format!("(the running jobs could not be read: {error})")),
    };
    let job = running
        .into_iter()
        .find(|j| j.repo == ctx.repo.name && j.stage == ctx.stage.name && j.task_id != ctx.task.id)?;
    let task = engine.store().task(&TaskKey::Id(job.task_id)).await.ok().flatten();
    Some(task.map_or_else(|| format!("task {}", job.task_id), |t| t.work_item_id))
}

/// Merges `head` onto the default branch at `base` under the merge lease, kept fresh to the
/// moment of the merge. `Ok(true)` when the default branch already held it.
async fn merge_under_lease(
    ctx: &JobContext<'_>,
    lease: &str,
    ttl_ms: i64,
    base: &str,
    head: &str,
) -> Result<bool, Refused> {
    let engine = ctx.engine;
    // The lease must still be ours at the moment of the merge: a Baton paused past the lease's TTL
    // (or a long step) may have lost it to another task, which may be merging now. Renew it, then
    // read it back with a fresh clock (a pause between the renewal's clock read and its write would
    // leave it stale); nothing awaits between the last check and the merge.
    let holder = task_holder(ctx.task.id);
    let mut fresh_until_ms = None;
    for _ in 0..3 {
        match engine.store().renew_lease(lease, &holder, ttl_ms, engine.clock().now_ms()).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(Refused::LeaseLost(format!(
                    "the merge lease of {} was lost before the merge (held past its TTL)",
                    ctx.repo.name
                )));
            }
            Err(error) => return Err(format!("cannot renew the merge lease before the merge: {error}").into()),
        }
        let current = engine.store().lease(lease).await.ok().flatten();
        if let Some(lease) = current.filter(|l| l.holder == holder)
            && lease.expires_at_ms - engine.clock().now_ms() > ttl_ms / 2
        {
            fresh_until_ms = Some(lease.expires_at_ms);
            break;
        }
    }
    let Some(expires_at_ms) = fresh_until_ms else {
        return Err(Refused::LeaseLost(format!("the merge lease of {} could not be kept fresh", ctx.repo.name)));
    };
    // The change this one was tested on top of is landing, or merged, and its deploy stage has not
    // ended: its deploy runs while the default branch is exactly its commit, so this one waits
    // (nothing merged; it keeps its place).
    if let Some(other) = unshipped_landing(ctx, base).await {
        let _ = engine.store().release_lease(lease, &holder).await;
        return Err(Refused::Wait(format!(
            "{other} is landing {} on {} and has not finished deploying; merging on top of it once it has",
            &base[..base.len().min(10)],
            ctx.repo.default_branch,
        )));
    }
    // Nor while another change's deploy job runs: its deploy must run on the default branch's
    // head. The lease and the queue entries cover this, except where a lease expired under a Baton
    // frozen past its TTL during a deploy that has no entry left (a human's retry of a failed one).
    if let Some(other) = deploying_elsewhere(ctx).await {
        let _ = engine.store().release_lease(lease, &holder).await;
        return Err(Refused::Wait(format!(
            "{other} is deploying on {}; merging once its deploy has ended",
            ctx.repo.name
        )));
    }
    // Frozen since it was let land (a deploy degraded meanwhile): nothing merges but the revert.
    // Nothing was merged; back to the merge gate, where the change waits for the unfreeze.
    if !crate::monitor::may_land(engine, &ctx.repo.name, ctx.task.id).await.unwrap_or(false) {
        return Err(Refused::LeaseLost(format!("{} is frozen; not merging until it is unfrozen", ctx.repo.name)));
    }
    // The checks above awaited the store: a Baton paused there past the lease's expiry may have
    // lost it. The clock is read without awaiting, so nothing awaits between this and the merge.
    if expires_at_ms - engine.clock().now_ms() <= ttl_ms / 2 {
        return Err(Refused::LeaseLost(format!(
            "the merge lease of {} went stale while checking for a freeze; not merging",
            ctx.repo.name
        )));
    }
    let merged = timed(ctx, engine.forge().merge(&forge_repo(ctx.repo), &ctx.task.branch, base, head)).await;
    match merged {
        Ok(MergeOutcome::Merged) => Ok(false),
        Ok(MergeOutcome::AlreadyMerged) => Ok(true),
        Ok(MergeOutcome::Moved { current }) => {
            // Someone else merged meanwhile (the lease was lost): rebase and re-test first.
            Err(Refused::LeaseLost(format!(
                "{} moved to {current} since the merge gate; refusing to merge (main is sacred)",
                ctx.repo.default_branch
            )))
        }
        // A forge that cannot be reached (rate limit, outage): the machine's fault, not the code's.
        Err(error) if error.is_transient() => {
            Err(format!("{}: merge failed: {error}", gates::FORGE_UNAVAILABLE).into())
        }
        Err(error) => Err(format!("merge failed: {error}").into()),
    }
}

/// The instance that merged `head` for this task's deploy and ended before its deploy's outcome
/// was recorded, when that was another instance and this machine has no record of the head's
/// deploy (a restart of the same instance finds its own records and waits for or takes their
/// outcome). That is this very job, taken over from a Baton declared dead; or an earlier job of the
/// task that was taken over and then ended without reaching its deploy (a failed fetch at the
/// start of the job on the instance that took it over): its record lies on the dead instance's
/// machine. A job that recorded its deploy's outcome (a failed deploy a human retries) does not
/// count.
async fn merged_elsewhere_unrecorded(ctx: &JobContext<'_>, head: &str) -> Option<String> {
    let engine = ctx.engine;
    if !matches!(engine.commands().previous(&deploy_run_dir(ctx, head)), Previous::Nothing) {
        return None;
    }
    let merges: Vec<(String, String, baton_domain::JobId)> = merges_of_task(engine, ctx.task.id)
        .await?
        .into_iter()
        .filter(|(landed, instance, _)| landed == head && instance != engine.owner())
        .collect();
    if let Some((_, instance, _)) = merges.iter().find(|(_, _, job)| *job == ctx.job.id) {
        return Some(instance.clone());
    }
    let (_, instance, _) = merges.into_iter().next()?;
    // Settled once any other job of the task recorded an outcome for the head (its deploy ran and
    // was judged, or a job told a human it could not know): a human's retry then deploys.
    let jobs = engine.store().jobs_for_task(ctx.task.id).await.ok()?;
    let told = jobs.iter().any(|j| j.id != ctx.job.id && j.outcome().is_some_and(|o| o.merged_head() == Some(head)));
    (!told).then_some(instance)
}

/// The merges `job` recorded on its task's timeline (its `merged` events), oldest first, as the
/// head landed and the instance that landed it; `None` when the timeline could not be read.
pub(crate) async fn merges_by_job(
    engine: &Engine,
    task: baton_domain::TaskId,
    job: baton_domain::JobId,
) -> Option<Vec<(String, String)>> {
    let merges = merges_of_task(engine, task).await?;
    Some(merges.into_iter().filter(|(_, _, by)| *by == job).map(|(head, instance, _)| (head, instance)).collect())
}

/// Every merge recorded on the task's timeline (its `merged` events), oldest first: the head
/// landed, the instance that landed it and the job that did; `None` when the timeline could not
/// be read.
async fn merges_of_task(
    engine: &Engine,
    task: baton_domain::TaskId,
) -> Option<Vec<(String, String, baton_domain::JobId)>> {
    let (mut after, mut merges) = (0, Vec::new());
    for _ in 0..TIMELINE_PAGES_MAX {
        let page = engine.store().events(Some(task), after, TIMELINE_PAGE).await.ok()?;
        merges.extend(page.iter().filter(|e| e.kind == "merged").filter_map(|e| {
            let detail = &e.detail;
            let job = baton_domain::JobId(detail.get("job")?.as_i64()?);
            Some((detail.get("head")?.as_str()?.to_string(), detail.get("instance")?.as_str()?.to_string(), job))
        }));
        match page.last() {
            Some(last) if page.len() == TIMELINE_PAGE as usize => after = last.id,
            _ => break,
        }
    }
    Some(merges)
}

/// Timeline events read per page, and pages at most, when looking for an earlier merge by the
/// same job.
const TIMELINE_PAGE: u32 = 500;
const TIMELINE_PAGES_MAX: u32 = 40;

/// Where this instance records the deploy of `head` (one directory per head, see [`deploy_command`]).
fn deploy_run_dir(ctx: &JobContext<'_>, head: &str) -> PathBuf {
    repo_deploy_run_dir(ctx.engine, &ctx.repo.name, head)
}

/// The run directory of `repo`'s deploy of `head` (keyed by the head: one deploy per commit).
pub(crate) fn repo_deploy_run_dir(engine: &Engine, repo: &str, head: &str) -> PathBuf {
    engine.settings().runs_dir().join(repo).join("deploys").join(head)
}

/// Pages of timeline events read looking for the landed head's coverage measurement.
const COVERAGE_EVENT_PAGES_MAX: usize = 50;

/// Once `head` has landed: raises the repository's coverage baseline to what the merge gate
/// measured on exactly that head (compare-and-set: never down). An observer: a failure here is a
/// warning, never a failed deploy.
async fn ratchet_coverage(ctx: &JobContext<'_>, head: &str) {
    let (engine, repo) = (ctx.engine, ctx.repo);
    if repo.coverage.is_none() || !engine.features().enabled(Feature::Coverage, &repo.name) {
        return;
    }
    let store = engine.store();
    let mut measured = None;
    let mut after = 0;
    for _ in 0..COVERAGE_EVENT_PAGES_MAX {
        let Ok(page) = store.events(Some(ctx.task.id), after, 500).await else { return };
        let Some(last) = page.last() else { break };
        after = last.id;
        for event in page.iter().filter(|e| e.kind == "coverage") {
            if event.detail.get("head").and_then(|h| h.as_str()) == Some(head) {
                measured = event.detail.get("pct").and_then(serde_json::Value::as_f64).or(measured);
            }
        }
    }
    let Some(pct) = measured else { return };
    let holder = baton_store::task_holder(ctx.task.id);
    let now = engine.clock().now_ms();
    let (kind, message) =
        match store.raise_coverage_baseline(&repo.name, pct, &holder, &ctx.task.work_item_id, now).await {
            Ok(true) => ("coverage_baseline", format!("coverage baseline of {} raised to {pct:.2}%", repo.name)),
            Ok(false) => return,
            Err(error) => ("warning", format!("cannot raise the coverage baseline of {}: {error}", repo.name)),
        };
    let event = NewEvent {
        task: ctx.task.id,
        at_ms: now,
        kind: kind.into(),
        stage: ctx.stage.name.clone(),
        message,
        detail: serde_json::json!({ "repo": repo.name, "pct": pct, "head": head }),
    };
    let _ = store.append_event(event).await;
}

/// The deploy stage of a change that landed inside a batch: the batch's last change merged the
/// batch's one commit under the merge lease; this one only confirms the default branch holds it
/// and deploys that commit at most once (whichever of the batch's deploy jobs runs it first).
async fn deploy_batch_member(ctx: &JobContext<'_>, entry: &baton_store::QueueEntry) -> Result<Deployed, Refused> {
    let engine = ctx.engine;
    let head = timed(ctx, engine.vcs().rev(&ctx.worktree, "HEAD")).await.ok_or("the worktree has no HEAD")?;
    let passed = merge_gate_head(ctx)
        .await
        .map_err(|error| Refused::Machine(format!("cannot read the task's jobs: {error}")))?;
    match passed {
        Some(passed) if passed == head && entry.head.as_deref() == Some(head.as_str()) => {}
        _ => {
            return Err(format!(
                "the worktree is at {head}, not at the batch's commit the merge gate recorded; refusing to deploy"
            )
            .into());
        }
    }
    if let Some(remote) = ctx.repo.remote() {
        timed(ctx, engine.vcs().sync_remote(&ctx.repo.path, &remote, &ctx.repo.default_branch))
            .await
            .map_err(|error| format!("cannot fetch the remote: {error}"))?;
    }
    let main = timed(ctx, engine.vcs().rev(&ctx.repo.path, &ctx.repo.default_ref())).await.unwrap_or_default();
    if main != head && !timed(ctx, engine.vcs().is_ancestor(&ctx.repo.path, &head, &main)).await {
        return Err(Refused::LeaseLost(format!(
            "the batch's commit {} is not on {}; back to the merge queue",
            &head[..head.len().min(10)],
            ctx.repo.default_branch
        )));
    }
    let short = &head[..head.len().min(10)];
    let message = format!("{} holds {short}: landed with its batch", ctx.repo.default_branch);
    let _ = engine
        .store()
        .append_event(NewEvent {
            task: ctx.task.id,
            at_ms: engine.clock().now_ms(),
            kind: "merged".into(),
            stage: ctx.stage.name.clone(),
            message: message.clone(),
            detail: serde_json::json!({ "head": head, "batch": entry.batch.map(|t| t.0) }),
        })
        .await;
    let mut merged = GateVerdict::new(baton_domain::MERGED_VERDICT, Verdict::Pass, message);
    merged.evidence = Some(head.clone());
    let gates = ctx.gates();
    let failed = match RepoCommand::Deploy.argv(&gates) {
        None => None,
        // A later change landed on top of the batch (the lease the batch landed under is free
        // again): that change's deploy carries this commit. Deploying this older commit now would
        // run beside that deploy and could take the target back to it.
        Some(_) if main != head => {
            note_moved_past(ctx, &head, &main).await;
            None
        }
        Some(argv) => deploy_command(ctx, &gates, &head, &argv).await,
    };
    let failed = failed.map(|reason| GateVerdict::new("deploy", Verdict::Fail, reason));
    Ok(Deployed { merged, failed })
}

/// Records that `head` is not deployed because the default branch moved past it to `main`: the
/// later change's deploy carries it.
async fn note_moved_past(ctx: &JobContext<'_>, head: &str, main: &str) {
    let message = format!(
        "{} moved past {} to {}: the later change's deploy carries it; not deploying it again",
        ctx.repo.default_branch,
        &head[..head.len().min(10)],
        &main[..main.len().min(10)]
    );
    deploy_note(ctx, message, serde_json::json!({ "head": head, "main": main })).await;
}

/// A `deploy` line on the task's timeline: why this job runs no deploy command.
async fn deploy_note(ctx: &JobContext<'_>, message: String, detail: serde_json::Value) {
    let engine = ctx.engine;
    let event = NewEvent {
        task: ctx.task.id,
        at_ms: engine.clock().now_ms(),
        kind: "deploy".into(),
        stage: ctx.stage.name.clone(),
        message,
        detail,
    };
    let _ = engine.store().append_event(event).await;
}

/// Runs the repository's `deploy` for `head` at most once: its run directory is keyed by the head,
/// so a deploy still running is waited for, one that succeeded is not run again (whichever job ran
/// it), and one that failed or was killed is run again only by a new job (a human's retry), never
/// by a re-adoption. Returns why it failed, or `None` when the head is deployed.
async fn deploy_command(ctx: &JobContext<'_>, gates: &GateContext<'_>, head: &str, argv: &[String]) -> Option<String> {
    let engine = ctx.engine;
    let commands = engine.commands();
    let run_dir = deploy_run_dir(ctx, head);
    let owner = format!("job:{}", ctx.job.id);
    let launched_by = commands.owner(&run_dir);
    let ours = launched_by.as_deref() == Some(owner.as_str());
    match commands.previous(&run_dir) {
        Previous::Running(_) => {} // waited for below, never started twice
        Previous::Exited(exit) if exit.code == Some(0) => {
            if !ours {
                let by = launched_by.unwrap_or_else(|| "an earlier job".to_string());
                let message =
                    format!("{} was already deployed by {by}; not deploying it again", &head[..head.len().min(10)]);
                deploy_note(ctx, message, serde_json::Value::Null).await;
            }
            return None;
        }
        Previous::Exited(_) if ours => {} // its recorded failure is taken below
        Previous::Vanished(_) if ours => {
            return Some(format!(
                "the deploy of {} was interrupted (its process group was killed) and its outcome is unknown; \
                 check the target, then `baton task retry` to deploy again",
                &head[..head.len().min(10)]
            ));
        }
        Previous::Exited(_) | Previous::Vanished(_) => {
            // A new job (a human's retry) deploys again; the earlier attempt's records are kept.
            if let Err(error) = commands.archive(&run_dir) {
                return Some(format!("deploy could not start: {error}"));
            }
        }
        Previous::Nothing => {}
    }
    let request = gates::command_request(gates, argv, run_dir);
    // A deploy that started runs to its end (its own timeout still applies): a STOP never reaches
    // a running deploy (it is critical), so the job's stop only comes from this instance finding
    // the job taken away — declared dead while alive, after a stall past the grace period. The
    // instance that took the job over never deploys this head again (it blocks for a human), so
    // cutting the deploy short would only leave the target half-deployed.
    let (_never, unstoppable) = tokio::sync::watch::channel(false);
    match timed(ctx, commands.run(&request, unstoppable)).await {
        Ok(run) => {
            if run.provenance == Provenance::Adopted {
                tracing::info!(task = %ctx.task.work_item_id, "waited for the deploy started before a restart");
            }
            if run.output.exit.success() {
                None
            } else {
                Some(format!("`{}` {}; output tail:\n{}", argv.join(" "), run.output.exit.describe(), run.output.tail))
            }
        }
        Err(error) => Some(format!("deploy could not run: {error}")),
    }
}

/// Where a job's run directory is (`<runs>/<work item>/<stage>-job<id>`).
pub fn job_run_dir(runs_dir: &Path, work_item: &str, stage: &str, job: baton_domain::JobId) -> PathBuf {
    runs_dir.join(work_item).join(format!("{stage}-job{job}"))
}
