//! The store conformance suite (SPEC §4.2, §4.5, §4.6, §15): every `suite_*` function drives a
//! backend only through `Arc<dyn Store>` from an empty database, and [`conformance_tests!`]
//! turns them into one test each for a backend's test crate (SQLite, PostgreSQL, the in-memory
//! simulation store). The few things the trait cannot do (reopen the database after a restart,
//! rewind a work-item counter the way a restored backup would) go through [`Harness`].
// Suites drive real concurrency against real time, and fail by panicking.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)]
#![allow(missing_docs)]

use crate::{
    Advance, AgentRunFinish, Claim, DoneTaskSpend, EffectClaim, EventRecord, InboxEntry, JobCounts, JobFinish,
    JobRecord, JobStatus, LeaseOutcome, LessonFilter, LessonPatch, LessonWrite, NewAgentRun, NewDelivery, NewEffect,
    NewEvent, NewFreeze, NewLesson, NewTask, NewTaskProposal, NewUsageRecord, ProposalFilter, QueueChange, QueueExpect,
    QueueLanding, QueueState, RepoFreeze, SpendFilter, Store, StoreError, TaskFilter, TaskKey, TaskRecord, Transition,
    UsageGroup, UsageRow, task_holder,
};
use baton_domain::{AgentReport, AgentStatus, Hold, JobId, TaskId, TaskState, Usage};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Barrier;

mod dependencies;
mod prune;
pub use dependencies::{suite_dependencies, suite_dependency_cancelled_and_exempt, suite_serial_gate};
pub use prune::suite_prune;

/// The fake clock's origin: 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 86_400_000;
/// Rounds of the advance race; each round is a fresh task.
const RACE_ROUNDS: usize = 50;

// ---------------------------------------------------------------- backends

/// One database under test, reached below the trait: reopen it, or edit a row the trait never
/// edits. Each backend's test crate implements it and calls [`conformance_tests!`](crate::conformance_tests).
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    /// Opens (and migrates) the database, as Baton does at start.
    async fn open(&self) -> Arc<dyn Store>;

    /// Sets the next work-item number of (repo, prefix), as a restored backup or a hand edit would.
    async fn set_work_item_counter(&self, repo: &str, prefix: &str, next: i64);
}

// ---------------------------------------------------------------- helpers

fn new_task(repo: &str, prefix: &str, title: &str) -> NewTask {
    NewTask {
        repo: repo.into(),
        prefix: prefix.into(),
        title: title.into(),
        body: format!("body of {title}"),
        external_ref: None,
        idempotency_key: None,
        depends_on: Vec::new(),
        state: TaskState::new("analysis"),
    }
}

fn enqueue(stage: &str, delay_ms: i64) -> Transition {
    Transition { enqueue: Some((stage.into(), delay_ms)), ..Transition::default() }
}

/// Creates a task at `analysis` with its first job queued and available at `T0`.
async fn create(store: &dyn Store, repo: &str, prefix: &str) -> TaskRecord {
    let task = store.create_task(new_task(repo, prefix, "Add a feature"), enqueue("analysis", 0), T0).await.unwrap();
    assert!(task.state.job.is_some(), "the first job is the task's active job");
    task
}

async fn reload(store: &dyn Store, task: TaskId) -> TaskRecord {
    store.task(&TaskKey::Id(task)).await.unwrap().unwrap()
}

async fn job_of(store: &dyn Store, job: JobId) -> JobRecord {
    store.job(job).await.unwrap().unwrap()
}

async fn events_of(store: &dyn Store, task: TaskId) -> Vec<EventRecord> {
    store.events(Some(task), 0, 10_000).await.unwrap()
}

fn note(task: TaskId, kind: &str, message: &str) -> NewEvent {
    NewEvent {
        task,
        at_ms: T0,
        kind: kind.into(),
        stage: "analysis".into(),
        message: message.into(),
        detail: json!({ "message": message }),
    }
}

fn inbox(key: &str) -> InboxEntry {
    InboxEntry { dedup_key: key.into(), kind: "webhook".into(), payload: json!({ "key": key }) }
}

/// A claim with limits high enough never to bind.
fn claim_at(owner: &str, now_ms: i64) -> Claim {
    limits(owner, now_ms, 1_000, 1_000)
}

fn limits(owner: &str, now_ms: i64, running_max: u32, running_per_repo_max: u32) -> Claim {
    Claim { owner: owner.into(), now_ms, running_max, running_per_repo_max, ..Claim::default() }
}

/// Claims at `now_ms` and insists a job came back.
async fn claim(store: &dyn Store, now_ms: i64) -> JobRecord {
    store.claim_job(&claim_at("worker", now_ms)).await.unwrap().expect("a claimable job")
}

fn finished(job: JobId, result: serde_json::Value) -> Option<JobFinish> {
    Some(JobFinish { job, status: JobStatus::Done, result, claimed_by: None })
}

/// The advance a fresh read of `task` would produce: move to `stage` at `T0 + 1`.
fn step(task: &TaskRecord, stage: &str, finish_job: Option<JobFinish>, transition: Transition) -> Advance {
    Advance {
        task: task.id,
        expected_version: task.version,
        next: TaskState::new(stage),
        finish_job,
        event: NewEvent {
            task: task.id,
            at_ms: T0 + 1,
            kind: "advanced".into(),
            stage: stage.into(),
            message: format!("to {stage}"),
            detail: json!({ "to": stage }),
        },
        transition,
        inbox: None,
        effects: Vec::new(),
        now_ms: T0 + 1,
    }
}

fn is_conflict<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict(_)))
}

fn is_duplicate<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Duplicate(_)))
}

fn report(status: AgentStatus, usage: Usage, cost_usd: Option<f64>, model: Option<&str>) -> AgentReport {
    AgentReport {
        status,
        usage,
        cost_usd,
        model: model.map(str::to_string),
        session_id: Some("session-1".into()),
        turns: Some(3),
        final_text: None,
    }
}

fn tokens(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        reasoning_tokens: 7,
    }
}

/// Starts and finishes one agent run for the task's active job.
async fn run(store: &dyn Store, task: &TaskRecord, stage: &str, started_at_ms: i64, finish: AgentReport) -> i64 {
    let id = store
        .insert_agent_run(NewAgentRun {
            job: task.state.job.unwrap(),
            task: task.id,
            stage: stage.into(),
            adapter: if stage == "design" { "codex" } else { "claude" }.into(),
            model: Some("model-a".into()),
            pid: Some(4242),
            started_at_ms,
            log_path: format!("logs/{}-{stage}.log", task.work_item_id),
        })
        .await
        .unwrap();
    store
        .finish_agent_run(
            id,
            AgentRunFinish { ended_at_ms: started_at_ms + 1_000, exit_code: Some(0), report: finish, stopped: false },
        )
        .await
        .unwrap();
    id
}

fn usage_row<'a>(rows: &'a [UsageRow], key: &str) -> &'a UsageRow {
    rows.iter().find(|r| r.key == key).unwrap_or_else(|| panic!("no usage row `{key}` in {rows:?}"))
}

fn assert_usage(row: &UsageRow, runs: u64, input: u64, output: u64, cost_usd: f64, unpriced_runs: u64) {
    assert_eq!(
        (row.runs, row.input_tokens, row.output_tokens, row.unpriced_runs),
        (runs, input, output, unpriced_runs),
        "{row:?}"
    );
    assert!((row.cost_usd - cost_usd).abs() < 1e-9, "{row:?}: cost {cost_usd} expected");
}

// ---------------------------------------------------------------- suites: merge queue

/// SPEC §6.3: parking a task in the merge queue and its queue entry commit together; a parking
/// that loses its compare-and-set (a STOP moved the task first) leaves no entry; leaving the
/// queue with the lease release deletes it; entry updates are compare-and-set on state and base.
pub async fn suite_merge_queue(store: Arc<dyn Store>) {
    let task = create(&*store, "alpha", "P").await;
    let job = claim(&*store, T0).await.id;
    let stale = reload(&*store, task.id).await;
    let parked = |task: &TaskRecord| {
        let mut advance = step(task, "merge", finished(job, json!("queued")), Transition::default());
        advance.next.hold = Hold::MergeQueue;
        advance
    };

    // A STOP commits first: the merge gate's late parking conflicts and enters nothing.
    let stop = Transition { cancel_jobs: true, release_leases: true, ..Transition::default() };
    store.advance(step(&stale, "cancelled", None, stop)).await.unwrap();
    assert!(is_conflict(&store.advance(parked(&stale)).await));
    assert_eq!(store.queue_entry(task.id).await.unwrap(), None, "a stopped task left an entry");
    assert!(store.queue_entries(Some("alpha")).await.unwrap().is_empty());

    // A parking that commits enters the task as waiting, once.
    let other = create(&*store, "alpha", "P").await;
    let job = claim(&*store, T0).await.id;
    let other = reload(&*store, other.id).await;
    let mut advance = step(&other, "merge", finished(job, json!("queued")), Transition::default());
    advance.next.hold = Hold::MergeQueue;
    store.advance(advance).await.unwrap();
    let entry = store.queue_entry(other.id).await.unwrap().expect("the parked task is queued");
    assert_eq!((entry.state, entry.repo.as_str(), entry.entered_at_ms), (QueueState::Waiting, "alpha", T0 + 1));
    assert_eq!(entry.work_item_id, other.work_item_id);
    assert!(!store.queue_enter(other.id, "alpha", 0, T0 + 5).await.unwrap(), "queued already");

    // Updates are compare-and-set on (state, base).
    let testing = QueueChange { state: QueueState::Testing, base: Some("abc".into()), ..QueueChange::from(&entry) };
    assert!(store.queue_update(other.id, &QueueExpect::of(&entry), &testing, T0 + 2).await.unwrap());
    assert!(!store.queue_update(other.id, &QueueExpect::of(&entry), &testing, T0 + 3).await.unwrap());
    let entry = store.queue_entry(other.id).await.unwrap().unwrap();
    assert_eq!((entry.state, entry.base.as_deref()), (QueueState::Testing, Some("abc")));

    // Entries by tested head: only the repository's entries tested as exactly that commit.
    assert!(store.queue_entries_with_head("alpha", "abd").await.unwrap().is_empty(), "nothing tested yet");
    let green = QueueChange { state: QueueState::Green, head: Some("abd".into()), ..QueueChange::from(&entry) };
    assert!(store.queue_update(other.id, &QueueExpect::of(&entry), &green, T0 + 3).await.unwrap());
    let tested = store.queue_entries_with_head("alpha", "abd").await.unwrap();
    assert_eq!(tested.iter().map(|e| (e.task, e.state)).collect::<Vec<_>>(), [(other.id, QueueState::Green)]);
    assert!(store.queue_entries_with_head("alpha", "abc").await.unwrap().is_empty(), "a base is not a head");
    assert!(store.queue_entries_with_head("beta", "abd").await.unwrap().is_empty(), "another repository's");

    // Woken (no hold) and parked again: still one entry, its state kept.
    let other = reload(&*store, other.id).await;
    store.advance(step(&other, "merge", None, enqueue("merge", 0))).await.unwrap();
    let job = claim(&*store, T0 + 1).await.id;
    let other = reload(&*store, other.id).await;
    let mut advance = step(&other, "merge", finished(job, json!("queued")), Transition::default());
    advance.next.hold = Hold::MergeQueue;
    store.advance(advance).await.unwrap();
    let entries = store.queue_entries(Some("alpha")).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].state, QueueState::Green);

    // Leaving with the lease release (done, rollback, block, cancel) deletes the entry.
    let other = reload(&*store, other.id).await;
    let leave = Transition { release_leases: true, ..Transition::default() };
    store.advance(step(&other, "done", None, leave.clone())).await.unwrap();
    assert_eq!(store.queue_entry(other.id).await.unwrap(), None);

    // A batch is landing: its changes other than the last are never cancelled. A STOP that read a
    // member before it was marked loses, and writes nothing; the member leaves once its batch
    // landed (here to its deploy stage), and the last change (holding the lease) may leave any
    // way, as any landing change.
    let member = park(&*store, "alpha").await;
    let tail = park(&*store, "alpha").await;
    for (task, head) in [(member, "b1"), (tail, "b1")] {
        let entry = store.queue_entry(task).await.unwrap().unwrap();
        let landing = QueueChange {
            state: QueueState::Landing,
            head: Some(head.into()),
            batch: Some(tail),
            ..QueueChange::from(&entry)
        };
        assert!(store.queue_update(task, &QueueExpect::of(&entry), &landing, T0 + 4).await.unwrap());
    }
    let stopped = reload(&*store, member).await;
    let stop = Transition { cancel_jobs: true, release_leases: true, ..Transition::default() };
    assert!(
        is_conflict(&store.advance(step(&stopped, "cancelled", None, stop.clone())).await),
        "a landing member was cancelled"
    );
    assert_eq!(store.queue_entry(member).await.unwrap().map(|e| e.state), Some(QueueState::Landing));
    assert_eq!(reload(&*store, member).await.version, stopped.version, "the lost STOP wrote the task");
    // Nor, while it is parked (not yet woken as landed), is it blocked or rolled back: a dependency
    // block read before the mark loses the same way.
    let mut block = step(&stopped, "merge", None, leave.clone());
    block.next.hold = Hold::Blocked { reason: "its dependency was cancelled".into() };
    assert!(is_conflict(&store.advance(block).await), "a parked landing member was blocked");
    assert!(
        is_conflict(&store.advance(step(&stopped, "development", None, leave.clone())).await),
        "a parked landing member was rolled back"
    );
    assert_eq!(store.queue_entry(member).await.unwrap().map(|e| e.state), Some(QueueState::Landing));
    assert_eq!(reload(&*store, member).await.version, stopped.version, "a lost transition wrote the task");
    let tail_record = reload(&*store, tail).await;
    store.advance(step(&tail_record, "development", None, leave.clone())).await.unwrap();
    assert_eq!(store.queue_entry(tail).await.unwrap(), None, "the last change left its landing");
    // Woken once its batch landed, the member's merge stage passes on to its deploy stage, which
    // may end as any other's: the entry goes.
    store.advance(step(&stopped, "merge", None, Transition::default())).await.unwrap();
    let woken = reload(&*store, member).await;
    assert_eq!(store.queue_entry(member).await.unwrap().map(|e| e.state), Some(QueueState::Landing));
    store.advance(step(&woken, "deploy", None, leave)).await.unwrap();
    assert_eq!(store.queue_entry(member).await.unwrap(), None, "a landed member left for its deploy");
}

/// A task parked in `repo`'s merge queue, its entry waiting.
async fn park(store: &dyn Store, repo: &str) -> TaskId {
    let task = create(store, repo, "P").await;
    let job = claim(store, T0).await;
    assert_eq!(job.task_id, task.id, "another task's job was queued");
    let record = reload(store, task.id).await;
    let mut advance = step(&record, "merge", finished(job.id, json!("queued")), Transition::default());
    advance.next.hold = Hold::MergeQueue;
    store.advance(advance).await.unwrap();
    task.id
}

// ---------------------------------------------------------------- suites: advance

