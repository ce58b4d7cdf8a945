//! Plain records read from and written to the store.

use baton_domain::{AgentReport, JobId, TaskId, TaskState};
use serde::Serialize;
use std::fmt;

/// Holder name used for leases taken on behalf of a task.
pub fn task_holder(task: TaskId) -> String {
    format!("task:{task}")
}

/// How a task is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKey {
    Id(TaskId),
    WorkItem(String),
}

impl TaskKey {
    /// `42` → id 42; anything else is a work-item id.
    pub fn parse(text: &str) -> Self {
        match text.parse::<i64>() {
            Ok(id) => TaskKey::Id(TaskId(id)),
            Err(_) => TaskKey::WorkItem(text.to_string()),
        }
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskKey::Id(id) => write!(f, "{id}"),
            TaskKey::WorkItem(w) => f.write_str(w),
        }
    }
}

/// Which tasks a listing shows; every `None` is "any".
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Hide done and cancelled tasks.
    pub active_only: bool,
    pub repo: Option<String>,
    /// Only tasks in this stage (`review`, `done`, ...).
    pub stage: Option<String>,
    /// Only tasks with this hold kind ([`baton_domain::Hold::label`]; empty for none).
    pub hold: Option<String>,
}

/// Open jobs by status ([`Store::job_counts`](crate::Store::job_counts)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
}

/// How many tasks share a stage and a hold ([`Store::task_counts`](crate::Store::task_counts)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskCount {
    pub stage: String,
    /// The hold's label (`awaiting_approval`, …), empty when the task holds for nothing.
    pub hold: String,
    pub tasks: u64,
}

/// A task to create.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub repo: String,
    pub prefix: String,
    pub title: String,
    pub body: String,
    pub external_ref: Option<String>,
    /// Initial state (first stage, no job yet).
    pub state: TaskState,
    /// The idempotency key this create answers (see [`crate::Store::begin_idempotent`]): the same
    /// transaction records the new task under it.
    pub idempotency_key: Option<String>,
    /// Tasks the new one waits for (SPEC §6.4), recorded in the same transaction, so its first
    /// job is never claimed before them. Each must exist.
    pub depends_on: Vec<TaskId>,
}

/// A stored task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub repo: String,
    pub work_item_id: String,
    pub title: String,
    pub body: String,
    pub branch: String,
    pub external_ref: Option<String>,
    pub state: TaskState,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A stored job.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: JobId,
    pub task_id: TaskId,
    pub repo: String,
    pub stage: String,
    pub attempt: u32,
    pub status: JobStatus,
    pub available_at_ms: i64,
    /// Claim preference: higher first, then `available_at_ms`, then id (see [`Transition::rank`]).
    pub rank: i64,
    pub owner: Option<String>,
    pub pid: Option<u32>,
    pub pgid: Option<u32>,
    /// Start time of the agent process in clock ticks since boot (pid-reuse guard).
    pub proc_start: Option<u64>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub result: Option<serde_json::Value>,
}

impl JobRecord {
    /// Whether the job runs under `claimant`'s claim: running, and owned by `claimant` or by no
    /// one recorded (a single machine's jobs from before owners). What a job finish naming its
    /// claim (`JobFinish::claimed_by`) requires.
    pub fn runs_under_claim(&self, claimant: &str) -> bool {
        self.status == JobStatus::Running && self.owner.as_deref().is_none_or(|owner| owner == claimant)
    }

    /// The outcome the job's executor recorded in its result, when it ended with one.
    pub fn outcome(&self) -> Option<baton_domain::JobOutcome> {
        let outcome = self.result.as_ref()?.get("outcome")?;
        serde_json::from_value(outcome.clone()).ok()
    }
}

