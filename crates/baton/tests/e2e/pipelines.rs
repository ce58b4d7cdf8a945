//! Per-repository pipelines and per-stage actors end to end: two repositories, one on a short
//! named pipeline and one on the default, both reaching done; a stage's own adapter, model and
//! prompt template reaching the agent's command line and prompt; a stage's own timeouts and budget
//! stopping its agent. Real git repositories, the real binary, script agents.

use crate::support::{ConfigExtra, Env, all_done, git, stage};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A stand-in `claude`: prints each argument on a line of its own, changes a file of the worktree,
/// then prints one successful Claude-shaped result (the prompt arrives on stdin and is recorded by
/// Baton in the run).
const FAKE_CLAUDE: &str = "#!/bin/sh\nfor arg in \"$@\"; do echo \"argv: $arg\"; done\ncat > /dev/null\n\
echo 'made by the lite stage' > lite-change.txt\n\
echo '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"built\",\"session_id\":\"s-1\",\"num_turns\":1}'\n";

/// A pipeline without analysis, architecture, review or testing: the lite repository's.
const LITE: &str = r#"
[[pipelines.lite.stages]]
name = "development"
actor = { kind = "agent", role = "developer" }
gates = ["tests_passed"]
adapter = "claude"
model = "lite-model-7"
prompt_template = "lite-dev.md.j2"

[[pipelines.lite.stages]]
name = "deploy_staging"
actor = "none"
gates = ["mergeable"]
on_gate_fail = { kind = "rollback", to = "development" }

[[pipelines.lite.stages]]
name = "deploy"
actor = "deploy"
gates = ["deploy_status"]
on_gate_fail = "block"

[agents.developer]
adapter = "script"
script = "script.toml"
program = "{root}/fake-claude"
"#;

/// The task's agent runs, from `task show`.
fn runs(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["task", "show", id])["agent_runs"].as_array().unwrap().clone()
}

