//! Crash test (SPEC §4.6, §17): `baton serve` is SIGKILLed at seeded-random moments while 24
//! tasks run on a real git repository — mid-agent, mid-gate, mid-merge — and restarted each time,
//! with the test playing the human throughout. Afterwards SPEC §4 must hold: every task done, one
//! agent run per job, no lease left, no orphan process, and main = initial + one re-tested commit
//! per task. `BATON_CRASH_SEED=<n>` repeats a kill schedule (the seed is printed first; the
//! machine's timing still varies).

use crate::support::{
    Env, Server, all_done, assert_each_main_commit_passes_tests, git, main_commits, pid_alive, stage,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Tasks filed before the first server starts: enough work that the kills end before it does.
const TASKS: usize = 24;
/// SIGKILLs of `baton serve`, each followed by a restart.
const KILLS: usize = 32;
/// How long a server lives before its kill: uniform in this range, in milliseconds.
const UPTIME_MS: (u64, u64) = (200, 1600);
/// When no job runs at the chosen moment, how long to wait for one before killing anyway.
const BUSY_WAIT: Duration = Duration::from_secs(3);
/// Time for the last server to bring every task to done.
const FINISH_TIMEOUT: Duration = Duration::from_secs(180);

/// Every stage sleeps so that kills land while agents run; development writes, sleeps, then
/// writes again so a kill can leave a half-done worktree behind.
const SCRIPT: &str = r##"
[[task]]
match = "*"
[[task.step]]
stage = "analysis"
actions = [{ sleep_ms = 250 }, { write = { path = "docs/baton/{work_item}/01-analysis.md", content = "# {title}\n\nAnalysis.\n" } }]
[[task.step]]
stage = "architecture"
actions = [{ sleep_ms = 250 }, { write = { path = "docs/baton/{work_item}/02-architecture.md", content = "Design.\n" } }]
[[task.step]]
stage = "development"
actions = [
  { write = { path = "mathkit/m_{work_item_snake}.py", content = "def value():\n    return 1\n" } },
  { sleep_ms = 400 },
  { write = { path = "tests/test_{work_item_snake}.py", content = "import unittest\nimport importlib\n\n\nclass T(unittest.TestCase):\n    def test_value(self):\n        self.assertEqual(importlib.import_module('mathkit.m_{work_item_snake}').value(), 1)\n" } },
]
[[task.step]]
stage = "review"
actions = [{ sleep_ms = 250 }, { write = { path = "docs/baton/{work_item}/04-review.md", content = "---\nverdict: approve\n---\nOK\n" } }]
[[task.step]]
stage = "testing"
actions = [{ sleep_ms = 250 }, { write = { path = "docs/baton/{work_item}/05-test-report.md", content = "---\nverdict: pass\n---\nOK\n" } }]
"##;

/// Part of the project's initial commit: makes every test run (the development gate and the merge
/// gate's re-test) last long enough for kills to land in it.
const SLOW_TEST: &str = "import time\nimport unittest\n\n\nclass Slow(unittest.TestCase):\n    def test_slow(self):\n        time.sleep(0.3)\n";

/// A small deterministic generator (splitmix64): the kill schedule is a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, (low, high): (u64, u64)) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn seed() -> u64 {
    match std::env::var("BATON_CRASH_SEED") {
        Ok(text) => text.trim().parse().expect("BATON_CRASH_SEED is a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

/// What the running jobs were doing at the moment of a kill: `merge` (deploy_staging/deploy),
/// `agent` (its agent process alive), `post_agent` (agent exited: commit, gates, or its result
/// not yet collected), `setup` (worktree and prompt, no agent yet).
fn phases_at_kill(env: &Env) -> Vec<&'static str> {
    let status = env.json(&["status"]);
    let jobs = status["running_jobs"].as_array().cloned().unwrap_or_default();
    jobs.iter()
        .map(|job| match (job["stage"].as_str(), job["pid"].as_u64()) {
            (Some("deploy_staging" | "deploy"), _) => "merge",
            (_, Some(pid)) if pid_alive(pid) => "agent",
            (_, Some(_)) => "post_agent",
            (_, None) => "setup",
        })
        .collect()
}

/// Live processes started for this test: the command line names its directory (servers, agents
/// with their script path) or the working directory lies under it (git and test runs in worktrees).
fn processes_under(root: &Path) -> Vec<String> {
    let root_text = root.display().to_string();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(pid) = name.parse::<u64>() else { continue };
        if name == me || !pid_alive(pid) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        if cmdline.contains(&root_text) || cwd.starts_with(root) {
            found.push(format!("{pid}: {cmdline} (cwd {})", cwd.display()));
        }
    }
    found
}

fn hold(task: &Value) -> &str {
    task["state"]["hold"]["kind"].as_str().unwrap_or("none")
}

/// A task that did not reach done: its state, then its timeline and agent runs, one line each.
fn explain(env: &Env, task: &Value) -> String {
    let id = task["work_item_id"].as_str().unwrap();
    let detail = env.json(&["task", "show", id]);
    let mut lines = vec![format!("{id}: {} {}", stage(task), task["state"]["hold"])];
    for event in detail["timeline"].as_array().unwrap() {
        let message: String = event["message"].as_str().unwrap_or("").chars().take(300).collect();
        lines.push(format!("  {} {} {}", event["at_ms"], event["kind"], message.replace('\n', " | ")));
    }
    for run in detail["agent_runs"].as_array().unwrap() {
        lines.push(format!(
            "  agent run {} job {} {} pid {} exit {} {} {}",
            run["id"], run["job_id"], run["stage"], run["pid"], run["exit_code"], run["status"], run["error"]
        ));
    }
    lines.join("\n")
}

/// `(job id, stage, attempt)` of every job that has more than one agent run, with their count.
fn duplicate_agent_runs(detail: &Value) -> Vec<String> {
    let mut per_job: BTreeMap<i64, usize> = BTreeMap::new();
    for run in detail["agent_runs"].as_array().unwrap() {
        *per_job.entry(run["job_id"].as_i64().unwrap()).or_default() += 1;
    }
    let jobs = detail["jobs"].as_array().unwrap();
    per_job
        .into_iter()
        .filter(|(_, runs)| *runs > 1)
        .map(|(id, runs)| {
            let job = jobs.iter().find(|j| j["id"].as_i64() == Some(id));
            let (stage, attempt) =
                job.map_or((Value::Null, Value::Null), |j| (j["stage"].clone(), j["attempt"].clone()));
            format!("{} job {id} ({stage} attempt {attempt}): {runs} agent runs", detail["task"]["work_item_id"])
        })
        .collect()
}

// 24 tasks run under a server SIGKILLed 32 times at seeded-random moments and restarted each
// time: every task still reaches done, each job's agent ran once (re-adoption, not a second run),
// no lease is held and no process is left, and main holds exactly one re-tested commit per task.
#[test]
fn sigkill_at_random_moments_keeps_spec_4_invariants() {
    let seed = seed();
    println!("crash test seed: {seed} (replay with BATON_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let env = Env::with_config(SCRIPT, "", "");
    let project = env.project();
    std::fs::write(project.join("tests/test_slow.py"), SLOW_TEST).unwrap();
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-q", "--amend", "--no-edit"]);
    let ids: BTreeSet<String> = (1..=TASKS).map(|n| env.add_task(&format!("crash change {n}"))).collect();

    let mut servers = 0u32;
    let start = |servers: &mut u32| {
        *servers += 1;
        env.serve(*servers)
    };
    let mut server: Server = start(&mut servers);
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kills_while_working = 0;
    for _ in 0..KILLS {
        let until = Instant::now() + Duration::from_millis(rng.between(UPTIME_MS));
        while Instant::now() < until {
            env.play_human(&env.tasks());
            std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
        }
        // A kill while only humans are awaited tests little: wait a little for a job to run.
        let mut at_kill = phases_at_kill(&env);
        let busy_deadline = Instant::now() + BUSY_WAIT;
        while at_kill.is_empty() && Instant::now() < busy_deadline && !all_done(&env.tasks()) {
            env.play_human(&env.tasks());
            std::thread::sleep(Duration::from_millis(50));
            at_kill = phases_at_kill(&env);
        }
        kills_while_working += usize::from(!at_kill.is_empty());
        for phase in at_kill {
            *phases.entry(phase).or_default() += 1;
        }
        server.kill9();
        // Sometimes the human acts while no server runs (the CLI works without one).
        if rng.next().is_multiple_of(3) {
            env.play_human(&env.tasks());
        }
        server = start(&mut servers);
    }
    let chaos = started.elapsed();
    // Until every task is done, or one is blocked (it would wait for a human forever).
    let tasks = env.drive(FINISH_TIMEOUT, |tasks| all_done(tasks) || tasks.iter().any(|t| hold(t) == "blocked"));
    server.kill9();
    drop(server);

    // Every task terminal: done.
    assert_eq!(tasks.len(), TASKS, "seed {seed}");
    let stuck: Vec<String> = tasks.iter().filter(|t| stage(t) != "done").map(|t| explain(&env, t)).collect();
    if !stuck.is_empty() {
        // Keep the data dir, serve logs and repository of a failing run for inspection.
        let root = env.root.clone();
        std::mem::forget(env);
        panic!("seed {seed}: {} task(s) not done (kept {}):\n{}", stuck.len(), root.display(), stuck.join("\n"));
    }
    let status = env.json(&["status"]);
    assert!(status["leases"].as_array().unwrap().is_empty(), "seed {seed}: leases left: {status}");

    // No orphan: every server is dead, and nothing it started (agents, git, tests) still runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let orphans = loop {
        let orphans = processes_under(&env.root);
        if orphans.is_empty() || Instant::now() > deadline {
            break orphans;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(orphans.is_empty(), "seed {seed}: processes left running:\n{}", orphans.join("\n"));

    // Main is exactly the merged tasks: the initial commit, then one commit per task.
    let commits = main_commits(&project);
    assert_eq!(commits.len(), 1 + TASKS, "seed {seed}: main: {commits:#?}");
    let merged: BTreeSet<String> =
        commits[1..].iter().map(|(_, subject)| subject.split([' ', ':']).next().unwrap().to_string()).collect();
    assert_eq!(merged, ids, "seed {seed}: main does not hold one commit per task: {commits:#?}");
    assert_each_main_commit_passes_tests(&project);

    let details: Vec<Value> = ids.iter().map(|id| env.json(&["task", "show", id])).collect();
    let agent_runs: usize = details.iter().map(|d| d["agent_runs"].as_array().unwrap().len()).sum();
    let jobs: usize = details.iter().map(|d| d["jobs"].as_array().unwrap().len()).sum();
    let duplicates: Vec<String> = details.iter().flat_map(duplicate_agent_runs).collect();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for run in details.iter().flat_map(|d| d["agent_runs"].as_array().unwrap()) {
        let error = run["error"].as_str().map(|e| format!(": {}", e.chars().take(60).collect::<String>()));
        *outcomes
            .entry(format!("{}{}", run["status"].as_str().unwrap_or("?"), error.unwrap_or_default()))
            .or_default() += 1;
    }
    println!(
        "crash test: seed {seed}, {TASKS} tasks, {KILLS} kills ({kills_while_working} with jobs running; \
         running jobs by phase at the kills: {phases:?}), {restarts} restarts, chaos {chaos:.1?}, wall {wall:.1?}, \
         {jobs} jobs, {agent_runs} agent runs {outcomes:?}, {dups} jobs with a second agent run",
        restarts = servers - 1,
        wall = started.elapsed(),
        dups = duplicates.len(),
    );
    // Each job's agent ran once: a restarted Baton re-adopts a running agent (or uses the result it
    // recorded) instead of starting a second one for the same stage attempt.
    assert!(
        duplicates.is_empty(),
        "seed {seed}: a restart started a second agent for the same job:\n{}",
        duplicates.join("\n")
    );
}
