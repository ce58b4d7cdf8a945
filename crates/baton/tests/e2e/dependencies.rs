//! Task dependencies and the serial gate (SPEC §6.4) end to end with `baton serve`, real git and
//! the real CLI: a serial repository runs its tasks one after another in id order, each branched
//! from the main its predecessor merged; a dependency cycle is refused at declaration, and one
//! that slipped past (written straight to the store, as two racing declarations could) blocks
//! every task on it with an alert; with the switches off, tasks run as if neither existed.

use crate::support::{ConfigExtra, Env, git, main_commits, stage};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The common steps, with an analysis that records the commit its branch started from in
/// `docs/baton/<work item>/base.txt` (committed with the task, so main keeps it).
const RECORD_BASE: &str = r##"
[[task]]
match = "*"
[[task.step]]
stage = "analysis"
actions = [
  { run = ["sh", "-c", "mkdir -p docs/baton/{work_item} && git rev-parse HEAD > docs/baton/{work_item}/base.txt"] },
  { write = { path = "docs/baton/{work_item}/01-analysis.md", content = "# {title}\n\nAnalysis.\n" } },
]
[[task.step]]
stage = "architecture"
actions = [{ write = { path = "docs/baton/{work_item}/02-architecture.md", content = "Design.\n" } }]
[[task.step]]
stage = "development"
actions = [
  { write = { path = "mathkit/m_{work_item_snake}.py", content = "def value():\n    return 1\n" } },
  { write = { path = "tests/test_{work_item_snake}.py", content = "import unittest\nimport importlib\n\n\nclass T(unittest.TestCase):\n    def test_value(self):\n        self.assertEqual(importlib.import_module('mathkit.m_{work_item_snake}').value(), 1)\n" } },
]
[[task.step]]
stage = "review"
actions = [{ write = { path = "docs/baton/{work_item}/04-review.md", content = "---\nverdict: approve\n---\nOK\n" } }]
[[task.step]]
stage = "testing"
actions = [{ write = { path = "docs/baton/{work_item}/05-test-report.md", content = "---\nverdict: pass\n---\nOK\n" } }]
"##;

fn hold(task: &Value) -> &str {
    task["state"]["hold"]["kind"].as_str().unwrap_or("")
}

fn find<'t>(tasks: &'t [Value], id: &str) -> &'t Value {
    tasks.iter().find(|t| t["work_item_id"] == id).unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The jobs `baton task show` lists for a task.
fn jobs(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["task", "show", id])["jobs"].as_array().unwrap().clone()
}