/// The stages a task went through, from its timeline (in order, without repeats).
fn stages_seen(env: &Env, id: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for event in env.json(&["task", "show", id])["timeline"].as_array().unwrap() {
        let Some(stage) = event["stage"].as_str() else { continue };
        if seen.last().map(String::as_str) != Some(stage) && !seen.iter().any(|s| s == stage) {
            seen.push(stage.to_string());
        }
    }
    seen
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// Repository `lite` names `[pipelines.lite]` (development → deploy_staging → deploy); `demo` keeps
// the default pipeline. Both tasks reach done, each through its own stages only; the lite
// development stage runs its own adapter (claude), model and prompt template, which show in the
// agent's command line, its recorded prompt and its run record.
#[test]
fn two_repositories_each_run_their_own_pipeline_and_stage_actor() {
    let env = Env::with_extra("", &ConfigExtra { sections: LITE, ..ConfigExtra::default() });
    let lite = env.root.join("lite");
    git(&env.root, &["clone", "-q", &env.project().display().to_string(), &lite.display().to_string()]);
    let config = read(&env.config()).replace(
        "[agents.default]",
        "[[repos]]\nname = \"lite\"\npath = \"lite\"\nprefix = \"LITE\"\npipeline = \"lite\"\n\
         test = [\"python3\", \"-m\", \"unittest\", \"-q\"]\n\n[agents.default]",
    );
    std::fs::write(env.config(), config).unwrap();
    std::fs::write(
        env.root.join("lite-dev.md.j2"),
        "LITE TEMPLATE for {{ task.work_item }}: {{ task.title }} (stage {{ stage }}, role {{ role }})\n",
    )
    .unwrap();
    let fake = env.root.join("fake-claude");
    std::fs::write(&fake, FAKE_CLAUDE).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let check = env.run(&["config", "check"]);
    assert!(check.status.success(), "config check: {}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("pipeline of lite: lite"));

    let _server = env.serve(1);
    let demo_id = env.add_task("Default pipeline change");
    let out = env.run(&["task", "add", "--repo", "lite", "--title", "Lite pipeline change"]);
    assert!(out.status.success(), "task add: {}", String::from_utf8_lossy(&out.stderr));
    let lite_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let tasks = env.drive(Duration::from_secs(120), |tasks| tasks.len() == 2 && all_done(tasks));
    assert!(tasks.iter().all(|t| stage(t) == "done"), "{tasks:#?}");

    assert_eq!(stages_seen(&env, &lite_id), ["development", "deploy_staging", "deploy", "done"]);
    let demo_stages = stages_seen(&env, &demo_id);
    for expected in ["analysis", "architecture", "development", "review", "testing", "deploy_staging", "deploy", "done"]
    {
        assert!(demo_stages.iter().any(|s| s == expected), "demo skipped {expected}: {demo_stages:?}");
    }

    // The lite stage's own actor: claude with the stage's model, the stage's template.
    let lite_runs = runs(&env, &lite_id);
    assert_eq!(lite_runs.len(), 1, "{lite_runs:#?}");
    let run = &lite_runs[0];
    assert_eq!((run["stage"].as_str(), run["adapter"].as_str()), (Some("development"), Some("claude")));
    assert_eq!(run["model"], "lite-model-7", "{run:#}");
    let run_dir = Path::new(run["log_path"].as_str().unwrap());
    let prompt = read(&run_dir.join("agent/prompt.md"));
    assert!(
        prompt.starts_with(&format!(
            "LITE TEMPLATE for {lite_id}: Lite pipeline change (stage development, role developer)"
        )),
        "{prompt}"
    );
    let stdout = read(&run_dir.join("stdout.log"));
    assert!(stdout.contains("argv: --model\nargv: lite-model-7\n"), "{stdout}");
    // The default repository's developer stage has no overrides: the role's script agent and
    // the role's built-in prompt.
    let demo_dev = runs(&env, &demo_id).into_iter().find(|r| r["stage"] == "development").unwrap();
    assert_eq!(demo_dev["adapter"], "script", "{demo_dev:#}");
    let demo_prompt = read(&Path::new(demo_dev["log_path"].as_str().unwrap()).join("agent/prompt.md"));
    assert!(!demo_prompt.contains("LITE TEMPLATE"), "{demo_prompt}");
}

const SLOW: &str = r#"
[[task]]
match = "slow"
[[task.step]]
stage = "development"
actions = [{ sleep_ms = 60000 }]
"#;

// A stage's `timeout_secs` kills its agent at the stage's own limit, far below `[limits]`'.
#[test]
fn a_stage_timeout_kills_a_slow_agent_at_its_own_limit() {
    let sections = "[[pipeline.stages]]\nname = \"development\"\nactor = { kind = \"agent\", role = \"developer\" }\n\
                    gates = [\"tests_passed\"]\ntimeout_secs = 2\n";
    let env = Env::with_extra(
        SLOW,
        &ConfigExtra { limits: "agent_timeout_secs = 600\nretry_max = 1", sections, ..ConfigExtra::default() },
    );
    let id = env.add_task("slow change");
    let started = Instant::now();
    let _server = env.serve(1);
    let deadline = started + Duration::from_secs(60);
    let run = loop {
        if let Some(run) = runs(&env, &id).into_iter().find(|r| !r["ended_at_ms"].is_null()) {
            break run;
        }
        assert!(Instant::now() < deadline, "the slow agent was never ended: {:#?}", runs(&env, &id));
        std::thread::sleep(Duration::from_millis(200));
    };
    let took_ms = run["ended_at_ms"].as_i64().unwrap() - run["started_at_ms"].as_i64().unwrap();
    assert!((1_500..20_000).contains(&took_ms), "killed after {took_ms} ms: {run:#}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("wall-clock timeout"), "{run:#}");
}

// A stage's `stall_timeout_secs` stops an agent that goes silent, far below `[limits]`' stall limit.
#[test]
fn a_stage_stall_timeout_stops_a_silent_agent() {
    let sections = "[[pipeline.stages]]\nname = \"development\"\nactor = { kind = \"agent\", role = \"developer\" }\n\
                    gates = [\"tests_passed\"]\nstall_timeout_secs = 2\n";
    let env = Env::with_extra(
        SLOW,
        &ConfigExtra { limits: "stall_timeout_secs = 600\nretry_max = 1", sections, ..ConfigExtra::default() },
    );
    let id = env.add_task("slow change");
    let _server = env.serve(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        if let Some(run) = runs(&env, &id).into_iter().find(|r| !r["ended_at_ms"].is_null()) {
            break run;
        }
        assert!(Instant::now() < deadline, "the silent agent was never stopped: {:#?}", runs(&env, &id));
        std::thread::sleep(Duration::from_millis(200));
    };
    let took_ms = run["ended_at_ms"].as_i64().unwrap() - run["started_at_ms"].as_i64().unwrap();
    assert!((1_500..20_000).contains(&took_ms), "stopped after {took_ms} ms: {run:#}");
    assert!(run["error"].as_str().unwrap_or_default().contains("no output"), "{run:#}");
}

const PRICEY: &str = r#"
[[task]]
match = "pricey"
[[task.step]]
stage = "development"
actions = [
  { progress = { message = "turn 1", input_tokens = 1000, output_tokens = 100, cost_usd = 0.3 } },
  { sleep_ms = 300 },
  { progress = { message = "turn 2", input_tokens = 2000, output_tokens = 200, cost_usd = 0.9 } },
  { sleep_ms = 20000 },
  { progress = { message = "turn 3", input_tokens = 3000, output_tokens = 300, cost_usd = 1.5 } },
]
"#;

// A stage's `budget_usd` caps one run of the stage: the agent is stopped once its live cost
// reaches the cap, and the task parks with the stage's cap as the reason.
#[test]
fn a_stage_budget_stops_its_agent_at_the_stage_cap() {
    let sections = "[[pipeline.stages]]\nname = \"development\"\nactor = { kind = \"agent\", role = \"developer\" }\n\
                    gates = [\"tests_passed\"]\nbudget_usd = 0.5\n";
    let env = Env::with_extra(PRICEY, &ConfigExtra { sections, ..ConfigExtra::default() });
    let id = env.add_task("pricey change");
    let _server = env.serve(1);
    let tasks = env.drive(Duration::from_secs(60), |tasks| tasks[0]["state"]["hold"]["kind"] == "paused_budget");
    let reason = tasks[0]["state"]["hold"]["reason"].as_str().unwrap();
    assert!(reason.contains("one development run") && reason.contains("$0.5000"), "{reason}");
    let run = runs(&env, &id).pop().unwrap();
    assert_eq!(run["status"], "stopped", "{run:#}");
    let cost = run["cost_usd"].as_f64().unwrap();
    assert!((0.5..1.5).contains(&cost), "stopped at turn 2, before turn 3: {cost}");
}
