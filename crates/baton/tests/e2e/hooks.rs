//! Workspace hooks (`[repos.hooks]`), `BATON_PORT` and the task's ids in hooks and agents, and the
//! `[features]` kill switches (SPEC §5, §7): real git repositories, the real binary, script agents.

use crate::support::{ConfigExtra, Env, engine_with_features, git, wait_for};
use baton_domain::{Hold, JobOutcome};
use baton_engine::{Feature, FeatureScope, Features};
use baton_store::{Claim, JobStatus, LeaseOutcome, TaskKey, task_holder};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// A hook that appends its name and what it was told to `<root>/hooks.log`.
fn logging_hook(name: &str) -> String {
    format!(
        r#"{name} = ["sh", "-c", "echo \"{name} $BATON_TASK_ID $BATON_WORK_ITEM $BATON_REPO $BATON_STAGE $BATON_ATTEMPT $BATON_PORT $BATON_WORKTREE\" >> {{root}}/hooks.log"]"#
    )
}

/// One line of `hooks.log`.
#[derive(Debug, Clone)]
struct HookLine {
    hook: String,
    task_id: String,
    work_item: String,
    repo: String,
    stage: String,
    port: Option<u16>,
    worktree: String,
}

fn hook_lines(root: &Path) -> Vec<HookLine> {
    let text = std::fs::read_to_string(root.join("hooks.log")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            // before_remove runs outside an attempt: no port, so one field fewer.
            let (port, worktree) = match f.len() {
                8 => (f[6].parse().ok(), f[7]),
                7 => (None, f[6]),
                _ => panic!("unexpected hooks.log line: {line:?}"),
            };
            HookLine {
                hook: f[0].into(),
                task_id: f[1].into(),
                work_item: f[2].into(),
                repo: f[3].into(),
                stage: f[4].into(),
                port,
                worktree: worktree.into(),
            }
        })
        .collect()
}

/// Polls `baton task list` until `done` holds (never approving or confirming anything).
fn wait_tasks(env: &Env, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = env.tasks();
        if done(&tasks) {
            return tasks;
        }
        if Instant::now() >= deadline {
            // What the server said tells why nothing moved (it never started, or it stalled).
            let logs: Vec<String> = std::fs::read_dir(&env.root)
                .map(|dir| dir.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("serve-")))
                .map(|p| format!("{}:\n{}", p.display(), std::fs::read_to_string(&p).unwrap_or_default()))
                .collect();
            panic!("timed out; tasks: {tasks:#?}\nserver logs:\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn hold(task: &Value) -> &str {
    task["state"]["hold"]["kind"].as_str().unwrap_or("none")
}

fn timeline(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["task", "show", id])["timeline"].as_array().unwrap().clone()
}

/// `.env` files stay out of commits, as in a real project.
fn ignore_env_files(project: &Path) {
    std::fs::write(project.join(".gitignore"), "__pycache__/\n.env\n").unwrap();
    git(project, &["commit", "-q", "-am", "Ignore .env"]);
}

