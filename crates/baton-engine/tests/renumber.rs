//! A database lost and started afresh on a repository that keeps its task branches: the counter
//! would hand out `APP-001` again, and a new task titled as the old one would check out the old
//! task's branch, unmerged work and all, under its own name. The engine numbers past every task
//! branch the repository carries before its first new task, so the new task gets a number, a
//! branch and a worktree of its own, and the old branch is left as it was. Real git and SQLite.
// Test scaffolding: a failed setup step or a poisoned lock should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use baton_domain::pipeline::{Actor, OnGateFail, Pipeline};
use baton_engine::NewTaskRequest;
use std::sync::{Arc, Mutex};
use support::{NotingEngine, git};

mod support;

#[tokio::test]
async fn a_fresh_database_numbers_past_the_task_branches_the_repository_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("app");
    support::init_repo(&repo);
    let stage = |name: &str| support::stage(name, Actor::Agent { role: "developer".into() }, vec![], OnGateFail::Retry);
    let pipeline = Pipeline { stages: vec![stage("analysis"), stage("development")], ..Pipeline::default_pipeline() };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // Two lives of Baton on one repository, each with a data directory (and database) of its own:
    // the first one's is gone when the second starts.
    for life in 0..2 {
        let data = dir.path().join(format!("life-{life}"));
        let settings = support::engine_settings(&data, &repo, pipeline.clone());
        std::fs::create_dir_all(&settings.data_dir).unwrap();
        let noting =
            NotingEngine::open(settings.clone(), &settings.data_dir.join("baton.db"), seen.clone(), None).await;
        let request =
            NewTaskRequest { repo: "app".into(), title: "add feature".into(), body: "".into(), external_ref: None };
        let task = noting.engine.create_task(request).await.unwrap();
        assert_eq!(noting.step().await, "analysis");
        tasks.push(task);
        drop(noting);
        std::fs::remove_dir_all(&data).unwrap();
    }
    let (old, new) = (&tasks[0], &tasks[1]);
    assert_eq!((old.work_item_id.as_str(), old.branch.as_str()), ("APP-001", "baton/APP-001-add-feature"));
    assert_eq!((new.work_item_id.as_str(), new.branch.as_str()), ("APP-002", "baton/APP-002-add-feature"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, ["", ""], "each task's agent starts from the default branch, with no work of another");
    let files = |branch: &str| git(&repo, &["ls-tree", "--name-only", branch]);
    assert_eq!(files(&old.branch), "README\nwork-1.txt", "the old task's branch is left as it was");
    assert_eq!(files(&new.branch), "README\nwork-2.txt", "the new task's branch holds its own work only");
}
