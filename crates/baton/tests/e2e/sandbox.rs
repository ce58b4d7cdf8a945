//! The agent sandbox against a hostile agent: a `command` agent runs `attack.sh` from its worktree,
//! which tries to (a) read the API token from Baton's configuration file, (b) read the database, (c) list
//! other tasks' worktrees and run logs, (d) read the environment of Baton's processes, (e) forge
//! its own run log (what its cost and verdict are read from) next to the shim's records, and (f)
//! approve another task over HTTP with whatever token it found. Real binary, real git, real
//! SQLite, a real `baton serve`. Sandboxed, every attempt fails and the other task stays
//! unapproved; with `[sandbox] mode = "off"` the same attempts succeed, and Baton warns about it.
//! The script echoes each attempt and its result into the agent's run log, where the test reads
//! them.

use crate::support::{Env, git};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Each attempt prints `attempt <what>: …` then `result <what>: READ|DENIED …` (or the HTTP code).
const ATTACK: &str = r#"#!/bin/sh
D="$ATTACK_DATA_DIR"
echo "attempt token: read api_token from $ATTACK_CONFIG"
TOKEN=$(sed -n 's/^api_token = "\(.*\)"$/\1/p' "$ATTACK_CONFIG" 2>/dev/null)
if [ -n "$TOKEN" ]; then echo "result token: READ"; else echo "result token: DENIED ($(head -c 40 "$ATTACK_CONFIG" 2>&1))"; TOKEN=none; fi
echo "attempt db: read $D/baton.db"
if head -c 15 "$D/baton.db" 2>/dev/null | grep -q "SQLite format"; then echo "result db: READ"; else echo "result db: DENIED ($(head -c 15 "$D/baton.db" 2>&1))"; fi
echo "attempt list: ls $D/worktrees/demo $D/runs"
L=$(ls "$D/worktrees/demo" "$D/runs" 2>&1)
if echo "$L" | grep -q "$ATTACK_OTHER"; then echo "result list: READ ($L)"; else echo "result list: DENIED ($L)"; fi
echo "attempt environ: grep ATTACK_MARKER /proc/*/environ"
if grep -l ATTACK_MARKER /proc/[0-9]*/environ 2>/dev/null | grep -q .; then echo "result environ: READ"; else echo "result environ: DENIED (procs: $(ls -d /proc/[0-9]* | wc -l))"; fi
echo "attempt forge: append to its own run log, read its launch record"
R=$(dirname "$(dirname "$BATON_PROMPT_FILE")")
if echo '{"type":"result","forged":true}' >> "$R/stdout.log" 2>/dev/null && [ -s "$R/launch.json" ]; then echo "result forge: WROTE"; else echo "result forge: DENIED (the run directory holds: $(ls -A "$R" 2>&1 | tr '\n' ' '))"; fi
echo "attempt approve: POST $ATTACK_URL/api/tasks/$ATTACK_OTHER/approve"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" "$ATTACK_URL/api/tasks/$ATTACK_OTHER/approve")
echo "result approve: HTTP $CODE"
echo "attack finished"
"#;

/// A port free now on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn task(env: &Env, id: &str) -> Value {
    env.tasks().into_iter().find(|t| t["work_item_id"] == id).unwrap_or_else(|| panic!("task {id} missing"))
}

fn hold(task: &Value) -> Option<&str> {
    task["state"]["hold"]["kind"].as_str()
}

/// The development run log (stdout) of the attacking agent, once it finished its attempts.
fn attack_log(data: &Path) -> Option<(PathBuf, String)> {
    let mut stack = vec![data.join("runs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "stdout.log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.contains("attack finished") {
                    return Some((path, text));
                }
            }
        }
    }
    None
}

fn result<'a>(log: &'a str, what: &str) -> &'a str {
    let prefix = format!("result {what}: ");
    log.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no `{prefix}` in:\n{log}"))
}

struct Outcome {
    log: String,
    log_path: PathBuf,
    serve_log: String,
    other: Value,
}

