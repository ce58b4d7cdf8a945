//! Tickets from GitHub, Gitea and Plane end to end, against `baton serve`: the project is a bare
//! repository served over HTTP by `git http-backend`, the forge and tracker APIs are the
//! request-checking fakes of `baton-forges` (the GitHub/Gitea fake reads its branches from, and
//! merges into, that same bare repository), and webhooks are signed and posted to Baton's own
//! routes. Each test asserts that the fakes saw no request off the documented shape, and prints
//! the API calls one ticket cost.

#[path = "../../../baton-forges/tests/fakes/mod.rs"]
mod fakes;

use crate::support::{ConfigExtra, Env, git, stage};
use fakes::forge::{FakeForge, Flavor};
use fakes::plane::FakePlane;
use crate::remote::git_http::GitHttp;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const GIT_TOKEN: &str = "e2e-forge-git-token-9a2b";
const API_TOKEN: &str = "e2e-forge-api-token-41c7";
const SECRET: &str = "e2e-webhook-secret-0b5d77e1";
const FORGE_REPO: &str = "acme/app";

/// A scratch Baton with its remote, the fakes and the runtime they run on.
struct World {
    env: Env,
    _git: GitHttp,
    bare: PathBuf,
    forge: Option<FakeForge>,
    plane: Option<FakePlane>,
    _rt: tokio::runtime::Runtime,
    addr: Option<String>,
    deliveries: u64,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Baton on a `url` repository whose forge is the fake `flavor`, with the fake as the tracker
/// too (start label `baton`), polling every second.
fn forge_world(flavor: Flavor, script: &str) -> World {
    let rt = runtime();
    let (fake, api) = rt.block_on(fakes::forge::start(flavor, API_TOKEN));
    let kind = match flavor {
        Flavor::GitHub => "github",
        Flavor::Gitea => "gitea",
    };
    let sections = format!(
        "[webhooks]\n{kind}_secret = \"${{BATON_E2E_WEBHOOK_SECRET}}\"\n\n\
         [[trackers]]\nkind = \"{kind}\"\nrepo = \"demo\"\nforge_repo = \"{FORGE_REPO}\"\napi_url = \"{api}\"\n\
         token_env = \"BATON_E2E_API_TOKEN\"\npoll_secs = 1\n"
    );
    let repo = format!(
        "forge = \"{kind}\"\nforge_repo = \"{FORGE_REPO}\"\nforge_api_url = \"{api}\"\n\
         forge_token_env = \"BATON_E2E_API_TOKEN\"\n"
    );
    let (env, server, bare) = remote(script, &repo, &sections);
    fake.lock().unwrap().git = Some(bare.clone());
    World { env, _git: server, bare, forge: Some(fake), plane: None, _rt: rt, addr: None, deliveries: 0 }
}

/// Baton on a `url` repository (local forge) with Plane as the tracker.
fn plane_world(script: &str) -> World {
    let rt = runtime();
    let (fake, api) = rt.block_on(fakes::plane::start(API_TOKEN));
    let sections = format!(
        "[webhooks]\nplane_secret = \"${{BATON_E2E_WEBHOOK_SECRET}}\"\n\n\
         [[trackers]]\nkind = \"plane\"\nrepo = \"demo\"\napi_url = \"{api}\"\nworkspace = \"acme\"\nproject = \"p1\"\n\
         token_env = \"BATON_E2E_API_TOKEN\"\npoll_secs = 1\n"
    );
    let (env, server, bare) = remote(script, "", &sections);
    World { env, _git: server, bare, forge: None, plane: Some(fake), _rt: rt, addr: None, deliveries: 0 }
}

/// The project as a bare repository served by `git http-backend`; baton.toml switched to `url`.
fn remote(script: &str, repo: &str, sections: &str) -> (Env, GitHttp, PathBuf) {
    let mut env = Env::with_extra(script, &ConfigExtra { repo, sections, ..ConfigExtra::default() });
    let served = env.root.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let bare = served.join("app.git");
    git(&env.root, &["clone", "-q", "--bare", env.project().to_str().unwrap(), bare.to_str().unwrap()]);
    let server = GitHttp::start(&served, Some(GIT_TOKEN));
    let config = std::fs::read_to_string(env.config()).unwrap();
    let url = format!("url = \"{}\"\ncredentials_env = \"BATON_E2E_GIT_TOKEN\"", server.url("app.git"));
    std::fs::write(env.config(), config.replace("path = \"project\"", &url)).unwrap();
    for (k, v) in
        [("BATON_E2E_GIT_TOKEN", GIT_TOKEN), ("BATON_E2E_API_TOKEN", API_TOKEN), ("BATON_E2E_WEBHOOK_SECRET", SECRET)]
    {
        env.serve_env.push((k.into(), v.into()));
    }
    (env, server, bare)
}

impl World {
    fn serve(&mut self) -> crate::support::Server {
        let check = self.env.command().envs(self.env.serve_env.clone()).args(["config", "check"]).output().unwrap();
        assert!(check.status.success(), "config check: {}", String::from_utf8_lossy(&check.stderr));
        let server = self.env.serve(0);
        self.addr = Some(served_address(&self.env.root.join("serve-0.log")));
        server
    }

