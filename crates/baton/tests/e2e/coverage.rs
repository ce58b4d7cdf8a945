//! The coverage and security gates (SPEC §5, §5.1) on the merge gate's re-tested tree: real git
//! repositories, the real binary, script agents. The repository's coverage command prints the
//! figure the test writes into `<root>/cov.txt`; its security command fails while `<root>/vuln`
//! exists.

use crate::support::{ConfigExtra, Env, Server, all_done, stage};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const REPO_KEYS: &str = "coverage = [\"sh\", \"-c\", \"cat {root}/cov.txt\"]\n\
    security = [\"sh\", \"-c\", \"if [ -f {root}/vuln ]; then echo 'RUSTSEC-2099-0001: crate leaky 1.0 is vulnerable'; echo 'Upgrade to >= 1.1'; exit 1; fi\"]\n";

fn env_with(sections: &str) -> Env {
    Env::with_extra("", &ConfigExtra { repo: REPO_KEYS, sections, ..ConfigExtra::default() })
}

fn timeline(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["task", "show", id])["timeline"].as_array().unwrap().clone()
}

fn timeline_text(env: &Env, id: &str) -> String {
    timeline(env, id).iter().map(|e| format!("{} {}\n", e["kind"], e["message"].as_str().unwrap_or(""))).collect()
}

fn baselines(env: &Env) -> Vec<Value> {
    env.json(&["coverage", "show"])["baselines"].as_array().unwrap().clone()
}

