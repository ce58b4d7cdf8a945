//! Baton's durable store: the `Store` trait, its record types and errors, and (feature
//! `conformance`) the suite every implementation passes. The implementations live in their own
//! crates: `baton-store-sqlite` (the embedded default) and `baton-store-postgres` (several
//! instances on one database).
//!
//! Every stage change goes through [`Store::advance`], one transaction that compare-and-sets the
//! task version, flips the finished job, appends the timeline event and enqueues the next job
//! (SPEC §4.2). A lost race is [`StoreError::Conflict`] and the loser performs no effects.
//!
//! Invariant: only this crate speaks SQL; nothing in the trait assumes SQLite, so a PostgreSQL
//! implementation can pass the same conformance suite.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod metrics;
pub mod records;
pub mod retention;
#[doc(hidden)]
pub mod rows;

pub use metrics::{HistogramBounds, MetricCounts, OpenJob};
pub use records::*;

use async_trait::async_trait;
use baton_domain::{JobId, TaskId};

/// Errors at the store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set lost: the task or job changed since it was read.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input's dedup key was seen before; nothing changed.
    #[error("duplicate input `{0}`")]
    Duplicate(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The database file or server cannot be used (open, migrate, IO).
    #[error("database error: {0}")]
    Database(String),
    /// The thing to create exists already (a live task for the same ticket): here it is.
    #[error("exists already: {}", .0.work_item_id)]
    Exists(Box<TaskRecord>),
    /// A stored value could not be decoded (corrupt row or newer schema).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Another connection holds the database lock past the busy timeout (SQLite's SQLITE_BUSY or
    /// SQLITE_LOCKED), or PostgreSQL aborted the transaction for a serialization failure, a
    /// deadlock or a lock timeout; nothing changed and retrying shortly is safe.
    #[error("the database is busy: {0}")]
    Busy(String),
    /// The database server cannot be reached or refuses connections (down, restarting, out of
    /// connections); nothing changed and retrying later is safe.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database can no longer be used safely: its file was deleted or replaced while Baton ran.
    /// Every write fails with this from then on; restart Baton on the right file.
    #[error("the database was lost: {0}")]
    Lost(String),
}

/// SQLite's primary result codes for "another connection holds the lock".
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;

impl From<sqlx::Error> for StoreError {
    /// Maps a database error to what a caller can do about it. PostgreSQL reports a five-character
    /// SQLSTATE, SQLite a decimal result code of at most four digits, so the code's shape tells the
    /// backend apart.
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => return StoreError::Unavailable(error.to_string()),
            _ => {}
        }
        let Some(code) = error.as_database_error().and_then(|db| db.code()).map(|c| c.into_owned()) else {
            return StoreError::Database(error.to_string());
        };
        if code.len() == 5 {
            return match sqlstate_class(&code) {
                SqlState::Retry => StoreError::Busy(error.to_string()),
                SqlState::Unavailable => StoreError::Unavailable(error.to_string()),
                SqlState::Unique => StoreError::Conflict(error.to_string()),
                SqlState::Other => StoreError::Database(error.to_string()),
            };
        }
        // Extended codes (SQLITE_BUSY_SNAPSHOT = 517, ...) carry the primary code in the low byte.
        match code.parse::<i64>().ok().map(|code| code & 0xff) {
            Some(SQLITE_BUSY | SQLITE_LOCKED) => StoreError::Busy(error.to_string()),
            _ => StoreError::Database(error.to_string()),
        }
    }
}

/// What a PostgreSQL SQLSTATE means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// Serialization failure (40001), deadlock (40P01), lock not available (55P03), query
    /// cancelled by a timeout (57014): the transaction rolled back; retry it.
    Retry,
    /// Connection exceptions (class 08), the server shutting down or restarting (57P01–57P03),
    /// too many connections (53300): try again later.
    Unavailable,
    /// A unique constraint (23505): someone else created the row first.
    Unique,
    /// Anything else: a bug or a broken database; not retried.
    Other,
}