    fn forge(&self) -> std::sync::MutexGuard<'_, fakes::forge::ForgeState> {
        self.forge.as_ref().unwrap().lock().unwrap()
    }

    fn plane(&self) -> std::sync::MutexGuard<'_, fakes::plane::PlaneFake> {
        self.plane.as_ref().unwrap().lock().unwrap()
    }

    /// Posts a signed delivery; returns the status code and body.
    fn deliver(&mut self, source: &str, event: &str, body: &Value) -> (u16, String) {
        self.deliveries += 1;
        let id = format!("e2e-{}-{}", source, self.deliveries);
        self.deliver_as(source, event, body, &id, SECRET)
    }

    fn deliver_as(&self, source: &str, event: &str, body: &Value, id: &str, secret: &str) -> (u16, String) {
        let raw = serde_json::to_vec(body).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&raw);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let headers = match source {
            "github" => {
                format!("X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {id}\r\nX-Hub-Signature-256: sha256={hex}\r\n")
            }
            "gitea" => format!("X-Gitea-Event: {event}\r\nX-Gitea-Delivery: {id}\r\nX-Gitea-Signature: {hex}\r\n"),
            _ => format!("X-Plane-Event: {event}\r\nX-Plane-Delivery: {id}\r\nX-Plane-Signature: {hex}\r\n"),
        };
        let addr = self.addr.as_deref().unwrap();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST /webhooks/{source} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n{headers}Connection: close\r\n\r\n",
            raw.len()
        )
        .unwrap();
        stream.write_all(&raw).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let code = reply.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        (code, body)
    }

    /// The forge's issue event as GitHub or Gitea sends it.
    fn issue_event(&self, number: u64, action: &str, label: Option<&str>, sender: &str) -> Value {
        let st = self.forge();
        let issue = st.issues.iter().find(|i| i.number == number).unwrap();
        let labels: Vec<Value> =
            issue.labels.iter().enumerate().map(|(i, l)| json!({"id": i + 1, "name": l, "color": "ededed"})).collect();
        let mut event = json!({
            "action": action,
            "number": number,
            "issue": {
                "id": 1000 + number, "number": number, "title": issue.title, "body": issue.body,
                "user": {"login": issue.author, "id": 11}, "labels": labels, "state": issue.state,
                "html_url": format!("http://forge.test/{FORGE_REPO}/issues/{number}"),
            },
            "repository": {"id": 500, "name": "app", "full_name": FORGE_REPO, "owner": {"login": "acme"},
                           "default_branch": "main"},
            "sender": {"login": sender, "id": 12},
        });
        if let Some(label) = label {
            event["label"] = json!({"id": 99, "name": label, "color": "ededed"});
        }
        event
    }

    fn tasks(&self) -> Vec<Value> {
        self.env.tasks()
    }

    fn task_for(&self, reference: &str) -> Option<Value> {
        self.tasks().into_iter().find(|t| t["external_ref"].as_str() == Some(reference))
    }

    fn wait_task(&self, reference: &str, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(task) = self.task_for(reference)
                && done(&task)
            {
                return task;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; tasks: {:#?}", self.tasks());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Green (or red, with a failing check run and its log) CI for every PR head without a verdict.
    fn report_ci(&self, red: Option<&str>) -> Vec<String> {
        let mut st = self.forge();
        let heads: Vec<String> = st.prs.iter().filter_map(|p| st.branch_head(&p.head)).collect();
        let mut reported = Vec::new();
        for sha in heads {
            if st.statuses.contains_key(&sha) {
                continue;
            }
            match red {
                None => {
                    st.statuses.insert(
                        sha.clone(),
                        vec![json!({"state": "success", "context": "ci/test",
                        "description": "tests passed", "target_url": "http://ci.test/1"})],
                    );
                }
                Some(log) => {
                    st.statuses.insert(
                        sha.clone(),
                        vec![json!({"state": "failure", "context": "ci/test",
                        "description": log, "target_url": "http://ci.test/2"})],
                    );
                }
            }
            reported.push(sha);
        }
        reported
    }

    fn add_label(&self, number: u64, label: &str) {
        let mut st = self.forge();
        let issue = st.issues.iter_mut().find(|i| i.number == number).unwrap();
        if !issue.labels.iter().any(|l| l == label) {
            issue.labels.push(label.into());
        }
    }

    fn assert_no_violations(&self) {
        if let Some(forge) = &self.forge {
            let st = forge.lock().unwrap();
            assert!(st.rec.violations.is_empty(), "forge fake violations: {:#?}", st.rec.violations);
        }
        if let Some(plane) = &self.plane {
            let st = plane.lock().unwrap();
            assert!(st.rec.violations.is_empty(), "plane fake violations: {:#?}", st.rec.violations);
        }
    }

    /// Prints the API calls per endpoint (the figures in the docs come from these lines).
    fn report_calls(&self, test: &str) -> usize {
        let calls = match (&self.forge, &self.plane) {
            (Some(forge), _) => forge.lock().unwrap().rec.calls.clone(),
            (_, Some(plane)) => plane.lock().unwrap().rec.calls.clone(),
            _ => Default::default(),
        };
        let total: usize = calls.values().sum();
        eprintln!("api calls in {test}: {total} {calls:?}");
        total
    }
}

/// The address `baton serve` printed in its log.
fn served_address(log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1) {
            return rest.split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "serve never said where it listens: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hold(task: &Value) -> Option<&str> {
    task["state"]["hold"]["kind"].as_str()
}

fn remote_branch(bare: &Path, branch: &str) -> Option<String> {
    let refs = git(bare, &["for-each-ref", "--format=%(objectname)", &format!("refs/heads/{branch}")]);
    (!refs.is_empty()).then_some(refs)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last passing merge gate's re-tested head in `task show --json`.
fn retested_head(detail: &Value) -> Option<String> {
    detail["jobs"]
        .as_array()?
        .iter()
        .filter_map(|job| job["result"]["outcome"]["verdicts"].as_array())
        .flatten()
        .filter(|v| v["gate"] == "mergeable" && v["verdict"] == "pass")
        .filter_map(|v| v["evidence"].as_str().map(str::to_string))
        .next_back()
}

// `config check --online` calls each service once: the git remote, the forge API (token, repository,
// default branch, push permission), and says whether each webhook secret is set; a wrong token is
// a failure naming the variable and the fix, and the token never appears in the output.
#[test]
fn config_check_online_reports_each_service() {
    let rt = runtime();
    let (fake, api) = rt.block_on(fakes::forge::start(Flavor::GitHub, API_TOKEN));
    let repo = format!(
        "forge = \"github\"\nforge_repo = \"{FORGE_REPO}\"\nforge_api_url = \"{api}\"\n\
         forge_token_env = \"BATON_E2E_API_TOKEN\"\n"
    );
    let (env, _server, _bare) = remote("", &repo, "");
    let online = |token: &str| {
        let mut command = env.command();
        command.envs(env.serve_env.clone()).env("BATON_E2E_API_TOKEN", token);
        command.args(["config", "check", "--online"]).output().unwrap()
    };
    let good = online(API_TOKEN);
    let text = String::from_utf8_lossy(&good.stdout).to_string();
    assert!(good.status.success(), "{text}\n{}", String::from_utf8_lossy(&good.stderr));
    assert!(text.contains("repos[demo] remote") && text.contains("`main` at"), "{text}");
    assert!(text.contains("`acme/app` found, default branch `main`, token may push"), "{text}");
    assert_eq!(fake.lock().unwrap().rec.count("GET /repo"), 1, "one call per service");

    let bad = online("a-token-the-forge-does-not-know");
    let text = String::from_utf8_lossy(&bad.stdout).to_string();
    assert!(!bad.status.success(), "{text}");
    assert!(
        text.contains("FAIL repos[demo] forge") && text.contains("refused the token in $BATON_E2E_API_TOKEN"),
        "{text}"
    );
    assert!(text.contains("fix: create a new token"), "{text}");
    assert!(!text.contains("a-token-the-forge-does-not-know") && !text.contains(API_TOKEN), "{text}");
    assert!(fake.lock().unwrap().rec.violations.is_empty(), "{:?}", fake.lock().unwrap().rec.violations);
}