/// SPEC §4.2: of two advancers holding the same version, exactly one commits; the loser writes nothing.
pub async fn suite_advance_race(store: Arc<dyn Store>) {
    const STAGES: [&str; 2] = ["design", "implementation"];
    for round in 0..RACE_ROUNDS {
        let task = create(&*store, "race", "R").await;
        // Earlier rounds' next jobs are a day out, so this claim can only take this round's job.
        let job = claim(&*store, T0).await;
        assert_eq!(Some(job.id), task.state.job, "round {round}");
        // A claim bumps the version: the racers both read the task after it.
        let task = reload(&*store, task.id).await;
        let events_before = events_of(&*store, task.id).await.len();

        let barrier = Arc::new(Barrier::new(STAGES.len()));
        let racers: Vec<_> = STAGES
            .iter()
            .enumerate()
            .map(|(racer, stage)| {
                let mut advance =
                    step(&task, stage, finished(job.id, json!({ "racer": racer })), enqueue(stage, DAY_MS));
                advance.event.detail = json!({ "racer": racer });
                advance.inbox = Some(inbox(&format!("race-{round}-{racer}")));
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.advance(advance).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for racer in racers {
            outcomes.push(racer.await.unwrap());
        }

        let winners: Vec<usize> = (0..outcomes.len()).filter(|&i| outcomes[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one advance commits: {outcomes:?}");
        let (winner, loser) = (winners[0], 1 - winners[0]);
        assert!(is_conflict(&outcomes[loser]), "round {round}: the loser sees a conflict: {outcomes:?}");
        let next_job = outcomes[winner].as_ref().unwrap().expect("the winner enqueued a job");

        let after = reload(&*store, task.id).await;
        assert_eq!(after.version, task.version + 1, "round {round}");
        assert_eq!(after.state.stage, STAGES[winner], "round {round}");
        assert_eq!(after.state.job, Some(next_job), "round {round}");

        let events = events_of(&*store, task.id).await;
        assert_eq!(events.len(), events_before + 1, "round {round}: one event row for the transition");
        assert_eq!(events.last().unwrap().detail, json!({ "racer": winner }), "round {round}");

        let jobs = store.jobs_for_task(task.id).await.unwrap();
        assert_eq!(jobs.len(), 2, "round {round}: one enqueue: {jobs:?}");
        let old = jobs.iter().find(|j| j.id == job.id).unwrap();
        assert_eq!(old.status, JobStatus::Done, "round {round}");
        assert_eq!(old.result, Some(json!({ "racer": winner })), "round {round}: the winner's flip");
        let new = jobs.iter().find(|j| j.id == next_job).unwrap();
        assert_eq!((new.status, new.stage.as_str()), (JobStatus::Queued, STAGES[winner]), "round {round}");
        assert_eq!(new.available_at_ms, T0 + 1 + DAY_MS, "round {round}");

        assert!(store.inbox_seen(&format!("race-{round}-{winner}")).await.unwrap(), "round {round}");
        assert!(!store.inbox_seen(&format!("race-{round}-{loser}")).await.unwrap(), "round {round}: loser's inbox");
    }
}

/// SPEC §4.2: the job flip is part of the compare-and-set; a job that is not running rolls back the whole advance.
pub async fn suite_finish_guard(store: Arc<dyn Store>) {
    let task = create(&*store, "alpha", "P").await;
    let job = task.state.job.unwrap();
    let events_before = events_of(&*store, task.id).await.len();

    // The job is still queued, not running.
    let mut early = step(&task, "design", finished(job, json!("early")), enqueue("design", 0));
    early.inbox = Some(inbox("guard-early"));
    assert!(is_conflict(&store.advance(early).await), "finishing a queued job conflicts");
    let after = reload(&*store, task.id).await;
    assert_eq!((after.version, after.state.stage.as_str(), after.state.job), (task.version, "analysis", Some(job)));
    assert_eq!(events_of(&*store, task.id).await.len(), events_before, "no event row");
    let jobs = store.jobs_for_task(task.id).await.unwrap();
    assert_eq!(jobs.len(), 1, "no enqueue: {jobs:?}");
    assert_eq!((jobs[0].status, jobs[0].result.clone()), (JobStatus::Queued, None));
    assert!(!store.inbox_seen("guard-early").await.unwrap(), "no inbox row");

    // Finished once, then finished again by a caller that read the new version.
    assert_eq!(claim(&*store, T0).await.id, job);
    let task = reload(&*store, task.id).await;
    store.advance(step(&task, "design", finished(job, json!("once")), enqueue("design", 0))).await.unwrap();
    let mid = reload(&*store, task.id).await;
    let again = step(&mid, "implementation", finished(job, json!("twice")), enqueue("implementation", 0));
    assert!(is_conflict(&store.advance(again).await), "finishing a done job conflicts");
    let after = reload(&*store, task.id).await;
    assert_eq!((after.version, after.state.stage.as_str(), after.state.job), (mid.version, "design", mid.state.job));
    assert_eq!(store.jobs_for_task(task.id).await.unwrap().len(), 2, "no second enqueue");
    assert_eq!(job_of(&*store, job).await.result, Some(json!("once")));
    assert_eq!(events_of(&*store, task.id).await.len(), events_before + 1);
}

/// SPEC §4.2: an advance can only flip its own task's job; naming another task's running job changes nothing.
pub async fn suite_finish_guard_other_task(store: Arc<dyn Store>) {
    let mine = create(&*store, "alpha", "P").await;
    let theirs = create(&*store, "alpha", "P").await;
    let claimed = [claim(&*store, T0).await, claim(&*store, T0).await];
    let their_job = claimed.into_iter().find(|j| j.task_id == theirs.id).unwrap();
    assert_eq!(Some(their_job.id), theirs.state.job);
    let mine = reload(&*store, mine.id).await;

    let wrong = step(&mine, "design", finished(their_job.id, json!("hijack")), enqueue("design", 0));
    assert!(store.advance(wrong).await.is_err(), "another task's job is not this transition's job");
    assert_eq!(job_of(&*store, their_job.id).await.status, JobStatus::Running, "their job keeps running");
    assert_eq!(reload(&*store, mine.id).await.version, mine.version, "my task did not move");
}

// ---------------------------------------------------------------- suites: tasks and work items

/// Work-item ids count per (repo, prefix) and walk forward past numbers already taken.
pub async fn suite_work_item_ids(store: Arc<dyn Store>, backend: &dyn Harness) {
    let id = |repo: &'static str, prefix: &'static str| {
        let store = store.clone();
        async move { create(&*store, repo, prefix).await.work_item_id }
    };
    assert_eq!(id("alpha", "P").await, "P-001");
    assert_eq!(id("alpha", "P").await, "P-002");
    assert_eq!(id("beta", "P").await, "P-001", "another repo numbers independently");
    assert_eq!(id("alpha", "Q").await, "Q-001", "another prefix numbers independently");
    assert_eq!(id("alpha", "P").await, "P-003");

    // The counter falls behind the tasks (a restored backup): the next id skips P-001..P-003.
    backend.set_work_item_counter("alpha", "P", 1).await;
    assert_eq!(id("alpha", "P").await, "P-004", "the walk skips taken numbers");
    assert_eq!(id("alpha", "P").await, "P-005");
    assert_eq!(id("beta", "P").await, "P-002");

    let q = store.task(&TaskKey::WorkItem("Q-001".into())).await.unwrap().unwrap();
    assert_eq!((q.repo.as_str(), q.work_item_id.as_str()), ("alpha", "Q-001"));
    assert!(q.branch.starts_with("baton/Q-001-"), "branch {}", q.branch);
    assert!(store.task(&TaskKey::WorkItem("Q-002".into())).await.unwrap().is_none());
    assert!(store.task(&TaskKey::Id(TaskId(9_999))).await.unwrap().is_none());
}

/// A counter raised past numbers taken outside the store hands out the next one after them, for
/// its own (repo, prefix) only; raising it to a lower number, or to where it is, changes nothing;
/// a counter that does not exist yet starts there.
pub async fn suite_raise_work_item_counter(store: Arc<dyn Store>) {
    let id = |repo: &'static str, prefix: &'static str| {
        let store = store.clone();
        async move { create(&*store, repo, prefix).await.work_item_id }
    };
    assert_eq!(id("alpha", "P").await, "P-001");
    store.raise_work_item_counter("alpha", "P", 8).await.unwrap();
    assert_eq!(id("alpha", "P").await, "P-008");
    store.raise_work_item_counter("alpha", "P", 3).await.unwrap();
    store.raise_work_item_counter("alpha", "P", 9).await.unwrap();
    assert_eq!(id("alpha", "P").await, "P-009", "never lowered");
    assert_eq!(id("beta", "P").await, "P-001", "another repository keeps its own counter");
    assert_eq!(id("alpha", "Q").await, "Q-001", "another prefix keeps its own counter");
    store.raise_work_item_counter("gamma", "R", 42).await.unwrap();
    assert_eq!(id("gamma", "R").await, "R-042", "a new counter starts where it was raised to");
}

/// Concurrent creates in one (repo, prefix) get distinct, gap-free work-item ids.
pub async fn suite_work_item_ids_concurrent(store: Arc<dyn Store>) {
    let barrier = Arc::new(Barrier::new(20));
    let creators: Vec<_> = (0..20)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                create(&*store, "alpha", "C").await.work_item_id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for creator in creators {
        ids.push(creator.await.unwrap());
    }
    ids.sort();
    let expected: Vec<String> = (1..=20).map(|n| format!("C-{n:03}")).collect();
    assert_eq!(ids, expected);
}

/// A created task round-trips its fields, and `list_tasks` filters by repo and activity, newest first.
pub async fn suite_tasks_and_listing(store: Arc<dyn Store>) {
    let mut new = new_task("alpha", "P", "Fix the login page");
    new.external_ref = Some("GH-12".into());
    let first = store.create_task(new, enqueue("analysis", 0), T0).await.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!((first.created_at_ms, first.updated_at_ms), (T0, T0));
    assert_eq!((first.title.as_str(), first.body.as_str()), ("Fix the login page", "body of Fix the login page"));
    assert_eq!(first.external_ref.as_deref(), Some("GH-12"));
    assert_eq!(first.state.stage, "analysis");
    assert_eq!(reload(&*store, first.id).await.state, first.state);
    let created = events_of(&*store, first.id).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].kind, "created");

    let second = create(&*store, "alpha", "P").await;
    let other = create(&*store, "beta", "P").await;
    let done = step(&second, "done", None, Transition { cancel_jobs: true, ..Transition::default() });
    store.advance(done).await.unwrap();

    let ids = |tasks: Vec<TaskRecord>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let all = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(ids(all), vec![other.id, second.id, first.id], "newest first");
    let active = store.list_tasks(&TaskFilter { active_only: true, ..TaskFilter::default() }).await.unwrap();
    assert_eq!(ids(active), vec![other.id, first.id], "done tasks are not active");
    let alpha = store.list_tasks(&TaskFilter { repo: Some("alpha".into()), ..TaskFilter::default() }).await.unwrap();
    assert_eq!(ids(alpha), vec![second.id, first.id]);
    let closed = reload(&*store, second.id).await;
    assert_eq!((closed.state.stage.as_str(), closed.state.job, closed.updated_at_ms), ("done", None, T0 + 1));
}

/// Due holds, hold and stage filters and the reconciler's candidates come from the indexed columns
/// the state writes keep in step.
pub async fn suite_holds_and_filters(store: Arc<dyn Store>) {
    let paused = create(&*store, "alpha", "A").await;
    let approval = create(&*store, "alpha", "A").await;
    let running = create(&*store, "beta", "B").await;
    let later = create(&*store, "beta", "B").await;
    let quota = |resume_at_ms| Hold::PausedQuota { reason: "quota".into(), resume_at_ms };
    let hold = |task: &TaskRecord, hold: Hold| {
        let mut advance = step(task, "analysis", None, Transition { cancel_jobs: true, ..Transition::default() });
        advance.next.hold = hold;
        advance
    };
    store.advance(hold(&paused, quota(T0 + 50))).await.unwrap();
    store.advance(hold(&later, quota(T0 + 900))).await.unwrap();
    store.advance(hold(&approval, Hold::AwaitingApproval)).await.unwrap();

    assert_eq!(store.next_due_ms().await.unwrap(), Some(T0 + 50));
    assert_eq!(store.due_holds(T0 + 49, 10).await.unwrap(), Vec::<TaskId>::new(), "nothing due yet");
    assert_eq!(store.due_holds(T0 + 50, 10).await.unwrap(), vec![paused.id]);
    assert_eq!(store.due_holds(T0 + 1_000, 10).await.unwrap(), vec![paused.id, later.id], "earliest first");
    assert_eq!(store.due_holds(T0 + 1_000, 1).await.unwrap(), vec![paused.id], "the limit holds");
    // Resuming clears the due time.
    store.advance(step(&reload(&*store, paused.id).await, "analysis", None, enqueue("analysis", 0))).await.unwrap();
    assert_eq!(store.next_due_ms().await.unwrap(), Some(T0 + 900));

    let ids = |tasks: Vec<TaskRecord>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let by_hold = |hold: &str| TaskFilter { hold: Some(hold.into()), ..TaskFilter::default() };
    assert_eq!(ids(store.list_tasks_page(&by_hold("awaiting_approval"), None, 10).await.unwrap()), vec![approval.id]);
    assert_eq!(ids(store.list_tasks_page(&by_hold("paused_quota"), None, 10).await.unwrap()), vec![later.id]);
    assert_eq!(ids(store.list_tasks_page(&by_hold(""), None, 10).await.unwrap()), vec![running.id, paused.id]);
    let beta_quota = TaskFilter { repo: Some("beta".into()), ..by_hold("paused_quota") };
    assert_eq!(ids(store.list_tasks(&beta_quota).await.unwrap()), vec![later.id]);
    let by_stage = |stage: &str| TaskFilter { stage: Some(stage.into()), active_only: true, ..TaskFilter::default() };
    assert_eq!(
        ids(store.list_tasks_page(&by_stage("analysis"), Some(later.id), 2).await.unwrap()),
        vec![running.id, approval.id]
    );
    assert!(store.list_tasks_page(&by_stage("review"), None, 10).await.unwrap().is_empty());

    // The reconciler's candidates: a live task without a hold whose current job ended.
    assert!(store.unapplied_tasks(0, T0 + 10, 10).await.unwrap().is_empty(), "every current job is queued");
    assert_eq!(store.job_counts().await.unwrap(), JobCounts { queued: 2, running: 0 });
    let job = claim(&*store, T0 + 2).await;
    assert_eq!(job.task_id, running.id);
    assert_eq!(store.job_counts().await.unwrap(), JobCounts { queued: 1, running: 1 });
    assert!(store.close_job(job.id, JobStatus::Done, json!({}), T0 + 3).await.unwrap());
    assert_eq!(ids(store.unapplied_tasks(0, T0 + 10, 10).await.unwrap()), vec![running.id]);
    assert_eq!(ids(store.unapplied_tasks(T0 + 3, T0 + 10, 10).await.unwrap()), vec![running.id], "ended in the window");
    assert!(store.unapplied_tasks(T0 + 4, T0 + 10, 10).await.unwrap().is_empty(), "ended before the window");
    assert!(store.unapplied_tasks(0, T0 + 1, 10).await.unwrap().is_empty(), "changed too recently");
}

// ---------------------------------------------------------------- suites: claims

/// Claims respect the global and per-repo running limits.
pub async fn suite_claim_limits(store: Arc<dyn Store>) {
    for _ in 0..3 {
        create(&*store, "alpha", "A").await;
    }
    let first = store.claim_job(&limits("w", T0, 10, 2)).await.unwrap().unwrap();
    let second = store.claim_job(&limits("w", T0, 10, 2)).await.unwrap().unwrap();
    assert_eq!((first.repo.as_str(), second.repo.as_str()), ("alpha", "alpha"));
    assert!(store.claim_job(&limits("w", T0, 10, 2)).await.unwrap().is_none(), "alpha is at its per-repo limit");

    create(&*store, "beta", "B").await;
    let beta = store.claim_job(&limits("w", T0, 10, 2)).await.unwrap().unwrap();
    assert_eq!(beta.repo, "beta", "another repo is not held back by alpha's limit");

    // Three running: a global limit of 3 binds even though alpha's per-repo limit (now 3) would allow one more.
    assert!(store.claim_job(&limits("w", T0, 3, 3)).await.unwrap().is_none(), "the global limit binds");
    let last = store.claim_job(&limits("w", T0, 4, 3)).await.unwrap().unwrap();
    assert_eq!(last.repo, "alpha");
    assert_eq!(store.jobs_with_status(JobStatus::Running).await.unwrap().len(), 4);
    assert!(store.jobs_with_status(JobStatus::Queued).await.unwrap().is_empty());
}

/// A job delayed until `available_at` is not claimable a millisecond earlier.
pub async fn suite_claim_available_at(store: Arc<dyn Store>) {
    assert_eq!(store.next_job_at_ms().await.unwrap(), None, "no job is queued");
    let task = store.create_task(new_task("alpha", "P", "Later"), enqueue("analysis", 60_000), T0).await.unwrap();
    let job = job_of(&*store, task.state.job.unwrap()).await;
    assert_eq!((job.status, job.available_at_ms, job.attempt), (JobStatus::Queued, T0 + 60_000, 1));
    assert_eq!(store.next_job_at_ms().await.unwrap(), Some(T0 + 60_000), "the queued job's time");
    assert!(store.claim_job(&claim_at("w", T0)).await.unwrap().is_none());
    assert!(store.claim_job(&claim_at("w", T0 + 59_999)).await.unwrap().is_none());
    let claimed = store.claim_job(&claim_at("w", T0 + 60_000)).await.unwrap().unwrap();
    assert_eq!(claimed.id, job.id);
    assert_eq!(store.next_job_at_ms().await.unwrap(), None, "a running job is not queued");
    assert_eq!(
        (claimed.status, claimed.owner.as_deref(), claimed.started_at_ms),
        (JobStatus::Running, Some("w"), Some(T0 + 60_000))
    );
}

/// Four concurrent claimers over 200 jobs: every job is claimed exactly once, by the claimer that got it.
pub async fn suite_claim_concurrent(store: Arc<dyn Store>) {
    const JOBS: usize = 200;
    const CLAIMERS: usize = 4;
    for _ in 0..JOBS {
        create(&*store, "alpha", "P").await;
    }
    let barrier = Arc::new(Barrier::new(CLAIMERS));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let owner = format!("claimer-{n}");
                barrier.wait().await;
                let mut claimed = Vec::new();
                while let Some(job) = store.claim_job(&claim_at(&owner, T0)).await.unwrap() {
                    assert_eq!(job.owner.as_deref(), Some(owner.as_str()));
                    claimed.push(job.id);
                }
                claimed
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: HashSet<JobId> = all.iter().copied().collect();
    assert_eq!(all.len(), JOBS, "claims in total");
    assert_eq!(distinct.len(), JOBS, "no job claimed twice");
    assert_eq!(store.jobs_with_status(JobStatus::Running).await.unwrap().len(), JOBS);
    assert!(store.jobs_with_status(JobStatus::Queued).await.unwrap().is_empty());
}

/// Only a task's current job is claimable; a superseded queued job, or one of a task without a job, is not.
pub async fn suite_claim_current_job_only(store: Arc<dyn Store>) {
    let task = create(&*store, "alpha", "P").await;
    let superseded = task.state.job.unwrap();
    let current = store.advance(step(&task, "design", None, enqueue("design", 0))).await.unwrap().unwrap();
    assert_eq!(claim(&*store, T0 + 1).await.id, current);
    assert!(store.claim_job(&claim_at("w", T0 + 1)).await.unwrap().is_none(), "the superseded job stays put");
    assert_eq!(job_of(&*store, superseded).await.status, JobStatus::Queued);

    let waiting = create(&*store, "alpha", "P").await;
    let mut hold = step(&waiting, "analysis", None, Transition::default());
    hold.next.hold = Hold::AwaitingApproval;
    assert_eq!(store.advance(hold).await.unwrap(), None);
    assert_eq!(reload(&*store, waiting.id).await.state.job, None);
    assert!(store.claim_job(&claim_at("w", T0 + 1)).await.unwrap().is_none(), "a task without a job has none to run");
}

/// Claims take the highest rank first (the later pipeline stage), then the oldest `available_at`,
/// then the lowest id; the rank is read back with the job.
pub async fn suite_claim_rank(store: Arc<dyn Store>) {
    let ranked = |rank: i64, delay_ms: i64| Transition { rank, ..enqueue("analysis", delay_ms) };
    let mut by_rank = Vec::new();
    for rank in [1, 5, 3] {
        let task = store.create_task(new_task("alpha", "R", "Ranked"), ranked(rank, 0), T0).await.unwrap();
        assert_eq!(job_of(&*store, task.state.job.unwrap()).await.rank, rank);
        by_rank.push((rank, task.id));
    }
    let claimed: Vec<(i64, TaskId)> = [claim(&*store, T0).await, claim(&*store, T0).await, claim(&*store, T0).await]
        .iter()
        .map(|job| (job.rank, job.task_id))
        .collect();
    by_rank.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
    assert_eq!(claimed, by_rank, "claimed by rank, highest first");
    assert_eq!(claimed.iter().map(|(rank, _)| *rank).collect::<Vec<_>>(), [5, 3, 1]);

    // Equal rank: the older `available_at` first, though its job was enqueued later (higher id).
    let later = store.create_task(new_task("alpha", "R", "Later"), ranked(2, 10), T0).await.unwrap();
    let sooner = store.create_task(new_task("alpha", "R", "Sooner"), ranked(2, 0), T0).await.unwrap();
    assert!(later.state.job.unwrap() < sooner.state.job.unwrap());
    assert_eq!(claim(&*store, T0 + 10).await.task_id, sooner.id);
    assert_eq!(claim(&*store, T0 + 10).await.task_id, later.id);
    assert!(store.claim_job(&claim_at("w", T0 + 10)).await.unwrap().is_none());
}

// ---------------------------------------------------------------- suites: leases

/// Leases: one holder at a time, renewable by the holder, taken over after expiry with a larger fencing token.
pub async fn suite_leases(store: Arc<dyn Store>) {
    let acquired = |outcome: LeaseOutcome| match outcome {
        LeaseOutcome::Acquired { token } => token,
        busy => panic!("expected the lease, got {busy:?}"),
    };
    let first = acquired(store.acquire_lease("merge:alpha", "one", 1_000, T0).await.unwrap());
    assert_eq!(
        store.acquire_lease("merge:alpha", "two", 1_000, T0 + 10).await.unwrap(),
        LeaseOutcome::Busy { holder: "one".into() }
    );
    assert_eq!(acquired(store.acquire_lease("merge:alpha", "one", 1_000, T0 + 500).await.unwrap()), first, "renewal");
    let lease = store.lease("merge:alpha").await.unwrap().unwrap();
    assert_eq!((lease.holder.as_str(), lease.token, lease.expires_at_ms), ("one", first, T0 + 1_500));
    assert_eq!(
        store.acquire_lease("merge:alpha", "two", 1_000, T0 + 1_499).await.unwrap(),
        LeaseOutcome::Busy { holder: "one".into() },
        "the renewal extended the lease"
    );
    let second = acquired(store.acquire_lease("merge:alpha", "two", 1_000, T0 + 1_501).await.unwrap());
    assert!(second > first, "a takeover after expiry gets a larger token ({second} > {first})");
    assert_eq!(store.lease("merge:alpha").await.unwrap().unwrap().holder, "two");
    assert!(store.lease("merge:beta").await.unwrap().is_none());
}

/// An advance with `release_leases` drops exactly the task's leases, and tokens keep growing across releases.
pub async fn suite_lease_release(store: Arc<dyn Store>) {
    let task = create(&*store, "alpha", "P").await;
    let holder = task_holder(task.id);
    let LeaseOutcome::Acquired { token: mut last } =
        store.acquire_lease("merge:alpha", &holder, 60_000, T0).await.unwrap()
    else {
        panic!("a free lease is acquired")
    };
    store.acquire_lease("deploy:alpha", &holder, 60_000, T0).await.unwrap();
    store.acquire_lease("merge:beta", "someone-else", 60_000, T0).await.unwrap();

    let mut task = task;
    for round in 0..5 {
        let release = Transition { release_leases: true, ..Transition::default() };
        store.advance(step(&task, "deploy", None, release)).await.unwrap();
        task = reload(&*store, task.id).await;
        let names: Vec<String> = store.leases().await.unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, vec!["merge:beta".to_string()], "round {round}: only the task's leases are released");

        // Alternate holders: each re-acquire of a released lease gets a strictly larger token.
        let who = if round % 2 == 0 { "other-instance".to_string() } else { holder.clone() };
        let LeaseOutcome::Acquired { token } = store.acquire_lease("merge:alpha", &who, 60_000, T0).await.unwrap()
        else {
            panic!("round {round}: a released lease is free")
        };
        assert!(token > last, "round {round}: token {token} > {last}");
        last = token;
        if who != holder {
            // Hand it back so the next release has something to drop.
            store.acquire_lease("merge:alpha", &who, -1, T0).await.unwrap();
            let LeaseOutcome::Acquired { token } =
                store.acquire_lease("merge:alpha", &holder, 60_000, T0).await.unwrap()
            else {
                panic!("round {round}: an expired lease is free")
            };
            assert!(token > last, "round {round}: token {token} > {last}");
            last = token;
        }
    }
}

/// A lease released on a read of its holder's task goes only while that task is as read: a claim
/// or an advance since then keeps it (the task may have taken it again under the same name).
pub async fn suite_lease_release_if_unmoved(store: Arc<dyn Store>) {
    let task = create(&*store, "alpha", "P").await;
    let holder = task_holder(task.id);
    assert!(matches!(
        store.acquire_lease("merge:alpha", &holder, 60_000, T0).await.unwrap(),
        LeaseOutcome::Acquired { .. }
    ));
    let read = reload(&*store, task.id).await;

    // A claim moves the task's version: the release read before it releases nothing.
    claim(&*store, T0).await;
    assert!(
        !store.release_lease_if_unmoved("merge:alpha", task.id, read.version).await.unwrap(),
        "the task was claimed since it was read"
    );
    assert_eq!(store.lease("merge:alpha").await.unwrap().unwrap().holder, holder, "the lease is kept");

    // An advance moves it too.
    let claimed = reload(&*store, task.id).await;
    store.advance(step(&claimed, "architecture", None, Transition::default())).await.unwrap();
    assert!(!store.release_lease_if_unmoved("merge:alpha", task.id, claimed.version).await.unwrap());
    assert!(store.lease("merge:alpha").await.unwrap().is_some(), "the lease is kept");

    // Another task, unmoved, releases nothing of this task's; nor does a lease of another name.
    let now = reload(&*store, task.id).await;
    let other = create(&*store, "alpha", "Q").await;
    assert!(!store.release_lease_if_unmoved("merge:alpha", other.id, other.version).await.unwrap());
    assert!(!store.release_lease_if_unmoved("merge:beta", task.id, now.version).await.unwrap());
    assert!(!store.release_lease_if_unmoved("merge:alpha", TaskId(9_999_999), 1).await.unwrap());
    assert!(store.lease("merge:alpha").await.unwrap().is_some(), "the lease is kept");

    // The task as read now: released, once.
    assert!(store.release_lease_if_unmoved("merge:alpha", task.id, now.version).await.unwrap());
    assert!(store.lease("merge:alpha").await.unwrap().is_none(), "the lease is released");
    assert!(!store.release_lease_if_unmoved("merge:alpha", task.id, now.version).await.unwrap());
}

/// A job's own acquire takes the lease only while that job is its task's active one.
pub async fn suite_lease_for_job(store: Arc<dyn Store>) {
    let task = create(&*store, "alpha", "P").await;
    let job = task.state.job.expect("the first job");
    let first = store.acquire_lease_for_job("merge:alpha", task.id, job, 60_000, T0).await.unwrap();
    let Some(LeaseOutcome::Acquired { token }) = first else { panic!("the active job takes a free lease: {first:?}") };
    assert_eq!(store.lease("merge:alpha").await.unwrap().unwrap().holder, task_holder(task.id));
    assert_eq!(
        store.acquire_lease_for_job("merge:alpha", task.id, job, 60_000, T0 + 10).await.unwrap(),
        Some(LeaseOutcome::Acquired { token }),
        "the active job renews its own lease"
    );
    assert_eq!(store.lease("merge:alpha").await.unwrap().unwrap().expires_at_ms, T0 + 10 + 60_000);

    // Another task's active job finds the lease busy, as a plain acquire does.
    let other = create(&*store, "alpha", "Q").await;
    let other_job = other.state.job.expect("its first job");
    assert_eq!(
        store.acquire_lease_for_job("merge:alpha", other.id, other_job, 60_000, T0 + 20).await.unwrap(),
        Some(LeaseOutcome::Busy { holder: task_holder(task.id) })
    );

    // A job that is not the task's active one takes nothing, even a free lease.
    store.release_lease("merge:alpha", &task_holder(task.id)).await.unwrap();
    assert_eq!(
        store.acquire_lease_for_job("merge:alpha", task.id, JobId(job.0 + 1_000), 60_000, T0 + 30).await.unwrap(),
        None
    );
    assert_eq!(
        store.acquire_lease_for_job("merge:alpha", TaskId(9_999_999), job, 60_000, T0 + 30).await.unwrap(),
        None
    );
    assert!(store.lease("merge:alpha").await.unwrap().is_none(), "nothing was taken");

    // The task moved on (blocked, stopped, advanced): its old job's late acquire takes nothing.
    let now = reload(&*store, task.id).await;
    store.advance(step(&now, "architecture", None, Transition::default())).await.unwrap();
    assert_eq!(store.acquire_lease_for_job("merge:alpha", task.id, job, 60_000, T0 + 40).await.unwrap(), None);
    assert!(store.lease("merge:alpha").await.unwrap().is_none(), "a stale job holds no lease");

    // The other task's active job takes the free lease, with a larger token.
    let taken = store.acquire_lease_for_job("merge:alpha", other.id, other_job, 60_000, T0 + 50).await.unwrap();
    assert!(matches!(taken, Some(LeaseOutcome::Acquired { token: later }) if later > token), "{taken:?}");
}

/// A landing of `task` (fenced on `job`) from `expect` to `change` under `lease`, for a minute.
fn land(task: TaskId, job: Option<JobId>, expect: &QueueExpect, change: &QueueChange, lease: &str) -> QueueLanding {
    QueueLanding { task, job, expect: expect.clone(), change: change.clone(), lease: lease.into(), ttl_ms: 60_000 }
}

/// The merge queue's own landing: the lease and the entry's move to landing commit together, or
/// nothing does — no lease is ever held for a change that is not landing.
pub async fn suite_queue_land(store: Arc<dyn Store>) {
    let task = park(&*store, "alpha").await;
    let waiting = store.queue_entry(task).await.unwrap().expect("the parked task is queued");
    let green = QueueChange {
        state: QueueState::Green,
        base: Some("b1".into()),
        head: Some("h1".into()),
        ..QueueChange::from(&waiting)
    };
    assert!(store.queue_update(task, &QueueExpect::of(&waiting), &green, T0 + 1).await.unwrap());
    let green = store.queue_entry(task).await.unwrap().unwrap();
    let landing = QueueChange { state: QueueState::Landing, head: Some("m1".into()), ..QueueChange::from(&green) };

    // Another holder has the lease: busy, and the entry stays green.
    assert!(matches!(
        store.acquire_lease("merge:alpha", "task:other", 60_000, T0).await.unwrap(),
        LeaseOutcome::Acquired { .. }
    ));
    let busy =
        store.queue_land(&land(task, None, &QueueExpect::of(&green), &landing, "merge:alpha"), T0 + 2).await.unwrap();
    assert_eq!(busy, Some(LeaseOutcome::Busy { holder: "task:other".into() }));
    assert_eq!(
        store.queue_entry(task).await.unwrap().unwrap().state,
        QueueState::Green,
        "a busy lease moved the entry"
    );
    assert!(store.release_lease("merge:alpha", "task:other").await.unwrap());

    // The entry moved since it was read (built again on another base): nothing is taken, even a
    // free lease, and the entry is left as it is.
    let stale = QueueExpect { state: QueueState::Green, base: Some("b0".into()) };
    assert_eq!(store.queue_land(&land(task, None, &stale, &landing, "merge:alpha"), T0 + 3).await.unwrap(), None);
    assert!(store.lease("merge:alpha").await.unwrap().is_none(), "a lease was taken for a change not landing");
    let entry = store.queue_entry(task).await.unwrap().unwrap();
    assert_eq!((entry.state, entry.base.as_deref()), (QueueState::Green, Some("b1")));
    // Nor for a task with no entry.
    assert_eq!(
        store.queue_land(&land(TaskId(9_999_999), None, &stale, &landing, "merge:alpha"), T0 + 3).await.unwrap(),
        None
    );
    assert!(store.lease("merge:alpha").await.unwrap().is_none());

    // As read: the lease is the task's and the entry is landing on the new head, together.
    let landed =
        store.queue_land(&land(task, None, &QueueExpect::of(&green), &landing, "merge:alpha"), T0 + 4).await.unwrap();
    let Some(LeaseOutcome::Acquired { token }) = landed else { panic!("a green change lands: {landed:?}") };
    let lease = store.lease("merge:alpha").await.unwrap().expect("the lease is held");
    assert_eq!((lease.holder, lease.token, lease.expires_at_ms), (task_holder(task), token, T0 + 4 + 60_000));
    let entry = store.queue_entry(task).await.unwrap().unwrap();
    assert_eq!((entry.state, entry.head.as_deref()), (QueueState::Landing, Some("m1")));

    // A second landing of the same read finds the entry moved: nothing changes, the lease stays.
    let again =
        store.queue_land(&land(task, None, &QueueExpect::of(&green), &landing, "merge:alpha"), T0 + 5).await.unwrap();
    assert_eq!(again, None);
    let lease = store.lease("merge:alpha").await.unwrap().expect("the lease is still held");
    assert_eq!((lease.token, lease.expires_at_ms), (token, T0 + 4 + 60_000), "a refused landing renewed the lease");

    // The merge gate landing its own change: only while its job is the task's active one.
    let gated = park(&*store, "alpha").await;
    let waiting = store.queue_entry(gated).await.unwrap().unwrap();
    let green = QueueChange { state: QueueState::Green, base: Some("b2".into()), ..QueueChange::from(&waiting) };
    assert!(store.queue_update(gated, &QueueExpect::of(&waiting), &green, T0 + 6).await.unwrap());
    let green = store.queue_entry(gated).await.unwrap().unwrap();
    let landing = QueueChange { state: QueueState::Landing, head: Some("m2".into()), ..QueueChange::from(&green) };
    let parked = QueueExpect::of(&green);
    // Parked, the task runs no job: a job's landing takes nothing.
    let no_job = land(gated, Some(JobId(9_999_999)), &parked, &landing, "merge:beta");
    assert_eq!(store.queue_land(&no_job, T0 + 7).await.unwrap(), None);
    // Woken to its merge gate's job: another job takes nothing, the active one lands.
    let woken = reload(&*store, gated).await;
    store.advance(step(&woken, "merge", None, enqueue("merge", 0))).await.unwrap();
    let job = reload(&*store, gated).await.state.job.expect("the woken task's job");
    let stale = land(gated, Some(JobId(job.0 + 1_000)), &parked, &landing, "merge:beta");
    assert_eq!(store.queue_land(&stale, T0 + 8).await.unwrap(), None);
    assert!(store.lease("merge:beta").await.unwrap().is_none(), "a job not active took the lease");
    assert_eq!(store.queue_entry(gated).await.unwrap().unwrap().state, QueueState::Green);
    let own = store.queue_land(&land(gated, Some(job), &parked, &landing, "merge:beta"), T0 + 9).await.unwrap();
    assert!(matches!(own, Some(LeaseOutcome::Acquired { .. })), "the active job lands: {own:?}");
    assert_eq!(store.lease("merge:beta").await.unwrap().unwrap().holder, task_holder(gated));
    assert_eq!(store.queue_entry(gated).await.unwrap().unwrap().state, QueueState::Landing);
}

/// Eight holders racing for one free lease: exactly one gets it.
pub async fn suite_lease_race(store: Arc<dyn Store>) {
    let barrier = Arc::new(Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                (n, store.acquire_lease("merge:alpha", &format!("holder-{n}"), 60_000, T0).await.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        let (n, outcome) = racer.await.unwrap();
        if matches!(outcome, LeaseOutcome::Acquired { .. }) {
            winners.push(n);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(store.lease("merge:alpha").await.unwrap().unwrap().holder, format!("holder-{}", winners[0]));
}

/// SPEC §5.1: the coverage baseline only rises by compare-and-set; an override sets it either way.
pub async fn suite_coverage_baseline(store: Arc<dyn Store>) {
    assert_eq!(store.coverage_baseline("alpha").await.unwrap(), None);
    assert!(store.raise_coverage_baseline("alpha", 70.0, "task:1", "A-001", T0).await.unwrap(), "first raise inserts");
    assert!(!store.raise_coverage_baseline("alpha", 65.0, "task:2", "A-002", T0 + 1).await.unwrap(), "never down");
    assert!(!store.raise_coverage_baseline("alpha", 70.0, "task:2", "A-002", T0 + 1).await.unwrap(), "equal: no move");
    let kept = store.coverage_baseline("alpha").await.unwrap().unwrap();
    assert_eq!(
        (kept.pct, kept.set_by.as_str(), kept.reason.as_str(), kept.updated_at_ms),
        (70.0, "task:1", "A-001", T0)
    );
    assert!(store.raise_coverage_baseline("alpha", 72.5, "task:3", "A-003", T0 + 2).await.unwrap());
    assert_eq!(store.coverage_baseline("alpha").await.unwrap().unwrap().pct, 72.5);
    // The override may lower it; a later raise compares with the overridden value.
    store.set_coverage_baseline("alpha", 50.0, "api:admin", "tests removed on purpose", T0 + 3).await.unwrap();
    let set = store.coverage_baseline("alpha").await.unwrap().unwrap();
    assert_eq!((set.pct, set.set_by.as_str(), set.reason.as_str()), (50.0, "api:admin", "tests removed on purpose"));
    assert!(store.raise_coverage_baseline("alpha", 55.0, "task:4", "A-004", T0 + 4).await.unwrap());
    store.set_coverage_baseline("beta", 10.0, "cli:me", "start", T0).await.unwrap();
    let all: Vec<(String, f64)> =
        store.coverage_baselines().await.unwrap().into_iter().map(|b| (b.repo, b.pct)).collect();
    assert_eq!(all, vec![("alpha".to_string(), 55.0), ("beta".to_string(), 10.0)]);
}

/// Concurrent raises of one repository's coverage baseline keep the highest, whatever the order.
pub async fn suite_coverage_baseline_race(store: Arc<dyn Store>) {
    let barrier = Arc::new(Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                // 40, 45, … 75 in a scrambled order: the last writer is rarely the highest.
                let pct = 40.0 + ((n * 37) % 8) as f64 * 5.0;
                store.raise_coverage_baseline("alpha", pct, &format!("task:{n}"), "race", T0).await.unwrap();
                pct
            })
        })
        .collect();
    let mut highest = 0.0f64;
    for racer in racers {
        highest = highest.max(racer.await.unwrap());
    }
    assert_eq!(store.coverage_baseline("alpha").await.unwrap().unwrap().pct, highest);
}

/// SPEC §6.4: one open freeze per repository, who froze and who unfroze it recorded, the
/// incident and revert linked once, closed freezes kept as history; a monitored task is due at
/// its next health check.
pub async fn suite_repo_freezes(store: Arc<dyn Store>) {
    assert!(store.repo_freezes().await.unwrap().is_empty());
    assert_eq!(store.unfreeze_repo("alpha", "api:ann", T0).await.unwrap(), None, "nothing to unfreeze");
    let degraded = create(&*store, "alpha", "A").await;
    let new = |repo: &str, task: Option<TaskId>| NewFreeze {
        repo: repo.into(),
        task,
        frozen_by: "monitor".into(),
        reason: "the deploy of A-001 degraded".into(),
    };
    let (first, opened) = store.freeze_repo(&new("alpha", Some(degraded.id)), T0).await.unwrap();
    assert!(opened);
    assert_eq!((first.repo.as_str(), first.task, first.frozen_at_ms), ("alpha", Some(degraded.id), T0));
    assert_eq!((first.incident, first.revert, first.unfrozen_by.clone()), (None, None, None));
    let (again, opened) = store.freeze_repo(&new("alpha", None), T0 + 1).await.unwrap();
    assert!(!opened, "a frozen repository is not frozen twice");
    assert_eq!(again, first);
    store.freeze_repo(&new("beta", None), T0 + 2).await.unwrap();
    let repos = |freezes: Vec<RepoFreeze>| freezes.into_iter().map(|f| f.repo).collect::<Vec<_>>();
    assert_eq!(repos(store.repo_freezes().await.unwrap()), vec!["alpha", "beta"]);

    let incident = create(&*store, "alpha", "A").await;
    let revert = create(&*store, "alpha", "A").await;
    store.link_freeze(first.id, Some(incident.id), None).await.unwrap();
    store.link_freeze(first.id, Some(revert.id), Some(revert.id)).await.unwrap();
    let linked = store.repo_freezes().await.unwrap().remove(0);
    assert_eq!((linked.incident, linked.revert), (Some(incident.id), Some(revert.id)), "a stored link stays");

    let closed = store.unfreeze_repo("alpha", "api:ann", T0 + 5).await.unwrap().unwrap();
    assert_eq!(
        (closed.id, closed.unfrozen_by.as_deref(), closed.unfrozen_at_ms),
        (first.id, Some("api:ann"), Some(T0 + 5))
    );
    assert_eq!(repos(store.repo_freezes().await.unwrap()), vec!["beta"]);
    assert_eq!(store.unfreeze_repo("alpha", "api:ann", T0 + 6).await.unwrap(), None, "already unfrozen");
    let (reopened, opened) = store.freeze_repo(&new("alpha", None), T0 + 7).await.unwrap();
    assert!(opened && reopened.id != first.id, "a new freeze after the unfreeze");

    // A deployed task in its monitor window is due at its next check.
    let mut advance = step(&degraded, "analysis", None, Transition { cancel_jobs: true, ..Transition::default() });
    advance.next.hold = Hold::Monitoring { until_ms: T0 + 600, next_check_ms: T0 + 30, failures: 0, checks: 0 };
    store.advance(advance).await.unwrap();
    assert_eq!(store.next_due_ms().await.unwrap(), Some(T0 + 30));
    assert_eq!(store.due_holds(T0 + 30, 10).await.unwrap(), vec![degraded.id]);
}

/// Concurrent freezes of one repository open one freeze; every caller sees that one.
pub async fn suite_repo_freeze_race(store: Arc<dyn Store>) {
    let barrier = Arc::new(Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let new =
                    NewFreeze { repo: "alpha".into(), task: None, frozen_by: format!("m{n}"), reason: "race".into() };
                store.freeze_repo(&new, T0).await.unwrap()
            })
        })
        .collect();
    let mut opened = 0;
    let mut ids = std::collections::BTreeSet::new();
    for racer in racers {
        let (freeze, new) = racer.await.unwrap();
        opened += usize::from(new);
        ids.insert(freeze.id);
    }
    assert_eq!((opened, ids.len()), (1, 1));
    assert_eq!(store.repo_freezes().await.unwrap().len(), 1);
}

