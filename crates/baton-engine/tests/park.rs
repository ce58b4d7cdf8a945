//! Worktrees parked while a task is paused: a task entering `paused_budget` has its worktree
//! removed by a durable `park_worktree` outbox row (the branch, with the agent's committed work,
//! stays), and when it is resumed the stage's `ensure_worktree` recreates the worktree from the
//! branch: the agent finds the earlier stage's file back. Real git and SQLite.
// Test scaffolding: a failed setup step or a poisoned lock should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use baton_domain::Hold;
use baton_domain::pipeline::{Actor, GateSpec, OnGateFail, Pipeline, StageSpec};
use baton_engine::{Clock, EngineSettings, Input, NewTaskRequest};
use baton_store::TaskKey;
use std::sync::{Arc, Mutex};
use support::{NotingEngine, git};

mod support;

#[tokio::test]
async fn a_budget_pause_parks_the_worktree_and_resuming_brings_the_committed_work_back() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("app");
    support::init_repo(&repo);
    let stage = |name: &str, gates: Vec<GateSpec>| StageSpec {
        name: name.into(),
        actor: Actor::Agent { role: "developer".into() },
        artifact: None,
        gates,
        confirm_before: false,
        on_gate_fail: OnGateFail::Retry,
        overrides: Default::default(),
        after_ship: false,
    };
    let pipeline = Pipeline {
        stages: vec![stage("analysis", vec![]), stage("development", vec![])],
        ..Pipeline::default_pipeline()
    };
    let settings = EngineSettings {
        budgets: baton_engine::Budgets { task_usd: Some(0.5), ..Default::default() },
        ..support::engine_settings(dir.path(), &repo, pipeline)
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    // Each run costs a dollar: the second stage starts over a half-dollar task cap.
    let noting = NotingEngine::open(settings, &dir.path().join("baton.db"), seen.clone(), Some(1.0)).await;
    let (engine, clock, step) = (&noting.engine, &noting.clock, || noting.step());
    let task = engine
        .create_task(NewTaskRequest {
            repo: "app".into(),
            title: "add feature".into(),
            body: "".into(),
            external_ref: None,
        })
        .await
        .unwrap();
    let worktree =
        baton_engine::workspace::worktree_path(&engine.settings().worktrees_dir(), "app", &task.work_item_id).unwrap();

    assert_eq!(step().await, "analysis");
    assert_eq!(step().await, "development");
    let held = engine.store().task(&TaskKey::Id(task.id)).await.unwrap().unwrap();
    assert!(matches!(held.state.hold, Hold::PausedBudget { .. }), "{:?}", held.state);
    baton_engine::effects::drain(engine, None).await;
    let parked: Vec<_> = engine.store().effects(Some(task.id), false).await.unwrap();
    assert!(parked.iter().any(|e| e.kind == "park_worktree" && e.done_at_ms.is_some()), "{parked:#?}");
    assert!(!worktree.exists(), "the worktree is parked while the task is paused");
    let tree = git(&repo, &["ls-tree", "--name-only", &held.branch]);
    assert!(tree.lines().any(|f| f == "work-1.txt"), "the agent's work is committed on the branch: {tree}");

    let now = clock.now_ms();
    engine.store().set_budget_cap(&format!("task:{}", task.id), Some(100.0), now).await.unwrap();
    let outcome = engine.submit(&TaskKey::Id(task.id), Input::Resume, "cli:test", None).await.unwrap();
    assert!(matches!(outcome, baton_engine::InputOutcome::Applied { .. }), "{outcome:?}");
    assert_eq!(step().await, "development");
    // The budget stopped the first development run after it wrote (and the executor committed)
    // its file; the resumed run works in a worktree recreated from the branch, holding both.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.last().map(String::as_str), Some("work-1.txt,work-2.txt"), "the work came back: {seen:?}");
}