/// The one rule every store keeps when a transition takes a task out of the merge queue: a change
/// of a batch other than its last, once marked `landing`, never leaves the queue by any way but its
/// own landing. Its change is in the commit the batch's last change is landing (or has landed: the
/// entry stays until the change's own deploy stage ends), so
/// - it is never cancelled: a STOP that read the entry before it was marked would otherwise cancel
///   a change the default branch is about to hold;
/// - while it is still parked (`parked`: the task's hold before the transition was the merge
///   queue's, so it was not yet woken as landed), nothing else takes it out either — a block (a
///   dependency's backstop) or a rollback read before the mark would leave its change landing on
///   the default branch while the task waits for a human or works on it again. Once its batch
///   landed it is woken, and from then on its deploy stage may end as any other's.
///
/// The loser of such a race gets [`StoreError::Conflict`] and decides again, now seeing `landing`:
/// it waits for the batch. `state` and `batch` are the entry's as the transition removed it.
pub fn refuse_leaving_landing_batch(
    task: TaskId,
    state: &str,
    batch: Option<TaskId>,
    parked: bool,
    next: &baton_domain::TaskState,
) -> StoreResult<()> {
    let member = batch.is_some_and(|tail| tail != task);
    if !member || state != QueueState::Landing.as_str() {
        return Ok(());
    }
    if next.stage == baton_domain::pipeline::CANCELLED {
        return Err(StoreError::Conflict(format!("task {task}'s batch is landing its change: it cannot be cancelled")));
    }
    if parked {
        return Err(StoreError::Conflict(format!(
            "task {task}'s batch is landing its change: it leaves the merge queue only once that landed"
        )));
    }
    Ok(())
}

/// Classifies a PostgreSQL SQLSTATE (see [`SqlState`]).
pub fn sqlstate_class(code: &str) -> SqlState {
    match code {
        "40001" | "40P01" | "55P03" | "57014" => SqlState::Retry,
        "57P01" | "57P02" | "57P03" | "53300" => SqlState::Unavailable,
        "23505" => SqlState::Unique,
        _ if code.starts_with("08") => SqlState::Unavailable,
        _ => SqlState::Other,
    }
}

/// One check of [`Store::health`]: `/health` reports each, and the engine stops on a failed
/// `fatal` one (the database file is gone), because continuing would lose every later write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthCheck {
    /// A stable name: `database_file`, `schema`, `tasks`, ...
    pub name: String,
    pub ok: bool,
    /// What was found, in words an operator can act on.
    pub detail: String,
    /// Whether a failure means the store must not be used any more (not merely busy or slow).
    #[serde(skip)]
    pub fatal: bool,
}

impl HealthCheck {
    pub fn ok(name: &str, detail: impl Into<String>) -> Self {
        HealthCheck { name: name.to_string(), ok: true, detail: detail.into(), fatal: false }
    }

