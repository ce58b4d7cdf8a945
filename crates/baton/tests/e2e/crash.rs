//! Crash test (SPEC §4.6, §17): 30 tasks run on a real git repository while the test kills things
//! at seeded-random moments — `baton serve` (at random, during a deploy, during the merge gate,
//! just after it launched a process), CLI calls mid-way, agents' whole process groups — freezes the
//! server longer than the lease TTL and, as root, fills the worktrees' disk; the test plays the
//! human throughout (approves, confirms deploys, stops a few tasks).
//!
//! Afterwards the checks count from witnesses outside the store — every agent execution, test
//! run, deploy and health check appends a line to its own log under `<root>/witness/` — and compare
//! them with the store: at most one agent execution per (task, stage, run) and one completed one
//! per job, each known to the store; each merged head re-tested, deployed exactly once, never two
//! deploys at once; no lease, worktree, open agent run or process left; no branch of a cancelled
//! task; main = initial + one re-tested commit per done task (or per merge-queue batch of them:
//! the repository batches up to three changes on a one-deep train), each passing its tests.
//!
//! `BATON_CRASH_SEED=<n>` repeats a kill schedule (the seed is printed first; the machine's timing
//! still varies); `BATON_CRASH_KINDS=serve,deploy,merge,launch,cli,group,freeze,disk` (any subset)
//! draws only those kinds, to replay one kind of trouble. A failing run keeps its directory (data
//! dir, serve logs, witness logs) and prints the timeline, jobs and agent runs of the tasks
//! concerned.

// The generator and the witnesses are shared with the multi-instance test (`instances.rs`).
pub(crate) mod chaos;
pub(crate) mod witness;

use crate::support::{ConfigExtra, Env, git, main_commits, pid_alive};
use chaos::{Chaos, Kind, Rng, SmallDisk};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use witness::{AGENT_END, AGENT_START, Counts, Detail, Violation, Witness};

/// Tasks filed by the test (a few more come from killed `task add` calls).
const TASKS: usize = 30;
/// Tasks filed before the first server starts; the rest come one per two kills.
const INITIAL_TASKS: usize = 12;
/// How long the end waits for the worktrees and branches of ended tasks to go (a CLI killed while
/// carrying out a STOP's effects leaves them claimed for a minute).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(75);
/// Kills of every kind.
const KILLS: usize = 64;
/// Time for the last server to bring every task to an end.
const FINISH_TIMEOUT: Duration = Duration::from_secs(150);
/// Lifetime of the merge lease: short, so a frozen server outlives it.
const LEASE_TTL_SECS: u64 = 3;
/// Size of the worktrees' tmpfs (root only).
const SMALL_DISK: &str = "16m";
/// The stages an agent runs.
const AGENT_STAGES: &[&str] = &["analysis", "architecture", "development", "review", "testing"];

/// Every stage sleeps so that kills land while agents run; development writes, sleeps, then
/// writes again so a kill can leave a half-done worktree behind. `@start`/`@end` become the
/// witness actions.
const SCRIPT: &str = r##"
[[task]]
match = "*"
[[task.step]]
stage = "analysis"
actions = [@start, { sleep_ms = 250 }, { write = { path = "docs/baton/{work_item}/01-analysis.md", content = "# {title}\n\nAnalysis.\n" } }, @end]
[[task.step]]
stage = "architecture"
actions = [@start, { sleep_ms = 250 }, { write = { path = "docs/baton/{work_item}/02-architecture.md", content = "Design.\n" } }, @end]
[[task.step]]
stage = "development"
actions = [
  @start,
  { write = { path = "mathkit/m_{work_item_snake}.py", content = "def value():\n    return 1\n" } },
  { sleep_ms = 400 },
  { write = { path = "tests/test_{work_item_snake}.py", content = "import unittest\nimport importlib\n\n\nclass T(unittest.TestCase):\n    def test_value(self):\n        self.assertEqual(importlib.import_module('mathkit.m_{work_item_snake}').value(), 1)\n" } },
  @end,
]
[[task.step]]
stage = "review"
actions = [@start, { sleep_ms = 250 }, { write = { path = "docs/baton/{work_item}/04-review.md", content = "---\nverdict: approve\n---\nOK\n" } }, @end]
[[task.step]]
stage = "testing"
actions = [@start, { sleep_ms = 250 }, { write = { path = "docs/baton/{work_item}/05-test-report.md", content = "---\nverdict: pass\n---\nOK\n" } }, @end]
"##;

