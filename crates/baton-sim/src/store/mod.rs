//! `SimStore`: an in-memory [`Store`] with `SqliteStore`'s semantics, seeded faults and an audit log.
//!
//! Semantics follow `baton_store_sqlite` (the reference): the advance transaction checks
//! the inbox, compare-and-sets the task version, flips the finished job guarded on `running`,
//! appends the event and applies the transition, all or nothing; claims take the oldest runnable
//! job that is its task's `current_job`, under the global and per-repo running limits; leases
//! are renewed by their holder, taken over only after their TTL, with fencing tokens that never
//! repeat, released by their holder or reclaimed; `close_job` and `requeue_job`
//! are guarded on the job's status, `adopt_job` and `take_over_job` on its claim too; a ticket's external id belongs to one live task and is
//! tombstoned when the task is cancelled; a claim bumps its task's version (so a decision read
//! before the claim loses its compare-and-set); a transition that enqueues nothing keeps the job the
//! decision kept (a deferred STOP).
//!
//! Faults (when armed): a call fails before touching anything (`StoreError::Database`), or — for
//! writes — commits and then loses its reply (also `Database`). While interleaving, every call
//! first yields one to three times, so concurrent engine calls interleave call by call in any
//! order (two can read the same version before either commits).
//!
//! [`Isolation`] says how concurrent calls see each other. `Serial` (the default) is SQLite's: a
//! call is one transaction that runs alone. `ReadCommitted` is `PgStore`'s: the calls it runs as
//! several statements — `claim_job(s)` (the claim lock, the candidate read, the task version bumps,
//! the job updates re-checked on `status = 'queued'`), `advance` (inbox row, version
//! compare-and-set, job flip, the rows the transition touches, the events lock), `create_task`
//! (the work-item counter row, the events lock), `acquire_lease` (the lease name's lock, the read,
//! the token and lease upserts), `renew_lease`/`release_lease`/`close_job`/`requeue_job` (one row
//! each), `append_event`/`record_suppressed` (the events lock) — become a `txn::Txn`: steps with
//! a yield between them, named locks held to the end, writes applied at the commit through the
//! same `State` methods the serial calls use. At the commit, a claim records a breach when more
//! jobs run than its limits allow, and a lease grant one when it lands on another holder's live
//! lease (the checks report them). Calls PostgreSQL runs as one statement stay atomic, and take
//! no row locks (none writes a row a modelled call guards).
//!
//! [`Mutation`]s deliberately break one rule; the tests use them to prove each invariant check
//! and regression test can fail.

mod read_committed;
mod state;
mod txn;

use read_committed::LeaseFence;
pub(crate) use state::State;
use txn::LockKey;

use crate::clock::SimClock;
use crate::sched::yield_once;
use async_trait::async_trait;
use baton_domain::{JobId, TaskId};
use baton_engine::Clock;
use baton_store::*;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One deliberately broken rule (for proving that the checks can fail); `None` in real runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutation {
    #[default]
    None,
    /// `advance` ignores the expected version.
    SkipVersionCas,
    /// `advance` flips the finished job whatever its status.
    SkipJobFlipGuard,
    /// `advance` ignores the version and the job status (no guard at all).
    SkipAllAdvanceGuards,
    /// Releasing leases does nothing.
    KeepLeasesOnRelease,
    /// A write that fails before committing still records its inbox key (not atomic).
    InboxSurvivesFailure,
    /// `requeue_job` does nothing.
    RequeueNothing,
    /// A transition that enqueues nothing clears the current job even when the decision kept it.
    ForgetKeptJob,
    /// In READ COMMITTED, a claim takes no claim lock (two claims count the same running jobs).
    ClaimWithoutLock,
    /// In READ COMMITTED, a lease acquire takes no lock on its name (two acquirers read the same
    /// free lease).
    LeaseWithoutLock,
}

impl Mutation {
    /// Every mutation, for self-checks.
    pub const ALL: [Mutation; 9] = [
        Mutation::SkipVersionCas,
        Mutation::SkipJobFlipGuard,
        Mutation::SkipAllAdvanceGuards,
        Mutation::KeepLeasesOnRelease,
        Mutation::InboxSurvivesFailure,
        Mutation::RequeueNothing,
        Mutation::ForgetKeptJob,
        Mutation::ClaimWithoutLock,
        Mutation::LeaseWithoutLock,
    ];

    /// Parses the `Debug` name (`SkipVersionCas`, ...).
    pub fn parse(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| format!("{m:?}").eq_ignore_ascii_case(name))
    }
}

/// How concurrent store calls see each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// `SqliteStore`'s: every call is one transaction that runs alone (`BEGIN IMMEDIATE`), so
    /// concurrent calls interleave call by call.
    #[default]
    Serial,
    /// `PgStore`'s READ COMMITTED: the calls PostgreSQL runs as several statements (claims,
    /// advance, task creation, leases, job close and requeue, event appends) run step by step,
    /// other calls in between, under the PostgreSQL store's locks (see the `txn` module).
    ReadCommitted,
}

impl Isolation {
    /// Parses `serial` or `rc` (also `read-committed`).
    pub fn parse(name: &str) -> Option<Isolation> {
        match name.to_ascii_lowercase().as_str() {
            "serial" => Some(Isolation::Serial),
            "rc" | "read-committed" | "readcommitted" => Some(Isolation::ReadCommitted),
            _ => None,
        }
    }
}

/// How often calls fail while faults are armed.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// Chance per call, in thousandths.
    pub per_mille: u32,
    /// Of the write faults, the share (thousandths) that commit and then lose the reply.
    pub reply_lost_per_mille: u32,
}

/// Faults injected so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultCounts {
    pub failed_before_commit: u64,
    pub reply_lost: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.failed_before_commit + self.reply_lost
    }
}

/// One committed `advance`, as the invariant checks see it.
#[derive(Debug, Clone)]
pub struct Commit {
    pub task: TaskId,
    pub expected_version: i64,
    pub version_before: i64,
    pub version_after: i64,
    pub finish_job: Option<JobId>,
    pub kind: String,
    pub stage_before: String,
    pub stage_after: String,
    pub enqueued: Option<JobId>,
    pub inbox_key: Option<String>,
    /// The task's hold after the transition (`""` when running).
    pub hold_after: String,
    /// Whether the task still held any lease right after the transition committed.
    pub holds_lease_after: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct InboxRow {
    #[allow(dead_code)] // kept for parity with the SQLite inbox and for debugging dumps
    pub(crate) outcome: String,
    /// The task whose input it records; `None` for a `record_once` key.
    pub(crate) task: Option<TaskId>,
    pub(crate) received_at_ms: i64,
}

/// How an injected fault hits a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails before touching anything.
    Before,
    /// The call commits, then its reply is lost (writes only).
    ReplyLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// The in-memory store.
#[derive(Debug)]
pub struct SimStore {
    state: Mutex<State>,
    clock: Arc<SimClock>,
}

fn database(what: &str, fault: &str) -> StoreError {
    StoreError::Database(format!("{what}: {fault} (injected)"))
}

impl SimStore {
    /// An empty store; faults use their own stream of `seed`.
    pub fn new(clock: Arc<SimClock>, seed: u64, rates: FaultRates, mutation: Mutation) -> Self {
        SimStore { clock, state: Mutex::new(State::new(seed, rates, mutation)) }
    }

