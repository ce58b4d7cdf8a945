//! The store calls that `PgStore` runs as several statements, as [`super::Isolation::ReadCommitted`]
//! runs them: each a [`Txn`] whose steps follow `PgStore`'s statement order, taking its locks, with
//! a yield between steps, and whose writes commit at once through the same `State` methods the
//! serial calls use.

use super::state::{LeaseDecision, claimed_by_matches};
use super::txn::{LockKey, Txn};
use super::{Access, Fault, Mutation, SimStore, State, database};
use baton_domain::{JobId, TaskId};
use baton_store::*;

/// What a READ COMMITTED lease acquire is fenced on.
#[derive(Clone, Copy)]
pub(super) enum LeaseFence<'a> {
    /// `acquire_lease`: nothing.
    None,
    /// `acquire_lease_for_job`: the job must be the task's active one.
    ActiveJob(TaskId, JobId),
    /// `queue_land`: the entry must still be in `expect` (and `job`, if any, the task's active
    /// one), and moves to `change` with the grant.
    QueueLanding(&'a QueueLanding),
}

impl LeaseFence<'_> {
    /// The task whose row is locked first, and the job that must be its active one, if any.
    fn task(&self) -> Option<(TaskId, Option<JobId>)> {
        match *self {
            LeaseFence::None => None,
            LeaseFence::ActiveJob(task, job) => Some((task, Some(job))),
            LeaseFence::QueueLanding(landing) => Some((landing.task, landing.job)),
        }
    }
}

impl SimStore {
    /// Opens a READ COMMITTED transaction for `what`, its fault rolled now and struck at commit.
    pub(super) async fn begin(&self, what: &str) -> (Txn<'_>, Option<Fault>) {
        self.pause().await;
        let fault = self.lock().roll(what, Access::Write);
        (Txn::begin(self), fault)
    }

    /// Commits `txn`: `apply` writes everything at once, then its locks go. A `Before` fault
    /// discards the writes; `ReplyLost` keeps them and loses the answer.
    pub(super) fn commit<T>(
        &self,
        txn: Txn<'_>,
        what: &str,
        fault: Option<Fault>,
        apply: impl FnOnce(&mut State) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let result = {
            let mut state = self.lock();
            if fault == Some(Fault::Before) {
                state.fault_counts.failed_before_commit += 1;
                Err(database(what, "failed before commit"))
            } else {
                let result = apply(&mut state);
                if fault == Some(Fault::ReplyLost) && result.is_ok() {
                    state.fault_counts.reply_lost += 1;
                    Err(database(what, "committed, but the reply was lost"))
                } else {
                    result
                }
            }
        };
        // The state's guard is gone: dropping the transaction takes the mutex to release locks.
        drop(txn);
        result
    }

    /// A one-statement write in READ COMMITTED: waits for the row lock of `key`, then runs
    /// `body` against the newest committed row and commits.
    pub(super) async fn row_write<T>(
        &self,
        what: &str,
        key: LockKey,
        body: impl FnOnce(&mut State) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let (txn, fault) = self.begin(what).await;
        txn.lock(key).await?;
        self.commit(txn, what, fault, body)
    }

    /// `baton_claim_jobs` in READ COMMITTED: the claim lock; the candidate query (a fresh read of
    /// what runs, so exact under the lock); the task version bumps, then the job updates, each
    /// row locked and re-checked (`status = 'queued'`) against the newest committed row.
    pub(super) async fn claim_read_committed(&self, claim: &Claim, limit: u32) -> StoreResult<Vec<JobRecord>> {
        let (txn, fault) = self.begin("claim_jobs").await;
        if self.lock().mutation != Mutation::ClaimWithoutLock {
            txn.lock(LockKey::Claim).await?;
        }
        txn.step().await;
        let picked: Vec<(JobId, TaskId)> = {
            let state = self.lock();
            let picked = state.pick_claims(claim, limit);
            picked.into_iter().filter_map(|id| state.jobs.get(&id).map(|j| (id, j.task_id))).collect()
        };
        if picked.is_empty() {
            return self.commit(txn, "claim_jobs", fault, |_| Ok(Vec::new()));
        }
        txn.step().await;
        txn.lock_all(picked.iter().map(|(_, task)| LockKey::Task(*task)).collect()).await?;
        let bumped: Vec<TaskId> = {
            let state = self.lock();
            let queued = |job: &JobId| state.jobs.get(job).is_some_and(|j| j.status == JobStatus::Queued);
            picked.iter().filter(|(job, _)| queued(job)).map(|(_, task)| *task).collect()
        };
        txn.step().await;
        txn.lock_all(picked.iter().map(|(job, _)| LockKey::Job(*job)).collect()).await?;
        self.commit(txn, "claim_jobs", fault, |s| {
            for task in bumped {
                s.bump_for_claim(task);
            }
            let claimed: Vec<JobRecord> = picked.iter().filter_map(|(job, _)| s.start_claimed(*job, claim)).collect();
            s.audit_limits(claim);
            Ok(claimed)
        })
    }

