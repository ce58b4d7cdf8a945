//! The dashboard over HTTP against a real engine and SQLite: login and its session cookie, CSRF
//! refusal of forged action posts, read-only mode and read-scope sessions without buttons,
//! artifact HTML escaped, login required when reads need a token, the board bounded, and the
//! `/api/events` stream resumed with `Last-Event-ID` over a real socket.
// Tests may unwrap, and they init a git repository with std::process::Command.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

#[path = "dashboard/support.rs"]
mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use baton_http::{DashboardMode, app};
use http_body_util::BodyExt;
use std::time::Duration;
use support::Harness;
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

async fn get(app: &Router, uri: &str, cookie: Option<&str>) -> Answer {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

async fn post_form(app: &Router, uri: &str, cookie: Option<&str>, form: &str) -> Answer {
    let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(app, request.body(Body::from(form.to_string())).unwrap()).await
}

/// Logs in with `token`; returns the `Cookie` header value and the page's CSRF token.
async fn login(app: &Router, token: &str) -> (String, String) {
    let answer = post_form(app, "/login", None, &format!("token={token}&next=/")).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let set_cookie = answer.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let page = get(app, "/", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    (cookie, csrf_of(&page.body))
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field on the page") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

fn action_forms(html: &str) -> usize {
    html.matches(" data-action=\"").count()
}

// Login with an act token answers with an HttpOnly, SameSite=Strict session cookie, and the pages
// then name the user; a wrong token is refused with the reason and sets no cookie.
#[tokio::test]
async fn login_starts_a_strict_http_only_session() {
    let h = Harness::new().await;
    let app = app(h.state(DashboardMode::On, false));
    let answer = post_form(&app, "/login", None, &format!("token={}&next=/usage", h.act_token)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers.get(header::LOCATION).unwrap(), "/usage");
    let cookie = answer.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cookie.starts_with("baton_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    let page = get(&app, "/usage", Some(cookie.split(';').next().unwrap())).await;
    assert!(page.body.contains("api:alice"), "the page names the logged-in principal");

    let refused = post_form(&app, "/login", None, "token=bt_not-a-token").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.headers.get(header::SET_COOKIE).is_none());
    assert!(refused.body.contains("not valid"), "{}", refused.body);
    // An open redirect is not possible through `next`.
    let outside = post_form(&app, "/login", None, &format!("token={}&next=//evil.example/", h.act_token)).await;
    assert_eq!(outside.headers.get(header::LOCATION).unwrap(), "/");
}

// A forged POST (the session cookie but no or a wrong CSRF token) is refused and changes nothing;
// the same action with the session's CSRF token approves the task.
#[tokio::test]
async fn forged_action_post_is_refused_without_the_csrf_token() {
    let h = Harness::new().await;
    let task = h.create("Add a multiply function").await;
    h.park_for_approval(&task).await;
    let app = app(h.state(DashboardMode::On, false));
    let (cookie, csrf) = login(&app, &h.act_token).await;
    let uri = format!("/tasks/{}/approve", task.work_item_id);

    let no_token = post_form(&app, &uri, Some(&cookie), "").await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN, "{}", no_token.body);
    assert!(no_token.body.contains("CSRF"), "{}", no_token.body);
    let wrong = post_form(&app, &uri, Some(&cookie), &format!("csrf={}x", &csrf[..csrf.len() - 1])).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let no_session = post_form(&app, &uri, None, &format!("csrf={csrf}")).await;
    assert_eq!(no_session.status, StatusCode::UNAUTHORIZED, "{}", no_session.body);
    assert_eq!(h.task(&task.work_item_id).await.state.stage, "analysis", "nothing was approved");

    let approved = post_form(&app, &uri, Some(&cookie), &format!("csrf={csrf}")).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    let moved = h.task(&task.work_item_id).await;
    assert_eq!(moved.state.stage, "architecture");
    let timeline = h.engine.store().events(Some(task.id), 0, 100).await.unwrap();
    assert!(
        timeline.iter().any(|e| e.message.contains("api:alice") || e.detail.to_string().contains("api:alice")),
        "the approval is recorded under the session's principal"
    );
}

// Read-only mode: the task page shows no action buttons even for an act session, and an action
// POST with a valid session and CSRF token is refused naming the configuration key.
#[tokio::test]
async fn read_only_dashboard_has_no_buttons_and_refuses_actions() {
    let h = Harness::new().await;
    let task = h.create("Add a multiply function").await;
    h.park_for_approval(&task).await;
    let app = app(h.state(DashboardMode::ReadOnly, false));
    let (cookie, csrf) = login(&app, &h.act_token).await;
    let page = get(&app, &format!("/tasks/{}", task.work_item_id), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(action_forms(&page.body), 0, "no action buttons in read-only mode");
    assert!(page.body.contains("read-only"));
    let refused =
        post_form(&app, &format!("/tasks/{}/approve", task.work_item_id), Some(&cookie), &format!("csrf={csrf}")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("server.dashboard"), "{}", refused.body);
    assert_eq!(h.task(&task.work_item_id).await.state.stage, "analysis");
}

// With the dashboard on, an act session sees Approve and Stop; a read-scope session sees no
// buttons and its action POST is refused.
#[tokio::test]
async fn read_scope_session_sees_no_buttons() {
    let h = Harness::new().await;
    let task = h.create("Add a multiply function").await;
    h.park_for_approval(&task).await;
    let app = app(h.state(DashboardMode::On, false));
    let uri = format!("/tasks/{}", task.work_item_id);

    let (act_cookie, _) = login(&app, &h.act_token).await;
    let act_page = get(&app, &uri, Some(&act_cookie)).await;
    assert_eq!(action_forms(&act_page.body), 2, "approve and stop");
    assert!(act_page.body.contains("data-action=\"approve\""));

    let (read_cookie, read_csrf) = login(&app, &h.read_token).await;
    let read_page = get(&app, &uri, Some(&read_cookie)).await;
    assert_eq!(action_forms(&read_page.body), 0);
    let anonymous = get(&app, &uri, None).await;
    assert_eq!(action_forms(&anonymous.body), 0);
    let refused = post_form(&app, &format!("{uri}/approve"), Some(&read_cookie), &format!("csrf={read_csrf}")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("`act`"), "{}", refused.body);
}

// The analysis artifact is rendered from Markdown, and the raw HTML an agent wrote in it is shown
// as text: no script or image element from the artifact reaches the page.
#[tokio::test]
async fn artifact_html_is_escaped() {
    let h = Harness::new().await;
    let task = h.create("Add a multiply function").await;
    h.park_for_approval(&task).await;
    let app = app(h.state(DashboardMode::On, false));
    let page = get(&app, &format!("/tasks/{}", task.work_item_id), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<h1>Analysis of the multiply ticket</h1>"), "Markdown is rendered");
    assert!(page.body.contains("<strong>multiply</strong>"));
    assert!(page.body.contains("<table>"), "tables render");
    assert!(page.body.contains("&lt;script&gt;window.__pwned = 1&lt;/script&gt;"), "raw HTML is text");
    assert!(!page.body.contains("<script>window.__pwned"), "no script element from the artifact");
    assert!(!page.body.contains("<img src=x"), "no image element from the artifact");
    // The rest of the task page: the run, the verdict, the log tail.
    assert!(page.body.contains("claude-sonnet-4-5") && page.body.contains("12,345") && page.body.contains("$0.0734"));
    assert!(page.body.contains("01-analysis.md exists"), "gate verdict reason");
    assert!(page.body.contains("writing 01-analysis.md"), "log tail");
    let log = get(&app, &format!("/tasks/{}/log", task.work_item_id), None).await;
    assert!(log.body.contains("reading the ticket"));
}

// With `read_requires_token`, pages redirect to the login form, and after login they render.
#[tokio::test]
async fn reads_need_a_login_when_configured() {
    let h = Harness::new().await;
    let app = app(h.state(DashboardMode::On, true));
    let answer = get(&app, "/usage", None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers.get(header::LOCATION).unwrap(), "/login?next=/usage");
    let events = get(&app, "/api/events", None).await;
    assert_eq!(events.status, StatusCode::UNAUTHORIZED, "the stream needs a reader too");
    let (cookie, _) = login(&app, &h.read_token).await;
    assert_eq!(get(&app, "/usage", Some(&cookie)).await.status, StatusCode::OK);
    assert_eq!(get(&app, "/system", Some(&cookie)).await.status, StatusCode::OK);
}

// `server.dashboard = "off"`: no pages, and `/` says which key turns them on.
#[tokio::test]
async fn dashboard_off_serves_no_pages() {
    let h = Harness::new().await;
    let app = app(h.state(DashboardMode::Off, false));
    let answer = get(&app, "/", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body.contains("server.dashboard"), "{}", answer.body);
    assert_eq!(get(&app, "/login", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/api/status", None).await.status, StatusCode::OK, "the API is unaffected");
}

// The board shows a bounded number of cards per column, counts the rest, lists held tasks, and
// pages through one stage's tasks.
#[tokio::test]
async fn board_is_bounded_and_paged() {
    let h = Harness::new().await;
    for n in 0..70 {
        h.create(&format!("ticket number {n}")).await;
    }
    let parked = h.create("the held one").await;
    h.park_for_approval(&parked).await;
    let app = app(h.state(DashboardMode::On, false));
    let board = get(&app, "/", None).await;
    assert_eq!(board.status, StatusCode::OK);
    let cards = board.body.matches("<li class=\"card").count();
    assert!(cards <= 2 * 12, "at most 12 cards per column, got {cards}");
    assert!(board.body.contains("+59 more"), "71 analysis tasks, 12 shown: {}", board.body);
    assert!(board.body.contains("Waiting for you") && board.body.contains("awaiting approval"));
    let list = get(&app, "/?stage=analysis", None).await;
    assert!(list.body.contains("71 tasks"), "counted from the store's aggregate");
    assert!(list.body.contains("ticket number 0<"), "71 tasks fit one page of 100");
    assert!(!list.body.contains("next page"), "a page that is not full has no next");
    // Keyset paging: `before` shows only older tasks.
    let older = get(&app, "/?stage=analysis&before=2", None).await;
    assert!(older.body.contains("ticket number 0<") && !older.body.contains("ticket number 1<"), "{}", older.body);
    assert!(older.body.contains("← newest"));
}

/// Reads SSE frames from `response` until `count` events with ids arrived (or the deadline).
async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<(i64, serde_json::Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await.expect("events in time").unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let id = frame.lines().find_map(|l| l.strip_prefix("id:")).map(|v| v.trim().parse::<i64>().unwrap());
            let data = frame.lines().find_map(|l| l.strip_prefix("data:")).map(|v| v.trim().to_string());
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

// Over a real socket: the stream from `after=0` sends every event with its id; a reconnect with
// `Last-Event-ID` resumes right after it; with no cursor the stream starts at the newest event
// and delivers what happens next.
#[tokio::test]
async fn events_resume_with_last_event_id() {
    let h = Harness::new().await;
    let task = h.create("first").await;
    h.park_for_approval(&task).await;
    let all = h.engine.store().events(None, 0, 1000).await.unwrap();
    assert!(all.len() >= 3, "creation, the gate verdict and the approval hold");
    let served = support::Served::start(h.state(DashboardMode::On, false)).await;
    let client = reqwest::Client::new();

    let mut first = client.get(format!("{}/api/events?after=0", served.base)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let got = read_events(&mut first, all.len()).await;
    let ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, all.iter().map(|e| e.id).collect::<Vec<_>>());
    assert_eq!(got[0].1["task_id"], task.id.0);
    drop(first);

    let seen = all[1].id;
    let mut resumed = client
        .get(format!("{}/api/events?after=0", served.base))
        .header("Last-Event-ID", seen.to_string())
        .send()
        .await
        .unwrap();
    let rest = read_events(&mut resumed, all.len() - 2).await;
    assert_eq!(rest.first().unwrap().0, all[2].id, "resumes right after the last seen event");
    drop(resumed);

    let mut live = client.get(format!("{}/api/events", served.base)).send().await.unwrap();
    let newest = all.last().unwrap().id;
    // Let the stream establish its cursor before the next event happens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = h.create("second").await;
    let fresh = read_events(&mut live, 1).await;
    assert!(fresh[0].0 > newest, "no old event is replayed");
    assert_eq!(fresh[0].1["task_id"], second.id.0);

    let bad =
        client.get(format!("{}/api/events", served.base)).header("Last-Event-ID", "yesterday").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    served.shutdown().await;
}

// The usage page puts ingested spend beside the agents': by category first (an ingested record's
// own category), by source, and the per-unit economics of its unit kind.
#[tokio::test]
async fn usage_page_shows_ingested_spend_by_category_and_per_unit() {
    let h = Harness::new().await;
    let app = app(h.state(DashboardMode::On, false));
    let request = baton_engine::usage::IngestRequest {
        source: "transcriber".into(),
        category: "speech-to-text".into(),
        model: None,
        usage: baton_domain::Usage::default(),
        units: 30.0,
        unit_kind: Some("audio_minute".into()),
        cost_usd: Some(0.18),
        idempotency_key: Some("call-1".into()),
        task: None,
        repo: None,
    };
    h.engine.ingest_usage(request, "api:ingest").await.unwrap();
    let page = get(&app, "/usage", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = page.body;
    let category = body.find("By category").expect("a table by category");
    let source = body.find("By source").expect("a table by source");
    assert!(category < body.find("By model").unwrap(), "category comes first");
    assert!(body[category..source].contains("speech-to-text"), "the record's own category");
    assert!(body[source..].contains("transcriber"), "the record's source");
    let economics = &body[body.find("id=\"economics\"").expect("the unit economics")..];
    let row = &economics[economics.find("audio_minute").expect("a per-unit row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("$0.1800") && row.contains("$0.0060"), "30 minutes for $0.18: {row}");
}
