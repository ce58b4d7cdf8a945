//! The retro stage (SPEC §3, §10, §11) end to end: the real binary, a real SQLite file and script
//! agents. With `[retro] enabled` a shipped task passes through `retro` to done; the retro agent's
//! prompt carries the hand-off and the repository's lessons; its proposals are stored for a
//! person — a proposed lesson reaches no prompt until accepted, a proposed task becomes one task
//! when accepted — and an agent cannot decide. A retro that fails or writes nonsense still ends
//! the task in done; without `[retro]` (or with its switch off) the pipeline has no retro stage.

use crate::support::{Env, Server, all_done, served_address, stage};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const RETRO_JSON: &str = r#"{\"lessons\": [{\"title\": \"Cache the fixtures\", \"body\": \"The tests rebuilt them on every run.\"}], \"next_tasks\": [{\"title\": \"Speed up the test suite\", \"body\": \"It dominates every stage.\"}]}"#;

/// "Learn …" tasks get a retro with one lesson and one next task; "Garbled …" a retro whose JSON is
/// broken; "Crashing …" a retro agent that fails. Other tasks' retros write nothing.
fn script() -> String {
    format!(
        r##"
[[task]]
match = "learn"
[[task.step]]
stage = "retro"
actions = [{{ write = {{ path = "docs/baton/{{work_item}}/09-retro.md", content = "# Retro\n\nThe tests were slow.\n\n```json\n{RETRO_JSON}\n```\n" }} }}]

[[task]]
match = "garbled"
[[task.step]]
stage = "retro"
actions = [{{ write = {{ path = "docs/baton/{{work_item}}/09-retro.md", content = "# Retro\n\n```json\n{{\"lessons\": [\n```\n" }} }}]

[[task]]
match = "crashing"
[[task.step]]
stage = "retro"
actions = [{{ fail = "the retro agent crashed" }}]
"##
    )
}

fn start(env: &Env) -> (Server, String) {
    let server = env.serve(1);
    let addr = served_address(&env.root.join("serve-1.log"));
    (server, addr)
}

/// One HTTP/1.1 request with bearer `token`; the status and the JSON body.
fn http(addr: &str, token: &str, method: &str, path: &str) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
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

fn finish(env: &Env, ids: &[&str]) -> Vec<Value> {
    env.drive(Duration::from_secs(240), |tasks| {
        ids.iter().all(|id| tasks.iter().any(|t| t["work_item_id"] == *id)) && all_done(tasks)
    })
}

