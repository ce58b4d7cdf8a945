//! A fake GitHub and a fake Gitea (one model, two flavours: paths, auth form, payload shapes).
//!
//! Checks per request: method + path (unknown routes are violations, 404), the auth header form
//! (`Bearer <t>` on GitHub, `token <t>` on Gitea; a right form with a wrong token is a plain 401,
//! not a violation), GitHub's `Accept: application/vnd.github+json` and `X-GitHub-Api-Version`,
//! a `baton/` user agent, JSON content type and required body fields on writes (422 + violation),
//! merges carrying the expected head (`sha` / `head_commit_id`) and a known style.

use super::{Fault, Recorder, Req, Shared, fixture, paginate, req};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    GitHub,
    Gitea,
}

#[derive(Debug, Clone)]
pub struct FakePr {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub state: String,
    pub merged: bool,
    pub merge_style: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FakeIssue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    pub labels: Vec<String>,
    pub state: String,
    pub comments: Vec<String>,
    pub is_pr: bool,
    /// Every comment with its author and time (Baton's own are by `baton-bot`).
    pub comment_log: Vec<FakeComment>,
    /// Every label addition: (actor, label, created_at).
    pub label_log: Vec<(String, String, String)>,
}

#[derive(Debug, Clone)]
pub struct FakeComment {
    pub author: String,
    pub body: String,
    pub created_at: String,
}

/// Whether `text` is an RFC 3339 UTC time as the clients send it (`YYYY-MM-DDTHH:MM:SSZ`).
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[derive(Debug)]
pub struct ForgeState {
    pub flavor: Flavor,
    pub token: String,
    pub base_url: String,
    pub rec: Recorder,
    /// branch → head sha
    pub branches: BTreeMap<String, String>,
    pub prs: Vec<FakePr>,
    pub issues: Vec<FakeIssue>,
    /// Gitea repo labels: name → id
    pub labels: BTreeMap<String, u64>,
    /// sha → statuses (GitHub shape: `state`; served as `status` on Gitea)
    pub statuses: BTreeMap<String, Vec<Value>>,
    /// sha → check runs (GitHub only)
    pub check_runs: BTreeMap<String, Vec<Value>>,
    /// A real bare repository behind the fake: branch heads are read from its refs (not
    /// `branches`), and a merge really moves its base branch (squash: one commit with the head's
    /// tree; merge: a merge commit with the head's tree).
    pub git: Option<std::path::PathBuf>,
    /// The fake's clock: the `created_at` of what Baton writes.
    pub now: String,
}