/// A claim request: who claims, when, and the concurrency limits to respect.
///
/// Two gates keep a job out of the claim without it holding a slot (SPEC §6.4): a job whose task
/// depends on a task that is not done is skipped (except in `dependency_free_repos`, where the
/// dependencies switch is off), and in `serial_repos` a first-stage job (rank 1, or 0 for a stage
/// the pipeline does not name) is skipped while an earlier unfinished task of its repository exists.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    pub owner: String,
    pub now_ms: i64,
    pub running_max: u32,
    pub running_per_repo_max: u32,
    /// Repositories whose tasks' dependencies the claim ignores.
    pub dependency_free_repos: Vec<String>,
    /// Repositories under the serial gate.
    pub serial_repos: Vec<String>,
}

/// Who declared the dependencies a task was created with ([`NewTask::depends_on`]).
pub const DEPENDS_AT_CREATE: &str = "created with the task";

/// One declared dependency: `task_id` is not claimed until `depends_on` is done. Read with the
/// dependency's current work item and stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyRecord {
    pub task_id: TaskId,
    pub depends_on: TaskId,
    pub depends_on_work_item: String,
    pub depends_on_stage: String,
    pub created_at_ms: i64,
    pub created_by: String,
}

impl DependencyRecord {
    /// Whether the dependency is met (its task is done).
    pub fn met(&self) -> bool {
        self.depends_on_stage == baton_domain::pipeline::DONE
    }
}

/// A timeline event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub task: TaskId,
    pub at_ms: i64,
    pub kind: String,
    pub stage: String,
    pub message: String,
    pub detail: serde_json::Value,
}

/// A stored timeline event.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub task_id: TaskId,
    pub at_ms: i64,
    pub kind: String,
    pub stage: String,
    pub message: String,
    pub detail: serde_json::Value,
}

/// An external input's dedup record (SPEC §4.5).
#[derive(Debug, Clone)]
pub struct InboxEntry {
    pub dedup_key: String,
    pub kind: String,
    pub payload: serde_json::Value,
}

/// The finished job of a transition, flipped from `running` in the same transaction.
#[derive(Debug, Clone)]
pub struct JobFinish {
    pub job: JobId,
    pub status: JobStatus,
    pub result: serde_json::Value,
    /// The instance whose claim ran the job (its executor's owner): the flip then also requires
    /// the job to be running under that claim (or under none recorded), so an instance that was
    /// declared dead and had the job taken over cannot end it under its new claimant — re-deciding
    /// after a lost version race would otherwise let its late result through. `None`: any claim
    /// (the reaper's backstop, which ends a job on its owner's behalf).
    pub claimed_by: Option<String>,
}

/// The store-side part of a decision (everything that must commit together).
#[derive(Debug, Clone, Default)]
pub struct Transition {
    /// Enqueue a job for this stage with this delay; it becomes the task's active job.
    pub enqueue: Option<(String, i64)>,
    /// Claim preference of the enqueued job: higher first; the stage's position in the pipeline,
    /// so work in progress finishes before new work starts (0 by default).
    pub rank: i64,
    pub cancel_jobs: bool,
    pub release_leases: bool,
}

/// One atomic stage change (SPEC §4.2).
#[derive(Debug, Clone)]
pub struct Advance {
    pub task: TaskId,
    pub expected_version: i64,
    pub next: TaskState,
    pub finish_job: Option<JobFinish>,
    pub event: NewEvent,
    pub transition: Transition,
    pub inbox: Option<InboxEntry>,
    /// The decision's external effects, written to the outbox in the same transaction.
    pub effects: Vec<NewEffect>,
    pub now_ms: i64,
}

/// An external effect of a decision, to be carried out after the commit by an outbox worker.
/// The store keeps it opaque: `kind` and a JSON `payload` the engine defines.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEffect {
    pub kind: String,
    pub payload: serde_json::Value,
}

/// A stored outbox row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectRecord {
    pub id: i64,
    pub task_id: TaskId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub created_at_ms: i64,
    pub available_at_ms: i64,
    /// Times a worker claimed it (1 on the first try).
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When it was acknowledged; `None` while pending.
    pub done_at_ms: Option<i64>,
}

