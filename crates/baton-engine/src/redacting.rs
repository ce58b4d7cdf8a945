//! The database side of the one redaction choke point: a [`Store`] that masks every known secret in
//! each text it is asked to write (events, task state, job results, agent reports, outbox payloads,
//! effect errors) before the real store sees it. The engine wraps its store in it when it knows a
//! secret, so no code path — executor, gates, reaper, effects — can write one by forgetting.

use async_trait::async_trait;
use baton_domain::{JobId, Redactor, TaskId};
use baton_store::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Masks secrets on the way in; reads pass through unchanged.
pub(crate) struct RedactingStore {
    inner: Arc<dyn Store>,
    redactor: Redactor,
}

impl RedactingStore {
    pub(crate) fn new(inner: Arc<dyn Store>, redactor: Redactor) -> Self {
        RedactingStore { inner, redactor }
    }

    fn text(&self, text: &str) -> String {
        self.redactor.redact(text).into_owned()
    }

    fn json(&self, mut value: serde_json::Value) -> serde_json::Value {
        self.redactor.redact_json(&mut value);
        value
    }

    /// Any serde value, through JSON: unchanged when nothing matched or the round trip fails.
    fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> T {
        let Ok(mut json) = serde_json::to_value(&value) else { return value };
        if !self.redactor.redact_json(&mut json) {
            return value;
        }
        serde_json::from_value(json).unwrap_or(value)
    }

    fn event(&self, event: NewEvent) -> NewEvent {
        NewEvent { message: self.text(&event.message), detail: self.json(event.detail), ..event }
    }

    fn finish(&self, finish: JobFinish) -> JobFinish {
        JobFinish { result: self.json(finish.result), ..finish }
    }
}