/// Runs git in `dir` (test scaffolding; the fake answers synchronously under its lock).
#[allow(clippy::disallowed_methods)]
pub fn git_in(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=Forge", "-c", "user.email=forge@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl ForgeState {
    /// A human's comment on issue `number` at `at` (RFC 3339).
    pub fn human_comment(&mut self, number: u64, author: &str, body: &str, at: &str) {
        let issue = self.issues.iter_mut().find(|i| i.number == number).expect("issue");
        issue.comments.push(body.into());
        issue.comment_log.push(FakeComment { author: author.into(), body: body.into(), created_at: at.into() });
    }

    /// A human adds `label` to issue `number` (no webhook: the fake sends none).
    pub fn human_label(&mut self, number: u64, actor: &str, label: &str, at: &str) {
        let issue = self.issues.iter_mut().find(|i| i.number == number).expect("issue");
        if !issue.labels.iter().any(|l| l == label) {
            issue.labels.push(label.into());
        }
        issue.label_log.push((actor.into(), label.into(), at.into()));
    }

    pub fn labels_of(&self, number: u64) -> Vec<String> {
        self.issues.iter().find(|i| i.number == number).map(|i| i.labels.clone()).unwrap_or_default()
    }

    pub fn issue(&mut self, title: &str, labels: &[&str]) -> u64 {
        let number = self.next_number();
        self.issues.push(FakeIssue {
            number,
            title: title.into(),
            body: format!("body of {title}"),
            author: "alice".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            state: "open".into(),
            comments: vec![],
            is_pr: false,
            comment_log: vec![],
            label_log: vec![],
        });
        number
    }

    /// The head of `branch`: from the bare repository when there is one.
    pub fn branch_head(&self, branch: &str) -> Option<String> {
        match &self.git {
            Some(dir) => git_in(dir, &["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")]),
            None => self.branches.get(branch).cloned(),
        }
    }

    /// Lands `head` on `base` in the bare repository as the forge would for `style`.
    fn land(&self, base: &str, head: &str, style: &str, title: &str) {
        let Some(dir) = &self.git else { return };
        let base_ref = format!("refs/heads/{base}");
        let current = git_in(dir, &["rev-parse", &base_ref]).unwrap();
        let tree = format!("{head}^{{tree}}");
        let new = match style {
            "squash" => git_in(dir, &["commit-tree", &tree, "-p", &current, "-m", title]).unwrap(),
            "merge" => git_in(dir, &["commit-tree", &tree, "-p", &current, "-p", head, "-m", title]).unwrap(),
            _ => head.to_string(),
        };
        git_in(dir, &["update-ref", &base_ref, &new, &current]).unwrap();
    }

    fn next_number(&self) -> u64 {
        // PRs and issues share one number space on both forges.
        self.prs.iter().map(|p| p.number).chain(self.issues.iter().map(|i| i.number)).max().unwrap_or(0) + 1
    }

    fn pr_json(&self, pr: &FakePr) -> Value {
        let mut v = match self.flavor {
            Flavor::GitHub => fixture(include_str!("../fixtures/github_pull_request.json")),
            Flavor::Gitea => fixture(include_str!("../fixtures/gitea_pull_request.json")),
        };
        v["number"] = json!(pr.number);
        v["id"] = json!(pr.number + 1000);
        v["title"] = json!(pr.title);
        v["body"] = json!(pr.body);
        v["state"] = json!(pr.state);
        v["merged"] = json!(pr.merged);
        v["html_url"] = json!(format!("{}/acme/app/pull/{}", self.base_url, pr.number));
        v["head"]["ref"] = json!(pr.head);
        v["head"]["label"] =
            json!(if self.flavor == Flavor::GitHub { format!("acme:{}", pr.head) } else { pr.head.clone() });
        v["head"]["sha"] = json!(self.branch_head(&pr.head).unwrap_or_default());
        v["base"]["ref"] = json!(pr.base);
        v
    }

    fn issue_json(&self, i: &FakeIssue) -> Value {
        let mut v = match self.flavor {
            Flavor::GitHub => fixture(include_str!("../fixtures/github_issue.json")),
            Flavor::Gitea => fixture(include_str!("../fixtures/gitea_issue.json")),
        };
        v["number"] = json!(i.number);
        v["title"] = json!(i.title);
        v["body"] = json!(i.body);
        v["state"] = json!(i.state);
        v["user"]["login"] = json!(i.author);
        v["labels"] = json!(
            i.labels
                .iter()
                .map(|l| json!({"id": self.labels.get(l).copied().unwrap_or(0), "name": l, "color": "ededed"}))
                .collect::<Vec<_>>()
        );
        if i.is_pr {
            v["pull_request"] = json!({"url": "x", "html_url": "x"});
        }
        v
    }
}

pub type FakeForge = Shared<ForgeState>;

/// Starts a fake; returns its state and the API base URL the client takes.
pub async fn start(flavor: Flavor, token: &str) -> (FakeForge, String) {
    let state = Arc::new(Mutex::new(ForgeState {
        flavor,
        token: token.into(),
        base_url: String::new(),
        rec: Recorder::default(),
        branches: BTreeMap::new(),
        prs: vec![],
        issues: vec![],
        labels: BTreeMap::new(),
        statuses: BTreeMap::new(),
        check_runs: BTreeMap::new(),
        git: None,
        now: "2026-01-01T00:00:00Z".into(),
    }));
    let app = axum::Router::new().fallback(handle).with_state(state.clone());
    let addr = super::serve(app).await;
    let api = match flavor {
        Flavor::GitHub => addr.clone(),
        Flavor::Gitea => format!("{addr}/api/v1"),
    };
    state.lock().unwrap().base_url = addr;
    (state, api)
}

async fn handle(State(state): State<FakeForge>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let r = req(method, &uri, headers, body);
    let mut st = state.lock().unwrap();
    route(&mut st, &r)
}

