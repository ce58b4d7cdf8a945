//! The trust boundary over HTTP: principals and scopes, exact idempotency on every mutation, and
//! refused input (control characters, oversized fields, a second task for a live ticket).

use super::{Harness, TOKEN, authed, error_message, send};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use baton_engine::Scope;
use baton_http::idempotency::REPLAYED_HEADER;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A POST with `token` as bearer, an optional idempotency key and a JSON body.
fn post_as(token: &str, uri: &str, key: Option<&str>, body: &Value) -> Request<Body> {
    let mut builder = Request::post(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        builder = builder.header("Idempotency-Key", key);
    }
    let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
    builder.body(body).unwrap()
}

/// Drives a task to the approval hold by hand: the harness runs no claim loop, so the analysis
/// job's result is applied as its executor would.
async fn awaiting_approval(h: &Harness, title: &str) -> String {
    let task = h.create(title).await;
    let id = task["work_item_id"].as_str().unwrap().to_string();
    let record = h.engine.store().task(&baton_store::TaskKey::parse(&id)).await.unwrap().unwrap();
    let job = record.state.job.expect("the analysis job is queued");
    let outcome = h
        .engine
        .apply_event(
            record.id,
            &baton_domain::Event::JobFinished {
                job,
                stage: record.state.stage.clone(),
                outcome: baton_domain::JobOutcome::Completed { verdicts: vec![] },
            },
            None,
            None,
        )
        .await
        .unwrap();
    assert!(matches!(outcome, baton_engine::InputOutcome::Applied { .. }), "{outcome:?}");
    let (_, shown) = h.get(&format!("/api/tasks/{id}")).await;
    assert_eq!(shown["state"]["hold"]["kind"], "awaiting_approval", "{shown}");
    id
}

