//! A fake Plane (`/api/v1/workspaces/{slug}/projects/{id}/...`).
//!
//! Checks per request: method + path (trailing slash included, as Plane's routes have it),
//! `X-API-Key` (no `Authorization`; a wrong key is a plain 401), a `baton/` user agent, JSON
//! content type, `state` on PATCH, `comment_html` + `access` (INTERNAL|EXTERNAL) on comments, and
//! a `per_page` of at most 100; pages by cursor `"{per_page}:{page}:0"`.

use super::{Recorder, Req, Shared, fixture, req};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct PlaneFake {
    pub key: String,
    pub rec: Recorder,
    /// (id, name, group)
    pub states: Vec<(String, String, String)>,
    /// (id, name, state id, comments)
    pub items: Vec<(String, String, String, Vec<String>)>,
    /// Every comment: (item id, author display name, comment_html, created_at).
    pub comment_log: Vec<(String, String, String, String)>,
    /// The fake's clock: the `created_at` of what Baton writes.
    pub now: String,
    /// Work item descriptions (`description_html`) set by a test; others have the fixture's.
    pub descriptions: std::collections::BTreeMap<String, String>,
    /// The work items each item is blocked by (its relations' `blocked_by`), set by a test.
    pub blocked_by: std::collections::BTreeMap<String, Vec<String>>,
}

impl PlaneFake {
    pub fn state_id(&self, name: &str) -> String {
        self.states.iter().find(|s| s.1 == name).map(|s| s.0.clone()).unwrap_or_default()
    }
    /// A human's comment on a work item at `at` (RFC 3339).
    pub fn human_comment(&mut self, id: &str, author: &str, html: &str, at: &str) {
        self.comment_log.push((id.into(), author.into(), html.into(), at.into()));
    }

    /// A human moves a work item to the state named `state` (no webhook: the fake sends none).
    pub fn move_item(&mut self, id: &str, state: &str) {
        let sid = self.state_id(state);
        let item = self.items.iter_mut().find(|it| it.0 == id).expect("item");
        item.2 = sid;
    }

    pub fn state_of(&self, id: &str) -> String {
        let sid = self.items.iter().find(|it| it.0 == id).map(|it| it.2.clone()).unwrap_or_default();
        self.states.iter().find(|s| s.0 == sid).map(|s| s.1.clone()).unwrap_or_default()
    }

    pub fn add_item(&mut self, name: &str, state: &str) -> String {
        let id = format!("a0000000-0000-4000-8000-{:012}", self.items.len() + 1);
        let sid = self.state_id(state);
        self.items.push((id.clone(), name.into(), sid, vec![]));
        id
    }
}

pub type FakePlane = Shared<PlaneFake>;

pub const STATES: &[(&str, &str)] = &[
    ("Backlog", "backlog"),
    ("To Analyse", "unstarted"),
    ("In Progress", "started"),
    ("Needs Input", "started"),
    ("In Review", "started"),
    ("Awaiting Deploy", "started"),
    ("Deploying", "started"),
    ("Done", "completed"),
    ("Cancelled", "cancelled"),
    ("Approved", "started"),
    ("Rejected", "cancelled"),
    ("STOP", "cancelled"),
];

pub async fn start(key: &str) -> (FakePlane, String) {
    let states = STATES
        .iter()
        .enumerate()
        .map(|(i, (n, g))| (format!("5{:07}-0000-4000-8000-000000000000", i), n.to_string(), g.to_string()))
        .collect();
    let state = Arc::new(Mutex::new(PlaneFake {
        key: key.into(),
        rec: Recorder::default(),
        states,
        items: vec![],
        comment_log: vec![],
        now: "2026-01-01T00:00:00Z".into(),
        descriptions: Default::default(),
        blocked_by: Default::default(),
    }));
    let app = axum::Router::new().fallback(handle).with_state(state.clone());
    let addr = super::serve(app).await;
    (state, format!("{addr}/api/v1"))
}

async fn handle(State(state): State<FakePlane>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let r = req(method, &uri, headers, body);
    let mut st = state.lock().unwrap();
    route(&mut st, &r)
}