fn unprocessable(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn route(st: &mut ForgeState, r: &Req) -> Response {
    let prefix = if st.flavor == Flavor::Gitea { "/api/v1/repos/acme/app" } else { "/repos/acme/app" };
    let Some(rest) = r.path.strip_prefix(prefix) else {
        return st.rec.violation(StatusCode::NOT_FOUND, format!("unknown path {} {}", r.method, r.path));
    };
    let segs: Vec<String> = rest.trim_start_matches('/').split('/').map(super::dec).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let gh = st.flavor == Flavor::GitHub;
    let m = r.method.as_str();
    // The endpoint key (route template) for counts, faults and violations.
    let endpoint = match (m, segs.as_slice()) {
        ("GET", [""]) => "GET /repo",
        ("GET", ["pulls"]) => "GET /pulls",
        ("POST", ["pulls"]) => "POST /pulls",
        ("GET", ["pulls", _]) => "GET /pulls/{n}",
        ("PATCH", ["pulls", _]) => "PATCH /pulls/{n}",
        ("PUT", ["pulls", _, "merge"]) if gh => "PUT /pulls/{n}/merge",
        ("POST", ["pulls", _, "merge"]) if !gh => "POST /pulls/{n}/merge",
        ("DELETE", ["git", "refs", "heads", ..]) if gh => "DELETE /git/refs/heads/{branch}",
        ("DELETE", ["branches", ..]) if !gh => "DELETE /branches/{branch}",
        ("GET", ["commits", _, "status"]) => "GET /commits/{sha}/status",
        ("GET", ["commits", _, "check-runs"]) if gh => "GET /commits/{sha}/check-runs",
        ("GET", ["issues"]) => "GET /issues",
        ("GET", ["issues", _]) => "GET /issues/{n}",
        ("PATCH", ["issues", _]) => "PATCH /issues/{n}",
        ("POST", ["issues", _, "labels"]) => "POST /issues/{n}/labels",
        ("DELETE", ["issues", _, "labels", _]) => "DELETE /issues/{n}/labels/{label}",
        ("POST", ["issues", _, "comments"]) => "POST /issues/{n}/comments",
        ("GET", ["issues", _, "comments"]) => "GET /issues/{n}/comments",
        ("GET", ["issues", _, "events"]) if gh => "GET /issues/{n}/events",
        ("GET", ["issues", _, "timeline"]) if !gh => "GET /issues/{n}/timeline",
        ("GET", ["labels"]) if !gh => "GET /labels",
        _ => return st.rec.violation(StatusCode::NOT_FOUND, format!("unknown route {m} {}", r.path)),
    };
    st.rec.check_user_agent(r, endpoint);
    // Auth header form.
    let auth = r.header("authorization").unwrap_or("");
    let (scheme, value) = auth.split_once(' ').unwrap_or(("", ""));
    let want = if gh { "Bearer" } else { "token" };
    if scheme != want {
        return st.rec.violation(
            StatusCode::UNAUTHORIZED,
            format!("{endpoint}: authorization scheme `{scheme}`, want `{want}`"),
        );
    }
    if value != st.token {
        return unprocessable(StatusCode::UNAUTHORIZED, json!({"message": "Bad credentials"}));
    }
    if gh {
        if r.header("accept") != Some("application/vnd.github+json") {
            st.rec.violations.push(format!("{endpoint}: accept {:?}", r.header("accept")));
        }
        if r.header("x-github-api-version") != Some("2022-11-28") {
            st.rec.violations.push(format!("{endpoint}: no X-GitHub-Api-Version"));
        }
    }
    if let Some(fault) = st.rec.enter(endpoint) {
        return fault;
    }
    let per_page_key = if gh { "per_page" } else { "limit" };
    let max_per_page = if gh { 100 } else { 50 };
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    let num = |s: &str| s.parse::<u64>().unwrap_or(0);
    match (endpoint, segs.as_slice()) {
        ("GET /repo", _) => {
            let base = if gh { "" } else { "/api/v1" };
            axum::Json(json!({
                "id": 500, "name": "app", "full_name": "acme/app", "private": true,
                "owner": {"login": "acme"}, "default_branch": "main",
                "html_url": format!("{}/acme/app", st.base_url),
                "url": format!("{}{base}/repos/acme/app", st.base_url),
                "permissions": {"admin": false, "push": true, "pull": true},
            }))
            .into_response()
        }
        ("GET /pulls", _) => {
            let state_q = r.q("state").unwrap_or("open").to_string();
            let head_q = r.q("head").map(str::to_string);
            let items: Vec<Value> = st
                .prs
                .iter()
                .filter(|p| state_q == "all" || p.state == state_q)
                .filter(|p| head_q.as_ref().is_none_or(|h| gh && *h == format!("acme:{}", p.head)))
                .map(|p| st.pr_json(p))
                .collect();
            list(items, r, &st.base_url, per_page_key, max_per_page)
        }
        ("POST /pulls", _) => {
            let v = match st.rec.json_body(r, endpoint, &["title", "head", "base"], invalid) {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            let head = v["head"].as_str().unwrap_or("").to_string();
            if st.branch_head(&head).is_none() {
                return unprocessable(
                    invalid,
                    json!({"message": "Validation Failed", "errors": [{"field": "head", "code": "invalid"}]}),
                );
            }
            if st.prs.iter().any(|p| p.head == head && p.state == "open") {
                return if gh {
                    unprocessable(invalid, fixture(include_str!("../fixtures/github_pr_already_exists_422.json")))
                } else {
                    unprocessable(
                        StatusCode::CONFLICT,
                        json!({"message": "pull request already exists for these targets"}),
                    )
                };
            }
            let pr = FakePr {
                number: st.next_number(),
                title: v["title"].as_str().unwrap_or("").into(),
                body: v["body"].as_str().unwrap_or("").into(),
                head,
                base: v["base"].as_str().unwrap_or("").into(),
                state: "open".into(),
                merged: false,
                merge_style: None,
            };
            let out = st.pr_json(&pr);
            st.prs.push(pr);
            (StatusCode::CREATED, axum::Json(out)).into_response()
        }
        ("GET /pulls/{n}", [_, n]) => match st.prs.iter().find(|p| p.number == num(n)) {
            Some(p) => axum::Json(st.pr_json(p)).into_response(),
            None => not_found(),
        },
        ("PATCH /pulls/{n}", [_, n]) => {
            let v = match st.rec.json_body(r, endpoint, &[], invalid) {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            if v.get("title").is_none() && v.get("body").is_none() {
                return st.rec.violation(invalid, format!("{endpoint}: neither title nor body"));
            }
            let Some(i) = st.prs.iter().position(|p| p.number == num(n)) else { return not_found() };
            if let Some(t) = v["title"].as_str() {
                st.prs[i].title = t.into();
            }
            if let Some(b) = v["body"].as_str() {
                st.prs[i].body = b.into();
            }
            axum::Json(st.pr_json(&st.prs[i].clone())).into_response()
        }
        ("PUT /pulls/{n}/merge" | "POST /pulls/{n}/merge", [_, n, _]) => {
            let (sha_key, style_key, styles): (&str, &str, &[&str]) = if gh {
                ("sha", "merge_method", &["merge", "squash", "rebase"])
            } else {
                ("head_commit_id", "Do", &["merge", "rebase", "rebase-merge", "squash", "fast-forward-only"])
            };
            let v = match st.rec.json_body(r, endpoint, &[sha_key, style_key], invalid) {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            let style = v[style_key].as_str().unwrap_or("").to_string();
            if !styles.contains(&style.as_str()) {
                return st.rec.violation(invalid, format!("{endpoint}: unknown merge style `{style}`"));
            }
            let Some(i) = st.prs.iter().position(|p| p.number == num(n)) else { return not_found() };
            if st.prs[i].merged || st.prs[i].state != "open" {
                return unprocessable(
                    StatusCode::METHOD_NOT_ALLOWED,
                    json!({"message": "Pull Request is not mergeable"}),
                );
            }
            let head = st.branch_head(&st.prs[i].head).unwrap_or_default();
            if v[sha_key].as_str() != Some(head.as_str()) {
                return if gh {
                    unprocessable(
                        StatusCode::CONFLICT,
                        fixture(include_str!("../fixtures/github_merge_stale_head_409.json")),
                    )
                } else {
                    unprocessable(StatusCode::CONFLICT, json!({"message": "head out of date"}))
                };
            }
            let (base, title) = (st.prs[i].base.clone(), st.prs[i].title.clone());
            st.land(&base, &head, &style, &title);
            st.prs[i].merged = true;
            st.prs[i].state = "closed".into();
            st.prs[i].merge_style = Some(style);
            if gh {
                axum::Json(fixture(include_str!("../fixtures/github_merge_success.json"))).into_response()
            } else {
                StatusCode::OK.into_response()
            }
        }
        ("DELETE /git/refs/heads/{branch}", [_, _, _, branch @ ..])
        | ("DELETE /branches/{branch}", [_, branch @ ..]) => {
            let branch = branch.join("/");
            if st.branches.remove(&branch).is_some() {
                StatusCode::NO_CONTENT.into_response()
            } else if gh {
                unprocessable(invalid, json!({"message": "Reference does not exist"}))
            } else {
                not_found()
            }
        }
        ("GET /commits/{sha}/status", [_, sha, _]) => {
            let statuses = st.statuses.get(*sha).cloned().unwrap_or_default();
            if !gh && statuses.is_empty() {
                return axum::Json(fixture(include_str!("../fixtures/gitea_combined_status_no_statuses.json")))
                    .into_response();
            }
            let states: Vec<&str> = statuses.iter().filter_map(|s| s["state"].as_str()).collect();
            let combined = if states.iter().any(|s| *s == "failure" || *s == "error") {
                "failure"
            } else if states.is_empty() || states.contains(&"pending") {
                "pending"
            } else {
                "success"
            };
            let shaped: Vec<Value> = statuses
                .iter()
                .map(|s| {
                    if gh {
                        s.clone()
                    } else {
                        // Gitea's CommitStatus carries the state as `status`.
                        let mut s = s.clone();
                        let state = s["state"].take();
                        s["status"] = state;
                        s.as_object_mut().map(|o| o.remove("state"));
                        s
                    }
                })
                .collect();
            axum::Json(json!({"state": combined, "sha": sha, "total_count": shaped.len(), "statuses": shaped}))
                .into_response()
        }
        ("GET /commits/{sha}/check-runs", [_, sha, _]) => {
            let runs = st.check_runs.get(*sha).cloned().unwrap_or_default();
            let total = runs.len();
            let (page, link) = paginate(runs, r, &st.base_url, per_page_key, max_per_page);
            let mut resp = axum::Json(json!({"total_count": total, "check_runs": page})).into_response();
            if let Some(link) = link {
                resp.headers_mut().insert("link", link.parse().unwrap());
            }
            resp
        }
        ("GET /issues", _) => {
            let wanted: Vec<String> =
                r.q("labels").unwrap_or("").split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
            let state_q = r.q("state").unwrap_or("open").to_string();
            if !gh && r.q("type") != Some("issues") {
                st.rec.violations.push(format!("{endpoint}: no type=issues (Gitea lists PRs too)"));
            }
            let items: Vec<Value> = st
                .issues
                .iter()
                .filter(|i| state_q == "all" || i.state == state_q)
                .filter(|i| wanted.iter().all(|w| i.labels.contains(w)))
                .filter(|i| gh || !i.is_pr)
                .map(|i| st.issue_json(i))
                .collect();
            list(items, r, &st.base_url, per_page_key, max_per_page)
        }
        ("GET /issues/{n}", [_, n]) => match st.issues.iter().find(|i| i.number == num(n)) {
            Some(i) => axum::Json(st.issue_json(i)).into_response(),
            None => not_found(),
        },
        ("PATCH /issues/{n}", [_, n]) => {
            let v = match st.rec.json_body(r, endpoint, &["state"], invalid) {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            let Some(i) = st.issues.iter().position(|i| i.number == num(n)) else { return not_found() };
            st.issues[i].state = v["state"].as_str().unwrap_or("").into();
            axum::Json(st.issue_json(&st.issues[i].clone())).into_response()
        }
        ("POST /issues/{n}/labels", [_, n, _]) => {
            let v = match st.rec.json_body(r, endpoint, &["labels"], invalid) {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            let mut names = vec![];
            for l in v["labels"].as_array().cloned().unwrap_or_default() {
                let name = if gh {
                    l.as_str().map(str::to_string)
                } else {
                    // Gitea: label ids (names only on newer versions; Baton sends ids).
                    l.as_u64().and_then(|id| st.labels.iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone()))
                };
                match name {
                    Some(name) => names.push(name),
                    None => return st.rec.violation(invalid, format!("{endpoint}: bad label {l}")),
                }
            }
            let Some(i) = st.issues.iter().position(|i| i.number == num(n)) else { return not_found() };
            let now = st.now.clone();
            for name in names {
                if !st.issues[i].labels.contains(&name) {
                    st.issues[i].labels.push(name.clone());
                    st.issues[i].label_log.push(("baton-bot".into(), name, now.clone()));
                }
            }
            axum::Json(st.issue_json(&st.issues[i].clone())["labels"].clone()).into_response()
        }
        ("DELETE /issues/{n}/labels/{label}", [_, n, _, label]) => {
            let name = if gh {
                Some(label.to_string())
            } else {
                match label.parse::<u64>() {
                    Ok(id) => st.labels.iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone()),
                    Err(_) => return st.rec.violation(invalid, format!("{endpoint}: label `{label}` is not an id")),
                }
            };
            let Some(i) = st.issues.iter().position(|i| i.number == num(n)) else { return not_found() };
            match name.and_then(|name| st.issues[i].labels.iter().position(|l| *l == name)) {
                Some(p) => {
                    st.issues[i].labels.remove(p);
                    if gh { axum::Json(json!([])).into_response() } else { StatusCode::NO_CONTENT.into_response() }
                }
                None => unprocessable(StatusCode::NOT_FOUND, json!({"message": "Label does not exist"})),
            }
        }
        ("POST /issues/{n}/comments", [_, n, _]) => {
            let v = match st.rec.json_body(r, endpoint, &["body"], invalid) {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            let Some(i) = st.issues.iter().position(|i| i.number == num(n)) else { return not_found() };
            st.issues[i].comments.push(v["body"].as_str().unwrap_or("").into());
            let comment = FakeComment {
                author: "baton-bot".into(),
                body: v["body"].as_str().unwrap_or("").into(),
                created_at: st.now.clone(),
            };
            st.issues[i].comment_log.push(comment);
            (StatusCode::CREATED, axum::Json(json!({"id": 1, "body": v["body"]}))).into_response()
        }
        ("GET /issues/{n}/comments", [_, n, _]) => {
            let since = r.q("since").map(str::to_string);
            if let Some(since) = &since
                && !is_rfc3339(since)
            {
                return st.rec.violation(invalid, format!("{endpoint}: since `{since}` is not RFC 3339"));
            }
            let Some(issue) = st.issues.iter().find(|i| i.number == num(n)) else { return not_found() };
            let items: Vec<Value> = issue
                .comment_log
                .iter()
                .enumerate()
                .filter(|(_, c)| since.as_ref().is_none_or(|s| c.created_at.as_str() >= s.as_str()))
                .map(|(k, c)| {
                    json!({"id": k + 1, "body": c.body, "user": {"login": c.author, "id": 7}, "created_at": c.created_at, "updated_at": c.created_at})
                })
                .collect();
            list(items, r, &st.base_url, per_page_key, max_per_page)
        }
        ("GET /issues/{n}/events", [_, n, _]) => {
            let Some(issue) = st.issues.iter().find(|i| i.number == num(n)) else { return not_found() };
            let mut items = vec![
                json!({"id": 1, "event": "subscribed", "actor": {"login": "alice"}, "created_at": "2025-01-01T00:00:00Z"}),
            ];
            items.extend(issue.label_log.iter().enumerate().map(|(k, (actor, label, at))| {
                json!({"id": k + 2, "event": "labeled", "actor": {"login": actor}, "label": {"name": label, "color": "ededed"}, "created_at": at})
            }));
            list(items, r, &st.base_url, per_page_key, max_per_page)
        }
        ("GET /issues/{n}/timeline", [_, n, _]) => {
            let Some(issue) = st.issues.iter().find(|i| i.number == num(n)) else { return not_found() };
            let mut items = vec![
                json!({"id": 1, "type": "comment", "body": "hello", "user": {"login": "alice"}, "created_at": "2025-01-01T00:00:00Z"}),
            ];
            items.extend(issue.label_log.iter().enumerate().map(|(k, (actor, label, at))| {
                json!({"id": k + 2, "type": "label", "body": "1", "user": {"login": actor}, "label": {"id": 1, "name": label}, "created_at": at})
            }));
            list(items, r, &st.base_url, per_page_key, max_per_page)
        }
        ("GET /labels", _) => {
            let items: Vec<Value> =
                st.labels.iter().map(|(k, v)| json!({"id": v, "name": k, "color": "ededed"})).collect();
            list(items, r, &st.base_url, per_page_key, max_per_page)
        }
        _ => st.rec.violation(StatusCode::NOT_FOUND, format!("unhandled {endpoint}")),
    }
}

fn list(items: Vec<Value>, r: &Req, base: &str, key: &str, max: usize) -> Response {
    let (page, link) = paginate(items, r, base, key, max);
    let mut resp = axum::Json(Value::Array(page)).into_response();
    if let Some(link) = link {
        resp.headers_mut().insert("link", link.parse().unwrap());
    }
    resp
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Not Found"}))).into_response()
}

/// Injects a fault (re-export for tests).
pub fn inject(f: &FakeForge, endpoint: &str, fault: Fault, times: usize) {
    f.lock().unwrap().rec.inject(endpoint, fault, times);
}
