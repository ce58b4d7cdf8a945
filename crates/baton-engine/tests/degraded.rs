//! The `degraded` effect carried out more than once (an outbox retry, a crash in its middle) files
//! one incident and one revert for the degraded task: both are created under a filing key of the
//! degraded task, so a later try finds them instead of filing again, links them, and prepares and
//! confirms the revert once. Real git and SQLite.
// Test scaffolding: a failed setup step should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use baton_domain::pipeline::Pipeline;
use baton_domain::{Hold, TaskId, TaskState};
use baton_engine::monitor::{self, INCIDENT_FILED, REVERT_FILED, REVERT_PREPARED, REVERT_REF_PREFIX};
use baton_engine::{Engine, EngineSettings, Features, Input, NewTaskRequest, RepoSettings};
use baton_store::{IdempotencyBegin, NewEvent, TaskFilter, TaskKey, TaskRecord};
use baton_store_sqlite::SqliteStore;
use std::sync::Arc;
use support::git;

mod support;

/// An engine over a real repository whose `main` took a feature commit (`base..head`), and the
/// task that merged it, its `merged` event on its timeline.
struct Setup {
    _dir: tempfile::TempDir,
    repo: std::path::PathBuf,
    engine: Arc<Engine>,
    task: TaskRecord,
}

async fn setup(revert_confirm: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("app");
    support::init_repo(&repo);
    let base = git(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("feature.txt"), "slow path\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "feature"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let settings = EngineSettings {
        data_dir: dir.path().join("data"),
        limits: Default::default(),
        repos: vec![RepoSettings {
            monitor_window_secs: 60,
            monitor_interval_secs: 10,
            monitor_failures: 2,
            revert_on_degraded: true,
            revert_confirm,
            ..support::repo_settings(&repo)
        }],
        agents: Default::default(),
        pipeline: Pipeline::default_pipeline(),
        budgets: Default::default(),
        baton_exe: dir.path().join("baton"),
        env_passthrough: vec![],
    };
    let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
    let engine = Engine::builder(settings, Arc::new(store)).features(Features::all_on()).build();
    let request =
        NewTaskRequest { repo: "app".into(), title: "slow path".into(), body: String::new(), external_ref: None };
    let task = engine.create_task(request).await.unwrap();
    let merged = NewEvent {
        task: task.id,
        at_ms: engine.clock().now_ms(),
        kind: "merged".into(),
        stage: "deploy".into(),
        message: "merged".into(),
        detail: serde_json::json!({ "base": base, "head": head }),
    };
    engine.store().append_event(merged).await.unwrap();
    Setup { _dir: dir, repo, engine, task }
}

async fn tasks_titled(engine: &Engine, prefix: &str) -> Vec<TaskRecord> {
    let all = engine.store().list_tasks(&TaskFilter::default()).await.unwrap();
    all.into_iter().filter(|t| t.title.starts_with(prefix)).collect()
}

async fn timeline_kinds(engine: &Engine, task: TaskId) -> Vec<String> {
    engine.store().events(Some(task), 0, 500).await.unwrap().into_iter().map(|e| e.kind).collect()
}

async fn read(engine: &Engine, id: TaskId) -> TaskRecord {
    engine.store().task(&TaskKey::Id(id)).await.unwrap().unwrap()
}

// An outbox effect is carried out at least once: a second try after a complete first one files
// nothing more and links nothing twice.
#[tokio::test]
async fn the_degraded_effect_carried_out_twice_files_one_incident_and_one_revert() {
    let Setup { _dir: _kept, engine, task, repo } = setup(false).await;
    monitor::degraded(&engine, task.id, "health: 503").await.unwrap();
    monitor::degraded(&engine, task.id, "health: 503").await.unwrap();

    let incidents = tasks_titled(&engine, "Incident: ").await;
    let reverts = tasks_titled(&engine, "Revert ").await;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(reverts.len(), 1, "{reverts:#?}");
    let kinds = timeline_kinds(&engine, task.id).await;
    assert_eq!(kinds.iter().filter(|k| *k == REVERT_FILED).count(), 1, "{kinds:?}");
    let revert = read(&engine, reverts[0].id).await;
    assert_eq!(revert.external_ref.as_deref(), Some(format!("{REVERT_REF_PREFIX}{}", task.work_item_id).as_str()));
    let revert_kinds = timeline_kinds(&engine, revert.id).await;
    assert_eq!(revert_kinds.iter().filter(|k| *k == REVERT_PREPARED).count(), 1, "{revert_kinds:?}");
    // Confirmed by the monitor (no `revert_confirm`): on its way through the merge gate.
    assert_eq!((revert.state.stage.as_str(), &revert.state.hold), ("deploy_staging", &Hold::None));
    let tree = git(&repo, &["ls-tree", "--name-only", &revert.branch]);
    assert!(!tree.lines().any(|f| f == "feature.txt"), "the revert's branch undoes the feature: {tree}");
    let freezes = engine.store().repo_freezes().await.unwrap();
    assert_eq!(freezes.len(), 1, "{freezes:?}");
    assert_eq!((freezes[0].incident, freezes[0].revert), (Some(incidents[0].id), Some(revert.id)));
}