    /// Whether no open transaction holds a lock (READ COMMITTED; always so in SERIALIZABLE).
    pub fn no_locks_held(&self) -> bool {
        !self.lock().locks.any_held()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a claim bumps its task's version (`SqliteStore::claim_job` does; off only to
    /// restore the old behaviour in a broken variant).
    pub fn set_claim_bumps_version(&self, bumps: bool) {
        self.lock().claim_bumps_version = bumps;
    }

    /// Sets the next work-item number of (repo, prefix), as a restored backup would (the
    /// conformance suite's counter rewind); `false` when there is no such counter.
    pub fn set_work_item_counter(&self, repo: &str, prefix: &str, next: u32) -> bool {
        match self.lock().counters.get_mut(&(repo.to_string(), prefix.to_string())) {
            Some(counter) => {
                *counter = next;
                true
            }
            None => false,
        }
    }

    /// Turns fault injection on or off.
    pub fn arm_faults(&self, armed: bool) {
        self.lock().faults_armed = armed;
    }

    /// Changes the fault rates (scripted scenarios use 1000 ‰ for "the next call fails").
    pub fn set_fault_rates(&self, rates: FaultRates) {
        self.lock().rates = rates;
    }

    /// Makes the next call to `call` (e.g. `"advance"`) fail with `fault`, armed or not.
    pub fn fail_next(&self, call: &str, fault: Fault) {
        self.lock().fail_next = Some((call.to_string(), fault));
    }

    /// Advances refused so far because the task version or the job status had moved.
    pub fn conflicts(&self) -> u64 {
        self.lock().conflicts
    }

    /// Turns the yield before every call on or off.
    pub fn set_interleaving(&self, on: bool) {
        self.lock().interleaving = on;
    }

    pub fn fault_counts(&self) -> FaultCounts {
        self.lock().fault_counts
    }

    /// Reads the state without faults (the checks' and the simulated humans' view).
    pub(crate) fn peek<R>(&self, read: impl FnOnce(&State) -> R) -> R {
        read(&self.lock())
    }

    /// A task as stored, without faults.
    pub fn peek_task(&self, id: TaskId) -> Option<TaskRecord> {
        self.lock().tasks.get(&id).cloned()
    }

    /// All tasks, oldest first, without faults.
    pub fn peek_tasks(&self) -> Vec<TaskRecord> {
        self.lock().tasks.values().cloned().collect()
    }

    /// A job as stored, without faults.
    pub fn peek_job(&self, id: JobId) -> Option<JobRecord> {
        self.lock().jobs.get(&id).cloned()
    }

    /// All jobs of a task, oldest first, without faults.
    /// Jobs in `running`, oldest first.
    pub fn peek_running_jobs(&self) -> Vec<JobId> {
        self.peek(|s| s.jobs.values().filter(|j| j.status == JobStatus::Running).map(|j| j.id).collect())
    }

    pub fn peek_jobs(&self, task: TaskId) -> Vec<JobRecord> {
        self.lock().jobs.values().filter(|j| j.task_id == task).cloned().collect()
    }

    /// Whether `task` is declared to wait for `on`, as stored, without faults.
    pub fn peek_depends(&self, task: TaskId, on: TaskId) -> bool {
        self.lock().dependencies.contains_key(&(task, on))
    }

    /// A lease as stored, without faults.
    pub fn peek_lease(&self, name: &str) -> Option<LeaseRecord> {
        self.lock().leases.get(name).cloned()
    }

    /// Committed advances so far.
    pub fn commits(&self) -> Vec<Commit> {
        self.lock().commits.clone()
    }

    /// Writes an instance's heartbeat directly (the simulator's peer beats without store calls).
    pub fn beat(&self, record: InstanceRecord) {
        self.lock().instances.insert(record.id.clone(), record);
    }

    /// Forgets an instance's row (a killed peer: its jobs become a previous run's to recover).
    pub fn forget_instance(&self, id: &str) {
        self.lock().instances.remove(id);
    }

    /// Whether the inbox holds `key`, without faults.
    pub fn peek_inbox(&self, key: &str) -> bool {
        self.lock().inbox.contains_key(key)
    }

    /// While interleaving, yields one to three times before a call, so concurrent callers drift
    /// against each other and any order of their calls can happen.
    async fn pause(&self) {
        let yields = {
            let mut state = self.lock();
            if state.interleaving { 1 + state.pause_rng.below(3) } else { 0 }
        };
        for _ in 0..yields {
            yield_once().await;
        }
    }

    /// Sets how concurrent calls see each other (before any call runs).
    pub fn set_isolation(&self, isolation: Isolation) {
        self.lock().isolation = isolation;
    }

    pub fn isolation(&self) -> Isolation {
        self.lock().isolation
    }

    /// How many polls a READ COMMITTED lock wait lasts before it fails `Busy` as a lock timeout.
    /// The simulation's seeded scheduler polls every waiter once per round, so the default bound is
    /// rounds; on a real multi-threaded runtime (the store conformance suite) a poll is a wake-up
    /// while the holder's thread may not be running at all, so a bound there must be far larger.
    pub fn set_lock_wait_polls(&self, polls: u32) {
        self.lock().locks.wait_polls = Some(polls);
    }

    fn read_committed(&self) -> bool {
        self.lock().isolation == Isolation::ReadCommitted
    }

    /// Lock waits in READ COMMITTED so far, and calls failed `Busy` (deadlock or lock timeout).
    pub fn lock_waits(&self) -> (u64, u64) {
        let state = self.lock();
        (state.locks.waits, state.locks.busy)
    }

    /// Runs one call atomically under the lock, with a fault rolled first.
    async fn call<T>(
        &self,
        what: &str,
        access: Access,
        body: impl FnOnce(&mut State, i64) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.pause().await;
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let fault = state.roll(what, access);
        if fault == Some(Fault::Before) {
            state.fault_counts.failed_before_commit += 1;
            return Err(database(what, "failed before commit"));
        }
        let result = body(&mut state, now);
        if fault == Some(Fault::ReplyLost) && result.is_ok() {
            state.fault_counts.reply_lost += 1;
            return Err(database(what, "committed, but the reply was lost"));
        }
        result
    }
}

#[async_trait]
impl Store for SimStore {
    /// Always healthy, and without rolling a fault or yielding to the scheduler: the engine loop
    /// calls it every second, and a seed must replay the same whether or not it does.
    async fn health(&self) -> Vec<baton_store::HealthCheck> {
        vec![baton_store::HealthCheck::ok("sim_store", "the simulated store has no file to lose")]
    }

    async fn create_task(&self, new: NewTask, first: Transition, now_ms: i64) -> StoreResult<TaskRecord> {
        if self.read_committed() {
            return self.create_task_read_committed(new, first, now_ms).await;
        }
        self.call("create_task", Access::Write, |s, _| s.create_task(new, first, now_ms)).await
    }

    async fn raise_work_item_counter(&self, repo: &str, prefix: &str, next: i64) -> StoreResult<()> {
        let next = u32::try_from(next.max(1)).unwrap_or(u32::MAX);
        self.call("raise_work_item_counter", Access::Write, |s, _| {
            let counter = s.counters.entry((repo.to_string(), prefix.to_string())).or_insert(1);
            *counter = (*counter).max(next);
            Ok(())
        })
        .await
    }

    async fn task(&self, key: &TaskKey) -> StoreResult<Option<TaskRecord>> {
        self.call("task", Access::Read, |s, _| {
            Ok(match key {
                TaskKey::Id(id) => s.tasks.get(id).cloned(),
                TaskKey::WorkItem(w) => s.tasks.values().rev().find(|t| &t.work_item_id == w).cloned(),
            })
        })
        .await
    }

    async fn task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>> {
        self.call("task_by_external_ref", Access::Read, |s, _| {
            Ok(s.tasks.values().find(|t| t.external_ref.as_deref() == Some(external_ref)).cloned())
        })
        .await
    }

