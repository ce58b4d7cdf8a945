//! The retention suite: [`suite_prune`] builds a history of ended and live tasks with old and new
//! rows of every kind, prunes it in small batches, and checks that exactly the rows
//! [`crate::retention`] names went and everything else stayed.

use super::{T0, create, delivery, enqueue, events_of, finished, inbox, reload, report, run, tokens};
use crate::{
    Advance, EffectRecord, JobStatus, NewEffect, NewEvent, PruneCounts, SpendFilter, Store, TaskFilter, TaskRecord,
    Transition, UsageGroup, task_holder,
};
use baton_domain::{AgentStatus, JobId, TaskId, TaskState};
use serde_json::json;
use std::sync::Arc;

/// The cutoff of the pruning passes: everything before is old.
const CUTOFF: i64 = T0 + 30 * super::DAY_MS;
/// A time after the cutoff: rows from then are new and stay.
const NEW: i64 = CUTOFF + 1_000;
/// Rows of each kind one pass deletes at most (small, so the suite needs several passes).
const BATCH: u32 = 2;
/// Passes before the suite gives up on the store ever reporting an empty one.
const PASSES_MAX: usize = 50;

/// A stage transition of `task` (as read now) to `to` at `at_ms`: the event carries `from` and
/// `to`, as every transition the engine records does.
fn move_to(
    task: &TaskRecord,
    to: &str,
    at_ms: i64,
    finish: Option<crate::JobFinish>,
    transition: Transition,
) -> Advance {
    Advance {
        task: task.id,
        expected_version: task.version,
        next: TaskState::new(to),
        finish_job: finish,
        event: NewEvent {
            task: task.id,
            at_ms,
            kind: "job_finished".into(),
            stage: to.into(),
            message: format!("{} → {to}", task.state.stage),
            detail: json!({ "from": task.state.stage, "to": to, "event": { "kind": "job_finished" } }),
        },
        transition,
        inbox: None,
        effects: Vec::new(),
        now_ms: at_ms,
    }
}

fn event(task: TaskId, at_ms: i64, kind: &str, detail: serde_json::Value) -> NewEvent {
    NewEvent { task, at_ms, kind: kind.into(), stage: "any".into(), message: format!("{kind} line"), detail }
}

async fn job_ids(store: &dyn Store, task: TaskId) -> Vec<JobId> {
    store.jobs_for_task(task).await.unwrap().into_iter().map(|j| j.id).collect()
}

async fn event_ids(store: &dyn Store, task: TaskId) -> Vec<i64> {
    events_of(store, task).await.into_iter().map(|e| e.id).collect()
}

async fn effects_of(store: &dyn Store, task: TaskId) -> Vec<EffectRecord> {
    store.effects(Some(task), false).await.unwrap()
}

/// The task `E`, ended (`done`) long ago: a run on its first job, chatter, a gate verdict, two
/// transitions, three effects (one acknowledged before the cutoff, one after, one pending), an
/// old and a new suppressed input, a new progress line.
async fn ended_task(store: &dyn Store) -> (TaskRecord, JobId) {
    let e = create(store, "alpha", "E").await;
    let first = store.claim_job(&super::claim_at("worker", T0 + 1)).await.unwrap().unwrap().id;
    run(store, &e, "analysis", T0 + 2, report(AgentStatus::Succeeded, tokens(100, 10, 0, 0), Some(0.5), None)).await;
    store.append_event(event(e.id, T0 + 3, "progress", json!({ "line": "reading the code" }))).await.unwrap();
    store.append_event(event(e.id, T0 + 4, "agent", json!({ "text": "I will add a test" }))).await.unwrap();
    store.append_event(event(e.id, T0 + 5, "lease_reclaimed", json!({ "lease": "merge:alpha" }))).await.unwrap();
    store.append_event(event(e.id, T0 + 6, "gate", json!({ "gate": "tests", "verdict": "pass" }))).await.unwrap();
    // Not strings: not a transition, whatever the keys.
    store.append_event(event(e.id, T0 + 7, "odd", json!({ "from": 1, "to": 2 }))).await.unwrap();
    let to_design =
        move_to(&reload(store, e.id).await, "design", T0 + 10, finished(first, json!({})), enqueue("design", 0));
    store.advance(to_design).await.unwrap();
    let second = store.claim_job(&super::claim_at("worker", T0 + 11)).await.unwrap().unwrap().id;
    let release = Transition { release_leases: true, ..Transition::default() };
    let mut to_done = move_to(&reload(store, e.id).await, "done", T0 + 20, finished(second, json!({})), release);
    to_done.effects = ["remove_worktree", "notify", "delete_branch"]
        .map(|kind| NewEffect { kind: kind.into(), payload: json!({ "effect": kind }) })
        .to_vec();
    store.advance(to_done).await.unwrap();
    let suppressed = |at_ms| event(e.id, at_ms, "suppressed", json!({ "event": { "kind": "approve" } }));
    store.record_suppressed(e.id, Some(inbox("e-old")), suppressed(T0 + 21)).await.unwrap();
    store.record_suppressed(e.id, Some(inbox("e-new")), suppressed(NEW)).await.unwrap();
    store.append_event(event(e.id, NEW, "progress", json!({ "line": "late line" }))).await.unwrap();
    let effects = effects_of(store, e.id).await;
    assert!(store.complete_effect(effects[0].id, T0 + 30).await.unwrap());
    assert!(store.complete_effect(effects[1].id, NEW).await.unwrap());
    (reload(store, e.id).await, first)
}

