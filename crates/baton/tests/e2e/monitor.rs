//! The post-deploy monitor, the repository freeze and the incident task (SPEC §3 `done` row,
//! §6.4): real git repositories, the real binary, script agents, real HTTP. The repository's
//! `health` command passes its first run (the deploy's own check) after a deploy that marks the
//! service sick, then fails until the test heals it by removing `<root>/sick`.

use crate::support::{ConfigExtra, Env, Server, assert_each_main_commit_passes_tests, main_commits, stage};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The first deploy makes the service sick; `health` passes once after that, then fails.
const REPO_KEYS: &str = "deploy = [\"sh\", \"-c\", \"if [ ! -f {root}/first ]; then touch {root}/first {root}/sick; fi\"]\n\
    health = [\"sh\", \"-c\", \"if [ -f {root}/sick ]; then if [ -f {root}/seen ]; then echo 'GET /healthz: HTTP 503'; exit 1; fi; touch {root}/seen; fi; echo ok\"]\n\
    monitor_window_secs = 6\nmonitor_interval_secs = 1\nmonitor_failures = 2\n";

fn env_with(features: &str) -> Env {
    Env::with_extra(
        "",
        &ConfigExtra {
            repo: REPO_KEYS,
            limits: "reconciler_interval_secs = 1\n",
            sections: features,
            ..ConfigExtra::default()
        },
    )
}

fn timeline(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["task", "show", id])["timeline"].as_array().unwrap().clone()
}

fn timeline_text(env: &Env, id: &str) -> String {
    timeline(env, id).iter().map(|e| format!("{} {}\n", e["kind"], e["message"].as_str().unwrap_or(""))).collect()
}

fn task<'a>(tasks: &'a [Value], id: &str) -> Option<&'a Value> {
    tasks.iter().find(|t| t["work_item_id"] == id)
}

fn hold(task: &Value) -> &str {
    task["state"]["hold"]["kind"].as_str().unwrap_or("none")
}