/// Which outbox rows to claim.
#[derive(Debug, Clone)]
pub struct EffectClaim {
    pub now_ms: i64,
    /// Other workers do not see a claimed row for this long (then it is due again).
    pub claim_ms: i64,
    pub limit: u32,
    /// Only this task's rows (a CLI carrying out the effects of its own input).
    pub task: Option<TaskId>,
}

/// An agent run being started.
#[derive(Debug, Clone)]
pub struct NewAgentRun {
    pub job: JobId,
    pub task: TaskId,
    pub stage: String,
    pub adapter: String,
    pub model: Option<String>,
    pub pid: Option<u32>,
    pub started_at_ms: i64,
    pub log_path: String,
}

/// How an agent run ended.
#[derive(Debug, Clone)]
pub struct AgentRunFinish {
    pub ended_at_ms: i64,
    pub exit_code: Option<i32>,
    pub report: AgentReport,
    /// Baton ended the run itself (STOP, a budget, the reaper): it is recorded `stopped` whatever
    /// the report says, since a CLI may exit 0 on SIGTERM.
    pub stopped: bool,
}

impl AgentRunFinish {
    /// The run's recorded `status` and `error`: the one mapping every store uses.
    pub fn status_and_error(&self) -> (&'static str, Option<String>) {
        let (status, error) = match &self.report.status {
            baton_domain::AgentStatus::Succeeded => ("succeeded", None),
            baton_domain::AgentStatus::NeedsInput { .. } => ("needs_input", None),
            baton_domain::AgentStatus::Failed { message } => ("failed", Some(message.clone())),
            baton_domain::AgentStatus::QuotaExhausted { message, .. } => ("quota_exhausted", Some(message.clone())),
        };
        if self.stopped {
            return ("stopped", Some(error.unwrap_or_else(|| "stopped on request".to_string())));
        }
        (status, error)
    }
}

/// A stored agent run with its accounting.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRunRecord {
    pub id: i64,
    pub job_id: JobId,
    pub task_id: TaskId,
    pub stage: String,
    pub adapter: String,
    pub model: Option<String>,
    pub pid: Option<u32>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub status: Option<String>,
    pub error: Option<String>,
    pub session_id: Option<String>,
    pub turns: Option<u32>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: Option<f64>,
    pub log_path: String,
}

/// One `baton serve` sharing the store (SPEC §15): it writes a heartbeat every few seconds; its
/// jobs are `owner = id`. One that stops heartbeating for longer than the grace period is dead:
/// another instance requeues its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceRecord {
    /// Stable across restarts of the same instance (default: the host name and its data directory).
    pub id: String,
    pub host: String,
    /// The process id of its current run.
    pub pid: u32,
    /// When its current run started.
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
}

impl InstanceRecord {
    /// Whether it heartbeated within `grace_ms` of `now_ms`.
    pub fn is_alive(&self, now_ms: i64, grace_ms: i64) -> bool {
        now_ms - self.heartbeat_at_ms <= grace_ms
    }
}

/// A repository's coverage baseline (SPEC §5.1): raised by every merge that measured more, set
/// either way only by an authenticated override.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoverageBaseline {
    pub repo: String,
    /// Line coverage in percent.
    pub pct: f64,
    pub updated_at_ms: i64,
    /// Who set it: `task:<id>` for a merge's ratchet, the principal for an override.
    pub set_by: String,
    /// Why (the work item that raised it, or the override's reason).
    pub reason: String,
}