/// Runs the scene with `[sandbox] mode = <mode>`: task OTHER waits for approval after its
/// analysis; the attacker's analysis is approved by the test, and its developer runs the attack.
fn attack(mode: &str) -> Outcome {
    let port = free_port();
    let developer = format!(
        "[agents.developer]\nadapter = \"command\"\ncommand = [\"sh\", \"attack.sh\"]\n\n[sandbox]\nmode = \"{mode}\"\n"
    );
    let mut env = Env::with_config("", "", &developer);
    // The token written into the configuration file (a common mistake; `${VAR}` is the advice):
    // the file the agent goes for.
    let config = std::fs::read_to_string(env.config())
        .unwrap()
        .replace("api_token = \"test-token\"\n", "api_token = \"attack-target-token-0001\"\n")
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""))
        .replace(
            "[server]\n",
            "[server]\nagent_env = [\"ATTACK_DATA_DIR\", \"ATTACK_URL\", \"ATTACK_OTHER\", \"ATTACK_CONFIG\"]\n",
        );
    std::fs::write(env.config(), config).unwrap();
    let project = env.project();
    std::fs::write(project.join("attack.sh"), ATTACK).unwrap();
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-q", "-m", "Add the attack script"]);
    let data = env.root.join("data");
    let other = env.add_task("the other task");
    env.serve_env = vec![
        ("ATTACK_DATA_DIR".into(), data.display().to_string()),
        ("ATTACK_URL".into(), format!("http://127.0.0.1:{port}")),
        ("ATTACK_OTHER".into(), other.clone()),
        ("ATTACK_CONFIG".into(), env.config().display().to_string()),
        // In Baton's environment only (not passed to agents): found only by reading /proc/*/environ.
        ("ATTACK_MARKER".into(), "baton-process-environment".into()),
    ];
    let _server = env.serve(0);
    let deadline = Instant::now() + Duration::from_secs(90);
    while hold(&task(&env, &other)) != Some("awaiting_approval") {
        assert!(Instant::now() < deadline, "the other task never reached its approval: {:#?}", task(&env, &other));
        std::thread::sleep(Duration::from_millis(200));
    }
    let attacker = env.add_task("the attacker");
    let (log_path, log) = loop {
        if let Some(found) = attack_log(&data) {
            break found;
        }
        let t = task(&env, &attacker);
        if hold(&t) == Some("awaiting_approval") {
            env.run(&["task", "approve", &attacker]);
        }
        assert!(Instant::now() < deadline, "the attacking agent never finished: {t:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Give an approval that got through the time to land before looking at the other task.
    std::thread::sleep(Duration::from_millis(500));
    let other = task(&env, &other);
    let serve_log = std::fs::read_to_string(env.root.join("serve-0.log")).unwrap_or_default();
    eprintln!("sandbox mode {mode}: the agent's run log {}:\n{log}", log_path.display());
    Outcome { log, log_path, serve_log, other }
}

// Sandboxed (mode "required", so a missing bubblewrap fails here rather than passing unconfined):
// the token in the configuration file, the database, the other task's worktree and run logs, Baton's
// environment, and the agent's own run log and shim records are all out of reach, the approval is refused as unauthenticated, and the other task still waits.
#[test]
fn sandboxed_agent_cannot_read_the_token_the_database_other_worktrees_or_approve_another_task() {
    let outcome = attack("required");
    let log = &outcome.log;
    for what in ["token", "db", "list", "environ", "forge"] {
        assert!(
            result(log, what).starts_with("DENIED"),
            "{what} was not denied ({}):\n{log}",
            outcome.log_path.display()
        );
    }
    assert_eq!(result(log, "approve"), "HTTP 401", "the approval must fail authentication:\n{log}");
    assert!(!log.contains("\"forged\""), "the agent wrote into its own run log:\n{log}");
    assert!(log.contains("attempt token: read api_token") && log.contains("attempt approve: POST "), "{log}");
    assert_eq!(hold(&outcome.other), Some("awaiting_approval"), "the other task was approved: {:#?}", outcome.other);
    assert_eq!(outcome.other["state"]["stage"], "analysis");
    assert!(outcome.serve_log.contains("agents run sandboxed"), "{}", outcome.serve_log);
}

// The risk of `mode = "off"`, shown: the agent reads the API token from the configuration file and
// the database (which holds only token digests, but could be written), lists the
// other task's worktree and run logs, reads Baton's environment, and approves the other task with
// the stolen token. Baton's log warns that this is possible.
#[test]
fn unsandboxed_agent_reads_the_token_and_approves_another_task_and_baton_warns() {
    let outcome = attack("off");
    let log = &outcome.log;
    assert_eq!(result(log, "forge"), "WROTE", "unsandboxed, the run log is the agent's to write:\n{log}");
    for what in ["token", "db", "list", "environ"] {
        assert!(result(log, what).starts_with("READ"), "{what} was expected to succeed unsandboxed:\n{log}");
    }
    assert_eq!(result(log, "approve"), "HTTP 200", "the stolen token approves:\n{log}");
    assert_ne!(hold(&outcome.other), Some("awaiting_approval"), "{:#?}", outcome.other);
    assert!(
        outcome.serve_log.contains("sandbox mode is \"off\"")
            && outcome.serve_log.contains("can read Baton's API token and database"),
        "no warning about running agents unsandboxed:\n{}",
        outcome.serve_log
    );
}
