//! The store's tables in memory and the transactional operations on them, one method per
//! `SqliteStore` transaction, checking every guard before writing anything (all or nothing).

use super::txn::Locks;
use super::{Access, Commit, Fault, FaultCounts, FaultRates, InboxRow, Isolation, Mutation};
use crate::rng::Rng;
use baton_domain::ids::branch_name;
use baton_domain::{Hold, JobId, TaskId, TaskState, WorkItemId};
use baton_store::*;
use std::collections::{BTreeMap, BTreeSet};

/// Work-item numbers tried past a collision before giving up (as in SQLite).
const WORK_ITEM_WALK_MAX: u32 = 10_000;

/// What an acquire does with the stored lease of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseDecision {
    /// The holder has it: extend it, keep the token.
    Renew { token: i64 },
    /// Someone else holds it and it has not expired.
    Busy { holder: String },
    /// Free or expired: a new grant with the next token.
    Take,
}

/// An idempotency row: (request digest, started at, task created under it, the answer).
pub(crate) type IdempotencyRow = (String, i64, Option<TaskId>, Option<(u16, String)>);

/// Everything the store holds, plus the audit trail the checks read.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) tasks: BTreeMap<TaskId, TaskRecord>,
    pub(crate) jobs: BTreeMap<JobId, JobRecord>,
    pub(crate) events: Vec<EventRecord>,
    pub(crate) leases: BTreeMap<String, LeaseRecord>,
    /// The merge queues' entries by task.
    pub(crate) queue: BTreeMap<TaskId, QueueEntry>,
    /// The changes other than its last marked landing with each batch (by its last change), as
    /// marked: the forge counts them shipped when the batch lands, whether or not their entries
    /// are still there. A batch whose landing is given up unmarks them.
    pub(crate) landing_members: BTreeMap<TaskId, BTreeSet<TaskId>>,
    pub(crate) lease_tokens: BTreeMap<String, i64>,
    pub(crate) counters: BTreeMap<(String, String), u32>,
    pub(crate) inbox: BTreeMap<String, InboxRow>,
    pub(crate) agent_runs: Vec<AgentRunRecord>,
    /// Ingested usage records, in insert order (the id is the index plus one).
    pub(crate) usage_records: Vec<UsageRecord>,
    pub(crate) budget_caps: BTreeMap<String, Option<f64>>,
    pub(crate) coverage_baselines: BTreeMap<String, CoverageBaseline>,
    /// Every freeze, open and closed, in id order (id = index + 1).
    pub(crate) freezes: Vec<baton_store::RepoFreeze>,
    /// The lessons journal, by id (ids are assigned in insert order from 1).
    pub(crate) lessons: BTreeMap<i64, LessonRecord>,
    /// Task proposals of retros, by id (assigned in insert order from 1).
    pub(crate) task_proposals: BTreeMap<i64, baton_store::TaskProposalRecord>,
    /// Declared dependencies: (task, the task it waits for) → (declared at, by whom).
    pub(crate) dependencies: BTreeMap<(TaskId, TaskId), (i64, String)>,
    /// The outbox of durable effects (claimed rows carry their claim's end).
    pub(crate) outbox: Vec<(EffectRecord, i64)>,
    /// Every committed advance, in commit order.
    pub(crate) commits: Vec<Commit>,
    /// How often each job went from queued/running to a final status (must be at most once).
    pub(crate) job_endings: BTreeMap<JobId, u32>,
    /// Inbox keys recorded by `record_suppressed` and `record_once` (the rest come with a commit).
    pub(crate) keys_without_commit: BTreeSet<String>,
    /// API tokens by name, with their digests.
    pub(crate) api_tokens: BTreeMap<String, (String, ApiTokenRecord)>,
    /// Idempotency rows by key.
    pub(crate) idempotency: BTreeMap<String, IdempotencyRow>,
    /// The webhook inbox, in arrival order (the row id is the index plus one).
    pub(crate) deliveries: Vec<DeliveryRecord>,
    pub(crate) instances: BTreeMap<String, InstanceRecord>,
    pub(crate) faults_armed: bool,
    /// A one-shot fault for the next call named so (scripted scenarios).
    pub(crate) fail_next: Option<(String, Fault)>,
    /// Advances refused because the task version or the job status moved.
    pub(crate) conflicts: u64,
    pub(crate) rates: FaultRates,
    pub(crate) fault_rng: Rng,
    pub(crate) fault_counts: FaultCounts,
    pub(crate) interleaving: bool,
    pub(crate) pause_rng: Rng,
    pub(crate) mutation: Mutation,
    /// A claim bumps its task's version, as `SqliteStore::claim_job` (off only to prove the
    /// regression test of the STOP racing a deploy claim can fail).
    pub(crate) claim_bumps_version: bool,
    /// Version bumps by claims per task (not transitions: the checks count them apart).
    pub(crate) claim_bumps: BTreeMap<TaskId, i64>,
    /// How concurrent calls see each other (see [`Isolation`]).
    pub(crate) isolation: Isolation,
    /// The named locks of open READ COMMITTED transactions.
    pub(crate) locks: Locks,
    /// Claims that left more jobs running than their limits allowed, as they committed.
    pub(crate) limit_breaches: Vec<String>,
    /// Leases granted to a holder while another holder's grant was live, as they committed.
    pub(crate) double_grants: Vec<String>,
}

