//! The hardened server over real TCP on 127.0.0.1: slow clients closed by the header timeout,
//! the connection limit, the `Host`/`Origin` guard, `/health` on a lost database file, and the
//! busy database answered with 503 and `Retry-After`.
// Tests may unwrap, start tasks and sleep on tokio directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use baton_domain::Pipeline;
use baton_engine::{Engine, EngineSettings, Limits, NewTaskRequest, RepoSettings};
use baton_http::AppState;
use baton_http::server::{ServerSettings, ServerStats, serve_with};
use baton_store_sqlite::SqliteStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "server-test-token";
/// Upper bound on any wait in these tests; reaching it fails the test.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running server over an engine on a temporary SQLite file.
struct Running {
    dir: tempfile::TempDir,
    engine: Arc<Engine>,
    address: SocketAddr,
    stats: Arc<ServerStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(mut settings: ServerSettings) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
        let engine_settings = EngineSettings {
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
            pipeline: Pipeline::default_pipeline(),
            budgets: Default::default(),
            baton_exe: PathBuf::from("baton"),
            env_passthrough: vec![],
        };
        let engine = Engine::new(engine_settings, Arc::new(store));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stats = Arc::new(ServerStats::default());
        settings.stats = stats.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = AppState {
            engine: engine.clone(),
            api_token: Some(TOKEN.into()),
            read_requires_token: false,
            started_at_ms: 0,
            webhooks: baton_http::WebhookSecrets::default(),
            observability: baton_http::Observability::default(),
            dashboard: baton_http::Dashboard::default(),
        };
        let task = tokio::spawn(serve_with(listener, state, settings, async {
            let _ = stopped.await;
        }));
        Running { dir, engine, address, stats, stop: Some(stop), task }
    }

    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(PATIENCE, self.task).await.expect("the server stops").unwrap().unwrap();
    }

    /// Sends `request` on a new connection and reads until the server closes it.
    async fn exchange(&self, request: &str) -> String {
        let mut stream = TcpStream::connect(self.address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        read_to_close(&mut stream).await
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&ServerStats) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.stats) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut bytes)).await {
        Ok(_) => String::from_utf8_lossy(&bytes).to_string(),
        Err(_) => panic!("the server never closed the connection; got {:?}", String::from_utf8_lossy(&bytes)),
    }
}

fn get(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
}