    /// `PgStore::advance` in READ COMMITTED, in its statement order: the inbox row, the task's
    /// version compare-and-set, the finished job's status guard, the rows the transition touches
    /// (the task's active jobs, its leases), the events lock; then everything commits at once.
    pub(super) async fn advance_read_committed(&self, advance: Advance) -> StoreResult<Option<JobId>> {
        let (txn, fault) = self.begin("advance").await;
        let conflict = |store: &SimStore, error: StoreError| {
            store.lock().conflicts += 1;
            Err(error)
        };
        if let Some(entry) = &advance.inbox {
            txn.lock(LockKey::Inbox(entry.dedup_key.clone())).await?;
            if self.lock().inbox.contains_key(&entry.dedup_key) {
                return Err(StoreError::Duplicate(entry.dedup_key.clone()));
            }
            txn.step().await;
        }
        txn.lock(LockKey::Task(advance.task)).await?;
        let mutation = self.lock().mutation;
        let skip_cas = matches!(mutation, Mutation::SkipVersionCas | Mutation::SkipAllAdvanceGuards);
        let version = self.lock().tasks.get(&advance.task).map(|t| t.version);
        if version.is_none() || (version != Some(advance.expected_version) && !skip_cas) {
            let lost = format!("task {} is no longer at version {}", advance.task, advance.expected_version);
            return conflict(self, StoreError::Conflict(lost));
        }
        txn.step().await;
        if let Some(finish) = &advance.finish_job {
            txn.lock(LockKey::Job(finish.job)).await?;
            let skip_flip = matches!(mutation, Mutation::SkipJobFlipGuard | Mutation::SkipAllAdvanceGuards);
            let running = self.lock().jobs.get(&finish.job).is_some_and(|j| {
                j.task_id == advance.task
                    && (j.status == JobStatus::Running && claimed_by_matches(j, finish) || skip_flip)
            });
            if !running {
                return conflict(
                    self,
                    StoreError::Conflict(format!("job {} is no longer running under this claim", finish.job)),
                );
            }
            txn.step().await;
        }
        let touched: Vec<LockKey> = {
            let state = self.lock();
            let mut keys = Vec::new();
            if advance.transition.cancel_jobs {
                let active = |j: &&JobRecord| {
                    j.task_id == advance.task && matches!(j.status, JobStatus::Queued | JobStatus::Running)
                };
                keys.extend(state.jobs.values().filter(active).map(|j| LockKey::Job(j.id)));
            }
            if advance.transition.release_leases {
                let holder = task_holder(advance.task);
                let held = state.leases.values().filter(|l| l.holder == holder);
                keys.extend(held.map(|l| LockKey::Lease(l.name.clone())));
            }
            keys
        };
        if !touched.is_empty() {
            txn.lock_all(touched).await?;
            txn.step().await;
        }
        txn.lock(LockKey::Events).await?;
        if fault == Some(Fault::Before)
            && mutation == Mutation::InboxSurvivesFailure
            && let Some(entry) = &advance.inbox
        {
            let _ = self.lock().insert_inbox(entry, advance.task, "applied", advance.now_ms);
        }
        let result = self.commit(txn, "advance", fault, |s| s.advance(&advance));
        if matches!(result, Err(StoreError::Conflict(_))) {
            self.lock().conflicts += 1;
        }
        result
    }

    /// `PgStore::create_task` in READ COMMITTED: the ticket's lookup, the work-item counter row
    /// (locked by its upsert, so creates in one `(repo, prefix)` take turns), the events lock;
    /// the walk to a free number, the rows and the event commit together.
    pub(super) async fn create_task_read_committed(
        &self,
        new: NewTask,
        first: Transition,
        now_ms: i64,
    ) -> StoreResult<TaskRecord> {
        let (txn, fault) = self.begin("create_task").await;
        if let Some(external) = &new.external_ref {
            let found = self.lock().tasks.values().find(|t| t.external_ref.as_deref() == Some(external)).cloned();
            if let Some(task) = found {
                return Err(StoreError::Exists(Box::new(task)));
            }
        }
        txn.step().await;
        txn.lock(LockKey::Counter(new.repo.clone(), new.prefix.clone())).await?;
        txn.step().await;
        txn.lock(LockKey::Events).await?;
        self.commit(txn, "create_task", fault, |s| s.create_task(new, first, now_ms))
    }

