//! `baton task stop` during a running agent (SPEC §12 basics; the full semantics come later).

use crate::support::{Env, pid_alive, stage};
use std::path::Path;
use std::time::{Duration, Instant};

const SLEEPY: &str = r#"
[[task]]
match = "sleepy"
[[task.step]]
stage = "analysis"
actions = [{ sleep_ms = 120000 }]
"#;

// STOP from the CLI while the agent sleeps: the agent's process group dies at once, the job is
// cancelled, the task is cancelled, its worktree and branch are gone, and main is untouched.
#[test]
fn stop_kills_the_running_agent_and_cancels_the_task() {
    let env = Env::new(SLEEPY, "");
    let id = env.add_task("sleepy task");
    let _server = env.serve(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        let status = env.json(&["status"]);
        if let Some(pid) = status["running_jobs"].as_array().unwrap().iter().find_map(|j| j["pid"].as_u64()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the agent never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(pid_alive(pid));
    let started = Instant::now();
    let out = env.run(&["task", "stop", &id]);
    assert!(out.status.success(), "stop: {}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "agent {pid} survived STOP");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("agent gone {} ms after STOP", started.elapsed().as_millis());
    let detail = env.json(&["task", "show", &id]);
    assert_eq!(stage(&detail["task"]), "cancelled");
    assert!(detail["jobs"].as_array().unwrap().iter().all(|j| j["status"] == "cancelled"), "{detail:#}");
    let branch = detail["task"]["branch"].as_str().unwrap();
    assert!(!env.root.join("data/worktrees/demo").join(&id).exists(), "worktree left behind");
    let branches = crate::support::git(&env.project(), &["branch", "--list", branch]);
    assert!(branches.is_empty(), "task branch {branch} left behind");
    assert_eq!(crate::support::main_commits(&env.project()).len(), 1);
    // A second STOP changes nothing and says so (exit 4).
    let again = env.run(&["task", "stop", &id]);
    assert_eq!(again.status.code(), Some(4));
    assert!(Path::new(&env.project()).join(".git").exists());
}

fn wait_until(env: &Env, id: &str, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let detail = env.json(&["task", "show", id]);
        if done(&detail) {
            return detail;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {detail:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn approve_until(env: &Env, id: &str, hold: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let detail = env.json(&["task", "show", id]);
        let current = detail["task"]["state"]["hold"]["kind"].as_str().unwrap_or("").to_string();
        if current == hold {
            return;
        }
        if current == "awaiting_approval" {
            env.run(&["task", "approve", id]);
        }
        assert!(Instant::now() < deadline, "never reached {hold}: {detail:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// STOP while the task waits at Confirm Deploy (idle parking, SPEC §12, ORCH-090): the wait holds
// no merge lease (SPEC §6.3), and the STOP cancels at once, main untouched.
#[test]
fn stop_while_awaiting_confirm_cancels_at_once_holding_no_lease() {
    let env = Env::new("", "");
    let id = env.add_task("parked change");
    let _server = env.serve(0);
    approve_until(&env, &id, "awaiting_confirm");
    let status = env.json(&["status"]);
    assert!(status["leases"].as_array().unwrap().is_empty(), "a human's wait holds no lease: {status:#}");
    let out = env.run(&["task", "stop", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let detail = env.json(&["task", "show", &id]);
    assert_eq!(stage(&detail["task"]), "cancelled", "idle parking must cancel at once");
    assert!(env.json(&["status"])["leases"].as_array().unwrap().is_empty(), "lease not released");
    assert_eq!(crate::support::main_commits(&env.project()).len(), 1);
}

// STOP while the deploy step runs (merge done, deploy command running): deferred, one notice; a
// repeated STOP changes nothing; when the step ends the change is on main and deployed, so the
// task ends `done` (its health gate decided) with the STOP recorded as arriving too late — never
// `cancelled` about shipped code (SPEC §12); the lease is released.
#[test]
fn stop_during_a_running_deploy_is_deferred_and_arrives_too_late_for_shipped_code() {
    let env = Env::new("", "");
    let config = std::fs::read_to_string(env.config()).unwrap().replace(
        "test = [\"python3\", \"-m\", \"unittest\", \"-q\"]\n",
        "test = [\"python3\", \"-m\", \"unittest\", \"-q\"]\ndeploy = [\"sh\", \"-c\", \"sleep 3\"]\n",
    );
    std::fs::write(env.config(), config).unwrap();
    let id = env.add_task("deploying change");
    let _server = env.serve(0);
    approve_until(&env, &id, "awaiting_confirm");
    assert!(env.run(&["task", "confirm-deploy", &id]).status.success());
    let deploying = |d: &serde_json::Value| {
        d["jobs"].as_array().unwrap().iter().any(|j| j["stage"] == "deploy" && j["status"] == "running")
    };
    wait_until(&env, &id, "the deploy job to run", deploying);
    std::thread::sleep(Duration::from_millis(500));
    let first = env.run(&["task", "stop", &id]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("deferred"), "{}", String::from_utf8_lossy(&first.stdout));
    let detail = env.json(&["task", "show", &id]);
    assert_eq!(stage(&detail["task"]), "deploy", "the running deploy must not be interrupted");
    let again = env.run(&["task", "stop", &id]);
    assert_eq!(again.status.code(), Some(4), "a repeated STOP changes nothing");
    let done = wait_until(&env, &id, "the deploy step to end", |d| stage(&d["task"]) != "deploy");
    assert_eq!(stage(&done["task"]), "done", "shipped code must not be called cancelled: {done:#}");
    let messages: Vec<&str> =
        done["timeline"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages.iter().filter(|m| m.contains("deferred")).count(), 1, "one notice for the deferred STOP");
    assert!(
        messages.iter().any(|m| m.contains("stop requested by") && m.contains("arrived too late")),
        "the timeline says the STOP came too late: {messages:#?}"
    );
    assert!(env.json(&["status"])["leases"].as_array().unwrap().is_empty(), "lease not released");
    // The merge that had begun was completed honestly, and the deploy ran once.
    assert_eq!(crate::support::main_commits(&env.project()).len(), 2);
}

/// An analyst that exits 0 when it gets SIGTERM, as gemini does.
/// Unsandboxed, so the exit code recorded is the agent's own (inside bubblewrap it is bwrap's).
const EXITS_ZERO_ON_TERM: &str = "[agents.analyst]\nadapter = \"command\"\n\
    command = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 120 & wait\"]\nmodel = \"claude-sonnet-4-5\"\n\
    sandbox_mode = \"off\"\n";

// Regression (issue 8): an agent stopped by `baton task stop` that exits 0 on SIGTERM was
// recorded `succeeded`. A run Baton stopped is `stopped`, whatever its exit code.
#[test]
fn a_stopped_agent_that_exits_zero_on_sigterm_is_recorded_stopped() {
    let env = Env::with_config("", "", EXITS_ZERO_ON_TERM);
    let id = env.add_task("stoppable task");
    let _server = env.serve(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        let status = env.json(&["status"]);
        if let Some(pid) = status["running_jobs"].as_array().unwrap().iter().find_map(|j| j["pid"].as_u64()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the agent never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Let the shell install its trap before the STOP arrives.
    std::thread::sleep(Duration::from_millis(500));
    let out = env.run(&["task", "stop", &id]);
    assert!(out.status.success(), "stop: {}", String::from_utf8_lossy(&out.stderr));
    let detail = wait_until(&env, &id, "the agent run to be closed", |d| {
        d["agent_runs"].as_array().unwrap().iter().all(|r| !r["ended_at_ms"].is_null())
    });
    assert!(!pid_alive(pid), "agent {pid} survived STOP");
    let runs = detail["agent_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!(run["exit_code"], 0, "the agent exits 0 on SIGTERM: {run:#}");
    assert_eq!(run["status"], "stopped", "{run:#}");
    assert_eq!(stage(&detail["task"]), "cancelled");
}