/// A repository freeze (SPEC §6.4): while open (`unfrozen_at_ms` is `None`), the merge queue
/// lands and deploys nothing in the repository but a revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoFreeze {
    pub id: i64,
    pub repo: String,
    /// The task whose deploy degraded, when a monitor froze the repository.
    pub task: Option<TaskId>,
    /// The incident task filed for it.
    pub incident: Option<TaskId>,
    /// The task reverting the degraded change, when the repository reverts on DEGRADED.
    pub revert: Option<TaskId>,
    /// Who froze it (`monitor`, or a principal).
    pub frozen_by: String,
    pub reason: String,
    pub frozen_at_ms: i64,
    /// The principal that unfroze it.
    pub unfrozen_by: Option<String>,
    pub unfrozen_at_ms: Option<i64>,
}

/// A new freeze, for [`crate::Store::freeze_repo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFreeze {
    pub repo: String,
    pub task: Option<TaskId>,
    pub frozen_by: String,
    pub reason: String,
}

/// A lease row.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseRecord {
    pub name: String,
    pub holder: String,
    /// Fencing token: strictly increases every time the lease changes hands.
    pub token: i64,
    pub acquired_at_ms: i64,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    Acquired { token: i64 },
    Busy { holder: String },
}

/// What usage totals are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    Task,
    Stage,
    Adapter,
    Model,
    Repo,
    Day,
}

/// One group of usage totals. `cost_usd` sums the priced runs; `unpriced_runs` counts the rest.
#[derive(Debug, Clone, Serialize)]
pub struct UsageRow {
    pub key: String,
    pub runs: u64,
    /// Distinct tasks with a run in the group (the denominator of "$ per task in this stage").
    pub tasks: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    pub unpriced_runs: u64,
}

/// A usage record reported by an outside tool (`POST /api/usage/ingest`, SPEC §9), to be stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewUsageRecord {
    /// Who spent it (`transcriber`, `ci-review`): with the idempotency key, the record's identity.
    pub source: String,
    /// The category it carries (mapped again at read time by `[usage.categories]`).
    pub category: String,
    pub model: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// How many units of `unit_kind` (minutes of audio, images, calls); 0 when none.
    pub units: f64,
    pub unit_kind: Option<String>,
    /// `None`: unpriced (unknown model and no reported cost).
    pub cost_usd: Option<f64>,
    /// `reported` (the client's own figure), `table` (the pricing table) or `none`.
    pub priced_by: String,
    /// Unique per source: a replay returns the first record.
    pub idempotency_key: Option<String>,
    pub task: Option<TaskId>,
    /// The repository it was spent for (set from the task when only the task is given).
    pub repo: Option<String>,
    /// When it was recorded, by the engine's clock.
    pub at_ms: i64,
    /// `api:<token name>`.
    pub principal: String,
}

/// A stored usage record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRecord {
    pub id: i64,
    #[serde(flatten)]
    pub record: NewUsageRecord,
}

/// What [`crate::Store::insert_usage_record`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageInsert {
    /// The new record, or the first one stored under the same (source, idempotency key).
    pub record: UsageRecord,
    /// `false`: a replay; nothing was stored.
    pub created: bool,
}

/// Totals of ingested usage records sharing (source, category, model, unit kind, repository, task,
/// UTC day): few rows, from which every read-time grouping is summed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRecordTotals {
    pub source: String,
    pub category: String,
    pub model: Option<String>,
    pub unit_kind: Option<String>,
    pub repo: Option<String>,
    /// `repo/WORK-ITEM` of the linked task.
    pub task: Option<String>,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub records: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub units: f64,
    /// Sum over priced records.
    pub cost_usd: f64,
    /// Units of priced records only (the denominator of $ per unit).
    pub priced_units: f64,
    pub unpriced_records: u64,
}

impl UsageRecordTotals {
    /// Sorts totals by their keys (`None` first), so every backend returns the same order.
    pub fn sort(rows: &mut [UsageRecordTotals]) {
        rows.sort_by(|a, b| {
            (&a.source, &a.category, &a.model, &a.unit_kind, &a.repo, &a.task, &a.day).cmp(&(
                &b.source,
                &b.category,
                &b.model,
                &b.unit_kind,
                &b.repo,
                &b.task,
                &b.day,
            ))
        });
    }
}