/// The task `C`, cancelled long ago with its job queued: the STOP came as an input and wrote an
/// effect acknowledged at once.
async fn cancelled_task(store: &dyn Store) -> TaskRecord {
    let c = create(store, "alpha", "C").await;
    store.append_event(event(c.id, T0 + 40, "progress", json!({ "line": "queued" }))).await.unwrap();
    let stop = Transition { cancel_jobs: true, release_leases: true, ..Transition::default() };
    let mut cancel = move_to(&reload(store, c.id).await, "cancelled", T0 + 41, None, stop);
    cancel.inbox = Some(inbox("c-stop"));
    cancel.effects = vec![NewEffect { kind: "remove_worktree".into(), payload: json!({}) }];
    store.advance(cancel).await.unwrap();
    let effect = effects_of(store, c.id).await[0].id;
    assert!(store.complete_effect(effect, T0 + 42).await.unwrap());
    reload(store, c.id).await
}

/// Live tasks: `H` holds on a current job that failed long ago; `N` finished its first job (with
/// a run) after the cutoff; `L` finished its first job (no run) long ago and has the next queued,
/// an old input, old chatter and a lease.
async fn live_tasks(store: &dyn Store) -> [TaskRecord; 3] {
    let h = create(store, "beta", "H").await;
    let held = store.claim_job(&super::claim_at("worker", T0 + 50)).await.unwrap().unwrap().id;
    assert!(store.close_job(held, JobStatus::Failed, json!({}), T0 + 51).await.unwrap());
    store.append_event(event(h.id, T0 + 52, "progress", json!({ "line": "waiting" }))).await.unwrap();

    let n = create(store, "beta", "N").await;
    let n_first = store.claim_job(&super::claim_at("worker", T0 + 60)).await.unwrap().unwrap().id;
    run(store, &n, "analysis", T0 + 61, report(AgentStatus::Succeeded, tokens(50, 5, 0, 0), Some(0.25), None)).await;
    let to_design =
        move_to(&reload(store, n.id).await, "design", NEW, finished(n_first, json!({})), enqueue("design", 0));
    store.advance(to_design).await.unwrap();

    let l = create(store, "beta", "L").await;
    let l_first = store.claim_job(&super::claim_at("worker", T0 + 70)).await.unwrap().unwrap().id;
    let mut to_design =
        move_to(&reload(store, l.id).await, "design", T0 + 71, finished(l_first, json!({})), enqueue("design", 0));
    to_design.inbox = Some(inbox("l-old"));
    store.advance(to_design).await.unwrap();
    store.append_event(event(l.id, T0 + 72, "progress", json!({ "line": "designing" }))).await.unwrap();
    store.acquire_lease("merge:beta", &task_holder(l.id), 60_000, T0 + 73).await.unwrap();
    [reload(store, h.id).await, reload(store, n.id).await, reload(store, l.id).await]
}

/// Prunes in passes of [`BATCH`] until one deletes nothing; returns every pass's counts.
async fn prune_until_empty(store: &dyn Store) -> Vec<PruneCounts> {
    let mut passes = Vec::new();
    for _ in 0..PASSES_MAX {
        let pass = store.prune(CUTOFF, BATCH).await.unwrap();
        for n in [pass.events, pass.jobs, pass.outbox, pass.deliveries, pass.inbox] {
            assert!(n <= u64::from(BATCH), "a pass deletes at most the limit of each kind: {pass:?}");
        }
        passes.push(pass);
        if pass.is_empty() {
            return passes;
        }
    }
    panic!("{PASSES_MAX} prune passes and still deleting: {passes:?}");
}