// `after_create` copies a `.env` into the new worktree and the agent reads it; every hook and the
// agent get the task's ids, and `BATON_PORT` is one port per attempt shared by its hooks and agent;
// `before_remove` runs when the finished task's worktree goes; each run is on the timeline.
#[test]
fn hooks_copy_an_env_file_and_share_the_ids_and_port_with_the_agent() {
    let script = r#"
[[task]]
match = "Hooked"
[[task.step]]
stage = "development"
actions = [
  { run = ["sh", "-c", "mkdir -p docs && { echo \"env $(cat .env)\"; echo \"port $BATON_PORT\"; echo \"task $BATON_TASK_ID $BATON_REPO\"; } > docs/agent-saw.txt"] },
]
"#;
    let repo = [
        "[repos.hooks]".to_string(),
        logging_hook("before_run"),
        logging_hook("after_run"),
        logging_hook("before_remove"),
    ]
    .join("\n")
        + "\n"
        + &logging_hook("after_create")
            .replace("[\"sh\", \"-c\", \"", "[\"sh\", \"-c\", \"cp {root}/fixture.env .env && ");
    let env = Env::with_extra(script, &ConfigExtra { repo: &repo, ..ConfigExtra::default() });
    ignore_env_files(&env.project());
    std::fs::write(env.root.join("fixture.env"), "SAMPLE_SETTING=hooked-42\n").unwrap();
    let _server = env.serve(1);
    let id = env.add_task("Hooked task");
    env.drive(Duration::from_secs(180), crate::support::all_done);
    let task_id = env.json(&["task", "show", &id])["task"]["id"].as_i64().unwrap().to_string();
    // The worktree's removal follows the task's end (an outbox effect).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hook_lines(&env.root).iter().any(|l| l.hook == "before_remove") {
        assert!(Instant::now() < deadline, "before_remove never ran: {:#?}", hook_lines(&env.root));
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = hook_lines(&env.root);
    let worktree = env.root.join("data/worktrees/demo").join(&id).display().to_string();
    for line in &lines {
        assert_eq!((&line.task_id, &line.work_item, &line.repo), (&task_id, &id, &"demo".to_string()), "{line:?}");
        assert_eq!(line.worktree, worktree, "{line:?}");
        assert_eq!(line.port.is_some(), line.hook != "before_remove", "{line:?}");
    }
    let created: Vec<&HookLine> = lines.iter().filter(|l| l.hook == "after_create").collect();
    assert_eq!(created.len(), 1, "the worktree is created once: {lines:#?}");
    assert_eq!(created[0].stage, "analysis");
    let agent_stages = ["analysis", "architecture", "development", "review", "testing"];
    for stage in agent_stages {
        let port = |hook: &str| {
            let found: Vec<Option<u16>> =
                lines.iter().filter(|l| l.hook == hook && l.stage == stage).map(|l| l.port).collect();
            assert_eq!(found.len(), 1, "{hook} once for {stage}: {lines:#?}");
            found[0]
        };
        assert_eq!(port("before_run"), port("after_run"), "one port per attempt ({stage})");
    }
    // The agent saw the copied file, the attempt's port and the task's ids (its record is merged).
    let saw = git(&env.project(), &["show", "main:docs/agent-saw.txt"]);
    let dev_port = lines.iter().find(|l| l.hook == "before_run" && l.stage == "development").unwrap().port.unwrap();
    assert_eq!(saw, format!("env SAMPLE_SETTING=hooked-42\nport {dev_port}\ntask {task_id} demo"));
    let out = std::process::Command::new("git").args(["show", "main:.env"]).current_dir(env.project()).output();
    assert!(!out.unwrap().status.success(), "the copied .env must not be committed");
    // Each hook run is on the timeline with its name, exit and duration.
    let events = timeline(&env, &id);
    let hooks: Vec<&Value> = events.iter().filter(|e| e["kind"] == "hook").collect();
    assert!(hooks.len() > 2 * agent_stages.len(), "after_create and both hooks of each agent run: {hooks:#?}");
    let first = hooks.iter().find(|e| e["detail"]["hook"] == "after_create").expect("after_create on the timeline");
    assert_eq!(first["detail"]["exit"], 0);
    assert!(first["detail"]["ms"].is_i64() && first["message"].as_str().unwrap().contains("passed"), "{first:#?}");
}