/// SPEC §10: lessons are upserted by slug (a repeat within the window only moves `updated_at`),
/// listed by the scope they apply to, edited, and counted when injected.
pub async fn suite_lessons(store: Arc<dyn Store>) {
    const HOUR: i64 = 3_600_000;
    let gate = NewLesson {
        slug: "gate-review-alpha-implement".into(),
        title: "review rejected".into(),
        body: "missing tests".into(),
        source: "auto".into(),
        repo: Some("alpha".into()),
        stage: Some("implement".into()),
        tags: vec!["gate".into(), "review".into()],
        task: Some("A-001".into()),
        proposed: false,
    };
    let (first, write) = store.record_lesson(&gate, HOUR, T0).await.unwrap();
    assert_eq!(write, LessonWrite::Created);
    assert_eq!((first.hits, first.created_at_ms, first.updated_at_ms), (0, T0, T0));
    assert_eq!(first.tags, vec!["gate".to_string(), "review".to_string()]);
    // Within the window: the same row, only `updated_at` moved, the text kept.
    let again = NewLesson { body: "a different reason".into(), ..gate.clone() };
    let (dup, write) = store.record_lesson(&again, HOUR, T0 + 1_000).await.unwrap();
    assert_eq!(write, LessonWrite::Duplicate);
    assert_eq!(
        (dup.id, dup.body.as_str(), dup.updated_at_ms, dup.created_at_ms),
        (first.id, "missing tests", T0 + 1_000, T0)
    );
    // Past the window: refreshed in place.
    let (fresh, write) = store.record_lesson(&again, HOUR, T0 + 1_000 + HOUR).await.unwrap();
    assert_eq!(write, LessonWrite::Refreshed);
    assert_eq!((fresh.id, fresh.body.as_str()), (first.id, "a different reason"));

    let human = NewLesson {
        slug: "human-1".into(),
        title: "run the linter".into(),
        body: "every repository".into(),
        source: "human".into(),
        ..NewLesson::default()
    };
    let (everywhere, _) = store.record_lesson(&human, HOUR, T0 + 2 * HOUR).await.unwrap();
    let beta = NewLesson { slug: "beta-only".into(), repo: Some("beta".into()), ..human.clone() };
    let (beta, _) = store.record_lesson(&beta, HOUR, T0 + 3 * HOUR).await.unwrap();
    let ids = |filter: LessonFilter| {
        let store = store.clone();
        async move { store.lessons(&filter).await.unwrap().into_iter().map(|l| l.id).collect::<Vec<_>>() }
    };
    assert_eq!(ids(LessonFilter::default()).await, vec![beta.id, everywhere.id, first.id], "newest first");
    let alpha_implement =
        LessonFilter { repo: Some("alpha".into()), stage: Some("implement".into()), ..LessonFilter::default() };
    assert_eq!(ids(alpha_implement.clone()).await, vec![everywhere.id, first.id]);
    let alpha_review =
        LessonFilter { repo: Some("alpha".into()), stage: Some("review".into()), ..LessonFilter::default() };
    assert_eq!(ids(alpha_review).await, vec![everywhere.id]);

    store.hit_lessons(&[first.id, everywhere.id, 9_999], T0 + 5 * HOUR).await.unwrap();
    store.hit_lessons(&[first.id], T0 + 6 * HOUR).await.unwrap();
    let hit = store.lesson(first.id).await.unwrap().unwrap();
    assert_eq!((hit.hits, hit.last_hit_at_ms), (2, Some(T0 + 6 * HOUR)));

    let patch = LessonPatch { body: Some("write the tests first".into()), stage: Some(None), ..LessonPatch::default() };
    let edited = store.update_lesson(first.id, &patch, T0 + 7 * HOUR).await.unwrap();
    assert_eq!((edited.body.as_str(), edited.stage.as_deref(), edited.hits), ("write the tests first", None, 2));
    assert_eq!(store.lesson(first.id).await.unwrap().unwrap(), edited);
    assert!(matches!(store.update_lesson(9_999, &patch, T0).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.lesson(9_999).await.unwrap(), None);
}

/// SPEC §3, §10: a retro's proposals. A proposed lesson is listed by status (only `active` ones
/// reach prompts) and becomes active or rejected by a human's patch, a refresh never changing its
/// status; a task proposal is kept once per (task, title), decided once (a second accept is a
/// conflict), released when its task could not be created, and linked to its task once.
pub async fn suite_retro_proposals(store: Arc<dyn Store>) {
    const HOUR: i64 = 3_600_000;
    let proposed = NewLesson {
        slug: "agent-a-001-pin-versions".into(),
        title: "pin versions".into(),
        body: "the build broke on a new minor".into(),
        source: "agent".into(),
        repo: Some("alpha".into()),
        task: Some("A-001".into()),
        proposed: true,
        ..NewLesson::default()
    };
    let (lesson, _) = store.record_lesson(&proposed, HOUR, T0).await.unwrap();
    assert_eq!(lesson.status, "proposed");
    let human = NewLesson { slug: "human-2".into(), source: "human".into(), ..proposed.clone() };
    let human = NewLesson { proposed: false, ..human };
    let (active, _) = store.record_lesson(&human, HOUR, T0 + 1).await.unwrap();
    assert_eq!(active.status, "active");
    let only_active =
        LessonFilter { repo: Some("alpha".into()), status: Some("active".into()), ..LessonFilter::default() };
    let ids = |filter: LessonFilter| {
        let store = store.clone();
        async move { store.lessons(&filter).await.unwrap().into_iter().map(|l| l.id).collect::<Vec<_>>() }
    };
    assert_eq!(ids(only_active.clone()).await, vec![active.id], "a proposed lesson is not active");
    let all = LessonFilter { repo: Some("alpha".into()), ..LessonFilter::default() };
    assert_eq!(ids(all).await, vec![active.id, lesson.id]);
    // A retried retro refreshes the row past the window but never touches its status.
    let (again, _) = store.record_lesson(&proposed, HOUR, T0 + 2 * HOUR).await.unwrap();
    assert_eq!((again.id, again.status.as_str()), (lesson.id, "proposed"));
    let accept = LessonPatch { status: Some("active".into()), ..LessonPatch::default() };
    let accepted = store.update_lesson(lesson.id, &accept, T0 + 3 * HOUR).await.unwrap();
    assert_eq!(accepted.status, "active");
    assert_eq!(store.lesson(lesson.id).await.unwrap().unwrap().status, "active");
    assert_eq!(ids(only_active).await, vec![accepted.id, active.id]);
    let (_, _) = store.record_lesson(&proposed, HOUR, T0 + 5 * HOUR).await.unwrap();
    assert_eq!(store.lesson(lesson.id).await.unwrap().unwrap().status, "active", "an accepted lesson stays active");

    let from = create(store.as_ref(), "alpha", "A").await;
    let next = NewTaskProposal {
        from_task: from.id,
        repo: "alpha".into(),
        title: "add a cache".into(),
        body: "the lookups repeat".into(),
    };
    let (first, created) = store.propose_task(&next, T0).await.unwrap();
    assert!(created);
    assert_eq!((first.status.as_str(), first.created_task, first.decided_by.clone()), ("proposed", None, None));
    let (same, created) =
        store.propose_task(&NewTaskProposal { body: "other".into(), ..next.clone() }, T0 + 1).await.unwrap();
    assert!(!created, "one proposal per task and title");
    assert_eq!((same.id, same.body.as_str()), (first.id, "the lookups repeat"));
    let other = NewTaskProposal { title: "drop the flag".into(), ..next.clone() };
    let (second, _) = store.propose_task(&other, T0 + 2).await.unwrap();
    assert_eq!(store.task_proposal(first.id).await.unwrap().unwrap(), first);
    assert_eq!(store.task_proposal(9_999).await.unwrap(), None);
    let listed = |filter: ProposalFilter| {
        let store = store.clone();
        async move { store.task_proposals(&filter).await.unwrap().into_iter().map(|p| p.id).collect::<Vec<_>>() }
    };
    assert_eq!(listed(ProposalFilter::default()).await, vec![first.id, second.id], "oldest first");

    let accepted = store.decide_task_proposal(first.id, "accepted", "ann", T0 + 10).await.unwrap();
    assert_eq!(
        (accepted.status.as_str(), accepted.decided_by.as_deref(), accepted.decided_at_ms),
        ("accepted", Some("ann"), Some(T0 + 10))
    );
    let twice = store.decide_task_proposal(first.id, "accepted", "bob", T0 + 11).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "a second accept is refused: {twice:?}");
    // The task could not be created: the accept is released, then made again.
    let released = store.decide_task_proposal(first.id, "proposed", "ann", T0 + 12).await.unwrap();
    assert_eq!((released.status.as_str(), released.decided_by), ("proposed", None));
    store.decide_task_proposal(first.id, "accepted", "ann", T0 + 13).await.unwrap();
    let task = create(store.as_ref(), "alpha", "A").await;
    let linked = store.link_task_proposal(first.id, task.id).await.unwrap();
    assert_eq!(linked.created_task, Some(task.id));
    assert!(matches!(store.link_task_proposal(first.id, task.id).await, Err(StoreError::Conflict(_))));
    assert!(
        matches!(store.decide_task_proposal(first.id, "proposed", "ann", T0 + 14).await, Err(StoreError::Conflict(_))),
        "a linked accept is final"
    );
    let rejected = store.decide_task_proposal(second.id, "rejected", "ann", T0 + 15).await.unwrap();
    assert_eq!(rejected.status, "rejected");
    assert!(matches!(store.link_task_proposal(second.id, task.id).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.decide_task_proposal(9_999, "accepted", "ann", T0).await, Err(StoreError::NotFound(_))));
    let accepted_only = ProposalFilter { status: Some("accepted".into()), from_task: Some(from.id) };
    assert_eq!(listed(accepted_only).await, vec![first.id]);
    assert_eq!(
        listed(ProposalFilter { from_task: Some(task.id), ..ProposalFilter::default() }).await,
        Vec::<i64>::new()
    );
}