#[tokio::test]
async fn a_read_token_cannot_decide_a_human_gate_and_the_timeline_names_the_principal() {
    let h = Harness::new().await;
    let id = awaiting_approval(&h, "Add a login page").await;
    let reader = h.engine.create_token("dashboard", Scope::Read, "cli:test").await.unwrap();
    let actor = h.engine.create_token("alice", Scope::Act, "cli:test").await.unwrap();
    assert_ne!(reader, actor);

    let (status, reply) =
        send(h.app(), post_as(&reader, &format!("/api/tasks/{id}/approve"), None, &Value::Null)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let message = error_message(&reply, "forbidden");
    assert!(message.contains("api:dashboard") && message.contains("act"), "{message}");
    assert_eq!(h.get(&format!("/api/tasks/{id}")).await.1["state"]["hold"]["kind"], "awaiting_approval");

    let (status, reply) = send(h.app(), post_as(&actor, &format!("/api/tasks/{id}/approve"), None, &Value::Null)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["outcome"], "applied");
    let (_, shown) = h.get(&format!("/api/tasks/{id}")).await;
    let approved = shown["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "approved").cloned().unwrap();
    assert_eq!(approved["detail"]["event"]["by"], "api:alice", "{approved}");

    // A revoked token is refused at once; the database holds only digests, never a token.
    assert!(h.engine.store().revoke_api_token("alice", 1).await.unwrap());
    let (status, _) = send(h.app(), post_as(&actor, &format!("/api/tasks/{id}/stop"), None, &Value::Null)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let db = std::fs::read(h._dir.path().join("baton.db")).unwrap();
    for token in [&reader, &actor] {
        assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()), "a token is stored in clear");
    }
}

#[tokio::test]
async fn reads_can_require_a_read_token() {
    let h = Harness::new().await;
    let reader = h.engine.create_token("viewer", Scope::Read, "cli:test").await.unwrap();
    let app = || {
        baton_http::app(baton_http::AppState {
            engine: h.engine.clone(),
            api_token: Some(TOKEN.into()),
            read_requires_token: true,
            started_at_ms: 0,
            webhooks: baton_http::WebhookSecrets::default(),
            observability: baton_http::Observability::default(),
            dashboard: baton_http::Dashboard::default(),
        })
    };
    let (status, _) = send(app(), Request::get("/api/tasks").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let authed_get = Request::get("/api/tasks").header(header::AUTHORIZATION, format!("Bearer {reader}"));
    let (status, body) = send(app(), authed_get.body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn a_key_reused_on_another_task_is_refused_not_silently_dropped() {
    // Approving A with key k, then B with k: B must not answer "duplicate" and stay unapproved.
    let h = Harness::new().await;
    let a = awaiting_approval(&h, "Task A").await;
    let b = awaiting_approval(&h, "Task B").await;
    let (status, first) =
        send(h.app(), post_as(TOKEN, &format!("/api/tasks/{a}/approve"), Some("k"), &Value::Null)).await;
    assert_eq!((status, first["outcome"].as_str()), (StatusCode::OK, Some("applied")));
    let (status, reply) =
        send(h.app(), post_as(TOKEN, &format!("/api/tasks/{b}/approve"), Some("k"), &Value::Null)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(&reply, "invalid").contains("`k`"), "{reply}");
    assert_eq!(h.get(&format!("/api/tasks/{b}")).await.1["state"]["hold"]["kind"], "awaiting_approval");

    // The same key with a different body on the same route is refused too.
    let answer = |text: &str| post_as(TOKEN, &format!("/api/tasks/{a}/answer"), Some("ans"), &json!({ "text": text }));
    let (first_status, _) = send(h.app(), answer("yes")).await;
    let (status, reply) = send(h.app(), answer("no")).await;
    assert_ne!(first_status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");

    // Keys are scoped by principal: another token may use `k` for its own request.
    let bob = h.engine.create_token("bob", Scope::Act, "cli:test").await.unwrap();
    let (status, reply) =
        send(h.app(), post_as(&bob, &format!("/api/tasks/{b}/approve"), Some("k"), &Value::Null)).await;
    assert_eq!((status, reply["outcome"].as_str()), (StatusCode::OK, Some("applied")), "{reply}");
}

#[tokio::test]
async fn twenty_parallel_creates_with_one_key_make_one_task() {
    let h = Harness::new().await;
    let body = json!({ "repo": "demo", "title": "Only once" });
    let mut calls = Vec::new();
    for _ in 0..20 {
        let request = post_as(TOKEN, "/api/tasks", Some("create-1"), &body);
        let app = h.app();
        calls.push(tokio::spawn(async move {
            let response = app.oneshot(request).await.unwrap();
            let replayed = response.headers().contains_key(REPLAYED_HEADER);
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
            (status, replayed, serde_json::from_slice::<Value>(&bytes).unwrap())
        }));
    }
    let mut replays = 0;
    let mut ids = std::collections::BTreeSet::new();
    for call in calls {
        let (status, replayed, task) = call.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{task}");
        replays += usize::from(replayed);
        ids.insert(task["work_item_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one key made several tasks: {ids:?}");
    assert_eq!(replays, 19);
    assert_eq!(h.get("/api/tasks").await.1.as_array().unwrap().len(), 1);

    // The key with another body is a mismatch, not a second task.
    let other = post_as(TOKEN, "/api/tasks", Some("create-1"), &json!({ "repo": "demo", "title": "Another" }));
    let (status, reply) = send(h.app(), other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
}

#[tokio::test]
async fn a_live_ticket_gets_no_second_task() {
    let h = Harness::new().await;
    let body = json!({ "repo": "demo", "title": "From the tracker", "external_ref": "plane:ORCH-12" });
    let (status, first) =
        send(h.app(), authed(Method::POST, "/api/tasks").body(Body::from(body.to_string())).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, reply) =
        send(h.app(), authed(Method::POST, "/api/tasks").body(Body::from(body.to_string())).unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(error_message(&reply, "conflict").contains(first["work_item_id"].as_str().unwrap()), "{reply}");
}

#[tokio::test]
async fn poisonous_and_oversized_fields_are_refused_naming_the_problem() {
    let h = Harness::new().await;
    let create = |body: Value| authed(Method::POST, "/api/tasks").body(Body::from(body.to_string())).unwrap();
    for (title, needle) in [
        ("nul\u{0}inside", "U+0000"),
        ("\u{1b}]0;owned\u{7}", "U+001B"),
        ("right\u{202e}left", "U+202E"),
        ("two\nlines", "U+000A"),
    ] {
        let (status, reply) = send(h.app(), create(json!({ "repo": "demo", "title": title }))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{title:?}");
        assert!(error_message(&reply, "invalid").contains(needle), "{reply}");
    }
    let (status, reply) = send(h.app(), create(json!({ "repo": "demo", "title": "x".repeat(201) }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(&reply, "invalid").contains("limits.title_chars_max"), "{reply}");
    let (status, reply) =
        send(h.app(), create(json!({ "repo": "demo", "title": "ok", "external_ref": "r".repeat(201) }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(&reply, "invalid").contains("limits.external_ref_bytes_max"), "{reply}");
    let (status, _) = send(h.app(), create(json!({ "repo": "demo", "title": "ok", "body": "a\u{0}b" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(h.get("/api/tasks").await.1, json!([]));
}
