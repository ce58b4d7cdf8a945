//! The engine handle: creating tasks, applying human inputs and job results through `decide`,
//! performing the effects of committed decisions, and the claim loop.

use crate::EngineError;
use crate::clock::{Clock, SystemClock};
use crate::executor::{self, Start};
use crate::settings::EngineSettings;
use crate::workspace::{remove_worktree, worktree_path};
use baton_adapters::forge::{Forge, ForgeRepo, LocalForge};
use baton_adapters::notifier::{LogNotifier, Notification, Notifier};
use baton_adapters::tracker::{LocalTracker, Tracker, TrackerUpdate};
use baton_domain::{Decision, Effect, Event, JobId, Pipeline, TaskState};
use baton_store::{
    Advance, Claim, InboxEntry, JobFinish, JobRecord, JobStatus, NewEvent, NewTask, Store, StoreError, TaskFilter,
    TaskKey, TaskRecord, Transition,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How often paused-on-quota tasks are checked for their resume time.
const QUOTA_TIMER_MS: i64 = 1_000;
/// Re-reads and re-decides after a lost compare-and-set at most this many times.
const ADVANCE_ATTEMPTS_MAX: u32 = 8;
/// Longest title accepted for a task.
pub const TITLE_CHARS_MAX: usize = 200;
/// Largest body accepted for a task.
pub const BODY_BYTES_MAX: usize = 100_000;
/// Largest human answer accepted.
pub const ANSWER_BYTES_MAX: usize = 20_000;
/// Environment variables every agent and repo command gets (when set), before pass-through.
const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM"];

/// A task to create through the engine.
#[derive(Debug, Clone)]
pub struct NewTaskRequest {
    pub repo: String,
    pub title: String,
    pub body: String,
    pub external_ref: Option<String>,
}

/// A human input (CLI, API, later tracker and Telegram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Approve,
    Answer {
        text: String,
    },
    ConfirmDeploy,
    Retry,
    /// Resume a task paused for budget or quota.
    Resume,
    Stop,
}

impl Input {
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Approve => "approve",
            Input::Answer { .. } => "answer",
            Input::ConfirmDeploy => "confirm_deploy",
            Input::Retry => "retry",
            Input::Resume => "resume",
            Input::Stop => "stop",
        }
    }

    fn event(&self, by: &str) -> Event {
        let by = by.to_string();
        match self {
            Input::Approve => Event::Approved { by },
            Input::Answer { text } => Event::Answered { by, text: text.clone() },
            Input::ConfirmDeploy => Event::DeployConfirmed { by },
            Input::Retry => Event::Retry { by },
            Input::Resume => Event::Resume { by },
            Input::Stop => Event::Stop { by, critical: false },
        }
    }
}

/// What an input or job result did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum InputOutcome {
    Applied {
        note: String,
    },
    Suppressed {
        reason: String,
    },
    /// The dedup key was seen before: nothing changed.
    Duplicate,
}

/// The engine: shared by the claim loop, job executors, the HTTP API and the CLI.
pub struct Engine {
    pub settings: EngineSettings,
    pub pipeline: Pipeline,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub forge: Arc<dyn Forge>,
    pub notifier: Arc<dyn Notifier>,
    pub tracker: Arc<dyn Tracker>,
    /// Identifies this process as job owner.
    pub owner: String,
    pub(crate) running: Mutex<HashMap<JobId, watch::Sender<bool>>>,
    wake: Notify,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("owner", &self.owner).finish()
    }
}