impl State {
    pub(crate) fn new(seed: u64, rates: FaultRates, mutation: Mutation) -> Self {
        State {
            tasks: BTreeMap::new(),
            jobs: BTreeMap::new(),
            events: Vec::new(),
            leases: BTreeMap::new(),
            queue: BTreeMap::new(),
            landing_members: BTreeMap::new(),
            lease_tokens: BTreeMap::new(),
            counters: BTreeMap::new(),
            inbox: BTreeMap::new(),
            agent_runs: Vec::new(),
            usage_records: Vec::new(),
            budget_caps: BTreeMap::new(),
            coverage_baselines: BTreeMap::new(),
            freezes: Vec::new(),
            lessons: BTreeMap::new(),
            task_proposals: BTreeMap::new(),
            dependencies: BTreeMap::new(),
            outbox: Vec::new(),
            commits: Vec::new(),
            job_endings: BTreeMap::new(),
            keys_without_commit: BTreeSet::new(),
            api_tokens: BTreeMap::new(),
            idempotency: BTreeMap::new(),
            deliveries: Vec::new(),
            instances: BTreeMap::new(),
            faults_armed: false,
            fail_next: None,
            conflicts: 0,
            rates,
            fault_rng: Rng::fork(seed, 0xFA17),
            fault_counts: FaultCounts::default(),
            interleaving: false,
            pause_rng: Rng::fork(seed, 0x9A05E),
            mutation,
            claim_bumps_version: true,
            claim_bumps: BTreeMap::new(),
            isolation: Isolation::Serial,
            locks: Locks::default(),
            limit_breaches: Vec::new(),
            double_grants: Vec::new(),
        }
    }
}

impl State {
    /// The open freeze of `repo`, if it is frozen.
    pub fn open_freeze(&self, repo: &str) -> Option<baton_store::RepoFreeze> {
        self.freezes.iter().find(|f| f.repo == repo && f.unfrozen_at_ms.is_none()).cloned()
    }

    /// Whether `task` is the revert of a deploy that degraded (its title names a task of its
    /// repository that got an incident), read from the tasks themselves.
    pub fn is_revert_of_degraded(&self, task: TaskId) -> bool {
        let Some(revert) = self.tasks.get(&task) else { return false };
        let Some(rest) = revert.title.strip_prefix("Revert ") else { return false };
        self.tasks.values().any(|t| {
            t.repo == revert.repo
                && rest.starts_with(&format!("{}: ", t.work_item_id))
                && self.tasks.values().any(|i| i.title.starts_with(&format!("Incident: {} degraded ", t.work_item_id)))
        })
    }

    /// Every freeze, open and closed, oldest first.
    pub fn freezes(&self) -> &[baton_store::RepoFreeze] {
        &self.freezes
    }

    /// When the next pending outbox effect may be claimed.
    pub fn next_effect_ms(&self) -> Option<i64> {
        self.outbox
            .iter()
            .filter(|(r, _)| r.done_at_ms.is_none())
            .map(|(r, claimed_until)| r.available_at_ms.max(*claimed_until))
            .min()
    }

    /// Whether an outbox effect of `kind` was begun (claimed at least once) and never finished.
    pub fn effect_interrupted(&self, kind: &str) -> bool {
        self.outbox.iter().any(|(r, _)| r.done_at_ms.is_none() && r.attempts > 0 && r.kind == kind)
    }

    /// Whether an outbox effect of `kind` is still to be carried out.
    pub fn effect_pending(&self, kind: &str) -> bool {
        self.outbox.iter().any(|(r, _)| r.done_at_ms.is_none() && r.kind == kind)
    }

    pub(crate) fn roll(&mut self, what: &str, access: Access) -> Option<Fault> {
        if self.fail_next.as_ref().is_some_and(|(call, _)| call == what) {
            return self.fail_next.take().map(|(_, fault)| fault);
        }
        if !self.faults_armed || !self.fault_rng.chance(self.rates.per_mille) {
            return None;
        }
        if access == Access::Write && self.fault_rng.chance(self.rates.reply_lost_per_mille) {
            Some(Fault::ReplyLost)
        } else {
            Some(Fault::Before)
        }
    }

    pub(crate) fn insert_event(&mut self, event: &NewEvent) -> i64 {
        let id = self.events.last().map_or(1, |e| e.id + 1);
        self.events.push(EventRecord {
            id,
            task_id: event.task,
            at_ms: event.at_ms,
            kind: event.kind.clone(),
            stage: event.stage.clone(),
            message: event.message.clone(),
            detail: event.detail.clone(),
        });
        id
    }

    pub(crate) fn insert_inbox(
        &mut self,
        entry: &InboxEntry,
        task: TaskId,
        outcome: &str,
        now: i64,
    ) -> StoreResult<()> {
        if self.inbox.contains_key(&entry.dedup_key) {
            return Err(StoreError::Duplicate(entry.dedup_key.clone()));
        }
        let row = InboxRow { outcome: outcome.to_string(), task: Some(task), received_at_ms: now };
        self.inbox.insert(entry.dedup_key.clone(), row);
        Ok(())
    }