// ---------------------------------------------------------------- suites: inbox

/// SPEC §4.5: an input replayed with the same dedup key is `Duplicate` and changes nothing.
pub async fn suite_inbox_dedup(store: Arc<dyn Store>) {
    let task = create(&*store, "alpha", "P").await;
    assert!(!store.inbox_seen("delivery-1").await.unwrap());
    let mut approve = step(&task, "analysis", None, Transition::default());
    approve.next.hold = Hold::AwaitingApproval;
    approve.inbox = Some(inbox("delivery-1"));
    store.advance(approve).await.unwrap();
    assert!(store.inbox_seen("delivery-1").await.unwrap());
    let after = reload(&*store, task.id).await;
    let events = events_of(&*store, task.id).await.len();
    let jobs = store.jobs_for_task(task.id).await.unwrap().len();

    // The replay reads the new version, so only the dedup key can stop it.
    let mut replay = step(&after, "design", None, enqueue("design", 0));
    replay.inbox = Some(inbox("delivery-1"));
    assert!(is_duplicate(&store.advance(replay).await), "a replayed delivery is a duplicate");
    let unchanged = reload(&*store, task.id).await;
    assert_eq!((unchanged.version, unchanged.state), (after.version, after.state.clone()));
    assert_eq!(events_of(&*store, task.id).await.len(), events);
    assert_eq!(store.jobs_for_task(task.id).await.unwrap().len(), jobs);

    // A suppressed input is remembered too, and a replay of it is a duplicate that adds no event.
    let mut why = note(task.id, "suppressed", "stale approval");
    store.record_suppressed(task.id, Some(inbox("delivery-2")), why.clone()).await.unwrap();
    assert!(store.inbox_seen("delivery-2").await.unwrap());
    assert_eq!(events_of(&*store, task.id).await.len(), events + 1);
    why.message = "replayed".into();
    assert!(is_duplicate(&store.record_suppressed(task.id, Some(inbox("delivery-2")), why.clone()).await));
    assert!(is_duplicate(&store.record_suppressed(task.id, Some(inbox("delivery-1")), why).await));
    assert_eq!(events_of(&*store, task.id).await.len(), events + 1, "duplicates add no event");

    let mut after_suppressed = step(&after, "design", None, enqueue("design", 0));
    after_suppressed.inbox = Some(inbox("delivery-2"));
    assert!(is_duplicate(&store.advance(after_suppressed).await), "a key seen as suppressed is a duplicate too");
    assert_eq!(reload(&*store, task.id).await.version, after.version);

    // Without a dedup key, a suppression is just a timeline line.
    store.record_suppressed(task.id, None, note(task.id, "suppressed", "no key")).await.unwrap();
    store.record_suppressed(task.id, None, note(task.id, "suppressed", "no key")).await.unwrap();
    assert_eq!(events_of(&*store, task.id).await.len(), events + 3);
    assert!(!store.inbox_seen("delivery-3").await.unwrap());
}