/// Spend of the tasks that reached done (the numerator of "$ per merged task").
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct DoneTaskSpend {
    pub tasks: u64,
    pub agent_cost_usd: f64,
    /// Ingested records linked to those tasks.
    pub ingested_cost_usd: f64,
}

/// Which spend a total covers; every `None` is "any". Agent runs always count; ingested usage
/// records count only when they carry a repository (their own, or their task's): a task filter
/// takes the records linked to the task, a repository filter the records of that repository, and
/// no filter every record with a repository.
#[derive(Debug, Clone, Default)]
pub struct SpendFilter {
    pub task: Option<TaskId>,
    pub repo: Option<String>,
    /// Runs started at or after this time (the start of the UTC day for daily caps).
    pub since_ms: Option<i64>,
}

/// A named API token (the token itself is never stored, only its digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiTokenRecord {
    pub name: String,
    /// `read`, `act`, `admin` or `ingest`.
    pub scope: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// What [`crate::Store::begin_idempotent`] found for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use: the caller performs the request, then records its answer.
    Started,
    /// Answered before: replay this status and body.
    Replay { status: u16, body: String },
    /// Used before with a different request.
    Mismatch,
    /// Another request with this key is being performed right now.
    InProgress,
    /// An earlier attempt was abandoned mid-way (a crash): the caller performs it again, and a
    /// create finds the task that attempt already made here.
    Resumed { task: Option<TaskId> },
}

/// A verified webhook to store in the inbox (its signature already checked by the receiver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// `github`, `gitea` or `plane`.
    pub source: String,
    /// The sender's delivery id, or a digest of the body when it sent none.
    pub delivery_id: String,
    /// The sender's event name (`issues`, `pull_request`, `issue`, ...); may be empty.
    pub event: String,
    /// The raw body as received.
    pub payload: String,
    pub received_at_ms: i64,
}

/// A stored webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub source: String,
    pub delivery_id: String,
    pub event: String,
    pub received_at_ms: i64,
    pub payload: String,
    /// When the worker handled it; `None` while pending.
    pub processed_at_ms: Option<i64>,
    /// What the worker made of it (a one-line summary of the parsed event).
    pub parsed: Option<String>,
    /// Why it could not be handled (a parse error).
    pub error: Option<String>,
}

/// Where a change stands in its repository's merge queue (SPEC §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Waiting for its turn (beyond the speculation depth, or behind a change not yet built).
    Waiting,
    /// Assigned a base (the default head, or the change ahead's tested head) and being tested on
    /// it; `head` is set once the change is rebased and squashed onto that base.
    Testing,
    /// Its test passed on `base`; it lands once the default branch is `base`.
    Green,
    /// Its test failed on `base` (after one retry): the culprit once everything ahead is green.
    Red,
    /// A change of a batch other than its last: rebased and squashed onto `base` (`head` set) and
    /// not tested alone — the batch's last change tests them all at once.
    Built,
    /// It holds the merge lease and lands (merge, deploy) now.
    Landing,
    /// Found to be the culprit: the task is woken to roll back with `reason`.
    Evicted,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Waiting => "waiting",
            QueueState::Testing => "testing",
            QueueState::Green => "green",
            QueueState::Red => "red",
            QueueState::Landing => "landing",
            QueueState::Evicted => "evicted",
            QueueState::Built => "built",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "waiting" => QueueState::Waiting,
            "testing" => QueueState::Testing,
            "green" => QueueState::Green,
            "red" => QueueState::Red,
            "landing" => QueueState::Landing,
            "evicted" => QueueState::Evicted,
            "built" => QueueState::Built,
            _ => return None,
        })
    }
}

