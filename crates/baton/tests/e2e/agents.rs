//! Agent supervision end to end: budgets (stop mid-run, park, resume), provider quota pauses,
//! the retry backoff schedule, and the scrubbed agent environment.

use crate::support::{Env, all_done, engine_for, wait_for};
use baton_domain::Hold;
use baton_engine::Input;
use baton_store::{JobStatus, TaskKey};
use std::time::{Duration, Instant};

const PRICEY: &str = r#"
[[task]]
match = "pricey"
[[task.step]]
stage = "development"
run = 1
actions = [
  { progress = { message = "turn 1", input_tokens = 1000, output_tokens = 100, cost_usd = 0.3 } },
  { sleep_ms = 300 },
  { progress = { message = "turn 2", input_tokens = 2000, output_tokens = 200, cost_usd = 0.6 } },
  { sleep_ms = 300 },
  { progress = { message = "turn 3", input_tokens = 3000, output_tokens = 300, cost_usd = 0.9 } },
  { sleep_ms = 300 },
  { progress = { message = "turn 4", input_tokens = 4000, output_tokens = 400, cost_usd = 1.2 } },
  { sleep_ms = 20000 },
  { progress = { message = "turn 5", input_tokens = 5000, output_tokens = 500, cost_usd = 1.5 } },
]
"#;

// A run that crosses the per-task cap is stopped mid-run (long before its 20 s sleep ends), the
// task parks `paused_budget`, no further agent starts; raising the cap and resuming finishes it.
#[test]
fn budget_cap_stops_the_agent_mid_run_and_resume_finishes() {
    let env = Env::with_config(PRICEY, "", "[budgets]\ntask_usd = 1.0\n");
    let id = env.add_task("pricey change");
    let _server = env.serve(0);
    let tasks = env.drive(Duration::from_secs(90), |tasks| tasks[0]["state"]["hold"]["kind"] == "paused_budget");
    assert!(tasks[0]["state"]["hold"]["reason"].as_str().unwrap().contains("budget"), "{:#}", tasks[0]);
    let runs = |env: &Env| env.json(&["task", "show", &id])["agent_runs"].as_array().unwrap().clone();
    let before = runs(&env);
    let stopped = before.last().unwrap();
    assert_eq!(stopped["stage"], "development");
    let cost = stopped["cost_usd"].as_f64().unwrap();
    // Stopped mid-run: it reached the cap (turn 4, $1.20) but never turn 5 ($1.50), which follows
    // a 20 s sleep; and it did not end by itself.
    assert!((1.0..1.5).contains(&cost), "the stopped run keeps its live cost: {cost}");
    assert_eq!(stopped["status"], "stopped", "the agent should have been stopped, not finished: {stopped:#}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&env).len(), before.len(), "an agent started while paused");
    // Resuming without raising the cap parks again at once, without starting an agent.
    assert!(env.run(&["task", "resume", &id]).status.success());
    env.drive(Duration::from_secs(30), |t| t[0]["state"]["hold"]["kind"] == "paused_budget");
    assert_eq!(runs(&env).len(), before.len());
    assert!(env.run(&["budget", "set", "--task", &id, "--usd", "10"]).status.success());
    assert!(env.run(&["task", "resume", &id]).status.success());
    env.drive(Duration::from_secs(90), all_done);
}

const FLAKY: &str = r#"
[[task]]
match = "flaky"
[[task.step]]
stage = "development"
actions = [{ fail = "the compiler exploded" }]
[[task]]
match = "limited"
[[task.step]]
stage = "development"
run = 1
actions = [{ quota = { message = "Claude usage limit reached" } }]
"#;

// Failed runs retry after 10 s · 2^(n−1) (±10 %) on the engine's clock, then the task is blocked
// with the last failure; the fake clock makes the schedule instant and exact to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_backoff_schedule_then_block() {
    let (env, engine, clock) = engine_for(FLAKY).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(engine.clone().run(stop_rx));
    let task = engine.create_task(env.request("flaky change")).await.unwrap();
    let key = TaskKey::Id(task.id);
    wait_for(&engine, &key, |t| t.state.hold == Hold::AwaitingApproval).await;
    engine.submit(&key, Input::Approve, "test", None).await.unwrap();
    for attempt in 2..=3u32 {
        let t = wait_for(&engine, &key, |t| t.state.stage == "development" && t.state.attempt == attempt).await;
        let jobs = engine.store().jobs_for_task(t.id).await.unwrap();
        let failed = jobs.iter().rev().find(|j| j.status == JobStatus::Failed).unwrap();
        let next = jobs.last().unwrap();
        let delay = next.available_at_ms - failed.finished_at_ms.unwrap();
        let expected = 10_000 * 2i64.pow(attempt - 2);
        assert!((expected * 9 / 10..=expected * 11 / 10).contains(&delay), "retry {attempt}: delay {delay} ms");
        // Nothing runs before its time.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(engine.store().job(next.id).await.unwrap().unwrap().status, JobStatus::Queued);
        clock.advance_ms(delay + 1);
        engine.wake();
    }
    let blocked = wait_for(&engine, &key, |t| matches!(t.state.hold, Hold::Blocked { .. })).await;
    assert!(blocked.state.failure.as_deref().unwrap().contains("the compiler exploded"), "{:?}", blocked.state);
    let events = engine.store().events(Some(task.id), 0, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "job_finished" && e.message.contains("blocked")));
    let _ = stop_tx.send(true);
}