// ---------------------------------------------------------------- suites: jobs

/// `cancel_jobs` cancels the task's queued and running jobs, leaves its finished ones, and no other task's.
pub async fn suite_cancel_jobs(store: Arc<dyn Store>) {
    let task = create(&*store, "alpha", "P").await;
    let done = claim(&*store, T0).await.id;
    let task = reload(&*store, task.id).await;
    store.advance(step(&task, "design", finished(done, json!("ok")), enqueue("design", 0))).await.unwrap();
    let task = reload(&*store, task.id).await;
    let running = claim(&*store, T0 + 1).await.id;
    let task = reload(&*store, task.id).await;
    store.advance(step(&task, "review", None, enqueue("review", 0))).await.unwrap();
    let task = reload(&*store, task.id).await;
    let queued = task.state.job.unwrap();

    let other = create(&*store, "alpha", "P").await;
    // At T0 only the other task's job is available (this task's `review` job is at T0 + 1).
    let other_running = claim(&*store, T0).await.id;
    assert_eq!(Some(other_running), other.state.job);
    let bystander = create(&*store, "alpha", "P").await;
    let other_queued = bystander.state.job.unwrap();

    let cancel = Transition { cancel_jobs: true, ..Transition::default() };
    assert_eq!(store.advance(step(&task, "cancelled", None, cancel)).await.unwrap(), None);
    let status = |job: JobId| {
        let store = store.clone();
        async move { job_of(&*store, job).await.status }
    };
    assert_eq!(status(done).await, JobStatus::Done);
    assert_eq!(status(running).await, JobStatus::Cancelled);
    assert_eq!(status(queued).await, JobStatus::Cancelled);
    assert_eq!(job_of(&*store, queued).await.finished_at_ms, Some(T0 + 1));
    assert_eq!(status(other_running).await, JobStatus::Running);
    assert_eq!(status(other_queued).await, JobStatus::Queued);
    let task = reload(&*store, task.id).await;
    assert_eq!((task.state.stage.as_str(), task.state.job), ("cancelled", None));
}

/// `requeue_job` only moves running jobs; `close_job` only ends queued or running ones.
pub async fn suite_requeue_and_close(store: Arc<dyn Store>) {
    let a = create(&*store, "alpha", "P").await;
    let job = a.state.job.unwrap();
    assert!(!store.requeue_job(job, None, T0).await.unwrap(), "a queued job is not requeued");
    claim(&*store, T0).await;
    store.set_job_process(job, Some(100), Some(101)).await.unwrap();
    let running = job_of(&*store, job).await;
    assert_eq!((running.pid, running.pgid), (Some(100), Some(101)));
    // A launch recorded in one call: the job's process and start time, and the run's pid; a
    // launch without a start time keeps the one recorded.
    let run = store
        .insert_agent_run(NewAgentRun {
            job,
            task: a.id,
            stage: "analysis".into(),
            adapter: "claude".into(),
            model: None,
            pid: None,
            started_at_ms: T0,
            log_path: "logs/a.log".into(),
        })
        .await
        .unwrap();
    let claimant = running.owner.clone().expect("a claimed job names its claimant");
    assert!(store.record_launch(job, &claimant, run, 200, 201, Some(7)).await.unwrap());
    let launched = job_of(&*store, job).await;
    assert_eq!((launched.pid, launched.pgid, launched.proc_start), (Some(200), Some(201), Some(7)));
    assert!(store.record_launch(job, &claimant, run, 100, 101, None).await.unwrap());
    let launched = job_of(&*store, job).await;
    assert_eq!((launched.pid, launched.pgid, launched.proc_start), (Some(100), Some(101), Some(7)));
    let runs = store.agent_runs(a.id).await.unwrap();
    assert_eq!(runs.iter().find(|r| r.id == run).and_then(|r| r.pid), Some(100));
    // A launch under another claim (an instance that stood still while the job was taken over)
    // leaves the job's process as its claimant recorded it; the launching run still names its pid.
    assert!(!store.record_launch(job, "someone-else", run, 300, 301, Some(9)).await.unwrap());
    let kept = job_of(&*store, job).await;
    assert_eq!((kept.pid, kept.pgid, kept.proc_start), (Some(100), Some(101), Some(7)));
    let runs = store.agent_runs(a.id).await.unwrap();
    assert_eq!(runs.iter().find(|r| r.id == run).and_then(|r| r.pid), Some(300));
    // A running job is adopted only under the claim it was read with: of two instances adopting
    // the same read, one watches it.
    assert!(!store.adopt_job(job, Some("someone-else"), "adopter").await.unwrap(), "not under another claim");
    assert!(!store.adopt_job(job, None, "adopter").await.unwrap(), "not as if it had no claim");
    assert_eq!(job_of(&*store, job).await.owner.as_deref(), Some(claimant.as_str()));
    assert!(store.adopt_job(job, Some(&claimant), "adopter").await.unwrap());
    assert!(!store.adopt_job(job, Some(&claimant), "late-adopter").await.unwrap(), "the claim it read is gone");
    let adopted = job_of(&*store, job).await;
    assert_eq!((adopted.status, adopted.owner.as_deref()), (JobStatus::Running, Some("adopter")));

    assert!(
        !store.requeue_job(job, Some(&claimant), T0 + 5_000).await.unwrap(),
        "not under a claim another instance's adoption replaced"
    );
    assert_eq!(job_of(&*store, job).await.status, JobStatus::Running);
    assert!(store.requeue_job(job, Some("adopter"), T0 + 5_000).await.unwrap());
    let requeued = job_of(&*store, job).await;
    assert_eq!(
        (requeued.status, requeued.owner, requeued.pid, requeued.pgid, requeued.available_at_ms),
        (JobStatus::Queued, None, None, None, T0 + 5_000)
    );
    assert!(!store.requeue_job(job, None, T0).await.unwrap(), "requeued once only");
    assert!(
        !store.record_launch(job, &claimant, run, 400, 401, None).await.unwrap(),
        "a requeued job takes no launch from its former claimant"
    );
    assert_eq!(job_of(&*store, job).await.pid, None);
    assert!(!store.adopt_job(job, None, "adopter").await.unwrap(), "a queued job is not adopted");
    assert!(store.claim_job(&claim_at("w", T0 + 4_999)).await.unwrap().is_none());
    assert_eq!(store.claim_job(&claim_at("again", T0 + 5_000)).await.unwrap().unwrap().id, job);
    // A close under a claim: not the former claimant's (the job was requeued and claimed again).
    assert!(
        !store.close_claimed_job(job, &claimant, JobStatus::Cancelled, json!("late"), T0 + 50).await.unwrap(),
        "the former claimant does not end the new claim's job"
    );
    assert_eq!(job_of(&*store, job).await.status, JobStatus::Running);

    assert!(
        store.close_claimed_job(job, "again", JobStatus::Failed, json!({ "stale": true }), T0 + 50).await.unwrap(),
        "running → closed under its claim"
    );
    let closed = job_of(&*store, job).await;
    assert_eq!((closed.status, closed.result), (JobStatus::Failed, Some(json!({ "stale": true }))));
    assert!(closed.finished_at_ms.is_some());
    assert!(
        !store.close_job(job, JobStatus::Cancelled, json!(null), T0 + 50).await.unwrap(),
        "a failed job stays failed"
    );
    assert!(!store.requeue_job(job, Some("again"), T0).await.unwrap(), "a failed job is not requeued");
    assert_eq!(job_of(&*store, job).await.status, JobStatus::Failed);

    let b = create(&*store, "alpha", "P").await;
    let queued = b.state.job.unwrap();
    assert!(store.close_job(queued, JobStatus::Cancelled, json!("stale"), T0 + 50).await.unwrap(), "queued → closed");
    assert_eq!(job_of(&*store, queued).await.status, JobStatus::Cancelled);
    assert!(!store.close_job(queued, JobStatus::Failed, json!("again"), T0 + 50).await.unwrap());
    let d = create(&*store, "alpha", "P").await;
    let waiting = d.state.job.unwrap();
    assert!(
        !store.close_claimed_job(waiting, "worker", JobStatus::Cancelled, json!(null), T0 + 50).await.unwrap(),
        "a queued job runs under no claim"
    );
    assert_eq!(job_of(&*store, waiting).await.status, JobStatus::Queued);
    assert!(store.close_job(waiting, JobStatus::Cancelled, json!(null), T0 + 50).await.unwrap());
    assert!(!store.requeue_job(queued, None, T0).await.unwrap(), "a cancelled job is not requeued");

    let c = create(&*store, "alpha", "P").await;
    let done = claim(&*store, T0 + 5_000).await.id;
    assert_eq!(Some(done), c.state.job);
    let c = reload(&*store, c.id).await;
    store.advance(step(&c, "design", finished(done, json!("ok")), Transition::default())).await.unwrap();
    assert!(!store.close_job(done, JobStatus::Failed, json!("late"), T0 + 50).await.unwrap(), "a done job stays done");
    assert!(!store.requeue_job(done, Some("worker"), T0).await.unwrap(), "a done job is not requeued");
    let kept = job_of(&*store, done).await;
    assert_eq!((kept.status, kept.result), (JobStatus::Done, Some(json!("ok"))));
}

/// `take_over_job` requeues a running job only under the claim of the owner it names, and
/// records its event in the same transaction; when the guard fails nothing is written. A job
/// finish naming its claim ends the job only under that claim.
pub async fn suite_take_over(store: Arc<dyn Store>) {
    let a = create(&*store, "alpha", "P").await;
    let job = a.state.job.unwrap();
    let event = |message: &str| NewEvent {
        task: a.id,
        at_ms: T0 + 10,
        kind: "instance_dead".into(),
        stage: "analysis".into(),
        message: message.into(),
        detail: json!({ "job": job.0 }),
    };
    let dead_events = || async {
        let events = store.events(Some(a.id), 0, 1_000).await.unwrap();
        events.into_iter().filter(|e| e.kind == "instance_dead").map(|e| e.message).collect::<Vec<_>>()
    };
    assert!(!store.take_over_job(job, "dead", T0, event("queued")).await.unwrap(), "a queued job is not taken over");
    let claimed = store.claim_job(&claim_at("dead", T0)).await.unwrap().expect("a claimable job");
    assert_eq!(claimed.id, job);
    assert!(
        !store.take_over_job(job, "someone-else", T0, event("wrong owner")).await.unwrap(),
        "a job running under another owner's claim is not taken over"
    );
    assert_eq!(job_of(&*store, job).await.status, JobStatus::Running);
    assert!(dead_events().await.is_empty(), "a refused take-over writes no event");

    assert!(store.take_over_job(job, "dead", T0 + 5_000, event("taken over")).await.unwrap());
    let requeued = job_of(&*store, job).await;
    assert_eq!((requeued.status, requeued.owner, requeued.available_at_ms), (JobStatus::Queued, None, T0 + 5_000));
    assert_eq!(dead_events().await, vec!["taken over".to_string()]);
    // Claimed again by a live instance: a second reaper that read the dead claim earlier takes
    // nothing away from it.
    let again = store.claim_job(&claim_at("alive", T0 + 5_000)).await.unwrap().expect("claimable again");
    assert_eq!(again.id, job);
    assert!(!store.take_over_job(job, "dead", T0 + 6_000, event("late")).await.unwrap());
    let kept = job_of(&*store, job).await;
    assert_eq!((kept.status, kept.owner.as_deref()), (JobStatus::Running, Some("alive")));
    assert_eq!(dead_events().await, vec!["taken over".to_string()]);

    // The dead claimant's late result, decided against a fresh read of the task, cannot end the
    // job under its new claim; the new claimant's can (and a finish naming no claim would).
    let finish = |claimant: &str| JobFinish {
        job,
        status: JobStatus::Done,
        result: json!({ "by": claimant }),
        claimed_by: Some(claimant.to_string()),
    };
    let fresh = reload(&*store, a.id).await;
    let late = store.advance(step(&fresh, "design", Some(finish("dead")), Transition::default())).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    let unchanged = reload(&*store, a.id).await;
    assert_eq!((unchanged.version, unchanged.state.stage.as_str()), (fresh.version, fresh.state.stage.as_str()));
    assert_eq!(job_of(&*store, job).await.status, JobStatus::Running);
    store.advance(step(&fresh, "design", Some(finish("alive")), Transition::default())).await.unwrap();
    let done = job_of(&*store, job).await;
    assert_eq!((done.status, done.result), (JobStatus::Done, Some(json!({ "by": "alive" }))));
}

// ---------------------------------------------------------------- suites: agent runs and usage

/// Agent runs keep their token figures and an unknown cost as `None`; usage sums them per group.
pub async fn suite_agent_runs_and_usage(store: Arc<dyn Store>) {
    let a = create(&*store, "alpha", "A").await;
    let b = create(&*store, "beta", "B").await;
    let succeeded = AgentStatus::Succeeded;
    let r1 = run(&*store, &a, "analysis", T0, report(succeeded.clone(), tokens(100, 10, 5, 1), Some(0.5), None)).await;
    let failed = AgentStatus::Failed { message: "rate limited".into() };
    run(&*store, &a, "design", T0 + 1_000, report(failed, tokens(200, 20, 0, 0), None, Some("model-b"))).await;
    run(&*store, &b, "analysis", T0 + DAY_MS, report(succeeded, tokens(50, 5, 0, 0), Some(0.25), None)).await;

    let runs = store.agent_runs(a.id).await.unwrap();
    assert_eq!(runs.len(), 2);
    let first = &runs[0];
    assert_eq!(first.id, r1);
    assert_eq!((first.job_id, first.task_id, first.stage.as_str()), (a.state.job.unwrap(), a.id, "analysis"));
    assert_eq!((first.status.as_deref(), first.error.as_deref(), first.exit_code), (Some("succeeded"), None, Some(0)));
    assert_eq!((first.model.as_deref(), first.cost_usd), (Some("model-a"), Some(0.5)), "no reported model: kept");
    assert_eq!(
        (first.input_tokens, first.output_tokens, first.cache_read_tokens, first.cache_write_tokens),
        (100, 10, 5, 1)
    );
    assert_eq!((first.reasoning_tokens, first.turns, first.session_id.as_deref()), (7, Some(3), Some("session-1")));
    assert_eq!((first.pid, first.started_at_ms, first.ended_at_ms), (Some(4242), T0, Some(T0 + 1_000)));
    let second = &runs[1];
    assert_eq!((second.status.as_deref(), second.error.as_deref()), (Some("failed"), Some("rate limited")));
    assert_eq!((second.model.as_deref(), second.cost_usd), (Some("model-b"), None), "unpriced stays None, not 0");

    let task = store.usage(UsageGroup::Task).await.unwrap();
    assert_eq!(task.len(), 2, "{task:?}");
    assert_usage(usage_row(&task, "alpha/A-001"), 2, 300, 30, 0.5, 1);
    assert_usage(usage_row(&task, "beta/B-001"), 1, 50, 5, 0.25, 0);
    let stage = store.usage(UsageGroup::Stage).await.unwrap();
    assert_eq!(stage.len(), 2, "{stage:?}");
    assert_usage(usage_row(&stage, "analysis"), 2, 150, 15, 0.75, 0);
    assert_usage(usage_row(&stage, "design"), 1, 200, 20, 0.0, 1);
    let analysis = usage_row(&stage, "analysis");
    assert_eq!((analysis.cache_read_tokens, analysis.cache_write_tokens), (5, 1));
    let model = store.usage(UsageGroup::Model).await.unwrap();
    assert_eq!(model.len(), 2, "{model:?}");
    assert_usage(usage_row(&model, "model-a"), 2, 150, 15, 0.75, 0);
    assert_usage(usage_row(&model, "model-b"), 1, 200, 20, 0.0, 1);
    let day = store.usage(UsageGroup::Day).await.unwrap();
    assert_eq!(day.len(), 2, "{day:?}");
    assert_usage(usage_row(&day, "2023-11-14"), 2, 300, 30, 0.5, 1);
    assert_usage(usage_row(&day, "2023-11-15"), 1, 50, 5, 0.25, 0);
    let adapter = store.usage(UsageGroup::Adapter).await.unwrap();
    assert_usage(usage_row(&adapter, "claude"), 2, 150, 15, 0.75, 0);
    assert_usage(usage_row(&adapter, "codex"), 1, 200, 20, 0.0, 1);
    let repo = store.usage(UsageGroup::Repo).await.unwrap();
    assert_usage(usage_row(&repo, "alpha"), 2, 300, 30, 0.5, 1);
    assert_usage(usage_row(&repo, "beta"), 1, 50, 5, 0.25, 0);

    assert_eq!(store.count_agent_runs(a.id, "analysis").await.unwrap(), 1);
    assert_eq!(store.count_agent_runs(a.id, "design").await.unwrap(), 1);
    assert_eq!(store.count_agent_runs(a.id, "review").await.unwrap(), 0);
    assert_eq!(store.count_agent_runs(b.id, "analysis").await.unwrap(), 1);
    // A started run counts before it finishes.
    let started = NewAgentRun {
        job: b.state.job.unwrap(),
        task: b.id,
        stage: "analysis".into(),
        adapter: "claude".into(),
        model: None,
        pid: None,
        started_at_ms: T0 + DAY_MS + 5_000,
        log_path: "logs/b.log".into(),
    };
    store.insert_agent_run(started).await.unwrap();
    assert_eq!(store.count_agent_runs(b.id, "analysis").await.unwrap(), 2);
    assert_eq!(store.count_agent_runs(a.id, "analysis").await.unwrap(), 1);
}