/// One change in a repository's merge queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
    pub task: TaskId,
    pub work_item_id: String,
    pub repo: String,
    /// Higher goes first; each point is worth [`QUEUE_PRIORITY_STEP_MS`] of waiting (aging: a
    /// low-priority change still overtakes every newer one eventually).
    pub priority: i64,
    pub entered_at_ms: i64,
    pub state: QueueState,
    /// The commit the change is (or was) tested on top of.
    pub base: Option<String>,
    /// The change rebased and squashed onto `base`: what lands.
    pub head: Option<String>,
    /// Failed tests on the current base (the first is retried: a pass then is a flake).
    pub fails: u32,
    pub reason: Option<String>,
    pub updated_at_ms: i64,
    /// In a batch: the task whose change ends it (and whose test covers the whole batch).
    pub batch: Option<TaskId>,
    /// After a red batch was split: the largest batch this change may join next.
    pub split: Option<u32>,
}

/// How much waiting one priority point is worth in the queue order (ten minutes).
pub const QUEUE_PRIORITY_STEP_MS: i64 = 600_000;

impl QueueEntry {
    /// The queue's sort key: lower goes first (entry time, pulled forward by priority).
    pub fn order_key(&self) -> (i64, i64) {
        (self.entered_at_ms.saturating_sub(self.priority.saturating_mul(QUEUE_PRIORITY_STEP_MS)), self.task.0)
    }
}

/// What a queue entry must still be for [`crate::Store::queue_update`] to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueExpect {
    pub state: QueueState,
    pub base: Option<String>,
}

/// A change's landing ([`crate::Store::queue_land`]): the lease `lease` taken for `task` (for
/// `ttl_ms`) together with the entry's move from `expect` to `change`, fenced on `job` when the
/// merge gate lands its own change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLanding {
    pub task: TaskId,
    pub job: Option<JobId>,
    pub expect: QueueExpect,
    pub change: QueueChange,
    pub lease: String,
    pub ttl_ms: i64,
}

/// The new state of a queue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueChange {
    pub state: QueueState,
    pub base: Option<String>,
    pub head: Option<String>,
    pub fails: u32,
    pub reason: Option<String>,
    /// The batch the change belongs to (the task ending it), if any.
    pub batch: Option<TaskId>,
    /// The largest batch it may join next (set when a red batch is split).
    pub split: Option<u32>,
}

impl QueueChange {
    /// `entry` as it is, to be changed field by field (`QueueChange { state, ..from(&entry) }`).
    pub fn from(entry: &QueueEntry) -> Self {
        QueueChange {
            state: entry.state,
            base: entry.base.clone(),
            head: entry.head.clone(),
            fails: entry.fails,
            reason: entry.reason.clone(),
            batch: entry.batch,
            split: entry.split,
        }
    }

    /// Back to waiting, with nothing tested (keeps a split's batch size cap).
    pub fn waiting(split: Option<u32>) -> Self {
        QueueChange { state: QueueState::Waiting, base: None, head: None, fails: 0, reason: None, batch: None, split }
    }
}

impl QueueExpect {
    /// What `entry` is now.
    pub fn of(entry: &QueueEntry) -> Self {
        QueueExpect { state: entry.state, base: entry.base.clone() }
    }
}

/// What one [`crate::Store::prune`] pass deleted, per kind of row (each at most the pass's
/// limit). A caller prunes again until a pass deletes nothing ([`PruneCounts::is_empty`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneCounts {
    /// Timeline events of ended tasks that were not part of the task's summary.
    pub events: u64,
    /// Finished jobs that no agent run and no task points at.
    pub jobs: u64,
    /// Acknowledged outbox rows.
    pub outbox: u64,
    /// Processed webhook deliveries.
    pub deliveries: u64,
    /// Dedup rows of ended tasks' inputs and one-shot alert keys.
    pub inbox: u64,
}

impl PruneCounts {
    /// Whether the pass deleted nothing at all.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Rows deleted, all kinds together.
    pub fn total(&self) -> u64 {
        self.events + self.jobs + self.outbox + self.deliveries + self.inbox
    }