// A failing `before_run` fails the attempt before the agent starts, with the hook's name and output
// tail in the reason; the attempt is retried like any failure and the task blocks after the last.
#[test]
fn failing_before_run_fails_the_attempt_with_its_output_tail() {
    let repo =
        "[repos.hooks]\nbefore_run = [\"sh\", \"-c\", \"echo preparing; echo database-not-reachable >&2; exit 3\"]\n";
    let env = Env::with_extra("", &ConfigExtra { limits: "retry_max = 2", repo, ..ConfigExtra::default() });
    let _server = env.serve(1);
    let id = env.add_task("Broken hook");
    let tasks = wait_tasks(&env, Duration::from_secs(60), |t| hold(&t[0]) == "blocked");
    let reason = tasks[0]["state"]["hold"]["reason"].as_str().unwrap();
    assert!(reason.contains("before_run") && reason.contains("database-not-reachable"), "{reason}");
    let detail = env.json(&["task", "show", &id]);
    assert!(detail["agent_runs"].as_array().unwrap().is_empty(), "no agent may start: {detail:#?}");
    let jobs = detail["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "two attempts (retry_max = 2): {jobs:#?}");
    assert!(jobs.iter().all(|j| j["status"] == "failed"), "{jobs:#?}");
    let failed: Vec<&Value> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "hook" && e["detail"]["hook"] == "before_run")
        .collect();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(failed.iter().all(|e| e["detail"]["exit"] == 3 && e["detail"]["ok"] == false), "{failed:#?}");
    assert!(failed[0]["detail"]["tail"].as_str().unwrap().contains("database-not-reachable"), "{failed:#?}");
}

// `[features] hooks = false`: configured hooks do not run and nothing about them is recorded; the
// stage runs as it would without hooks.
#[test]
fn hooks_switched_off_do_not_run() {
    let repo = ["[repos.hooks]".to_string(), logging_hook("after_create"), logging_hook("before_run")].join("\n");
    let env = Env::with_extra(
        "",
        &ConfigExtra { repo: &repo, sections: "[features]\nhooks = false\n", ..ConfigExtra::default() },
    );
    let _server = env.serve(1);
    let id = env.add_task("Unhooked");
    wait_tasks(&env, Duration::from_secs(60), |t| hold(&t[0]) == "awaiting_approval");
    assert!(!env.root.join("hooks.log").exists(), "a hook ran: {:#?}", hook_lines(&env.root));
    let detail = env.json(&["task", "show", &id]);
    assert_eq!(detail["agent_runs"].as_array().unwrap().len(), 1, "the analysis agent ran");
    let events = detail["timeline"].as_array().unwrap();
    assert!(!events.iter().any(|e| e["kind"] == "hook" || e["detail"]["hook"].is_string()), "{events:#?}");
}

// A gate switched off for one repository is skipped there (on the timeline, not silently) and the
// task passes the stage; in another repository the same gate still runs and fails.
#[test]
fn gate_switched_off_for_one_repo_still_runs_for_another() {
    let red = r#"["sh", "-c", "echo tests-are-red; exit 1"]"#;
    let sections = format!(
        "[[repos]]\nname = \"other\"\npath = \"project2\"\nprefix = \"OTH\"\ntest = {red}\n\n\
         [features]\ntests_passed = {{ enabled = false, repos = [\"demo\"] }}\n\n\
         [[pipeline.stages]]\nname = \"check\"\nactor = \"none\"\ngates = [\"tests_passed\"]\non_gate_fail = \"block\"\n"
    );
    let env = Env::with_extra("", &ConfigExtra { test: Some(red), sections: &sections, ..ConfigExtra::default() });
    git(&env.root, &["clone", "-q", "project", "project2"]);
    let _server = env.serve(1);
    let skipped = env.add_task("Skipped here");
    let out = env.run(&["task", "add", "--repo", "other", "--title", "Checked there"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let checked = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let tasks = wait_tasks(&env, Duration::from_secs(60), |tasks| {
        let of = |id: &str| tasks.iter().find(|t| t["work_item_id"] == id).cloned().unwrap_or_default();
        crate::support::stage(&of(&skipped)) == "done" && hold(&of(&checked)) == "blocked"
    });
    let demo_events = timeline(&env, &skipped);
    let skip = demo_events.iter().find(|e| e["kind"] == "gate_skipped").expect("the skip is recorded");
    assert!(skip["message"].as_str().unwrap().contains("tests_passed skipped"), "{skip:#?}");
    assert!(!demo_events.iter().any(|e| e["kind"] == "gate"), "the gate ran in demo: {demo_events:#?}");
    let other = tasks.iter().find(|t| t["work_item_id"] == checked.as_str()).unwrap();
    assert!(other["state"]["hold"]["reason"].as_str().unwrap().contains("tests-are-red"), "{other:#?}");
    assert!(!timeline(&env, &checked).iter().any(|e| e["kind"] == "gate_skipped"));
}

/// A task whose first job finished without its result being applied (the applying process died).
async fn unapplied(env: &Env, engine: &baton_engine::Engine, now_ms: i64) -> TaskKey {
    let task = engine.create_task(env.request("lost result")).await.unwrap();
    let claim = Claim { owner: "dead".into(), now_ms, running_max: 4, running_per_repo_max: 4, ..Claim::default() };
    let job = engine.store().claim_job(&claim).await.unwrap().unwrap();
    let result = serde_json::json!({ "outcome": JobOutcome::Completed { verdicts: vec![] } });
    assert!(engine.store().close_job(job.id, JobStatus::Done, result, now_ms).await.unwrap());
    TaskKey::Id(task.id)
}

// The reconciler switched off, everywhere or for the task's repository, leaves a finished but
// unapplied job alone past its grace period (what Baton does without a reconciler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_switched_off_does_not_run() {
    for scope in [FeatureScope::everywhere(false), FeatureScope { enabled: false, repos: Some(vec!["demo".into()]) }] {
        let features = Features::all_on().with(Feature::Reconciler, scope.clone());
        let (env, engine, clock) = engine_with_features("", features).await;
        let key = unapplied(&env, &engine, clock.now()).await;
        let before = engine.store().task(&key).await.unwrap().unwrap();
        clock.advance_ms(engine.settings().limits.reconcile_grace_secs as i64 * 1000 + 5_000);
        baton_engine::reconciler::tick(&engine).await;
        let after = engine.store().task(&key).await.unwrap().unwrap();
        assert_eq!((after.version, after.state.hold.clone()), (before.version, Hold::None), "{scope:?}");
    }
    // Switched off for another repository only, it still runs here.
    let features = Features::all_on()
        .with(Feature::Reconciler, FeatureScope { enabled: false, repos: Some(vec!["other".into()]) });
    let (env, engine, clock) = engine_with_features("", features).await;
    let key = unapplied(&env, &engine, clock.now()).await;
    clock.advance_ms(engine.settings().limits.reconcile_grace_secs as i64 * 1000 + 5_000);
    baton_engine::reconciler::tick(&engine).await;
    wait_for(&engine, &key, |t| t.state.hold == Hold::AwaitingApproval).await;
}

// The reaper's lease reclaim switched off for `demo` leaves a dead holder's lease there; the lease
// of another repository is still reclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_reclaim_switched_off_keeps_the_lease() {
    let scope = FeatureScope { enabled: false, repos: Some(vec!["demo".into()]) };
    let (env, engine, clock) =
        engine_with_features("", Features::all_on().with(Feature::ReaperLeaseReclaim, scope)).await;
    let dead = engine.create_task(env.request("dead holder")).await.unwrap();
    engine.submit(&TaskKey::Id(dead.id), baton_engine::Input::Stop, "test", None).await.unwrap();
    let ttl = 3_600_000;
    let taken = engine.store().acquire_lease("merge:demo", &task_holder(dead.id), ttl, clock.now()).await.unwrap();
    assert!(matches!(taken, LeaseOutcome::Acquired { .. }));
    let other = engine.store().acquire_lease("merge:other", "task:999999", ttl, clock.now()).await.unwrap();
    assert!(matches!(other, LeaseOutcome::Acquired { .. }));
    baton_engine::reaper::tick(&engine).await;
    let names: Vec<String> = engine.store().leases().await.unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["merge:demo"], "demo's lease stays, other's is reclaimed");
}
