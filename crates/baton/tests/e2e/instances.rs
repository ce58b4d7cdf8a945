//! Several `baton serve` instances on one PostgreSQL database (SPEC §15): three instances, each
//! with its own data directory and clone of one remote repository, carry twelve tickets to done
//! while the test SIGKILLs and restarts one, freezes another (SIGSTOP) past the heartbeat grace
//! period and plays the human through the CLI. Afterwards the witnesses outside the store — each
//! agent execution appends a line to `<root>/witness/agents.log` — show that no stage attempt's
//! agent ran twice except where the store records its instance as declared dead, main holds one
//! re-tested commit per ticket (or merge-queue batch), each passing the tests, and no job or lease
//! is left.

use crate::support::{ConfigExtra, Env, Server, git, stage};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TICKETS: usize = 12;
/// The heartbeat grace period the instances run with.
const GRACE_SECS: u64 = 4;

/// The PostgreSQL cluster the tests may create databases in (`cargo xtask test` starts one).
fn cluster_url() -> String {
    std::env::var("BATON_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "BATON_TEST_DATABASE_URL is not set: this test needs a PostgreSQL cluster it may create databases in \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres); `cargo xtask test` starts one and sets it"
        )
    })
}

/// A fresh, empty database in the test cluster; returns its URL.
fn fresh_database(name: &str) -> String {
    let cluster = cluster_url();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let database = format!("baton_{name}_{}_{nanos}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&cluster).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}"))).execute(&mut admin).await.unwrap();
        admin.close().await.unwrap();
    });
    let (base, query) = cluster.split_once('?').map_or((cluster.as_str(), None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').unwrap().0;
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// Every stage's script writes its artifact between two witness lines; development takes a
/// moment, so kills land while agents run.
const SCRIPT: &str = r##"
[[task]]
match = "*"
[[task.step]]
stage = "analysis"
actions = [
  { append = { path = "agents.log", content = "start {work_item} {stage} {attempt} {run} {started_ms} {run_dir}\n" } },
  { write = { path = "docs/baton/{work_item}/01-analysis.md", content = "# {title}\n\nAnalysis.\n" } },
  { append = { path = "agents.log", content = "end {work_item} {stage} {attempt} {run}\n" } },
]
[[task.step]]
stage = "architecture"
actions = [
  { append = { path = "agents.log", content = "start {work_item} {stage} {attempt} {run} {started_ms} {run_dir}\n" } },
  { write = { path = "docs/baton/{work_item}/02-architecture.md", content = "Design.\n" } },
  { append = { path = "agents.log", content = "end {work_item} {stage} {attempt} {run}\n" } },
]
[[task.step]]
stage = "development"
actions = [
  { append = { path = "agents.log", content = "start {work_item} {stage} {attempt} {run} {started_ms} {run_dir}\n" } },
  { sleep_ms = 1500 },
  { write = { path = "mathkit/m_{work_item_snake}.py", content = "def value():\n    return 1\n" } },
  { write = { path = "tests/test_{work_item_snake}.py", content = "import unittest\nimport importlib\n\n\nclass T(unittest.TestCase):\n    def test_value(self):\n        self.assertEqual(importlib.import_module('mathkit.m_{work_item_snake}').value(), 1)\n" } },
  { append = { path = "agents.log", content = "end {work_item} {stage} {attempt} {run}\n" } },
]
[[task.step]]
stage = "review"
actions = [
  { append = { path = "agents.log", content = "start {work_item} {stage} {attempt} {run} {started_ms} {run_dir}\n" } },
  { write = { path = "docs/baton/{work_item}/04-review.md", content = "---\nverdict: approve\n---\nOK\n" } },
  { append = { path = "agents.log", content = "end {work_item} {stage} {attempt} {run}\n" } },
]
[[task.step]]
stage = "testing"
actions = [
  { append = { path = "agents.log", content = "start {work_item} {stage} {attempt} {run} {started_ms} {run_dir}\n" } },
  { write = { path = "docs/baton/{work_item}/05-test-report.md", content = "---\nverdict: pass\n---\nOK\n" } },
  { append = { path = "agents.log", content = "end {work_item} {stage} {attempt} {run}\n" } },
]
"##;

/// One instance: its own data directory and id, the shared database.
struct Instance {
    name: &'static str,
    server: Option<Server>,
}

fn start(env: &Env, name: &str, n: u32) -> Server {
    let mut command = env.command();
    let log = std::fs::File::create(env.root.join(format!("serve-{name}-{n}.log"))).unwrap();
    let child = command
        .arg("serve")
        .env("BATON_LOG", "info")
        .env("BATON_DATA_DIR", env.root.join(format!("data-{name}")))
        .env("BATON_SERVER__INSTANCE_ID", name)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("baton serve starts");
    Server { child }
}

fn signal(server: &Server, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// (work item, stage, attempt, run) → how many agent executions started and ended.
fn agent_executions(witness: &Path) -> BTreeMap<(String, String, String), (u32, u32)> {
    let log = std::fs::read_to_string(witness.join("agents.log")).unwrap_or_default();
    let mut counts: BTreeMap<(String, String, String), (u32, u32)> = BTreeMap::new();
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 5 {
            continue;
        }
        // Keyed by (work item, stage, attempt, run): a rollback starts a new run; a stage
        // started again after its instance was declared dead starts a new run too, and the
        // check below finds its instance's death on the timeline.
        let key = (words[1].to_string(), words[2].to_string(), format!("{} {}", words[3], words[4]));
        let entry = counts.entry(key).or_default();
        match words[0] {
            "start" => entry.0 += 1,
            "end" => entry.1 += 1,
            _ => {}
        }
    }
    counts
}

fn timeline(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["task", "show", id])["timeline"].as_array().cloned().unwrap_or_default()
}

// Three instances share one PostgreSQL database and one remote repository; one is killed and
// restarted, one frozen past the grace period (its jobs are taken over, its late writes refused),
// and every ticket still reaches done with each agent attempt run once, or again only where its
// instance was declared dead.
#[test]
fn three_instances_on_one_database_survive_kills_and_a_freeze() {
    let url = fresh_database("instances");
    let env = {
        let mut env = Env::with_extra(
            SCRIPT,
            &ConfigExtra {
                server: "agent_env = [\"BATON_SCRIPT_APPEND_DIR\"]",
                limits: &format!(
                    "heartbeat_secs = 1\ninstance_grace_secs = {GRACE_SECS}\nreaper_interval_secs = 1\n\
                     reconciler_interval_secs = 2\nrunning_max = 6\nrunning_per_repo_max = 6"
                ),
                // Agents may be sandboxed; the witness directory is the one place outside their
                // worktree they may write.
                sections: "[sandbox]\nwritable = [\"{root}/witness\"]\n",
                ..ConfigExtra::default()
            },
        );
        // The project as a remote (a bare repository): every instance works in its own clone.
        let remote = env.root.join("remote.git");
        git(&env.root, &["clone", "-q", "--bare", env.project().to_str().unwrap(), remote.to_str().unwrap()]);
        let config = std::fs::read_to_string(env.config()).unwrap();
        let config = config.replace("path = \"project\"", &format!("url = \"{}\"", remote.display()));
        // Two `running_max` lines would be a TOML error: keep the test's.
        let config = config.replacen("running_max = 4\nrunning_per_repo_max = 4\n", "", 1);
        std::fs::write(env.config(), config).unwrap();
        let witness = env.root.join("witness");
        std::fs::create_dir_all(&witness).unwrap();
        env.serve_env.push(("BATON_SCRIPT_APPEND_DIR".into(), witness.display().to_string()));
        env.serve_env.push(("BATON_DATABASE_URL".into(), url.clone()));
        env
    };
    let remote: PathBuf = env.root.join("remote.git");
    let initial = git(&remote, &["rev-parse", "main"]);
    let ids: Vec<String> = (1..=TICKETS).map(|i| env.add_task(&format!("change {i}"))).collect();
    let mut instances: Vec<Instance> =
        ["a", "b", "c"].into_iter().map(|name| Instance { name, server: Some(start(&env, name, 0)) }).collect();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let mut killed = false;
    let mut restarted = false;
    let mut frozen_at: Option<Instant> = None;
    let mut thawed = false;
    let tasks = loop {
        let tasks = env.tasks();
        if tasks.len() == TICKETS && tasks.iter().all(|t| stage(t) == "done") {
            break tasks;
        }
        env.play_human(&tasks);
        let elapsed = started.elapsed();
        // b dies (SIGKILL) once work is under way, and comes back a few seconds later.
        if !killed && elapsed > Duration::from_secs(4) {
            instances[1].server.as_mut().unwrap().kill9();
            instances[1].server = None;
            killed = true;
        }
        if killed && !restarted && elapsed > Duration::from_secs(9) {
            instances[1].server = Some(start(&env, instances[1].name, 1));
            restarted = true;
        }
        // c freezes past the grace period: its jobs are taken over; thawed, it must stop them.
        if frozen_at.is_none() && elapsed > Duration::from_secs(6) {
            signal(instances[2].server.as_ref().unwrap(), nix::sys::signal::Signal::SIGSTOP);
            frozen_at = Some(Instant::now());
        }
        if let Some(at) = frozen_at
            && !thawed
            && at.elapsed() > Duration::from_secs(GRACE_SECS + 4)
        {
            signal(instances[2].server.as_ref().unwrap(), nix::sys::signal::Signal::SIGCONT);
            thawed = true;
        }
        if Instant::now() > deadline {
            let status = String::from_utf8_lossy(&env.run(&["status"]).stdout).to_string();
            let stuck: Vec<String> = tasks
                .iter()
                .filter(|t| stage(t) != "done")
                .map(|t| {
                    let id = t["work_item_id"].as_str().unwrap_or("?");
                    let lines: Vec<String> = timeline(&env, id)
                        .iter()
                        .rev()
                        .take(10)
                        .map(|e| format!("  {} {}", e["kind"], e["message"]))
                        .collect();
                    format!("{id} {}:\n{}", stage(t), lines.join("\n"))
                })
                .collect();
            panic!("timed out (kept {}):\n{status}\n{}", env.root.display(), stuck.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(killed && restarted && thawed, "the chaos ran: killed {killed}, restarted {restarted}, thawed {thawed}");

    // Witnesses: an attempt's agent ran more than once only on a task whose job was taken over
    // from a dead instance (the store says so on the task's timeline).
    let executions = agent_executions(&env.root.join("witness"));
    assert!(executions.len() >= TICKETS * 5, "every agent stage ran: {executions:?}");
    let mut taken_over = 0;
    for ((work_item, stage_name, attempt), (starts, ends)) in &executions {
        assert!(*ends >= 1, "{work_item} {stage_name} attempt {attempt}: no execution completed");
        if *starts > 1 {
            let dead = timeline(&env, work_item).iter().filter(|e| e["kind"] == "instance_dead").count();
            let log = std::fs::read_to_string(env.root.join("witness").join("agents.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(work_item.as_str())).collect();
            let events: Vec<String> = timeline(&env, work_item)
                .iter()
                .map(|e| format!("  {} {} {}", e["at_ms"], e["kind"], e["message"]))
                .collect();
            assert!(
                dead > 0,
                "{work_item} {stage_name} attempt {attempt} ran {starts} times without its instance being declared dead\n{}\n{}",
                lines.join("\n"),
                events.join("\n")
            );
            taken_over += 1;
        }
    }
    // The frozen instance held running jobs (six run at once across three instances): some were
    // taken over, and the timeline says by whom.
    let deaths: usize =
        ids.iter().map(|id| timeline(&env, id).iter().filter(|e| e["kind"] == "instance_dead").count()).sum();
    eprintln!("instances: {taken_over} attempt(s) ran again after {deaths} takeover(s)");

    // Main: one commit per ticket or batch, on the initial commit, each passing its tests.
    let subjects = git(&remote, &["log", "--format=%s", &format!("{initial}..main")]);
    for id in &ids {
        assert_eq!(
            subjects.lines().filter(|s| s.contains(id.as_str())).count(),
            1,
            "{id} merged exactly once: {subjects}"
        );
    }
    let scratch = tempfile::tempdir().unwrap();
    let checkout = scratch.path().join("main");
    git(&env.root, &["clone", "-q", remote.to_str().unwrap(), checkout.to_str().unwrap()]);
    crate::support::assert_each_main_commit_passes_tests(&checkout);

    // Nothing left: no job queued or running, no lease.
    let status = env.json(&["status"]);
    assert_eq!(status["queued_jobs"], 0, "{status:#}");
    assert!(status["running_jobs"].as_array().is_some_and(|j| j.is_empty()), "{status:#}");
    assert!(status["leases"].as_array().is_some_and(|l| l.is_empty()), "leases left: {status:#}");
    // The instances are listed with their heartbeats: all three alive at the end.
    let listed = status["instances"].as_array().cloned().unwrap_or_default();
    let alive: Vec<&str> = listed.iter().filter(|i| i["alive"] == true).filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(alive, ["a", "b", "c"], "{status:#}");
    assert_eq!(tasks.len(), TICKETS);
    drop(instances);
}