    async fn live_task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>> {
        self.call("live_task_by_external_ref", Access::Read, |s, _| {
            Ok(s.tasks
                .values()
                .find(|t| t.external_ref.as_deref() == Some(external_ref) && !t.state.is_terminal())
                .cloned())
        })
        .await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        self.call("list_tasks", Access::Read, |s, _| {
            Ok(s.tasks
                .values()
                .rev()
                .filter(|t| !filter.active_only || !t.state.is_terminal())
                .filter(|t| filter.repo.as_deref().is_none_or(|r| t.repo == r))
                .filter(|t| filter.stage.as_deref().is_none_or(|stage| t.state.stage == stage))
                .filter(|t| filter.hold.as_deref().is_none_or(|hold| t.state.hold.label() == hold))
                .cloned()
                .collect())
        })
        .await
    }

    async fn advance(&self, advance: Advance) -> StoreResult<Option<JobId>> {
        if self.read_committed() {
            return self.advance_read_committed(advance).await;
        }
        self.pause().await;
        let mut state = self.lock();
        let fault = state.roll("advance", Access::Write);
        if fault == Some(Fault::Before) {
            state.fault_counts.failed_before_commit += 1;
            if state.mutation == Mutation::InboxSurvivesFailure
                && let Some(entry) = &advance.inbox
            {
                let _ = state.insert_inbox(entry, advance.task, "applied", advance.now_ms);
            }
            return Err(database("advance", "failed before commit"));
        }
        let result = state.advance(&advance);
        if matches!(result, Err(StoreError::Conflict(_))) {
            state.conflicts += 1;
        }
        if fault == Some(Fault::ReplyLost) && result.is_ok() {
            state.fault_counts.reply_lost += 1;
            return Err(database("advance", "committed, but the reply was lost"));
        }
        result
    }

    async fn record_suppressed(&self, task: TaskId, inbox: Option<InboxEntry>, event: NewEvent) -> StoreResult<()> {
        let apply = |s: &mut State| {
            if let Some(entry) = &inbox {
                s.insert_inbox(entry, task, "suppressed", event.at_ms)?;
                s.keys_without_commit.insert(entry.dedup_key.clone());
            }
            s.insert_event(&event);
            Ok(())
        };
        if self.read_committed() {
            let key = inbox.as_ref().map(|entry| entry.dedup_key.clone());
            return self.event_read_committed("record_suppressed", key.as_deref(), apply).await;
        }
        self.call("record_suppressed", Access::Write, |s, _| apply(s)).await
    }

    async fn claim_job(&self, claim: &Claim) -> StoreResult<Option<JobRecord>> {
        if self.read_committed() {
            return Ok(self.claim_read_committed(claim, 1).await?.pop());
        }
        self.call("claim_job", Access::Write, |s, _| Ok(s.claim(claim))).await
    }

    async fn claim_jobs(&self, claim: &Claim, limit: u32) -> StoreResult<Vec<JobRecord>> {
        if self.read_committed() {
            return self.claim_read_committed(claim, limit).await;
        }
        self.call("claim_jobs", Access::Write, |s, _| {
            let mut claimed = Vec::new();
            while claimed.len() < limit as usize {
                let Some(job) = s.claim(claim) else { break };
                claimed.push(job);
            }
            Ok(claimed)
        })
        .await
    }

    async fn add_dependency(
        &self,
        task: TaskId,
        depends_on: TaskId,
        created_by: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.call("add_dependency", Access::Write, |s, _| {
            if task == depends_on {
                return Err(StoreError::Conflict(format!("task {task} cannot depend on itself")));
            }
            for id in [task, depends_on] {
                if !s.tasks.contains_key(&id) {
                    return Err(StoreError::NotFound(format!("task {id}")));
                }
            }
            if s.dependencies.contains_key(&(task, depends_on)) {
                return Ok(false);
            }
            s.dependencies.insert((task, depends_on), (now_ms, created_by.to_string()));
            Ok(true)
        })
        .await
    }

    async fn remove_dependency(&self, task: TaskId, depends_on: TaskId) -> StoreResult<bool> {
        self.call("remove_dependency", Access::Write, |s, _| Ok(s.dependencies.remove(&(task, depends_on)).is_some()))
            .await
    }

    async fn dependencies(&self, task: TaskId) -> StoreResult<Vec<DependencyRecord>> {
        self.call("dependencies", Access::Read, |s, _| {
            Ok(s.dependency_records(s.dependencies.iter().filter(|((t, _), _)| *t == task)))
        })
        .await
    }