/// Drives one task (approving, confirming) until `done` holds for its timeline text.
fn drive_until(env: &Env, id: &str, timeout: Duration, done: impl Fn(&str, &[Value]) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = env.tasks();
        let text = timeline_text(env, id);
        if done(&text, &tasks) {
            return text;
        }
        env.play_human(&tasks);
        assert!(Instant::now() < deadline, "timed out; timeline of {id}:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

fn token(env: &Env, name: &str, scope: &str) -> String {
    env.json(&["token", "create", name, "--scope", scope])["token"].as_str().unwrap().to_string()
}

fn start(env: &Env) -> (Server, String) {
    let server = env.serve(1);
    let addr = crate::support::served_address(&env.root.join("serve-1.log"));
    (server, addr)
}

// A first merge records the baseline (bootstrap), a higher one ratchets it up (store and API), a
// lower one rolls back naming both figures; the override needs an admin token, a read one is refused.
#[test]
fn coverage_below_baseline_rolls_back_and_above_it_ratchets() {
    let env = env_with("");
    std::fs::write(env.root.join("cov.txt"), "80\n").unwrap();
    let (_server, addr) = start(&env);
    let first = env.add_task("First");
    let text = drive_until(&env, &first, Duration::from_secs(120), |_, tasks| all_done(tasks));
    assert!(text.contains("no baseline yet"), "{text}");
    let b = baselines(&env);
    assert_eq!((b[0]["repo"].as_str(), b[0]["pct"].as_f64()), (Some("demo"), Some(80.0)), "{b:?}");

    std::fs::write(env.root.join("cov.txt"), "85.5\n").unwrap();
    let second = env.add_task("Second");
    drive_until(&env, &second, Duration::from_secs(120), |_, tasks| all_done(tasks));
    let (status, listed) = http(&addr, "GET", "/api/coverage", None, "");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["baselines"][0]["pct"].as_f64(), Some(85.5), "{listed}");
    assert_eq!(listed["baselines"][0]["set_by"].as_str().map(|s| s.starts_with("task:")), Some(true), "{listed}");

    std::fs::write(env.root.join("cov.txt"), "70\n").unwrap();
    let third = env.add_task("Third");
    let text = drive_until(&env, &third, Duration::from_secs(120), |text, _| {
        text.contains("line coverage 70.00% is below the baseline 85.50%")
    });
    assert!(text.contains("rollback") || text.contains("development"), "{text}");
    let tasks = env.tasks();
    let t = tasks.iter().find(|t| t["work_item_id"] == third.as_str()).unwrap();
    assert_ne!(stage(t), "done");
    assert_eq!(baselines(&env)[0]["pct"].as_f64(), Some(85.5), "never down");

    // The override: a read token is refused, an admin token sets it (down, here) with its reason.
    let reader = token(&env, "reader", "read");
    let admin = token(&env, "boss", "admin");
    let body = r#"{"repo": "demo", "pct": 60, "reason": "legacy module dropped"}"#;
    let (status, refused) = http(&addr, "POST", "/api/coverage/baseline", Some(&reader), body);
    assert_eq!(status, 403, "{refused}");
    let (status, bad) =
        http(&addr, "POST", "/api/coverage/baseline", Some(&admin), r#"{"repo": "nope", "pct": 60, "reason": "x"}"#);
    assert_eq!(status, 422, "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("no repository named `nope`"), "{bad}");
    let (status, set) = http(&addr, "POST", "/api/coverage/baseline", Some(&admin), body);
    assert_eq!(status, 200, "{set}");
    assert_eq!((set["pct"].as_f64(), set["set_by"].as_str()), (Some(60.0), Some("api:boss")), "{set}");
    assert_eq!(baselines(&env)[0]["reason"].as_str(), Some("legacy module dropped"));
    // With the baseline lowered, the third task's next round lands.
    drive_until(&env, &third, Duration::from_secs(180), |_, tasks| all_done(tasks));
    assert_eq!(baselines(&env)[0]["pct"].as_f64(), Some(70.0), "ratcheted from the override");
}

// A security finding rolls the change back with the tool's findings in the reason; a coverage
// command that prints no figure passes with a warning (fail-open by default).
#[test]
fn security_finding_rolls_back_with_its_summary_and_coverage_tool_failure_fails_open() {
    let env = env_with("");
    std::fs::write(env.root.join("cov.txt"), "no tests were collected\n").unwrap();
    std::fs::write(env.root.join("vuln"), "").unwrap();
    let _server = env.serve(1);
    let id = env.add_task("Leaky");
    let text = drive_until(&env, &id, Duration::from_secs(120), |text, _| text.contains("RUSTSEC-2099-0001"));
    assert!(text.contains("security: `sh -c") && text.contains("Upgrade to >= 1.1"), "{text}");
    assert!(text.contains("gave no figure") && text.contains("coverage_fail_open is on"), "{text}");
    std::fs::remove_file(env.root.join("vuln")).unwrap();
    drive_until(&env, &id, Duration::from_secs(180), |_, tasks| all_done(tasks));
    assert!(baselines(&env).is_empty(), "no figure, no baseline");
    let report = walk_find(&env.root.join("data"), "coverage.md").expect("a coverage report in the run dir");
    let report = std::fs::read_to_string(report).unwrap();
    assert!(report.starts_with("---\ncoverage_status: skipped\n"), "{report}");
}

// `[features] coverage = false` and `security = false`: neither gate runs, the change lands as before.
#[test]
fn kill_switches_off_run_no_coverage_or_security_gate() {
    let env = env_with("[features]\ncoverage = false\nsecurity = false\n");
    std::fs::write(env.root.join("cov.txt"), "1\n").unwrap();
    std::fs::write(env.root.join("vuln"), "").unwrap();
    let _server = env.serve(1);
    let id = env.add_task("Switched off");
    let text = drive_until(&env, &id, Duration::from_secs(120), |_, tasks| all_done(tasks));
    assert!(
        text.contains("coverage skipped: switched off") && text.contains("security skipped: switched off"),
        "{text}"
    );
    assert!(!text.contains("RUSTSEC"), "{text}");
    assert!(baselines(&env).is_empty());
}

fn walk_find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = walk_find(&path, name) {
                return Some(found);
            }
        } else if path.file_name().and_then(|n| n.to_str()) == Some(name) {
            return Some(path);
        }
    }
    None
}
