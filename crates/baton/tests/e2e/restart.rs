//! Restart smoke test: `kill -9` of `baton serve` mid-run, restart, every task still reaches its end.

use crate::support::{Env, all_done, assert_each_main_commit_passes_tests, main_commits, pid_alive};
use std::time::{Duration, Instant};

const SLOW_STEPS: &str = r#"
[[task]]
match = "slow"
[[task.step]]
stage = "architecture"
actions = [
  { sleep_ms = 5000 },
  { write = { path = "docs/baton/{work_item}/02-architecture.md", content = "Design.\n" } },
]
[[task.step]]
stage = "development"
actions = [
  { sleep_ms = 5000 },
  { write = { path = "mathkit/m_{work_item_snake}.py", content = "def value():\n    return 1\n" } },
  { write = { path = "tests/test_{work_item_snake}.py", content = "import unittest\nimport importlib\n\n\nclass T(unittest.TestCase):\n    def test_value(self):\n        self.assertEqual(importlib.import_module('mathkit.m_{work_item_snake}').value(), 1)\n" } },
]
"#;

// Three tasks run while `baton serve` is SIGKILLed twice mid-run (with agents running); after each
// restart the surviving agent is re-adopted (no second agent for its job, its result used), every
// task reaches done, and main holds the three merged commits, each passing the tests.
#[test]
fn kill9_mid_run_then_restart_every_task_reaches_done() {
    let env = Env::new(SLOW_STEPS, "");
    for n in 1..=3 {
        env.add_task(&format!("slow task {n}"));
    }
    let mut killed_agents: Vec<u64> = Vec::new();
    for round in 0..2 {
        let mut server = env.serve(round);
        // Wait until an agent is running, then kill the server without warning.
        let deadline = Instant::now() + Duration::from_secs(60);
        let agent_pid = loop {
            env.play_human(&env.tasks());
            let status = env.json(&["status"]);
            // Only an agent this server started (the job's owner is the instance, the same across
            // restarts): not the previous round's, and one started less than 2 s ago, so its 5 s
            // step is sure to outlive the kill (an agent re-adopted from the previous round may be
            // about to end).
            let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
            let fresh = |j: &serde_json::Value| j["started_at_ms"].as_i64().is_some_and(|t| now_ms - t < 2_000);
            let slow = |j: &&serde_json::Value| {
                !killed_agents.contains(&j["pid"].as_u64().unwrap_or(0))
                    && (j["stage"] == "architecture" || j["stage"] == "development")
                    && fresh(j)
            };
            if let Some(pid) =
                status["running_jobs"].as_array().unwrap().iter().filter(slow).find_map(|j| j["pid"].as_u64())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "no agent started");
            std::thread::sleep(Duration::from_millis(100));
        };
        server.kill9();
        killed_agents.push(agent_pid);
        let log = std::fs::read_to_string(env.root.join(format!("serve-{round}.log"))).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{agent_pid}/stat")).unwrap_or_default();
        assert!(pid_alive(agent_pid), "the agent should outlive the killed server: {stat}\n{log}");
        if round == 0 {
            // The kill may land after the job row took the pid but before the run record did: the
            // first round leaves exactly that, and the restarted Baton must still name the process.
            forget_run_pid(&env.root.join("data").join("baton.db"), agent_pid);
        }
        // The next server re-adopts the surviving agent: it waits for it and uses its result,
        // never starting a second agent for that job.
        let next = env.serve(10 + round);
        let deadline = Instant::now() + Duration::from_secs(60);
        let carries = |status: &serde_json::Value| {
            status["running_jobs"].as_array().unwrap().iter().any(|j| j["pid"].as_u64() == Some(agent_pid))
        };
        while pid_alive(agent_pid) || carries(&env.json(&["status"])) {
            assert!(Instant::now() < deadline, "the job of agent {agent_pid} never finished after the restart");
            std::thread::sleep(Duration::from_millis(100));
        }
        let runs_of_job: Vec<serde_json::Value> = env
            .tasks()
            .iter()
            .flat_map(|t| {
                env.json(&["task", "show", t["work_item_id"].as_str().unwrap()])["agent_runs"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .collect();
        let run = runs_of_job.iter().find(|r| r["pid"].as_u64() == Some(agent_pid)).expect("the agent's run record");
        let same_job = runs_of_job.iter().filter(|r| r["job_id"] == run["job_id"]).count();
        assert_eq!(same_job, 1, "a second agent ran for job {}", run["job_id"]);
        assert_eq!(run["status"], "succeeded", "the first agent's result was not used: {run:#}");
        drop(next);
    }
    let _server = env.serve(99);
    let tasks = env.drive(Duration::from_secs(180), all_done);
    assert_eq!(tasks.len(), 3);
    let status = env.json(&["status"]);
    assert!(status["leases"].as_array().unwrap().is_empty(), "leases left: {status}");
    assert_eq!(main_commits(&env.project()).len(), 4);
    assert_each_main_commit_passes_tests(&env.project());
}

/// Clears the pid of the agent run that recorded `pid` (the job row keeps it), in the real file.
fn forget_run_pid(database: &std::path::Path, pid: u64) {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", database.display());
        let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let cleared = sqlx::query("UPDATE agent_runs SET pid = NULL WHERE pid = ?")
            .bind(pid as i64)
            .execute(&mut connection)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(cleared, 1, "the run record of agent {pid}");
        connection.close().await.unwrap();
    });
}