/// Part of the project's initial commit: makes every test run (the development gate and the merge
/// gate's re-test) last long enough for kills to land in it.
const SLOW_TEST: &str = "import time\nimport unittest\n\n\nclass Slow(unittest.TestCase):\n    def test_slow(self):\n        time.sleep(0.3)\n";

fn seed() -> u64 {
    match std::env::var("BATON_CRASH_SEED") {
        Ok(text) => text.trim().parse().expect("BATON_CRASH_SEED is a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

/// The environment, kept on disk when the test panics (a failing run stays inspectable).
struct Kept(Option<Env>);

impl std::ops::Deref for Kept {
    type Target = Env;
    fn deref(&self) -> &Env {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(env) = self.0.take()
        {
            eprintln!("crash test: kept {} (data dir, serve logs, witness logs)", env.root.display());
            std::mem::forget(env);
        }
    }
}

/// The project, the witness scripts and a config whose `test`, `deploy` and `health` commands
/// write witness lines; agents get `BATON_SCRIPT_APPEND_DIR` (the witness directory, outside the
/// worktrees and the store) through `[server] agent_env`, and may write it from their sandbox.
fn scene() -> (Env, PathBuf) {
    let script = SCRIPT.replace("@start", AGENT_START).replace("@end", AGENT_END);
    // A shallow train with batches of up to three: changes wait together and land as one commit.
    let limits = format!(
        "lease_ttl_secs = {LEASE_TTL_SECS}\nreaper_interval_secs = 1\nmerge_queue_depth = 1\nmerge_queue_depth_max = 2\n"
    );
    let mut env = Env::with_extra(
        &script,
        &ConfigExtra {
            server: "agent_env = [\"BATON_SCRIPT_APPEND_DIR\"]",
            limits: &limits,
            test: Some("[\"sh\", \"{root}/bin/test.sh\"]"),
            repo: "deploy = [\"sh\", \"{root}/bin/deploy.sh\"]\nhealth = [\"sh\", \"{root}/bin/health.sh\"]\nmerge_batch = 3",
            // The agents run sandboxed; the witness directory is the one place outside their
            // worktrees they may write.
            sections: "[sandbox]\nmode = \"required\"\nwritable = [\"{root}/witness\"]\n",
        },
    );
    let witness = env.root.join("witness");
    std::fs::create_dir_all(&witness).unwrap();
    std::fs::create_dir_all(env.root.join("bin")).unwrap();
    for (name, text) in [
        ("test.sh", witness::test_script(&witness)),
        ("deploy.sh", witness::deploy_script(&witness)),
        ("health.sh", witness::health_script(&witness)),
    ] {
        std::fs::write(env.root.join("bin").join(name), text).unwrap();
    }
    env.serve_env.push(("BATON_SCRIPT_APPEND_DIR".into(), witness.display().to_string()));
    let project = env.project();
    std::fs::write(project.join("tests/test_slow.py"), SLOW_TEST).unwrap();
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-q", "--amend", "--no-edit"]);
    (env, witness)
}

fn stage_of(task: &Value) -> &str {
    task["state"]["stage"].as_str().unwrap_or("?")
}

fn hold_of(task: &Value) -> &str {
    task["state"]["hold"]["kind"].as_str().unwrap_or("none")
}

fn terminal(task: &Value) -> bool {
    matches!(stage_of(task), "done" | "cancelled")
}

/// A task's state, timeline, jobs and agent runs, one line each.
fn explain(detail: &Value) -> String {
    let task = &detail["task"];
    let mut lines = vec![format!(
        "{}: {} {} (branch {})",
        task["work_item_id"].as_str().unwrap_or("?"),
        stage_of(task),
        task["state"]["hold"],
        task["branch"]
    )];
    for event in detail["timeline"].as_array().into_iter().flatten() {
        let message: String = event["message"].as_str().unwrap_or("").chars().take(300).collect();
        lines.push(format!("  {} {} {}", event["at_ms"], event["kind"], message.replace('\n', " | ")));
    }
    for job in detail["jobs"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  job {} {} attempt {} {} pid {} pgid {}",
            job["id"], job["stage"], job["attempt"], job["status"], job["pid"], job["pgid"]
        ));
    }
    for run in detail["agent_runs"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  agent run {} job {} {} pid {} exit {} {} {} ended {} {}",
            run["id"],
            run["job_id"],
            run["stage"],
            run["pid"],
            run["exit_code"],
            run["status"],
            run["error"],
            run["ended_at_ms"],
            run["log_path"]
        ));
    }
    lines.join("\n")
}