fn usage_record(source: &str, key: Option<&str>, cost_usd: Option<f64>) -> NewUsageRecord {
    NewUsageRecord {
        source: source.into(),
        category: "audio".into(),
        model: Some("tts-1".into()),
        input_tokens: 100,
        output_tokens: 1_500,
        cache_read_tokens: 3,
        cache_write_tokens: 4,
        units: 2.5,
        unit_kind: Some("audio_minute".into()),
        cost_usd,
        priced_by: if cost_usd.is_some() { "reported" } else { "none" }.into(),
        idempotency_key: key.map(str::to_string),
        task: None,
        repo: None,
        at_ms: T0,
        principal: "api:transcriber".into(),
    }
}

/// An ingested usage record is stored once per (source, idempotency key): a replay returns the
/// first record unchanged, the same key from another source is a new record, and records without
/// a key are never deduplicated. Every field reads back as written.
pub async fn suite_usage_record_idempotency(store: Arc<dyn Store>) {
    let first = store.insert_usage_record(usage_record("transcriber", Some("k-1"), Some(0.03))).await.unwrap();
    assert!(first.created);
    assert_eq!(first.record.record, usage_record("transcriber", Some("k-1"), Some(0.03)));
    let changed = NewUsageRecord { units: 99.0, at_ms: T0 + 5, ..usage_record("transcriber", Some("k-1"), Some(9.0)) };
    let replay = store.insert_usage_record(changed).await.unwrap();
    assert!(!replay.created, "a replay stores nothing");
    assert_eq!(replay.record, first.record, "a replay returns the first record");
    let other = store.insert_usage_record(usage_record("narrator", Some("k-1"), None)).await.unwrap();
    assert!(other.created, "keys are unique per source");
    assert_ne!(other.record.id, first.record.id);
    assert_eq!((other.record.record.cost_usd, other.record.record.priced_by.as_str()), (None, "none"));
    let a = store.insert_usage_record(usage_record("transcriber", None, Some(0.01))).await.unwrap();
    let b = store.insert_usage_record(usage_record("transcriber", None, Some(0.01))).await.unwrap();
    assert!(a.created && b.created && a.record.id != b.record.id, "records without a key are all kept");
    let totals = store.usage_record_totals().await.unwrap();
    assert_eq!(totals.iter().map(|t| t.records).sum::<u64>(), 4, "{totals:?}");
}

/// Ingested totals group by (source, category, model, unit kind, repository, task, day), keep
/// unpriced records apart (cost never 0 for them, units of priced records counted alone), name a
/// linked task `repo/WORK-ITEM`, and count toward spend only with a repository. Done tasks'
/// spend sums their agent runs and their linked records.
pub async fn suite_usage_record_totals_and_spend(store: Arc<dyn Store>) {
    let task = create(&*store, "alpha", "A").await;
    let linked = NewUsageRecord {
        task: Some(task.id),
        repo: Some("alpha".into()),
        ..usage_record("transcriber", Some("t-1"), Some(0.5))
    };
    store.insert_usage_record(linked).await.unwrap();
    store.insert_usage_record(usage_record("transcriber", Some("t-2"), Some(0.25))).await.unwrap();
    store.insert_usage_record(usage_record("transcriber", Some("t-3"), None)).await.unwrap();
    let next_day = NewUsageRecord {
        at_ms: T0 + DAY_MS,
        repo: Some("beta".into()),
        ..usage_record("transcriber", Some("t-4"), Some(1.0))
    };
    store.insert_usage_record(next_day).await.unwrap();
    let other = NewUsageRecord {
        category: "leads".into(),
        model: None,
        unit_kind: None,
        units: 0.0,
        ..usage_record("crm", Some("c-1"), Some(2.0))
    };
    store.insert_usage_record(other).await.unwrap();

    let totals = store.usage_record_totals().await.unwrap();
    type Keys<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, u64);
    let keys: Vec<Keys<'_>> = totals
        .iter()
        .map(|t| (t.source.as_str(), t.repo.as_deref(), t.task.as_deref(), t.day.as_str(), t.records))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("crm", None, None, "2023-11-14", 1),
            ("transcriber", None, None, "2023-11-14", 2),
            ("transcriber", Some("alpha"), Some("alpha/A-001"), "2023-11-14", 1),
            ("transcriber", Some("beta"), None, "2023-11-15", 1),
        ]
    );
    let unlinked = &totals[1];
    assert_eq!(
        (unlinked.category.as_str(), unlinked.model.as_deref(), unlinked.unit_kind.as_deref()),
        ("audio", Some("tts-1"), Some("audio_minute"))
    );
    assert_eq!(
        (unlinked.input_tokens, unlinked.output_tokens, unlinked.cache_read_tokens, unlinked.cache_write_tokens),
        (200, 3_000, 6, 8)
    );
    assert!((unlinked.units - 5.0).abs() < 1e-9 && (unlinked.priced_units - 2.5).abs() < 1e-9, "{unlinked:?}");
    assert!((unlinked.cost_usd - 0.25).abs() < 1e-9 && unlinked.unpriced_records == 1, "{unlinked:?}");
    assert_eq!((totals[0].model.as_deref(), totals[0].unit_kind.as_deref(), totals[0].units), (None, None, 0.0));

    // Spend: agent runs plus records with a repository only.
    run(&*store, &task, "analysis", T0, report(AgentStatus::Succeeded, tokens(1, 1, 0, 0), Some(0.125), None)).await;
    let spend = |filter: SpendFilter| {
        let store = store.clone();
        async move { store.spend_usd(&filter).await.unwrap() }
    };
    assert!((spend(SpendFilter::default()).await - (0.125 + 0.5 + 1.0)).abs() < 1e-9);
    assert!((spend(SpendFilter { task: Some(task.id), ..SpendFilter::default() }).await - 0.625).abs() < 1e-9);
    assert!((spend(SpendFilter { repo: Some("beta".into()), ..SpendFilter::default() }).await - 1.0).abs() < 1e-9);
    let today = SpendFilter { since_ms: Some(T0 + DAY_MS), ..SpendFilter::default() };
    assert!((spend(today).await - 1.0).abs() < 1e-9);

    assert_eq!(store.done_task_spend().await.unwrap(), DoneTaskSpend::default(), "no task is done yet");
    let job = claim(&*store, T0 + 5).await.id;
    let task = reload(&*store, task.id).await;
    store.advance(step(&task, "done", finished(job, json!("ok")), Transition::default())).await.unwrap();
    create(&*store, "alpha", "A").await;
    let done = store.done_task_spend().await.unwrap();
    assert_eq!(done.tasks, 1);
    assert!((done.agent_cost_usd - 0.125).abs() < 1e-9 && (done.ingested_cost_usd - 0.5).abs() < 1e-9, "{done:?}");
    // Agent-run totals count the distinct tasks of a group.
    let stage = store.usage(UsageGroup::Stage).await.unwrap();
    assert_eq!(usage_row(&stage, "analysis").tasks, 1);
}

/// Per-task usage keeps two tasks apart even when their repos gave them the same work-item id.
pub async fn suite_usage_by_task_across_repos(store: Arc<dyn Store>) {
    let a = create(&*store, "alpha", "P").await;
    let b = create(&*store, "beta", "P").await;
    assert_eq!((a.work_item_id.as_str(), b.work_item_id.as_str()), ("P-001", "P-001"));
    run(&*store, &a, "analysis", T0, report(AgentStatus::Succeeded, tokens(100, 10, 0, 0), Some(1.0), None)).await;
    run(&*store, &b, "analysis", T0, report(AgentStatus::Succeeded, tokens(50, 5, 0, 0), Some(2.0), None)).await;
    let rows = store.usage(UsageGroup::Task).await.unwrap();
    assert_eq!(rows.len(), 2, "one row per task, not per work-item id: {rows:?}");
    assert!(rows.iter().all(|r| r.runs == 1), "{rows:?}");
}

// ---------------------------------------------------------------- suites: events

/// `events` returns rows after `after_id`, oldest first, up to `limit`, optionally for one task.
/// Eight claimers on their own connections, over two repositories, finishing each job after a
/// moment: the number of running jobs never exceeds the global limit, nor a repository's its own.
pub async fn suite_claim_limits_concurrent(store: Arc<dyn Store>) {
    const JOBS_PER_REPO: usize = 30;
    const CLAIMERS: usize = 8;
    const RUNNING_MAX: u32 = 4;
    const PER_REPO_MAX: u32 = 3;
    for _ in 0..JOBS_PER_REPO {
        create(&*store, "alpha", "P").await;
        create(&*store, "beta", "P").await;
    }
    let barrier = Arc::new(Barrier::new(CLAIMERS + 1));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let owner = format!("claimer-{n}");
                barrier.wait().await;
                let mut claimed = 0;
                let mut idle = 0;
                while idle < 50 {
                    match store.claim_job(&limits(&owner, T0, RUNNING_MAX, PER_REPO_MAX)).await.unwrap() {
                        Some(job) => {
                            idle = 0;
                            claimed += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                            assert!(store.close_job(job.id, JobStatus::Done, json!({}), T0).await.unwrap());
                        }
                        None => {
                            idle += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        }
                    }
                }
                claimed
            })
        })
        .collect();
    let watcher = {
        let (store, barrier, done) = (store.clone(), barrier.clone(), done.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            let mut most = (0, 0, 0);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let running = store.jobs_with_status(JobStatus::Running).await.unwrap();
                let in_repo = |repo: &str| running.iter().filter(|j| j.repo == repo).count();
                let now = (running.len(), in_repo("alpha"), in_repo("beta"));
                assert!(now.0 <= RUNNING_MAX as usize, "{} jobs running, limit {RUNNING_MAX}", now.0);
                assert!(now.1.max(now.2) <= PER_REPO_MAX as usize, "per repo {now:?}, limit {PER_REPO_MAX}");
                most = (most.0.max(now.0), most.1.max(now.1), most.2.max(now.2));
                tokio::task::yield_now().await;
            }
            most
        })
    };
    let mut total = 0;
    for claimer in claimers {
        total += claimer.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.await.unwrap();
    assert_eq!(total, 2 * JOBS_PER_REPO, "every job claimed once");
    assert!(most.0 >= 2, "the claimers overlapped (most running at once: {most:?})");
}

/// Four writers append events (directly and with advances) while a reader pages by id from its
/// cursor: the reader sees every committed event exactly once, none skipped by a later id that
/// committed first.
pub async fn suite_events_cursor_concurrent(store: Arc<dyn Store>) {
    const WRITERS: usize = 4;
    const EVENTS_EACH: usize = 60;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        tasks.push(create(&*store, "alpha", "P").await);
    }
    let start = store.events(None, 0, 1_000).await.unwrap().last().map_or(0, |e| e.id);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let mut cursor = start;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = store.events(None, cursor, 7).await.unwrap();
                if page.is_empty() {
                    if finished {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                cursor = page.last().unwrap().id;
                seen.extend(page.into_iter().map(|e| e.id));
            }
        })
    };
    let writers: Vec<_> = tasks
        .into_iter()
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut task = task;
                for n in 0..EVENTS_EACH {
                    if n % 3 == 0 {
                        let next = task.state.clone();
                        let mut advance = step(&task, "analysis", None, Transition::default());
                        advance.next = next;
                        store.advance(advance).await.unwrap();
                        task = reload(&*store, task.id).await;
                    } else {
                        store.append_event(note(task.id, "progress", &format!("step {n}"))).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let all: Vec<i64> = store.events(None, start, 10_000).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(all.len(), WRITERS * EVENTS_EACH, "every event stored");
    assert_eq!(seen, all, "the reader saw every event once, in id order");
}

/// `metric_counts` (aggregate queries) agrees with [`crate::MetricCounts::from_records`] over
/// the same rows: stages, transitions, gate verdicts, runs, tokens, cost and both histograms.
pub async fn suite_metric_counts(store: Arc<dyn Store>) {
    let a = create(&*store, "alpha", "P").await;
    let b = create(&*store, "beta", "P").await;
    let job = claim(&*store, T0 + 5).await;
    let task = reload(&*store, job.task_id).await;
    let mut next = task.state.clone();
    next.stage = "development".into();
    let mut advance = step(&task, "development", finished(job.id, json!({"ok": true})), enqueue("development", 0));
    advance.next = next;
    advance.now_ms = T0 + 900;
    advance.event.detail = json!({ "from": "analysis (awaiting approval)", "to": "development" });
    store.advance(advance).await.unwrap();
    for (at, verdict) in [(T0 + 1_000, "fail"), (T0 + 4_000, "pass"), (T0 + 9_000, "pass")] {
        let mut event = note(a.id, "gate", verdict);
        event.at_ms = at;
        event.detail = json!({ "gate": crate::metrics::MERGE_GATE, "verdict": verdict });
        store.append_event(event).await.unwrap();
    }
    let mut event = note(b.id, "gate", "tests");
    event.detail = json!({ "gate": "tests", "verdict": "fail", "from": 3 });
    store.append_event(event).await.unwrap();
    run(&*store, &a, "analysis", T0, report(AgentStatus::Succeeded, tokens(100, 20, 5, 1), Some(0.25), Some("m")))
        .await;
    run(
        &*store,
        &b,
        "analysis",
        T0,
        report(AgentStatus::Failed { message: "broke".into() }, tokens(7, 3, 0, 0), None, None),
    )
    .await;

    let bounds = crate::HistogramBounds { job_latency_ms: vec![100, 1_000, 10_000], merge_wait_ms: vec![1_000, 5_000] };
    let counts = store.metric_counts(&bounds).await.unwrap();
    let tasks = store.list_tasks(&TaskFilter::default()).await.unwrap();
    let mut jobs = Vec::new();
    let mut runs = Vec::new();
    for task in &tasks {
        jobs.extend(store.jobs_for_task(task.id).await.unwrap());
        runs.extend(store.agent_runs(task.id).await.unwrap());
    }
    let events = store.events(None, 0, 10_000).await.unwrap();
    let reference = crate::MetricCounts::from_records(&tasks, &jobs, &events, &runs, &bounds);
    assert_eq!(counts.tasks_by_stage, reference.tasks_by_stage);
    assert_eq!(counts.stage_transitions, reference.stage_transitions);
    assert_eq!(counts.stage_transitions, vec![("analysis".to_string(), "development".to_string(), 1)]);
    assert_eq!(counts.gate_verdicts, reference.gate_verdicts);
    assert_eq!(counts.agent_runs, reference.agent_runs);
    assert_eq!(counts.tokens, reference.tokens);
    assert!((counts.cost_usd - 0.25).abs() < 1e-9, "cost {}", counts.cost_usd);
    assert_eq!(counts.job_latency, reference.job_latency);
    assert_eq!(counts.merge_wait, reference.merge_wait);
    assert_eq!((counts.merge_wait.count, counts.merge_wait.sum_ms), (1, 3_000));
}

/// A store with a change feed hears another handle's changes (another instance on the same
/// database): a job queued, then a running job requeued (taken away) and one cancelled. A
/// store without one answers `None` (polling is then the only way, and there is nothing to check).
pub async fn suite_change_feed(store: Arc<dyn Store>, backend: &dyn Harness) {
    let Some(mut feed) = store.change_feed().await.unwrap() else { return };
    let other = backend.open().await;
    async fn next(feed: &mut Box<dyn crate::ChangeFeed>, what: &str) -> crate::Change {
        match tokio::time::timeout(std::time::Duration::from_secs(30), feed.next()).await {
            Ok(change) => change.unwrap(),
            Err(_) => panic!("no change heard within 30 s: {what}"),
        }
    }
    let task = create(&*other, "alpha", "P").await;
    assert_eq!(next(&mut feed, "a job queued").await, crate::Change::Queued);
    let job = claim(&*other, T0).await;
    assert_eq!(job.task_id, task.id);
    assert!(other.requeue_job(job.id, job.owner.as_deref(), T0).await.unwrap());
    assert_eq!(next(&mut feed, "a running job requeued").await, crate::Change::Stopped);
    let job = claim(&*other, T0).await;
    assert!(other.close_job(job.id, JobStatus::Cancelled, json!({ "stopped": true }), T0 + 1).await.unwrap());
    assert_eq!(next(&mut feed, "a running job cancelled").await, crate::Change::Stopped);
    assert_eq!(job_of(&*other, job.id).await.status, JobStatus::Cancelled);
}

/// Instances: the first beat inserts, later beats move the time forward (never back), a restart
/// replaces the pid and start time; liveness is judged against a grace period.
pub async fn suite_instances(store: Arc<dyn Store>) {
    let beat = |id: &str, pid: u32, started: i64, at: i64| crate::InstanceRecord {
        id: id.into(),
        host: "host-a".into(),
        pid,
        started_at_ms: started,
        heartbeat_at_ms: at,
    };
    assert!(store.instances().await.unwrap().is_empty());
    store.heartbeat(&beat("b", 20, T0, T0)).await.unwrap();
    store.heartbeat(&beat("a", 10, T0, T0 + 5)).await.unwrap();
    store.heartbeat(&beat("a", 10, T0, T0 + 2_000)).await.unwrap();
    store.heartbeat(&beat("a", 10, T0, T0 + 1_000)).await.unwrap();
    let all = store.instances().await.unwrap();
    assert_eq!(all.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b"], "by id");
    assert_eq!(all[0].heartbeat_at_ms, T0 + 2_000, "a late beat never moves the time back");
    assert!(all[0].is_alive(T0 + 12_000, 10_000) && !all[1].is_alive(T0 + 12_000, 10_000));
    store.heartbeat(&beat("a", 11, T0 + 3_000, T0 + 3_000)).await.unwrap();
    let a = store.instances().await.unwrap().into_iter().find(|i| i.id == "a").unwrap();
    assert_eq!((a.pid, a.started_at_ms, a.heartbeat_at_ms), (11, T0 + 3_000, T0 + 3_000), "a restart");
}

/// A batched claim takes jobs best first, as single claims in turn would, stops at the limits,
/// and moves each task's version.
pub async fn suite_claim_batch(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..5 {
        tasks.push(create(&*store, "alpha", "P").await);
    }
    tasks.push(create(&*store, "beta", "P").await);
    let claimed = store.claim_jobs(&limits("batch", T0, 10, 3), 10).await.unwrap();
    let repos: Vec<&str> = claimed.iter().map(|j| j.repo.as_str()).collect();
    assert_eq!(
        repos.iter().filter(|r| **r == "alpha").count(),
        3,
        "the per-repo limit holds within a batch: {repos:?}"
    );
    assert_eq!(repos.iter().filter(|r| **r == "beta").count(), 1);
    assert!(claimed.iter().all(|j| j.status == JobStatus::Running && j.owner.as_deref() == Some("batch")));
    let ids: Vec<JobId> = claimed.iter().map(|j| j.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "equal rank and time: oldest first");
    for job in &claimed {
        let task = reload(&*store, job.task_id).await;
        let before = tasks.iter().find(|t| t.id == job.task_id).unwrap();
        assert!(task.version > before.version, "the claim moved the task's version");
    }
    assert!(store.claim_jobs(&limits("batch", T0, 10, 3), 10).await.unwrap().is_empty(), "alpha is at its limit");
    assert_eq!(store.claim_jobs(&limits("batch", T0, 10, 5), 1).await.unwrap().len(), 1, "at most `limit`");
    assert!(store.claim_jobs(&limits("batch", T0, 10, 5), 0).await.unwrap().is_empty());
}

/// A batch whose best candidates all belong to one repository with room for one more job still
/// claims that one, and the next claim reaches the other repositories' jobs further down the claim
/// order: a claim loop that asks until it gets nothing never leaves a claimable job behind.
pub async fn suite_claim_batch_window(store: Arc<dyn Store>) {
    for _ in 0..40 {
        create(&*store, "alpha", "P").await;
    }
    let beta = create(&*store, "beta", "P").await;
    let claim = limits("batch", T0, 10, 1);
    let first = store.claim_jobs(&claim, 8).await.unwrap();
    assert!(!first.is_empty(), "a claimable job is claimed");
    let mut claimed = first;
    loop {
        let more = store.claim_jobs(&claim, 8).await.unwrap();
        if more.is_empty() {
            break;
        }
        claimed.extend(more);
    }
    let repos: Vec<&str> = claimed.iter().map(|j| j.repo.as_str()).collect();
    assert_eq!(repos.iter().filter(|r| **r == "alpha").count(), 1, "alpha's limit holds: {repos:?}");
    assert!(claimed.iter().any(|j| j.task_id == beta.id), "beta's job behind alpha's backlog is claimed: {repos:?}");
}

pub async fn suite_events(store: Arc<dyn Store>) {
    let a = create(&*store, "alpha", "P").await;
    let b = create(&*store, "alpha", "P").await;
    let mut ids = Vec::new();
    for (n, task) in [a.id, b.id, a.id, b.id, a.id].into_iter().enumerate() {
        let mut event = note(task, "progress", &format!("step {n}"));
        event.at_ms = T0 + n as i64;
        event.detail = json!({ "n": n, "nested": { "ok": true } });
        ids.push((task, store.append_event(event).await.unwrap()));
    }

    let of_a = store.events(Some(a.id), 0, 100).await.unwrap();
    let kinds: Vec<&str> = of_a.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "progress", "progress", "progress"]);
    assert!(of_a.iter().all(|e| e.task_id == a.id));
    assert!(of_a.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    let a_ids: Vec<i64> = ids.iter().filter(|(t, _)| *t == a.id).map(|(_, id)| *id).collect();
    assert_eq!(of_a[1..].iter().map(|e| e.id).collect::<Vec<_>>(), a_ids);
    let second = &of_a[2];
    assert_eq!((second.message.as_str(), second.at_ms, second.stage.as_str()), ("step 2", T0 + 2, "analysis"));
    assert_eq!(second.detail, json!({ "n": 2, "nested": { "ok": true } }));

    let after = store.events(Some(a.id), a_ids[0], 100).await.unwrap();
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), a_ids[1..]);
    let limited = store.events(Some(a.id), 0, 2).await.unwrap();
    assert_eq!(limited.iter().map(|e| e.id).collect::<Vec<_>>(), of_a[..2].iter().map(|e| e.id).collect::<Vec<_>>());

    let all = store.events(None, 0, 100).await.unwrap();
    assert_eq!(all.len(), 2 + 5, "two created events and five appended");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    let last = all.last().unwrap().id;
    assert!(store.events(None, last, 100).await.unwrap().is_empty());
    let tail = store.events(None, all[4].id, 100).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.id).collect::<Vec<_>>(), all[5..].iter().map(|e| e.id).collect::<Vec<_>>());
    assert!(store.events(Some(TaskId(9_999)), 0, 100).await.unwrap().is_empty());
}