fn page(all: Vec<Value>, r: &Req, rec: &mut Recorder) -> Response {
    let per_page = r.q("per_page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(100);
    if per_page > 100 {
        rec.violations.push(format!("per_page {per_page} > 100"));
    }
    // Test-sized pages: the fake caps pages at 3 items so that pagination is exercised.
    let per_page = per_page.clamp(1, 3);
    let page_no = match r.q("cursor") {
        None => 0,
        Some(c) => match c.split(':').collect::<Vec<_>>().as_slice() {
            [_, p, "0"] => p.parse::<usize>().unwrap_or(0),
            _ => return rec.violation(StatusCode::BAD_REQUEST, format!("bad cursor `{c}`")),
        },
    };
    let total = all.len();
    let results: Vec<Value> = all.into_iter().skip(page_no * per_page).take(per_page).collect();
    let more = (page_no + 1) * per_page < total;
    let mut env = fixture(include_str!("../fixtures/plane_page_envelope.json"));
    env["results"] = Value::Array(results.clone());
    env["count"] = json!(results.len());
    env["total_count"] = json!(total);
    env["total_results"] = json!(total);
    env["total_pages"] = json!(total.div_ceil(per_page).max(1));
    env["next_cursor"] = json!(format!("{per_page}:{}:0", page_no + 1));
    env["next_page_results"] = json!(more);
    env["prev_page_results"] = json!(page_no > 0);
    axum::Json(env).into_response()
}

fn route(st: &mut PlaneFake, r: &Req) -> Response {
    // The workspace's by-key route: `P1-<sequence id>` names the project's items in order.
    if let Some(key) = r.path.strip_prefix("/api/v1/workspaces/acme/work-items/").and_then(|k| k.strip_suffix('/')) {
        let endpoint = "GET work-items/{key}/";
        if r.method != "GET" {
            return st.rec.violation(StatusCode::NOT_FOUND, format!("unknown route {} {}", r.method, r.path));
        }
        st.rec.check_user_agent(r, endpoint);
        if r.header("x-api-key") != Some(st.key.as_str()) {
            return st.rec.violation(StatusCode::UNAUTHORIZED, format!("{endpoint}: no or wrong X-API-Key"));
        }
        if let Some(fault) = st.rec.enter(endpoint) {
            return fault;
        }
        let index = key.strip_prefix("P1-").and_then(|n| n.parse::<usize>().ok()).filter(|n| *n >= 1);
        return match index.and_then(|n| st.items.get(n - 1).map(|it| (n - 1, it.clone()))) {
            Some((i, item)) => {
                let mut v = fixture(include_str!("../fixtures/plane_work_item.json"));
                v["id"] = json!(item.0);
                v["name"] = json!(item.1);
                v["sequence_id"] = json!(i + 1);
                v["project"] = json!("p1");
                v["state"] = json!(item.2);
                axum::Json(v).into_response()
            }
            None => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "The requested resource does not exist."})))
                .into_response(),
        };
    }
    let prefix = "/api/v1/workspaces/acme/projects/p1/";
    let Some(rest) = r.path.strip_prefix(prefix) else {
        return st.rec.violation(StatusCode::NOT_FOUND, format!("unknown path {} {}", r.method, r.path));
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let endpoint = match (r.method.as_str(), segs.as_slice()) {
        ("GET", ["states", ""]) => "GET states/",
        ("GET", ["work-items", ""]) => "GET work-items/",
        ("GET", ["work-items", _, ""]) => "GET work-items/{id}/",
        ("PATCH", ["work-items", _, ""]) => "PATCH work-items/{id}/",
        ("POST", ["work-items", _, "comments", ""]) => "POST work-items/{id}/comments/",
        ("GET", ["work-items", _, "comments", ""]) => "GET work-items/{id}/comments/",
        ("GET", ["work-items", _, "relations", ""]) => "GET work-items/{id}/relations/",
        _ => return st.rec.violation(StatusCode::NOT_FOUND, format!("unknown route {} {}", r.method, r.path)),
    };
    st.rec.check_user_agent(r, endpoint);
    if r.header("authorization").is_some() {
        st.rec.violations.push(format!("{endpoint}: Authorization header sent to Plane"));
    }
    match r.header("x-api-key") {
        None => return st.rec.violation(StatusCode::UNAUTHORIZED, format!("{endpoint}: no X-API-Key")),
        Some(k) if k != st.key => {
            return (StatusCode::UNAUTHORIZED, axum::Json(json!({"detail": "Given API token is not valid"})))
                .into_response();
        }
        Some(_) => {}
    }
    if let Some(fault) = st.rec.enter(endpoint) {
        return fault;
    }
    let expand_state = r.q("expand").is_some_and(|e| e.split(',').any(|x| x == "state"));
    let item_json = |st: &PlaneFake, item: &(String, String, String, Vec<String>), i: usize| {
        let mut v = fixture(include_str!("../fixtures/plane_work_item.json"));
        v["id"] = json!(item.0);
        v["name"] = json!(item.1);
        v["sequence_id"] = json!(i + 1);
        if let Some(html) = st.descriptions.get(&item.0) {
            v["description_html"] = json!(html);
        }
        v["state"] = if expand_state {
            let s = st.states.iter().find(|s| s.0 == item.2).cloned().unwrap_or_default();
            json!({"id": s.0, "name": s.1, "group": s.2, "color": "#000000"})
        } else {
            json!(item.2)
        };
        v
    };
    match (endpoint, segs.as_slice()) {
        ("GET states/", _) => {
            let all = st
                .states
                .iter()
                .map(|(id, name, group)| {
                    let mut v = fixture(include_str!("../fixtures/plane_state.json"));
                    v["id"] = json!(id);
                    v["name"] = json!(name);
                    v["group"] = json!(group);
                    v
                })
                .collect();
            page(all, r, &mut st.rec)
        }
        ("GET work-items/", _) => {
            let all = st.items.iter().enumerate().map(|(i, it)| item_json(st, it, i)).collect();
            page(all, r, &mut st.rec)
        }
        ("GET work-items/{id}/", [_, id, _]) => match st.items.iter().position(|it| it.0 == *id) {
            Some(i) => axum::Json(item_json(st, &st.items[i], i)).into_response(),
            None => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "The requested resource does not exist."})))
                .into_response(),
        },
        ("PATCH work-items/{id}/", [_, id, _]) => {
            let v = match st.rec.json_body(r, endpoint, &["state"], StatusCode::BAD_REQUEST) {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            let sid = v["state"].as_str().unwrap_or("").to_string();
            if !st.states.iter().any(|s| s.0 == sid) {
                return st.rec.violation(StatusCode::BAD_REQUEST, format!("{endpoint}: unknown state `{sid}`"));
            }
            let Some(i) = st.items.iter().position(|it| it.0 == *id) else {
                return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "The requested resource does not exist."})))
                    .into_response();
            };
            st.items[i].2 = sid;
            axum::Json(item_json(st, &st.items[i], i)).into_response()
        }
        ("POST work-items/{id}/comments/", [_, id, _, _]) => {
            let v = match st.rec.json_body(r, endpoint, &["comment_html", "access"], StatusCode::BAD_REQUEST) {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            if !matches!(v["access"].as_str(), Some("INTERNAL" | "EXTERNAL")) {
                return st.rec.violation(StatusCode::BAD_REQUEST, format!("{endpoint}: access {}", v["access"]));
            }
            let Some(i) = st.items.iter().position(|it| it.0 == *id) else {
                return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "not found"}))).into_response();
            };
            st.items[i].3.push(v["comment_html"].as_str().unwrap_or("").into());
            let entry = (
                id.to_string(),
                "Baton".to_string(),
                v["comment_html"].as_str().unwrap_or("").to_string(),
                st.now.clone(),
            );
            st.comment_log.push(entry);
            (StatusCode::CREATED, axum::Json(json!({"id": "c1", "comment_html": v["comment_html"]}))).into_response()
        }
        ("GET work-items/{id}/comments/", [_, id, _, _]) => {
            if !st.items.iter().any(|it| it.0 == *id) {
                return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "not found"}))).into_response();
            }
            let all = st
                .comment_log
                .iter()
                .enumerate()
                .filter(|(_, c)| c.0 == *id)
                .map(|(k, c)| {
                    json!({
                        "id": format!("c{k}"), "comment_html": c.2, "comment_stripped": c.2, "actor": format!("u-{}", c.1),
                        "actor_detail": {"id": format!("u-{}", c.1), "display_name": c.1}, "created_at": c.3,
                        "issue": id, "access": "INTERNAL"
                    })
                })
                .collect();
            page(all, r, &mut st.rec)
        }
        ("GET work-items/{id}/relations/", [_, id, _, _]) => {
            if !st.items.iter().any(|it| it.0 == *id) {
                return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "not found"}))).into_response();
            }
            // The documented map: every relation kind present, each a list of work item ids.
            let blocked_by = st.blocked_by.get(*id).cloned().unwrap_or_default();
            axum::Json(json!({
                "blocking": [], "blocked_by": blocked_by, "duplicate": [], "relates_to": [],
                "start_after": [], "start_before": [], "finish_after": [], "finish_before": []
            }))
            .into_response()
        }
        _ => st.rec.violation(StatusCode::NOT_FOUND, format!("unhandled {endpoint}")),
    }
}
