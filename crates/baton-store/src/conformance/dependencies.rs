//! The dependency and serial-gate suites (SPEC §6.4): declared dependencies keep a task's jobs out
//! of the claim until every dependency is done, without taking a concurrency slot; the serial gate
//! keeps a first-stage job out while an earlier unfinished task of its repository exists; each gate
//! is ignored for the repositories a claim exempts.

use super::{T0, claim_at, create, enqueue, finished, limits, new_task, reload, step};
use crate::{Claim, NewTask, Store, StoreError, TaskRecord, Transition};
use baton_domain::TaskId;
use serde_json::json;
use std::sync::Arc;

/// Claims up to ten jobs with `claim` and returns the tasks they belong to, best first.
async fn claimed_tasks(store: &dyn Store, claim: &Claim) -> Vec<TaskId> {
    store.claim_jobs(claim, 10).await.unwrap().into_iter().map(|j| j.task_id).collect()
}

/// Claims `task`'s current job and finishes it, moving the task to `stage` (`done`, `cancelled`).
async fn finish_as(store: &dyn Store, task: &TaskRecord, stage: &str) {
    let task = reload(store, task.id).await;
    let job = task.state.job.expect("a current job");
    let running = store.job(job).await.unwrap().unwrap();
    assert_eq!(running.status, crate::JobStatus::Running, "the job was claimed before it ends");
    store.advance(step(&task, stage, finished(job, json!({})), Transition::default())).await.unwrap();
}

/// Declaring, reading and withdrawing dependencies; the claim skips a waiting task's job without
/// counting it against the limits, and takes it once the dependency is done.
pub async fn suite_dependencies(store: Arc<dyn Store>) {
    let a = create(&*store, "alpha", "A").await;
    let b = create(&*store, "alpha", "A").await;
    let c = create(&*store, "alpha", "A").await;
    assert!(store.add_dependency(b.id, a.id, "ann", T0).await.unwrap(), "a new dependency");
    assert!(!store.add_dependency(b.id, a.id, "bob", T0 + 1).await.unwrap(), "declared twice: nothing changes");
    assert!(matches!(store.add_dependency(b.id, b.id, "ann", T0).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.add_dependency(b.id, TaskId(999_999), "ann", T0).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.add_dependency(TaskId(999_999), a.id, "ann", T0).await, Err(StoreError::NotFound(_))));

    let declared = store.dependencies(b.id).await.unwrap();
    assert_eq!(declared.len(), 1);
    let d = &declared[0];
    assert_eq!((d.task_id, d.depends_on, d.created_by.as_str(), d.created_at_ms), (b.id, a.id, "ann", T0));
    assert_eq!(
        (d.depends_on_work_item.as_str(), d.depends_on_stage.as_str(), d.met()),
        (a.work_item_id.as_str(), "analysis", false)
    );
    assert!(store.dependencies(a.id).await.unwrap().is_empty());
    assert_eq!(store.live_dependencies().await.unwrap(), declared);

    // Two slots in the repository: the waiting B takes none, so A and C run.
    let claimed = claimed_tasks(&*store, &limits("w", T0, 10, 2)).await;
    assert_eq!(claimed, vec![a.id, c.id], "B waits for A without holding a slot");
    assert!(store.claim_job(&claim_at("w", T0)).await.unwrap().is_none(), "B is still waiting");

    // A cancelled dependency is not done: B keeps waiting (the engine blocks it for a human).
    finish_as(&*store, &a, "done").await;
    assert!(store.dependencies(b.id).await.unwrap()[0].met());
    let next = store.claim_job(&claim_at("w", T0)).await.unwrap().expect("B runs once A is done");
    assert_eq!(next.task_id, b.id);

    // Only live dependents are in the waiting graph.
    finish_as(&*store, &b, "done").await;
    assert!(store.live_dependencies().await.unwrap().is_empty());
    assert_eq!(store.dependencies(b.id).await.unwrap().len(), 1, "a finished task keeps its history");

    assert!(store.remove_dependency(b.id, a.id).await.unwrap());
    assert!(!store.remove_dependency(b.id, a.id).await.unwrap(), "withdrawn twice: nothing changes");
    assert!(store.dependencies(b.id).await.unwrap().is_empty());

    // Created waiting: the dependencies are there before the first claim can see the task.
    let new = NewTask { depends_on: vec![c.id, c.id], ..new_task("alpha", "A", "Waits") };
    let d = store.create_task(new, enqueue("analysis", 0), T0).await.unwrap();
    let declared = store.dependencies(d.id).await.unwrap();
    assert_eq!(
        declared.iter().map(|r| (r.depends_on, r.created_by.as_str())).collect::<Vec<_>>(),
        vec![(c.id, crate::DEPENDS_AT_CREATE)]
    );
    assert!(store.claim_job(&claim_at("w", T0)).await.unwrap().is_none(), "D waits for C from its creation");
    let missing = NewTask { depends_on: vec![TaskId(999_999)], ..new_task("alpha", "A", "Nothing") };
    assert!(matches!(store.create_task(missing, enqueue("analysis", 0), T0).await, Err(StoreError::NotFound(_))));
    let tasks = store.list_tasks(&crate::TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.len(), 4, "a create naming a missing task stores nothing");
}