// ---------------------------------------------------------------- suites: restart

/// SPEC §4.6: everything written survives closing and reopening the database, and reopening re-runs no migration.
/// Outbox rows (SPEC §4.2): written by the advance that decided them and only by a winner; a
/// claim hides a row from other workers until its claim ends; an acknowledged row never comes back;
/// a failed try is due again at its retry time.
pub async fn suite_outbox(store: Arc<dyn Store>) {
    let task = create(store.as_ref(), "alpha", "ALPHA").await;
    let effect = |kind: &str| NewEffect { kind: kind.into(), payload: json!({ "effect": kind }) };
    let mut winner = step(&task, "development", None, Transition::default());
    winner.effects = vec![effect("remove_worktree"), effect("notify")];
    let mut loser = winner.clone();
    loser.effects = vec![effect("delete_branch")];
    store.advance(winner).await.unwrap();
    assert!(matches!(store.advance(loser).await, Err(StoreError::Conflict(_))));
    let pending = store.effects(Some(task.id), true).await.unwrap();
    let kinds: Vec<&str> = pending.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["remove_worktree", "notify"], "the loser's effect must not be written");
    assert_eq!(pending[0].payload, json!({ "effect": "remove_worktree" }));

    let claim = |now_ms, limit| EffectClaim { now_ms, claim_ms: 1_000, limit, task: None };
    let first = store.claim_effects(&claim(T0 + 10, 1)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].kind.as_str(), first[0].attempts), ("remove_worktree", 1));
    let second = store.claim_effects(&claim(T0 + 10, 10)).await.unwrap();
    assert_eq!(second.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["notify"], "claimed rows are hidden");
    assert!(store.claim_effects(&claim(T0 + 20, 10)).await.unwrap().is_empty());

    assert!(store.complete_effect(first[0].id, T0 + 30).await.unwrap());
    assert!(!store.complete_effect(first[0].id, T0 + 31).await.unwrap(), "acknowledged once");
    store.fail_effect(second[0].id, "notifier down", T0 + 5_000).await.unwrap();
    assert!(store.claim_effects(&claim(T0 + 4_999, 10)).await.unwrap().is_empty(), "not due before its retry");
    let again = store.claim_effects(&claim(T0 + 5_000, 10)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].attempts, again[0].last_error.as_deref()), (2, Some("notifier down")));
    // A worker that died holding a claim: the row is due again when the claim ends.
    assert_eq!(store.claim_effects(&claim(T0 + 6_000, 10)).await.unwrap().len(), 1);
    assert!(store.complete_effect(again[0].id, T0 + 6_001).await.unwrap());
    assert!(store.effects(Some(task.id), true).await.unwrap().is_empty());
    assert_eq!(store.effects(None, false).await.unwrap().len(), 2);
}

/// Agent runs that never recorded their end are listed, and closed once with a status.
pub async fn suite_lost_agent_runs(store: Arc<dyn Store>) {
    let task = create(store.as_ref(), "alpha", "ALPHA").await;
    let job = claim(store.as_ref(), T0).await;
    let new_run = |started_at_ms| NewAgentRun {
        job: job.id,
        task: task.id,
        stage: "analysis".into(),
        adapter: "script".into(),
        model: None,
        pid: None,
        started_at_ms,
        log_path: "run".into(),
    };
    let open = store.insert_agent_run(new_run(T0)).await.unwrap();
    let ended = store.insert_agent_run(new_run(T0 + 1)).await.unwrap();
    let finish = AgentRunFinish {
        ended_at_ms: T0 + 2,
        exit_code: Some(0),
        report: AgentReport::failed("x".to_string()),
        stopped: false,
    };
    store.finish_agent_run(ended, finish).await.unwrap();
    let listed: Vec<i64> = store.open_agent_runs().await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(listed, [open]);
    assert!(store.close_agent_run(open, "lost", "died with Baton", T0 + 3).await.unwrap());
    assert!(!store.close_agent_run(open, "lost", "again", T0 + 4).await.unwrap());
    assert!(!store.close_agent_run(ended, "lost", "ended runs stay as they were", T0 + 4).await.unwrap());
    let runs = store.agent_runs(task.id).await.unwrap();
    let closed = runs.iter().find(|r| r.id == open).unwrap();
    assert_eq!(
        (closed.status.as_deref(), closed.error.as_deref(), closed.ended_at_ms),
        (Some("lost"), Some("died with Baton"), Some(T0 + 3))
    );
    assert!(store.open_agent_runs().await.unwrap().is_empty());
}

pub async fn suite_restart(backend: &dyn Harness) {
    let store = backend.open().await;
    let task = create(&*store, "alpha", "P").await;
    let job = claim(&*store, T0).await;
    let task = reload(&*store, task.id).await;
    store.set_job_process(job.id, Some(77), Some(77)).await.unwrap();
    store.acquire_lease("merge:alpha", &task_holder(task.id), 60_000, T0).await.unwrap();
    store.record_suppressed(task.id, Some(inbox("delivery-1")), note(task.id, "suppressed", "stale")).await.unwrap();
    run(&*store, &task, "analysis", T0, report(AgentStatus::Succeeded, tokens(10, 1, 0, 0), None, None)).await;
    let events = events_of(&*store, task.id).await;
    drop(store);

    for reopen in 0..2 {
        let store = backend.open().await;
        let again = reload(&*store, task.id).await;
        assert_eq!((again.version, &again.state, &again.work_item_id), (task.version, &task.state, &task.work_item_id));
        let job = job_of(&*store, job.id).await;
        assert_eq!((job.status, job.pid, job.owner.as_deref()), (JobStatus::Running, Some(77), Some("worker")));
        let lease = store.lease("merge:alpha").await.unwrap().unwrap();
        assert_eq!(lease.holder, task_holder(task.id), "reopen {reopen}");
        assert!(store.inbox_seen("delivery-1").await.unwrap(), "reopen {reopen}");
        let ids = |e: Vec<EventRecord>| e.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(events_of(&*store, task.id).await), ids(events.clone()), "reopen {reopen}");
        assert_eq!(store.count_agent_runs(task.id, "analysis").await.unwrap(), 1, "reopen {reopen}");
        drop(store);
    }
    let store = backend.open().await;
    assert_eq!(create(&*store, "alpha", "P").await.work_item_id, "P-002", "the counter survives a restart");
}

// ---------------------------------------------------------------- suites: principals and idempotency

