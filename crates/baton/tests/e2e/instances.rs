//! Several `baton serve` instances on one PostgreSQL database (SPEC §15): three instances, each
//! with its own data directory and its own clones of two remote repositories, carry sixty tickets
//! (filed over HTTP) to production while the test SIGKILLs and restarts random instances at moments
//! drawn from a seed, freezes one (SIGSTOP) past the heartbeat grace period, and plays the human
//! over HTTP, each approval and deploy confirmation sent to a randomly chosen running instance.
//!
//! Afterwards the witnesses outside the store decide: each agent execution appends a line to
//! `<root>/witness/agents.log`, each test run, deploy and health check of a repository to its own
//! log under `<root>/witness/<repo>/`, and each repository's remote logs every move of its main
//! (an `update` hook). They must show that no stage attempt's agent ran twice except on an
//! instance declared dead, that each merged head landed in one push and was deployed once, never
//! two deploys of a repository at once; main holds exactly the merged tasks, one commit each, every
//! commit passing its tests; every task ended or waits for a human; no job is left queued or
//! running and no lease is held.
//!
//! `BATON_E2E_SEED=<n>` replays a schedule of kills (the seed is printed first; the machine's
//! timing still varies). A failing run keeps its directory (data dirs, serve logs, witness logs).

mod chaos;
mod fleet;
mod stop;

use crate::crash::chaos::Rng;
use crate::crash::witness::{self, AGENT_END, AGENT_START, AgentExec, Counts, Witness};
use crate::support::{ConfigExtra, Env, git, main_commits};
use chaos::Chaos;
use fleet::{Instance, Reply, call};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const TICKETS: usize = 60;
/// The repositories (name, prefix); tickets alternate between them.
const REPOS: [(&str, &str); 2] = [("demo", "DEMO"), ("other", "OTHER")];
/// The heartbeat grace period the instances run with.
const GRACE_SECS: u64 = 4;
/// Time for the whole pipeline, chaos included.
const FINISH_TIMEOUT: Duration = Duration::from_secs(900);
/// The stages an agent runs.
const AGENT_STAGES: &[&str] = &["analysis", "architecture", "development", "review", "testing"];
/// The instances' ids.
const NAMES: [&str; 3] = ["a", "b", "c"];

fn seed() -> u64 {
    match std::env::var("BATON_E2E_SEED") {
        Ok(text) => text.trim().parse().expect("BATON_E2E_SEED is a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

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

/// Every stage's script writes its artifact between two witness lines (`@start`, `@end`);
/// development takes a moment, so kills land while agents run.
const SCRIPT: &str = r##"
[[task]]
match = "*"
[[task.step]]
stage = "analysis"
actions = [@start, { sleep_ms = 100 }, { write = { path = "docs/baton/{work_item}/01-analysis.md", content = "# {title}\n\nAnalysis.\n" } }, @end]
[[task.step]]
stage = "architecture"
actions = [@start, { sleep_ms = 100 }, { write = { path = "docs/baton/{work_item}/02-architecture.md", content = "Design.\n" } }, @end]
[[task.step]]
stage = "development"
actions = [
  @start,
  { sleep_ms = 800 },
  { write = { path = "mathkit/m_{work_item_snake}.py", content = "def value():\n    return 1\n" } },
  { write = { path = "tests/test_{work_item_snake}.py", content = "import unittest\nimport importlib\n\n\nclass T(unittest.TestCase):\n    def test_value(self):\n        self.assertEqual(importlib.import_module('mathkit.m_{work_item_snake}').value(), 1)\n" } },
  @end,
]
[[task.step]]
stage = "review"
actions = [@start, { sleep_ms = 100 }, { write = { path = "docs/baton/{work_item}/04-review.md", content = "---\nverdict: approve\n---\nOK\n" } }, @end]
[[task.step]]
stage = "testing"
actions = [@start, { sleep_ms = 100 }, { write = { path = "docs/baton/{work_item}/05-test-report.md", content = "---\nverdict: pass\n---\nOK\n" } }, @end]
"##;

/// The repository's `deploy` command: half a second of "deploying" between two witness lines; the
/// start line also says where the remote's main was and where it ran (the worktree lies in the data
/// directory of the instance that ran it).
fn deploy_script(witness: &Path, remote: &Path) -> String {
    format!(
        "#!/bin/sh\n# Multi-instance witness: one start and one end line per deploy.\n\
         log='{log}'\nhead=$(git rev-parse HEAD)\nmain=$(git --git-dir='{remote}' rev-parse refs/heads/main)\n\
         echo \"start $head $$ $(date +%s%N) ${{BATON_WORK_ITEM:-none}} $main $(pwd)\" >> \"$log\"\n\
         sleep 0.5\n\
         echo \"end $head $$ $(date +%s%N)\" >> \"$log\"\n",
        log = witness.join(witness::DEPLOYS_LOG).display(),
        remote = remote.display()
    )
}

/// The remote's `update` hook: one line per move of main (old, new), as the remote received it.
fn main_hook(log: &Path) -> String {
    format!(
        "#!/bin/sh\n# Multi-instance witness: every move of main.\n\
         if [ \"$1\" = refs/heads/main ]; then echo \"$2 $3\" >> '{}'; fi\nexit 0\n",
        log.display()
    )
}

/// Where the remote's hook logs the moves of main.
const MAIN_LOG: &str = "main.log";

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
            eprintln!("instances: kept {} (data dirs, serve logs, witness logs)", env.root.display());
            std::mem::forget(env);
        }
    }
}