/// A cancelled dependency never lets its dependent run; a claim exempting the repository (the
/// switch off there) ignores the dependency, and withdrawing it frees the task.
pub async fn suite_dependency_cancelled_and_exempt(store: Arc<dyn Store>) {
    let a = create(&*store, "alpha", "A").await;
    let b = create(&*store, "alpha", "A").await;
    let x = create(&*store, "beta", "B").await;
    let y = create(&*store, "beta", "B").await;
    store.add_dependency(b.id, a.id, "ann", T0).await.unwrap();
    store.add_dependency(y.id, x.id, "ann", T0).await.unwrap();
    assert_eq!(claimed_tasks(&*store, &claim_at("w", T0)).await, vec![a.id, x.id]);
    finish_as(&*store, &a, "cancelled").await;
    assert!(store.claim_job(&claim_at("w", T0)).await.unwrap().is_none(), "a cancelled dependency is never met");
    let live = store.live_dependencies().await.unwrap();
    assert_eq!(
        live.iter().map(|d| (d.task_id, d.depends_on_stage.as_str())).collect::<Vec<_>>(),
        vec![(b.id, "cancelled"), (y.id, "analysis")]
    );

    let exempt = Claim { dependency_free_repos: vec!["beta".into()], ..claim_at("w", T0) };
    assert_eq!(claimed_tasks(&*store, &exempt).await, vec![y.id], "beta's dependencies are ignored, alpha's not");
    assert!(store.remove_dependency(b.id, a.id).await.unwrap());
    assert_eq!(claimed_tasks(&*store, &claim_at("w", T0)).await, vec![b.id], "withdrawn: B runs");
}

/// In a serial repository only the earliest unfinished task starts its first stage; a later task
/// already past its first stage, and other repositories, are not held; when the earlier task ends
/// (done or cancelled) the next one is admitted.
pub async fn suite_serial_gate(store: Arc<dyn Store>) {
    let serial = |now_ms| Claim { serial_repos: vec!["alpha".into()], ..claim_at("w", now_ms) };
    let t1 = create(&*store, "alpha", "A").await;
    let t2 = create(&*store, "alpha", "A").await;
    let t3 = create(&*store, "alpha", "A").await;
    let other = create(&*store, "beta", "B").await;
    // T3 is already past its first stage (the gate switched on mid-flight): it is not held.
    let moved = reload(&*store, t3.id).await;
    let later = Transition { enqueue: Some(("development".into(), 0)), rank: 3, ..Transition::default() };
    store.advance(step(&moved, "development", None, later)).await.unwrap();

    // (T3's new job is available from the advance's time, `T0 + 1`.)
    let claimed = claimed_tasks(&*store, &serial(T0 + 1)).await;
    assert_eq!(claimed, vec![t3.id, t1.id, other.id], "T2 waits behind T1; T3 and beta run");
    assert!(store.claim_job(&serial(T0 + 1)).await.unwrap().is_none(), "T2 is held while T1 is unfinished");

    finish_as(&*store, &t1, "cancelled").await;
    // T3 is still unfinished and earlier than nothing that waits: T2 (id below T3) is admitted.
    let admitted = store.claim_job(&serial(T0 + 1)).await.unwrap().expect("T2 is admitted once T1 ended");
    assert_eq!(admitted.task_id, t2.id);

    let t4 = create(&*store, "alpha", "A").await;
    assert!(store.claim_job(&serial(T0 + 1)).await.unwrap().is_none(), "T4 waits behind T2 and T3");
    let unserial = claim_at("w", T0 + 1);
    assert_eq!(claimed_tasks(&*store, &unserial).await, vec![t4.id], "without the gate T4 runs at once");

    // A frozen serial repository admits no first stage, even with nothing unfinished ahead; a
    // frozen repository that is not serial is not held here (its merges are).
    let frozen = |now_ms| Claim { serial_repos: vec!["gamma".into()], ..claim_at("w", now_ms) };
    let g1 = create(&*store, "gamma", "G").await;
    let d1 = create(&*store, "delta", "D").await;
    for repo in ["gamma", "delta"] {
        let freeze = crate::NewFreeze {
            repo: repo.into(),
            task: None,
            frozen_by: "monitor".into(),
            reason: "deploy degraded".into(),
        };
        store.freeze_repo(&freeze, T0).await.unwrap();
    }
    let first = store.claim_job(&frozen(T0 + 1)).await.unwrap().expect("delta is not serial: D1 runs");
    assert_eq!(first.task_id, d1.id, "G1 waits while gamma is frozen");
    assert!(claimed_tasks(&*store, &frozen(T0 + 1)).await.is_empty(), "a batch claim holds G1 back too");
    store.unfreeze_repo("gamma", "ann", T0 + 2).await.unwrap().expect("gamma was frozen");
    assert_eq!(claimed_tasks(&*store, &frozen(T0 + 2)).await, vec![g1.id], "unfrozen: G1 is admitted");
}
