//! `POST /webhooks/telegram`: the secret-token header is checked (wrong or missing → 401 and
//! nothing stored), an update is stored once per `update_id`, and the route is off (404 naming
//! the key) without a secret.
// Test scaffolding: a failed setup step should panic the test.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use baton_domain::Pipeline;
use baton_engine::{Engine, EngineSettings, Limits};
use baton_http::{AppState, WebhookSecrets, app};
use baton_store_sqlite::SqliteStore;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

const SECRET: &str = "tg-webhook-secret-0123456789";

struct Hooks {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
}

impl Hooks {
    async fn new() -> Self {
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
        Hooks { engine: Engine::builder(settings, Arc::new(store)).build(), _dir: dir }
    }

    fn app(&self, secret: Option<&str>) -> Router {
        app(AppState {
            engine: self.engine.clone(),
            api_token: None,
            read_requires_token: false,
            started_at_ms: 0,
            webhooks: WebhookSecrets { telegram: secret.map(str::to_string), ..Default::default() },
            observability: baton_http::Observability::default(),
            dashboard: baton_http::Dashboard::default(),
        })
    }

    async fn rows(&self) -> usize {
        self.engine.store().deliveries(Some("telegram")).await.unwrap().len()
    }
}

fn update(update_id: i64) -> Vec<u8> {
    json!({
        "update_id": update_id,
        "callback_query": {
            "id": "cq-1", "from": { "id": 42, "is_bot": false, "first_name": "A" },
            "chat_instance": "1", "data": "approve:1",
            "message": { "message_id": 5, "date": 1, "chat": { "id": -100, "type": "group" } }
        }
    })
    .to_string()
    .into_bytes()
}

async fn post(app: Router, secret: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = Request::post("/webhooks/telegram").header(header::CONTENT_TYPE, "application/json");
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    let response = app.oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_wrong_or_missing_secret_header_is_401_and_nothing_is_stored() {
    let h = Hooks::new().await;
    let (status, body) = post(h.app(Some(SECRET)), Some("not-the-secret"), update(1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["message"].as_str().unwrap().contains("webhook_secret_env"), "{body}");
    let (status, _) = post(h.app(Some(SECRET)), None, update(1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(h.app(Some(SECRET)), Some(&SECRET[..SECRET.len() - 1]), update(1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.rows().await, 0);
}

#[tokio::test]
async fn an_update_is_stored_once_per_update_id() {
    let h = Hooks::new().await;
    let (status, body) = post(h.app(Some(SECRET)), Some(SECRET), update(900)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "accepted": true, "duplicate": false, "delivery_id": "900" }));
    let (status, body) = post(h.app(Some(SECRET)), Some(SECRET), update(900)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["duplicate"], true);
    let rows = h.engine.store().deliveries(Some("telegram")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].delivery_id.as_str(), rows[0].event.as_str()), ("900", "callback_query"));
}

#[tokio::test]
async fn without_a_secret_the_route_is_off_and_an_update_without_an_id_is_refused() {
    let h = Hooks::new().await;
    let (status, body) = post(h.app(None), Some(SECRET), update(1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["message"].as_str().unwrap().contains("telegram.webhook_secret_env"), "{body}");
    let (status, _) = post(h.app(Some(SECRET)), Some(SECRET), br#"{"message":{}}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(h.rows().await, 0);
}