/// Retention: pruning in small batches deletes exactly the old rows the rule names — ended tasks'
/// chatter, finished jobs without runs that are not current, acknowledged effects, processed
/// deliveries, ended tasks' inputs and old one-shot keys — and leaves the rest (summaries, live
/// tasks' history, jobs with runs, current jobs, spend, leases, caps, tokens) untouched.
pub async fn suite_prune(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let (e, e_first) = ended_task(store).await;
    let c = cancelled_task(store).await;
    let [h, n, l] = live_tasks(store).await;
    assert!(store.record_once("once-old", "budget_warning", T0 + 80).await.unwrap());
    assert!(store.record_once("once-new", "budget_warning", NEW).await.unwrap());
    for (i, processed_at) in [Some(T0 + 90), Some(T0 + 91), Some(T0 + 92), Some(NEW), None].into_iter().enumerate() {
        assert!(store.record_delivery(delivery("github", &format!("d-{i}"), "{}")).await.unwrap());
        if let Some(at) = processed_at {
            let id = store.deliveries(None).await.unwrap().last().unwrap().id;
            assert!(store.mark_delivery(id, at, Some("handled"), None).await.unwrap());
        }
    }
    store.set_budget_cap("global", Some(10.0), T0).await.unwrap();
    store.create_api_token("ops", "digest-ops", "admin", "test", T0).await.unwrap();

    let live_events = [event_ids(store, h.id).await, event_ids(store, n.id).await, event_ids(store, l.id).await];
    let runs_before = [store.agent_runs(e.id).await.unwrap().len(), store.agent_runs(n.id).await.unwrap().len()];
    let spend_before = store.spend_usd(&SpendFilter::default()).await.unwrap();
    let usage_before = format!("{:?}", store.usage(UsageGroup::Task).await.unwrap());
    let leases_before = format!("{:?}", store.leases().await.unwrap());

    let passes = prune_until_empty(store).await;
    let full = PruneCounts { events: 2, jobs: 2, outbox: 2, deliveries: 2, inbox: 2 };
    assert_eq!(passes[0], full, "the first pass fills every batch");
    let mut total = PruneCounts::default();
    passes.iter().for_each(|pass| total.add(*pass));
    let expected = PruneCounts { events: 6, jobs: 3, outbox: 2, deliveries: 3, inbox: 3 };
    assert_eq!(total, expected, "passes: {passes:?}");
    assert!(store.prune(CUTOFF, BATCH).await.unwrap().is_empty(), "a pass after the last deletes nothing");

    // The ended tasks keep their summary (and what is newer than the cutoff), nothing else.
    let kinds = |events: Vec<crate::EventRecord>| events.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(events_of(store, e.id).await),
        ["created", "gate", "job_finished", "job_finished", "suppressed", "progress"]
    );
    assert_eq!(kinds(events_of(store, c.id).await), ["created", "job_finished"]);
    let live_after = [event_ids(store, h.id).await, event_ids(store, n.id).await, event_ids(store, l.id).await];
    assert_eq!(live_after, live_events, "a live task's timeline is never pruned");

    // Jobs: the one with a run, the current ones and the recently finished stay.
    assert_eq!(job_ids(store, e.id).await, [e_first], "the job with a run stays; the other went");
    assert!(job_ids(store, c.id).await.is_empty(), "the cancelled job went");
    assert_eq!(job_ids(store, h.id).await.len(), 1, "a current job stays, however old");
    assert_eq!(job_ids(store, n.id).await.len(), 2, "a job finished after the cutoff stays");
    assert_eq!(job_ids(store, l.id).await, [l.state.job.unwrap()], "only the current job of L stays");

    // Outbox: the pending row and the one acknowledged after the cutoff.
    let left: Vec<Option<i64>> = effects_of(store, e.id).await.into_iter().map(|r| r.done_at_ms).collect();
    assert_eq!(left, [Some(NEW), None]);
    assert!(effects_of(store, c.id).await.is_empty());
    // Deliveries: the one processed after the cutoff and the pending one.
    let deliveries: Vec<String> = store.deliveries(None).await.unwrap().into_iter().map(|d| d.delivery_id).collect();
    assert_eq!(deliveries, ["d-3", "d-4"]);
    // Inbox: old rows of ended tasks and old one-shot keys went; a live task's and new ones stay.
    for (key, kept) in
        [("e-old", false), ("c-stop", false), ("once-old", false), ("e-new", true), ("l-old", true), ("once-new", true)]
    {
        assert_eq!(store.inbox_seen(key).await.unwrap(), kept, "inbox key {key}");
    }

    // Never tasks, runs, spend, leases, caps or tokens.
    assert_eq!(store.list_tasks(&TaskFilter::default()).await.unwrap().len(), 5);
    let runs_after = [store.agent_runs(e.id).await.unwrap().len(), store.agent_runs(n.id).await.unwrap().len()];
    assert_eq!(runs_after, runs_before);
    assert_eq!(store.spend_usd(&SpendFilter::default()).await.unwrap(), spend_before);
    assert_eq!(format!("{:?}", store.usage(UsageGroup::Task).await.unwrap()), usage_before);
    assert_eq!(format!("{:?}", store.leases().await.unwrap()), leases_before);
    assert_eq!(store.budget_caps().await.unwrap(), [("global".to_string(), Some(10.0))]);
    assert_eq!(store.api_tokens().await.unwrap().len(), 1);
}