impl Engine {
    /// An engine with the built-in local tracker, forge and notifier.
    pub fn new(settings: EngineSettings, store: Arc<dyn Store>) -> Arc<Engine> {
        let pipeline = settings.effective_pipeline();
        Arc::new(Engine {
            pipeline,
            settings,
            store,
            clock: Arc::new(SystemClock),
            forge: Arc::new(LocalForge),
            notifier: Arc::new(LogNotifier),
            tracker: Arc::new(LocalTracker),
            owner: format!("pid:{}", std::process::id()),
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// An engine reading time from `clock` (simulations and time-travel tests).
    pub fn with_clock(settings: EngineSettings, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Arc<Engine> {
        let mut engine = Engine::new(settings, store);
        if let Some(inner) = Arc::get_mut(&mut engine) {
            inner.clock = clock;
        }
        engine
    }

    /// Wakes the claim loop (a job became runnable).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The minimal environment for agents and repo commands: a fixed allowlist plus pass-through.
    pub fn minimal_env(&self) -> Vec<(String, String)> {
        BASE_ENV
            .iter()
            .map(|name| name.to_string())
            .chain(self.settings.env_passthrough.iter().cloned())
            .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
            .collect()
    }

    /// Creates a task and enqueues its first stage; returns the stored task with its work-item id.
    pub async fn create_task(&self, request: NewTaskRequest) -> Result<TaskRecord, EngineError> {
        let repo = self.settings.repo(&request.repo).ok_or_else(|| {
            let known: Vec<&str> = self.settings.repos.iter().map(|r| r.name.as_str()).collect();
            EngineError::Invalid(format!(
                "unknown repository `{}`; configured: {}",
                request.repo,
                if known.is_empty() {
                    "none (add a [[repos]] entry to baton.toml)".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        let title = request.title.trim();
        if title.is_empty() {
            return Err(EngineError::Invalid("the title is empty; give a short summary of the ticket".into()));
        }
        if title.chars().count() > TITLE_CHARS_MAX {
            return Err(EngineError::Invalid(format!("the title is longer than {TITLE_CHARS_MAX} characters")));
        }
        if request.body.len() > BODY_BYTES_MAX {
            return Err(EngineError::Invalid(format!("the body is larger than {BODY_BYTES_MAX} bytes")));
        }
        let first = self.pipeline.first().ok_or_else(|| EngineError::Invalid("the pipeline has no stages".into()))?;
        let state = TaskState::new(&first.name);
        let now = self.clock.now_ms();
        let transition = match baton_domain::decide(&state, &Event::Created, &self.pipeline, now) {
            Decision::Apply { effects, .. } => transition_of(&effects),
            Decision::Suppress { reason } => return Err(EngineError::Invalid(reason)),
        };
        let new = NewTask {
            repo: repo.name.clone(),
            prefix: repo.prefix.clone(),
            title: title.to_string(),
            body: request.body,
            external_ref: request.external_ref,
            state,
        };
        let task = self.store.create_task(new, transition, now).await?;
        self.wake();
        Ok(task)
    }

    /// Applies a human input to a task. With a dedup key, a replay changes nothing.
    pub async fn submit(
        &self,
        key: &TaskKey,
        input: Input,
        by: &str,
        dedup_key: Option<String>,
    ) -> Result<InputOutcome, EngineError> {
        if let Input::Answer { text } = &input
            && (text.trim().is_empty() || text.len() > ANSWER_BYTES_MAX)
        {
            return Err(EngineError::Invalid(format!("the answer must be 1 to {ANSWER_BYTES_MAX} bytes of text")));
        }
        let task = self.store.task(key).await?.ok_or_else(|| EngineError::NotFound(format!("task {key}")))?;
        // Without a caller's key, the input is keyed by what it does to which task version: a
        // replay of the same command on the same state is a duplicate and changes nothing.
        let dedup_key = dedup_key.unwrap_or_else(|| auto_dedup_key(&task, &input));
        let inbox = Some(InboxEntry {
            dedup_key,
            kind: input.kind().to_string(),
            payload: serde_json::json!({ "by": by, "input": format!("{input:?}") }),
        });
        self.apply_event(task.id, &input.event(by), None, inbox).await
    }

    /// Whether the task's merge/deploy actor is running right now (a STOP must then wait for it).
    /// Idle parking, such as waiting for Confirm Deploy while holding the lease, is not critical.
    async fn in_critical_step(&self, task: &TaskRecord) -> Result<bool, EngineError> {
        let deploying = self.pipeline.stage(&task.state.stage).is_some_and(|s| s.actor == baton_domain::Actor::Deploy);
        let Some(job) = task.state.job.filter(|_| deploying) else {
            return Ok(false);
        };
        Ok(self.store.job(job).await?.is_some_and(|j| j.status == JobStatus::Running))
    }

    /// Decides `event` for the task and commits it atomically; re-decides after a lost race.
    pub async fn apply_event(
        &self,
        task_id: baton_domain::TaskId,
        event: &Event,
        finish: Option<JobFinish>,
        inbox: Option<InboxEntry>,
    ) -> Result<InputOutcome, EngineError> {
        for _ in 0..ADVANCE_ATTEMPTS_MAX {
            let task = self
                .store
                .task(&TaskKey::Id(task_id))
                .await?
                .ok_or_else(|| EngineError::NotFound(format!("task {task_id}")))?;
            let now = self.clock.now_ms();
            // Whether a STOP must wait is judged on the state it is decided against: a claim of
            // the deploy job bumps the task version, so a STOP read before it loses its CAS here.
            let mut event = event.clone();
            if let Event::Stop { critical, .. } = &mut event {
                *critical = self.in_critical_step(&task).await?;
            }
            let event = &event;
            match baton_domain::decide(&task.state, event, &self.pipeline, now) {
                Decision::Suppress { reason } => {
                    // One structured line per late, stale or duplicate caller (SPEC §4.3).
                    tracing::info!(
                        task = %task.work_item_id, caller = %event.caller(), target = event.kind(),
                        stage = %task.state.display(), verdict = "suppressed", "{reason}"
                    );
                    let row = NewEvent {
                        task: task.id,
                        at_ms: now,
                        kind: "suppressed".into(),
                        stage: task.state.stage.clone(),
                        message: format!("{} suppressed: {reason}", event.kind()),
                        detail: serde_json::json!({ "event": event }),
                    };
                    match self.store.record_suppressed(task.id, inbox, row).await {
                        Err(StoreError::Duplicate(_)) => return Ok(InputOutcome::Duplicate),
                        other => other?,
                    }
                    if let Some(finish) = finish {
                        // The result is stale, but the job must not stay `running`.
                        self.store.close_job(finish.job, JobStatus::Cancelled, finish.result).await?;
                    }
                    return Ok(InputOutcome::Suppressed { reason });
                }
                Decision::Apply { next, effects, note } => {
                    let stop_groups = if effects.contains(&Effect::StopAgent) {
                        self.running_groups(task.id).await?
                    } else {
                        Vec::new()
                    };
                    let advance = Advance {
                        task: task.id,
                        expected_version: task.version,
                        next: next.clone(),
                        finish_job: finish.clone(),
                        event: NewEvent {
                            task: task.id,
                            at_ms: now,
                            kind: event.kind().to_string(),
                            stage: next.stage.clone(),
                            message: note.clone(),
                            detail: serde_json::json!({ "from": task.state.display(), "to": next.display(), "event": event }),
                        },
                        transition: transition_of(&effects),
                        inbox: inbox.clone(),
                        now_ms: now,
                    };
                    match self.store.advance(advance).await {
                        Ok(_) => {
                            tracing::info!(task = %task.work_item_id, "{note}");
                            self.after_commit(&task, &next, &effects, stop_groups).await;
                            self.wake();
                            return Ok(InputOutcome::Applied { note });
                        }
                        Err(StoreError::Conflict(why)) => {
                            tracing::debug!(task = %task.work_item_id, "lost the advance race ({why}); deciding again");
                            continue;
                        }
                        Err(StoreError::Duplicate(_)) => return Ok(InputOutcome::Duplicate),
                        Err(other) => return Err(other.into()),
                    }
                }
            }
        }
        Err(EngineError::Invalid(format!(
            "task {task_id} kept changing; gave up after {ADVANCE_ATTEMPTS_MAX} attempts"
        )))
    }

    async fn running_groups(&self, task: baton_domain::TaskId) -> Result<Vec<(JobId, Option<u32>)>, EngineError> {
        let jobs = self.store.jobs_for_task(task).await?;
        Ok(jobs.into_iter().filter(|j| j.status == JobStatus::Running).map(|j| (j.id, j.pgid)).collect())
    }

    /// Performs a committed decision's external effects. Observers never fail the transition:
    /// every error here is logged and recorded, never returned.
    async fn after_commit(
        &self,
        task: &TaskRecord,
        next: &TaskState,
        effects: &[Effect],
        stop: Vec<(JobId, Option<u32>)>,
    ) {
        let grace = Duration::from_secs(self.settings.limits.stop_grace_secs);
        for (job, pgid) in stop {
            self.signal_stop(job);
            if let Some(pgid) = pgid {
                baton_runner::stop_group(pgid, grace).await;
            }
        }
        let repo = self.settings.repo(&task.repo);
        // A repository directory that no longer exists has no worktrees to remove.
        if effects.contains(&Effect::RemoveWorktree)
            && let Some(repo) = repo.filter(|r| r.path.exists())
        {
            let result = match worktree_path(&self.settings.worktrees_dir(), &task.repo, &task.work_item_id) {
                Ok(path) => remove_worktree(repo, &path).await,
                Err(e) => Err(e),
            };
            if let Err(error) = result {
                self.observer_error(task, "remove worktree", &error.to_string()).await;
            }
        }
        if effects.contains(&Effect::DeleteBranch)
            && let Some(repo) = repo
        {
            let forge_repo = forge_repo(repo);
            if let Err(error) = self.forge.delete_branch(&forge_repo, &task.branch).await {
                self.observer_error(task, "delete branch", &error.to_string()).await;
            }
        }
        for effect in effects {
            if let Effect::Notify { kind, text } = effect {
                let notification = Notification {
                    work_item: task.work_item_id.clone(),
                    title: task.title.clone(),
                    kind: *kind,
                    text: text.clone(),
                };
                if let Err(error) = self.notifier.notify(&notification).await {
                    self.observer_error(task, "notify", &error.to_string()).await;
                }
            }
        }
        let update = TrackerUpdate {
            work_item: task.work_item_id.clone(),
            external_ref: task.external_ref.clone(),
            title: task.title.clone(),
            status: next.display(),
        };
        if let Err(error) = self.tracker.task_changed(&update).await {
            self.observer_error(task, "tracker update", &error.to_string()).await;
        }
    }

    async fn observer_error(&self, task: &TaskRecord, what: &str, error: &str) {
        tracing::warn!(task = %task.work_item_id, "{what} failed: {error}");
        let _ = self
            .store
            .append_event(NewEvent {
                task: task.id,
                at_ms: self.clock.now_ms(),
                kind: "warning".into(),
                stage: task.state.stage.clone(),
                message: format!("{what} failed: {error}"),
                detail: serde_json::Value::Null,
            })
            .await;
    }

    /// Asks a job running in this process to stop its agent.
    pub(crate) fn signal_stop(&self, job: JobId) {
        if let Ok(running) = self.running.lock()
            && let Some(sender) = running.get(&job)
        {
            let _ = sender.send(true);
        }
    }

    /// Registers `job` as running here and starts its executor.
    pub fn start_job(self: &Arc<Self>, job: JobRecord, start: Start) {
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Ok(mut running) = self.running.lock() {
            if running.contains_key(&job.id) {
                return;
            }
            running.insert(job.id, stop_tx);
        }
        tokio::spawn(executor::execute(self.clone(), job, stop_rx, start));
    }

    /// Whether a job's agent (started by any Baton) is still running or has recorded its exit.
    async fn agent_outlives(&self, job: &JobRecord) -> Result<bool, EngineError> {
        if job.pgid.is_none() {
            return Ok(false);
        }
        let runs = self.store.agent_runs(job.task_id).await?;
        Ok(runs
            .iter()
            .rev()
            .find(|r| r.job_id == job.id)
            .is_some_and(|r| baton_runner::shim::survives(job.pgid, job.proc_start, std::path::Path::new(&r.log_path))))
    }

    /// Puts work interrupted by a previous process back in the queue when nothing of it survives
    /// (no agent still running, no recorded agent exit). Jobs whose agent outlived that process are
    /// left `running` for [`Engine::adopt_orphans`]: their agent must not run a second time.
    pub async fn recover(&self) -> Result<u32, EngineError> {
        let mut recovered = 0;
        for job in self.store.jobs_with_status(JobStatus::Running).await? {
            if self.is_running_here(job.id) || self.agent_outlives(&job).await? {
                continue;
            }
            if self.store.requeue_job(job.id, self.clock.now_ms()).await? {
                tracing::info!(job = %job.id, stage = %job.stage, owner = ?job.owner, "requeued a job interrupted by a restart");
                recovered += 1;
            }
        }
        Ok(recovered)
    }

    /// Re-adopts running jobs that no executor of this process watches (their Baton died, or their
    /// executor vanished): the executor waits for the surviving agent or takes its recorded result.
    pub async fn adopt_orphans(self: &Arc<Self>) -> Result<u32, EngineError> {
        let mut adopted = 0;
        for job in self.store.jobs_with_status(JobStatus::Running).await? {
            if self.is_running_here(job.id) {
                continue;
            }
            tracing::info!(job = %job.id, stage = %job.stage, owner = ?job.owner, "re-adopting an orphaned running job");
            self.store.set_job_owner(job.id, &self.owner).await?;
            self.start_job(job, Start::Adopt);
            adopted += 1;
        }
        Ok(adopted)
    }

    fn is_running_here(&self, job: JobId) -> bool {
        self.running.lock().map(|r| r.contains_key(&job)).unwrap_or(false)
    }

    /// Resumes tasks paused on provider quota whose resume time has come.
    pub async fn resume_due_quota_pauses(&self) -> Result<u32, EngineError> {
        let now = self.clock.now_ms();
        let mut resumed = 0;
        for task in self.store.list_tasks(&TaskFilter { active_only: true, repo: None }).await? {
            if let baton_domain::Hold::PausedQuota { resume_at_ms, .. } = task.state.hold
                && resume_at_ms <= now
                && let InputOutcome::Applied { .. } =
                    self.apply_event(task.id, &Event::Resume { by: "quota timer".into() }, None, None).await?
            {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// The claim loop: recovers interrupted work, then claims runnable jobs under the limits and
    /// runs each on its own task until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        match self.recover().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("recovered {n} interrupted job(s)"),
            Err(error) => tracing::error!("recovery failed: {error}"),
        }
        if let Err(error) = self.adopt_orphans().await {
            tracing::error!("re-adopting running jobs failed: {error}");
        }
        crate::reaper::sweep_at_start(&self).await;
        let poll = Duration::from_millis(self.settings.limits.poll_interval_ms.max(10));
        let mut last_timer_ms = i64::MIN;
        // Periodic work first runs one interval after start (recovery just ran).
        let mut last_reaper_ms = self.clock.now_ms();
        let mut last_reconciler_ms = last_reaper_ms;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = self.clock.now_ms();
            if now.saturating_sub(last_timer_ms) >= QUOTA_TIMER_MS {
                last_timer_ms = now;
                if let Err(error) = self.resume_due_quota_pauses().await {
                    tracing::error!("resuming quota-paused tasks failed: {error}");
                }
            }
            if self.settings.limits.reaper_interval_secs > 0
                && now.saturating_sub(last_reaper_ms) >= self.settings.limits.reaper_interval_secs as i64 * 1000
            {
                last_reaper_ms = now;
                crate::reaper::tick(&self).await;
            }
            if self.settings.limits.reconciler_interval_secs > 0
                && now.saturating_sub(last_reconciler_ms) >= self.settings.limits.reconciler_interval_secs as i64 * 1000
            {
                last_reconciler_ms = now;
                crate::reconciler::tick(&self).await;
            }
            loop {
                let claim = Claim {
                    owner: self.owner.clone(),
                    now_ms: self.clock.now_ms(),
                    running_max: self.settings.limits.running_max,
                    running_per_repo_max: self.settings.limits.running_per_repo_max,
                };
                match self.store.claim_job(&claim).await {
                    Ok(Some(job)) => self.start_job(job, Start::Fresh),
                    Ok(None) => break,
                    Err(error) => {
                        tracing::error!("claiming a job failed: {error}");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// The inbox key of an input given without one: kind, task, task version and (for answers) a
/// digest of the text.
fn auto_dedup_key(task: &TaskRecord, input: &Input) -> String {
    let text = match input {
        Input::Answer { text } => {
            // FNV-1a: a stable digest without a dependency; collisions only merge identical-looking replays.
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in text.bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
            format!(":{hash:016x}")
        }
        _ => String::new(),
    };
    format!("auto:{}:{}:v{}{text}", input.kind(), task.id, task.version)
}

/// The store-side part of a decision's effects.
pub fn transition_of(effects: &[Effect]) -> Transition {
    let mut transition = Transition::default();
    for effect in effects {
        match effect {
            Effect::EnqueueJob { stage, delay_ms } => transition.enqueue = Some((stage.clone(), *delay_ms as i64)),
            Effect::CancelJobs => transition.cancel_jobs = true,
            Effect::ReleaseLeases => transition.release_leases = true,
            _ => {}
        }
    }
    transition
}

pub(crate) fn forge_repo(repo: &crate::settings::RepoSettings) -> ForgeRepo {
    ForgeRepo { name: repo.name.clone(), path: repo.path.clone(), default_branch: repo.default_branch.clone() }
}