/// Two remote repositories (bare, each with the witness hook on main), a config naming them by
/// `url`, their test, deploy and health commands writing witness lines, and the database.
fn scene(database_url: &str) -> Env {
    let script = SCRIPT.replace("@start", AGENT_START).replace("@end", AGENT_END);
    let commands = |repo: &str| {
        format!(
            "test = [\"sh\", \"{{root}}/bin/test-{repo}.sh\"]\ndeploy = [\"sh\", \"{{root}}/bin/deploy-{repo}.sh\"]\n\
             health = [\"sh\", \"{{root}}/bin/health-{repo}.sh\"]\n"
        )
    };
    let (other, other_prefix) = REPOS[1];
    let sections = format!(
        // Agents may be sandboxed; the witness directory is the one place outside their worktree
        // they may write.
        "[sandbox]\nwritable = [\"{{root}}/witness\"]\n\n\
         [[repos]]\nname = \"{other}\"\nurl = \"{{root}}/{other}.git\"\nprefix = \"{other_prefix}\"\n{}",
        commands(other)
    );
    let test = format!("[\"sh\", \"{{root}}/bin/test-{}.sh\"]", REPOS[0].0);
    let demo_commands = commands(REPOS[0].0);
    let (_, demo_deploy) = demo_commands.split_once('\n').unwrap();
    let mut env = Env::with_extra(
        &script,
        &ConfigExtra {
            server: "agent_env = [\"BATON_SCRIPT_APPEND_DIR\"]",
            limits: &format!(
                "heartbeat_secs = 1\ninstance_grace_secs = {GRACE_SECS}\nreaper_interval_secs = 1\n\
                 reconciler_interval_secs = 2\nrunning_max = 10\nrunning_per_repo_max = 5"
            ),
            test: Some(&test),
            repo: demo_deploy,
            sections: &sections,
        },
    );
    let witness = env.root.join("witness");
    std::fs::create_dir_all(env.root.join("bin")).unwrap();
    for (repo, _) in REPOS {
        // The project as a remote (a bare repository): every instance works in its own clone.
        let remote = env.root.join(format!("{repo}.git"));
        git(&env.root, &["clone", "-q", "--bare", env.project().to_str().unwrap(), remote.to_str().unwrap()]);
        let dir = witness.join(repo);
        std::fs::create_dir_all(&dir).unwrap();
        let hook = remote.join("hooks/update");
        std::fs::write(&hook, main_hook(&dir.join(MAIN_LOG))).unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (name, text) in [
            ("test", witness::test_script(&dir)),
            ("deploy", deploy_script(&dir, &remote)),
            ("health", witness::health_script(&dir)),
        ] {
            std::fs::write(env.root.join("bin").join(format!("{name}-{repo}.sh")), text).unwrap();
        }
    }
    let config = std::fs::read_to_string(env.config()).unwrap();
    let config = config.replace("path = \"project\"", &format!("url = \"{}\"", env.root.join("demo.git").display()));
    // Two `running_max` lines would be a TOML error: keep the test's.
    let config = config.replacen("running_max = 4\nrunning_per_repo_max = 4\n", "", 1);
    std::fs::write(env.config(), config).unwrap();
    env.serve_env.push(("BATON_SCRIPT_APPEND_DIR".into(), witness.display().to_string()));
    env.serve_env.push(("BATON_DATABASE_URL".into(), database_url.to_string()));
    env
}

