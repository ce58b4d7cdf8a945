//! What a task that ended leaves in its repository: its worktree goes, and so does the record of
//! what the merge gate last built its branch on (`refs/baton/built-on/<branch>`), one reference a
//! task would otherwise leave behind for good; the task branch itself stays (a local repository
//! keeps the change's history before the squash). Real git and SQLite.
// Test scaffolding: a failed setup step or a poisoned lock should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use baton_domain::pipeline::{Actor, OnGateFail, Pipeline};
use baton_engine::NewTaskRequest;
use baton_store::TaskKey;
use std::sync::{Arc, Mutex};
use support::{NotingEngine, git};

mod support;

#[tokio::test]
async fn a_task_that_reaches_done_leaves_no_built_on_reference_and_keeps_its_branch() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("app");
    support::init_repo(&repo);
    let stage = support::stage("development", Actor::Agent { role: "developer".into() }, vec![], OnGateFail::Retry);
    let pipeline = Pipeline { stages: vec![stage], ..Pipeline::default_pipeline() };
    let settings = support::engine_settings(dir.path(), &repo, pipeline);
    let noting =
        NotingEngine::open(settings, &dir.path().join("baton.db"), Arc::new(Mutex::new(Vec::new())), None).await;
    let engine = &noting.engine;
    let request =
        NewTaskRequest { repo: "app".into(), title: "add feature".into(), body: "".into(), external_ref: None };
    let task = engine.create_task(request).await.unwrap();
    // What a merge gate's build records for the branch (the base it squashed the branch onto).
    let main = git(&repo, &["rev-parse", "main"]);
    let built_on = format!("refs/baton/built-on/{}", task.branch);
    git(&repo, &["update-ref", &built_on, &main]);
    let worktree =
        baton_engine::workspace::worktree_path(&engine.settings().worktrees_dir(), "app", &task.work_item_id).unwrap();

    assert_eq!(noting.step().await, "development");
    baton_engine::effects::drain(engine, None).await;

    let done = engine.store().task(&TaskKey::Id(task.id)).await.unwrap().unwrap();
    assert_eq!(done.state.stage, baton_domain::pipeline::DONE, "{:?}", done.state);
    let effects = engine.store().effects(Some(task.id), false).await.unwrap();
    assert!(effects.iter().any(|e| e.kind == "remove_worktree" && e.done_at_ms.is_some()), "{effects:#?}");
    assert!(!worktree.exists(), "the worktree is removed");
    assert_eq!(
        git(&repo, &["for-each-ref", "--format=%(refname)", "refs/baton/"]),
        "",
        "no built-on reference is left"
    );
    let tree = git(&repo, &["ls-tree", "--name-only", &task.branch]);
    assert!(tree.lines().any(|f| f == "work-1.txt"), "the branch stays, with the task's work: {tree}");
}