/// Plays the human (approve, confirm) until `done(tasks)`.
fn drive(env: &Env, what: &str, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = env.tasks();
        if done(&tasks) {
            return tasks;
        }
        env.play_human(&tasks);
        assert!(Instant::now() < deadline, "timed out waiting for {what}; tasks: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply[9..12].parse().unwrap();
    let (_, rest) = reply.split_once("\r\n\r\n").unwrap();
    let start = rest.find(['{', '[']).unwrap_or(0);
    let end = rest.rfind(['}', ']']).map_or(rest.len(), |e| e + 1);
    (status, serde_json::from_str(&rest[start..end]).unwrap_or(Value::Null))
}

fn start(env: &Env) -> (Server, String) {
    let server = env.serve(1);
    let addr = crate::support::served_address(&env.root.join("serve-1.log"));
    (server, addr)
}

fn frozen(env: &Env) -> Vec<Value> {
    env.json(&["repo", "frozen"])["freezes"].as_array().unwrap().clone()
}

/// Drives the first task to DEGRADED: it is blocked "deploy degraded" (never done), the repo is
/// frozen, the incident is filed with the health output. Returns the incident's work item.
fn degrade_first(env: &Env, first: &str) -> String {
    let tasks = drive(env, "the first task to degrade", Duration::from_secs(120), |tasks| {
        task(tasks, first).is_some_and(|t| hold(t) == "blocked")
    });
    let blocked = task(&tasks, first).unwrap();
    assert_eq!(stage(blocked), "deploy", "{blocked:#}");
    let reason = blocked["state"]["hold"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("deploy degraded") && reason.contains("HTTP 503"), "{reason}");
    let text = timeline_text(env, first);
    assert!(text.contains("monitoring health for "), "{text}");
    assert!(text.contains("health check 1 failed (1 of 2 in a row)"), "{text}");
    // The incident, linked both ways, carries the health output.
    let deadline = Instant::now() + Duration::from_secs(30);
    let incident = loop {
        let tasks = env.tasks();
        if let Some(t) = tasks.iter().find(|t| t["title"].as_str().is_some_and(|s| s.starts_with("Incident:"))) {
            break t.clone();
        }
        assert!(Instant::now() < deadline, "no incident filed; tasks: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(incident["title"].as_str(), Some(format!("Incident: {first} degraded demo").as_str()));
    let id = incident["work_item_id"].as_str().unwrap().to_string();
    let shown = env.json(&["task", "show", &id]);
    assert!(shown["task"]["body"].as_str().unwrap_or_default().contains("HTTP 503"), "{shown:#}");
    assert!(timeline_text(env, &id).contains(&format!("incident of the degraded deploy of {first}")));
    let linked = timeline(env, first).into_iter().find(|e| e["kind"] == "incident_filed").expect("incident_filed");
    assert_eq!(linked["detail"]["work_item"].as_str(), Some(id.as_str()));
    id
}

// A deploy whose health degrades freezes the repository (an alert, the incident task filed), a
// second change waits green in the merge queue while it is frozen, and an authenticated unfreeze
// (recorded with its principal) lets it land; its own window closes green into done.
#[test]
fn degraded_deploy_freezes_the_repo_files_an_incident_and_unfreeze_resumes() {
    let env = env_with("");
    let (_server, addr) = start(&env);
    let first = env.add_task("First");
    let incident = degrade_first(&env, &first);
    let freezes = frozen(&env);
    assert_eq!(freezes.len(), 1, "{freezes:?}");
    assert_eq!((freezes[0]["repo"].as_str(), freezes[0]["frozen_by"].as_str()), (Some("demo"), Some("monitor")));
    let text = timeline_text(&env, &first);
    assert!(text.contains("demo is frozen: the deploy of"), "the freeze alert went out: {text}");
    let log = std::fs::read_to_string(env.root.join("serve-1.log")).unwrap();
    assert!(log.contains("demo is frozen"), "the alert reached the notifier (the log): {log}");
    let status = env.run(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("FROZEN demo"), "{status:?}");
    let (code, queue) = http(&addr, "GET", "/api/queue", Some("test-token"));
    assert_eq!((code, queue["freezes"][0]["repo"].as_str()), (200, Some("demo")), "{queue}");

    // The service is healed by hand; a second change goes all the way to the merge queue and
    // waits there, green, while the repository stays frozen.
    std::fs::remove_file(env.root.join("sick")).unwrap();
    let merged_before = main_commits(&env.project()).len();
    let second = env.add_task("Second");
    drive(&env, "the second change to wait in the merge queue", Duration::from_secs(120), |tasks| {
        task(tasks, &second).is_some_and(|t| stage(t) == "deploy_staging" && hold(t) == "merge_queue")
            && env.json(&["task", "show", &second])["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["message"].as_str().is_some_and(|m| m.contains("in the merge queue")))
    });
    std::thread::sleep(Duration::from_secs(3));
    let waiting = env.tasks();
    assert_ne!(stage(task(&waiting, &second).unwrap()), "done", "nothing lands in a frozen repository");
    assert_eq!(main_commits(&env.project()).len(), merged_before, "main did not move while frozen");

    // Unfreeze: a read token is refused, an act token unfreezes and is recorded.
    let reader = env.json(&["token", "create", "watcher", "--scope", "read"])["token"].as_str().unwrap().to_string();
    let (code, _) = http(&addr, "POST", "/api/repos/demo/unfreeze", Some(&reader));
    assert_eq!(code, 403);
    let (code, body) = http(&addr, "POST", "/api/repos/nope/unfreeze", Some("test-token"));
    assert_eq!(code, 404, "{body}");
    let actor = env.json(&["token", "create", "oncall", "--scope", "act"])["token"].as_str().unwrap().to_string();
    let (code, closed) = http(&addr, "POST", "/api/repos/demo/unfreeze", Some(&actor));
    assert_eq!(code, 200, "{closed}");
    assert!(closed["unfrozen_by"].as_str().is_some_and(|by| by.contains("oncall")), "{closed}");
    let (code, again) = http(&addr, "POST", "/api/repos/demo/unfreeze", Some(&actor));
    assert_eq!(code, 422, "not frozen any more: {again}");
    assert!(frozen(&env).is_empty());
    assert!(timeline_text(&env, &first).contains("demo unfrozen by"));

    let tasks = drive(&env, "the second change to land and close its window", Duration::from_secs(120), |tasks| {
        task(tasks, &second).is_some_and(|t| stage(t) == "done")
    });
    assert_eq!(hold(task(&tasks, &first).unwrap()), "blocked", "the degraded task never became done");
    let text = timeline_text(&env, &second);
    assert!(text.contains("monitor window closed green"), "{text}");
    assert!(main_commits(&env.project()).len() > merged_before);
    assert_each_main_commit_passes_tests(&env.project());
    assert!(task(&tasks, &incident).is_some());
}

// `[features] freeze = false`: a degraded deploy is still blocked with an incident filed, but
// nothing is frozen and the next change lands without anyone unfreezing.
#[test]
fn freeze_switched_off_blocks_and_files_but_merges_go_on() {
    let env = env_with("[features]\nfreeze = false\n");
    let (_server, _addr) = start(&env);
    let first = env.add_task("First");
    degrade_first(&env, &first);
    assert!(frozen(&env).is_empty(), "nothing frozen with the switch off");
    std::fs::remove_file(env.root.join("sick")).unwrap();
    let second = env.add_task("Second");
    drive(&env, "the second change to land", Duration::from_secs(120), |tasks| {
        task(tasks, &second).is_some_and(|t| stage(t) == "done")
    });
}

// `[features] monitor = false`: the one `deploy_status` check decides as before — the task is
// done right after its deploy although `health` would fail afterwards, and nothing is frozen.
#[test]
fn monitor_switched_off_keeps_the_single_health_check() {
    let env = env_with("[features]\nmonitor = false\n");
    let (_server, _addr) = start(&env);
    let first = env.add_task("First");
    drive(&env, "the task to be done", Duration::from_secs(120), |tasks| {
        task(tasks, &first).is_some_and(|t| stage(t) == "done")
    });
    let text = timeline_text(&env, &first);
    assert!(!text.contains("monitoring health"), "{text}");
    assert!(frozen(&env).is_empty());
    assert!(!env.tasks().iter().any(|t| t["title"].as_str().is_some_and(|s| s.starts_with("Incident:"))));
}

/// The deploy makes the service sick while DEMO-001's module is in the deployed tree and heals it
/// otherwise; the repository reverts a degraded deploy on its own.
const REVERT_KEYS: &str = "deploy = [\"sh\", \"-c\", \"if [ -f mathkit/m_demo_001.py ]; then touch {root}/sick; else rm -f {root}/sick {root}/seen; fi\"]\n\
    health = [\"sh\", \"-c\", \"if [ -f {root}/sick ]; then if [ -f {root}/seen ]; then echo 'GET /healthz: HTTP 503'; exit 1; fi; touch {root}/seen; fi; echo ok\"]\n\
    monitor_window_secs = 4\nmonitor_interval_secs = 1\nmonitor_failures = 2\nrevert_on_degraded = true\n";

// With `revert_on_degraded`, the degraded change is reverted by a task that skips the agent
// stages and needs no human confirm: it lands in the frozen repository (the one change that may),
// deploys green and ends done; main ends without the change and every commit passes its tests;
// the repository stays frozen until `baton repo unfreeze`, after which the incident lands too.
#[test]
fn degraded_deploy_is_reverted_through_the_merge_gate_while_frozen() {
    let env = Env::with_extra(
        "",
        &ConfigExtra { repo: REVERT_KEYS, limits: "reconciler_interval_secs = 1\n", ..ConfigExtra::default() },
    );
    let (_server, _addr) = start(&env);
    let first = env.add_task("First");
    let incident = degrade_first(&env, &first);
    let revert_of = |tasks: &[Value]| {
        tasks.iter().find(|t| t["title"].as_str().is_some_and(|s| s.starts_with(&format!("Revert {first}")))).cloned()
    };
    // Only the incident is played by the human here: the revert must need nobody.
    let deadline = Instant::now() + Duration::from_secs(120);
    let revert = loop {
        let tasks = env.tasks();
        if let Some(revert) = revert_of(&tasks).filter(|t| stage(t) == "done") {
            break revert;
        }
        let incident_only: Vec<Value> =
            tasks.iter().filter(|t| t["work_item_id"] == incident.as_str()).cloned().collect();
        env.play_human(&incident_only);
        assert!(Instant::now() < deadline, "the revert did not finish; tasks: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let id = revert["work_item_id"].as_str().unwrap();
    let text = timeline_text(&env, id);
    assert!(text.contains(&format!("reverts {first}")), "{text}");
    assert!(text.contains("confirmed by monitor (revert-only change)"), "{text}");
    assert!(text.contains("monitor window closed green"), "{text}");
    for agent_stage in ["analysis", "architecture", "development", "review", "testing"] {
        assert!(!text.contains(&format!("{agent_stage} →")), "the revert skipped the agent stages: {text}");
    }
    let tree = crate::support::git(&env.project(), &["ls-tree", "-r", "--name-only", "main"]);
    assert!(!tree.contains("m_demo_001.py"), "main no longer has the degraded change: {tree}");
    assert_each_main_commit_passes_tests(&env.project());
    let freezes = frozen(&env);
    assert_eq!(freezes.len(), 1, "no auto-unfreeze: {freezes:?}");
    assert_eq!(freezes[0]["revert"].as_i64(), revert["id"].as_i64(), "{freezes:?}");

    let out = env.run(&["repo", "unfreeze", "demo"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("unfrozen by cli:"), "{out:?}");
    let again = env.run(&["repo", "unfreeze", "demo"]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not frozen"), "{again:?}");
    drive(&env, "the incident to land after the unfreeze", Duration::from_secs(120), |tasks| {
        task(tasks, &incident).is_some_and(|t| stage(t) == "done")
    });
    assert_each_main_commit_passes_tests(&env.project());
}

// With `revert_confirm = true`, the revert is filed and its branch prepared, then it waits for a
// human's Confirm Deploy: nothing of it runs (and main keeps the degraded change) until then; once
// confirmed, it lands in the frozen repository and main ends without the change.
#[test]
fn a_revert_with_revert_confirm_waits_for_a_humans_deploy_confirmation() {
    let keys = format!("{REVERT_KEYS}revert_confirm = true\n");
    let env = Env::with_extra(
        "",
        &ConfigExtra { repo: &keys, limits: "reconciler_interval_secs = 1\n", ..ConfigExtra::default() },
    );
    let (_server, _addr) = start(&env);
    let first = env.add_task("First");
    let incident = degrade_first(&env, &first);
    let revert_of = |tasks: &[Value]| {
        tasks.iter().find(|t| t["title"].as_str().is_some_and(|s| s.starts_with(&format!("Revert {first}")))).cloned()
    };
    // Filed, prepared, and then held for the human (who plays nothing yet).
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let tasks = env.tasks();
        if let Some(revert) = revert_of(&tasks) {
            let id = revert["work_item_id"].as_str().unwrap().to_string();
            if timeline_text(&env, &id).contains("the branch holds the revert") {
                break id;
            }
        }
        assert!(Instant::now() < deadline, "no prepared revert; tasks: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // A few monitor and reconciler intervals later it still waits, and nothing of it ran.
    std::thread::sleep(Duration::from_secs(3));
    let tasks = env.tasks();
    let waiting = task(&tasks, &id).unwrap();
    assert_eq!((stage(waiting), hold(waiting)), ("deploy_staging", "awaiting_confirm"), "{waiting:#}");
    let text = timeline_text(&env, &id);
    assert!(!text.contains("confirmed by monitor"), "{text}");
    let tree = crate::support::git(&env.project(), &["ls-tree", "-r", "--name-only", "main"]);
    assert!(tree.contains("m_demo_001.py"), "main keeps the change until the revert is confirmed: {tree}");

    let out = env.run(&["task", "confirm-deploy", &id]);
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let tasks = env.tasks();
        if task(&tasks, &id).is_some_and(|t| stage(t) == "done") {
            break;
        }
        let incident_only: Vec<Value> =
            tasks.iter().filter(|t| t["work_item_id"] == incident.as_str()).cloned().collect();
        env.play_human(&incident_only);
        assert!(Instant::now() < deadline, "the confirmed revert did not finish; tasks: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(timeline_text(&env, &id).contains("deploy_staging confirmed by cli:"), "{}", timeline_text(&env, &id));
    let tree = crate::support::git(&env.project(), &["ls-tree", "-r", "--name-only", "main"]);
    assert!(!tree.contains("m_demo_001.py"), "main no longer has the degraded change: {tree}");
    assert_each_main_commit_passes_tests(&env.project());
    assert_eq!(frozen(&env).len(), 1, "still frozen until a human unfreezes");
}