// Five tasks filed at once in a serial repository land one by one in id order, and each one's
// branch starts from exactly the main commit that landed the task before it (the branch is cut
// when the task is admitted, not when it is filed).
#[test]
fn serial_repo_runs_five_tasks_fifo_each_from_the_previous_merged_main() {
    let env = Env::with_extra(RECORD_BASE, &ConfigExtra { repo: "serial = true", ..ConfigExtra::default() });
    let initial = git(&env.project(), &["rev-parse", "main"]);
    let ids: Vec<String> = (1..=5).map(|n| env.add_task(&format!("Serial {n}"))).collect();
    let _server = env.serve(1);
    // While the first runs, the others are held at the gate: `baton status` says behind whom.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = env.run(&["status"]);
        let text = String::from_utf8_lossy(&status.stdout).to_string();
        if text.contains(&format!("waiting {} analysis (demo): serial gate, behind {}", ids[1], ids[0])) {
            break;
        }
        assert!(Instant::now() < deadline, "the serial gate never showed in `baton status`:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    env.drive(Duration::from_secs(400), |tasks| tasks.iter().all(|t| stage(t) == "done"));

    // Main: the initial commit, then one commit per task, in id order.
    let commits = main_commits(&env.project());
    assert_eq!(commits.len(), 6, "one commit per task on main: {commits:#?}");
    assert_eq!(commits[0].0, initial);
    for (n, id) in ids.iter().enumerate() {
        let landed = &commits[n + 1].0;
        let base_file = format!("{landed}:docs/baton/{id}/base.txt");
        let base = git(&env.project(), &["show", &base_file]);
        assert_eq!(base, commits[n].0, "{id} was branched from the main that landed the task before it");
        if n > 0 {
            let before = format!("{}:docs/baton/{id}", commits[n].0);
            let out = std::process::Command::new("git")
                .args(["cat-file", "-e", &before])
                .current_dir(env.project())
                .output()
                .unwrap();
            assert!(!out.status.success(), "{id} landed after {}, not with it", ids[n - 1]);
        }
    }
    // No task's analysis started before the task ahead of it ended.
    for pair in ids.windows(2) {
        let ahead_end = jobs(&env, &pair[0]).iter().filter_map(|j| j["finished_at_ms"].as_i64()).max().unwrap();
        let first_start = jobs(&env, &pair[1]).iter().filter_map(|j| j["started_at_ms"].as_i64()).min().unwrap();
        assert!(first_start >= ahead_end, "{} started before {} ended", pair[1], pair[0]);
    }
}

// A dependency that would close a cycle is refused naming it; one that slipped past the check
// (two declarations racing) is found by the reconciler's backstop, which blocks both tasks with an
// alert before either runs a job. Withdrawing it and retrying lets the tasks go on.
#[test]
fn dependency_cycle_is_refused_and_the_backstop_blocks_both_with_an_alert() {
    let env = Env::with_config("", "reconciler_interval_secs = 1", "");
    let a = env.add_task("First");
    let b = env.add_task("Second");
    let c = env.add_task("Third");
    let out = env.run(&["task", "depend", &b, "--on", &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["task", "depend", &c, "--on", &b]);
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = env.run(&["task", "depend", &a, "--on", &c]);
    assert_eq!(refused.status.code(), Some(1));
    let cycle = format!("{a} → {c} → {b} → {a}");
    assert!(stderr(&refused).contains(&cycle), "the refusal names the cycle {cycle}: {}", stderr(&refused));
    // The race the check cannot see: the closing edge written straight to the store.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use baton_store::Store;
        let store = baton_store_sqlite::SqliteStore::open(&env.root.join("data").join("baton.db")).await.unwrap();
        let task = |id: &str| baton_store::TaskKey::parse(id);
        let first = store.task(&task(&a)).await.unwrap().unwrap().id;
        let second = store.task(&task(&b)).await.unwrap().unwrap().id;
        assert!(store.add_dependency(first, second, "race", 0).await.unwrap());
    });
    let _server = env.serve(1);
    let tasks =
        env.drive(Duration::from_secs(60), |tasks| [&a, &b].iter().all(|id| hold(find(tasks, id)) == "blocked"));
    for id in [&a, &b] {
        let task = find(&tasks, id);
        assert_eq!(stage(task), "analysis");
        let reason = task["state"]["hold"]["reason"].as_str().unwrap();
        assert!(reason.contains("dependency cycle") && reason.contains(&a) && reason.contains(&b), "{reason}");
        assert!(jobs(&env, id).iter().all(|j| j["started_at_ms"].is_null()), "{id} never ran a job while on the cycle");
    }
    assert_eq!(hold(find(&tasks, &c)), "none", "{c} waits for {b} but is not on the cycle");
    let log = std::fs::read_to_string(env.root.join("serve-1.log")).unwrap();
    assert!(log.contains("blocked: dependency cycle"), "the alert went out: {log}");
    let status = String::from_utf8_lossy(&env.run(&["status"]).stdout).to_string();
    assert!(status.contains(&format!("waiting {c} analysis (demo): waits for {b}")), "{status}");

    // Withdraw the racing edge and retry: the chain runs in dependency order.
    let out = env.run(&["task", "undepend", &a, "--on", &b]);
    assert!(out.status.success(), "{}", stderr(&out));
    for id in [&a, &b] {
        let out = env.run(&["task", "retry", id]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Past the merge gate a task can wait for nothing: its place in the merge queue would hold
    // every change behind it.
    env.drive(Duration::from_secs(300), |tasks| hold(find(tasks, &a)) == "awaiting_confirm");
    let d = env.add_task("Fourth");
    let refused = env.run(&["task", "depend", &a, "--on", &d]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("already reached the merge gate"), "{}", stderr(&refused));
    env.drive(Duration::from_secs(300), |tasks| tasks.iter().all(|t| stage(t) == "done"));
    let end = |id: &str| jobs(&env, id).iter().filter_map(|j| j["finished_at_ms"].as_i64()).max().unwrap();
    let start = |id: &str| jobs(&env, id).iter().filter_map(|j| j["started_at_ms"].as_i64()).min().unwrap();
    assert!(start(&b) >= end(&a) && start(&c) >= end(&b), "each dependent started after its dependency was done");
}

// With `[features] serial = false` and `dependencies = false`, a serial repository's tasks and a
// task declared to wait for another both start at once, as they would without either.
#[test]
fn switched_off_gates_restore_parallel_starts() {
    let env = Env::with_extra(
        "",
        &ConfigExtra {
            repo: "serial = true",
            sections: "[features]\nserial = false\ndependencies = false\n",
            ..ConfigExtra::default()
        },
    );
    let a = env.add_task("First");
    let out = env.run(&["task", "add", "--repo", "demo", "--title", "Second", "--depends-on", &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    let b = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let _server = env.serve(1);
    // Nobody approves: both analyses finish while the first task is far from done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = env.tasks();
        if [&a, &b].iter().all(|id| hold(find(&tasks, id)) == "awaiting_approval") {
            break;
        }
        assert!(Instant::now() < deadline, "both tasks should reach approval: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The second task's analysis ran while the first had not even been approved.
    let first_end = jobs(&env, &a).iter().filter_map(|j| j["finished_at_ms"].as_i64()).max().unwrap();
    let second_start = jobs(&env, &b).iter().filter_map(|j| j["started_at_ms"].as_i64()).min().unwrap();
    assert!(second_start > 0 && first_end > 0, "both ran");
    assert_eq!(stage(find(&env.tasks(), &a)), "analysis", "{a} is far from done, yet {b} ran");
}