#[async_trait]
impl Store for RedactingStore {
    async fn raise_work_item_counter(&self, repo: &str, prefix: &str, next: i64) -> StoreResult<()> {
        self.inner.raise_work_item_counter(repo, prefix, next).await
    }
    async fn create_task(&self, new: NewTask, first: Transition, now_ms: i64) -> StoreResult<TaskRecord> {
        let new = NewTask { title: self.text(&new.title), body: self.text(&new.body), ..new };
        self.inner.create_task(new, first, now_ms).await
    }
    async fn task(&self, key: &TaskKey) -> StoreResult<Option<TaskRecord>> {
        self.inner.task(key).await
    }
    async fn task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>> {
        self.inner.task_by_external_ref(external_ref).await
    }
    async fn live_task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>> {
        self.inner.live_task_by_external_ref(external_ref).await
    }
    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        self.inner.list_tasks(filter).await
    }
    async fn advance(&self, advance: Advance) -> StoreResult<Option<JobId>> {
        let advance = Advance {
            next: self.value(advance.next),
            finish_job: advance.finish_job.map(|finish| self.finish(finish)),
            event: self.event(advance.event),
            effects: advance
                .effects
                .into_iter()
                .map(|effect| NewEffect { payload: self.json(effect.payload), ..effect })
                .collect(),
            ..advance
        };
        self.inner.advance(advance).await
    }
    async fn record_suppressed(&self, task: TaskId, inbox: Option<InboxEntry>, event: NewEvent) -> StoreResult<()> {
        let inbox = inbox.map(|entry| InboxEntry { payload: self.json(entry.payload), ..entry });
        self.inner.record_suppressed(task, inbox, self.event(event)).await
    }
    async fn claim_job(&self, claim: &Claim) -> StoreResult<Option<JobRecord>> {
        self.inner.claim_job(claim).await
    }
    async fn claim_jobs(&self, claim: &Claim, limit: u32) -> StoreResult<Vec<JobRecord>> {
        self.inner.claim_jobs(claim, limit).await
    }
    async fn job(&self, id: JobId) -> StoreResult<Option<JobRecord>> {
        self.inner.job(id).await
    }
    async fn add_dependency(
        &self,
        task: TaskId,
        depends_on: TaskId,
        created_by: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.inner.add_dependency(task, depends_on, &self.text(created_by), now_ms).await
    }
    async fn remove_dependency(&self, task: TaskId, depends_on: TaskId) -> StoreResult<bool> {
        self.inner.remove_dependency(task, depends_on).await
    }
    async fn dependencies(&self, task: TaskId) -> StoreResult<Vec<DependencyRecord>> {
        self.inner.dependencies(task).await
    }
    async fn live_dependencies(&self) -> StoreResult<Vec<DependencyRecord>> {
        self.inner.live_dependencies().await
    }
    async fn jobs_with_status(&self, status: JobStatus) -> StoreResult<Vec<JobRecord>> {
        self.inner.jobs_with_status(status).await
    }
    async fn jobs_for_task(&self, task: TaskId) -> StoreResult<Vec<JobRecord>> {
        self.inner.jobs_for_task(task).await
    }
    async fn set_job_process(&self, job: JobId, pid: Option<u32>, pgid: Option<u32>) -> StoreResult<()> {
        self.inner.set_job_process(job, pid, pgid).await
    }
    async fn set_job_proc_start(&self, job: JobId, start_ticks: u64) -> StoreResult<()> {
        self.inner.set_job_proc_start(job, start_ticks).await
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
        self.inner.record_launch(job, claimed_by, run, pid, pgid, start_ticks).await
    }
    async fn adopt_job(&self, job: JobId, claimed_by: Option<&str>, owner: &str) -> StoreResult<bool> {
        self.inner.adopt_job(job, claimed_by, owner).await
    }
    async fn renew_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<bool> {
        self.inner.renew_lease(name, holder, ttl_ms, now_ms).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        self.inner.release_lease(name, holder).await
    }

    async fn release_lease_if_unmoved(&self, name: &str, task: TaskId, version: i64) -> StoreResult<bool> {
        self.inner.release_lease_if_unmoved(name, task, version).await
    }
    async fn close_job(
        &self,
        job: JobId,
        status: JobStatus,
        result: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.inner.close_job(job, status, self.json(result), now_ms).await
    }
    async fn close_claimed_job(
        &self,
        job: JobId,
        claimed_by: &str,
        status: JobStatus,
        result: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.inner.close_claimed_job(job, claimed_by, status, self.json(result), now_ms).await
    }
    async fn requeue_job(&self, job: JobId, claimed_by: Option<&str>, available_at_ms: i64) -> StoreResult<bool> {
        self.inner.requeue_job(job, claimed_by, available_at_ms).await
    }
    async fn take_over_job(&self, job: JobId, owner: &str, available_at_ms: i64, event: NewEvent) -> StoreResult<bool> {
        self.inner.take_over_job(job, owner, available_at_ms, self.event(event)).await
    }
    async fn insert_agent_run(&self, run: NewAgentRun) -> StoreResult<i64> {
        self.inner.insert_agent_run(run).await
    }
    async fn set_agent_run_pid(&self, id: i64, pid: u32) -> StoreResult<()> {
        self.inner.set_agent_run_pid(id, pid).await
    }
    async fn finish_agent_run(&self, id: i64, finish: AgentRunFinish) -> StoreResult<()> {
        let finish = AgentRunFinish { report: self.value(finish.report), ..finish };
        self.inner.finish_agent_run(id, finish).await
    }
    async fn agent_runs(&self, task: TaskId) -> StoreResult<Vec<AgentRunRecord>> {
        self.inner.agent_runs(task).await
    }
    async fn count_agent_runs(&self, task: TaskId, stage: &str) -> StoreResult<u32> {
        self.inner.count_agent_runs(task, stage).await
    }
    async fn append_event(&self, event: NewEvent) -> StoreResult<i64> {
        self.inner.append_event(self.event(event)).await
    }
    async fn events(&self, task: Option<TaskId>, after_id: i64, limit: u32) -> StoreResult<Vec<EventRecord>> {
        self.inner.events(task, after_id, limit).await
    }
    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<LeaseOutcome> {
        self.inner.acquire_lease(name, holder, ttl_ms, now_ms).await
    }
    async fn acquire_lease_for_job(
        &self,
        name: &str,
        task: TaskId,
        job: JobId,
        ttl_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Option<LeaseOutcome>> {
        self.inner.acquire_lease_for_job(name, task, job, ttl_ms, now_ms).await
    }
    async fn lease(&self, name: &str) -> StoreResult<Option<LeaseRecord>> {
        self.inner.lease(name).await
    }
    async fn leases(&self) -> StoreResult<Vec<LeaseRecord>> {
        self.inner.leases().await
    }
    async fn inbox_seen(&self, dedup_key: &str) -> StoreResult<bool> {
        self.inner.inbox_seen(dedup_key).await
    }
    async fn coverage_baseline(&self, repo: &str) -> StoreResult<Option<CoverageBaseline>> {
        self.inner.coverage_baseline(repo).await
    }
    async fn coverage_baselines(&self) -> StoreResult<Vec<CoverageBaseline>> {
        self.inner.coverage_baselines().await
    }
    async fn raise_coverage_baseline(
        &self,
        repo: &str,
        pct: f64,
        set_by: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.inner.raise_coverage_baseline(repo, pct, set_by, &self.text(reason), now_ms).await
    }
    async fn set_coverage_baseline(
        &self,
        repo: &str,
        pct: f64,
        set_by: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.inner.set_coverage_baseline(repo, pct, set_by, &self.text(reason), now_ms).await
    }
    async fn freeze_repo(&self, freeze: &NewFreeze, now_ms: i64) -> StoreResult<(RepoFreeze, bool)> {
        let freeze = NewFreeze { reason: self.text(&freeze.reason), ..freeze.clone() };
        self.inner.freeze_repo(&freeze, now_ms).await
    }
    async fn link_freeze(&self, id: i64, incident: Option<TaskId>, revert: Option<TaskId>) -> StoreResult<()> {
        self.inner.link_freeze(id, incident, revert).await
    }
    async fn unfreeze_repo(&self, repo: &str, by: &str, now_ms: i64) -> StoreResult<Option<RepoFreeze>> {
        self.inner.unfreeze_repo(repo, by, now_ms).await
    }
    async fn repo_freezes(&self) -> StoreResult<Vec<RepoFreeze>> {
        self.inner.repo_freezes().await
    }
    async fn record_lesson(
        &self,
        lesson: &NewLesson,
        dedup_window_ms: i64,
        now_ms: i64,
    ) -> StoreResult<(LessonRecord, LessonWrite)> {
        let lesson = NewLesson { title: self.text(&lesson.title), body: self.text(&lesson.body), ..lesson.clone() };
        self.inner.record_lesson(&lesson, dedup_window_ms, now_ms).await
    }
    async fn lesson(&self, id: i64) -> StoreResult<Option<LessonRecord>> {
        self.inner.lesson(id).await
    }
    async fn lessons(&self, filter: &LessonFilter) -> StoreResult<Vec<LessonRecord>> {
        self.inner.lessons(filter).await
    }
    async fn update_lesson(&self, id: i64, patch: &LessonPatch, now_ms: i64) -> StoreResult<LessonRecord> {
        let patch = LessonPatch {
            title: patch.title.as_deref().map(|t| self.text(t)),
            body: patch.body.as_deref().map(|b| self.text(b)),
            ..patch.clone()
        };
        self.inner.update_lesson(id, &patch, now_ms).await
    }
    async fn hit_lessons(&self, ids: &[i64], now_ms: i64) -> StoreResult<()> {
        self.inner.hit_lessons(ids, now_ms).await
    }
    async fn propose_task(&self, proposal: &NewTaskProposal, now_ms: i64) -> StoreResult<(TaskProposalRecord, bool)> {
        let proposal =
            NewTaskProposal { title: self.text(&proposal.title), body: self.text(&proposal.body), ..proposal.clone() };
        self.inner.propose_task(&proposal, now_ms).await
    }
    async fn task_proposal(&self, id: i64) -> StoreResult<Option<TaskProposalRecord>> {
        self.inner.task_proposal(id).await
    }
    async fn task_proposals(&self, filter: &ProposalFilter) -> StoreResult<Vec<TaskProposalRecord>> {
        self.inner.task_proposals(filter).await
    }
    async fn decide_task_proposal(
        &self,
        id: i64,
        status: &str,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<TaskProposalRecord> {
        self.inner.decide_task_proposal(id, status, by, now_ms).await
    }
    async fn link_task_proposal(&self, id: i64, task: TaskId) -> StoreResult<TaskProposalRecord> {
        self.inner.link_task_proposal(id, task).await
    }
    async fn set_budget_cap(&self, scope: &str, cap_usd: Option<f64>, now_ms: i64) -> StoreResult<()> {
        self.inner.set_budget_cap(scope, cap_usd, now_ms).await
    }
    async fn budget_caps(&self) -> StoreResult<Vec<(String, Option<f64>)>> {
        self.inner.budget_caps().await
    }
    async fn spend_usd(&self, filter: &SpendFilter) -> StoreResult<f64> {
        self.inner.spend_usd(filter).await
    }
    async fn record_once(&self, key: &str, kind: &str, now_ms: i64) -> StoreResult<bool> {
        self.inner.record_once(key, kind, now_ms).await
    }
    async fn usage(&self, group: UsageGroup) -> StoreResult<Vec<UsageRow>> {
        self.inner.usage(group).await
    }
    async fn insert_usage_record(&self, record: NewUsageRecord) -> StoreResult<UsageInsert> {
        let record = NewUsageRecord {
            source: self.text(&record.source),
            category: self.text(&record.category),
            idempotency_key: record.idempotency_key.as_deref().map(|k| self.text(k)),
            ..record
        };
        self.inner.insert_usage_record(record).await
    }
    async fn usage_record_totals(&self) -> StoreResult<Vec<UsageRecordTotals>> {
        self.inner.usage_record_totals().await
    }
    async fn done_task_spend(&self) -> StoreResult<DoneTaskSpend> {
        self.inner.done_task_spend().await
    }
    async fn claim_effects(&self, claim: &EffectClaim) -> StoreResult<Vec<EffectRecord>> {
        self.inner.claim_effects(claim).await
    }
    async fn complete_effect(&self, id: i64, now_ms: i64) -> StoreResult<bool> {
        self.inner.complete_effect(id, now_ms).await
    }
    async fn fail_effect(&self, id: i64, error: &str, retry_at_ms: i64) -> StoreResult<()> {
        self.inner.fail_effect(id, &self.text(error), retry_at_ms).await
    }
    async fn effects(&self, task: Option<TaskId>, pending_only: bool) -> StoreResult<Vec<EffectRecord>> {
        self.inner.effects(task, pending_only).await
    }
    async fn open_agent_runs(&self) -> StoreResult<Vec<AgentRunRecord>> {
        self.inner.open_agent_runs().await
    }
    async fn open_jobs(&self) -> StoreResult<Vec<baton_store::OpenJob>> {
        self.inner.open_jobs().await
    }
    async fn list_tasks_page(
        &self,
        filter: &baton_store::TaskFilter,
        before: Option<baton_domain::TaskId>,
        limit: u32,
    ) -> StoreResult<Vec<baton_store::TaskRecord>> {
        self.inner.list_tasks_page(filter, before, limit).await
    }
    async fn task_counts(&self) -> StoreResult<Vec<baton_store::TaskCount>> {
        self.inner.task_counts().await
    }
    async fn metric_counts(&self, bounds: &baton_store::HistogramBounds) -> StoreResult<baton_store::MetricCounts> {
        self.inner.metric_counts(bounds).await
    }
    async fn close_agent_run(&self, id: i64, status: &str, error: &str, now_ms: i64) -> StoreResult<bool> {
        self.inner.close_agent_run(id, status, &self.text(error), now_ms).await
    }
    async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        scope: &str,
        created_by: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.inner.create_api_token(name, token_hash, scope, created_by, now_ms).await
    }
    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        self.inner.api_token_by_hash(token_hash).await
    }
    async fn api_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>> {
        self.inner.api_tokens().await
    }
    async fn revoke_api_token(&self, name: &str, now_ms: i64) -> StoreResult<bool> {
        self.inner.revoke_api_token(name, now_ms).await
    }
    async fn record_delivery(&self, delivery: NewDelivery) -> StoreResult<bool> {
        // The raw body is kept as text, so masking it keeps it valid JSON: a secret is replaced
        // inside the string it appears in.
        let delivery = NewDelivery { payload: self.text(&delivery.payload), ..delivery };
        self.inner.record_delivery(delivery).await
    }
    async fn pending_deliveries(&self, limit: u32) -> StoreResult<Vec<DeliveryRecord>> {
        self.inner.pending_deliveries(limit).await
    }
    async fn mark_delivery(
        &self,
        id: i64,
        processed_at_ms: i64,
        parsed: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<bool> {
        let parsed = parsed.map(|text| self.text(text));
        let error = error.map(|text| self.text(text));
        self.inner.mark_delivery(id, processed_at_ms, parsed.as_deref(), error.as_deref()).await
    }
    async fn deliveries(&self, source: Option<&str>) -> StoreResult<Vec<DeliveryRecord>> {
        self.inner.deliveries(source).await
    }
    async fn begin_idempotent(
        &self,
        key: &str,
        request_hash: &str,
        now_ms: i64,
        stale_ms: i64,
    ) -> StoreResult<IdempotencyBegin> {
        self.inner.begin_idempotent(key, request_hash, now_ms, stale_ms).await
    }
    async fn finish_idempotent(&self, key: &str, status: u16, body: &str, now_ms: i64) -> StoreResult<()> {
        self.inner.finish_idempotent(key, status, &self.text(body), now_ms).await
    }
    async fn abandon_idempotent(&self, key: &str) -> StoreResult<()> {
        self.inner.abandon_idempotent(key).await
    }
    async fn health(&self) -> Vec<HealthCheck> {
        self.inner.health().await
    }

    async fn queue_enter(&self, task: TaskId, repo: &str, priority: i64, now_ms: i64) -> StoreResult<bool> {
        self.inner.queue_enter(task, repo, priority, now_ms).await
    }
    async fn queue_entry(&self, task: TaskId) -> StoreResult<Option<baton_store::QueueEntry>> {
        self.inner.queue_entry(task).await
    }
    async fn queue_entries(&self, repo: Option<&str>) -> StoreResult<Vec<baton_store::QueueEntry>> {
        self.inner.queue_entries(repo).await
    }
    async fn queue_entries_with_head(&self, repo: &str, head: &str) -> StoreResult<Vec<baton_store::QueueEntry>> {
        self.inner.queue_entries_with_head(repo, head).await
    }
    async fn queue_update(
        &self,
        task: TaskId,
        expect: &baton_store::QueueExpect,
        change: &baton_store::QueueChange,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let mut change = change.clone();
        change.reason = change.reason.map(|r| self.text(&r));
        self.inner.queue_update(task, expect, &change, now_ms).await
    }
    async fn queue_land(&self, landing: &baton_store::QueueLanding, now_ms: i64) -> StoreResult<Option<LeaseOutcome>> {
        let mut landing = landing.clone();
        landing.change.reason = landing.change.reason.map(|r| self.text(&r));
        self.inner.queue_land(&landing, now_ms).await
    }
    async fn set_queue_priority(&self, task: TaskId, priority: i64) -> StoreResult<bool> {
        self.inner.set_queue_priority(task, priority).await
    }
    async fn due_holds(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<TaskId>> {
        self.inner.due_holds(now_ms, limit).await
    }
    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        self.inner.next_due_ms().await
    }
    async fn next_job_at_ms(&self) -> StoreResult<Option<i64>> {
        self.inner.next_job_at_ms().await
    }
    async fn unapplied_tasks(&self, since_ms: i64, before_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        self.inner.unapplied_tasks(since_ms, before_ms, limit).await
    }
    async fn job_counts(&self) -> StoreResult<JobCounts> {
        self.inner.job_counts().await
    }
    async fn heartbeat(&self, beat: &baton_store::InstanceRecord) -> StoreResult<()> {
        self.inner.heartbeat(beat).await
    }
    async fn instances(&self) -> StoreResult<Vec<baton_store::InstanceRecord>> {
        self.inner.instances().await
    }

    /// Deletes only: nothing to mask.
    async fn prune(&self, before_ms: i64, limit: u32) -> StoreResult<baton_store::PruneCounts> {
        self.inner.prune(before_ms, limit).await
    }

    async fn change_feed(&self) -> StoreResult<Option<Box<dyn baton_store::ChangeFeed>>> {
        self.inner.change_feed().await
    }
}