/// Live processes started for this test: the command line names its directory (servers, agents
/// with their script path, test and deploy scripts) or the working directory lies under it.
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

/// Timeline events of `kind` (applied inputs have their own kinds; suppressed ones are `suppressed`).
fn events<'v>(detail: &'v Value, kind: &str) -> Vec<&'v Value> {
    detail["timeline"].as_array().into_iter().flatten().filter(|e| e["kind"] == kind).collect()
}

fn messages_contain(detail: &Value, text: &str) -> usize {
    detail["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains(text)))
        .count()
}

/// Main's commits whose tests fail, each checked out in a scratch worktree: (sha, subject, why).
fn commits_failing_tests(project: &Path) -> Vec<String> {
    let scratch = tempfile::tempdir().unwrap();
    let mut failing = Vec::new();
    for (i, (sha, subject)) in main_commits(project).iter().enumerate() {
        let path = scratch.path().join(format!("c{i}"));
        git(project, &["worktree", "add", "-q", "--detach", path.to_str().unwrap(), sha]);
        let out =
            std::process::Command::new("python3").args(["-m", "unittest", "-q"]).current_dir(&path).output().unwrap();
        if !out.status.success() {
            failing.push(format!("{sha} ({subject}): {}", String::from_utf8_lossy(&out.stderr)));
        }
        git(project, &["worktree", "remove", "--force", path.to_str().unwrap()]);
    }
    failing
}

/// Whether every ended task's worktree is gone, and every cancelled task's branch.
fn cleaned_up(env: &Env, tasks: &[Value]) -> bool {
    let worktrees = env.root.join("data/worktrees/demo");
    let branches = git(&env.project(), &["branch", "--list", "baton/*"]);
    tasks.iter().filter(|t| terminal(t)).all(|t| {
        let id = t["work_item_id"].as_str().unwrap_or("?");
        let branch = t["branch"].as_str().unwrap_or("?");
        !worktrees.join(id).exists() && (stage_of(t) != "cancelled" || !branches.lines().any(|l| l.ends_with(branch)))
    })
}

/// The store-side checks: every task ended (done or cancelled, never blocked), cancelled exactly
/// when the test stopped it (a STOP after the merge ends it done, "arrived too late"), each input
/// applied once (approve, confirm-deploy, stop), no lease, no job left running, no worktree left,
/// no branch of a cancelled task, and main = initial + one commit per done task or batch.
fn check_store(env: &Env, chaos: &Chaos<'_>, tasks: &[Value], details: &BTreeMap<String, Value>) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut flag = |task: &str, text: String| found.push(Violation { task: Some(task.to_string()), text });
    for task in tasks {
        let id = task["work_item_id"].as_str().unwrap();
        let detail = &details[id];
        if !terminal(task) {
            flag(id, format!("did not finish: {} ({})", stage_of(task), hold_of(task)));
        }
        let stops = events(detail, "stop").len();
        let too_late = messages_contain(detail, "arrived too late");
        match (stage_of(task), chaos.stopped.contains(id)) {
            ("cancelled", false) => flag(id, "cancelled, but the test never stopped it".into()),
            ("cancelled", true) if stops != 1 => flag(id, format!("cancelled with {stops} applied STOPs, not 1")),
            ("done", true) if stops == 1 && too_late != 1 => {
                flag(id, "done after an applied STOP without saying it arrived too late".into())
            }
            ("done", true) if stops > 1 => flag(id, format!("{stops} applied STOPs")),
            (_, false) if stops > 0 => flag(id, format!("{stops} applied STOPs, but the test never stopped it")),
            _ => {}
        }
        let approvals = events(detail, "approved").len();
        let confirms = events(detail, "deploy_confirmed").len();
        // Confirm Deploy comes before the merge queue: one per entry into deploy_staging (a
        // change sent back by a lost lease keeps its confirmation).
        let entries = messages_contain(detail, "testing → deploy_staging");
        let done = stage_of(task) == "done";
        if approvals > 1 || (done && approvals != 1) {
            flag(id, format!("{approvals} applied approvals"));
        }
        if confirms > entries || (done && confirms != entries) {
            flag(id, format!("{confirms} applied deploy confirmations for {entries} entries into deploy_staging"));
        }
        for job in detail["jobs"].as_array().into_iter().flatten() {
            if matches!(job["status"].as_str(), Some("running" | "queued")) {
                flag(id, format!("job {} ({}) is still {}", job["id"], job["stage"], job["status"]));
            }
        }
    }
    let status = env.json(&["status"]);
    if !status["leases"].as_array().is_none_or(Vec::is_empty) {
        found.push(Violation { task: None, text: format!("leases left: {}", status["leases"]) });
    }
    // A task still waiting (blocked) keeps its worktree; an ended one must not.
    let worktrees = env.root.join("data/worktrees/demo");
    let waiting: BTreeSet<String> = tasks
        .iter()
        .filter(|t| !terminal(t))
        .filter_map(|t| t["work_item_id"].as_str().map(|id| worktrees.join(id).display().to_string()))
        .collect();
    let left: Vec<String> = std::fs::read_dir(&worktrees)
        .map(|e| e.flatten().map(|e| e.path().display().to_string()).collect())
        .unwrap_or_default();
    for path in left.iter().filter(|p| !waiting.contains(*p)) {
        let id = Path::new(path).file_name().map(|n| n.to_string_lossy().to_string());
        found.push(Violation { task: id, text: format!("worktree {path} of an ended task left behind") });
    }
    let project = env.project();
    let registered = git(&project, &["worktree", "list", "--porcelain"]);
    let extra: Vec<&str> = registered
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .skip(1)
        .filter(|p| !waiting.contains(*p))
        .collect();
    if !extra.is_empty() {
        found.push(Violation { task: None, text: format!("git still registers worktrees of ended tasks: {extra:?}") });
    }
    let branches: BTreeSet<String> = git(&project, &["branch", "--list", "baton/*"])
        .lines()
        .map(|l| l.trim_start_matches(['*', '+', ' ']).to_string())
        .collect();
    for task in tasks.iter().filter(|t| stage_of(t) == "cancelled") {
        let branch = task["branch"].as_str().unwrap_or("");
        if branches.contains(branch) {
            found.push(Violation {
                task: task["work_item_id"].as_str().map(str::to_string),
                text: format!("branch {branch} of a cancelled task left behind"),
            });
        }
    }
    let done: BTreeSet<String> = tasks
        .iter()
        .filter(|t| stage_of(t) == "done")
        .map(|t| t["work_item_id"].as_str().unwrap().to_string())
        .collect();
    // One commit per change, or one per merge-queue batch naming its changes.
    let commits = main_commits(&project);
    let merged: Vec<String> = commits[1..]
        .iter()
        .flat_map(|(_, subject)| match subject.strip_prefix("Merge queue batch: ") {
            Some(ids) => ids.split(", ").map(str::to_string).collect::<Vec<_>>(),
            None => vec![subject.split([' ', ':']).next().unwrap().to_string()],
        })
        .collect();
    if merged.len() != done.len() || merged.iter().cloned().collect::<BTreeSet<_>>() != done {
        found.push(Violation {
            task: None,
            text: format!("main is not initial + one commit per done task or batch: done {done:?}, main {commits:#?}"),
        });
    }
    found
}

// 30 tasks under 64 kills of eight kinds (see the module doc): every task ends (done, or cancelled
// when the test stopped it), each CLI input applies once however its first call was killed, a
// read-only CLI call answers while the server is frozen, and the witnesses outside the store agree
// with it — no agent run twice, each merged head re-tested and deployed exactly once, one deploy at
// a time — while no lease, worktree, open agent run, cancelled task's branch or process is left,
// and main holds exactly one re-tested commit per done task, each passing its tests.
#[test]
fn random_kills_keep_spec_4_invariants_as_the_witnesses_see_them() {
    let seed = seed();
    println!("crash test seed: {seed} (replay with BATON_CRASH_SEED={seed})");
    let started = Instant::now();
    let (env, witness_dir) = scene();
    let env = Kept(Some(env));
    let disk = match SmallDisk::mount(&env.root.join("data/worktrees"), SMALL_DISK) {
        Ok(disk) => Some(disk),
        Err(why) => {
            println!("crash test: full-disk kills skipped: {why}");
            None
        }
    };
    let full_disk_note = if disk.is_some() { "on" } else { "skipped" };
    // Some tasks at first, the rest one per two kills: agents keep running while merges queue up.
    let mut filed = 0;
    let file = |filed: &mut usize| {
        *filed += 1;
        env.add_task(&format!("crash change {filed}"));
    };
    while filed < INITIAL_TASKS {
        file(&mut filed);
    }
    let mut chaos = Chaos::new(&env, Rng(seed), witness_dir.clone(), Duration::from_secs(LEASE_TTL_SECS), disk);
    if let Ok(keys) = std::env::var("BATON_CRASH_KINDS") {
        let only: Vec<Kind> =
            Kind::ALL.into_iter().filter(|k| keys.split(',').any(|key| key.trim() == k.key())).collect();
        println!("crash test: only {:?} (BATON_CRASH_KINDS)", only.iter().map(|k| k.key()).collect::<Vec<_>>());
        chaos.only(only);
    }
    for kill in 0..KILLS {
        if filed < TASKS && kill % 2 == 0 {
            file(&mut filed);
        }
        chaos.late = kill >= KILLS / 2;
        chaos.run_a_while();
        chaos.kill();
    }
    let chaos_time = started.elapsed();

    // Until every task has ended or is blocked (it would wait for a human forever).
    let deadline = Instant::now() + FINISH_TIMEOUT;
    let tasks = loop {
        let tasks = env.tasks();
        if tasks.iter().all(|t| terminal(t) || hold_of(t) == "blocked") || Instant::now() > deadline {
            break tasks;
        }
        env.play_human(&tasks);
        std::thread::sleep(Duration::from_millis(200));
    };
    // The effects of the last transitions (worktree and branch removal) drain in the background;
    // those a killed CLI had claimed wait out the claim (a minute).
    let cleanup_started = Instant::now();
    while Instant::now() < cleanup_started + CLEANUP_TIMEOUT && !cleaned_up(&env, &tasks) {
        std::thread::sleep(Duration::from_millis(250));
    }
    let cleanup_time = cleanup_started.elapsed();
    chaos.server.kill9();

    let details: BTreeMap<String, Value> = tasks
        .iter()
        .map(|t| {
            let id = t["work_item_id"].as_str().unwrap().to_string();
            let detail = env.json(&["task", "show", &id]);
            (id, detail)
        })
        .collect();
    let mut violations = chaos.violations.clone();
    violations.extend(check_store(&env, &chaos, &tasks, &details));

    let witness = Witness::read(&witness_dir);
    let mut counts = Counts::default();
    let views: Vec<Detail<'_>> = details.iter().map(|(id, value)| Detail { work_item: id, value }).collect();
    violations.extend(witness::check_agents(&witness, &views, &chaos.killed_groups, AGENT_STAGES, &mut counts));
    let merged_heads: Vec<(String, String)> = main_commits(&env.project())[1..]
        .iter()
        .map(|(sha, _)| (sha.clone(), git(&env.project(), &["rev-parse", &format!("{sha}^{{tree}}")])))
        .collect();
    violations.extend(witness::check_commands(&witness, &merged_heads, &mut counts));

    // A full disk is the machine's failure: it never rolls a task back, never spends an attempt,
    // and never reaches an agent's prompt as a failure of its work.
    let mut disk_rollbacks = 0;
    for (id, detail) in &details {
        for event in detail["timeline"].as_array().map_or(&[][..], Vec::as_slice) {
            let message = event["message"].as_str().unwrap_or("");
            let by_disk = message.contains("No space left on device");
            let spent = message.contains("rolled back") || message.contains(" failed: ") && message.contains("retry");
            if by_disk && spent {
                disk_rollbacks += 1;
                violations.push(Violation {
                    task: Some(id.clone()),
                    text: format!("a full disk was judged a code failure: {message}"),
                });
            }
        }
    }

    for failing in commits_failing_tests(&env.project()) {
        violations.push(Violation { task: None, text: format!("a commit on main fails its tests: {failing}") });
    }

    // No orphan: every server is dead, and nothing it started (agents, git, tests) still runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let orphans = loop {
        let orphans = processes_under(&env.root);
        if orphans.is_empty() || Instant::now() > deadline {
            break orphans;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for orphan in orphans {
        violations.push(Violation { task: None, text: format!("process left running: {orphan}") });
    }

    // The summary: kinds drawn and hit, what the kills landed on, and the witness counts.
    let done = tasks.iter().filter(|t| stage_of(t) == "done").count();
    let cancelled: Vec<&str> =
        tasks.iter().filter(|t| stage_of(t) == "cancelled").filter_map(|t| t["work_item_id"].as_str()).collect();
    let mut summary = vec![format!(
        "crash test: seed {seed}, {} tasks ({done} done, cancelled {cancelled:?}, stopped {:?}), {KILLS} kills, \
             {} restarts, full disk {full_disk_note}, chaos {chaos_time:.1?}, cleanup wait {cleanup_time:.1?}, \
             wall {:.1?}",
        tasks.len(),
        chaos.stopped,
        chaos.servers - 1,
        started.elapsed()
    )];
    // The violations first, shortened: a log cut after its first lines still says what broke.
    for violation in &violations {
        let text: String = violation.text.chars().take(400).collect();
        summary.push(format!(
            "  VIOLATION {}: {}",
            violation.task.as_deref().unwrap_or("-"),
            text.replace('\n', " / ")
        ));
    }
    summary.push(format!("  {:<40} {:>5} {:>5}", "kill kind", "drawn", "hit"));
    for (kind, tally) in &chaos.tally {
        summary.push(format!("  {:<40} {:>5} {:>5}", kind.name(), tally.drawn, tally.hit));
    }
    let total: usize = chaos.tally.values().map(|t| t.drawn).sum();
    summary.push(format!("  {:<40} {:>5}", "total", total));
    summary.push("  landed on:".into());
    for (what, n) in &chaos.landed {
        summary.push(format!("    {n:>3}  {what}"));
    }
    summary.push(format!(
        "  witness: {} agent executions ({} completed, {} killed by the test, {} failed, {} interrupted by Baton), \
         store: {} agent runs ({} lost); {} test runs ({} unfinished); {} deploys; {} health checks; \
         {} main commits ({} of them merge-queue batches); {} attempts or rollbacks spent on a full disk",
        counts.agent_executions,
        counts.agent_completed,
        counts.agent_killed_by_test,
        counts.agent_failed,
        counts.agent_interrupted_by_baton,
        counts.store_agent_runs,
        counts.store_lost_runs,
        counts.test_runs,
        counts.test_runs_unfinished,
        counts.deploys,
        counts.health_checks,
        merged_heads.len() + 1,
        main_commits(&env.project()).iter().filter(|(_, s)| s.starts_with("Merge queue batch:")).count(),
        disk_rollbacks,
    ));
    for line in &counts.unfinished {
        summary.push(format!("    not completed: {line}"));
    }
    println!("{}", summary.join("\n"));

    assert!(tasks.len() >= TASKS, "seed {seed}: {} tasks", tasks.len());
    if !violations.is_empty() {
        let concerned: BTreeSet<&str> = violations.iter().filter_map(|v| v.task.as_deref()).collect();
        let explained: Vec<String> = concerned.iter().take(6).filter_map(|id| details.get(*id)).map(explain).collect();
        let list: Vec<String> = violations.iter().map(|v| format!("- {}", v.text)).collect();
        panic!(
            "seed {seed}: {} violation(s):\n{}\n\ntasks concerned ({} of {}):\n{}",
            violations.len(),
            list.join("\n"),
            explained.len(),
            concerned.len(),
            explained.join("\n\n")
        );
    }
}
