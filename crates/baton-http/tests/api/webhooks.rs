//! `POST /webhooks/{github,gitea,plane}` against a real engine over SQLite: signatures,
//! dedup by delivery id, 202 before processing, 401/404/413/415 with nothing stored, and the
//! engine's worker recording each parsed event. Payloads are the parser fixtures of
//! baton-adapters. One test measures the webhook-to-202 latency over loopback TCP (figures only).

use super::{error_message, send};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use baton_domain::Pipeline;
use baton_engine::{Engine, EngineSettings, Limits};
use baton_http::webhooks::{WEBHOOK_BODY_BYTES_MAX, sign};
use baton_http::{AppState, WebhookSecrets, app};
use baton_store::DeliveryRecord;
use baton_store_sqlite::SqliteStore;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

const SECRET: &str = "0123456789abcdef-webhook-secret";

/// One source as a sender sees it: its route and headers, and a fixture it would send.
struct Sender {
    name: &'static str,
    signature_header: &'static str,
    prefix: &'static str,
    delivery_header: &'static str,
    event_header: &'static str,
    event: &'static str,
    fixture: &'static str,
}

const SENDERS: [Sender; 3] = [
    Sender {
        name: "github",
        signature_header: "X-Hub-Signature-256",
        prefix: "sha256=",
        delivery_header: "X-GitHub-Delivery",
        event_header: "X-GitHub-Event",
        event: "issues",
        fixture: "github/issues__labeled_with_baton_label.json",
    },
    Sender {
        name: "gitea",
        signature_header: "X-Gitea-Signature",
        prefix: "",
        delivery_header: "X-Gitea-Delivery",
        event_header: "X-Gitea-Event-Type",
        event: "issue_label",
        fixture: "gitea/issue_label__label_updated.json",
    },
    Sender {
        name: "plane",
        signature_header: "X-Plane-Signature",
        prefix: "",
        delivery_header: "X-Plane-Delivery",
        event_header: "X-Plane-Event",
        event: "issue",
        fixture: "plane/issue__created.json",
    },
];

fn fixture(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../baton-adapters/tests/fixtures/webhooks");
    std::fs::read(dir.join(name)).unwrap()
}

struct Hooks {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
}

impl Hooks {
    async fn new() -> Self {
        Hooks::with_secrets(Vec::new()).await
    }

    async fn with_secrets(masked: Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
        let settings = EngineSettings {
            data_dir: dir.path().join("data"),
            limits: Limits::default(),
            repos: vec![],
            agents: BTreeMap::new(),
            pipeline: Pipeline::default_pipeline(),
            budgets: baton_engine::Budgets::default(),
            baton_exe: PathBuf::from("baton"),
            env_passthrough: vec![],
        };
        let engine = Engine::builder(settings, Arc::new(store)).secrets(masked).build();
        Hooks { _dir: dir, engine }
    }

    fn state(&self, secrets: WebhookSecrets) -> AppState {
        AppState {
            engine: self.engine.clone(),
            api_token: None,
            read_requires_token: false,
            started_at_ms: 0,
            webhooks: secrets,
            observability: baton_http::Observability::default(),
            dashboard: baton_http::Dashboard::default(),
        }
    }

    fn app(&self) -> Router {
        let secret = Some(SECRET.to_string());
        app(self.state(WebhookSecrets {
            github: secret.clone(),
            gitea: secret.clone(),
            plane: secret,
            ..Default::default()
        }))
    }

    async fn rows(&self, source: &str) -> Vec<DeliveryRecord> {
        self.engine.store().deliveries(Some(source)).await.unwrap()
    }
}

/// A signed delivery of `body` as `sender` sends it.
fn signed(sender: &Sender, delivery: &str, body: &[u8]) -> axum::http::request::Builder {
    Request::post(format!("/webhooks/{}", sender.name))
        .header(header::CONTENT_TYPE, "application/json")
        .header(sender.signature_header, format!("{}{}", sender.prefix, sign(SECRET.as_bytes(), body)))
        .header(sender.delivery_header, delivery)
        .header(sender.event_header, sender.event)
}

