//! Test scaffolding shared by the engine's unit tests: an engine on a real SQLite file in a
//! temporary directory, with one repository `app` and every other port at its default.

use crate::engine::{Engine, NewTaskRequest};
use baton_domain::TaskId;
use std::path::Path;
use std::sync::Arc;

/// An engine on a SQLite store in `dir`, with one repository `app` (no checkout: the tests using
/// it read none).
pub(crate) async fn engine_in(dir: &Path) -> Arc<Engine> {
    let repo: crate::settings::RepoSettings = serde_json::from_value(serde_json::json!({
        "name": "app", "prefix": "APP", "path": dir.join("app"),
    }))
    .expect("a repository's settings");
    let settings = crate::settings::EngineSettings {
        data_dir: dir.join("data"),
        limits: Default::default(),
        repos: vec![repo],
        agents: Default::default(),
        pipeline: baton_domain::Pipeline::default_pipeline(),
        budgets: Default::default(),
        baton_exe: "/nonexistent/baton".into(),
        env_passthrough: vec![],
    };
    let store = baton_store_sqlite::SqliteStore::open(&dir.join("baton.db")).await.expect("the store");
    Engine::new(settings, Arc::new(store))
}

/// A new task of `app` (its first job queued).
pub(crate) async fn task(engine: &Engine, title: &str) -> TaskId {
    let request = NewTaskRequest { repo: "app".into(), title: title.into(), body: String::new(), external_ref: None };
    engine.create_task(request).await.expect("a task").id
}