    /// `PgStore::acquire_lease` in READ COMMITTED: the lease name's advisory lock, the read of
    /// the lease, then (as it decided) the expiry update, or the token upsert and the lease upsert
    /// — which writes over whatever row is there, unguarded. A [`LeaseFence`] takes the task's
    /// row (`FOR SHARE`) first: `acquire_lease_for_job` answers `None` when the job is not the
    /// task's active one; `queue_land` moves the entry to landing with the grant, and answers
    /// `None` (nothing written) when the entry moved meanwhile.
    pub(super) async fn acquire_lease_read_committed(
        &self,
        name: &str,
        holder: &str,
        fence: LeaseFence<'_>,
        ttl_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Option<LeaseOutcome>> {
        let what = match fence {
            LeaseFence::None => "acquire_lease",
            LeaseFence::ActiveJob(..) => "acquire_lease_for_job",
            LeaseFence::QueueLanding(_) => "queue_land",
        };
        let (txn, fault) = self.begin(what).await;
        if let Some((task, job)) = fence.task() {
            txn.lock(LockKey::Task(task)).await?;
            txn.step().await;
            if job.is_some_and(|job| !self.lock().job_is_active(task, job)) {
                return self.commit(txn, what, fault, |_| Ok(None));
            }
        }
        if self.lock().mutation != Mutation::LeaseWithoutLock {
            txn.lock(LockKey::LeaseName(name.to_string())).await?;
        }
        txn.step().await;
        let decision = self.lock().lease_decision(name, holder, now_ms);
        txn.step().await;
        // The entry's update, last (against the newest committed row): without it the whole
        // transaction rolls back.
        let land = |s: &mut State| match fence {
            LeaseFence::QueueLanding(landing) => {
                s.update_queue_entry(landing.task, &landing.expect, &landing.change, now_ms)
            }
            _ => true,
        };
        match decision {
            LeaseDecision::Busy { holder } => {
                self.commit(txn, what, fault, |_| Ok(Some(LeaseOutcome::Busy { holder })))
            }
            LeaseDecision::Renew { token } => {
                txn.lock(LockKey::Lease(name.to_string())).await?;
                self.commit(txn, what, fault, |s| {
                    if !land(s) {
                        return Ok(None);
                    }
                    s.extend_lease(name, holder, now_ms + ttl_ms);
                    Ok(Some(LeaseOutcome::Acquired { token }))
                })
            }
            LeaseDecision::Take => {
                txn.lock(LockKey::LeaseToken(name.to_string())).await?;
                txn.step().await;
                txn.lock(LockKey::Lease(name.to_string())).await?;
                self.commit(txn, what, fault, |s| {
                    if !land(s) {
                        return Ok(None);
                    }
                    let token = s.next_lease_token(name);
                    s.grant_lease(name, holder, token, ttl_ms, now_ms);
                    Ok(Some(LeaseOutcome::Acquired { token }))
                })
            }
        }
    }

    /// `PgStore::renew_lease` in READ COMMITTED: the lease name's advisory lock (the one
    /// acquirers take), then the row update. Without that lock a holder renewing its expired lease
    /// races an acquirer that has just read it expired, and both believe they hold it.
    pub(super) async fn renew_lease_read_committed(
        &self,
        name: &str,
        apply: impl FnOnce(&mut State) -> StoreResult<bool>,
    ) -> StoreResult<bool> {
        let (txn, fault) = self.begin("renew_lease").await;
        if self.lock().mutation != Mutation::LeaseWithoutLock {
            txn.lock(LockKey::LeaseName(name.to_string())).await?;
        }
        txn.step().await;
        txn.lock(LockKey::Lease(name.to_string())).await?;
        self.commit(txn, "renew_lease", fault, apply)
    }

    /// `PgStore::take_over_job` in READ COMMITTED: the job row (re-checked against the newest
    /// committed row), then the events lock for the event, then the commit.
    pub(super) async fn take_over_job_read_committed(
        &self,
        job: JobId,
        apply: impl FnOnce(&mut State) -> StoreResult<bool>,
    ) -> StoreResult<bool> {
        let (txn, fault) = self.begin("take_over_job").await;
        txn.lock(LockKey::Job(job)).await?;
        txn.step().await;
        txn.lock(LockKey::Events).await?;
        self.commit(txn, "take_over_job", fault, apply)
    }

    /// An event insert in READ COMMITTED (`record_suppressed`, `append_event`): the inbox row
    /// first when there is one, then the events lock, then the commit.
    pub(super) async fn event_read_committed<T>(
        &self,
        what: &str,
        inbox_key: Option<&str>,
        apply: impl FnOnce(&mut State) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let (txn, fault) = self.begin(what).await;
        if let Some(key) = inbox_key {
            txn.lock(LockKey::Inbox(key.to_string())).await?;
            if self.lock().inbox.contains_key(key) {
                return Err(StoreError::Duplicate(key.to_string()));
            }
            txn.step().await;
        }
        txn.lock(LockKey::Events).await?;
        self.commit(txn, what, fault, apply)
    }
}
