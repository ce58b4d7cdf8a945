//! The HTTP API against a real engine over a real SQLite file: routes are driven with `oneshot`,
//! and one test goes over a real socket. No claim loop runs, so no agent ever starts.
// Tests may unwrap, and they init a git repository with std::process::Command.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

#[path = "api/fuzz_corpus.rs"]
mod fuzz_corpus;
#[path = "api/trust.rs"]
mod trust;
#[path = "api/webhooks.rs"]
mod webhooks;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use baton_domain::Pipeline;
use baton_engine::{Engine, EngineSettings, Limits, RepoSettings};
use baton_http::{AppState, app};
use baton_store_sqlite::SqliteStore;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "test-token-123";

/// A temporary data dir, a git repo named `demo` (prefix `DEMO`) and an engine over SQLite.
struct Harness {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("demo");
        init_repo(&repo);
        let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
        let settings = EngineSettings {
            data_dir: dir.path().join("data"),
            limits: Limits::default(),
            repos: vec![RepoSettings {
                name: "demo".into(),
                path: repo,
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
            agents: BTreeMap::new(),
            pipeline: Pipeline::default_pipeline(),
            budgets: baton_engine::Budgets::default(),
            baton_exe: PathBuf::from("baton"),
            env_passthrough: vec![],
        };
        let engine = Engine::new(settings, Arc::new(store));
        Harness { _dir: dir, engine }
    }

    fn app_with_token(&self, token: Option<&str>) -> Router {
        app(AppState {
            engine: self.engine.clone(),
            api_token: token.map(str::to_string),
            read_requires_token: false,
            started_at_ms: 0,
            webhooks: baton_http::WebhookSecrets::default(),
            observability: baton_http::Observability::default(),
            dashboard: baton_http::Dashboard::default(),
        })
    }

    fn app(&self) -> Router {
        self.app_with_token(Some(TOKEN))
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        send(self.app(), Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        send(self.app(), authed(Method::POST, uri).body(Body::from(body.to_string())).unwrap()).await
    }

    async fn create(&self, title: &str) -> Value {
        let (status, task) = self.post("/api/tasks", json!({ "repo": "demo", "title": title })).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        task
    }
}

fn init_repo(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::write(path.join("README.md"), "demo\n").unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "README.md"]);
    git(&["commit", "-q", "-m", "init"]);
}

/// A request builder with the right bearer token and a JSON content type.
fn authed(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
}

async fn send(app: Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, value)
}

/// Asserts the `{code, message}` error shape and returns the message.
fn error_message(body: &Value, code: &str) -> String {
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(!message.is_empty());
    message.to_string()
}

#[tokio::test]
async fn health_says_ok() {
    // `/health` answers `{"status":"ok", checks}` without a token, every check passed.
    let h = Harness::new().await;
    let (status, body) = h.get("/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    let names: Vec<&str> = body["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["database_file", "schema", "tasks"], "{body}");
    assert!(body["checks"].as_array().unwrap().iter().all(|c| c["ok"] == true), "{body}");
}

#[tokio::test]
async fn create_numbers_work_items_in_order() {
    // Creating tasks answers 201 with fresh work-item ids DEMO-001, DEMO-002 and a Location header.
    let h = Harness::new().await;
    let first = h.create("Add a login page").await;
    assert_eq!(first["work_item_id"], "DEMO-001");
    assert_eq!(first["repo"], "demo");
    assert_eq!(first["state"]["stage"], "analysis");
    let second = h.create("Fix the footer").await;
    assert_eq!(second["work_item_id"], "DEMO-002");

    let request = authed(Method::POST, "/api/tasks")
        .body(Body::from(json!({ "repo": "demo", "title": "Third" }).to_string()))
        .unwrap();
    let response = h.app().oneshot(request).await.unwrap();
    assert_eq!(response.headers()[header::LOCATION], "/api/tasks/DEMO-003");
}