pub async fn suite_api_tokens(store: Arc<dyn Store>) {
    store.create_api_token("ci", "digest-1", "read", "cli:ann", T0).await.unwrap();
    store.create_api_token("ops", "digest-2", "admin", "cli:ann", T0).await.unwrap();
    // A taken name or a taken digest is a conflict.
    assert!(matches!(
        store.create_api_token("ci", "digest-3", "act", "cli:ann", T0).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_api_token("other", "digest-2", "act", "cli:ann", T0).await,
        Err(StoreError::Conflict(_))
    ));
    let found = store.api_token_by_hash("digest-1").await.unwrap().unwrap();
    assert_eq!((found.name.as_str(), found.scope.as_str(), found.created_by.as_str()), ("ci", "read", "cli:ann"));
    assert_eq!(store.api_token_by_hash("nope").await.unwrap(), None);
    assert!(store.revoke_api_token("ci", T0 + 1).await.unwrap());
    assert!(!store.revoke_api_token("ci", T0 + 2).await.unwrap(), "revoked once");
    assert!(!store.revoke_api_token("missing", T0).await.unwrap());
    assert_eq!(store.api_token_by_hash("digest-1").await.unwrap(), None, "a revoked token no longer authenticates");
    let all = store.api_tokens().await.unwrap();
    assert_eq!(
        all.iter().map(|t| (t.name.as_str(), t.revoked_at_ms)).collect::<Vec<_>>(),
        [("ci", Some(T0 + 1)), ("ops", None)]
    );
    // A revoked name stays taken: the timeline keeps naming it.
    assert!(matches!(
        store.create_api_token("ci", "digest-9", "read", "cli:ann", T0).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn suite_idempotency(store: Arc<dyn Store>) {
    use crate::IdempotencyBegin as B;
    assert_eq!(store.begin_idempotent("p|POST /x|k", "h1", T0, 30_000).await.unwrap(), B::Started);
    // While unanswered, a replay is in progress; another request under the key is a mismatch.
    assert_eq!(store.begin_idempotent("p|POST /x|k", "h1", T0 + 10, 30_000).await.unwrap(), B::InProgress);
    assert_eq!(store.begin_idempotent("p|POST /x|k", "h2", T0 + 10, 30_000).await.unwrap(), B::Mismatch);
    store.finish_idempotent("p|POST /x|k", 200, "{\"ok\":true}", T0 + 20).await.unwrap();
    assert_eq!(
        store.begin_idempotent("p|POST /x|k", "h1", T0 + 30, 30_000).await.unwrap(),
        B::Replay { status: 200, body: "{\"ok\":true}".into() }
    );
    assert_eq!(store.begin_idempotent("p|POST /x|k", "h2", T0 + 30, 30_000).await.unwrap(), B::Mismatch);
    // Keys are exact strings: another scope is another key.
    assert_eq!(store.begin_idempotent("q|POST /x|k", "h2", T0, 30_000).await.unwrap(), B::Started);

    // An abandoned attempt can be retried at once; a stale unanswered one is resumed.
    store.abandon_idempotent("q|POST /x|k").await.unwrap();
    assert_eq!(store.begin_idempotent("q|POST /x|k", "h3", T0, 30_000).await.unwrap(), B::Started);
    assert_eq!(
        store.begin_idempotent("q|POST /x|k", "h3", T0 + 30_001, 30_000).await.unwrap(),
        B::Resumed { task: None }
    );

    // A create records its task under the key in its own transaction: an attempt that died after
    // committing is resumed with that task, and abandoning it cannot forget the task.
    assert_eq!(store.begin_idempotent("p|POST /tasks|c", "hc", T0, 30_000).await.unwrap(), B::Started);
    let new = NewTask { idempotency_key: Some("p|POST /tasks|c".into()), ..new_task("demo", "DEMO", "Once") };
    let task = store.create_task(new, enqueue("analysis", 0), T0).await.unwrap();
    store.abandon_idempotent("p|POST /tasks|c").await.unwrap();
    assert_eq!(
        store.begin_idempotent("p|POST /tasks|c", "hc", T0 + 60_000, 30_000).await.unwrap(),
        B::Resumed { task: Some(task.id) }
    );
    // A key names one task: a second create under it (two tries of one filing at once) changes
    // nothing and answers with the first task.
    let again = NewTask { idempotency_key: Some("p|POST /tasks|c".into()), ..new_task("demo", "DEMO", "Twice") };
    match store.create_task(again, enqueue("analysis", 0), T0 + 60_001).await {
        Err(StoreError::Exists(first)) => assert_eq!(first.id, task.id),
        other => panic!("a second create under one key must answer with the first task: {other:?}"),
    }
    assert_eq!(store.list_tasks(&TaskFilter::default()).await.unwrap().len(), 1, "the second create left no task");
}

fn delivery(source: &str, id: &str, payload: &str) -> NewDelivery {
    NewDelivery {
        source: source.into(),
        delivery_id: id.into(),
        event: "issues".into(),
        payload: payload.into(),
        received_at_ms: T0,
    }
}

pub async fn suite_webhook_deliveries(store: Arc<dyn Store>) {
    assert!(store.record_delivery(delivery("github", "d-1", "{\"a\":1}")).await.unwrap());
    // The same id from the same source is a replay: nothing changes, even with another body.
    assert!(!store.record_delivery(delivery("github", "d-1", "{\"a\":2}")).await.unwrap());
    // The same id from another source is another delivery.
    assert!(store.record_delivery(delivery("gitea", "d-1", "{}")).await.unwrap());
    assert!(store.record_delivery(delivery("github", "d-2", "{}")).await.unwrap());
    let github = store.deliveries(Some("github")).await.unwrap();
    assert_eq!(github.len(), 2);
    assert_eq!(github[0].payload, "{\"a\":1}", "a replay never overwrites the stored body");
    assert_eq!((github[0].event.as_str(), github[0].received_at_ms), ("issues", T0));
    assert_eq!(store.deliveries(None).await.unwrap().len(), 3);

    let pending = store.pending_deliveries(2).await.unwrap();
    assert_eq!(pending.len(), 2, "the limit holds");
    assert_eq!(pending[0].delivery_id, "d-1");
    assert_eq!(pending[0].source, "github");
    assert!(pending[0].processed_at_ms.is_none());
    assert!(store.mark_delivery(pending[0].id, T0 + 5, Some("issue #1 labeled"), None).await.unwrap());
    assert!(!store.mark_delivery(pending[0].id, T0 + 6, None, Some("again")).await.unwrap(), "marked once");
    assert!(store.mark_delivery(pending[1].id, T0 + 7, None, Some("bad json")).await.unwrap());
    assert!(!store.mark_delivery(9_999, T0, None, None).await.unwrap(), "no such delivery");

    let rest = store.pending_deliveries(10).await.unwrap();
    assert_eq!(rest.iter().map(|d| d.delivery_id.as_str()).collect::<Vec<_>>(), ["d-2"]);
    let all = store.deliveries(None).await.unwrap();
    let first = all.iter().find(|d| d.id == pending[0].id).unwrap();
    assert_eq!(
        (first.processed_at_ms, first.parsed.as_deref(), first.error.as_deref()),
        (Some(T0 + 5), Some("issue #1 labeled"), None)
    );
    let second = all.iter().find(|d| d.id == pending[1].id).unwrap();
    assert_eq!(
        (second.processed_at_ms, second.parsed.as_deref(), second.error.as_deref()),
        (Some(T0 + 7), None, Some("bad json"))
    );
}

pub async fn suite_external_ref_exists(store: Arc<dyn Store>) {
    let new = || NewTask { external_ref: Some("plane:ORCH-1".into()), ..new_task("demo", "DEMO", "Ticket") };
    let first = store.create_task(new(), enqueue("analysis", 0), T0).await.unwrap();
    match store.create_task(new(), enqueue("analysis", 0), T0).await {
        Err(StoreError::Exists(task)) => assert_eq!(task.id, first.id),
        other => panic!("expected Exists with the live task, got {other:?}"),
    }
    assert_eq!(store.list_tasks(&TaskFilter::default()).await.unwrap().len(), 1);
}

/// The ticket lookups: the live task by its reference; a done task still holds its reference
/// but is not live; a cancelled one gave it up, so the ticket may start a fresh task.
pub async fn suite_live_task_by_external_ref(store: Arc<dyn Store>) {
    let new = |r: &str| NewTask { external_ref: Some(r.into()), ..new_task("demo", "DEMO", "Ticket") };
    assert!(store.live_task_by_external_ref("github:a/b#1").await.unwrap().is_none());
    let one = store.create_task(new("github:a/b#1"), enqueue("analysis", 0), T0).await.unwrap();
    let two = store.create_task(new("github:a/b#2"), enqueue("analysis", 0), T0).await.unwrap();
    assert_eq!(store.live_task_by_external_ref("github:a/b#1").await.unwrap().map(|t| t.id), Some(one.id));
    assert_eq!(store.live_task_by_external_ref("github:a/b#2").await.unwrap().map(|t| t.id), Some(two.id));

    let one = reload(&*store, one.id).await;
    store.advance(step(&one, "done", None, Transition { cancel_jobs: true, ..Transition::default() })).await.unwrap();
    assert!(store.live_task_by_external_ref("github:a/b#1").await.unwrap().is_none(), "a done task is not live");
    assert_eq!(
        store.task_by_external_ref("github:a/b#1").await.unwrap().map(|t| t.id),
        Some(one.id),
        "a done task keeps its ticket"
    );

    let two = reload(&*store, two.id).await;
    store
        .advance(step(&two, "cancelled", None, Transition { cancel_jobs: true, ..Transition::default() }))
        .await
        .unwrap();
    assert!(store.live_task_by_external_ref("github:a/b#2").await.unwrap().is_none());
    assert!(store.task_by_external_ref("github:a/b#2").await.unwrap().is_none(), "a cancelled task is a tombstone");
    let again = store.create_task(new("github:a/b#2"), enqueue("analysis", 0), T0).await.unwrap();
    assert_ne!(again.id, two.id);
    assert_eq!(store.live_task_by_external_ref("github:a/b#2").await.unwrap().map(|t| t.id), Some(again.id));
}

/// `task_counts` agrees with counting `list_tasks` by (stage, hold): one aggregate query, no task
/// loaded.
pub async fn suite_task_counts(store: Arc<dyn Store>) {
    assert!(store.task_counts().await.unwrap().is_empty());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            store.create_task(new_task("demo", "DEMO", &format!("t{i}")), enqueue("analysis", 0), T0).await.unwrap().id,
        );
    }
    let held = reload(&*store, ids[0]).await;
    let mut state = TaskState::new("analysis");
    state.hold = baton_domain::Hold::AwaitingApproval;
    store.advance(Advance { next: state, ..step(&held, "analysis", None, Transition::default()) }).await.unwrap();
    let done = reload(&*store, ids[1]).await;
    store.advance(step(&done, "done", None, Transition { cancel_jobs: true, ..Transition::default() })).await.unwrap();
    let counts = store.task_counts().await.unwrap();
    let mut expected = std::collections::BTreeMap::<(String, String), u64>::new();
    for task in store.list_tasks(&TaskFilter::default()).await.unwrap() {
        *expected.entry((task.state.stage.clone(), task.state.hold.label().to_string())).or_default() += 1;
    }
    let got: std::collections::BTreeMap<(String, String), u64> =
        counts.iter().map(|c| ((c.stage.clone(), c.hold.clone()), c.tasks)).collect();
    assert_eq!(got, expected);
    assert_eq!(got.get(&("analysis".to_string(), "awaiting_approval".to_string())), Some(&1));
    assert_eq!(got.get(&("analysis".to_string(), String::new())), Some(&3));
    assert_eq!(got.get(&("done".to_string(), String::new())), Some(&1));
}

/// One `#[tokio::test]` per suite for a backend: `$fresh` is an async fn returning
/// `(keep, harness, store)`, a fresh empty database each call (`keep` is dropped at the test's end).
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        // One open freeze per repository, links kept once, unfreeze recorded with its principal.
        #[::tokio::test]
        async fn repo_freezes_open_once_and_close_with_their_principal() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_repo_freezes(store).await;
        }

        // Eight concurrent freezes of one repository open exactly one.
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn repo_freeze_race_opens_one() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_repo_freeze_race(store).await;
        }

        // Tasks by (stage, hold) from one aggregate query agree with counting every task.
        #[::tokio::test]
        async fn task_counts_agree_with_the_tasks() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_task_counts(store).await;
        }

        // Two advancers race on one version 50 times: one commits, the other conflicts and leaves no trace.
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn advance_race_has_one_winner_and_no_partial_writes() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_advance_race(store).await;
        }

        // Finishing a job that is not running conflicts and rolls back the whole advance.
        #[::tokio::test]
        async fn advance_finishing_a_job_not_running_rolls_back() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_finish_guard(store).await;
        }

        // An advance cannot flip another task's running job.
        #[::tokio::test]
        async fn advance_refuses_to_finish_another_tasks_job() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_finish_guard_other_task(store).await;
        }

        // A raised work-item counter hands out the numbers after it, and is never lowered.
        #[::tokio::test]
        async fn raised_work_item_counter_numbers_past_what_was_taken_elsewhere() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_raise_work_item_counter(store).await;
        }

        // Work-item ids number per (repo, prefix) and walk past taken numbers after a counter rewind.
        #[::tokio::test]
        async fn work_item_ids_number_per_repo_and_prefix_and_walk_past_collisions() {
            let (_dir, backend, store) = $fresh().await;
            $crate::conformance::suite_work_item_ids(store, &backend).await;
        }

        // Twenty concurrent creates get twenty distinct, consecutive work-item ids.
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_creates_get_distinct_work_item_ids() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_work_item_ids_concurrent(store).await;
        }

        // Tasks round-trip, and listing filters by repo and activity, newest first.
        #[::tokio::test]
        async fn tasks_round_trip_and_list_newest_first() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_tasks_and_listing(store).await;
        }

        // Dependencies: declared once, read back, withdrawn; a waiting task's job is skipped
        // without holding a slot and claimed once its dependency is done.
        #[::tokio::test]
        async fn dependencies_hold_the_claim_until_done_without_a_slot() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_dependencies(store).await;
        }

        // A cancelled dependency never frees its dependent; an exempt repository ignores them.
        #[::tokio::test]
        async fn cancelled_dependency_keeps_waiting_and_exempt_repos_ignore_dependencies() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_dependency_cancelled_and_exempt(store).await;
        }

        // The serial gate admits a repository's tasks one at a time, by id.
        #[::tokio::test]
        async fn serial_gate_admits_the_earliest_unfinished_task_only() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_serial_gate(store).await;
        }

        // A batch window filled by one repository at its limit leaves no other job unclaimed.
        #[::tokio::test]
        async fn a_window_filled_by_one_repository_leaves_no_other_job_behind() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_claim_batch_window(store).await;
        }

        // Claims stop at the global and the per-repo running limits.
        #[::tokio::test]
        async fn claim_respects_running_limits() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_claim_limits(store).await;
        }

        // A job is not claimable before its available_at.
        #[::tokio::test]
        async fn claim_waits_for_available_at() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_claim_available_at(store).await;
        }

        // Four concurrent claimers over 200 jobs claim each job exactly once.
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_claimers_never_share_a_job() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_claim_concurrent(store).await;
        }

        // Only the task's current job is claimable.
        #[::tokio::test]
        async fn claim_takes_only_the_current_job() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_claim_current_job_only(store).await;
        }

        // Claims take the highest rank first, then the oldest available_at.
        #[::tokio::test]
        async fn claim_prefers_higher_rank_then_older_available_at() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_claim_rank(store).await;
        }

        // Leases are exclusive, renewable, and taken over after expiry with a larger token.
        #[::tokio::test]
        async fn leases_are_exclusive_and_fenced() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_leases(store).await;
        }

        // release_leases drops only the task's leases, and tokens grow across release and re-acquire.
        #[::tokio::test]
        async fn advance_releases_the_tasks_leases_and_tokens_keep_growing() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_lease_release(store).await;
        }

        // A release on a read of the holder's task goes only while the task is as read.
        #[::tokio::test]
        async fn a_lease_is_released_only_while_its_holders_task_is_as_read() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_lease_release_if_unmoved(store).await;
        }

        // A job's own acquire takes the lease only while it is its task's active job.
        #[::tokio::test]
        async fn a_jobs_lease_is_taken_only_while_it_is_its_tasks_active_job() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_lease_for_job(store).await;
        }

        // The queue's own landing takes the lease and moves the entry together, or neither.
        #[::tokio::test]
        async fn the_queue_lands_a_change_with_its_lease_or_not_at_all() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_queue_land(store).await;
        }

        // Eight concurrent acquirers of one lease: exactly one wins.
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_acquirers_get_one_lease() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_lease_race(store).await;
        }

        // A replayed dedup key is Duplicate for advance and record_suppressed and changes nothing.
        #[::tokio::test]
        async fn inbox_replays_are_duplicates_that_change_nothing() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_inbox_dedup(store).await;
        }

        // cancel_jobs cancels this task's queued and running jobs only.
        #[::tokio::test]
        async fn cancel_jobs_touches_only_the_tasks_live_jobs() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_cancel_jobs(store).await;
        }

        // A dead instance's job is taken over only under its claim, its event written with it;
        // its late result cannot end the job under the new claim.
        #[::tokio::test]
        async fn take_over_requeues_only_under_the_dead_claim_with_its_event() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_take_over(store).await;
        }

        // requeue_job acts only on running jobs, close_job only on queued or running ones.
        #[::tokio::test]
        async fn requeue_and_close_act_only_on_live_jobs() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_requeue_and_close(store).await;
        }

        // Agent runs keep tokens and unknown cost; usage sums per group and counts unpriced runs.
        #[::tokio::test]
        async fn agent_runs_and_usage_totals() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_agent_runs_and_usage(store).await;
        }

        // An ingested usage record is stored once per (source, idempotency key); a replay returns the first.
        #[::tokio::test]
        async fn usage_records_are_idempotent_per_source() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_usage_record_idempotency(store).await;
        }

        // Ingested totals group by their keys, unpriced records stay apart, and spend counts records with a repository.
        #[::tokio::test]
        async fn usage_record_totals_group_and_count_toward_spend() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_usage_record_totals_and_spend(store).await;
        }

        // Per-task usage does not merge two repos' tasks that share a work-item id.
        #[::tokio::test]
        async fn usage_by_task_keeps_same_work_item_id_in_two_repos_apart() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_usage_by_task_across_repos(store).await;
        }

        // Events page by id, oldest first, with an optional task filter.
        #[::tokio::test]
        async fn events_page_in_order_and_filter_by_task() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_events(store).await;
        }

        // Quota pauses are due from an index; listings filter by hold, stage and repo; the
        // reconciler's candidates are live tasks without a hold whose job ended.
        #[::tokio::test]
        async fn holds_are_due_and_filtered_from_indexed_columns() {
            let (_dir, _backend, store) = $fresh().await;
            $crate::conformance::suite_holds_and_filters(store).await;
        }

        // Data survives a close and reopen; reopening twice re-runs no migration.
        #[::tokio::test]
        async fn data_survives_restart_and_migrations_are_idempotent() {
            let (_dir, backend, store) = $fresh().await;
            drop(store);
            $crate::conformance::suite_restart(&backend).await;
        }

        // The outbox: effects commit with their decision (never a loser's), claims hide rows, acks are final.
        #[::tokio::test]
        async fn outbox_rows_commit_with_their_decision_and_are_claimed_once_until_acknowledged() {
            let (_dir, _backend, store) = $fresh().await;
            $crate::conformance::suite_outbox(store).await;
        }

        // Lost agent runs are listed and closed once; ended runs are left alone.
        #[::tokio::test]
        async fn agent_runs_without_an_end_are_listed_and_closed_once() {
            let (_dir, _backend, store) = $fresh().await;
            $crate::conformance::suite_lost_agent_runs(store).await;
        }

        // Tokens: names and digests unique, revoked tokens stop authenticating, names stay taken.
        #[::tokio::test]
        async fn api_tokens_are_unique_revocable_and_never_reused() {
            let (_dir, _backend, store) = $fresh().await;
            $crate::conformance::suite_api_tokens(store).await;
        }

        // Idempotency: started, in progress, mismatch, replay, abandoned, resumed (with a create's task).
        #[::tokio::test]
        async fn idempotency_keys_replay_refuse_mismatches_and_resume_creates() {
            let (_dir, _backend, store) = $fresh().await;
            $crate::conformance::suite_idempotency(store).await;
        }

        // A second create for a live ticket returns the live task instead of a bare error.
        #[::tokio::test]
        async fn a_live_external_ref_answers_with_its_task() {
            let (_dir, _backend, store) = $fresh().await;
            $crate::conformance::suite_external_ref_exists(store).await;
        }

        // The live task of a ticket is found by its reference; done and cancelled tasks are not live.
        #[::tokio::test]
        async fn live_task_by_external_ref_ignores_ended_tasks() {
            let (_dir, _, store) = $fresh().await;
            $crate::conformance::suite_live_task_by_external_ref(store).await;
        }

        // Webhook inbox: one row per (source, delivery id), replays change nothing, pending rows are marked once.
        #[::tokio::test]
        async fn webhook_deliveries_are_stored_once_and_marked_once() {
            let (_dir, _backend, store) = $fresh().await;
            $crate::conformance::suite_webhook_deliveries(store).await;
        }

        // Eight claimers on their own connections never exceed the global or per-repository limit.
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_claimers_respect_running_limits() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_claim_limits_concurrent(store).await;
        }

        // A reader paging events by id during concurrent writes sees each committed event once.
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn an_events_cursor_never_skips_a_concurrent_write() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_events_cursor_concurrent(store).await;
        }

        // Aggregate metrics agree with the reference definition over the same rows.
        #[::tokio::test]
        async fn metric_counts_agree_with_the_records() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_metric_counts(store).await;
        }

        // A change feed, where the backend has one, hears another handle's queued and stopped jobs.
        #[::tokio::test]
        async fn change_feed_hears_another_handles_queued_and_stopped_jobs() {
            let (_keep, backend, store) = $fresh().await;
            $crate::conformance::suite_change_feed(store, &backend).await;
        }

        // Instances heartbeat: inserted, moved forward only, replaced on restart.
        #[::tokio::test]
        async fn instances_heartbeat_forward_and_restart() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_instances(store).await;
        }

        // A batched claim takes the best jobs in turn and stops at the limits.
        #[::tokio::test]
        async fn batched_claims_take_jobs_in_order_within_the_limits() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_claim_batch(store).await;
        }

        // Pruning in small batches deletes exactly the old rows the retention rule names, and a pass after the last deletes nothing.
        #[::tokio::test]
        async fn prune_deletes_exactly_the_old_history_the_rule_names() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_prune(store).await;
        }

        // The coverage baseline rises only by compare-and-set; the override sets it either way.
        #[::tokio::test]
        async fn coverage_baseline_never_decreases_and_the_override_sets_it() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_coverage_baseline(store).await;
        }

        // Eight concurrent raises of one baseline keep the highest of them.
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_coverage_raises_keep_the_highest() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_coverage_baseline_race(store).await;
        }

        // Parking in the merge queue enters the task in the same transaction; a stale parking enters nothing.
        #[::tokio::test]
        async fn merge_queue_entries_commit_with_the_parking_and_leave_with_the_lease() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_merge_queue(store).await;
        }

        // Lessons upsert by slug within a dedup window, list by scope, edit and count hits.
        #[::tokio::test]
        async fn lessons_upsert_by_slug_list_by_scope_and_count_hits() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_lessons(store).await;
        }

        // A retro's proposals: proposed lessons stay out of the active list until accepted; task
        // proposals are kept once, decided once, released and linked to their task once.
        #[::tokio::test]
        async fn retro_proposals_are_kept_once_and_decided_once() {
            let (_keep, _backend, store) = $fresh().await;
            $crate::conformance::suite_retro_proposals(store).await;
        }
    };
}