    /// Adds another pass's counts (a summary over several passes).
    pub fn add(&mut self, other: PruneCounts) {
        self.events += other.events;
        self.jobs += other.jobs;
        self.outbox += other.outbox;
        self.deliveries += other.deliveries;
        self.inbox += other.inbox;
    }
}

/// Where a lesson came from (SPEC §10).
pub const LESSON_SOURCES: &[&str] = &["auto", "human", "agent"];

/// A lesson in the journal (SPEC §10): something an earlier run learned, scoped to a repository
/// and/or a stage (none means "everywhere"), injected into later prompts that it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LessonRecord {
    pub id: i64,
    /// Stable key: an auto-detector records the same slug for the same kind of event, so a repeat
    /// updates one row instead of adding another.
    pub slug: String,
    pub title: String,
    pub body: String,
    /// `auto`, `human` or `agent`.
    pub source: String,
    pub repo: Option<String>,
    pub stage: Option<String>,
    pub tags: Vec<String>,
    /// The work item that taught it, if any.
    pub task: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// How many prompts it was injected into.
    pub hits: i64,
    pub last_hit_at_ms: Option<i64>,
    /// `active` (injected into prompts), `proposed` (an agent's proposal awaiting a human) or
    /// `rejected`.
    pub status: String,
}

/// A lesson's status: only `active` lessons reach prompts.
pub const LESSON_STATUSES: &[&str] = &["active", "proposed", "rejected"];
/// The status of a lesson injected into prompts.
pub const LESSON_ACTIVE: &str = "active";
/// The status of an agent's proposed lesson until a human accepts or rejects it.
pub const LESSON_PROPOSED: &str = "proposed";

/// A lesson to record (upserted by slug).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewLesson {
    pub slug: String,
    pub title: String,
    pub body: String,
    pub source: String,
    pub repo: Option<String>,
    pub stage: Option<String>,
    pub tags: Vec<String>,
    pub task: Option<String>,
    /// Recorded `proposed` (awaiting a human) instead of `active`; a refresh of an existing slug
    /// never changes its status.
    pub proposed: bool,
}

impl NewLesson {
    /// The status a new row of this lesson gets.
    pub fn status(&self) -> &'static str {
        if self.proposed { LESSON_PROPOSED } else { LESSON_ACTIVE }
    }
}

/// What [`crate::Store::record_lesson`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LessonWrite {
    /// A new row.
    Created,
    /// The slug was recorded within the dedup window: only its `updated_at` moved.
    Duplicate,
    /// The slug existed but outside the window: its title, body and scope were refreshed.
    Refreshed,
}

/// Which lessons to list: with a repository or stage given, those that apply to it (scoped to
/// it or unscoped); `None` matches every lesson.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LessonFilter {
    pub repo: Option<String>,
    pub stage: Option<String>,
    /// Only lessons with this status (`active` for prompts); `None`: every status.
    pub status: Option<String>,
}

impl LessonFilter {
    /// Whether `lesson` passes this filter (the backends' SQL says the same).
    pub fn matches(&self, lesson: &LessonRecord) -> bool {
        let fits = |want: &Option<String>, have: &Option<String>| match (want, have) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        fits(&self.repo, &lesson.repo)
            && fits(&self.stage, &lesson.stage)
            && self.status.as_ref().is_none_or(|status| *status == lesson.status)
    }
}

/// An edit of a lesson: each `Some` replaces the field (`Some(None)` clears a scope).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LessonPatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub repo: Option<Option<String>>,
    pub stage: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    /// A human's decision on a proposed lesson (`active` or `rejected`).
    pub status: Option<String>,
}