#[tokio::test]
async fn a_valid_signature_is_202_and_one_row_then_the_worker_records_the_parsed_event() {
    let h = Hooks::new().await;
    for sender in &SENDERS {
        let body = fixture(sender.fixture);
        let (status, answer) =
            send(h.app(), signed(sender, "d-1", &body).body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {answer}", sender.name);
        assert_eq!(answer["duplicate"], false, "{answer}");
        let rows = h.rows(sender.name).await;
        assert_eq!(rows.len(), 1, "{}", sender.name);
        assert_eq!(rows[0].payload.as_bytes(), body.as_slice(), "the raw body is stored as received");
        assert_eq!((rows[0].delivery_id.as_str(), rows[0].event.as_str()), ("d-1", sender.event));
        assert_eq!(rows[0].processed_at_ms, None, "acknowledged before any processing");
    }
    let pass = h.engine.process_webhooks().await.unwrap();
    assert_eq!((pass.handled, pass.failed), (3, 0));
    for sender in &SENDERS {
        let row = &h.rows(sender.name).await[0];
        assert!(row.processed_at_ms.is_some());
        assert_eq!(row.error, None);
        let parsed = row.parsed.as_deref().unwrap();
        assert!(parsed.starts_with("issue") || parsed.starts_with("work item"), "{}: {parsed}", sender.name);
    }
    assert!(h.engine.store().pending_deliveries(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_replayed_delivery_is_202_duplicate_and_still_one_row() {
    let h = Hooks::new().await;
    for sender in &SENDERS {
        let body = fixture(sender.fixture);
        for round in 0..3 {
            let (status, answer) =
                send(h.app(), signed(sender, "same-id", &body).body(Body::from(body.clone())).unwrap()).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            assert_eq!(answer["duplicate"], round > 0, "{}: round {round}: {answer}", sender.name);
        }
        assert_eq!(h.rows(sender.name).await.len(), 1, "{}", sender.name);
    }
}

#[tokio::test]
async fn without_a_delivery_id_the_body_digest_deduplicates() {
    let h = Hooks::new().await;
    let sender = &SENDERS[2];
    let body = fixture(sender.fixture);
    let request = || {
        Request::post("/webhooks/plane")
            .header(header::CONTENT_TYPE, "application/json")
            .header(sender.signature_header, sign(SECRET.as_bytes(), &body))
            .header(sender.event_header, "issue")
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let (first, _) = send(h.app(), request()).await;
    let (second, answer) = send(h.app(), request()).await;
    assert_eq!((first, second), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(answer["duplicate"], true);
    let rows = h.rows("plane").await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].delivery_id.starts_with("sha256:"), "{}", rows[0].delivery_id);
}

#[tokio::test]
async fn gitea_events_come_from_the_fine_header_else_the_coarse_one() {
    let h = Hooks::new().await;
    let body = fixture("gitea/status__failure.json");
    let signature = sign(SECRET.as_bytes(), &body);
    // Gitea 1.23.0 sent `status` with an empty X-Gitea-Event and only X-Gitea-Event-Type set.
    let cases = [
        ("1", "", "status", "status"),
        ("2", "issues", "", "issues"),
        ("3", "pull_request", "pull_request_sync", "pull_request_sync"),
    ];
    for (id, coarse, fine, stored) in cases {
        let request = Request::post("/webhooks/gitea")
            .header(header::CONTENT_TYPE, "application/json")
            .header("X-Gitea-Signature", &signature)
            .header("X-Gitea-Delivery", id)
            .header("X-Gitea-Event", coarse)
            .header("X-Gitea-Event-Type", fine)
            .body(Body::from(body.clone()))
            .unwrap();
        let (status, answer) = send(h.app(), request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let rows = h.rows("gitea").await;
        assert_eq!(rows.iter().find(|r| r.delivery_id == id).unwrap().event, stored);
    }
    h.engine.process_webhooks().await.unwrap();
    let first = h.rows("gitea").await.into_iter().find(|r| r.delivery_id == "1").unwrap();
    assert_eq!(first.parsed.as_deref().unwrap().split(' ').next(), Some("status"), "{first:?}");
}

#[tokio::test]
async fn forged_missing_or_misplaced_signatures_are_401_and_store_nothing() {
    let h = Hooks::new().await;
    for sender in &SENDERS {
        let body = fixture(sender.fixture);
        let other = b"{\"action\":\"opened\"}".to_vec();
        let wrong_key = format!("{}{}", sender.prefix, baton_http::webhooks::sign(b"not-the-secret-at-all", &body));
        let cases: Vec<(&str, Request<Body>)> = vec![
            ("forged", {
                let mut r = signed(sender, "d-1", &body).body(Body::from(body.clone())).unwrap();
                let forged = format!("{}{}", sender.prefix, "ab".repeat(32));
                r.headers_mut().insert(sender.signature_header, forged.parse().unwrap());
                r
            }),
            ("another key", {
                let mut r = signed(sender, "d-2", &body).body(Body::from(body.clone())).unwrap();
                r.headers_mut().insert(sender.signature_header, wrong_key.parse().unwrap());
                r
            }),
            ("over another body", signed(sender, "d-3", &other).body(Body::from(body.clone())).unwrap()),
            ("missing", {
                let mut r = signed(sender, "d-4", &body).body(Body::from(body.clone())).unwrap();
                r.headers_mut().remove(sender.signature_header);
                r
            }),
            ("not hex", {
                let mut r = signed(sender, "d-5", &body).body(Body::from(body.clone())).unwrap();
                r.headers_mut().insert(sender.signature_header, format!("{}zz", sender.prefix).parse().unwrap());
                r
            }),
        ];
        for (what, request) in cases {
            let (status, answer) = send(h.app(), request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {what}: {answer}", sender.name);
            let message = error_message(&answer, "unauthorized");
            assert!(message.to_ascii_lowercase().contains(&sender.signature_header.to_ascii_lowercase()), "{message}");
        }
        assert!(h.rows(sender.name).await.is_empty(), "{}: nothing stored", sender.name);
    }
}

#[tokio::test]
async fn github_needs_the_sha256_prefix() {
    let h = Hooks::new().await;
    let sender = &SENDERS[0];
    let body = fixture(sender.fixture);
    let mut request = signed(sender, "d-1", &body).body(Body::from(body.clone())).unwrap();
    request.headers_mut().insert(sender.signature_header, sign(SECRET.as_bytes(), &body).parse().unwrap());
    let (status, _) = send(h.app(), request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.rows("github").await.is_empty());
}

#[tokio::test]
async fn an_oversized_body_is_413_naming_the_limit_and_stores_nothing() {
    let h = Hooks::new().await;
    let mut body = b"{\"pad\":\"".to_vec();
    body.resize(WEBHOOK_BODY_BYTES_MAX + 1 - 2, b'x');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), WEBHOOK_BODY_BYTES_MAX + 1);
    for sender in &SENDERS {
        let (status, answer) =
            send(h.app(), signed(sender, "big", &body).body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        assert!(error_message(&answer, "payload_too_large").contains(&WEBHOOK_BODY_BYTES_MAX.to_string()));
        assert!(h.rows(sender.name).await.is_empty());
    }
    // Exactly at the limit is accepted.
    body.truncate(WEBHOOK_BODY_BYTES_MAX - 2);
    body.extend_from_slice(b"\"}");
    let (status, answer) = send(h.app(), signed(&SENDERS[0], "at-limit", &body).body(Body::from(body)).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

#[tokio::test]
async fn an_unconfigured_source_is_404_naming_the_key_to_set() {
    let h = Hooks::new().await;
    let only_github = app(h.state(WebhookSecrets { github: Some(SECRET.into()), ..Default::default() }));
    for sender in &SENDERS[1..] {
        let body = fixture(sender.fixture);
        let (status, answer) =
            send(only_github.clone(), signed(sender, "d-1", &body).body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        let message = error_message(&answer, "not_found");
        assert!(message.contains(&format!("webhooks.{}_secret", sender.name)), "{message}");
        assert!(h.rows(sender.name).await.is_empty());
    }
    let body = fixture(SENDERS[0].fixture);
    let (status, _) = send(only_github, signed(&SENDERS[0], "d-1", &body).body(Body::from(body)).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_form_encoded_delivery_is_415_and_stores_nothing() {
    let h = Hooks::new().await;
    let body = b"payload=%7B%7D".to_vec();
    for sender in &SENDERS {
        let mut request = signed(sender, "d-1", &body).body(Body::from(body.clone())).unwrap();
        request.headers_mut().insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
        let (status, answer) = send(h.app(), request).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
        assert!(h.rows(sender.name).await.is_empty());
    }
}

#[tokio::test]
async fn webhooks_need_no_bearer_token_and_only_accept_post() {
    let h = Hooks::new().await;
    let (status, _) = send(h.app(), Request::get("/webhooks/github").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_signed_body_that_does_not_parse_is_stored_then_recorded_with_its_error() {
    let h = Hooks::new().await;
    let sender = &SENDERS[0];
    let body = fixture("github/issues__missing_number_is_an_error.json");
    let (status, _) = send(h.app(), signed(sender, "bad", &body).body(Body::from(body)).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let pass = h.engine.process_webhooks().await.unwrap();
    assert_eq!((pass.handled, pass.failed), (0, 1));
    let row = &h.rows("github").await[0];
    assert!(row.processed_at_ms.is_some());
    assert!(row.error.as_deref().unwrap().contains("number"), "{row:?}");
}

#[tokio::test]
async fn known_secrets_in_a_payload_are_masked_in_the_inbox() {
    let leaked = "sk-ant-leaked-key-0123456789";
    let h = Hooks::with_secrets(vec![leaked.to_string()]).await;
    let sender = &SENDERS[0];
    let body = String::from_utf8(fixture(sender.fixture)).unwrap().replace("Expected: 0.30", leaked).into_bytes();
    let (status, _) = send(h.app(), signed(sender, "d-1", &body).body(Body::from(body)).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let row = &h.rows("github").await[0];
    assert!(!row.payload.contains(leaked));
    assert!(serde_json::from_str::<serde_json::Value>(&row.payload).is_ok(), "still JSON after masking");
}

/// The engine loop (as `baton serve` runs it) picks up a stored delivery by itself, woken by
/// the receiver, and hands it to the configured sink exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_loop_processes_a_delivery_after_the_202() {
    use baton_engine::webhooks::{WebhookEvent, WebhookSink};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    #[async_trait::async_trait]
    impl WebhookSink for Recorder {
        async fn handle(&self, _: &Engine, delivery: &DeliveryRecord, event: &WebhookEvent) -> Result<(), String> {
            self.0.lock().unwrap().push(format!("{} {}", delivery.delivery_id, event.summary()));
            Ok(())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
    let settings = EngineSettings {
        data_dir: dir.path().join("data"),
        limits: Limits { poll_interval_ms: 60_000, ..Limits::default() },
        repos: vec![],
        agents: BTreeMap::new(),
        pipeline: Pipeline::default_pipeline(),
        budgets: baton_engine::Budgets::default(),
        baton_exe: PathBuf::from("baton"),
        env_passthrough: vec![],
    };
    let recorder = Arc::new(Recorder::default());
    let engine = Engine::builder(settings, Arc::new(store)).webhook_sink(recorder.clone()).build();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let engine_loop = tokio::spawn(engine.clone().run(shutdown));
    // Let the loop finish its first pass and go to sleep for the (long) poll interval.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let hooks = Hooks { _dir: dir, engine: engine.clone() };
    let sender = &SENDERS[0];
    let body = fixture(sender.fixture);
    for _ in 0..2 {
        let (status, _) =
            send(hooks.app(), signed(sender, "live-1", &body).body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let mut processed = None;
    for _ in 0..100 {
        let row = hooks.rows("github").await.pop().unwrap();
        if row.processed_at_ms.is_some() {
            processed = Some(row);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let row = processed.expect("processed within 2 s, long before the 60 s poll interval");
    assert_eq!(row.parsed.as_deref(), Some("issue acme/shop#42 labeled"));
    assert_eq!(
        *recorder.0.lock().unwrap(),
        ["live-1 issue acme/shop#42 labeled"],
        "once, the replay was not handed on"
    );
    stop.send(true).unwrap();
    engine_loop.await.unwrap();
}

/// Webhook-to-202 latency over loopback TCP, one connection per delivery as the senders do:
/// prints p50/p99 (a figure for the note, not an assertion beyond "every answer was 202").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_to_202_latency_over_loopback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const DELIVERIES: usize = 1_000;
    let h = Hooks::new().await;
    let secret = Some(SECRET.to_string());
    let state =
        h.state(WebhookSecrets { github: secret.clone(), gitea: secret.clone(), plane: secret, ..Default::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(baton_http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let body = fixture(SENDERS[0].fixture);
    let signature = format!("sha256={}", sign(SECRET.as_bytes(), &body));
    let mut micros = Vec::with_capacity(DELIVERIES);
    for i in 0..DELIVERIES {
        let head = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             X-GitHub-Event: issues\r\nX-GitHub-Delivery: {i:08x}-latency\r\nX-Hub-Signature-256: {signature}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let started = std::time::Instant::now();
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        micros.push(started.elapsed().as_micros());
        assert!(answer.starts_with(b"HTTP/1.1 202"), "{}", String::from_utf8_lossy(&answer));
    }
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "webhook-to-202 over loopback, {DELIVERIES} deliveries of {} bytes, SQLite: p50 {} us, p99 {} us, max {} us",
        body.len(),
        at(0.50),
        at(0.99),
        micros[micros.len() - 1]
    );
    assert_eq!(h.rows("github").await.len(), DELIVERIES);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A receiver whose engine turns GitHub issues of `acme/shop` labelled `baton` into tasks of the
/// Baton repository `shop` (issues by `alice` only).
async fn intake_hooks() -> (tempfile::TempDir, Arc<Engine>) {
    use baton_engine::intake::{IntakeRule, IntakeSink, IntakeSource};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
    let settings = EngineSettings {
        data_dir: dir.path().join("data"),
        limits: Limits::default(),
        repos: vec![baton_engine::RepoSettings {
            name: "shop".into(),
            path: dir.path().join("shop"),
            default_branch: "main".into(),
            prefix: "SHOP".into(),
            url: None,
            push: None,
            delete_remote_branch: baton_engine::DeleteRemoteBranch::default(),
            credentials_env: None,
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
    let rule = IntakeRule {
        source: IntakeSource::Github,
        forge_repo: "acme/shop".into(),
        repo: "shop".into(),
        start_label: "baton".into(),
        authors: vec!["alice".into()],
        approve_label: "baton:approved".into(),
        deploy_label: "baton:deploy".into(),
        stop_label: "baton:stop".into(),
        approvers: vec!["alice".into()],
        ..IntakeRule::default()
    };
    let engine = Engine::builder(settings, Arc::new(store)).webhook_sink(Arc::new(IntakeSink::new(vec![rule]))).build();
    (dir, engine)
}

// An issue labelled with the start label becomes one task carrying the ticket's reference; the
// same label event again (a new delivery) or a replay creates nothing more; an issue by an author
// off the allowlist, another label, or a comment creates nothing.
#[tokio::test]
async fn a_labelled_issue_becomes_one_task_and_nothing_else_does() {
    let (_dir, engine) = intake_hooks().await;
    let hooks = Hooks { _dir: tempfile::tempdir().unwrap(), engine: engine.clone() };
    let github = &SENDERS[0];
    let labelled = fixture(github.fixture);
    let deliver = |id: &str, event: &'static str, body: Vec<u8>| {
        Request::post("/webhooks/github")
            .header(header::CONTENT_TYPE, "application/json")
            .header(github.signature_header, format!("sha256={}", sign(SECRET.as_bytes(), &body)))
            .header(github.delivery_header, id)
            .header(github.event_header, event)
            .body(Body::from(body))
            .unwrap()
    };
    for id in ["d-1", "d-1", "d-2"] {
        let (status, _) = send(hooks.app(), deliver(id, "issues", labelled.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let mut value: serde_json::Value = serde_json::from_slice(&labelled).unwrap();
    value["issue"]["number"] = 43.into();
    value["issue"]["user"]["login"] = "mallory".into();
    send(hooks.app(), deliver("d-3", "issues", serde_json::to_vec(&value).unwrap())).await;
    let mut other_label = serde_json::from_slice::<serde_json::Value>(&labelled).unwrap();
    other_label["issue"]["number"] = 44.into();
    other_label["label"]["name"] = "bug".into();
    send(hooks.app(), deliver("d-4", "issues", serde_json::to_vec(&other_label).unwrap())).await;
    send(hooks.app(), deliver("d-5", "issue_comment", fixture("github/issue_comment__created_is_ignored.json"))).await;

    let pass = engine.process_webhooks().await.unwrap();
    assert_eq!((pass.handled, pass.failed, pass.retried), (5, 0, 0));
    let tasks = engine.store().list_tasks(&baton_store::TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0].external_ref.as_deref(), Some("github:acme/shop#42"));
    assert_eq!(tasks[0].title, "Checkout rounds totals wrongly");
    assert_eq!(tasks[0].repo, "shop");
}

// Decisions by label reach the ticket's live task under the sender's principal: an approve label
// by someone off the approvers list changes nothing; closing the issue is a STOP.
#[tokio::test]
async fn labels_and_close_decide_the_live_task_for_approvers_only() {
    let (_dir, engine) = intake_hooks().await;
    let hooks = Hooks { _dir: tempfile::tempdir().unwrap(), engine: engine.clone() };
    let github = &SENDERS[0];
    let labelled: serde_json::Value = serde_json::from_slice(&fixture(github.fixture)).unwrap();
    let deliver = |id: &str, value: &serde_json::Value| {
        let body = serde_json::to_vec(value).unwrap();
        Request::post("/webhooks/github")
            .header(header::CONTENT_TYPE, "application/json")
            .header(github.signature_header, format!("sha256={}", sign(SECRET.as_bytes(), &body)))
            .header(github.delivery_header, id)
            .header(github.event_header, "issues")
            .body(Body::from(body))
            .unwrap()
    };
    send(hooks.app(), deliver("start", &labelled)).await;
    engine.process_webhooks().await.unwrap();
    let task = engine.store().list_tasks(&baton_store::TaskFilter::default()).await.unwrap().remove(0);

    let mut approve = labelled.clone();
    approve["label"]["name"] = "baton:approved".into();
    approve["sender"]["login"] = "mallory".into();
    send(hooks.app(), deliver("approve-mallory", &approve)).await;
    let mut close = labelled.clone();
    close["action"] = "closed".into();
    close["issue"]["state"] = "closed".into();
    close["sender"]["login"] = "alice".into();
    send(hooks.app(), deliver("close-alice", &close)).await;
    engine.process_webhooks().await.unwrap();

    let events = engine.store().events(Some(task.id), 0, 100).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "approved"), "mallory's label approved: {events:#?}");
    let stop = events.iter().find(|e| e.kind == "stop").unwrap_or_else(|| panic!("no stop: {events:#?}"));
    assert_eq!(stop.detail["event"]["by"], "tracker:github:alice", "{stop:?}");
    let after = engine.store().task(&baton_store::TaskKey::Id(task.id)).await.unwrap().unwrap();
    assert!(after.state.is_terminal(), "closing the issue stops the task: {:?}", after.state);
}
