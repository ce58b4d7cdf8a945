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