// A crash right after the incident and the revert were created, before anything linked them or
// prepared the revert's branch: the next try finds both by their filing keys instead of filing
// again; until the branch holds the revert, a human's confirmation is refused.
#[tokio::test]
async fn a_crash_between_filing_and_linking_finds_the_filed_tasks_again() {
    let Setup { _dir: _kept, engine, task, repo } = setup(true).await;
    // What the first try left behind: both tasks created under their keys, nothing linked.
    let store = engine.store();
    let now = engine.clock().now_ms();
    let incident_key = monitor::filing_key("incident", task.id);
    let begun = store.begin_idempotent(&incident_key, "monitor-filing-v1", now, 0).await.unwrap();
    assert_eq!(begun, IdempotencyBegin::Started);
    let request = NewTaskRequest {
        repo: "app".into(),
        title: format!("Incident: {} degraded app", task.work_item_id),
        body: "filed before the crash".into(),
        external_ref: None,
    };
    let incident = engine.create_task_keyed(request, Some(incident_key)).await.unwrap();
    let revert_key = monitor::filing_key("revert", task.id);
    store.begin_idempotent(&revert_key, "monitor-filing-v1", now, 0).await.unwrap();
    let request = NewTaskRequest {
        repo: "app".into(),
        title: format!("Revert {}: slow path", task.work_item_id),
        body: "filed before the crash".into(),
        external_ref: Some(format!("{REVERT_REF_PREFIX}{}", task.work_item_id)),
    };
    let held = TaskState { hold: Hold::AwaitingConfirm, ..TaskState::new("deploy_staging") };
    let revert = engine.create_held_task(request, held, Some(revert_key)).await.unwrap();

    let refused = engine.submit(&TaskKey::Id(revert.id), Input::ConfirmDeploy, "cli:human", None).await;
    let error = refused.expect_err("an unprepared revert cannot be confirmed").to_string();
    assert!(error.contains("still being prepared"), "{error}");

    monitor::degraded(&engine, task.id, "health: 503").await.unwrap();
    let incidents = tasks_titled(&engine, "Incident: ").await;
    let reverts = tasks_titled(&engine, "Revert ").await;
    assert_eq!(incidents.iter().map(|t| t.id).collect::<Vec<_>>(), vec![incident.id], "{incidents:#?}");
    assert_eq!(reverts.iter().map(|t| t.id).collect::<Vec<_>>(), vec![revert.id], "{reverts:#?}");
    let kinds = timeline_kinds(&engine, task.id).await;
    assert!(kinds.iter().any(|k| k == INCIDENT_FILED) && kinds.iter().any(|k| k == REVERT_FILED), "{kinds:?}");
    // `revert_confirm`: prepared, then waiting for the human, who may confirm it now.
    let prepared = read(&engine, revert.id).await;
    assert_eq!(prepared.state.hold, Hold::AwaitingConfirm);
    assert!(timeline_kinds(&engine, revert.id).await.iter().any(|k| k == REVERT_PREPARED));
    let tree = git(&repo, &["ls-tree", "--name-only", &prepared.branch]);
    assert!(!tree.lines().any(|f| f == "feature.txt"), "the revert's branch undoes the feature: {tree}");
    let confirmed = engine.submit(&TaskKey::Id(revert.id), Input::ConfirmDeploy, "cli:human", None).await.unwrap();
    assert!(matches!(confirmed, baton_engine::InputOutcome::Applied { .. }), "{confirmed:?}");
}

// A declaration that raced the revert's arrival at the merge gate made it wait for a task that was
// then cancelled: the reconciler's backstop, which blocks such a waiting task, withdraws the
// revert's wait instead (a revert waits for nothing), so the degraded change still leaves main.
#[tokio::test]
async fn the_dependency_backstop_withdraws_a_reverts_wait_instead_of_blocking_it() {
    let Setup { _dir: _kept, engine, task, repo: _ } = setup(false).await;
    monitor::degraded(&engine, task.id, "health: 503").await.unwrap();
    let revert = tasks_titled(&engine, "Revert ").await.remove(0);
    let request =
        NewTaskRequest { repo: "app".into(), title: "other work".into(), body: String::new(), external_ref: None };
    let other = engine.create_task(request).await.unwrap();
    engine.submit(&TaskKey::Id(other.id), Input::Stop, "cli:human", None).await.unwrap();
    assert_eq!(read(&engine, other.id).await.state.stage, baton_domain::pipeline::CANCELLED);
    // The race: the engine refuses a declaration on a task at the merge gate; the store does not.
    let now = engine.clock().now_ms();
    assert!(engine.store().add_dependency(revert.id, other.id, "cli:human", now).await.unwrap());
    // A task that is no revert, waiting for the same cancelled task, is blocked as before.
    let request =
        NewTaskRequest { repo: "app".into(), title: "waits too".into(), body: String::new(), external_ref: None };
    let waiter = engine.create_task(request).await.unwrap();
    assert!(engine.store().add_dependency(waiter.id, other.id, "cli:human", now).await.unwrap());

    assert_eq!(baton_engine::dependencies::backstop(&engine).await, 1, "only the task that is no revert is blocked");
    let revert = read(&engine, revert.id).await;
    assert!(!matches!(revert.state.hold, Hold::Blocked { .. }), "the revert is not blocked: {:?}", revert.state);
    assert!(engine.store().dependencies(revert.id).await.unwrap().is_empty(), "its wait is withdrawn");
    let lines = engine.store().events(Some(revert.id), 0, 500).await.unwrap();
    let withdrawn = lines.iter().find(|e| e.kind == "dependency_withdrawn").expect("a dependency_withdrawn line");
    assert!(withdrawn.message.contains("a revert waits for nothing"), "{}", withdrawn.message);
    assert!(matches!(read(&engine, waiter.id).await.state.hold, Hold::Blocked { .. }));
}
