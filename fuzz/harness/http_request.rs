//! Fuzz harness: raw bytes sent as an HTTP/1 request over a loopback TCP connection to the whole
//! hardened server (`baton_http::server::serve_with`: hyper's parser, the header and idle
//! timeouts, the `Host`/`Origin` guard, the token check, every route) over a real engine on a
//! temporary SQLite file. No claim loop runs, so created tasks only queue.
//!
//! Any answer is fine except a 500 or a panic anywhere in the server (a panic in a connection task
//! would otherwise vanish with that task, so a panic hook records it). The input is sent whole,
//! then the client's write side is closed, so an incomplete request ends at once.

use baton_engine::{Engine, EngineSettings, Limits, NewTaskRequest, RepoSettings};
use baton_http::AppState;
use baton_http::server::{ServerSettings, serve_with};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The bearer token the server expects (seeds use it to reach the mutations).
pub const TOKEN: &str = "fuzz-token";
/// Longest wait for one answer; the server's own timeouts are shorter.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Answers are read up to this many bytes.
const ANSWER_BYTES_MAX: usize = 1 << 20;

/// Set by the panic hook when any thread panics.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// The server, its runtime and its temporary directory.
pub struct HttpHarness {
    runtime: tokio::runtime::Runtime,
    address: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for HttpHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpHarness").field("address", &self.address).finish()
    }
}

impl Default for HttpHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpHarness {
    pub fn new() -> Self {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            previous(info);
        }));
        let dir = tempfile::tempdir().expect("a temporary directory for the HTTP harness");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the HTTP harness");
        let (address, stop) = runtime.block_on(async {
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
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
            let address = listener.local_addr().expect("the bound address");
            let state = AppState {
                engine,
                api_token: Some(TOKEN.into()),
                read_requires_token: false,
                started_at_ms: 0,
                webhooks: baton_http::WebhookSecrets::default(),
                observability: baton_http::Observability::default(),
                dashboard: baton_http::Dashboard::default(),
            };
            let settings = ServerSettings {
                max_connections: 64,
                header_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(2),
                ..Default::default()
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = serve_with(listener, state, settings, async {
                let _ = stopped.await;
            });
            // The server runs on this runtime whenever `run` drives it.
            drop(tokio::runtime::Handle::current().spawn(server));
            (address, stop)
        });
        HttpHarness { runtime, address, _stop: stop, _dir: dir }
    }

    /// Sends `data` on a new connection, closes the write side, reads every answer; a 500 or a
    /// panic fails. Returns the answers' status codes.
    pub fn run(&self, data: &[u8]) -> Vec<u16> {
        let answer = self.runtime.block_on(async {
            let mut stream = tokio::net::TcpStream::connect(self.address).await.expect("the server accepts");
            // The server may answer and close before reading everything: a failed write is fine.
            let _ = stream.write_all(data).await;
            let _ = stream.shutdown().await;
            let mut answer = Vec::new();
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout(ANSWER_WAIT, async {
                while answer.len() < ANSWER_BYTES_MAX {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => answer.extend_from_slice(&chunk[..n]),
                    }
                }
            })
            .await;
            assert!(read.is_ok(), "no end of answer within {ANSWER_WAIT:?}");
            answer
        });
        assert!(!PANICKED.load(Ordering::SeqCst), "the server panicked (see the panic message above)");
        let codes = status_codes(&answer);
        assert!(!codes.contains(&500), "500 answer:\n{}", String::from_utf8_lossy(&answer));
        codes
    }
}

/// The status codes of the answers in `answer`, in order: each head is read, then its body is
/// skipped by `Content-Length` or chunked framing (pipelined requests give several answers).
pub fn status_codes(answer: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    let mut rest = answer;
    while let Some(head_end) = find(rest, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let status =
            lines.next().and_then(|line| line.strip_prefix("HTTP/1.1 ").or_else(|| line.strip_prefix("HTTP/1.0 ")));
        let Some(code) = status.and_then(|s| s.get(..3)).and_then(|c| c.parse::<u16>().ok()) else { break };
        codes.push(code);
        let (mut length, mut chunked) = (0usize, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
        rest = &rest[head_end + 4..];
        if chunked {
            match find(rest, b"0\r\n\r\n") {
                Some(end) => rest = &rest[end + 5..],
                None => break,
            }
        } else {
            rest = &rest[length.min(rest.len())..];
        }
    }
    codes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