/// A POST with the token and a JSON body, closing the connection after the answer.
fn post(path: &str, host: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Authorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn settings(max_connections: usize, header_timeout: Duration) -> ServerSettings {
    ServerSettings { max_connections, header_timeout, idle_timeout: Duration::from_secs(30), ..Default::default() }
}

/// Opens `n` connections that each send half a request head and nothing more.
async fn slow_clients(address: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::new();
    for _ in 0..n {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: local").await.unwrap();
        streams.push(stream);
    }
    streams
}

#[tokio::test]
async fn slow_headers_are_closed_after_the_header_timeout_and_the_limit_holds() {
    let limit = 4;
    let server = Running::start(settings(limit, Duration::from_secs(1))).await;
    let started = Instant::now();
    let mut slow = slow_clients(server.address, limit).await;
    server.wait_until("every slow client is accepted", |s| s.open() == limit).await;

    // One more client, with a whole request: it waits in the backlog while the slow ones hold
    // every slot, and is served once the header timeout has closed them.
    let answer = server.exchange(&get("/health", "localhost", "")).await;
    let answered_after = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(server.stats.peak_open() <= limit, "peak {} over the limit {limit}", server.stats.peak_open());
    assert_eq!(server.stats.accepted(), limit as u64 + 1);

    // Every slow client was closed by the server (never answered with data it asked for).
    for stream in &mut slow {
        let rest = read_to_close(stream).await;
        assert!(!rest.contains("200 OK"), "a half-sent request was answered: {rest}");
    }
    let closed_after = started.elapsed();
    server.wait_until("every connection is closed", |s| s.open() == 0).await;
    eprintln!(
        "measured: {limit} slow clients (header timeout 1 s): extra client answered after {answered_after:?}, \
         all slow ones closed by {closed_after:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_under_the_limit_is_served_while_slow_clients_hold_slots() {
    let server = Running::start(settings(8, Duration::from_secs(60))).await;
    let slow = slow_clients(server.address, 3).await;
    server.wait_until("the slow clients are accepted", |s| s.open() == 3).await;
    let started = Instant::now();
    let answer = server.exchange(&get("/health", "127.0.0.1", "")).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(server.stats.open() >= 3, "the slow clients are still connected");
    eprintln!("measured: answered in {:?} with 3 slow clients connected", started.elapsed());
    drop(slow);
    server.wait_until("the slow clients are gone", |s| s.open() == 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_by_the_idle_timeout() {
    // The header timer is long here, so only the idle timer can close a client that sent a whole
    // head announcing a body and then stalled.
    let mut settings = settings(8, Duration::from_secs(60));
    settings.idle_timeout = Duration::from_secs(1);
    let server = Running::start(settings).await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let head = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"repo\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let rest = read_to_close(&mut stream).await;
    assert!(!rest.contains("201"), "{rest}");
    assert_eq!(server.stats.closed_idle(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn the_host_guard_refuses_rebinding_and_cross_site_origins() {
    let server = Running::start(ServerSettings::default()).await;
    let port = server.address.port();

    let answer = server.exchange(&get("/api/tasks", &format!("localhost:{port}"), "")).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    let answer = server.exchange(&get("/api/tasks", &format!("rebind.example:{port}"), "")).await;
    assert!(answer.starts_with("HTTP/1.1 421 "), "{answer}");
    assert!(answer.contains("\"code\":\"host_not_allowed\""), "{answer}");
    assert!(answer.contains("Host header") && answer.contains("server.allowed_hosts"), "{answer}");

    let answer = server.exchange(&get("/health", "rebind.example", "")).await;
    assert!(answer.starts_with("HTTP/1.1 421 "), "/health is guarded too: {answer}");

    let cross_site = post(
        "/api/tasks",
        &format!("127.0.0.1:{port}"),
        "Origin: https://evil.example\r\n",
        r#"{"repo":"demo","title":"x"}"#,
    );
    let answer = server.exchange(&cross_site).await;
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    assert!(answer.contains("\"code\":\"origin_not_allowed\"") && answer.contains("Origin header"), "{answer}");
    assert!(server.engine.store().list_tasks(&Default::default()).await.unwrap().is_empty(), "nothing was created");

    let same_site = get("/api/tasks", &format!("localhost:{port}"), &format!("Origin: http://localhost:{port}\r\n"));
    let answer = server.exchange(&same_site).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn configured_allowed_hosts_are_answered() {
    let settings = ServerSettings { allowed_hosts: vec!["baton.internal".into()], ..Default::default() };
    let server = Running::start(settings).await;
    let answer = server.exchange(&get("/health", "baton.internal:8377", "")).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    server.shutdown().await;
}

/// The JSON body of a raw HTTP/1.1 answer read to the end (`Connection: close`, no chunking).
fn body(answer: &str) -> serde_json::Value {
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[tokio::test]
async fn health_is_503_naming_the_check_when_the_database_file_is_deleted() {
    let server = Running::start(ServerSettings::default()).await;
    let answer = server.exchange(&get("/health", "localhost", "")).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(body(&answer)["status"], "ok");

    let db = server.dir.path().join("baton.db");
    std::fs::remove_file(&db).unwrap();
    let answer = server.exchange(&get("/health", "localhost", "")).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    let report = body(&answer);
    assert_eq!(report["status"], "unhealthy");
    let failed: Vec<&serde_json::Value> =
        report["checks"].as_array().unwrap().iter().filter(|c| c["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["name"], "database_file");
    let detail = failed[0]["detail"].as_str().unwrap();
    assert!(detail.contains("was deleted") && detail.contains(&db.display().to_string()), "{detail}");
    assert!(server.engine.store_lost().is_some(), "the engine knows, so its loop stops");

    // Writes after the loss fail clearly: a mutation answers 503, and nothing reaches the old inode.
    let request =
        NewTaskRequest { repo: "demo".into(), title: "after".into(), body: String::new(), external_ref: None };
    let error = server.engine.create_task(request).await.expect_err("writes fail once the file is lost");
    assert!(error.to_string().contains("database was lost"), "{error}");
    let create = post("/api/tasks", "localhost", "", r#"{"repo":"demo","title":"x"}"#);
    let answer = server.exchange(&create).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert_eq!(body(&answer)["code"], "unavailable");
    server.shutdown().await;
}

#[tokio::test]
async fn health_is_503_when_the_database_file_is_replaced() {
    let server = Running::start(ServerSettings::default()).await;
    let db = server.dir.path().join("baton.db");
    let other = server.dir.path().join("other.db");
    std::fs::copy(&db, &other).unwrap();
    std::fs::rename(&other, &db).unwrap();
    let answer = server.exchange(&get("/health", "localhost", "")).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    let report = body(&answer);
    let detail = report["checks"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("was replaced"), "{report}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_busy_database_answers_503_with_retry_after() {
    use axum::response::IntoResponse;
    let error: baton_http::ApiError = baton_store::StoreError::Busy("database is locked".into()).into();
    let response = error.into_response();
    assert_eq!(response.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get("retry-after").unwrap(), "1");
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["code"], "database_busy");
    assert!(body["message"].as_str().unwrap().contains("database is busy"), "{body}");
}

#[path = "../../../fuzz/harness/http_request.rs"]
mod http_request;
#[path = "../../../fuzz/harness/replay.rs"]
mod replay;

// Every committed raw HTTP/1 input (`fuzz/seeds/http_request/`, `fuzz/corpus/http_request/`) sent
// over TCP to the hardened server gets an answer other than 500, and nothing in the server panics.
#[test]
fn fuzz_corpus_http_requests_never_panic_or_500() {
    let harness = http_request::HttpHarness::new();
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let replayed = replay::replay(&fuzz_dir, "http_request", |data| {
        harness.run(data);
    });
    eprintln!("replayed {replayed} http_request inputs");
}

// The harness sees the answers it judges: a well-formed request is answered 200, and its status
// line is found (so a 500 could not slip by unparsed).
#[test]
fn http_request_harness_reads_status_lines() {
    let harness = http_request::HttpHarness::new();
    let two = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(harness.run(two), [200, 200]);
    assert_eq!(harness.run(b"GET /health HTTP/1.1\r\nHost: rebind.example\r\n\r\n"), [421]);
    let pipelined = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 500 x\r\ncontent-length: 0\r\n\r\n";
    assert_eq!(http_request::status_codes(pipelined), [200, 500]);
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nHTTP/1.1 503 x\r\n\r\n";
    assert_eq!(http_request::status_codes(chunked), [200, 503]);
}