    pub(crate) fn end_job(&mut self, id: JobId, status: JobStatus, result: Option<serde_json::Value>, now: i64) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.status = status;
            job.finished_at_ms = Some(now);
            if result.is_some() {
                job.result = result;
            }
            *self.job_endings.entry(id).or_insert(0) += 1;
        }
    }

    pub(crate) fn release_leases(&mut self, task: TaskId) {
        if self.mutation == Mutation::KeepLeasesOnRelease {
            return;
        }
        let holder = task_holder(task);
        self.leases.retain(|_, lease| lease.holder != holder);
    }

    /// The store-side effects of a transition (cancel, release, enqueue, current job).
    pub(crate) fn apply_transition(
        &mut self,
        task: TaskId,
        repo: &str,
        next: &TaskState,
        transition: &Transition,
        now: i64,
    ) -> Option<JobId> {
        if transition.cancel_jobs {
            let active: Vec<JobId> = self
                .jobs
                .values()
                .filter(|j| j.task_id == task && matches!(j.status, JobStatus::Queued | JobStatus::Running))
                .map(|j| j.id)
                .collect();
            for id in active {
                self.end_job(id, JobStatus::Cancelled, None, now);
            }
        }
        if transition.release_leases {
            self.release_leases(task);
            self.queue.remove(&task);
        }
        if next.hold == Hold::MergeQueue {
            // Parking in the merge queue and the queue entry commit together.
            self.enter_queue(task, repo, 0, now);
        }
        let mut enqueued = None;
        if let Some((stage, delay_ms)) = &transition.enqueue {
            let id = JobId(self.jobs.keys().next_back().map_or(1, |j| j.0 + 1));
            self.jobs.insert(
                id,
                JobRecord {
                    id,
                    task_id: task,
                    repo: repo.to_string(),
                    stage: stage.clone(),
                    attempt: next.attempt,
                    status: JobStatus::Queued,
                    available_at_ms: now + delay_ms,
                    rank: transition.rank,
                    owner: None,
                    pid: None,
                    pgid: None,
                    proc_start: None,
                    created_at_ms: now,
                    started_at_ms: None,
                    finished_at_ms: None,
                    result: None,
                },
            );
            enqueued = Some(id);
        }
        // The active job is the one just enqueued, else the one the decision kept (a deferred STOP
        // keeps the running job), else none.
        if let Some(record) = self.tasks.get_mut(&task) {
            let kept = if self.mutation == Mutation::ForgetKeptJob { None } else { next.job };
            record.state.job = enqueued.or(kept);
        }
        enqueued
    }

    /// Puts `task` into `repo`'s merge queue as waiting; `false` when it is queued already.
    pub(crate) fn enter_queue(&mut self, task: TaskId, repo: &str, priority: i64, now_ms: i64) -> bool {
        if self.queue.contains_key(&task) {
            return false;
        }
        let work_item_id = self.tasks.get(&task).map(|t| t.work_item_id.clone()).unwrap_or_default();
        self.queue.insert(
            task,
            QueueEntry {
                task,
                work_item_id,
                repo: repo.to_string(),
                priority,
                entered_at_ms: now_ms,
                state: QueueState::Waiting,
                base: None,
                head: None,
                fails: 0,
                reason: None,
                updated_at_ms: now_ms,
                batch: None,
                split: None,
            },
        );
        true
    }

    pub(crate) fn create_task(&mut self, new: NewTask, first: Transition, now: i64) -> StoreResult<TaskRecord> {
        if let Some(external) = &new.external_ref
            && let Some(task) = self.tasks.values().find(|t| t.external_ref.as_ref() == Some(external))
        {
            return Err(StoreError::Exists(Box::new(task.clone())));
        }
        if let Some(missing) = new.depends_on.iter().find(|on| !self.tasks.contains_key(on)) {
            return Err(StoreError::NotFound(format!("task {missing}")));
        }
        // A key names one task: a second creation under it answers with the first one's task.
        if let Some(first) = new.idempotency_key.as_ref().and_then(|k| self.idempotency.get(k)).and_then(|row| row.2)
            && let Some(task) = self.tasks.get(&first)
        {
            return Err(StoreError::Exists(Box::new(task.clone())));
        }
        let idempotency_key = new.idempotency_key.clone();
        let key = (new.repo.clone(), new.prefix.clone());
        let mut number = self.counters.get(&key).copied().unwrap_or(1).max(1);
        let mut walked = 0;
        let work_item = loop {
            let candidate = WorkItemId::new(&new.prefix, number);
            let taken = self.tasks.values().any(|t| t.repo == new.repo && t.work_item_id == candidate.as_str());
            if !taken {
                break candidate;
            }
            walked += 1;
            if walked > WORK_ITEM_WALK_MAX {
                return Err(StoreError::Conflict(format!("no free work-item id for {} after {walked}", new.prefix)));
            }
            number += 1;
        };
        self.counters.insert(key, number + 1);
        let id = TaskId(self.tasks.keys().next_back().map_or(1, |t| t.0 + 1));
        let branch = branch_name(&work_item, &new.title);
        let mut state = new.state.clone();
        state.job = None;
        self.tasks.insert(
            id,
            TaskRecord {
                id,
                repo: new.repo.clone(),
                work_item_id: work_item.as_str().to_string(),
                title: new.title.clone(),
                body: new.body.clone(),
                branch: branch.clone(),
                external_ref: new.external_ref.clone(),
                state,
                version: 1,
                created_at_ms: now,
                updated_at_ms: now,
            },
        );
        self.insert_event(&NewEvent {
            task: id,
            at_ms: now,
            kind: "created".into(),
            stage: new.state.stage.clone(),
            message: format!("{work_item} created: {}", new.title),
            detail: serde_json::json!({ "branch": branch }),
        });
        self.apply_transition(id, &new.repo, &new.state, &first, now);
        for on in &new.depends_on {
            self.dependencies.entry((id, *on)).or_insert((now, DEPENDS_AT_CREATE.to_string()));
        }
        if let Some(row) = idempotency_key.and_then(|key| self.idempotency.get_mut(&key)) {
            row.2 = Some(id);
        }
        self.tasks.get(&id).cloned().ok_or_else(|| StoreError::NotFound(format!("task {id}")))
    }

    pub(crate) fn advance(&mut self, advance: &Advance) -> StoreResult<Option<JobId>> {
        // Check everything first, then write: the in-memory equivalent of one transaction.
        if let Some(entry) = &advance.inbox
            && self.inbox.contains_key(&entry.dedup_key)
        {
            return Err(StoreError::Duplicate(entry.dedup_key.clone()));
        }
        let skip_cas = matches!(self.mutation, Mutation::SkipVersionCas | Mutation::SkipAllAdvanceGuards);
        let skip_flip = matches!(self.mutation, Mutation::SkipJobFlipGuard | Mutation::SkipAllAdvanceGuards);
        let lost = || {
            StoreError::Conflict(format!("task {} is no longer at version {}", advance.task, advance.expected_version))
        };
        let task = self.tasks.get(&advance.task).cloned().ok_or_else(lost)?;
        if task.version != advance.expected_version && !skip_cas {
            return Err(lost());
        }
        if let Some(finish) = &advance.finish_job {
            let job = self.jobs.get(&finish.job).filter(|j| j.task_id == advance.task);
            let running = job.is_some_and(|j| j.status == JobStatus::Running && claimed_by_matches(j, finish));
            if !(running || skip_flip && job.is_some()) {
                return Err(StoreError::Conflict(format!("job {} is no longer running under this claim", finish.job)));
            }
        }
        if advance.transition.release_leases
            && let Some(entry) = self.queue.get(&advance.task)
        {
            let parked = task.state.hold == baton_domain::Hold::MergeQueue;
            baton_store::refuse_leaving_landing_batch(
                advance.task,
                entry.state.as_str(),
                entry.batch,
                parked,
                &advance.next,
            )?;
        }
        if let Some(entry) = &advance.inbox {
            self.insert_inbox(entry, advance.task, "applied", advance.now_ms)?;
        }
        if let Some(record) = self.tasks.get_mut(&advance.task) {
            record.state = advance.next.clone();
            record.version = task.version + 1;
            record.updated_at_ms = advance.now_ms;
            if advance.next.stage == baton_domain::pipeline::CANCELLED {
                // Tombstone the natural key: the same ticket may start again from scratch.
                record.external_ref = None;
            }
        }
        if let Some(finish) = &advance.finish_job {
            self.end_job(finish.job, finish.status, Some(finish.result.clone()), advance.now_ms);
        }
        self.insert_event(&advance.event);
        let enqueued =
            self.apply_transition(advance.task, &task.repo, &advance.next, &advance.transition, advance.now_ms);
        for effect in &advance.effects {
            // As SQLite's rowid: one past the largest id (pruned rows leave gaps).
            let id = self.outbox.last().map_or(1, |(r, _)| r.id + 1);
            let record = EffectRecord {
                id,
                task_id: advance.task,
                kind: effect.kind.clone(),
                payload: effect.payload.clone(),
                created_at_ms: advance.now_ms,
                available_at_ms: advance.now_ms,
                attempts: 0,
                last_error: None,
                done_at_ms: None,
            };
            self.outbox.push((record, 0));
        }
        self.commits.push(Commit {
            task: advance.task,
            expected_version: advance.expected_version,
            version_before: task.version,
            version_after: task.version + 1,
            finish_job: advance.finish_job.as_ref().map(|f| f.job),
            kind: advance.event.kind.clone(),
            stage_before: task.state.stage.clone(),
            stage_after: advance.next.stage.clone(),
            enqueued,
            inbox_key: advance.inbox.as_ref().map(|e| e.dedup_key.clone()),
            hold_after: advance.next.hold.label().to_string(),
            holds_lease_after: self.leases.values().any(|l| l.holder == task_holder(advance.task)),
        });
        Ok(enqueued)
    }

    /// Whether every task `task` depends on is done.
    fn dependencies_met(&self, task: TaskId) -> bool {
        self.dependencies
            .range((task, TaskId(i64::MIN))..=(task, TaskId(i64::MAX)))
            .all(|((_, on), _)| self.tasks.get(on).is_some_and(|t| t.state.stage == baton_domain::pipeline::DONE))
    }

    /// Whether an earlier task of `job`'s repository is unfinished (the serial gate).
    fn earlier_unfinished(&self, job: &JobRecord) -> bool {
        self.tasks.range(..job.task_id).any(|(_, t)| t.repo == job.repo && !t.state.is_terminal())
    }

    /// Whether `repo` has an open freeze (the serial gate admits no first stage there).
    fn frozen(&self, repo: &str) -> bool {
        self.freezes.iter().any(|f| f.repo == repo && f.unfrozen_at_ms.is_none())
    }

    /// The dependency records of `edges`, read with each dependency's work item and stage.
    pub(crate) fn dependency_records<'a>(
        &self,
        edges: impl Iterator<Item = (&'a (TaskId, TaskId), &'a (i64, String))>,
    ) -> Vec<DependencyRecord> {
        edges
            .filter_map(|((task, on), (at, by))| {
                let dependency = self.tasks.get(on)?;
                Some(DependencyRecord {
                    task_id: *task,
                    depends_on: *on,
                    depends_on_work_item: dependency.work_item_id.clone(),
                    depends_on_stage: dependency.state.stage.clone(),
                    created_at_ms: *at,
                    created_by: by.clone(),
                })
            })
            .collect()
    }

    pub(crate) fn claim(&mut self, claim: &Claim) -> Option<JobRecord> {
        let candidate = self.claim_candidate(claim, &[])?;
        let task = self.jobs.get(&candidate)?.task_id;
        self.bump_for_claim(task);
        let job = self.start_claimed(candidate, claim);
        self.audit_limits(claim);
        job
    }

    /// The jobs a claim of up to `limit` picks, best first, read without writing (the candidate
    /// query of `baton_claim_jobs`: each pick counts as running for the next).
    pub(crate) fn pick_claims(&self, claim: &Claim, limit: u32) -> Vec<JobId> {
        let mut picked: Vec<JobId> = Vec::new();
        while picked.len() < limit as usize {
            let Some(job) = self.claim_candidate(claim, &picked) else { break };
            picked.push(job);
        }
        picked
    }

    /// The next job a claim takes when `picked` are taken already (and count as running).
    fn claim_candidate(&self, claim: &Claim, picked: &[JobId]) -> Option<JobId> {
        let running = |repo: Option<&str>| {
            self.jobs
                .values()
                .filter(|j| j.status == JobStatus::Running || picked.contains(&j.id))
                .filter(|j| repo.is_none_or(|r| j.repo == r))
                .count() as u64
        };
        if running(None) >= u64::from(claim.running_max) {
            return None;
        }
        self.jobs
            .values()
            .filter(|j| j.status == JobStatus::Queued && j.available_at_ms <= claim.now_ms && !picked.contains(&j.id))
            .filter(|j| self.tasks.get(&j.task_id).is_some_and(|t| t.state.job == Some(j.id)))
            .filter(|j| running(Some(&j.repo)) < u64::from(claim.running_per_repo_max))
            .filter(|j| claim.dependency_free_repos.contains(&j.repo) || self.dependencies_met(j.task_id))
            .filter(|j| {
                !(j.rank <= 1
                    && claim.serial_repos.contains(&j.repo)
                    && (self.earlier_unfinished(j) || self.frozen(&j.repo)))
            })
            // As `SqliteStore`'s claim: the highest rank (later pipeline stage) first.
            .min_by_key(|j| (std::cmp::Reverse(j.rank), j.available_at_ms, j.id))
            .map(|j| j.id)
    }

    /// A claim changes what the task is doing: decisions read before it (a STOP judging whether
    /// a deploy is running) must lose their compare-and-set and decide again.
    pub(crate) fn bump_for_claim(&mut self, task: TaskId) {
        if self.claim_bumps_version
            && let Some(record) = self.tasks.get_mut(&task)
        {
            record.version += 1;
            *self.claim_bumps.entry(task).or_insert(0) += 1;
        }
    }

    /// Marks a queued job running for `claim`'s owner; `None` when it is no longer queued.
    pub(crate) fn start_claimed(&mut self, id: JobId, claim: &Claim) -> Option<JobRecord> {
        let job = self.jobs.get_mut(&id).filter(|j| j.status == JobStatus::Queued)?;
        job.status = JobStatus::Running;
        job.owner = Some(claim.owner.clone());
        job.started_at_ms = Some(claim.now_ms);
        job.pid = None;
        job.pgid = None;
        job.proc_start = None;
        Some(job.clone())
    }

    /// Records a breach when, as a claim commits, more jobs run than its limits allow.
    pub(crate) fn audit_limits(&mut self, claim: &Claim) {
        let running: Vec<&JobRecord> = self.jobs.values().filter(|j| j.status == JobStatus::Running).collect();
        if running.len() as u64 > u64::from(claim.running_max) {
            let breach = format!("{} jobs running, the global limit is {}", running.len(), claim.running_max);
            self.limit_breaches.push(breach);
        }
        let mut per_repo: BTreeMap<&str, u64> = BTreeMap::new();
        for job in &running {
            *per_repo.entry(job.repo.as_str()).or_insert(0) += 1;
        }
        for (repo, count) in per_repo {
            if count > u64::from(claim.running_per_repo_max) {
                let limit = claim.running_per_repo_max;
                self.limit_breaches.push(format!("{count} jobs of {repo} running, its limit is {limit}"));
            }
        }
    }

    /// One retention pass: at most `limit` rows of each kind, chosen by `baton_store::retention`'s
    /// rule, oldest first (as the SQL stores walk their indexes).
    pub(crate) fn prune(&mut self, before_ms: i64, limit: usize) -> PruneCounts {
        use baton_store::retention::{self, InboxOwner};
        let stage_of = |tasks: &BTreeMap<TaskId, TaskRecord>, id: TaskId| tasks.get(&id).map(|t| t.state.stage.clone());
        let mut events: Vec<(i64, i64)> = self
            .events
            .iter()
            .filter(|e| {
                stage_of(&self.tasks, e.task_id).is_some_and(|stage| retention::event_prunable(e, &stage, before_ms))
            })
            .map(|e| (e.at_ms, e.id))
            .collect();
        events.sort_unstable();
        let events: BTreeSet<i64> = events.into_iter().take(limit).map(|(_, id)| id).collect();
        self.events.retain(|e| !events.contains(&e.id));

        let mut jobs: Vec<(i64, JobId)> = self
            .jobs
            .values()
            .filter(|j| {
                let current = self.tasks.get(&j.task_id).is_some_and(|t| t.state.job == Some(j.id));
                let has_run = self.agent_runs.iter().any(|r| r.job_id == j.id);
                self.tasks.contains_key(&j.task_id) && retention::job_prunable(j, current, has_run, before_ms)
            })
            .map(|j| (j.finished_at_ms.unwrap_or(i64::MIN), j.id))
            .collect();
        jobs.sort_unstable();
        jobs.truncate(limit);
        for (_, id) in &jobs {
            self.jobs.remove(id);
        }

        let mut outbox: Vec<(i64, i64)> = self
            .outbox
            .iter()
            .filter(|(r, _)| retention::effect_prunable(r, before_ms))
            .map(|(r, _)| (r.done_at_ms.unwrap_or(i64::MIN), r.id))
            .collect();
        outbox.sort_unstable();
        let outbox: BTreeSet<i64> = outbox.into_iter().take(limit).map(|(_, id)| id).collect();
        self.outbox.retain(|(r, _)| !outbox.contains(&r.id));

        let mut deliveries: Vec<(i64, i64)> = self
            .deliveries
            .iter()
            .filter(|d| retention::delivery_prunable(d, before_ms))
            .map(|d| (d.processed_at_ms.unwrap_or(i64::MIN), d.id))
            .collect();
        deliveries.sort_unstable();
        let deliveries: BTreeSet<i64> = deliveries.into_iter().take(limit).map(|(_, id)| id).collect();
        self.deliveries.retain(|d| !deliveries.contains(&d.id));

        let mut inbox: Vec<(i64, String)> = self
            .inbox
            .iter()
            .filter(|(_, row)| {
                let stage = row.task.map(|task| stage_of(&self.tasks, task));
                let owner = match &stage {
                    None => InboxOwner::None,
                    Some(Some(stage)) => InboxOwner::Task(stage),
                    Some(None) => InboxOwner::Missing,
                };
                retention::inbox_prunable(row.received_at_ms, owner, before_ms)
            })
            .map(|(key, row)| (row.received_at_ms, key.clone()))
            .collect();
        inbox.sort_unstable();
        inbox.truncate(limit);
        for (_, key) in &inbox {
            self.inbox.remove(key);
        }
        PruneCounts {
            events: events.len() as u64,
            jobs: jobs.len() as u64,
            outbox: outbox.len() as u64,
            deliveries: deliveries.len() as u64,
            inbox: inbox.len() as u64,
        }
    }

    /// `UPDATE jobs SET status = 'queued', owner = NULL, … WHERE status = 'running' [AND owner = ?]`:
    /// puts the running job back in the queue (only under `owner`'s claim when given).
    pub(crate) fn requeue_running(&mut self, job: JobId, claimed_by: Option<&str>, available_at_ms: i64) -> bool {
        match self.jobs.get_mut(&job) {
            Some(row) if row.status == JobStatus::Running && row.owner.as_deref() == claimed_by => {
                row.status = JobStatus::Queued;
                row.owner = None;
                row.pid = None;
                row.pgid = None;
                row.proc_start = None;
                row.available_at_ms = available_at_ms;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn acquire_lease(&mut self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> LeaseOutcome {
        match self.lease_decision(name, holder, now_ms) {
            LeaseDecision::Renew { token } => {
                self.extend_lease(name, holder, now_ms + ttl_ms);
                LeaseOutcome::Acquired { token }
            }
            LeaseDecision::Busy { holder } => LeaseOutcome::Busy { holder },
            LeaseDecision::Take => {
                let token = self.next_lease_token(name);
                self.grant_lease(name, holder, token, ttl_ms, now_ms);
                LeaseOutcome::Acquired { token }
            }
        }
    }

    /// Whether `job` is `task`'s active job (`tasks.current_job`).
    /// `UPDATE merge_queue … WHERE task_id AND state AND base`: `change` applied to the entry
    /// while it is in `expect`'s state on `expect`'s base (the landing batch's members kept).
    pub(crate) fn update_queue_entry(
        &mut self,
        task: TaskId,
        expect: &QueueExpect,
        change: &QueueChange,
        now_ms: i64,
    ) -> bool {
        let Some(entry) = self.queue.get(&task) else {
            return false;
        };
        if entry.state != expect.state || entry.base != expect.base {
            return false;
        }
        let (was, batch) = (entry.state, entry.batch);
        match change.batch {
            Some(tail) if change.state == QueueState::Landing && tail != task => {
                self.landing_members.entry(tail).or_default().insert(task);
            }
            _ if was == QueueState::Landing => {
                if let Some(members) = batch.and_then(|tail| self.landing_members.get_mut(&tail)) {
                    members.remove(&task);
                }
            }
            _ => {}
        }
        let Some(entry) = self.queue.get_mut(&task) else {
            return false;
        };
        entry.state = change.state;
        entry.base = change.base.clone();
        entry.head = change.head.clone();
        entry.fails = change.fails;
        entry.reason = change.reason.clone();
        entry.updated_at_ms = now_ms;
        entry.batch = change.batch;
        entry.split = change.split;
        true
    }

    pub(crate) fn job_is_active(&self, task: TaskId, job: JobId) -> bool {
        self.tasks.get(&task).is_some_and(|t| t.state.job == Some(job))
    }

    /// What an acquire of `name` by `holder` does, read from the stored lease.
    pub(crate) fn lease_decision(&self, name: &str, holder: &str, now_ms: i64) -> LeaseDecision {
        match self.leases.get(name) {
            Some(lease) if lease.holder == holder => LeaseDecision::Renew { token: lease.token },
            Some(lease) if lease.expires_at_ms > now_ms => LeaseDecision::Busy { holder: lease.holder.clone() },
            _ => LeaseDecision::Take,
        }
    }

    /// `UPDATE leases SET expires_at WHERE name`: whoever holds it now — recording a double
    /// grant when that is no longer `holder`, who read the lease as its own and believes it holds it.
    pub(crate) fn extend_lease(&mut self, name: &str, holder: &str, expires_at_ms: i64) {
        if let Some(lease) = self.leases.get_mut(name) {
            if lease.holder != holder {
                let other = format!("{} (token {})", lease.holder, lease.token);
                self.double_grants
                    .push(format!("lease {name} renewed by {holder}, who no longer held it, for {other}"));
            }
            lease.expires_at_ms = expires_at_ms;
        }
    }

    /// Fencing tokens survive release, so a new holder always gets a larger token than any earlier one.
    pub(crate) fn next_lease_token(&mut self, name: &str) -> i64 {
        let token = self.lease_tokens.entry(name.to_string()).or_insert(0);
        *token += 1;
        *token
    }

    /// Writes `holder`'s grant of `name` over whatever row is there (`INSERT ... ON CONFLICT DO
    /// UPDATE`), recording a double grant when another holder's grant was still live.
    pub(crate) fn grant_lease(&mut self, name: &str, holder: &str, token: i64, ttl_ms: i64, now_ms: i64) {
        if let Some(lease) = self.leases.get(name).filter(|l| l.holder != holder && l.expires_at_ms > now_ms) {
            self.double_grants.push(format!(
                "lease {name} granted to {holder} (token {token}) while {} held it (token {}) until {}",
                lease.holder, lease.token, lease.expires_at_ms
            ));
        }
        self.leases.insert(
            name.to_string(),
            LeaseRecord {
                name: name.to_string(),
                holder: holder.to_string(),
                token,
                acquired_at_ms: now_ms,
                expires_at_ms: now_ms + ttl_ms,
            },
        );
    }

    pub(crate) fn run_matches(&self, run: &AgentRunRecord, filter: &SpendFilter) -> bool {
        filter.task.is_none_or(|t| run.task_id == t)
            && filter.repo.as_deref().is_none_or(|r| self.tasks.get(&run.task_id).is_some_and(|t| t.repo == r))
            && filter.since_ms.is_none_or(|since| run.started_at_ms >= since)
    }

    /// Whether an ingested record counts under `filter` (only records with a repository count).
    pub(crate) fn record_matches(record: &NewUsageRecord, filter: &SpendFilter) -> bool {
        record.repo.is_some()
            && filter.task.is_none_or(|t| record.task == Some(t))
            && filter.repo.as_deref().is_none_or(|r| record.repo.as_deref() == Some(r))
            && filter.since_ms.is_none_or(|since| record.at_ms >= since)
    }

    pub(crate) fn usage_record_totals(&self) -> Vec<UsageRecordTotals> {
        type Key = (String, String, Option<String>, Option<String>, Option<String>, Option<String>, String);
        let mut groups: BTreeMap<Key, UsageRecordTotals> = BTreeMap::new();
        for stored in &self.usage_records {
            let r = &stored.record;
            let task = r.task.and_then(|t| self.tasks.get(&t)).map(|t| format!("{}/{}", t.repo, t.work_item_id));
            let key: Key = (
                r.source.clone(),
                r.category.clone(),
                r.model.clone(),
                r.unit_kind.clone(),
                r.repo.clone(),
                task.clone(),
                utc_day(r.at_ms),
            );
            let row = groups.entry(key).or_insert_with(|| UsageRecordTotals {
                source: r.source.clone(),
                category: r.category.clone(),
                model: r.model.clone(),
                unit_kind: r.unit_kind.clone(),
                repo: r.repo.clone(),
                task,
                day: utc_day(r.at_ms),
                records: 0,
                input_tokens: 0,
                output_tokens: 0,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                units: 0.0,
                cost_usd: 0.0,
                priced_units: 0.0,
                unpriced_records: 0,
            });
            row.records += 1;
            row.input_tokens += r.input_tokens;
            row.output_tokens += r.output_tokens;
            row.cache_read_tokens += r.cache_read_tokens;
            row.cache_write_tokens += r.cache_write_tokens;
            row.units += r.units;
            match r.cost_usd {
                Some(cost) => {
                    row.cost_usd += cost;
                    row.priced_units += r.units;
                }
                None => row.unpriced_records += 1,
            }
        }
        let mut rows: Vec<UsageRecordTotals> = groups.into_values().collect();
        UsageRecordTotals::sort(&mut rows);
        rows
    }

    pub(crate) fn done_task_spend(&self) -> DoneTaskSpend {
        let done = |t: &TaskId| self.tasks.get(t).is_some_and(|t| t.state.stage == "done");
        DoneTaskSpend {
            tasks: self.tasks.values().filter(|t| t.state.stage == "done").count() as u64,
            agent_cost_usd: self.agent_runs.iter().filter(|r| done(&r.task_id)).filter_map(|r| r.cost_usd).sum(),
            ingested_cost_usd: self
                .usage_records
                .iter()
                .filter(|r| r.record.task.as_ref().is_some_and(done))
                .filter_map(|r| r.record.cost_usd)
                .sum(),
        }
    }

    pub(crate) fn usage(&self, group: UsageGroup) -> Vec<UsageRow> {
        let mut tasks_of: BTreeMap<String, BTreeSet<TaskId>> = BTreeMap::new();
        let mut rows: BTreeMap<String, UsageRow> = BTreeMap::new();
        for run in &self.agent_runs {
            let Some(task) = self.tasks.get(&run.task_id) else { continue };
            let key = match group {
                UsageGroup::Task => format!("{}/{}", task.repo, task.work_item_id),
                UsageGroup::Stage => run.stage.clone(),
                UsageGroup::Adapter => run.adapter.clone(),
                UsageGroup::Model => run.model.clone().unwrap_or_else(|| "(unknown)".into()),
                UsageGroup::Repo => task.repo.clone(),
                UsageGroup::Day => utc_day(run.started_at_ms),
            };
            tasks_of.entry(key.clone()).or_default().insert(run.task_id);
            let row = rows.entry(key.clone()).or_insert_with(|| UsageRow {
                key,
                runs: 0,
                tasks: 0,
                input_tokens: 0,
                output_tokens: 0,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                cost_usd: 0.0,
                unpriced_runs: 0,
            });
            row.runs += 1;
            row.input_tokens += run.input_tokens;
            row.output_tokens += run.output_tokens;
            row.cache_read_tokens += run.cache_read_tokens;
            row.cache_write_tokens += run.cache_write_tokens;
            match run.cost_usd {
                Some(cost) => row.cost_usd += cost,
                None => row.unpriced_runs += 1,
            }
        }
        for (key, row) in rows.iter_mut() {
            row.tasks = tasks_of.get(key).map_or(0, |t| t.len() as u64);
        }
        rows.into_values().collect()
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time in milliseconds, as SQLite's `strftime('%Y-%m-%d')`.
fn utc_day(ms: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The advance's claim guard on a job finish: running under the claim the finish names, under
/// none recorded, or any claim when the finish names none.
pub(crate) fn claimed_by_matches(job: &JobRecord, finish: &JobFinish) -> bool {
    finish.claimed_by.as_deref().is_none_or(|claimant| job.runs_under_claim(claimant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_at(state: &mut State, rank: i64, delay_ms: i64) -> TaskId {
        let new = NewTask {
            repo: "alpha".into(),
            prefix: "R".into(),
            title: "Ranked".into(),
            body: String::new(),
            external_ref: None,
            state: TaskState::new("analysis"),
            idempotency_key: None,
            depends_on: Vec::new(),
        };
        let first = Transition { enqueue: Some(("analysis".into(), delay_ms)), rank, ..Transition::default() };
        state.create_task(new, first, 0).map(|task| task.id).unwrap_or_else(|error| panic!("create: {error}"))
    }

    // Claims take the highest rank first, then the oldest available_at, then the lowest id (as SQLite).
    #[test]
    fn claim_prefers_higher_rank_then_older_available_at() {
        let mut state = State::new(1, FaultRates { per_mille: 0, reply_lost_per_mille: 0 }, Mutation::None);
        let low = task_at(&mut state, 1, 0);
        let high = task_at(&mut state, 5, 0);
        let middle = task_at(&mut state, 3, 0);
        let middle_later = task_at(&mut state, 3, 10);
        let middle_sooner = task_at(&mut state, 3, 5);
        let claim =
            Claim { owner: "w".into(), now_ms: 10, running_max: 100, running_per_repo_max: 100, ..Claim::default() };
        let order: Vec<TaskId> = std::iter::from_fn(|| state.claim(&claim)).map(|job| job.task_id).collect();
        assert_eq!(order, [high, middle, middle_sooner, middle_later, low]);
    }

    // The day key matches SQLite's strftime for a few known instants.
    #[test]
    fn utc_day_matches_the_calendar() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(1_800_000_000_000), "2027-01-15");
    }
}