    async fn live_dependencies(&self) -> StoreResult<Vec<DependencyRecord>> {
        self.call("live_dependencies", Access::Read, |s, _| {
            let live = |t: &TaskId| s.tasks.get(t).is_some_and(|t| !t.state.is_terminal());
            Ok(s.dependency_records(s.dependencies.iter().filter(|((t, _), _)| live(t))))
        })
        .await
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<JobRecord>> {
        self.call("job", Access::Read, |s, _| Ok(s.jobs.get(&id).cloned())).await
    }

    async fn jobs_with_status(&self, status: JobStatus) -> StoreResult<Vec<JobRecord>> {
        self.call("jobs_with_status", Access::Read, |s, _| {
            Ok(s.jobs.values().filter(|j| j.status == status).cloned().collect())
        })
        .await
    }

    async fn jobs_for_task(&self, task: TaskId) -> StoreResult<Vec<JobRecord>> {
        self.call("jobs_for_task", Access::Read, |s, _| {
            Ok(s.jobs.values().filter(|j| j.task_id == task).cloned().collect())
        })
        .await
    }

    async fn set_job_process(&self, job: JobId, pid: Option<u32>, pgid: Option<u32>) -> StoreResult<()> {
        self.call("set_job_process", Access::Write, |s, _| {
            if let Some(row) = s.jobs.get_mut(&job) {
                row.pid = pid;
                row.pgid = pgid;
            }
            Ok(())
        })
        .await
    }

    async fn set_job_proc_start(&self, job: JobId, start_ticks: u64) -> StoreResult<()> {
        self.call("set_job_proc_start", Access::Write, |s, _| {
            if let Some(row) = s.jobs.get_mut(&job) {
                row.proc_start = Some(start_ticks);
            }
            Ok(())
        })
        .await
    }

    async fn record_launch(
        &self,
        job: JobId,
        claimed_by: &str,
        run: i64,
        pid: u32,
        pgid: u32,
        start_ticks: Option<u64>,
    ) -> StoreResult<bool> {
        self.call("record_launch", Access::Write, |s, _| {
            if let Some(run) = s.agent_runs.iter_mut().find(|r| r.id == run) {
                run.pid = Some(pid);
            }
            let Some(row) = s.jobs.get_mut(&job).filter(|j| j.runs_under_claim(claimed_by)) else {
                return Ok(false);
            };
            row.pid = Some(pid);
            row.pgid = Some(pgid);
            if let Some(ticks) = start_ticks {
                row.proc_start = Some(ticks);
            }
            Ok(true)
        })
        .await
    }

    async fn adopt_job(&self, job: JobId, claimed_by: Option<&str>, owner: &str) -> StoreResult<bool> {
        self.call("adopt_job", Access::Write, |s, _| {
            let Some(row) =
                s.jobs.get_mut(&job).filter(|j| j.status == JobStatus::Running && j.owner.as_deref() == claimed_by)
            else {
                return Ok(false);
            };
            row.owner = Some(owner.to_string());
            Ok(true)
        })
        .await
    }

    async fn renew_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<bool> {
        let apply = |s: &mut State| {
            let Some(lease) = s.leases.get_mut(name).filter(|l| l.holder == holder) else {
                return Ok(false);
            };
            lease.expires_at_ms = now_ms + ttl_ms;
            Ok(true)
        };
        if self.read_committed() {
            return self.renew_lease_read_committed(name, apply).await;
        }
        self.call("renew_lease", Access::Write, |s, _| apply(s)).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        let apply = |s: &mut State| {
            let held = s.leases.get(name).is_some_and(|l| l.holder == holder);
            if held {
                s.leases.remove(name);
            }
            Ok(held)
        };
        if self.read_committed() {
            return self.row_write("release_lease", LockKey::Lease(name.to_string()), apply).await;
        }
        self.call("release_lease", Access::Write, |s, _| apply(s)).await
    }

    async fn release_lease_if_unmoved(&self, name: &str, task: TaskId, version: i64) -> StoreResult<bool> {
        let what = "release_lease_if_unmoved";
        let apply = |s: &mut State| {
            let unmoved = s.tasks.get(&task).is_some_and(|t| t.version == version);
            let held = unmoved && s.leases.get(name).is_some_and(|l| l.holder == task_holder(task));
            if held {
                s.leases.remove(name);
            }
            Ok(held)
        };
        if self.read_committed() {
            // The task row first (`FOR SHARE`), then the lease's row, as PostgreSQL takes them.
            let (txn, fault) = self.begin(what).await;
            txn.lock(LockKey::Task(task)).await?;
            txn.lock(LockKey::Lease(name.to_string())).await?;
            return self.commit(txn, what, fault, apply);
        }
        self.call(what, Access::Write, |s, _| apply(s)).await
    }

    async fn close_job(
        &self,
        job: JobId,
        status: JobStatus,
        result: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let apply = |s: &mut State| {
            let active = s.jobs.get(&job).is_some_and(|j| matches!(j.status, JobStatus::Queued | JobStatus::Running));
            if active {
                s.end_job(job, status, Some(result), now_ms);
            }
            Ok(active)
        };
        if self.read_committed() {
            return self.row_write("close_job", LockKey::Job(job), apply).await;
        }
        self.call("close_job", Access::Write, |s, _| apply(s)).await
    }

    async fn close_claimed_job(
        &self,
        job: JobId,
        claimed_by: &str,
        status: JobStatus,
        result: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let apply = |s: &mut State| {
            let claimed = s.jobs.get(&job).is_some_and(|j| j.runs_under_claim(claimed_by));
            if claimed {
                s.end_job(job, status, Some(result), now_ms);
            }
            Ok(claimed)
        };
        if self.read_committed() {
            return self.row_write("close_claimed_job", LockKey::Job(job), apply).await;
        }
        self.call("close_claimed_job", Access::Write, |s, _| apply(s)).await
    }

    async fn take_over_job(&self, job: JobId, owner: &str, available_at_ms: i64, event: NewEvent) -> StoreResult<bool> {
        let apply = |s: &mut State| {
            if s.mutation == Mutation::RequeueNothing {
                return Ok(false);
            }
            let requeued = s.requeue_running(job, Some(owner), available_at_ms);
            if requeued {
                s.insert_event(&event);
            }
            Ok(requeued)
        };
        if self.read_committed() {
            return self.take_over_job_read_committed(job, apply).await;
        }
        self.call("take_over_job", Access::Write, |s, _| apply(s)).await
    }

    async fn requeue_job(&self, job: JobId, claimed_by: Option<&str>, available_at_ms: i64) -> StoreResult<bool> {
        let apply = |s: &mut State| {
            if s.mutation == Mutation::RequeueNothing {
                return Ok(false);
            }
            Ok(s.requeue_running(job, claimed_by, available_at_ms))
        };
        if self.read_committed() {
            return self.row_write("requeue_job", LockKey::Job(job), apply).await;
        }
        self.call("requeue_job", Access::Write, |s, _| apply(s)).await
    }

    async fn insert_agent_run(&self, run: NewAgentRun) -> StoreResult<i64> {
        self.call("insert_agent_run", Access::Write, |s, _| {
            let id = s.agent_runs.last().map_or(1, |r| r.id + 1);
            s.agent_runs.push(AgentRunRecord {
                id,
                job_id: run.job,
                task_id: run.task,
                stage: run.stage,
                adapter: run.adapter,
                model: run.model,
                pid: run.pid,
                started_at_ms: run.started_at_ms,
                ended_at_ms: None,
                exit_code: None,
                status: None,
                error: None,
                session_id: None,
                turns: None,
                input_tokens: 0,
                output_tokens: 0,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
                cost_usd: None,
                log_path: run.log_path,
            });
            Ok(id)
        })
        .await
    }

    async fn set_agent_run_pid(&self, id: i64, pid: u32) -> StoreResult<()> {
        self.call("set_agent_run_pid", Access::Write, |s, _| {
            if let Some(run) = s.agent_runs.iter_mut().find(|r| r.id == id) {
                run.pid = Some(pid);
            }
            Ok(())
        })
        .await
    }

    async fn finish_agent_run(&self, id: i64, finish: AgentRunFinish) -> StoreResult<()> {
        self.call("finish_agent_run", Access::Write, |s, _| {
            if let Some(run) = s.agent_runs.iter_mut().find(|r| r.id == id) {
                let report = &finish.report;
                let (status, error) = finish.status_and_error();
                run.ended_at_ms = Some(finish.ended_at_ms);
                run.exit_code = finish.exit_code;
                run.status = Some(status.to_string());
                run.error = error;
                run.session_id.clone_from(&report.session_id);
                run.turns = report.turns;
                run.input_tokens = report.usage.input_tokens;
                run.output_tokens = report.usage.output_tokens;
                run.cache_read_tokens = report.usage.cache_read_tokens;
                run.cache_write_tokens = report.usage.cache_write_tokens;
                run.reasoning_tokens = report.usage.reasoning_tokens;
                run.cost_usd = report.cost_usd;
                if report.model.is_some() {
                    run.model.clone_from(&report.model);
                }
            }
            Ok(())
        })
        .await
    }

    async fn agent_runs(&self, task: TaskId) -> StoreResult<Vec<AgentRunRecord>> {
        self.call("agent_runs", Access::Read, |s, _| {
            Ok(s.agent_runs.iter().filter(|r| r.task_id == task).cloned().collect())
        })
        .await
    }

    async fn count_agent_runs(&self, task: TaskId, stage: &str) -> StoreResult<u32> {
        self.call("count_agent_runs", Access::Read, |s, _| {
            Ok(s.agent_runs.iter().filter(|r| r.task_id == task && r.stage == stage).count() as u32)
        })
        .await
    }

    async fn append_event(&self, event: NewEvent) -> StoreResult<i64> {
        if self.read_committed() {
            return self.event_read_committed("append_event", None, |s| Ok(s.insert_event(&event))).await;
        }
        self.call("append_event", Access::Write, |s, _| Ok(s.insert_event(&event))).await
    }

    async fn events(&self, task: Option<TaskId>, after_id: i64, limit: u32) -> StoreResult<Vec<EventRecord>> {
        self.call("events", Access::Read, |s, _| {
            Ok(s.events
                .iter()
                .filter(|e| e.id > after_id && task.is_none_or(|t| e.task_id == t))
                .take(limit as usize)
                .cloned()
                .collect())
        })
        .await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<LeaseOutcome> {
        if self.read_committed() {
            let outcome = self.acquire_lease_read_committed(name, holder, LeaseFence::None, ttl_ms, now_ms).await?;
            // Only a fenced acquire answers `None`.
            return outcome.ok_or_else(|| StoreError::Database("acquire_lease: no answer".into()));
        }
        self.call("acquire_lease", Access::Write, |s, _| Ok(s.acquire_lease(name, holder, ttl_ms, now_ms))).await
    }

    async fn acquire_lease_for_job(
        &self,
        name: &str,
        task: TaskId,
        job: JobId,
        ttl_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Option<LeaseOutcome>> {
        if self.read_committed() {
            let holder = task_holder(task);
            return self
                .acquire_lease_read_committed(name, &holder, LeaseFence::ActiveJob(task, job), ttl_ms, now_ms)
                .await;
        }
        self.call("acquire_lease_for_job", Access::Write, |s, _| {
            Ok(s.job_is_active(task, job).then(|| s.acquire_lease(name, &task_holder(task), ttl_ms, now_ms)))
        })
        .await
    }

    async fn lease(&self, name: &str) -> StoreResult<Option<LeaseRecord>> {
        self.call("lease", Access::Read, |s, _| Ok(s.leases.get(name).cloned())).await
    }

    async fn leases(&self) -> StoreResult<Vec<LeaseRecord>> {
        self.call("leases", Access::Read, |s, _| Ok(s.leases.values().cloned().collect())).await
    }

    async fn inbox_seen(&self, dedup_key: &str) -> StoreResult<bool> {
        self.call("inbox_seen", Access::Read, |s, _| Ok(s.inbox.contains_key(dedup_key))).await
    }

    async fn coverage_baseline(&self, repo: &str) -> StoreResult<Option<CoverageBaseline>> {
        self.call("coverage_baseline", Access::Read, |s, _| Ok(s.coverage_baselines.get(repo).cloned())).await
    }

    async fn coverage_baselines(&self) -> StoreResult<Vec<CoverageBaseline>> {
        self.call("coverage_baselines", Access::Read, |s, _| Ok(s.coverage_baselines.values().cloned().collect())).await
    }

    async fn raise_coverage_baseline(
        &self,
        repo: &str,
        pct: f64,
        set_by: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.call("raise_coverage_baseline", Access::Write, |s, _| {
            if s.coverage_baselines.get(repo).is_some_and(|b| b.pct >= pct) {
                return Ok(false);
            }
            let row = CoverageBaseline {
                repo: repo.to_string(),
                pct,
                updated_at_ms: now_ms,
                set_by: set_by.to_string(),
                reason: reason.to_string(),
            };
            s.coverage_baselines.insert(repo.to_string(), row);
            Ok(true)
        })
        .await
    }

    async fn set_coverage_baseline(
        &self,
        repo: &str,
        pct: f64,
        set_by: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.call("set_coverage_baseline", Access::Write, |s, _| {
            let row = CoverageBaseline {
                repo: repo.to_string(),
                pct,
                updated_at_ms: now_ms,
                set_by: set_by.to_string(),
                reason: reason.to_string(),
            };
            s.coverage_baselines.insert(repo.to_string(), row);
            Ok(())
        })
        .await
    }

    async fn freeze_repo(&self, freeze: &NewFreeze, now_ms: i64) -> StoreResult<(RepoFreeze, bool)> {
        self.call("freeze_repo", Access::Write, |s, _| {
            if let Some(open) = s.freezes.iter().find(|f| f.repo == freeze.repo && f.unfrozen_at_ms.is_none()) {
                return Ok((open.clone(), false));
            }
            let row = RepoFreeze {
                id: s.freezes.len() as i64 + 1,
                repo: freeze.repo.clone(),
                task: freeze.task,
                incident: None,
                revert: None,
                frozen_by: freeze.frozen_by.clone(),
                reason: freeze.reason.clone(),
                frozen_at_ms: now_ms,
                unfrozen_by: None,
                unfrozen_at_ms: None,
            };
            s.freezes.push(row.clone());
            Ok((row, true))
        })
        .await
    }

    async fn link_freeze(&self, id: i64, incident: Option<TaskId>, revert: Option<TaskId>) -> StoreResult<()> {
        self.call("link_freeze", Access::Write, |s, _| {
            if let Some(row) = s.freezes.iter_mut().find(|f| f.id == id) {
                row.incident = row.incident.or(incident);
                row.revert = row.revert.or(revert);
            }
            Ok(())
        })
        .await
    }

    async fn unfreeze_repo(&self, repo: &str, by: &str, now_ms: i64) -> StoreResult<Option<RepoFreeze>> {
        self.call("unfreeze_repo", Access::Write, |s, _| {
            Ok(s.freezes.iter_mut().find(|f| f.repo == repo && f.unfrozen_at_ms.is_none()).map(|row| {
                row.unfrozen_by = Some(by.to_string());
                row.unfrozen_at_ms = Some(now_ms);
                row.clone()
            }))
        })
        .await
    }

    async fn repo_freezes(&self) -> StoreResult<Vec<RepoFreeze>> {
        self.call("repo_freezes", Access::Read, |s, _| {
            let mut open: Vec<RepoFreeze> = s.freezes.iter().filter(|f| f.unfrozen_at_ms.is_none()).cloned().collect();
            open.sort_by(|a, b| a.repo.cmp(&b.repo));
            Ok(open)
        })
        .await
    }

    async fn record_lesson(
        &self,
        lesson: &NewLesson,
        dedup_window_ms: i64,
        now_ms: i64,
    ) -> StoreResult<(LessonRecord, LessonWrite)> {
        self.call("record_lesson", Access::Write, |s, _| {
            if let Some(row) = s.lessons.values_mut().find(|l| l.slug == lesson.slug) {
                let write = if now_ms - row.updated_at_ms < dedup_window_ms {
                    row.updated_at_ms = row.updated_at_ms.max(now_ms);
                    LessonWrite::Duplicate
                } else {
                    row.title = lesson.title.clone();
                    row.body = lesson.body.clone();
                    row.repo = lesson.repo.clone();
                    row.stage = lesson.stage.clone();
                    row.tags = lesson.tags.clone();
                    row.task = lesson.task.clone();
                    row.updated_at_ms = now_ms;
                    LessonWrite::Refreshed
                };
                return Ok((row.clone(), write));
            }
            let id = s.lessons.keys().next_back().copied().unwrap_or(0) + 1;
            let row = LessonRecord {
                id,
                slug: lesson.slug.clone(),
                title: lesson.title.clone(),
                body: lesson.body.clone(),
                source: lesson.source.clone(),
                repo: lesson.repo.clone(),
                stage: lesson.stage.clone(),
                tags: lesson.tags.clone(),
                task: lesson.task.clone(),
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                hits: 0,
                last_hit_at_ms: None,
                status: lesson.status().to_string(),
            };
            s.lessons.insert(id, row.clone());
            Ok((row, LessonWrite::Created))
        })
        .await
    }

    async fn lesson(&self, id: i64) -> StoreResult<Option<LessonRecord>> {
        self.call("lesson", Access::Read, |s, _| Ok(s.lessons.get(&id).cloned())).await
    }

    async fn lessons(&self, filter: &LessonFilter) -> StoreResult<Vec<LessonRecord>> {
        self.call("lessons", Access::Read, |s, _| {
            let mut rows: Vec<LessonRecord> = s.lessons.values().filter(|l| filter.matches(l)).cloned().collect();
            rows.sort_by_key(|l| std::cmp::Reverse((l.updated_at_ms, l.id)));
            Ok(rows)
        })
        .await
    }

    async fn update_lesson(&self, id: i64, patch: &LessonPatch, now_ms: i64) -> StoreResult<LessonRecord> {
        self.call("update_lesson", Access::Write, |s, _| {
            let row = s.lessons.get_mut(&id).ok_or_else(|| StoreError::NotFound(format!("lesson {id}")))?;
            patch.apply(row, now_ms);
            Ok(row.clone())
        })
        .await
    }

    async fn hit_lessons(&self, ids: &[i64], now_ms: i64) -> StoreResult<()> {
        self.call("hit_lessons", Access::Write, |s, _| {
            for id in ids {
                if let Some(row) = s.lessons.get_mut(id) {
                    row.hits += 1;
                    row.last_hit_at_ms = Some(now_ms);
                }
            }
            Ok(())
        })
        .await
    }

    async fn propose_task(&self, proposal: &NewTaskProposal, now_ms: i64) -> StoreResult<(TaskProposalRecord, bool)> {
        self.call("propose_task", Access::Write, |s, _| {
            let same = |p: &&TaskProposalRecord| p.from_task == proposal.from_task && p.title == proposal.title;
            if let Some(row) = s.task_proposals.values().find(same) {
                return Ok((row.clone(), false));
            }
            let id = s.task_proposals.keys().next_back().copied().unwrap_or(0) + 1;
            let row = TaskProposalRecord {
                id,
                from_task: proposal.from_task,
                repo: proposal.repo.clone(),
                title: proposal.title.clone(),
                body: proposal.body.clone(),
                status: "proposed".into(),
                created_at_ms: now_ms,
                decided_at_ms: None,
                decided_by: None,
                created_task: None,
            };
            s.task_proposals.insert(id, row.clone());
            Ok((row, true))
        })
        .await
    }

    async fn task_proposal(&self, id: i64) -> StoreResult<Option<TaskProposalRecord>> {
        self.call("task_proposal", Access::Read, |s, _| Ok(s.task_proposals.get(&id).cloned())).await
    }

    async fn task_proposals(&self, filter: &ProposalFilter) -> StoreResult<Vec<TaskProposalRecord>> {
        self.call("task_proposals", Access::Read, |s, _| {
            Ok(s.task_proposals.values().filter(|p| filter.matches(p)).cloned().collect())
        })
        .await
    }

    async fn decide_task_proposal(
        &self,
        id: i64,
        status: &str,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<TaskProposalRecord> {
        self.call("decide_task_proposal", Access::Write, |s, _| {
            let row =
                s.task_proposals.get_mut(&id).ok_or_else(|| StoreError::NotFound(format!("task proposal {id}")))?;
            let mut decided = row.clone();
            baton_store::proposal_decision(&mut decided, status, by, now_ms)?;
            *row = decided.clone();
            Ok(decided)
        })
        .await
    }

    async fn link_task_proposal(&self, id: i64, task: TaskId) -> StoreResult<TaskProposalRecord> {
        self.call("link_task_proposal", Access::Write, |s, _| {
            let row =
                s.task_proposals.get_mut(&id).ok_or_else(|| StoreError::NotFound(format!("task proposal {id}")))?;
            if row.status != "accepted" || row.created_task.is_some() {
                return Err(StoreError::Conflict(format!(
                    "task proposal {id} is not accepted or already has its task"
                )));
            }
            row.created_task = Some(task);
            Ok(row.clone())
        })
        .await
    }

    async fn set_budget_cap(&self, scope: &str, cap_usd: Option<f64>, _now_ms: i64) -> StoreResult<()> {
        self.call("set_budget_cap", Access::Write, |s, _| {
            s.budget_caps.insert(scope.to_string(), cap_usd);
            Ok(())
        })
        .await
    }

    async fn budget_caps(&self) -> StoreResult<Vec<(String, Option<f64>)>> {
        self.call("budget_caps", Access::Read, |s, _| Ok(s.budget_caps.iter().map(|(k, v)| (k.clone(), *v)).collect()))
            .await
    }

    async fn spend_usd(&self, filter: &SpendFilter) -> StoreResult<f64> {
        self.call("spend_usd", Access::Read, |s, _| {
            let runs: f64 = s.agent_runs.iter().filter(|r| s.run_matches(r, filter)).filter_map(|r| r.cost_usd).sum();
            let records: f64 = s
                .usage_records
                .iter()
                .filter(|r| State::record_matches(&r.record, filter))
                .filter_map(|r| r.record.cost_usd)
                .sum();
            Ok(runs + records)
        })
        .await
    }

    async fn record_once(&self, key: &str, _kind: &str, now_ms: i64) -> StoreResult<bool> {
        self.call("record_once", Access::Write, |s, _| {
            if s.inbox.contains_key(key) {
                return Ok(false);
            }
            s.inbox.insert(key.to_string(), InboxRow { outcome: "once".into(), task: None, received_at_ms: now_ms });
            s.keys_without_commit.insert(key.to_string());
            Ok(true)
        })
        .await
    }

    async fn usage(&self, group: UsageGroup) -> StoreResult<Vec<UsageRow>> {
        self.call("usage", Access::Read, |s, _| Ok(s.usage(group))).await
    }

    async fn insert_usage_record(&self, record: NewUsageRecord) -> StoreResult<UsageInsert> {
        self.call("insert_usage_record", Access::Write, |s, _| {
            if let Some(key) = &record.idempotency_key
                && let Some(first) = s
                    .usage_records
                    .iter()
                    .find(|r| r.record.source == record.source && r.record.idempotency_key.as_ref() == Some(key))
            {
                return Ok(UsageInsert { record: first.clone(), created: false });
            }
            let stored = UsageRecord { id: s.usage_records.len() as i64 + 1, record: record.clone() };
            s.usage_records.push(stored.clone());
            Ok(UsageInsert { record: stored, created: true })
        })
        .await
    }

    async fn usage_record_totals(&self) -> StoreResult<Vec<UsageRecordTotals>> {
        self.call("usage_record_totals", Access::Read, |s, _| Ok(s.usage_record_totals())).await
    }

    async fn done_task_spend(&self) -> StoreResult<DoneTaskSpend> {
        self.call("done_task_spend", Access::Read, |s, _| Ok(s.done_task_spend())).await
    }

    async fn claim_effects(&self, claim: &EffectClaim) -> StoreResult<Vec<EffectRecord>> {
        self.call("claim_effects", Access::Write, |s, _| {
            let mut claimed = Vec::new();
            for (record, claimed_until) in s.outbox.iter_mut() {
                if claimed.len() as u32 >= claim.limit {
                    break;
                }
                let due = record.done_at_ms.is_none()
                    && record.available_at_ms <= claim.now_ms
                    && *claimed_until <= claim.now_ms
                    && claim.task.is_none_or(|t| t == record.task_id);
                if due {
                    *claimed_until = claim.now_ms + claim.claim_ms;
                    record.attempts += 1;
                    claimed.push(record.clone());
                }
            }
            Ok(claimed)
        })
        .await
    }

    async fn complete_effect(&self, id: i64, now_ms: i64) -> StoreResult<bool> {
        self.call("complete_effect", Access::Write, |s, _| {
            Ok(match s.outbox.iter_mut().find(|(r, _)| r.id == id) {
                Some((record, _)) if record.done_at_ms.is_none() => {
                    record.done_at_ms = Some(now_ms);
                    true
                }
                _ => false,
            })
        })
        .await
    }

    async fn fail_effect(&self, id: i64, error: &str, retry_at_ms: i64) -> StoreResult<()> {
        self.call("fail_effect", Access::Write, |s, _| {
            if let Some((record, claimed_until)) =
                s.outbox.iter_mut().find(|(r, _)| r.id == id && r.done_at_ms.is_none())
            {
                record.last_error = Some(error.to_string());
                record.available_at_ms = retry_at_ms;
                *claimed_until = 0;
            }
            Ok(())
        })
        .await
    }

    async fn effects(&self, task: Option<TaskId>, pending_only: bool) -> StoreResult<Vec<EffectRecord>> {
        self.call("effects", Access::Read, |s, _| {
            Ok(s.outbox
                .iter()
                .map(|(r, _)| r)
                .filter(|r| task.is_none_or(|t| t == r.task_id) && (!pending_only || r.done_at_ms.is_none()))
                .cloned()
                .collect())
        })
        .await
    }

    async fn list_tasks_page(
        &self,
        filter: &TaskFilter,
        before: Option<TaskId>,
        limit: u32,
    ) -> StoreResult<Vec<TaskRecord>> {
        let all = self.list_tasks(filter).await?;
        Ok(all.into_iter().filter(|t| before.is_none_or(|b| t.id.0 < b.0)).take(limit as usize).collect())
    }

    async fn task_counts(&self) -> StoreResult<Vec<baton_store::TaskCount>> {
        self.call("task_counts", Access::Read, |s, _| {
            let mut counts = std::collections::BTreeMap::<(String, String), u64>::new();
            for task in s.tasks.values() {
                *counts.entry((task.state.stage.clone(), task.state.hold.label().to_string())).or_default() += 1;
            }
            Ok(counts.into_iter().map(|((stage, hold), tasks)| baton_store::TaskCount { stage, hold, tasks }).collect())
        })
        .await
    }

    async fn open_jobs(&self) -> StoreResult<Vec<baton_store::OpenJob>> {
        self.call("open_jobs", Access::Read, |s, _| {
            let mut open: Vec<baton_store::OpenJob> = s
                .jobs
                .values()
                .filter(|j| matches!(j.status, JobStatus::Queued | JobStatus::Running))
                .filter_map(|j| {
                    let task = s.tasks.get(&j.task_id)?;
                    Some(baton_store::OpenJob {
                        job: j.clone(),
                        work_item_id: task.work_item_id.clone(),
                        cancel_requested: task.state.cancel_requested.clone(),
                    })
                })
                .collect();
            open.sort_by_key(|o| (o.job.available_at_ms, o.job.id.0));
            Ok(open)
        })
        .await
    }

    async fn metric_counts(&self, bounds: &baton_store::HistogramBounds) -> StoreResult<baton_store::MetricCounts> {
        self.call("metric_counts", Access::Read, |s, _| {
            Ok(baton_store::MetricCounts::from_records(
                s.tasks.values(),
                s.jobs.values(),
                s.events.iter(),
                s.agent_runs.iter(),
                bounds,
            ))
        })
        .await
    }

    async fn open_agent_runs(&self) -> StoreResult<Vec<AgentRunRecord>> {
        self.call("open_agent_runs", Access::Read, |s, _| {
            Ok(s.agent_runs.iter().filter(|r| r.ended_at_ms.is_none()).cloned().collect())
        })
        .await
    }

    async fn close_agent_run(&self, id: i64, status: &str, error: &str, now_ms: i64) -> StoreResult<bool> {
        self.call("close_agent_run", Access::Write, |s, _| {
            Ok(match s.agent_runs.iter_mut().find(|r| r.id == id && r.ended_at_ms.is_none()) {
                Some(run) => {
                    run.ended_at_ms = Some(now_ms);
                    run.status = Some(status.to_string());
                    run.error = Some(error.to_string());
                    true
                }
                None => false,
            })
        })
        .await
    }

    async fn record_delivery(&self, delivery: NewDelivery) -> StoreResult<bool> {
        self.call("record_delivery", Access::Write, |s, _| {
            if s.deliveries.iter().any(|d| d.source == delivery.source && d.delivery_id == delivery.delivery_id) {
                return Ok(false);
            }
            // As SQLite's rowid: one past the largest id (pruned rows leave gaps).
            let id = s.deliveries.last().map_or(1, |d| d.id + 1);
            s.deliveries.push(DeliveryRecord {
                id,
                source: delivery.source,
                delivery_id: delivery.delivery_id,
                event: delivery.event,
                received_at_ms: delivery.received_at_ms,
                payload: delivery.payload,
                processed_at_ms: None,
                parsed: None,
                error: None,
            });
            Ok(true)
        })
        .await
    }

    async fn pending_deliveries(&self, limit: u32) -> StoreResult<Vec<DeliveryRecord>> {
        self.call("pending_deliveries", Access::Read, |s, _| {
            Ok(s.deliveries.iter().filter(|d| d.processed_at_ms.is_none()).take(limit as usize).cloned().collect())
        })
        .await
    }

    async fn mark_delivery(
        &self,
        id: i64,
        processed_at_ms: i64,
        parsed: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<bool> {
        self.call("mark_delivery", Access::Write, |s, _| {
            Ok(match s.deliveries.iter_mut().find(|d| d.id == id && d.processed_at_ms.is_none()) {
                Some(row) => {
                    row.processed_at_ms = Some(processed_at_ms);
                    row.parsed = parsed.map(str::to_string);
                    row.error = error.map(str::to_string);
                    true
                }
                None => false,
            })
        })
        .await
    }

    async fn deliveries(&self, source: Option<&str>) -> StoreResult<Vec<DeliveryRecord>> {
        self.call("deliveries", Access::Read, |s, _| {
            Ok(s.deliveries.iter().filter(|d| source.is_none_or(|src| d.source == src)).cloned().collect())
        })
        .await
    }

    async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        scope: &str,
        created_by: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.call("create_api_token", Access::Write, |s, _| {
            if s.api_tokens.contains_key(name) || s.api_tokens.values().any(|(hash, _)| hash == token_hash) {
                return Err(StoreError::Conflict(format!("a token named `{name}` exists already")));
            }
            let record = ApiTokenRecord {
                name: name.to_string(),
                scope: scope.to_string(),
                created_by: created_by.to_string(),
                created_at_ms: now_ms,
                revoked_at_ms: None,
            };
            s.api_tokens.insert(name.to_string(), (token_hash.to_string(), record));
            Ok(())
        })
        .await
    }

    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        self.call("api_token_by_hash", Access::Read, |s, _| {
            Ok(s.api_tokens
                .values()
                .find(|(hash, record)| hash == token_hash && record.revoked_at_ms.is_none())
                .map(|(_, record)| record.clone()))
        })
        .await
    }

    async fn api_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>> {
        self.call("api_tokens", Access::Read, |s, _| Ok(s.api_tokens.values().map(|(_, r)| r.clone()).collect())).await
    }

    async fn revoke_api_token(&self, name: &str, now_ms: i64) -> StoreResult<bool> {
        self.call("revoke_api_token", Access::Write, |s, _| {
            Ok(match s.api_tokens.get_mut(name) {
                Some((_, record)) if record.revoked_at_ms.is_none() => {
                    record.revoked_at_ms = Some(now_ms);
                    true
                }
                _ => false,
            })
        })
        .await
    }

    async fn begin_idempotent(
        &self,
        key: &str,
        request_hash: &str,
        now_ms: i64,
        stale_ms: i64,
    ) -> StoreResult<IdempotencyBegin> {
        self.call("begin_idempotent", Access::Write, |s, _| {
            let Some(row) = s.idempotency.get_mut(key) else {
                s.idempotency.insert(key.to_string(), (request_hash.to_string(), now_ms, None, None));
                return Ok(IdempotencyBegin::Started);
            };
            if row.0 != request_hash {
                return Ok(IdempotencyBegin::Mismatch);
            }
            if let Some((status, body)) = &row.3 {
                return Ok(IdempotencyBegin::Replay { status: *status, body: body.clone() });
            }
            if now_ms - row.1 < stale_ms {
                return Ok(IdempotencyBegin::InProgress);
            }
            row.1 = now_ms;
            Ok(IdempotencyBegin::Resumed { task: row.2 })
        })
        .await
    }

    async fn finish_idempotent(&self, key: &str, status: u16, body: &str, _now_ms: i64) -> StoreResult<()> {
        self.call("finish_idempotent", Access::Write, |s, _| {
            if let Some(row) = s.idempotency.get_mut(key) {
                row.3 = Some((status, body.to_string()));
            }
            Ok(())
        })
        .await
    }

    async fn abandon_idempotent(&self, key: &str) -> StoreResult<()> {
        self.call("abandon_idempotent", Access::Write, |s, _| {
            if s.idempotency.get(key).is_some_and(|row| row.2.is_none() && row.3.is_none()) {
                s.idempotency.remove(key);
            }
            Ok(())
        })
        .await
    }

    async fn queue_enter(&self, task: TaskId, repo: &str, priority: i64, now_ms: i64) -> StoreResult<bool> {
        self.call("queue_enter", Access::Write, |s, _| Ok(s.enter_queue(task, repo, priority, now_ms))).await
    }

    async fn due_holds(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<TaskId>> {
        self.call("due_holds", Access::Read, |s, _| {
            let mut due: Vec<(i64, TaskId)> = s
                .tasks
                .values()
                .filter_map(|t| t.state.hold.due_at_ms().filter(|at| *at <= now_ms).map(|at| (at, t.id)))
                .collect();
            due.sort();
            Ok(due.into_iter().take(limit as usize).map(|(_, id)| id).collect())
        })
        .await
    }

    async fn queue_entry(&self, task: TaskId) -> StoreResult<Option<QueueEntry>> {
        self.call("queue_entry", Access::Read, |s, _| Ok(s.queue.get(&task).cloned())).await
    }

    async fn queue_entries(&self, repo: Option<&str>) -> StoreResult<Vec<QueueEntry>> {
        self.call("queue_entries", Access::Read, |s, _| {
            let mut entries: Vec<QueueEntry> =
                s.queue.values().filter(|e| repo.is_none_or(|r| e.repo == r)).cloned().collect();
            entries.sort_by(|a, b| (&a.repo, a.entered_at_ms, a.task).cmp(&(&b.repo, b.entered_at_ms, b.task)));
            Ok(entries)
        })
        .await
    }

    async fn queue_entries_with_head(&self, repo: &str, head: &str) -> StoreResult<Vec<QueueEntry>> {
        self.call("queue_entries_with_head", Access::Read, |s, _| {
            let mut entries: Vec<QueueEntry> =
                s.queue.values().filter(|e| e.repo == repo && e.head.as_deref() == Some(head)).cloned().collect();
            entries.sort_by_key(|e| (e.entered_at_ms, e.task));
            Ok(entries)
        })
        .await
    }

    async fn queue_update(
        &self,
        task: TaskId,
        expect: &QueueExpect,
        change: &QueueChange,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.call("queue_update", Access::Write, |s, _| Ok(s.update_queue_entry(task, expect, change, now_ms))).await
    }

    async fn queue_land(&self, landing: &QueueLanding, now_ms: i64) -> StoreResult<Option<LeaseOutcome>> {
        let QueueLanding { task, job, expect, change, lease: name, ttl_ms } = landing;
        let (task, job, ttl_ms) = (*task, *job, *ttl_ms);
        let holder = task_holder(task);
        if self.read_committed() {
            let fence = LeaseFence::QueueLanding(landing);
            return self.acquire_lease_read_committed(name, &holder, fence, ttl_ms, now_ms).await;
        }
        self.call("queue_land", Access::Write, |s, _| {
            let entry = s.queue.get(&task).filter(|e| e.state == expect.state && e.base == expect.base);
            if entry.is_none() || job.is_some_and(|job| !s.job_is_active(task, job)) {
                return Ok(None);
            }
            let outcome = s.acquire_lease(name, &holder, ttl_ms, now_ms);
            if matches!(outcome, LeaseOutcome::Acquired { .. }) {
                s.update_queue_entry(task, expect, change, now_ms);
            }
            Ok(Some(outcome))
        })
        .await
    }

    async fn set_queue_priority(&self, task: TaskId, priority: i64) -> StoreResult<bool> {
        self.call("set_queue_priority", Access::Write, |s, _| {
            Ok(s.queue.get_mut(&task).map(|e| e.priority = priority).is_some())
        })
        .await
    }

    /// Like `health`, without rolling a fault or yielding: the engine loop asks about once a
    /// second, and a seed must replay the same whether or not it does.
    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        let state = self.lock();
        Ok(state.tasks.values().filter_map(|t| t.state.hold.due_at_ms()).min())
    }

    async fn next_job_at_ms(&self) -> StoreResult<Option<i64>> {
        let state = self.lock();
        Ok(state.jobs.values().filter(|j| j.status == JobStatus::Queued).map(|j| j.available_at_ms).min())
    }

    async fn unapplied_tasks(&self, since_ms: i64, before_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        self.call("unapplied_tasks", Access::Read, |s, _| {
            let mut found: Vec<(i64, JobId, TaskRecord)> = s
                .tasks
                .values()
                .filter(|t| !t.state.is_terminal() && t.state.hold == baton_domain::Hold::None)
                .filter(|t| t.updated_at_ms < before_ms)
                .filter_map(|t| {
                    let job = t.state.job.and_then(|job| s.jobs.get(&job))?;
                    let ended = !matches!(job.status, JobStatus::Queued | JobStatus::Running);
                    let at = job.finished_at_ms.filter(|at| ended && *at >= since_ms && *at < before_ms)?;
                    Some((at, job.id, t.clone()))
                })
                .collect();
            found.sort_by_key(|(at, job, _)| (*at, job.0));
            Ok(found.into_iter().take(limit as usize).map(|(_, _, t)| t).collect())
        })
        .await
    }

    async fn job_counts(&self) -> StoreResult<baton_store::JobCounts> {
        self.call("job_counts", Access::Read, |s, _| {
            let count = |status| s.jobs.values().filter(|j| j.status == status).count() as u64;
            Ok(baton_store::JobCounts { queued: count(JobStatus::Queued), running: count(JobStatus::Running) })
        })
        .await
    }

    async fn heartbeat(&self, beat: &baton_store::InstanceRecord) -> StoreResult<()> {
        self.call("heartbeat", Access::Write, |s, _| {
            let at = s
                .instances
                .get(&beat.id)
                .map_or(beat.heartbeat_at_ms, |old| old.heartbeat_at_ms.max(beat.heartbeat_at_ms));
            s.instances.insert(beat.id.clone(), baton_store::InstanceRecord { heartbeat_at_ms: at, ..beat.clone() });
            Ok(())
        })
        .await
    }

    async fn instances(&self) -> StoreResult<Vec<baton_store::InstanceRecord>> {
        self.call("instances", Access::Read, |s, _| Ok(s.instances.values().cloned().collect())).await
    }

    async fn prune(&self, before_ms: i64, limit: u32) -> StoreResult<PruneCounts> {
        self.call("prune", Access::Write, |s, _| Ok(s.prune(before_ms, limit as usize))).await
    }

    async fn change_feed(&self) -> StoreResult<Option<Box<dyn ChangeFeed>>> {
        // The simulation drives every instance's loop itself: polling is the model.
        Ok(None)
    }
}