    pub fn failed(name: &str, detail: impl Into<String>, fatal: bool) -> Self {
        HealthCheck { name: name.to_string(), ok: false, detail: detail.into(), fatal }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Corrupt(error.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The durable state of Baton. Implementations: `baton_store_sqlite::SqliteStore`,
/// `baton_store_postgres::PgStore`, and the simulation's in-memory `SimStore`.
#[async_trait]
pub trait Store: Send + Sync {
    /// Creates a task with a fresh work-item id (`PREFIX-NNN`, collisions walk forward), its
    /// `created` event, and applies `first` (the decision for `Event::Created`) in one transaction.
    async fn create_task(&self, new: NewTask, first: Transition, now_ms: i64) -> StoreResult<TaskRecord>;

    /// Makes the next work-item number of (`repo`, `prefix`) at least `next` (never lower): the
    /// numbers below are taken outside the store (task branches a lost or restored database no
    /// longer knows).
    async fn raise_work_item_counter(&self, repo: &str, prefix: &str, next: i64) -> StoreResult<()>;

    /// Finds a task by numeric id or work-item id.
    async fn task(&self, key: &TaskKey) -> StoreResult<Option<TaskRecord>>;

    /// The task holding the ticket reference `external_ref`, live or done (a cancelled task gave
    /// its reference up, so at most one task holds it; indexed).
    async fn task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>>;

    /// The ticket's live task: the holder of `external_ref` unless it is done (indexed).
    async fn live_task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>>;

    /// Tasks, newest first; `active_only` hides done and cancelled tasks.
    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>>;

    /// One page of [`Store::list_tasks`]: newest first, only ids below `before` (keyset paging:
    /// stable while tasks are added), at most `limit` tasks (indexed; never loads the rest).
    async fn list_tasks_page(
        &self,
        filter: &TaskFilter,
        before: Option<TaskId>,
        limit: u32,
    ) -> StoreResult<Vec<TaskRecord>>;

    /// Applies one decided transition atomically (SPEC §4.2). Returns the enqueued job, if any.
    async fn advance(&self, advance: Advance) -> StoreResult<Option<JobId>>;

    /// Records an input whose decision was suppressed: the inbox row (so a replay is a duplicate)
    /// and a timeline event saying why. `Duplicate` when the key was seen.
    async fn record_suppressed(&self, task: TaskId, inbox: Option<InboxEntry>, event: NewEvent) -> StoreResult<()>;

    /// Claims the next runnable job under the concurrency limits, marking it running.
    async fn claim_job(&self, claim: &Claim) -> StoreResult<Option<JobRecord>>;

    /// Claims up to `limit` runnable jobs in one transaction, each as [`Store::claim_job`] would
    /// in turn (the limits count the ones claimed before it): fewer commits when many jobs are
    /// due at once. Best first.
    async fn claim_jobs(&self, claim: &Claim, limit: u32) -> StoreResult<Vec<JobRecord>>;

    /// Declares that `task` waits for `depends_on` to be done (SPEC §6.4): from now on the claim
    /// skips `task`'s jobs while `depends_on` is not done. `false` when it was declared already;
    /// `NotFound` when either task does not exist; `Conflict` for a task depending on itself.
    /// Cycles are the engine's to refuse (it reads [`Store::live_dependencies`] first).
    async fn add_dependency(
        &self,
        task: TaskId,
        depends_on: TaskId,
        created_by: &str,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// Withdraws a dependency; `false` when there was none.
    async fn remove_dependency(&self, task: TaskId, depends_on: TaskId) -> StoreResult<bool>;

    /// What `task` depends on, by dependency id (primary key walk).
    async fn dependencies(&self, task: TaskId) -> StoreResult<Vec<DependencyRecord>>;

    /// Every dependency of a live (not done or cancelled) task, by task then dependency: the
    /// cycle check, the backstop and the queue view read the waiting graph from it.
    async fn live_dependencies(&self) -> StoreResult<Vec<DependencyRecord>>;

    async fn job(&self, id: JobId) -> StoreResult<Option<JobRecord>>;

    /// Jobs in the given status, oldest first.
    async fn jobs_with_status(&self, status: JobStatus) -> StoreResult<Vec<JobRecord>>;

    async fn jobs_for_task(&self, task: TaskId) -> StoreResult<Vec<JobRecord>>;

    /// Records the agent process of a running job (pid and process group).
    async fn set_job_process(&self, job: JobId, pid: Option<u32>, pgid: Option<u32>) -> StoreResult<()>;

    /// Records the agent process's start time (see `JobRecord::proc_start`).
    async fn set_job_proc_start(&self, job: JobId, start_ticks: u64) -> StoreResult<()>;

    /// Records a launched agent on its run (the pid) and, while the job still runs under
    /// `claimed_by`'s claim (`JobRecord::runs_under_claim`), on its job: the pid, the process
    /// group and (with a start time; without one the recorded one stays) the start time. `false`
    /// when the job was no longer that claim's (taken over while the launching process stood
    /// still, or ended): its row then keeps the process of whoever runs it now, and the caller
    /// stops the agent it just started. The job's check and write are one statement.
    async fn record_launch(
        &self,
        job: JobId,
        claimed_by: &str,
        run: i64,
        pid: u32,
        pgid: u32,
        start_ticks: Option<u64>,
    ) -> StoreResult<bool>;

    /// Records that `owner` now supervises a running job it re-adopts, only while the job still
    /// runs under the claim it was read with (`claimed_by`, `None` for a job claimed by nobody
    /// known): the claim the guards of a launch record and a job's end check. `false` when the job
    /// moved meanwhile (another instance adopted it, took it over, or it ended): it is not this
    /// instance's to watch.
    async fn adopt_job(&self, job: JobId, claimed_by: Option<&str>, owner: &str) -> StoreResult<bool>;

    /// Extends the named lease if `holder` still holds it; never creates one (a renewal must not
    /// resurrect a lease released meanwhile). `true` when extended.
    async fn renew_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<bool>;

    /// Releases the named lease if `holder` holds it (reclaiming a dead holder's lease).
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool>;

    /// Releases the named lease if `task` holds it ([`task_holder`]) and is still at `version`:
    /// the release of a lease the task was read not to need (the reaper's reclaim, a deploy step
    /// that stopped short of its merge). Every claim and advance moves a task's version, so a task
    /// that may have taken the lease again since that read (under the same holder name) keeps it:
    /// nothing is released and the answer is `false`. The task row is locked first, so no claim or
    /// advance of it commits between the check and the release.
    async fn release_lease_if_unmoved(&self, name: &str, task: TaskId, version: i64) -> StoreResult<bool>;

    /// Ends a job outside a transition (its result was stale); guarded on queued or running.
    async fn close_job(
        &self,
        job: JobId,
        status: JobStatus,
        result: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// Ends a running job outside a transition, only while it runs under `claimed_by`'s claim
    /// (`JobRecord::runs_under_claim`), checked and written in one statement: a job taken over and
    /// claimed again meanwhile is the new claim's to end. `false` when the guard fails.
    async fn close_claimed_job(
        &self,
        job: JobId,
        claimed_by: &str,
        status: JobStatus,
        result: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// Puts a running job back in the queue (its runner died), only while it still runs under the
    /// claim it was read with (`claimed_by`; `None` for a job claimed by nobody known): another
    /// instance may have adopted it since, and it is then that instance's to watch. `false` when
    /// the guard fails.
    async fn requeue_job(&self, job: JobId, claimed_by: Option<&str>, available_at_ms: i64) -> StoreResult<bool>;

    /// Takes over the running job of an instance declared dead, in one transaction: the job back
    /// in the queue, guarded on it still running under `owner`'s claim (another live instance may
    /// have requeued and claimed it since it was read), and `event` (why) recorded with it.
    /// `false`, and nothing written, when the guard fails.
    async fn take_over_job(&self, job: JobId, owner: &str, available_at_ms: i64, event: NewEvent) -> StoreResult<bool>;

    async fn insert_agent_run(&self, run: NewAgentRun) -> StoreResult<i64>;

    /// Records the pid of an agent run inserted before its process started.
    async fn set_agent_run_pid(&self, id: i64, pid: u32) -> StoreResult<()>;

    async fn finish_agent_run(&self, id: i64, finish: AgentRunFinish) -> StoreResult<()>;

    async fn agent_runs(&self, task: TaskId) -> StoreResult<Vec<AgentRunRecord>>;

    /// Number of agent runs already started for (task, stage).
    async fn count_agent_runs(&self, task: TaskId, stage: &str) -> StoreResult<u32>;

    /// Appends an observer event (progress, notification) outside any transition.
    async fn append_event(&self, event: NewEvent) -> StoreResult<i64>;

    /// Timeline events with id greater than `after_id`, oldest first, optionally for one task.
    async fn events(&self, task: Option<TaskId>, after_id: i64, limit: u32) -> StoreResult<Vec<EventRecord>>;

    /// Takes or renews the named lease for `holder`. Re-acquiring one's own lease succeeds.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<LeaseOutcome>;

    /// Takes or renews the named lease for `task` ([`task_holder`]) only while `job` is the
    /// task's active job: the acquire of a job's own step (the merge gate landing, the deploy
    /// merging). `None` when it is not — the task was blocked, stopped or moved on since the job
    /// was claimed — and nothing is taken. The task row is locked first, so no advance of it
    /// commits between the check and the grant: a stale job never holds the repository's merges.
    async fn acquire_lease_for_job(
        &self,
        name: &str,
        task: TaskId,
        job: JobId,
        ttl_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Option<LeaseOutcome>>;

    async fn lease(&self, name: &str) -> StoreResult<Option<LeaseRecord>>;

    async fn leases(&self) -> StoreResult<Vec<LeaseRecord>>;

    /// Whether an input with this dedup key was already recorded.
    async fn inbox_seen(&self, dedup_key: &str) -> StoreResult<bool>;

    /// Sets (or with `None` clears) the runtime budget cap of a scope (`global`, `repo:<name>`, `task:<id>`).
    async fn set_budget_cap(&self, scope: &str, cap_usd: Option<f64>, now_ms: i64) -> StoreResult<()>;

    /// Runtime budget caps by scope; a `None` cap means "no cap" and overrides configuration.
    async fn budget_caps(&self) -> StoreResult<Vec<(String, Option<f64>)>>;

    /// Freezes `freeze.repo` unless it is frozen already: returns the open freeze and whether
    /// this call opened it (at most one open freeze per repository, even between instances).
    async fn freeze_repo(&self, freeze: &NewFreeze, now_ms: i64) -> StoreResult<(RepoFreeze, bool)>;

    /// Records the incident and revert tasks of freeze `id` (a `None` leaves the stored value;
    /// a stored one is never replaced).
    async fn link_freeze(&self, id: i64, incident: Option<TaskId>, revert: Option<TaskId>) -> StoreResult<()>;

    /// Closes `repo`'s open freeze with who closed it; `None` when it was not frozen.
    async fn unfreeze_repo(&self, repo: &str, by: &str, now_ms: i64) -> StoreResult<Option<RepoFreeze>>;

    /// The open freezes, by repository name.
    async fn repo_freezes(&self) -> StoreResult<Vec<RepoFreeze>>;

    /// The coverage baseline of `repo`, if one was ever recorded.
    async fn coverage_baseline(&self, repo: &str) -> StoreResult<Option<CoverageBaseline>>;

    /// Every repository's coverage baseline, by repository name.
    async fn coverage_baselines(&self) -> StoreResult<Vec<CoverageBaseline>>;

    /// Raises `repo`'s coverage baseline to `pct` by compare-and-set: stored only when the
    /// repository has no baseline or a lower one, so it never decreases and concurrent raises
    /// keep the highest. `true` when it moved.
    async fn raise_coverage_baseline(
        &self,
        repo: &str,
        pct: f64,
        set_by: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// Sets `repo`'s coverage baseline to `pct` whatever it was (the authenticated override).
    async fn set_coverage_baseline(
        &self,
        repo: &str,
        pct: f64,
        set_by: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// Records a lesson, upserted by slug (SPEC §10): a new slug is `Created`; a slug recorded
    /// less than `dedup_window_ms` before `now_ms` only has its `updated_at` moved (`Duplicate`);
    /// an older one has its title, body, scope and tags replaced (`Refreshed`). Hits are kept.
    async fn record_lesson(
        &self,
        lesson: &NewLesson,
        dedup_window_ms: i64,
        now_ms: i64,
    ) -> StoreResult<(LessonRecord, LessonWrite)>;

    async fn lesson(&self, id: i64) -> StoreResult<Option<LessonRecord>>;

    /// The lessons passing `filter`, most recently updated first.
    async fn lessons(&self, filter: &LessonFilter) -> StoreResult<Vec<LessonRecord>>;

    /// Applies `patch` to lesson `id`; `NotFound` when there is none.
    async fn update_lesson(&self, id: i64, patch: &LessonPatch, now_ms: i64) -> StoreResult<LessonRecord>;

    /// Counts one hit (an injection into a prompt) on each of `ids`; unknown ids are skipped.
    async fn hit_lessons(&self, ids: &[i64], now_ms: i64) -> StoreResult<()>;

    /// Records a task proposal once per (proposing task, title): `true` with the new row, or
    /// `false` with the row already there (a retried retro proposes nothing twice).
    async fn propose_task(&self, proposal: &NewTaskProposal, now_ms: i64) -> StoreResult<(TaskProposalRecord, bool)>;

    async fn task_proposal(&self, id: i64) -> StoreResult<Option<TaskProposalRecord>>;

    /// The task proposals passing `filter`, oldest first.
    async fn task_proposals(&self, filter: &ProposalFilter) -> StoreResult<Vec<TaskProposalRecord>>;

    /// A human's decision on proposal `id`: `proposed` becomes `status` (`accepted` or
    /// `rejected`), recording `by` and `now_ms`. `NotFound` when there is none, `Conflict` when it
    /// was decided already (a second accept never creates a second task).
    async fn decide_task_proposal(
        &self,
        id: i64,
        status: &str,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<TaskProposalRecord>;

    /// Links accepted proposal `id` to the task created from it; `Conflict` unless it is accepted
    /// and not linked yet.
    async fn link_task_proposal(&self, id: i64, task: TaskId) -> StoreResult<TaskProposalRecord>;

    /// Priced spend of agent runs and ingested usage records matching `filter` (unpriced ones add
    /// nothing; see [`SpendFilter`] for which ingested records count).
    async fn spend_usd(&self, filter: &SpendFilter) -> StoreResult<f64>;

    /// Records `key` once; `true` the first time (one-shot alerts such as budget warnings).
    async fn record_once(&self, key: &str, kind: &str, now_ms: i64) -> StoreResult<bool>;

    /// Token and cost totals of agent runs grouped by `group` (task, stage, adapter, model, repo, day).
    async fn usage(&self, group: UsageGroup) -> StoreResult<Vec<UsageRow>>;

    /// Stores an ingested usage record once per (source, idempotency key): a record with a key
    /// already stored for its source stores nothing and returns the first record (`created:
    /// false`). Records without a key are always stored.
    async fn insert_usage_record(&self, record: NewUsageRecord) -> StoreResult<UsageInsert>;

    /// Ingested usage records summed per (source, category, model, unit kind, repository, task,
    /// UTC day), ordered by those keys.
    async fn usage_record_totals(&self) -> StoreResult<Vec<UsageRecordTotals>>;

    /// How many tasks reached done, and what their agent runs and linked ingested records cost.
    async fn done_task_spend(&self) -> StoreResult<DoneTaskSpend>;

    /// Claims due, unacknowledged outbox rows (oldest first): each is hidden from other workers
    /// until `now + claim_ms` and its attempt count goes up by one.
    async fn claim_effects(&self, claim: &EffectClaim) -> StoreResult<Vec<EffectRecord>>;

    /// Acknowledges an outbox row: it is never carried out again. `false` when already acknowledged.
    async fn complete_effect(&self, id: i64, now_ms: i64) -> StoreResult<bool>;

    /// Records a failed try of an outbox row; it becomes due again at `retry_at_ms`.
    async fn fail_effect(&self, id: i64, error: &str, retry_at_ms: i64) -> StoreResult<()>;

    /// Outbox rows, oldest first, optionally one task's and optionally only unacknowledged ones.
    async fn effects(&self, task: Option<TaskId>, pending_only: bool) -> StoreResult<Vec<EffectRecord>>;

    /// Agent runs that never recorded their end, oldest first.
    async fn open_agent_runs(&self) -> StoreResult<Vec<AgentRunRecord>>;

    /// Closes an agent run that never recorded its end with `status` (e.g. `lost`) and why;
    /// `false` when it had ended meanwhile.
    async fn close_agent_run(&self, id: i64, status: &str, error: &str, now_ms: i64) -> StoreResult<bool>;

    /// Stores a new API token under `name` by its digest; [`StoreError::Conflict`] when the name
    /// is taken (revoked names stay taken: the timeline names them).
    async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        scope: &str,
        created_by: &str,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// The live (not revoked) token with this digest.
    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>>;

    /// Every token, revoked ones included, by name.
    async fn api_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>>;

    /// Revokes the token `name`; false when there is no live token by that name.
    async fn revoke_api_token(&self, name: &str, now_ms: i64) -> StoreResult<bool>;

    /// Starts a request under an idempotency `key` (already scoped by principal and route) whose
    /// request digest is `request_hash`. An attempt started more than `stale_ms` ago and never
    /// finished is taken over ([`IdempotencyBegin::Resumed`]).
    async fn begin_idempotent(
        &self,
        key: &str,
        request_hash: &str,
        now_ms: i64,
        stale_ms: i64,
    ) -> StoreResult<IdempotencyBegin>;

    /// Records the answer to replay for `key`.
    async fn finish_idempotent(&self, key: &str, status: u16, body: &str, now_ms: i64) -> StoreResult<()>;

    /// Forgets an unfinished `key` (the request failed in a way worth retrying).
    async fn abandon_idempotent(&self, key: &str) -> StoreResult<()>;
    /// Stores a verified webhook delivery in the inbox, once per `(source, delivery_id)`: `true`
    /// when it is new, `false` when that delivery was stored before (nothing changed).
    async fn record_delivery(&self, delivery: NewDelivery) -> StoreResult<bool>;

    /// Up to `limit` deliveries not yet processed, oldest first.
    async fn pending_deliveries(&self, limit: u32) -> StoreResult<Vec<DeliveryRecord>>;

    /// Records how delivery `id` was handled (a summary of the parsed event, or the error), once:
    /// `false` when it was processed already or does not exist.
    async fn mark_delivery(
        &self,
        id: i64,
        processed_at_ms: i64,
        parsed: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<bool>;

    /// Stored deliveries of `source` (every source when `None`), oldest first.
    async fn deliveries(&self, source: Option<&str>) -> StoreResult<Vec<DeliveryRecord>>;

    /// Cheap checks that the store still works (never a full integrity scan): for SQLite, the
    /// database file is still the one opened, the schema version is known, the tasks table
    /// answers. Never fails: a failure is a check with `ok: false`. Called by `/health` and about
    /// once a second by the engine loop, which stops on a failed `fatal` check.
    async fn health(&self) -> Vec<HealthCheck>;

    /// Queued and running jobs (oldest due first) with their task's work item and pending cancel:
    /// the queue view, without loading every task.
    async fn open_jobs(&self) -> StoreResult<Vec<OpenJob>>;

    /// Counters and histograms over the whole history by aggregate queries (`/metrics`); every
    /// figure as [`MetricCounts::from_records`] defines it.
    async fn metric_counts(&self, bounds: &HistogramBounds) -> StoreResult<MetricCounts>;

    /// How many tasks are in each (stage, hold) pair, by one aggregate query (`/api/status`,
    /// the dashboard's counts): never loads a task. `hold` is [`baton_domain::Hold::label`]
    /// (empty for none). Sorted by stage, then hold.
    async fn task_counts(&self) -> StoreResult<Vec<TaskCount>>;

    /// Puts the task into its repository's merge queue as `waiting`; `false` (nothing changed)
    /// when it is queued already. The engine never calls it: an [`Store::advance`] whose next
    /// state is parked in the merge queue enters the task in the same transaction.
    async fn queue_enter(&self, task: TaskId, repo: &str, priority: i64, now_ms: i64) -> StoreResult<bool>;

    /// The task's merge-queue entry.
    async fn queue_entry(&self, task: TaskId) -> StoreResult<Option<QueueEntry>>;

    /// Merge-queue entries of `repo` (every repository when `None`), ordered by entry time then
    /// task id (the queue order adds priority: [`QueueEntry::order_key`]). Indexed by repository.
    async fn queue_entries(&self, repo: Option<&str>) -> StoreResult<Vec<QueueEntry>>;

    /// The entries of `repo`'s merge queue whose tested head is exactly `head` (one change, or
    /// every member of a batch), in the order of [`Store::queue_entries`]. Indexed by repository
    /// and head: a landing asks this, so it costs the same with one entry queued or a thousand.
    async fn queue_entries_with_head(&self, repo: &str, head: &str) -> StoreResult<Vec<QueueEntry>>;

    /// Compare-and-set on a queue entry: applies `change` only while the entry is still in
    /// `expect`'s state on `expect`'s base. `false` when it changed meanwhile (or left the queue).
    async fn queue_update(
        &self,
        task: TaskId,
        expect: &QueueExpect,
        change: &QueueChange,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// The landing of a green change: in one transaction, takes or renews the lease for the task
    /// ([`task_holder`]) and applies `change` (to `landing`) to the entry while it is still in
    /// `expect`'s state on `expect`'s base — and, with `job` (the merge gate landing its own
    /// change), while that job is the task's active one ([`QueueLanding`]). `None` when the entry changed meanwhile
    /// (or left the queue) or the job is no longer active, `Busy` when another holds the lease:
    /// either way nothing is taken or written, so no lease is ever held for a change that is not
    /// landing. The task row is locked first, then the lease, then the entry (an advance's order).
    async fn queue_land(&self, landing: &QueueLanding, now_ms: i64) -> StoreResult<Option<LeaseOutcome>>;

    /// Sets the priority of a queued change; `false` when the task is not in a merge queue.
    async fn set_queue_priority(&self, task: TaskId, priority: i64) -> StoreResult<bool>;

    /// Tasks whose hold ends by itself and whose time has come (`due_at_ms <= now_ms`: a quota
    /// pause's `resume_at_ms`), earliest first, at most `limit` (indexed; never lists tasks).
    async fn due_holds(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<TaskId>>;

    /// The earliest time a hold ends by itself, if any task has one (indexed).
    async fn next_due_ms(&self) -> StoreResult<Option<i64>>;

    /// The earliest `available_at` of a queued job, if any job is queued (indexed): the claim
    /// loop asks it before claiming, so an idle Baton over a backlog of jobs not yet due runs no
    /// claim query.
    async fn next_job_at_ms(&self) -> StoreResult<Option<i64>>;

    /// Live tasks holding for nothing whose current job ended (done, failed or cancelled) at or
    /// after `since_ms` and before `before_ms`, and which last changed before `before_ms`: the
    /// reconciler's candidates, oldest ended job first, at most `limit` (indexed on the jobs'
    /// end time: a pass over a quiet window reads nothing of the history).
    async fn unapplied_tasks(&self, since_ms: i64, before_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>>;

    /// How many jobs are queued and how many running, counted from an index (`/api/status`):
    /// never loads a job.
    async fn job_counts(&self) -> StoreResult<JobCounts>;

    /// Records that instance `beat.id` is alive at `beat.heartbeat_at_ms` (inserting it on its
    /// first beat; a restart replaces its pid and start time). The time never goes back.
    async fn heartbeat(&self, beat: &InstanceRecord) -> StoreResult<()>;

    /// Every instance that ever heartbeated, by id.
    async fn instances(&self) -> StoreResult<Vec<InstanceRecord>>;

    /// Deletes old history older than `before_ms`, at most `limit` rows of each kind, and says
    /// what went: the rule is [`retention`]'s (events of ended tasks outside their summary,
    /// finished jobs no run or task points at, acknowledged outbox rows, processed webhook
    /// deliveries, ended tasks' inbox rows and old `record_once` keys). Each kind is one short
    /// `DELETE … WHERE id IN (SELECT id … LIMIT n)`, so the write lock is never held long; the
    /// caller prunes again until a pass deletes nothing.
    async fn prune(&self, before_ms: i64, limit: u32) -> StoreResult<PruneCounts>;

    /// A feed of what other processes changed that this one should act on at once (a job queued,
    /// a running job stopped or taken away), or `None` when the backend has none and polling is
    /// the only way (the embedded SQLite store: one server per file). A feed may miss changes
    /// (a reconnect): it hastens the engine's polling, never replaces it.
    async fn change_feed(&self) -> StoreResult<Option<Box<dyn ChangeFeed>>>;
}

/// What [`Store::change_feed`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A job was queued: it may be claimable now.
    Queued,
    /// A running job was cancelled or requeued by another process: whoever runs it must stop.
    Stopped,
    /// Something the feed does not name.
    Other,
}

/// One subscription to another process's changes ([`Store::change_feed`]).
#[async_trait]
pub trait ChangeFeed: Send {
    /// Waits for the next change. An error means the feed is broken for now; calling again
    /// reconnects.
    async fn next(&mut self) -> StoreResult<Change>;
}