fn stage_of(task: &Value) -> &str {
    task["state"]["stage"].as_str().unwrap_or("?")
}

fn hold_of(task: &Value) -> &str {
    task["state"]["hold"]["kind"].as_str().unwrap_or("none")
}

fn id_of(task: &Value) -> String {
    task["work_item_id"].as_str().unwrap_or("?").to_string()
}

fn terminal(task: &Value) -> bool {
    matches!(stage_of(task), "done" | "cancelled")
}

/// The instance whose data directory holds a run directory (`<root>/data-<name>/runs/…`).
fn instance_of(run_dir: &str) -> Option<&str> {
    Path::new(run_dir).components().find_map(|c| c.as_os_str().to_str()?.strip_prefix("data-"))
}

/// The test's side of the API: calls to random running instances, counted per instance.
struct Human<'a> {
    env: &'a Env,
    /// (instance, route kind) → calls answered.
    calls: BTreeMap<(String, &'static str), usize>,
}

impl Human<'_> {
    /// One call to a random running instance; `None` when none answered (the test tries again).
    fn call(
        &mut self,
        chaos: &mut Chaos,
        instances: &mut [Instance],
        kind: &'static str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Option<Reply> {
        let (name, addr) = chaos.pick(self.env, instances)?;
        let reply = call(&addr, method, path, body).ok()?;
        // A busy database answers 503 with Retry-After: the test tries again on its next round.
        if reply.status == 503 {
            return None;
        }
        *self.calls.entry((name.to_string(), kind)).or_default() += 1;
        Some(reply)
    }

    /// A repository frozen because a deploy's outcome was unknown (its job taken over from an
    /// instance declared dead mid-deploy) is unfrozen once the target is checked: no deploy it
    /// witnessed is still running (each started one ended, or its process is gone).
    fn unfreeze_settled_deploys(&mut self, chaos: &mut Chaos, instances: &mut [Instance]) {
        let Some(queue) = self.call(chaos, instances, "queue", "GET", "/api/queue", None).filter(|r| r.status == 200)
        else {
            return;
        };
        let freezes = queue.json()["freezes"].as_array().cloned().unwrap_or_default();
        for freeze in freezes.iter().filter(|f| f["frozen_by"] == "deploy") {
            let repo = freeze["repo"].as_str().unwrap_or_default();
            let deploys = Witness::read(&self.env.root.join("witness").join(repo)).deploys;
            let running = deploys.iter().any(|d| d.end_ns.is_none() && Path::new(&format!("/proc/{}", d.pid)).exists());
            if running {
                continue;
            }
            let path = format!("/api/repos/{repo}/unfreeze");
            if let Some(reply) = self.call(chaos, instances, "unfreeze", "POST", &path, None) {
                // Another round's call may have unfrozen it already.
                assert!(matches!(reply.status, 200 | 400 | 409 | 422), "POST {path}: {} {}", reply.status, reply.body);
            }
        }
    }
}