/// Every prompt written for `work_item`'s `stage`.
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
    let dir = format!("/{stage}-job");
    found
        .into_iter()
        .filter(|p| {
            let text = p.display().to_string();
            text.contains(work_item) && text.contains(&dir)
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn timeline(env: &Env, id: &str) -> Vec<String> {
    let shown = env.json(&["task", "show", id]);
    shown["timeline"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap_or("").to_string()).collect()
}

fn agent_lessons(env: &Env) -> Vec<Value> {
    let listed = env.json(&["lessons", "list"]);
    listed["lessons"].as_array().unwrap().iter().filter(|l| l["source"] == "agent").cloned().collect()
}

// A shipped task passes through its retro to done; the retro's prompt carries the hand-off and
// the repository's lessons; its lesson is stored `proposed` and stays out of prompts until a
// person accepts it; its next task becomes exactly one task when accepted; an agent (a command
// run inside an agent's run, or a token without `act`) cannot decide.
#[test]
fn a_retro_proposes_and_only_a_person_decides() {
    let env = Env::with_config(&script(), "", "[retro]\nenabled = true\n");
    let (_server, addr) = start(&env);
    let kept =
        env.json(&["lessons", "add", "--title", "Keep commits small", "--body", "one concern each", "--repo", "demo"]);
    assert_eq!(kept["status"], "active", "{kept}");

    let first = env.add_task("Learn from the math module");
    finish(&env, &[&first]);
    let seen = prompts(&env, &first, "retro");
    assert_eq!(seen.len(), 1, "one retro run");
    let prompt = &seen[0];
    assert!(prompt.contains(&format!("# Hand-off: {first}")), "the hand-off is in the prompt: {prompt}");
    assert!(prompt.contains("## Gates and their proof"), "{prompt}");
    assert!(prompt.contains("Commits on `main`:"), "the retro reads the merged change: {prompt}");
    assert!(prompt.contains(&format!("m_{}.py", first.to_lowercase().replace('-', "_"))), "{prompt}");
    assert!(prompt.contains("Keep commits small"), "the repository's lessons are in the prompt: {prompt}");
    assert!(prompt.contains("```json") && prompt.contains("next_tasks"), "the artifact's format is spelled out");
    let events = timeline(&env, &first);
    assert!(events.iter().any(|m| m.contains("deploy passed its gates; deploy → retro")), "{events:#?}");
    assert!(events.iter().any(|m| m.contains("retro passed its gates; retro → done")), "{events:#?}");

    let proposed = agent_lessons(&env);
    assert_eq!(proposed.len(), 1, "{proposed:#?}");
    assert_eq!(
        (proposed[0]["title"].as_str(), proposed[0]["status"].as_str(), proposed[0]["task"].as_str()),
        (Some("Cache the fixtures"), Some("proposed"), Some(first.as_str()))
    );
    let lesson = proposed[0]["id"].as_i64().unwrap();
    let (status, listed) = http(&addr, "test-token", "GET", "/api/proposals");
    assert_eq!(status, 200, "{listed}");
    let proposals = listed["proposals"].as_array().unwrap();
    assert_eq!(proposals.len(), 1, "{listed}");
    assert_eq!(
        (proposals[0]["title"].as_str(), proposals[0]["status"].as_str()),
        (Some("Speed up the test suite"), Some("proposed"))
    );
    let proposal = proposals[0]["id"].as_i64().unwrap();
    let handoff = std::fs::read_to_string(env.root.join("data").join("handoffs").join(format!("{first}.md"))).unwrap();
    assert!(handoff.contains("## Retro proposals"), "{handoff}");
    assert!(handoff.contains("Cache the fixtures") && handoff.contains("Speed up the test suite"), "{handoff}");

    // Not accepted yet: the next task's prompts do not carry the proposed lesson.
    let second = env.add_task("Plain module");
    finish(&env, &[&second]);
    let development = prompts(&env, &second, "development");
    assert!(!development.is_empty());
    assert!(development.iter().all(|p| !p.contains("Cache the fixtures")), "{development:#?}");
    assert!(development.iter().all(|p| p.contains("Keep commits small")), "active lessons still reach prompts");

    // An agent cannot decide: a command run inside an agent's run, a token without `act`.
    let inside = env
        .command()
        .env("BATON_ROLE", "retro")
        .env("BATON_WORK_ITEM", &first)
        .args(["lessons", "accept", &lesson.to_string()])
        .output()
        .unwrap();
    assert!(!inside.status.success());
    assert!(
        String::from_utf8_lossy(&inside.stderr).contains("is an agent"),
        "{}",
        String::from_utf8_lossy(&inside.stderr)
    );
    let inside =
        env.command().env("BATON_ROLE", "retro").args(["proposals", "accept", &proposal.to_string()]).output().unwrap();
    assert!(!inside.status.success(), "an agent's accept is refused");
    let reader =
        String::from_utf8_lossy(&env.run(&["token", "create", "reader", "--scope", "read"]).stdout).trim().to_string();
    assert!(reader.starts_with("baton_"), "{reader}");
    let (status, refused) = http(&addr, &reader, "POST", &format!("/api/proposals/{proposal}/accept"));
    assert_eq!(status, 403, "{refused}");
    let (status, refused) = http(&addr, &reader, "POST", &format!("/api/lessons/{lesson}/accept"));
    assert_eq!(status, 403, "{refused}");
    assert_eq!(agent_lessons(&env)[0]["status"], "proposed", "the refusals changed nothing");

    // A person accepts the lesson: the next task's prompts carry it.
    let accepted = env.json(&["lessons", "accept", &lesson.to_string()]);
    assert_eq!(accepted["status"], "active", "{accepted}");
    let again = env.run(&["lessons", "accept", &lesson.to_string()]);
    assert!(!again.status.success(), "accepting twice is an error");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not proposed"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let third = env.add_task("Another module");
    finish(&env, &[&third]);
    let development = prompts(&env, &third, "development");
    assert!(
        !development.is_empty() && development.iter().all(|p| p.contains("Cache the fixtures")),
        "{development:#?}"
    );

    // A person accepts the proposal over HTTP: exactly one task; a second accept is refused.
    let (status, made) = http(&addr, "test-token", "POST", &format!("/api/proposals/{proposal}/accept"));
    assert_eq!(status, 200, "{made}");
    assert_eq!(
        (made["proposal"]["status"].as_str(), made["proposal"]["decided_by"].as_str()),
        (Some("accepted"), Some("api:config"))
    );
    let created = made["task"]["work_item_id"].as_str().unwrap().to_string();
    assert_eq!(made["proposal"]["created_task"], made["task"]["id"], "{made}");
    let (status, twice) = http(&addr, "test-token", "POST", &format!("/api/proposals/{proposal}/accept"));
    assert_eq!(status, 409, "{twice}");
    assert!(twice["message"].as_str().unwrap().contains("already accepted"), "{twice}");
    let cli_twice = env.run(&["proposals", "accept", &proposal.to_string()]);
    assert!(!cli_twice.status.success());
    let tasks = env.tasks();
    let made: Vec<&Value> = tasks.iter().filter(|t| t["title"] == "Speed up the test suite").collect();
    assert_eq!(made.len(), 1, "one task for one proposal: {tasks:#?}");
    assert_eq!(made[0]["work_item_id"].as_str(), Some(created.as_str()));
    assert!(made[0]["body"].as_str().unwrap().contains("It dominates every stage."), "{:#}", made[0]);
    let listed = env.json(&["proposals", "list", "--status", "accepted"]);
    assert_eq!(listed["proposals"].as_array().unwrap().len(), 1, "{listed}");
}

// A retro whose agent fails, or whose artifact's JSON is broken, ends the task in done all the
// same: nothing is proposed, and the timeline says why.
#[test]
fn a_failing_or_garbled_retro_still_ends_the_task_done() {
    let env = Env::with_config(&script(), "", "[retro]\nenabled = true\n");
    let (_server, _addr) = start(&env);
    let garbled = env.add_task("Garbled notes");
    let crashing = env.add_task("Crashing notes");
    let tasks = finish(&env, &[&garbled, &crashing]);
    assert!(tasks.iter().all(|t| stage(t) == "done" && t["state"]["hold"]["kind"] == "none"), "{tasks:#?}");
    let events = timeline(&env, &garbled);
    assert!(events.iter().any(|m| m.contains("proposals not recorded") && m.contains("not JSON")), "{events:#?}");
    assert!(events.iter().any(|m| m.contains("retro passed its gates; retro → done")), "{events:#?}");
    let events = timeline(&env, &crashing);
    assert!(events.iter().any(|m| m.contains("retro failed:") && m.contains("the task is done anyway")), "{events:#?}");
    assert_eq!(prompts(&env, &crashing, "retro").len(), 1, "a failed retro is not retried");
    assert!(agent_lessons(&env).is_empty());
    assert_eq!(env.json(&["proposals", "list"])["proposals"], serde_json::json!([]));
}

// Without `[retro]`, or with its `retro` switch off, the pipeline is the old one: deploy ends
// the task, no retro runs and nothing is proposed.
#[test]
fn without_the_retro_the_pipeline_ends_at_deploy() {
    for sections in ["", "[retro]\nenabled = true\n\n[features]\nretro = false\n"] {
        let env = Env::with_config(&script(), "", sections);
        let (_server, _addr) = start(&env);
        let id = env.add_task("Learn nothing");
        finish(&env, &[&id]);
        let events = timeline(&env, &id);
        assert!(events.iter().any(|m| m.contains("deploy → done")), "{sections}: {events:#?}");
        assert!(events.iter().all(|m| !m.contains("retro")), "{sections}: {events:#?}");
        assert!(prompts(&env, &id, "retro").is_empty(), "{sections}");
        assert!(agent_lessons(&env).is_empty(), "{sections}");
    }
}