// A usage-limit ending parks the task `paused_quota` without using up an attempt, and the engine
// resumes it by itself when the backoff has passed on its clock; the stage then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_pause_resumes_automatically_without_using_an_attempt() {
    let (env, engine, clock) = engine_for(FLAKY).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(engine.clone().run(stop_rx));
    let task = engine.create_task(env.request("limited change")).await.unwrap();
    let key = TaskKey::Id(task.id);
    wait_for(&engine, &key, |t| t.state.hold == Hold::AwaitingApproval).await;
    engine.submit(&key, Input::Approve, "test", None).await.unwrap();
    let paused = wait_for(&engine, &key, |t| matches!(t.state.hold, Hold::PausedQuota { .. })).await;
    let Hold::PausedQuota { resume_at_ms, reason } = paused.state.hold.clone() else { unreachable!() };
    assert!(reason.contains("usage limit"), "{reason}");
    assert_eq!(paused.state.attempt, 1, "a quota pause must not use an attempt");
    let wait_ms = resume_at_ms - clock.now();
    assert!((59_000..=61_000).contains(&wait_ms), "first quota backoff is 60 s, got {wait_ms} ms");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(engine.store().task(&key).await.unwrap().unwrap().state.hold, Hold::PausedQuota { .. }));
    clock.advance_ms(wait_ms + 1);
    let moved = wait_for(&engine, &key, |t| t.state.stage != "development" && t.state.stage != "analysis").await;
    assert_eq!(moved.state.quota_pauses, 0);
    let dev_jobs: Vec<_> =
        engine.store().jobs_for_task(task.id).await.unwrap().into_iter().filter(|j| j.stage == "development").collect();
    assert!(
        dev_jobs.iter().all(|j| j.attempt == 1),
        "attempts: {:?}",
        dev_jobs.iter().map(|j| j.attempt).collect::<Vec<_>>()
    );
    let _ = stop_tx.send(true);
}

// An agent's environment holds only the minimal set, the configured pass-through names and
// Baton's context variables: the API token and other secrets of Baton's own environment never.
#[test]
fn agent_environment_is_scrubbed() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("env.txt");
    // The dump lies outside the worktree: the sandbox must let the agent write there.
    let agent = format!(
        "[agents.developer]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", \"env > {}\"]\n\n\
         [sandbox]\nwritable = [\"{}\"]\n",
        dump.display(),
        tmp.path().display()
    );
    let env = Env::with_config("", "", &agent);
    let config = std::fs::read_to_string(env.config())
        .unwrap()
        .replace("[server]\n", "[server]\nagent_env = [\"ALLOWED_VAR\"]\n");
    std::fs::write(env.config(), config).unwrap();
    env.add_task("env check");
    let mut command = env.command();
    command
        .arg("serve")
        .env("BATON_API_TOKEN", "sekret-api-token")
        .env("GITHUB_TOKEN", "ghp_sekret")
        .env("TELEGRAM_BOT_TOKEN", "tg-sekret")
        .env("ALLOWED_VAR", "visible")
        .stderr(std::process::Stdio::null());
    let _server = crate::support::Server { child: command.spawn().unwrap() };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dump.exists() || std::fs::read_to_string(&dump).unwrap().is_empty() {
        env.play_human(&env.tasks());
        assert!(Instant::now() < deadline, "the developer agent never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&dump).unwrap();
    for secret in ["sekret-api-token", "ghp_sekret", "tg-sekret", "test-token"] {
        assert!(!text.contains(secret), "secret {secret} leaked into the agent environment:\n{text}");
    }
    assert!(text.contains("ALLOWED_VAR=visible"), "{text}");
    let allowed =
        ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM", "ALLOWED_VAR", "PWD", "SHLVL", "_", "OLDPWD"];
    // Set by the sandbox: git objects of the agent's `git add` go to its run directory.
    let sandbox = ["GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"];
    for line in text.lines() {
        let name = line.split('=').next().unwrap();
        assert!(
            allowed.contains(&name) || sandbox.contains(&name) || name.starts_with("BATON_") && !name.contains("TOKEN"),
            "unexpected variable {name}"
        );
    }
}