// Three instances share one PostgreSQL database and two remote repositories; sixty tickets go
// through the whole pipeline (approval, agents, merge queue, confirmed deploy) while random
// instances are SIGKILLed and restarted and one is frozen past the grace period, the human's calls
// going to random running instances. The witnesses outside the store then show every stage attempt
// run once (or again only after its instance was declared dead), every merged head landed in one
// push and deployed once, main per repository exactly the merged tasks with passing tests, and
// nothing left claimed.
#[test]
fn three_instances_on_one_database_survive_kills_and_a_freeze() {
    let seed = seed();
    println!("instances seed: {seed} (replay with BATON_E2E_SEED={seed})");
    let began = Instant::now();
    let database_url = fresh_database("instances");
    let env = Kept(Some(scene(&database_url)));
    let mut chaos = Chaos::draw(Rng(seed), GRACE_SECS);
    println!("instances: planned {}", chaos.describe());
    let mut instances: Vec<Instance> = NAMES.into_iter().map(Instance::new).collect();
    for instance in &mut instances {
        instance.start(&env);
    }
    let mut human = Human { env: &env, calls: BTreeMap::new() };
    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;

    // The tickets, filed over HTTP to random instances, alternating between the repositories.
    let mut filed = 0;
    while filed < TICKETS {
        assert!(started.elapsed() < Duration::from_secs(60), "the instances never took the tickets");
        let repo = REPOS[filed % REPOS.len()].0;
        let body = json!({ "repo": repo, "title": format!("change {}", filed + 1) });
        match human.call(&mut chaos, &mut instances, "create", "POST", "/api/tasks", Some(&body)) {
            Some(reply) => {
                assert_eq!(reply.status, 201, "POST /api/tasks: {}", reply.body);
                filed += 1;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }

    let deadline = started + FINISH_TIMEOUT;
    let tasks = loop {
        chaos.step(&env, &mut instances, now_ms());
        let listed = human.call(&mut chaos, &mut instances, "list", "GET", "/api/tasks?limit=500", None);
        if let Some(reply) = listed.filter(|r| r.status == 200) {
            let tasks = reply.json().as_array().cloned().unwrap_or_default();
            let settled = tasks.iter().all(|t| terminal(t) || hold_of(t) == "blocked");
            if tasks.len() == TICKETS && settled && chaos.finished() {
                break tasks;
            }
            for task in &tasks {
                let (kind, route) = match hold_of(task) {
                    "awaiting_approval" => ("approve", "approve"),
                    "awaiting_confirm" => ("confirm-deploy", "confirm-deploy"),
                    _ => continue,
                };
                let path = format!("/api/tasks/{}/{route}", id_of(task));
                if let Some(reply) = human.call(&mut chaos, &mut instances, kind, "POST", &path, None) {
                    assert_eq!(reply.status, 200, "POST {path}: {}", reply.body);
                }
            }
            human.unfreeze_settled_deploys(&mut chaos, &mut instances);
        }
        if Instant::now() > deadline {
            let tasks = env.tasks();
            let stuck: Vec<String> = tasks
                .iter()
                .filter(|t| !terminal(t))
                .map(|t| {
                    let detail = env.json(&["task", "show", &id_of(t)]);
                    let lines: Vec<String> = detail["timeline"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .rev()
                        .take(8)
                        .map(|e| format!("  {} {}", e["kind"], e["message"]))
                        .collect();
                    format!("{} {} {}:\n{}", id_of(t), stage_of(t), hold_of(t), lines.join("\n"))
                })
                .collect();
            let status = String::from_utf8_lossy(&env.run(&["status"]).stdout).to_string();
            panic!("seed {seed}: timed out\nchaos:\n{}\n{status}\n{}", chaos.log(), stuck.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let pipeline_time = started.elapsed();

    let details: BTreeMap<String, Value> = tasks
        .iter()
        .map(|t| {
            let id = id_of(t);
            let path = format!("/api/tasks/{id}");
            let reply = loop {
                if let Some(reply) = human.call(&mut chaos, &mut instances, "show", "GET", &path, None) {
                    break reply;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
            (id, reply.json())
        })
        .collect();
    let mut violations: Vec<String> = Vec::new();

    // Every task ended or waits for a human.
    for task in &tasks {
        if !terminal(task) && !matches!(hold_of(task), "blocked" | "awaiting_approval" | "awaiting_confirm") {
            violations.push(format!("{} is neither ended nor waiting for a human: {}", id_of(task), task["state"]));
        }
    }
    let blocked: Vec<String> = tasks
        .iter()
        .filter(|t| hold_of(t) == "blocked")
        .map(|t| format!("{} in {}: {}", id_of(t), stage_of(t), t["state"]["failure"]))
        .collect();

    let root_witness = env.root.join("witness");
    let agents = Witness::read(&root_witness).agents;
    let repeated = check_agents(&agents, &details, &chaos, &mut violations);

    let mut counts = Counts::default();
    let mut landings = Vec::new();
    let scratch = tempfile::tempdir().unwrap();
    for (repo, prefix) in REPOS {
        let checkout = scratch.path().join(repo);
        let remote = env.root.join(format!("{repo}.git"));
        git(&env.root, &["clone", "-q", remote.to_str().unwrap(), checkout.to_str().unwrap()]);
        let repo_tasks: Vec<&Value> = tasks.iter().filter(|t| t["repo"] == repo).collect();
        let landed = check_main(&checkout, &root_witness.join(repo), prefix, &repo_tasks, &details, &mut violations);
        let commands = Witness::read(&root_witness.join(repo));
        let merged: Vec<(String, String)> = main_commits(&checkout)[1..]
            .iter()
            .map(|(sha, _)| (sha.clone(), git(&checkout, &["rev-parse", &format!("{sha}^{{tree}}")])))
            .collect();
        // A task blocked in deploy after its merge (its job taken over from an instance declared
        // dead mid-deploy) had its deploy run at most once and no health check: a human decides.
        let unsettled: Vec<String> = repo_tasks
            .iter()
            .filter(|t| stage_of(t) == "deploy" && hold_of(t) == "blocked")
            .flat_map(|t| merged_heads(&details[&id_of(t)]))
            .collect();
        let mut repo_counts = Counts::default();
        for violation in witness::check_commands(&commands, &merged, &mut repo_counts) {
            let waits = unsettled.iter().any(|head| {
                violation.text.starts_with(&format!("merged head {head} was deployed 0 times"))
                    || violation.text.starts_with(&format!("no health check of {head}"))
            });
            if !waits {
                violations.push(format!("{repo}: {}", violation.text));
            }
        }
        counts.test_runs += repo_counts.test_runs;
        counts.deploys += repo_counts.deploys;
        counts.health_checks += repo_counts.health_checks;
        landings.push(format!("{repo}: {landed} commits"));
        // Each commit on main passes its tests, checked out on its own.
        crate::support::assert_each_main_commit_passes_tests(&checkout);
    }

    // No instance keeps the worktree of an ended task: one that ended on another instance is
    // removed by this instance's reaper (every second here).
    let ended: BTreeSet<String> = tasks.iter().filter(|t| terminal(t)).map(id_of).collect();
    let leftover = || -> Vec<String> {
        let mut left = Vec::new();
        for name in NAMES {
            for (repo, _) in REPOS {
                let dir = env.root.join(format!("data-{name}")).join("worktrees").join(repo);
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let work_item = entry.file_name().to_string_lossy().to_string();
                    if ended.contains(&work_item) {
                        left.push(format!("{name}:{repo}/{work_item}"));
                    }
                }
            }
        }
        left
    };
    let swept_by = Instant::now() + Duration::from_secs(20);
    while !leftover().is_empty() && Instant::now() < swept_by {
        std::thread::sleep(Duration::from_millis(250));
    }
    let left = leftover();
    if !left.is_empty() {
        violations.push(format!("worktrees of ended tasks left: {left:?}"));
    }

    // Nothing left: no job queued or running, no lease; the three instances alive at the end.
    let status = env.json(&["status"]);
    if status["queued_jobs"] != 0 || !status["running_jobs"].as_array().is_some_and(Vec::is_empty) {
        violations.push(format!("jobs left: {} queued, running {}", status["queued_jobs"], status["running_jobs"]));
    }
    if !status["leases"].as_array().is_some_and(Vec::is_empty) {
        violations.push(format!("leases left: {}", status["leases"]));
    }
    let alive: Vec<&str> = status["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["alive"] == true)
        .filter_map(|i| i["id"].as_str())
        .collect();
    if alive != NAMES {
        violations.push(format!("instances alive at the end: {alive:?}"));
    }

    let deaths: Vec<String> = details
        .values()
        .flat_map(|d| dead_declarations(d).map(|(instance, _)| instance.to_string()).collect::<Vec<_>>())
        .collect();
    let unexplained = deaths.iter().filter(|i| !chaos.silenced(i)).count();
    let done = tasks.iter().filter(|t| stage_of(t) == "done").count();
    println!(
        "instances: seed {seed}, {} tickets ({done} done, {} blocked), pipeline {pipeline_time:.1?}, wall {:.1?}\n\
         chaos (the kill aimed at a deploy found one: {}):\n{}\n  {} instance_dead declarations ({unexplained} of an instance the test had not silenced); \
         {repeated} stage attempt(s) ran again after one (by the witness)\n  witness: {} agent executions, {} test runs, {} deploys, \
         {} health checks; {}\n  API calls by (instance, kind): {:?}",
        tasks.len(),
        blocked.len(),
        began.elapsed(),
        chaos.hit_deploy,
        chaos.log(),
        deaths.len(),
        agents.len(),
        counts.test_runs,
        counts.deploys,
        counts.health_checks,
        landings.join(", "),
        human.calls
    );
    for line in &blocked {
        println!("  blocked: {line}");
    }
    assert_eq!(tasks.len(), TICKETS);
    for name in NAMES {
        let approvals = human.calls.get(&(name.to_string(), "approve")).copied().unwrap_or(0);
        assert!(approvals > 0, "seed {seed}: no approval went to instance {name}: {:?}", human.calls);
    }
    assert!(
        violations.is_empty(),
        "seed {seed}: {} violation(s):\n- {}\nchaos:\n{}",
        violations.len(),
        violations.join("\n- "),
        chaos.log()
    );
    drop(instances);
    let t = Instant::now();
    drop(env);
    println!("instances: cleanup {:.1?}", t.elapsed());
}

/// The heads a task's `merged` events name.
fn merged_heads(detail: &Value) -> Vec<String> {
    detail["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "merged")
        .filter_map(|e| e["detail"]["head"].as_str().map(str::to_string))
        .collect()
}

/// The `instance_dead` events on a task's timeline: (instance, job).
fn dead_declarations(detail: &Value) -> impl Iterator<Item = (&str, i64)> {
    detail["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "instance_dead")
        .filter_map(|e| Some((e["detail"]["instance"].as_str()?, e["detail"]["job"].as_i64()?)))
}

/// Agent executions as the witness counts them, per stage attempt — one job: a takeover requeues
/// the same job, a rollback or retry makes a new one. At most one execution of a job ran on an
/// instance the store did not declare dead while it held that job (an `instance_dead` event naming
/// both); every other ran on an instance so declared. Every agent stage of a done task completed
/// at least once. Returns how many stage attempts ran more than once.
fn check_agents(
    agents: &[AgentExec],
    details: &BTreeMap<String, Value>,
    chaos: &Chaos,
    violations: &mut Vec<String>,
) -> usize {
    let mut per_job: BTreeMap<(&str, &str, Option<i64>), Vec<&AgentExec>> = BTreeMap::new();
    for exec in agents {
        if exec.job.is_none() {
            violations.push(format!("an agent execution names no job in its run directory: {}", exec.run_dir));
        }
        per_job.entry((&exec.work_item, &exec.stage, exec.job)).or_default().push(exec);
    }
    let mut repeated = 0;
    for ((work_item, stage, job), execs) in &per_job {
        if execs.len() < 2 {
            continue;
        }
        repeated += 1;
        let declared: BTreeSet<(&str, i64)> =
            details.get(*work_item).map(|d| dead_declarations(d).collect()).unwrap_or_default();
        let on_live: Vec<&&AgentExec> = execs
            .iter()
            .filter(|e| {
                let instance = instance_of(&e.run_dir).unwrap_or("?");
                !e.job.is_some_and(|job| declared.contains(&(instance, job)))
            })
            .collect();
        if on_live.len() > 1 {
            let list: Vec<String> = execs
                .iter()
                .map(|e| format!("{} attempt {} run {} pid {} ended {}", e.run_dir, e.attempt, e.run, e.pid, e.ended))
                .collect();
            violations.push(format!(
                "{work_item} {stage} job {job:?} ran {} times, {} of them on an instance not declared dead \
                 (declared: {declared:?}; silenced by the test: {:?}):\n    {}",
                execs.len(),
                on_live.len(),
                chaos.done.iter().map(|d| d.instance).collect::<BTreeSet<_>>(),
                list.join("\n    ")
            ));
        }
    }
    for (id, detail) in details {
        if detail["state"]["stage"] != "done" {
            continue;
        }
        for stage in AGENT_STAGES {
            if !agents.iter().any(|a| &a.work_item == id && a.stage == *stage && a.ended) {
                violations.push(format!("{id} is done, but no {stage} agent execution completed"));
            }
        }
    }
    repeated
}

/// One repository's main against the witness of its moves and the store: every move a single
/// fast-forward commit pushed once, in order, from the initial commit to main; main holds exactly
/// the tasks the store says were merged (every done task among them), each in one commit. Returns
/// how many commits landed.
fn check_main(
    checkout: &Path,
    witness: &Path,
    prefix: &str,
    tasks: &[&Value],
    details: &BTreeMap<String, Value>,
    violations: &mut Vec<String>,
) -> usize {
    let commits = main_commits(checkout);
    let moves: Vec<(String, String)> = std::fs::read_to_string(witness.join(MAIN_LOG))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(old, new)| (old.to_string(), new.to_string())))
        .collect();
    let landed: Vec<&(String, String)> = commits[1..].iter().collect();
    let expected: Vec<(String, String)> =
        commits.windows(2).map(|pair| (pair[0].0.clone(), pair[1].0.clone())).collect();
    if moves != expected {
        violations.push(format!(
            "{prefix}: the remote's main moved {} times, not once per landed commit ({}): moves {moves:#?}, \
             commits {commits:#?}",
            moves.len(),
            landed.len()
        ));
    }
    let mut on_main: BTreeMap<String, usize> = BTreeMap::new();
    for (_, subject) in &landed {
        let ids: Vec<String> = match subject.strip_prefix("Merge queue batch: ") {
            Some(ids) => ids.split(", ").map(str::to_string).collect(),
            None => vec![subject.split([' ', ':']).next().unwrap_or("").to_string()],
        };
        for id in ids {
            *on_main.entry(id).or_default() += 1;
        }
    }
    for (id, n) in &on_main {
        if *n != 1 {
            violations.push(format!("{id} is on main {n} times"));
        }
    }
    let merged: BTreeSet<String> = tasks
        .iter()
        .map(|t| id_of(t))
        .filter(|id| details[id]["timeline"].as_array().into_iter().flatten().any(|e| e["kind"] == "merged"))
        .collect();
    let main_ids: BTreeSet<String> = on_main.keys().cloned().collect();
    if main_ids != merged {
        violations.push(format!(
            "{prefix}: main holds {:?} that the store did not merge, and lacks {:?} that it merged",
            main_ids.difference(&merged).collect::<Vec<_>>(),
            merged.difference(&main_ids).collect::<Vec<_>>()
        ));
    }
    for task in tasks.iter().filter(|t| stage_of(t) == "done") {
        if !main_ids.contains(&id_of(task)) {
            violations.push(format!("{} is done but not on main", id_of(task)));
        }
    }
    landed.len()
}