#[tokio::test]
async fn list_and_show_by_either_id() {
    // Tasks are listed (with the active and repo filters) and shown by numeric or work-item id,
    // with timeline, jobs, agent runs and totals.
    let h = Harness::new().await;
    let task = h.create("Add a login page").await;
    let id = task["id"].as_i64().unwrap();

    let (status, list) = h.get("/api/tasks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(h.get("/api/tasks?active=true&repo=demo").await.1.as_array().unwrap().len(), 1);
    assert_eq!(h.get("/api/tasks?repo=other").await.1, json!([]));

    let (status, by_id) = h.get(&format!("/api/tasks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, by_work_item) = h.get("/api/tasks/DEMO-001").await;
    assert_eq!(by_id, by_work_item);
    assert_eq!(by_id["work_item_id"], "DEMO-001");
    assert!(!by_id["timeline"].as_array().unwrap().is_empty(), "{by_id}");
    assert_eq!(by_id["jobs"][0]["stage"], "analysis");
    assert_eq!(by_id["jobs"][0]["status"], "queued");
    assert_eq!(by_id["agent_runs"], json!([]));
    assert_eq!(by_id["totals"]["runs"], 0);
    assert_eq!(by_id["totals"]["cost_usd"], 0.0);
}

// `GET /api/tasks` pages newest first: a full page links the next one (`before` = its last id),
// following the links visits every task once, and the last page has no link.
#[tokio::test]
async fn list_pages_newest_first_with_a_next_link() {
    let h = Harness::new().await;
    for i in 0..5 {
        h.create(&format!("Task {i}")).await;
    }
    let mut seen = Vec::new();
    let mut uri = "/api/tasks?limit=2".to_string();
    let mut pages = 0;
    loop {
        let response = h.app().oneshot(Request::get(&uri).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let link = response.headers().get("link").map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let page: Value = serde_json::from_slice(&body).unwrap();
        seen.extend(page.as_array().unwrap().iter().map(|t| t["work_item_id"].as_str().unwrap().to_string()));
        pages += 1;
        match link {
            Some(link) => {
                assert!(link.ends_with(">; rel=\"next\""), "{link}");
                uri = link.trim_start_matches('<').split('>').next().unwrap().to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["DEMO-005", "DEMO-004", "DEMO-003", "DEMO-002", "DEMO-001"]);
    let (status, body) = h.get("/api/tasks?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn list_rejects_a_bad_filter() {
    // A query value that is not understood is a 400 with the error shape, not axum's plain text.
    let h = Harness::new().await;
    let (status, body) = h.get("/api/tasks?active=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&body, "bad_request");
}

#[tokio::test]
async fn unknown_task_and_route_are_json_404s() {
    // Unknown tasks (by either id form), actions on them and unknown routes answer 404 JSON.
    let h = Harness::new().await;
    for uri in ["/api/tasks/DEMO-999", "/api/tasks/999", "/api/nothing", "/nothing"] {
        let (status, body) = h.get(uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        error_message(&body, "not_found");
    }
    let (status, body) = h.post("/api/tasks/DEMO-999/stop", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_message(&body, "not_found").contains("DEMO-999"));
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    // A known route with the wrong method answers 405 with the error shape.
    let h = Harness::new().await;
    let (status, body) = h.get("/api/tasks/DEMO-001/stop").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    error_message(&body, "method_not_allowed");

    // The method check comes before the token check, and unknown POST routes are plain 404s.
    let put = Request::put("/api/tasks").body(Body::empty()).unwrap();
    let (status, body) = send(h.app(), put).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    error_message(&body, "method_not_allowed");
    let (status, body) = send(h.app(), Request::post("/api/nothing").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_message(&body, "not_found");
}

#[tokio::test]
async fn create_with_unknown_repo_names_it() {
    // An unknown repository is refused with a 4xx whose message names it and the configured ones.
    let h = Harness::new().await;
    let (status, body) = h.post("/api/tasks", json!({ "repo": "nope", "title": "x" })).await;
    assert!(status.is_client_error(), "{status}");
    let message = error_message(&body, "invalid");
    assert!(message.contains("nope") && message.contains("demo"), "{message}");
}

#[tokio::test]
async fn malformed_json_is_a_400_with_the_error_shape() {
    // Broken JSON, a missing field, an unknown field and a missing content type are all refused
    // with `{code, message}`.
    let h = Harness::new().await;
    let raw = authed(Method::POST, "/api/tasks").body(Body::from("{\"repo\": \"demo\", ")).unwrap();
    let (status, body) = send(h.app(), raw).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body, "bad_request").to_lowercase().contains("json"));

    let (status, body) = h.post("/api/tasks", json!({ "repo": "demo" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body, "bad_request").contains("title"));

    let (status, body) = h.post("/api/tasks", json!({ "repo": "demo", "title": "x", "colour": 1 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body, "bad_request").contains("colour"));

    let plain = Request::post("/api/tasks")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from(json!({ "repo": "demo", "title": "x" }).to_string()))
        .unwrap();
    let (status, body) = send(h.app(), plain).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    error_message(&body, "unsupported_media_type");
}

#[tokio::test]
async fn oversized_body_is_a_413() {
    // A body over the 256 KiB limit is refused before it is parsed.
    let h = Harness::new().await;
    let body = json!({ "repo": "demo", "title": "x", "body": "a".repeat(300 * 1024) });
    let (status, body) = h.post("/api/tasks", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    error_message(&body, "payload_too_large");
}

#[tokio::test]
async fn mutations_need_the_right_token() {
    // No header or a wrong token is 401; a server without a token refuses with 403 saying how
    // to set one; reads need no token.
    let h = Harness::new().await;
    let body = || Body::from(json!({ "repo": "demo", "title": "x" }).to_string());

    let missing = Request::post("/api/tasks").header(header::CONTENT_TYPE, "application/json").body(body()).unwrap();
    let response = h.app().oneshot(missing).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    error_message(&serde_json::from_slice(&bytes).unwrap(), "unauthorized");

    let wrong = Request::post("/api/tasks")
        .header(header::AUTHORIZATION, "Bearer test-token-124")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body())
        .unwrap();
    let (status, reply) = send(h.app(), wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    error_message(&reply, "unauthorized");

    // Without server.api_token, the configured token is just an unknown one; the message says
    // how to create a named token.
    let no_server_token = authed(Method::POST, "/api/tasks").body(body()).unwrap();
    let (status, reply) = send(h.app_with_token(None), no_server_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    error_message(&reply, "unauthorized");
    let bare = Request::post("/api/tasks").header(header::CONTENT_TYPE, "application/json").body(body()).unwrap();
    let (_, reply) = send(h.app_with_token(None), bare).await;
    assert!(error_message(&reply, "unauthorized").contains("baton token create"), "{reply}");

    // Nothing was created by the refused requests, and reading needed no token.
    assert_eq!(h.get("/api/tasks").await, (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn stop_cancels_once_then_is_suppressed() {
    // STOP is applied and cancels the task; a second STOP is suppressed with a reason.
    let h = Harness::new().await;
    h.create("Add a login page").await;
    let (status, outcome) = h.post("/api/tasks/DEMO-001/stop", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome["outcome"], "applied", "{outcome}");

    let (_, task) = h.get("/api/tasks/DEMO-001").await;
    assert_eq!(task["state"]["stage"], "cancelled");
    assert_eq!(task["jobs"][0]["status"], "cancelled");
    assert_eq!(h.get("/api/tasks?active=true").await.1, json!([]));

    let (status, outcome) = h.post("/api/tasks/1/stop", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome["outcome"], "suppressed", "{outcome}");
    assert!(!outcome["reason"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn approve_without_a_pending_approval_is_suppressed() {
    // Approving a task that is not awaiting approval changes nothing and says why.
    let h = Harness::new().await;
    h.create("Add a login page").await;
    let (status, outcome) = h.post("/api/tasks/DEMO-001/approve", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome["outcome"], "suppressed", "{outcome}");
    assert!(!outcome["reason"].as_str().unwrap().is_empty());
    assert_eq!(h.get("/api/tasks/DEMO-001").await.1["state"]["stage"], "analysis");
}

#[tokio::test]
async fn idempotency_key_replay_is_a_duplicate() {
    // Replaying an action with the same Idempotency-Key answers `duplicate` and changes nothing;
    // a malformed key is refused.
    let h = Harness::new().await;
    h.create("Add a login page").await;
    let stop = |key: &str| {
        authed(Method::POST, "/api/tasks/DEMO-001/stop").header("Idempotency-Key", key).body(Body::empty()).unwrap()
    };
    let (_, first) = send(h.app(), stop("stop-1")).await;
    assert_eq!(first["outcome"], "applied", "{first}");
    // The replay answers exactly what the first request answered, and changes nothing.
    let events = h.get("/api/tasks/DEMO-001").await.1["timeline"].as_array().unwrap().len();
    let (status, replay) = send(h.app(), stop("stop-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replay, first);
    assert_eq!(h.get("/api/tasks/DEMO-001").await.1["timeline"].as_array().unwrap().len(), events);

    let (status, body) = send(h.app(), stop(&"k".repeat(201))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&body, "bad_request");
}

#[tokio::test]
async fn answer_needs_text() {
    // An empty answer is refused with a 4xx; a missing body is a 400.
    let h = Harness::new().await;
    h.create("Add a login page").await;
    let (status, body) = h.post("/api/tasks/DEMO-001/answer", json!({ "text": "  " })).await;
    assert!(status.is_client_error(), "{status}");
    error_message(&body, "invalid");

    let empty = authed(Method::POST, "/api/tasks/DEMO-001/answer").body(Body::empty()).unwrap();
    let (status, body) = send(h.app(), empty).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&body, "bad_request");

    let (status, outcome) = h.post("/api/tasks/DEMO-001/answer", json!({ "text": "use OAuth" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome["outcome"], "suppressed", "no questions were asked: {outcome}");
}

#[tokio::test]
async fn usage_is_empty_and_checks_the_grouping() {
    // Usage on an empty database has no rows for every grouping; an unknown grouping is a 400
    // naming the valid ones.
    let h = Harness::new().await;
    for by in ["task", "stage", "adapter", "model", "repo", "day", "category", "source", "unit_kind"] {
        let (status, body) = h.get(&format!("/api/usage?by={by}")).await;
        assert_eq!((status, &body["rows"], &body["by"]), (StatusCode::OK, &json!([]), &json!(by)), "{by}");
        assert_eq!(body["unit_economics"]["per_merged_task"]["usd_per_task"], json!(null));
    }
    assert_eq!(h.get("/api/usage").await.1["by"], "task");
    let (status, body) = h.get("/api/usage?by=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error_message(&body, "bad_request");
    assert!(message.contains("nonsense") && message.contains("stage"), "{message}");
}

#[tokio::test]
async fn status_counts_tasks_jobs_and_holds() {
    // Status counts tasks by stage (in pipeline order) and hold, queued jobs and leases.
    let h = Harness::new().await;
    h.create("One").await;
    h.create("Two").await;
    h.post("/api/tasks/DEMO-002/stop", Value::Null).await;

    let (status, report) = h.get("/api/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["tasks"]["total"], 2);
    assert_eq!(report["tasks"]["active"], 1);
    let stages = report["tasks"]["by_stage"].as_array().unwrap();
    assert_eq!(stages[0], json!({ "stage": "analysis", "tasks": 1 }));
    assert_eq!(stages.last().unwrap(), &json!({ "stage": "cancelled", "tasks": 1 }));
    assert_eq!(
        report["tasks"]["by_hold"],
        json!({ "needs_input": 0, "awaiting_approval": 0, "awaiting_confirm": 0, "blocked": 0, "paused_budget": 0, "paused_quota": 0, "monitoring": 0 })
    );
    assert_eq!(report["freezes"], json!([]), "no repository frozen");
    assert_eq!(report["jobs"], json!({ "queued": 1, "running": 0 }));
    assert_eq!(report["leases"], json!([]));
    assert!(report["uptime_secs"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn serves_health_on_a_real_socket() {
    // `serve` answers a raw HTTP/1.1 request on a real socket and shuts down when told.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState {
        engine: h.engine.clone(),
        api_token: None,
        read_requires_token: false,
        started_at_ms: 0,
        webhooks: baton_http::WebhookSecrets::default(),
        observability: baton_http::Observability::default(),
        dashboard: baton_http::Dashboard::default(),
    };
    let server = tokio::spawn(baton_http::serve(listener, state, async {
        let _ = stop_rx.await;
    }));

    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.to_lowercase().contains("content-type: application/json"), "{response}");
    assert!(response.contains("\"status\":\"ok\""), "{response}");

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

// A change waiting in its merge queue gets a priority (recorded on its timeline with the caller);
// a task that is not queued answers 422 naming why; a malformed body is a 400/422 with the shape.
#[tokio::test]
async fn priority_moves_a_queued_change_and_refuses_one_not_queued() {
    let h = Harness::new().await;
    let queued = h.create("queued").await;
    let other = h.create("not queued").await;
    let id = baton_domain::TaskId(queued["id"].as_i64().unwrap());
    assert!(h.engine.store().queue_enter(id, "demo", 0, 1_000).await.unwrap());
    let work_item = queued["work_item_id"].as_str().unwrap();

    let (status, body) = h.post(&format!("/api/tasks/{work_item}/priority"), json!({ "priority": 5 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["applied"].as_str().unwrap().contains("priority set to 5 by api:config"), "{body}");
    let entry = h.engine.store().queue_entry(id).await.unwrap().unwrap();
    assert_eq!(entry.priority, 5);
    let (_, detail) = h.get(&format!("/api/tasks/{work_item}")).await;
    assert!(detail["timeline"].as_array().unwrap().iter().any(|e| e["kind"] == "queue_priority"), "{detail}");

    let other_id = other["work_item_id"].as_str().unwrap();
    let (status, body) = h.post(&format!("/api/tasks/{other_id}/priority"), json!({ "priority": 1 })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(error_message(&body, "invalid").contains("is not in a merge queue"), "{body}");

    let (status, body) = h.post(&format!("/api/tasks/{work_item}/priority"), json!({ "priority": "high" })).await;
    assert!(status.is_client_error(), "{status} {body}");
}

// Dependencies over HTTP: a task created waiting, a declaration (201, then 200 when repeated), a
// cycle refused with 409 naming it, the task's detail listing them, `/api/queue` saying what the
// held task waits for, and a withdrawal; declaring needs the `act` token.
#[tokio::test]
async fn dependencies_declared_refused_shown_and_withdrawn() {
    let h = Harness::new().await;
    let a = h.create("First").await;
    let (status, b) =
        h.post("/api/tasks", json!({ "repo": "demo", "title": "Second", "depends_on": [a["id"].clone()] })).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let (a_id, b_id) = (a["work_item_id"].as_str().unwrap(), b["work_item_id"].as_str().unwrap());
    let c = h.create("Third").await;
    let c_id = c["work_item_id"].as_str().unwrap();

    let (status, body) = h.post(&format!("/api/tasks/{c_id}/dependencies"), json!({ "depends_on": b_id })).await;
    assert_eq!((status, body["created"].clone()), (StatusCode::CREATED, json!(true)), "{body}");
    let (status, body) = h.post(&format!("/api/tasks/{c_id}/dependencies"), json!({ "depends_on": b_id })).await;
    assert_eq!((status, body["created"].clone()), (StatusCode::OK, json!(false)), "{body}");
    let (status, body) = h.post(&format!("/api/tasks/{a_id}/dependencies"), json!({ "depends_on": c_id })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let cycle = format!("{a_id} → {c_id} → {b_id} → {a_id}");
    assert!(body["message"].as_str().unwrap().contains(&cycle), "{body}");
    let (status, body) = h.post(&format!("/api/tasks/{a_id}/dependencies"), json!({ "depends_on": "NOPE-9" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let unauthed = Request::post(format!("/api/tasks/{a_id}/dependencies"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "depends_on": c_id }).to_string()))
        .unwrap();
    assert_eq!(send(h.app(), unauthed).await.0, StatusCode::UNAUTHORIZED);

    let (_, detail) = h.get(&format!("/api/tasks/{c_id}")).await;
    let deps = detail["dependencies"].as_array().unwrap();
    assert_eq!(deps.len(), 1);
    assert_eq!((deps[0]["depends_on_work_item"].as_str(), deps[0]["met"].as_bool()), (Some(b_id), Some(false)));

    let (status, queue) = h.get("/api/queue").await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let waiting = queue["waiting"].as_array().unwrap();
    let of = |id: &str| waiting.iter().find(|w| w["work_item_id"] == id).cloned();
    assert_eq!(of(b_id).unwrap()["waits_for"], json!([a_id]));
    assert_eq!(of(c_id).unwrap()["gate"], "dependencies");
    assert!(of(a_id).is_none(), "{a_id} waits for nothing");

    let delete = authed(Method::DELETE, &format!("/api/tasks/{c_id}/dependencies"))
        .body(Body::from(json!({ "depends_on": b_id }).to_string()))
        .unwrap();
    let (status, body) = send(h.app(), delete).await;
    assert_eq!((status, body["removed"].clone()), (StatusCode::OK, json!(true)), "{body}");
    let (_, detail) = h.get(&format!("/api/tasks/{c_id}")).await;
    assert!(detail["dependencies"].as_array().unwrap().is_empty());
}
