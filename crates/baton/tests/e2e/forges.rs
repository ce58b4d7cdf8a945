//! Tickets from GitHub, Gitea and Plane end to end, against `baton serve`: the project is a bare
//! repository served over HTTP by `git http-backend`, the forge and tracker APIs are the
//! request-checking fakes of `baton-forges` (the GitHub/Gitea fake reads its branches from, and
//! merges into, that same bare repository), and webhooks are signed and posted to Baton's own
//! routes. Each test asserts that the fakes saw no request off the documented shape, and prints
//! the API calls one ticket cost.

#[path = "../../../baton-forges/tests/fakes/mod.rs"]
mod fakes;

use crate::remote::git_http::GitHttp;
use crate::support::{ConfigExtra, Env, git, stage};
use fakes::forge::{FakeForge, Flavor};
use fakes::plane::FakePlane;
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
         token_env = \"BATON_E2E_API_TOKEN\"\npoll_secs = 1\napprovers = [\"alice\"]\n"
    );
    let repo = format!(
        "forge = \"{kind}\"\nforge_repo = \"{FORGE_REPO}\"\nforge_api_url = \"{api}\"\n\
         forge_token_env = \"BATON_E2E_API_TOKEN\"\n"
    );
    let (env, server, bare) = remote(script, &repo, &sections);
    {
        let mut st = fake.lock().unwrap();
        st.git = Some(bare.clone());
        // Gitea adds labels by id: the repository has them (docs/gitea.md lists them).
        let statuses =
            ["in-progress", "needs-input", "in-review", "awaiting-deploy", "deploying", "done", "stopped", "blocked"];
        let names = ["baton", "baton:approved", "baton:deploy", "baton:stop", "baton:answered"]
            .into_iter()
            .map(str::to_string)
            .chain(statuses.iter().map(|s| format!("baton:{s}")));
        for (i, name) in names.enumerate() {
            st.labels.insert(name, 100 + i as u64);
        }
    }
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
        self.addr = Some(crate::support::served_address(&self.env.root.join("serve-0.log")));
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

    /// Waits for `done`; on a timeout the failure shows the end of the serve log.
    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.env.root.join("serve-0.log")).unwrap_or_default();
                let tail: String =
                    log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                panic!("timed out waiting for {what}; serve log tail:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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
        // Only heads the CI gate can wait on: the merge gate's squash, one commit on today's main.
        let main = st.branch_head("main").unwrap_or_default();
        let heads: Vec<String> = st
            .prs
            .iter()
            .filter_map(|p| st.branch_head(&p.head))
            .filter(|head| {
                fakes::forge::git_in(&self.bare, &["rev-parse", &format!("{head}^")]).as_deref() == Some(main.as_str())
            })
            .collect();
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

    fn has_label(&self, number: u64, label: &str) -> bool {
        self.forge().issues.iter().any(|i| i.number == number && i.labels.iter().any(|l| l == label))
    }

    fn add_label(&self, number: u64, label: &str) {
        let mut st = self.forge();
        let issue = st.issues.iter_mut().find(|i| i.number == number).unwrap();
        if !issue.labels.iter().any(|l| l == label) {
            issue.labels.push(label.into());
            issue.label_log.push(("alice".into(), label.into(), "2026-01-01T00:00:01Z".into()));
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

/// A ticket labelled on the forge runs the whole pipeline: the human gates are passed by labels
/// (webhooks), a PR is opened once, CI goes green, main gets exactly the re-tested head, the
/// ticket ends Done (labelled and closed) and the branch is deleted. A replayed delivery changes
/// nothing and a forged one is refused.
fn whole_pipeline_by_labels(flavor: Flavor) {
    let source = if flavor == Flavor::GitHub { "github" } else { "gitea" };
    let mut w = forge_world(flavor, "");
    let number = w.forge().issue("Add a value function", &["baton"]);
    let reference = format!("{source}:{FORGE_REPO}#{number}");
    let seed = remote_branch(&w.bare, "main").unwrap();
    let _baton = w.serve();

    // A forged delivery is refused and stores nothing; the real one is accepted once.
    // GitHub says which label was added; Gitea's `issues` event is the opening with its labels,
    // and its label changes (`issue_label`, `label_updated`) carry only the label set.
    let opened = match flavor {
        Flavor::GitHub => w.issue_event(number, "labeled", Some("baton"), "alice"),
        Flavor::Gitea => w.issue_event(number, "opened", None, "alice"),
    };
    let (label_event, label_action) =
        if flavor == Flavor::GitHub { ("issues", "labeled") } else { ("issue_label", "label_updated") };
    let (code, _) = w.deliver_as(source, "issues", &opened, "forged-1", "not-the-secret-at-all");
    assert_eq!(code, 401);
    let (code, _) = w.deliver_as(source, "issues", &opened, "delivery-1", SECRET);
    assert_eq!(code, 202);
    let (code, body) = w.deliver_as(source, "issues", &opened, "delivery-1", SECRET);
    assert_eq!((code, body.contains("duplicate")), (202, true), "{body}");

    let task = w.wait_task(&reference, "the ticket's task", Duration::from_secs(30), |_| true);
    let id = task["work_item_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut approved, mut confirmed) = (false, false);
    loop {
        let task = w.task_for(&reference).unwrap();
        if stage(&task) == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "timed out: {task:#}");
        match hold(&task) {
            // As a human would: after the ticket shows the hold (Baton clears decision labels put
            // up before the question when it sets the status label).
            Some("awaiting_approval") if !approved && w.has_label(number, "baton:in-review") => {
                w.add_label(number, "baton:approved");
                let event = w.issue_event(number, label_action, Some("baton:approved"), "alice");
                assert_eq!(w.deliver(source, label_event, &event).0, 202);
                approved = true;
            }
            Some("awaiting_confirm") if !confirmed && w.has_label(number, "baton:awaiting-deploy") => {
                w.add_label(number, "baton:deploy");
                let event = w.issue_event(number, label_action, Some("baton:deploy"), "alice");
                assert_eq!(w.deliver(source, label_event, &event).0, 202);
                confirmed = true;
            }
            _ => {}
        }
        w.report_ci(None);
        std::thread::sleep(Duration::from_millis(200));
    }
    let detail = w.env.json(&["task", "show", &id]);
    let head = retested_head(&detail).expect("a merge-gate pass");
    assert_eq!(remote_branch(&w.bare, "main").as_deref(), Some(head.as_str()), "main holds the re-tested head");
    assert_eq!(git(&w.bare, &["rev-parse", &format!("{head}^")]), seed);
    let branch = detail["task"]["branch"].as_str().unwrap().to_string();
    {
        let st = w.forge();
        assert_eq!(st.prs.len(), 1, "one PR per task: {:#?}", st.prs);
        assert_eq!(st.prs[0].head, branch);
        assert!(st.prs[0].title.contains(&id), "{:?}", st.prs[0].title);
        assert!(st.statuses.contains_key(&head), "CI was read for the re-tested head");
    }
    // The hand-off links the pull request the CI gate synced.
    let number_of_pr = w.forge().prs[0].number;
    let handoff = w.env.run(&["handoff", &id]);
    let handoff = String::from_utf8_lossy(&handoff.stdout).to_string();
    assert!(handoff.contains(&format!("/acme/app/pull/{number_of_pr}>")), "{handoff}");
    let timeline = detail.to_string();
    assert!(timeline.contains(&format!("tracker:{source}:alice")), "decisions by the labeller");
    // Each job records what the branch changes (the dashboard's diff stat).
    let stats: Vec<&str> =
        detail["jobs"].as_array().unwrap().iter().filter_map(|job| job["result"]["diff_stat"].as_str()).collect();
    assert!(stats.iter().any(|s| s.contains("changed") && s.contains("insertion")), "{stats:?}");
    w.wait_for("the ticket to be closed as Done", Duration::from_secs(30), || {
        let st = w.forge();
        let issue = st.issues.iter().find(|i| i.number == number).unwrap();
        issue.state == "closed" && issue.labels.iter().any(|l| l == "baton:done")
    });
    wait_for("the task branch to be deleted", Duration::from_secs(30), || remote_branch(&w.bare, &branch).is_none());
    // The replayed delivery made no second task.
    assert_eq!(w.tasks().len(), 1);
    w.assert_no_violations();
    let calls = w.report_calls(&format!("{source} whole pipeline"));
    assert!(calls > 0);
}

#[test]
fn github_ticket_runs_the_whole_pipeline_by_labels() {
    whole_pipeline_by_labels(Flavor::GitHub);
}

#[test]
fn gitea_ticket_runs_the_whole_pipeline_by_labels() {
    whole_pipeline_by_labels(Flavor::Gitea);
}

// No webhook ever arrives (every delivery was lost): polling alone starts the ticket, sees the
// approval and the deploy confirmation, and the ticket reaches Done.
#[test]
fn lost_webhooks_are_recovered_by_polling() {
    let mut w = forge_world(Flavor::GitHub, "");
    let number = w.forge().issue("Polled ticket", &["baton"]);
    let reference = format!("github:{FORGE_REPO}#{number}");
    let _baton = w.serve();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(task) = w.task_for(&reference) {
            if stage(&task) == "done" {
                break;
            }
            match hold(&task) {
                Some("awaiting_approval") => w.add_label(number, "baton:approved"),
                Some("awaiting_confirm") => w.add_label(number, "baton:deploy"),
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "timed out: {:#?}", w.tasks());
        w.report_ci(None);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(w.tasks().len(), 1);
    w.assert_no_violations();
    w.report_calls("github polling only");
}

// A red CI check rolls the task back to development with the check's name and log in the
// developer's next prompt; once CI is green the ticket reaches Done.
#[test]
fn red_ci_rolls_back_with_the_log_tail_in_the_next_prompt() {
    let mut w = forge_world(Flavor::GitHub, "");
    let number = w.forge().issue("CI will fail once", &["baton"]);
    let reference = format!("github:{FORGE_REPO}#{number}");
    let _baton = w.serve();
    let marker = "AssertionError: expected 5, got 4 (CI-TAIL-3f9)";
    let mut red_done = false;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(task) = w.task_for(&reference) {
            if stage(&task) == "done" {
                break;
            }
            match hold(&task) {
                Some("awaiting_approval") => w.add_label(number, "baton:approved"),
                Some("awaiting_confirm") => w.add_label(number, "baton:deploy"),
                _ => {}
            }
            // The first head the CI gate waits on is red; every later one (after the rollback)
            // is green. (Earlier heads of the PR, before the merge gate's squash, are not gated.)
            if stage(&task) != "deploy_staging" {
            } else if !red_done {
                red_done = !w.report_ci(Some(marker)).is_empty();
            } else {
                w.report_ci(None);
            }
        }
        assert!(Instant::now() < deadline, "timed out: {:#?}", w.tasks());
        std::thread::sleep(Duration::from_millis(200));
    }
    let task = w.task_for(&reference).unwrap();
    let id = task["work_item_id"].as_str().unwrap();
    let runs = w.env.root.join("data/runs").join(id);
    let prompts: Vec<String> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("development-"))
        .flat_map(|e| prompts_of(&e.path()))
        .collect();
    let show = w.env.run(&["task", "show", id]);
    assert!(
        prompts.len() >= 2,
        "development ran again after the red CI: {prompts:#?}\n{}",
        String::from_utf8_lossy(&show.stdout)
    );
    assert!(
        prompts.iter().any(|p| p.contains(marker) && p.contains("ci/test")),
        "no development prompt carries the CI failure: {prompts:#?}"
    );
    w.assert_no_violations();
}

/// Every `prompt.md` under `dir`.
fn prompts_of(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "prompt.md") {
                found.push(std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    found
}

const SLOW_ARCHITECTURE: &str = r##"
[[task]]
match = "stoppable"
[[task.step]]
stage = "analysis"
actions = [{ write = { path = "docs/baton/{work_item}/01-analysis.md", content = "# A\n\nAnalysis.\n" } }]
[[task.step]]
stage = "architecture"
actions = [{ sleep_ms = 120000 }]
"##;

// Closing the issue is a STOP: the task is cancelled at once, its branch deleted on the remote,
// the ticket labelled stopped; labelling it again starts a fresh task.
#[test]
fn stop_from_the_tracker_cancels_and_a_restart_is_fresh() {
    let mut w = forge_world(Flavor::GitHub, SLOW_ARCHITECTURE);
    let number = w.forge().issue("stoppable ticket", &["baton"]);
    let reference = format!("github:{FORGE_REPO}#{number}");
    let _baton = w.serve();
    let opened = w.issue_event(number, "labeled", Some("baton"), "alice");
    assert_eq!(w.deliver("github", "issues", &opened).0, 202);
    let task =
        w.wait_task(&reference, "the approval hold", Duration::from_secs(60), |t| hold(t) == Some("awaiting_approval"));
    let id = task["work_item_id"].as_str().unwrap().to_string();
    w.add_label(number, "baton:approved");
    let approve = w.issue_event(number, "labeled", Some("baton:approved"), "alice");
    assert_eq!(w.deliver("github", "issues", &approve).0, 202);
    w.wait_task(&reference, "architecture", Duration::from_secs(60), |t| stage(t) == "architecture");
    let branch = w.env.json(&["task", "show", &id])["task"]["branch"].as_str().unwrap().to_string();
    w.forge().issues.iter_mut().find(|i| i.number == number).unwrap().state = "closed".into();
    let closed = w.issue_event(number, "closed", None, "alice");
    assert_eq!(w.deliver("github", "issues", &closed).0, 202);
    wait_for("the task to be cancelled", Duration::from_secs(30), || {
        stage(&w.env.json(&["task", "show", &id])["task"]) == "cancelled"
    });
    wait_for("the remote branch to be deleted", Duration::from_secs(30), || remote_branch(&w.bare, &branch).is_none());
    wait_for("the ticket to be labelled stopped", Duration::from_secs(30), || {
        w.forge().issues.iter().any(|i| i.number == number && i.labels.iter().any(|l| l == "baton:stopped"))
    });
    // Reopened and labelled again: a fresh task, the cancelled one stays a tombstone.
    w.forge().issues.iter_mut().find(|i| i.number == number).unwrap().state = "open".into();
    let again = w.issue_event(number, "labeled", Some("baton"), "alice");
    assert_eq!(w.deliver("github", "issues", &again).0, 202);
    // The cancelled task gave its reference up; the ticket's reference now names the fresh one.
    wait_for("a fresh task", Duration::from_secs(30), || {
        w.task_for(&reference).is_some_and(|t| t["work_item_id"].as_str() != Some(id.as_str()))
    });
    assert_eq!(w.tasks().len(), 2);
    assert_eq!(stage(&w.env.json(&["task", "show", &id])["task"]), "cancelled");
    w.assert_no_violations();
}

// A Plane work item moved to "To Analyse" runs the pipeline; the human gates are passed by state
// changes (In Review → Approved, Awaiting Deploy → Deploying) and the item ends Done.
#[test]
fn plane_ticket_runs_the_whole_pipeline_by_states() {
    let mut w = plane_world("");
    let item = w.plane().add_item("Plane ticket", "To Analyse");
    let _baton = w.serve();
    let deadline = Instant::now() + Duration::from_secs(240);
    let reference_part = item.clone();
    loop {
        let task =
            w.tasks().into_iter().find(|t| t["external_ref"].as_str().is_some_and(|r| r.ends_with(&reference_part)));
        if let Some(task) = task {
            if stage(&task) == "done" {
                break;
            }
            let state = match hold(&task) {
                Some("awaiting_approval") => Some("Approved"),
                Some("awaiting_confirm") => Some("Deploying"),
                _ => None,
            };
            if let Some(state) = state {
                let mut st = w.plane();
                let sid = st.state_id(state);
                if let Some(entry) = st.items.iter_mut().find(|i| i.0 == item) {
                    entry.2 = sid;
                }
            }
        }
        assert!(Instant::now() < deadline, "timed out: {:#?}", w.tasks());
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for("the work item to be Done", Duration::from_secs(30), || {
        let st = w.plane();
        let done = st.state_id("Done");
        st.items.iter().any(|i| i.0 == item && i.2 == done)
    });
    w.assert_no_violations();
    w.report_calls("plane whole pipeline (polling)");
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

// With `[telegram]`, `config check --online` calls `getMe` once: a working token names the bot, a
// refused one is a failure with the fix, and the token is never printed.
#[test]
fn config_check_online_calls_telegram_get_me() {
    let rt = runtime();
    let (fake, api) = rt.block_on(fakes::telegram::start("123:bot-token-for-e2e", -100_123));
    let sections = format!(
        "[telegram]\nbot_token_env = \"BATON_E2E_BOT_TOKEN\"\nchat_id = -100123\nmode = \"poll\"\n\
         allowed_user_ids = [42]\napi_url = \"{api}\"\n"
    );
    let env = Env::with_extra("", &ConfigExtra { sections: &sections, ..ConfigExtra::default() });
    let online = |token: &str| {
        let mut command = env.command();
        command.env("BATON_E2E_BOT_TOKEN", token).args(["config", "check", "--online"]);
        command.output().unwrap()
    };
    let good = online("123:bot-token-for-e2e");
    let text = String::from_utf8_lossy(&good.stdout).to_string();
    assert!(good.status.success(), "{text}{}", String::from_utf8_lossy(&good.stderr));
    assert!(text.contains("telegram: the bot token works (bot @baton_bot)"), "{text}");
    let bad = online("999:not-the-token");
    let text = String::from_utf8_lossy(&bad.stdout).to_string();
    assert!(!bad.status.success(), "{text}");
    assert!(text.contains("FAIL telegram") && text.contains("@BotFather"), "{text}");
    assert!(!text.contains("not-the-token") && !text.contains("bot-token-for-e2e"), "{text}");
    drop(fake);
}

/// The jobs of a task, from `task show --json`.
fn task_jobs(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["task", "show", id])["jobs"].as_array().cloned().unwrap_or_default()
}

/// The timeline messages of `kind` on a task.
fn timeline(env: &Env, id: &str, kind: &str) -> Vec<String> {
    env.json(&["task", "show", id])["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["kind"] == kind)
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

/// A new issue labelled for Baton with `body`.
fn issue_with_body(w: &World, title: &str, body: &str) -> u64 {
    let mut st = w.forge();
    let number = st.issue(title, &["baton"]);
    st.issues.iter_mut().find(|i| i.number == number).unwrap().body = body.into();
    number
}

fn set_body(w: &World, number: u64, body: &str) {
    w.forge().issues.iter_mut().find(|i| i.number == number).unwrap().body = body.into();
}

// Two tickets labelled for Baton, the second's body saying "Depends on #<first>": the second's
// task is created waiting for the first's, `baton status` shows the wait, and its first job starts
// only after the first task is done.
#[test]
fn ticket_body_dependency_holds_the_second_ticket_until_the_first_is_done() {
    let mut w = forge_world(Flavor::GitHub, "");
    let first = w.forge().issue("First ticket", &["baton"]);
    let first_ref = format!("github:{FORGE_REPO}#{first}");
    let _baton = w.serve();
    let a = w.wait_task(&first_ref, "the first ticket's task", Duration::from_secs(30), |_| true);
    let a = a["work_item_id"].as_str().unwrap().to_string();
    let second = issue_with_body(&w, "Second ticket", &format!("Builds on the first.\n\nDepends on #{first}\n"));
    let second_ref = format!("github:{FORGE_REPO}#{second}");
    let event = w.issue_event(second, "labeled", Some("baton"), "alice");
    assert_eq!(w.deliver("github", "issues", &event).0, 202);
    let b = w.wait_task(&second_ref, "the second ticket's task", Duration::from_secs(30), |_| true);
    let b = b["work_item_id"].as_str().unwrap().to_string();
    w.wait_for("`baton status` to show the wait", Duration::from_secs(30), || {
        let status = String::from_utf8_lossy(&w.env.run(&["status"]).stdout).to_string();
        status.contains(&format!("waiting {b} analysis (demo): waits for {a}"))
    });
    let deadline = Instant::now() + Duration::from_secs(480);
    loop {
        let tasks = w.tasks();
        if tasks.len() == 2 && tasks.iter().all(|t| stage(t) == "done") {
            break;
        }
        for (number, reference) in [(first, &first_ref), (second, &second_ref)] {
            if let Some(task) = w.task_for(reference) {
                match hold(&task) {
                    Some("awaiting_approval") => w.add_label(number, "baton:approved"),
                    Some("awaiting_confirm") => w.add_label(number, "baton:deploy"),
                    _ => {}
                }
            }
        }
        assert!(Instant::now() < deadline, "timed out: {:#?}", w.tasks());
        w.report_ci(None);
        std::thread::sleep(Duration::from_millis(200));
    }
    let first_end = task_jobs(&w.env, &a).iter().filter_map(|j| j["finished_at_ms"].as_i64()).max().unwrap();
    let second_start = task_jobs(&w.env, &b).iter().filter_map(|j| j["started_at_ms"].as_i64()).min().unwrap();
    assert!(second_start >= first_end, "{b} started at {second_start}, before {a} was done at {first_end}");
    w.assert_no_violations();
    w.report_calls("github ticket dependency");
}

// A ticket edited to close a dependency cycle is refused with one timeline line (however often
// the ticket is polled after) and its delivery is handled, not failed; a ticket edited to drop
// its dependency withdraws it, and the refused one is declared at the next poll once it closes no
// cycle.
#[test]
fn ticket_body_cycle_is_refused_on_the_timeline_and_a_dropped_dependency_is_withdrawn() {
    let mut w = forge_world(Flavor::GitHub, "");
    let first = w.forge().issue("First ticket", &["baton"]);
    let first_ref = format!("github:{FORGE_REPO}#{first}");
    let _baton = w.serve();
    let a = w.wait_task(&first_ref, "the first ticket's task", Duration::from_secs(30), |_| true);
    let a = a["work_item_id"].as_str().unwrap().to_string();
    let second = issue_with_body(&w, "Second ticket", &format!("Blocked by: #{first}"));
    let second_ref = format!("github:{FORGE_REPO}#{second}");
    let b = w.wait_task(&second_ref, "the second ticket's task (polled)", Duration::from_secs(30), |_| true);
    let b = b["work_item_id"].as_str().unwrap().to_string();
    w.wait_for("the first task to await approval", Duration::from_secs(60), || {
        w.task_for(&first_ref).is_some_and(|t| hold(&t) == Some("awaiting_approval"))
    });

    // The first ticket now says it waits for the second, which waits for it: refused.
    set_body(&w, first, &format!("Depends on #{second}"));
    let edited = w.issue_event(first, "edited", None, "alice");
    assert_eq!(w.deliver("github", "issues", &edited).0, 202);
    w.wait_for("the refusal on the timeline", Duration::from_secs(30), || {
        timeline(&w.env, &a, "tracker_dependency").iter().any(|m| m.contains("refused") && m.contains("cycle"))
    });
    std::thread::sleep(Duration::from_secs(3)); // a few polls re-read the same body
    let refusals: Vec<String> =
        timeline(&w.env, &a, "tracker_dependency").into_iter().filter(|m| m.contains("refused")).collect();
    assert_eq!(refusals.len(), 1, "one line, not one per poll: {refusals:#?}");
    assert!(refusals[0].contains(&format!("{a} → {b} → {a}")), "the line names the cycle: {}", refusals[0]);
    let status = String::from_utf8_lossy(&w.env.run(&["status"]).stdout).to_string();
    assert!(status.contains(&format!("waiting {b} analysis (demo): waits for {a}")), "{status}");
    // Every delivery was handled: the refusal failed none.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deliveries = runtime.block_on(async {
        use baton_store::Store;
        let store = baton_store_sqlite::SqliteStore::open(&w.env.root.join("data").join("baton.db")).await.unwrap();
        store.deliveries(Some("github")).await.unwrap()
    });
    assert!(!deliveries.is_empty());
    for delivery in &deliveries {
        assert!(delivery.processed_at_ms.is_some() && delivery.error.is_none(), "{delivery:#?}");
    }

    // The second ticket drops its dependency: withdrawn, so it runs while the first still waits
    // for approval; the first ticket's dependency, refused before, is declared at the next poll.
    set_body(&w, second, "No longer waits for anything.");
    let edited = w.issue_event(second, "edited", None, "alice");
    assert_eq!(w.deliver("github", "issues", &edited).0, 202);
    w.wait_for("the withdrawal on the timeline", Duration::from_secs(30), || {
        timeline(&w.env, &b, "tracker_dependency").iter().any(|m| m.contains(&format!("withdrawn by the ticket: {a}")))
    });
    w.wait_for("the second task to run and await approval", Duration::from_secs(60), || {
        w.task_for(&second_ref).is_some_and(|t| hold(&t) == Some("awaiting_approval"))
    });
    assert_eq!(stage(&w.task_for(&first_ref).unwrap()), "analysis", "{a} is not done, yet {b} ran");
    w.wait_for("the first ticket's dependency to be declared", Duration::from_secs(30), || {
        timeline(&w.env, &a, "tracker_dependency").iter().any(|m| m.contains(&format!("declared by the ticket: {b}")))
    });
    w.assert_no_violations();
}

/// A Plane world whose second work item (`declare` makes it wait for the first, given the first's
/// id) is held while the first task awaits approval: `baton status` shows the wait and none of its
/// jobs starts over a few polls. Returns the world with Baton running, the second item's id and
/// the two tasks' work items.
fn plane_second_item_waits(
    declare: impl FnOnce(&mut fakes::plane::PlaneFake, &str, &str),
) -> (World, crate::support::Server, String, String, String) {
    let mut w = plane_world("");
    let first = w.plane().add_item("First item", "To Analyse");
    let baton = w.serve();
    let of = |tasks: Vec<Value>, item: &str| {
        tasks.into_iter().find(|t| t["external_ref"].as_str().is_some_and(|r| r.ends_with(item)))
    };
    w.wait_for("the first item's task to await approval", Duration::from_secs(60), || {
        of(w.tasks(), &first).is_some_and(|t| hold(&t) == Some("awaiting_approval"))
    });
    let a = of(w.tasks(), &first).unwrap()["work_item_id"].as_str().unwrap().to_string();
    let second = {
        let mut st = w.plane();
        let id = st.add_item("Second item", "To Analyse");
        declare(&mut st, &id, &first);
        id
    };
    w.wait_for("the second item's task", Duration::from_secs(30), || of(w.tasks(), &second).is_some());
    let b = of(w.tasks(), &second).unwrap()["work_item_id"].as_str().unwrap().to_string();
    w.wait_for("`baton status` to show the wait", Duration::from_secs(30), || {
        let status = String::from_utf8_lossy(&w.env.run(&["status"]).stdout).to_string();
        status.contains(&format!("waiting {b} analysis (demo): waits for {a}"))
    });
    std::thread::sleep(Duration::from_secs(3)); // a few polls
    assert!(
        task_jobs(&w.env, &b).iter().all(|j| j["started_at_ms"].is_null()),
        "{b} ran a job while {a} awaits approval"
    );
    (w, baton, second, a, b)
}

// A Plane work item blocked by another in Plane's own relations (no line in its description)
// waits for that item's task; removing the relation in Plane withdraws the dependency.
#[test]
fn plane_blocked_by_relation_holds_the_second_item_until_it_is_removed() {
    let (w, _baton, second, _, b) = plane_second_item_waits(|st, id, first| {
        st.blocked_by.insert(id.to_string(), vec![first.to_string()]);
    });
    assert!(w.plane().rec.count("GET work-items/{id}/relations/") >= 1, "the relations were read");
    // The relation removed in Plane: the next poll withdraws the dependency and the item runs.
    w.plane().blocked_by.remove(&second);
    w.wait_for("the second item's analysis to run", Duration::from_secs(60), || {
        task_jobs(&w.env, &b).iter().any(|j| !j["started_at_ms"].is_null())
    });
    w.assert_no_violations();
}

// A Plane work item whose description says "Depends on: P1-1" waits for the task of the work item
// with that key: `baton status` shows the wait and none of its jobs starts while the first task
// awaits approval; the key is looked up once however often the project is polled.
#[test]
fn plane_description_dependency_by_key_holds_the_second_item() {
    let (w, _baton, ..) = plane_second_item_waits(|st, id, _| {
        let html = "<p>Needs the first.</p><p><strong>Depends on:</strong> P1-1</p>";
        st.descriptions.insert(id.to_string(), html.into());
    });
    assert_eq!(w.plane().rec.count("GET work-items/{key}/"), 1, "the key was looked up once");
    w.assert_no_violations();
}