impl LessonPatch {
    /// Applies the edit to `lesson` in memory (the backends then write the row back).
    pub fn apply(&self, lesson: &mut LessonRecord, now_ms: i64) {
        if let Some(title) = &self.title {
            lesson.title = title.clone();
        }
        if let Some(body) = &self.body {
            lesson.body = body.clone();
        }
        if let Some(repo) = &self.repo {
            lesson.repo = repo.clone();
        }
        if let Some(stage) = &self.stage {
            lesson.stage = stage.clone();
        }
        if let Some(tags) = &self.tags {
            lesson.tags = tags.clone();
        }
        if let Some(status) = &self.status {
            lesson.status = status.clone();
        }
        lesson.updated_at_ms = now_ms;
    }
}

/// A task proposal's status: `proposed` until a human accepts (a task is created) or rejects it.
pub const PROPOSAL_STATUSES: &[&str] = &["proposed", "accepted", "rejected"];

/// A next task an agent proposed in a task's retro (SPEC §3): it becomes a task only when a human
/// accepts it. One per (proposing task, title).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskProposalRecord {
    pub id: i64,
    /// The task whose retro proposed it.
    pub from_task: TaskId,
    /// The repository the task would be created in (the proposing task's).
    pub repo: String,
    pub title: String,
    pub body: String,
    /// `proposed`, `accepted` or `rejected`.
    pub status: String,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
    /// The principal that accepted or rejected it.
    pub decided_by: Option<String>,
    /// The task created when it was accepted.
    pub created_task: Option<TaskId>,
}

/// A task proposal to record (kept once per proposing task and title).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTaskProposal {
    pub from_task: TaskId,
    pub repo: String,
    pub title: String,
    pub body: String,
}

/// Which task proposals to list; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProposalFilter {
    pub status: Option<String>,
    pub from_task: Option<TaskId>,
}

impl ProposalFilter {
    /// Whether `proposal` passes this filter (the backends' SQL says the same).
    pub fn matches(&self, proposal: &TaskProposalRecord) -> bool {
        self.status.as_ref().is_none_or(|s| *s == proposal.status)
            && self.from_task.is_none_or(|t| t == proposal.from_task)
    }
}

/// A lesson's tags as the JSON text the `tags` column holds.
pub fn lesson_tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_string())
}

/// Reads the `tags` column back; anything but a JSON array of strings is a corrupt row.
pub fn lesson_tags_parse(text: &str) -> Result<Vec<String>, crate::StoreError> {
    serde_json::from_str(text).map_err(|e| crate::StoreError::Corrupt(format!("lesson tags `{text}`: {e}")))
}

/// Applies a decision to `proposal` in memory, checking it is allowed (the backends then write it
/// back under a compare-and-set on the old status): `proposed` → `accepted` or `rejected` records
/// `by` and `now_ms`; `accepted` without a created task → `proposed` releases an accept whose task
/// could not be created. Anything else is `Conflict`, naming what the proposal already is.
pub fn proposal_decision(
    proposal: &mut TaskProposalRecord,
    status: &str,
    by: &str,
    now_ms: i64,
) -> Result<(), crate::StoreError> {
    let id = proposal.id;
    match (proposal.status.as_str(), status) {
        ("proposed", "accepted" | "rejected") => {
            proposal.decided_at_ms = Some(now_ms);
            proposal.decided_by = Some(by.to_string());
        }
        ("accepted", "proposed") if proposal.created_task.is_none() => {
            proposal.decided_at_ms = None;
            proposal.decided_by = None;
        }
        (_, new) if !PROPOSAL_STATUSES.contains(&new) => {
            return Err(crate::StoreError::Conflict(format!(
                "task proposal status `{new}` is not one of {}",
                PROPOSAL_STATUSES.join(", ")
            )));
        }
        (old, _) => {
            let by = proposal.decided_by.as_deref().unwrap_or("someone");
            return Err(crate::StoreError::Conflict(format!("task proposal {id} was already {old} by {by}")));
        }
    }
    proposal.status = status.to_string();
    Ok(())
}
