//! The lessons journal (SPEC §10) end to end: the real binary, a real SQLite file and script
//! agents. A review that rejects once records one lesson; the next task's development prompt
//! carries it; the same failure within the window records nothing new; the kill switch answers
//! `{"enabled": false}` and writes nothing; a journal that cannot write never stops a task.

use crate::support::{Env, Server, all_done};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Tasks titled "Flaky …" get a rejecting review on their first run, then the common approval.
const SCRIPT: &str = r##"
[[task]]
match = "flaky"
[[task.step]]
stage = "review"
run = 1
actions = [{ write = { path = "docs/baton/{work_item}/04-review.md", content = "---\nverdict: changes_requested\n---\nEvery new module needs a docstring.\n" } }]
"##;

fn env(sections: &str) -> Env {
    Env::with_config(SCRIPT, "", sections)
}

fn start(env: &Env) -> (Server, String) {
    let server = env.serve(1);
    let log = env.root.join("serve-1.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1) {
            return (server, rest.split_whitespace().next().unwrap().to_string());
        }
        assert!(Instant::now() < deadline, "serve never said where it listens: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request on a fresh connection; the status and the JSON body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer test-token\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
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

fn lessons(addr: &str) -> Vec<Value> {
    let (status, body) = http(addr, "GET", "/api/lessons", "");
    assert_eq!((status, &body["enabled"]), (200, &Value::Bool(true)), "{body}");
    body["lessons"].as_array().unwrap().clone()
}

fn finish(env: &Env, id: &str) {
    env.drive(Duration::from_secs(180), |tasks| tasks.iter().any(|t| t["work_item_id"] == id) && all_done(tasks));
}

/// Every prompt written for `work_item`'s `stage`, in no particular order.
fn prompts(env: &Env, work_item: &str, stage: &str) -> Vec<String> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.file_name().is_some_and(|n| n == "prompt.md") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&env.root.join("data").join("runs"), &mut found);
    found
        .into_iter()
        .filter(|p| {
            let text = p.display().to_string();
            text.contains(work_item) && text.contains(stage)
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn rows(env: &Env, sql: &str) -> String {
    let db = env.root.join("data").join("baton.db");
    let script = String::from(
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nr = c.execute(sys.argv[2]).fetchone()\nc.commit()\nprint(r[0] if r else '')",
    );
    let out = std::process::Command::new("python3").args(["-c", &script]).arg(&db).arg(sql).output().unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// A rejected review records one auto lesson for the repository's development stage; the next
// task's development prompt carries it and its hit is counted; a second identical rejection
// within the window adds no lesson; a person's lesson is added, and bad ones are refused.
#[test]
fn a_rejected_review_teaches_the_next_prompt_once() {
    let env = env("");
    let (_server, addr) = start(&env);
    let first = env.add_task("Flaky module");
    finish(&env, &first);
    let learned = lessons(&addr);
    assert_eq!(learned.len(), 1, "{learned:#?}");
    let lesson = &learned[0];
    assert_eq!(lesson["source"], "auto");
    assert_eq!((lesson["repo"].as_str(), lesson["stage"].as_str()), (Some("demo"), Some("development")));
    assert!(lesson["slug"].as_str().unwrap().starts_with("gate-"), "{lesson}");
    assert!(lesson["slug"].as_str().unwrap().ends_with("-demo-review"), "{lesson}");
    assert!(lesson["body"].as_str().unwrap().contains("docstring"), "the gate's reason is kept: {lesson}");
    let title = lesson["title"].as_str().unwrap().to_string();
    let (status, queue) = http(&addr, "GET", "/api/queue", "");
    assert_eq!((status, queue["lessons"]["count"].as_u64()), (200, Some(1)), "{queue}");
    assert_eq!(queue["lessons"]["recent"][0]["id"], lesson["id"], "{queue}");

    let second = env.add_task("Plain module");
    finish(&env, &second);
    let seen = prompts(&env, &second, "development");
    assert!(!seen.is_empty(), "the development prompt of {second} was written");
    assert!(
        seen.iter().all(|p| p.contains("## Lessons from earlier runs") && p.contains(&title)),
        "the lesson reaches the next task's prompt: {seen:#?}"
    );
    let hits = lessons(&addr)[0]["hits"].as_i64().unwrap();
    assert!(hits >= 1, "injections are counted");

    // The same failure again, within the hour: still one lesson.
    let third = env.add_task("Flaky again");
    finish(&env, &third);
    let after = lessons(&addr);
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0]["id"], lesson["id"]);

    // A person's lesson; an empty title or an unknown stage is refused and stores nothing.
    let (status, added) =
        http(&addr, "POST", "/api/lessons", r#"{"title":"Run ruff","body":"before committing","repo":"demo"}"#);
    assert_eq!((status, added["source"].as_str()), (200, Some("human")), "{added}");
    let (status, refused) = http(&addr, "POST", "/api/lessons", r#"{"title":" ","body":"x"}"#);
    assert_eq!(status, 422, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("title"), "{refused}");
    let (status, refused) = http(&addr, "POST", "/api/lessons", r#"{"title":"t","body":"b","stage":"nowhere"}"#);
    assert_eq!(status, 422, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("nowhere"), "{refused}");
    let id = added["id"].as_i64().unwrap();
    let (status, edited) =
        http(&addr, "POST", &format!("/api/lessons/{id}"), r#"{"body":"before every commit","stage":"development"}"#);
    assert_eq!(
        (status, edited["body"].as_str(), edited["stage"].as_str()),
        (200, Some("before every commit"), Some("development")),
        "{edited}"
    );
    assert_eq!(lessons(&addr).len(), 2);

    // The same journal from the command line.
    let listed = env.json(&["lessons", "list", "--repo", "demo", "--stage", "development"]);
    assert_eq!(listed["lessons"].as_array().unwrap().len(), 2, "{listed}");
    let added =
        env.json(&["lessons", "add", "--title", "Pin versions", "--body", "in requirements.txt", "--tag", "deps"]);
    assert_eq!((added["source"].as_str(), added["tags"][0].as_str()), (Some("human"), Some("deps")), "{added}");
    let edited = env.json(&["lessons", "edit", &added["id"].to_string(), "--stage", "review"]);
    assert_eq!(edited["stage"].as_str(), Some("review"), "{edited}");
    let shown = env.json(&["lessons", "show", &added["id"].to_string()]);
    assert_eq!(shown["title"].as_str(), Some("Pin versions"), "{shown}");
    let refused = env.run(&["lessons", "add", "--title", "t", "--body", "b", "--repo", "elsewhere"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("elsewhere"), "the error names the repository");
    let missing = env.run(&["lessons", "show", "999"]);
    assert!(!missing.status.success());
    assert_eq!(lessons(&addr).len(), 3, "the refusals stored nothing");
}

// `[features] lessons = false`: the API answers `{"enabled": false}` for reads and writes, the
// rejected review records nothing, and the prompts carry no lessons section.
#[test]
fn the_kill_switch_disables_the_journal_and_writes_nothing() {
    let env = env("[features]\nlessons = false\n");
    let (_server, addr) = start(&env);
    let first = env.add_task("Flaky module");
    finish(&env, &first);
    for (method, path, body) in [
        ("GET", "/api/lessons", ""),
        ("POST", "/api/lessons", r#"{"title":"t","body":"b"}"#),
        ("POST", "/api/lessons/1", r#"{"body":"b"}"#),
    ] {
        let (status, reply) = http(&addr, method, path, body);
        assert_eq!((status, reply), (200, serde_json::json!({ "enabled": false })), "{method} {path}");
    }
    assert_eq!(env.json(&["lessons", "list"]), serde_json::json!({ "enabled": false }));
    let (_, queue) = http(&addr, "GET", "/api/queue", "");
    assert_eq!(queue["lessons"], serde_json::json!({ "enabled": false }), "{queue}");
    assert_eq!(rows(&env, "SELECT COUNT(*) FROM lessons"), "0");
    let seen = prompts(&env, &first, "development");
    assert!(!seen.is_empty() && seen.iter().all(|p| !p.contains("Lessons from earlier runs")), "{seen:#?}");
}

// Fault injection: with the journal's table gone, every write to it fails; the rejected review
// still rolls the task back and the task still lands.
#[test]
fn a_failing_journal_write_never_fails_the_advance() {
    let env = env("");
    let (_server, addr) = start(&env);
    // The store is migrated once serve answers: take the journal's table away under it.
    assert_eq!(http(&addr, "GET", "/api/lessons", "").0, 200);
    assert_eq!(rows(&env, "SELECT COUNT(*) FROM lessons"), "0");
    rows(&env, "DROP TABLE lessons");
    let first = env.add_task("Flaky module");
    finish(&env, &first);
    let tasks = env.tasks();
    let task = tasks.iter().find(|t| t["work_item_id"] == first.as_str()).unwrap();
    assert_eq!(task["state"]["rollbacks"], 1, "the rejection rolled the task back: {task:#}");
    let log = std::fs::read_to_string(env.root.join("serve-1.log")).unwrap();
    assert!(log.contains("the lessons journal failed"), "the failed write is a warning in the log");
}
