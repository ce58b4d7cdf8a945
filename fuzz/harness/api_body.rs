//! Fuzz harness: what HTTP clients send to `baton_http::app` — JSON bodies, query strings and path
//! ids — driven with `oneshot` (no socket) against a real engine over a temporary SQLite file. No
//! claim loop runs, so created tasks only queue. Any status is fine except a panic or a 500.
//!
//! Input: one byte choosing the route, then the body (or the query string, or the task id).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use baton_engine::{Engine, EngineSettings, Limits, NewTaskRequest, RepoSettings};
use baton_http::{AppState, app};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;

/// The bearer token every request carries.
const TOKEN: &str = "fuzz-token";

/// An engine over SQLite in a temporary directory, with one repository `demo` (which need not
/// exist on disk: creating a task touches no git) and one task `DEMO-1`.
#[derive(Debug)]
pub struct ApiHarness {
    runtime: tokio::runtime::Runtime,
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

impl Default for ApiHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiHarness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the API harness");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the API harness");
        let engine = runtime.block_on(async {
            let store = baton_store_sqlite::SqliteStore::open(&dir.path().join("baton.db"))
                .await
                .expect("a SQLite store in a temp dir");
            let settings = EngineSettings {
                data_dir: dir.path().join("data"),
                limits: Limits::default(),
                repos: vec![RepoSettings {
                    name: "demo".into(),
                    path: dir.path().join("missing-repo"),
                    default_branch: "main".into(),
                    url: None,
                    push: None,
                    delete_remote_branch: baton_engine::DeleteRemoteBranch::default(),
                    credentials_env: None,
                    prefix: "DEMO".into(),
                    test: None,
                    deploy: None,
                    health: None,
                    coverage: None,
                    coverage_mode: Default::default(),
                    coverage_min: 0.0,
                    coverage_epsilon: 0.1,
                    coverage_fail_open: true,
                    security: None,
                    merge_batch: 1,
                    monitor_window_secs: 0,
                    monitor_interval_secs: 30,
                    monitor_failures: 3,
                    revert_on_degraded: false,
                    revert_confirm: false,
                    serial: false,
                    hooks: Default::default(),
                    pipeline: None,
                    forge: Default::default(),
                }],
                agents: Default::default(),
                pipeline: baton_domain::Pipeline::default_pipeline(),
                budgets: Default::default(),
                baton_exe: "baton".into(),
                env_passthrough: vec![],
            };
            let engine = Engine::new(settings, Arc::new(store));
            let request =
                NewTaskRequest { repo: "demo".into(), title: "first".into(), body: String::new(), external_ref: None };
            engine.create_task(request).await.expect("the first task is created");
            engine
        });
        ApiHarness { runtime, engine, _dir: dir }
    }

    /// Sends one request chosen by `data[0]`; a 500 or a panic fails.
    pub fn run(&self, data: &[u8]) {
        let Some((&route, rest)) = data.split_first() else { return };
        let (method, uri, body) = match route % 9 {
            0 => (Method::POST, "/api/tasks".to_string(), rest),
            1 => (Method::POST, "/api/tasks/DEMO-1/answer".to_string(), rest),
            2 => (Method::GET, format!("/api/tasks?{}", encode(rest, b"=&")), &[][..]),
            3 => (Method::GET, format!("/api/usage?{}", encode(rest, b"=&")), &[][..]),
            4 => (Method::GET, format!("/api/tasks/{}", encode(rest, b"")), &[][..]),
            5 => (Method::POST, format!("/api/tasks/{}/approve", encode(rest, b"")), &[][..]),
            6 => (Method::POST, format!("/api/tasks/{}/retry", encode(rest, b"")), &[][..]),
            7 => (Method::POST, "/api/tasks/DEMO-1/confirm-deploy".to_string(), rest),
            _ => (Method::POST, "/api/usage/ingest".to_string(), rest),
        };
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::from(body.to_vec()));
        let Ok(request) = request else { return };
        let router = app(AppState {
            engine: self.engine.clone(),
            api_token: Some(TOKEN.into()),
            read_requires_token: false,
            started_at_ms: 0,
            webhooks: baton_http::WebhookSecrets::default(),
            observability: baton_http::Observability::default(),
            dashboard: baton_http::Dashboard::default(),
        });
        self.runtime.block_on(async {
            let response = router.oneshot(request).await.expect("the router is infallible");
            let status = response.status();
            let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{uri}: 500 {}", String::from_utf8_lossy(&bytes));
        });
    }
}

/// Percent-encodes every byte except ASCII letters, digits, `-._~` and those in `keep`.
fn encode(data: &[u8], keep: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 3);
    for &byte in data {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
