//! The real agent CLIs inside Baton's pipeline, offline: `claude` runs every agent stage against
//! `baton mock-llm`; `codex` and `gemini` run the development stage; `baton demo --agent
//! claude|codex` reaches its three ends. Each checks that the tokens and cost Baton recorded are
//! what the CLI itself reported (or, for CLIs that report no cost, the pricing table's price), and
//! prints Baton's own overhead next to the CLI's time.
//!
//! The CLIs are looked for in `$BATON_CLI_DIR/node_modules/.bin` (default
//! `$HOME/.cache/baton/clis`, where `cargo xtask install-clis` puts them). A missing CLI skips the
//! test loudly, or fails it when `CI=true`.

use crate::support::{Env, Server, all_done, assert_each_main_commit_passes_tests, baton_exe, main_commits};
use baton_domain::Usage;
use baton_domain::pricing::PriceTable;
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The demo's mock scripts: their `DEMO-001` conversations carry "Add a multiply function".
const MOCK_CLAUDE: &str = include_str!("../../demo/mock-claude.toml");
const MOCK_CODEX: &str = include_str!("../../demo/mock-codex.toml");
const TICKET: &str = "Add a multiply function";
const PIPELINE_TIMEOUT_SECS: u64 = 300;

/// Gemini's side of the development stage: write the module and its test, run the tests, finish.
const MOCK_GEMINI: &str = r#"
[[conversation]]
name = "DEMO-001 development"
match = "DEMO-001 · development ·"
provider = "gemini"
[[conversation.turns]]
text = "Writing the module and its tests."
usage = { input = 5400, output = 900, cache_read = 12000, reasoning = 300 }
[[conversation.turns.tool_calls]]
name = "write_file"
arguments = { file_path = "{{cwd}}/mathkit/multiply.py", content = "def multiply(a, b):\n    return a * b\n" }
[[conversation.turns.tool_calls]]
name = "write_file"
arguments = { file_path = "{{cwd}}/tests/test_multiply.py", content = "import unittest\n\nfrom mathkit.multiply import multiply\n\n\nclass MultiplyTest(unittest.TestCase):\n    def test_multiply(self):\n        self.assertEqual(multiply(3, 4), 12)\n" }
[[conversation.turns]]
text = "Running the tests."
usage = { input = 300, output = 60, cache_read = 14000, reasoning = 40 }
[[conversation.turns.tool_calls]]
name = "run_shell_command"
arguments = { command = "python3 -m unittest -q" }
[[conversation.turns]]
text = "Done: multiply() and its test are in place and the suite passes."
usage = { input = 200, output = 140, cache_read = 14300 }
"#;

/// The pinned install of `name`, or `None` after a loud SKIPPED line (a failure when `CI=true`).
fn locate_cli(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BATON_CLI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/baton/clis"));
    let path = dir.join("node_modules/.bin").join(name);
    if path.is_file() {
        return Some(path);
    }
    let message = format!(
        "the `{name}` CLI is not installed at {}: run `cargo xtask install-clis` \
         (or set BATON_CLI_DIR to a directory holding node_modules/.bin/{name})",
        path.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "REAL-CLI TEST CANNOT RUN IN CI: {message}");
    // Straight to stderr so the harness does not hide it as the captured output of a passing test.
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!!!! SKIPPED real-CLI test: {message}\n");
    None
}

/// Starts `baton mock-llm --script <root>/<name>` and reads its URL from the first stdout line.
fn start_mock_llm(env: &Env, name: &str, script: &str) -> (Server, String) {
    let path = env.root.join(name);
    std::fs::write(&path, script).unwrap();
    let log = std::fs::File::create(env.root.join("mock-llm.log")).unwrap();
    let mut child = Command::new(baton_exe())
        .args(["mock-llm", "--listen", "127.0.0.1:0", "--script"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("baton mock-llm starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_string();
    (Server { child }, url)
}

/// The mock's request log, fetched over HTTP from `GET /_mock/requests`.
fn mock_requests(url: &str) -> Vec<Value> {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /_mock/requests HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    serde_json::from_str::<Value>(body).unwrap().as_array().unwrap().clone()
}

/// Replaces the environment's `[agents.default]` (the script agent) with `agents`.
fn set_default_agent(env: &Env, agents: &str) {
    let script_agent = "[agents.default]\nadapter = \"script\"\nscript = \"script.toml\"\n";
    let config = std::fs::read_to_string(env.config()).unwrap();
    assert!(config.contains(script_agent), "support::Env's config changed shape:\n{config}");
    std::fs::write(env.config(), config.replace(script_agent, agents)).unwrap();
}

fn cli_agent(role: &str, adapter: &str, program: &Path, model: &str, base_url: &str) -> String {
    format!(
        "[agents.{role}]\nadapter = \"{adapter}\"\nprogram = {}\nmodel = \"{model}\"\nbase_url = \"{base_url}\"\n",
        toml::Value::String(program.display().to_string())
    )
}

/// The stdout log of one agent run (`log_path` is its run directory).
fn stdout_log(run: &Value) -> String {
    let dir = PathBuf::from(run["log_path"].as_str().unwrap());
    std::fs::read_to_string(dir.join("stdout.log")).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok()).filter(Value::is_object).collect()
}

fn recorded_usage(run: &Value) -> Usage {
    let n = |key: &str| run[key].as_u64().unwrap_or_else(|| panic!("agent run without {key}: {run:#}"));
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_read_tokens: n("cache_read_tokens"),
        cache_write_tokens: n("cache_write_tokens"),
        reasoning_tokens: n("reasoning_tokens"),
    }
}

fn assert_cost(run: &Value, expected: f64) {
    let cost = run["cost_usd"].as_f64().unwrap_or_else(|| panic!("agent run has no cost: {run:#}"));
    assert!((cost - expected).abs() < 1e-9, "cost {cost} ≠ {expected} for {run:#}");
}

/// Checks one claude run against its final `result` line: tokens per `modelUsage` (and `usage`)
/// and `total_cost_usd`.
fn assert_claude_accounting(run: &Value) {
    let log = stdout_log(run);
    let result = json_lines(&log).into_iter().rev().find(|v| v["type"] == "result").expect("a result line");
    assert_eq!(result["is_error"], false, "{result:#}");
    let mut from_models = Usage::default();
    for figures in result["modelUsage"].as_object().unwrap().values() {
        let n = |key: &str| figures[key].as_u64().unwrap();
        from_models.input_tokens += n("inputTokens");
        from_models.output_tokens += n("outputTokens");
        from_models.cache_read_tokens += n("cacheReadInputTokens");
        from_models.cache_write_tokens += n("cacheCreationInputTokens");
    }
    let usage = &result["usage"];
    let from_usage = Usage {
        input_tokens: usage["input_tokens"].as_u64().unwrap(),
        output_tokens: usage["output_tokens"].as_u64().unwrap(),
        cache_read_tokens: usage["cache_read_input_tokens"].as_u64().unwrap(),
        cache_write_tokens: usage["cache_creation_input_tokens"].as_u64().unwrap(),
        reasoning_tokens: 0,
    };
    let recorded = recorded_usage(run);
    assert_eq!(recorded, from_models, "{} run: Baton's tokens vs claude's modelUsage", run["stage"]);
    assert_eq!(recorded, from_usage, "{} run: Baton's tokens vs claude's usage", run["stage"]);
    assert!(recorded.input_tokens > 0 && recorded.output_tokens > 0, "no usage recorded: {run:#}");
    assert_cost(run, result["total_cost_usd"].as_f64().unwrap());
}

/// One line per agent run: Baton's overhead for the job next to the time spent in the CLI.
fn print_overhead(label: &str, detail: &Value) {
    let jobs = detail["jobs"].as_array().unwrap();
    let mut out = std::io::stderr().lock();
    for run in detail["agent_runs"].as_array().unwrap() {
        let job = jobs.iter().find(|j| j["id"] == run["job_id"]).unwrap();
        let result = &job["result"];
        let cli_ms = run["ended_at_ms"].as_i64().unwrap() - run["started_at_ms"].as_i64().unwrap();
        let _ = writeln!(
            out,
            "OVERHEAD {label} {:<12} {:<7} run {:>5} ms · job wall {:>5} ms = external {:>5} ms + Baton {:>4} ms",
            run["stage"].as_str().unwrap(),
            run["adapter"].as_str().unwrap(),
            cli_ms,
            result["wall_ms"],
            result["external_ms"],
            result["overhead_ms"],
        );
    }
}

/// Files the ticket, runs `baton serve`, plays the human until done; returns `task show` JSON.
fn run_to_done(env: &Env) -> Value {
    let id = env.add_task(TICKET);
    assert_eq!(id, "DEMO-001", "the mock scripts are written for DEMO-001");
    let _server = env.serve(0);
    env.drive(Duration::from_secs(PIPELINE_TIMEOUT_SECS), |tasks| {
        let blocked = tasks.iter().find(|t| t["state"]["hold"]["kind"] == "blocked");
        assert!(blocked.is_none(), "a task was blocked: {blocked:#?}");
        all_done(tasks)
    });
    let project = env.project();
    let subjects: Vec<String> = main_commits(&project).into_iter().map(|(_, subject)| subject).collect();
    assert_eq!(subjects.last().map(String::as_str), Some("DEMO-001: Add a multiply function"), "{subjects:?}");
    assert!(project.join("mathkit/multiply.py").is_file(), "main lacks the developer's module");
    assert_each_main_commit_passes_tests(&project);
    env.json(&["task", "show", "DEMO-001"])
}

fn runs_of<'a>(detail: &'a Value, stage: &str) -> Vec<&'a Value> {
    detail["agent_runs"].as_array().unwrap().iter().filter(|r| r["stage"] == stage).collect()
}

// Every agent stage of the default pipeline is run by the real claude CLI against `baton
// mock-llm` (started as the subcommand): the ticket reaches done, main holds its squashed commit
// and passes the tests, and each run's tokens and cost equal claude's own result figures.
#[test]
fn real_cli_claude_runs_every_stage_and_its_usage_is_recorded_exactly() {
    let Some(claude) = locate_cli("claude") else { return };
    let env = Env::new("", "agent_timeout_secs = 240\nstall_timeout_secs = 120");
    let (_mock, url) = start_mock_llm(&env, "mock-claude.toml", MOCK_CLAUDE);
    let agent = cli_agent("default", "claude", &claude, "claude-sonnet-4-5", &url);
    set_default_agent(&env, &format!("{agent}allowed_tools = [\"Bash\"]\n"));
    let detail = run_to_done(&env);
    print_overhead("claude", &detail);
    for stage in ["analysis", "architecture", "development", "review", "testing"] {
        let runs = runs_of(&detail, stage);
        assert_eq!(runs.len(), 1, "{stage}: {runs:#?}");
        let run = runs[0];
        assert_eq!(run["adapter"], "claude");
        assert_eq!(run["model"], "claude-sonnet-4-5");
        assert_eq!(run["status"], "succeeded", "{run:#}");
        assert_claude_accounting(run);
    }
    // Every model request was answered from the script (a miss would be a 400 from the mock).
    let requests = mock_requests(&url);
    let models: Vec<&Value> =
        requests.iter().filter(|r| r["provider"] == "anthropic" && r["turn"].is_number()).collect();
    assert!(models.len() >= 10, "{requests:#?}");
    assert!(models.iter().all(|r| r["status"] == 200), "{models:#?}");
}

// The development stage run by the real codex CLI (the other stages by the script agent): the
// ticket reaches done, and the run's tokens are codex's `turn.completed` usage with cached input
// split out, priced from Baton's pricing table (codex reports no cost).
#[test]
fn real_cli_codex_develops_and_its_usage_is_priced_from_the_table() {
    let Some(codex) = locate_cli("codex") else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let script = baton_mock_llm::Script::from_toml(MOCK_CODEX).unwrap();
    let mock = runtime.block_on(baton_mock_llm::start(script, "127.0.0.1:0".parse().unwrap())).unwrap();
    let agent = cli_agent("developer", "codex", &codex, "gpt-5.5", &mock.base_url());
    let env = Env::with_config("", "agent_timeout_secs = 240", &agent);
    let detail = run_to_done(&env);
    print_overhead("codex", &detail);
    let runs = runs_of(&detail, "development");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = runs[0];
    assert_eq!((run["adapter"].as_str(), run["status"].as_str()), (Some("codex"), Some("succeeded")), "{run:#}");
    let mut expected = Usage::default();
    for event in json_lines(&stdout_log(run)).iter().filter(|e| e["type"] == "turn.completed") {
        let n = |key: &str| event["usage"][key].as_u64().unwrap_or(0);
        expected.input_tokens += n("input_tokens") - n("cached_input_tokens") - n("cache_write_input_tokens");
        expected.output_tokens += n("output_tokens");
        expected.cache_read_tokens += n("cached_input_tokens");
        expected.cache_write_tokens += n("cache_write_input_tokens");
        expected.reasoning_tokens += n("reasoning_output_tokens");
    }
    assert_eq!(recorded_usage(run), expected, "Baton's tokens vs codex's turn.completed");
    assert!(expected.cache_read_tokens > 0 && expected.input_tokens > 0, "{expected:?}");
    assert_eq!(run["model"], "gpt-5.5");
    // Baton's sandbox confined the run (bwrap inside the shim), with codex's own sandbox off: its
    // bubblewrap cannot start inside Baton's.
    let intent_file = Path::new(run["log_path"].as_str().unwrap()).join("intent.json");
    let intent: Value = serde_json::from_str(&std::fs::read_to_string(intent_file).unwrap()).unwrap();
    let argv: Vec<&str> = intent["argv"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(argv[0].ends_with("bwrap"), "{argv:?}");
    assert!(argv.windows(2).any(|w| w == ["-s", "danger-full-access"]), "{argv:?}");
    let priced = PriceTable::embedded().cost_usd("gpt-5.5", &expected).expect("gpt-5.5 is priced");
    assert_cost(run, priced.usd);
    let requests = mock.state().requests();
    let served: Vec<_> = requests.iter().filter(|r| r.turn.is_some()).map(|r| (r.turn, r.status)).collect();
    assert_eq!(served, [(Some(0), 200), (Some(1), 200), (Some(2), 200)], "codex's requests");
    drop(mock);
}

// The development stage run by the real gemini CLI (streaming): the ticket reaches done, and the
// run's tokens are gemini's own `result` stats (cached input split out, thinking counted as
// output), priced from Baton's pricing table (gemini reports no cost).
#[test]
fn real_cli_gemini_develops_and_its_usage_is_priced_from_the_table() {
    let Some(gemini) = locate_cli("gemini") else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let script = baton_mock_llm::Script::from_toml(MOCK_GEMINI).unwrap();
    let mock = runtime.block_on(baton_mock_llm::start(script, "127.0.0.1:0".parse().unwrap())).unwrap();
    let agent = cli_agent("developer", "gemini", &gemini, "gemini-2.5-pro", &mock.base_url());
    let env = Env::with_config("", "agent_timeout_secs = 240", &agent);
    let detail = run_to_done(&env);
    print_overhead("gemini", &detail);
    let runs = runs_of(&detail, "development");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = runs[0];
    assert_eq!((run["adapter"].as_str(), run["status"].as_str()), (Some("gemini"), Some("succeeded")), "{run:#}");
    let result = json_lines(&stdout_log(run)).into_iter().rev().find(|e| e["type"] == "result").expect("result");
    let mut expected = Usage::default();
    for stats in result["stats"]["models"].as_object().unwrap().values() {
        let n = |key: &str| stats[key].as_u64().unwrap_or(0);
        let thoughts = n("total_tokens") - n("input_tokens") - n("output_tokens");
        expected.input_tokens += n("input_tokens") - n("cached");
        expected.output_tokens += n("output_tokens") + thoughts;
        expected.cache_read_tokens += n("cached");
        expected.reasoning_tokens += thoughts;
    }
    assert_eq!(recorded_usage(run), expected, "Baton's tokens vs gemini's result stats: {result:#}");
    assert!(expected.cache_read_tokens > 0 && expected.reasoning_tokens > 0, "{expected:?}");
    let model = run["model"].as_str().unwrap();
    assert_eq!(model, "gemini-2.5-pro");
    let priced = PriceTable::embedded().cost_usd(model, &expected).expect("gemini-2.5-pro is priced");
    assert_cost(run, priced.usd);
    drop(mock);
}

/// Runs `baton demo --agent <agent> --yes` and checks the three tickets' ends.
fn demo_reaches_its_three_ends(agent: &str, cli: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let cli_dir = cli.parent().and_then(Path::parent).and_then(Path::parent).unwrap();
    let out = Command::new(baton_exe())
        .args(["demo", "--yes", "--agent", agent, "--dir"])
        .arg(&dir)
        .env_remove("BATON_CONFIG")
        .env("BATON_CLI_DIR", cli_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let context = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "demo --agent {agent} failed ({:?}):\n{context}", out.status);
    assert!(stdout.contains(&format!("the real {agent} CLI")), "{context}");
    let config = std::fs::read_to_string(dir.join("baton.toml")).unwrap();
    assert!(config.contains(&format!("adapter = \"{agent}\"")), "{config}");
    let project = dir.join("project");
    let mut merged: Vec<String> = main_commits(&project).into_iter().skip(1).map(|(_, s)| s).collect();
    merged.sort();
    assert_eq!(
        merged,
        ["DEMO-001: Add a multiply function", "DEMO-002: Add a safe divide function", "DEMO-003: Add a power function"]
    );
    assert_each_main_commit_passes_tests(&project);
    let show = |id: &str| -> Value {
        let out = Command::new(baton_exe())
            .args(["--json", "--config"])
            .arg(dir.join("baton.toml"))
            .args(["task", "show", id])
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for id in ["DEMO-001", "DEMO-002", "DEMO-003"] {
        let detail = show(id);
        assert_eq!(detail["task"]["state"]["stage"], "done", "{id}");
        let runs = detail["agent_runs"].as_array().unwrap();
        assert!(runs.iter().all(|r| r["adapter"] == agent && r["cost_usd"].as_f64().unwrap() > 0.0), "{runs:#?}");
        print_overhead(&format!("demo-{agent} {id}"), &detail);
    }
    assert_eq!(show("DEMO-002")["task"]["state"]["rollbacks"], 1, "divide should be rolled back once by review");
    let power = show("DEMO-003");
    assert!(power["timeline"].as_array().unwrap().iter().any(|e| e["kind"] == "answered"), "power was not answered");
    let analyses: Vec<&Value> =
        power["agent_runs"].as_array().unwrap().iter().filter(|r| r["stage"] == "analysis").collect();
    let statuses: Vec<&str> = analyses.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["needs_input", "succeeded"], "power's analyses");
}

// `baton demo --agent claude --yes` runs every agent stage with the real claude CLI against its
// in-process mock model and reaches the same three ends as the script demo.
#[test]
fn real_cli_demo_with_claude_reaches_its_three_ends() {
    let Some(claude) = locate_cli("claude") else { return };
    demo_reaches_its_three_ends("claude", &claude);
}

// `baton demo --agent codex --yes` does the same with the real codex CLI.
#[test]
fn real_cli_demo_with_codex_reaches_its_three_ends() {
    let Some(codex) = locate_cli("codex") else { return };
    demo_reaches_its_three_ends("codex", &codex);
}

/// The analysis stage's requests all answer 429 (no `retry-after`: claude backs off by itself).
const MOCK_CLAUDE_QUOTA: &str = r#"
[[conversation]]
name = "DEMO-001 analysis"
match = "DEMO-001 · analysis ·"
provider = "anthropic"
[[conversation.turns]]
error = { status = 429, message = "Rate limit reached for requests" }
"#;

/// The seconds a claude capped at two retries may take to hand a permanent 429 to Baton.
const QUOTA_HANDOFF_SECS_MAX: u64 = 45;

// Issue 8: claude, capped at two retries of its own, gives up on a permanent 429 after three
// requests, in seconds; Baton parks the task `paused_quota`; each wait on the provider is one
// `waiting` event on the timeline; the run keeps its configured model, never `<synthetic>`.
#[test]
fn real_cli_claude_quota_reaches_baton_in_seconds_with_its_waits_on_the_timeline() {
    let Some(claude) = locate_cli("claude") else { return };
    let env = Env::new("", "agent_timeout_secs = 120\nstall_timeout_secs = 60");
    let (_mock, url) = start_mock_llm(&env, "mock-claude-quota.toml", MOCK_CLAUDE_QUOTA);
    let agent = cli_agent("analyst", "claude", &claude, "claude-sonnet-4-5", &url);
    let mut config = std::fs::read_to_string(env.config()).unwrap();
    config.push_str(&format!("\n{agent}max_retries = 2\n"));
    std::fs::write(env.config(), config).unwrap();
    let id = env.add_task(TICKET);
    assert_eq!(id, "DEMO-001", "the mock script is written for DEMO-001");
    let started = std::time::Instant::now();
    let _server = env.serve(0);
    env.drive(Duration::from_secs(QUOTA_HANDOFF_SECS_MAX), |tasks| tasks[0]["state"]["hold"]["kind"] == "paused_quota");
    eprintln!("QUOTA claude → paused_quota {} ms after serve", started.elapsed().as_millis());
    let detail = env.json(&["task", "show", &id]);
    let runs = runs_of(&detail, "analysis");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = runs[0];
    assert_eq!(run["status"], "quota_exhausted", "{run:#}");
    assert_eq!(run["model"], "claude-sonnet-4-5", "{run:#}");
    let requests = mock_requests(&url);
    let tries = requests.iter().filter(|r| r["provider"] == "anthropic" && r["status"] == 429).count();
    assert_eq!(tries, 3, "one request and claude's two capped retries: {requests:#?}");
    let waits: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "waiting")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(waits.len(), 2, "one timeline event per wait: {waits:#?}");
    assert!(waits[0].starts_with("waiting on the provider: 429 (rate_limit), retry 1/2 in "), "{waits:#?}");
    assert!(waits[1].starts_with("waiting on the provider: 429 (rate_limit), retry 2/2 in "), "{waits:#?}");
}

/// Gemini's analysis runs a shell command that outlasts the test, so only a STOP ends it.
const MOCK_GEMINI_LONG: &str = r#"
[[conversation]]
name = "DEMO-001 analysis"
match = "DEMO-001 · analysis ·"
provider = "gemini"
[[conversation.turns]]
text = "Thinking it over."
usage = { input = 500, output = 40 }
[[conversation.turns.tool_calls]]
name = "run_shell_command"
arguments = { command = "sleep 60" }
[[conversation.turns]]
text = "Done."
"#;

// Regression (issue 8): gemini stopped by `baton task stop` exits 0, and its run was recorded
// `succeeded`. A run Baton stopped is `stopped`, whatever the CLI's exit code.
#[test]
fn real_cli_gemini_stopped_mid_run_is_recorded_stopped() {
    let Some(gemini) = locate_cli("gemini") else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let script = baton_mock_llm::Script::from_toml(MOCK_GEMINI_LONG).unwrap();
    let mock = runtime.block_on(baton_mock_llm::start(script, "127.0.0.1:0".parse().unwrap())).unwrap();
    let agent = cli_agent("analyst", "gemini", &gemini, "gemini-2.5-pro", &mock.base_url());
    let env = Env::with_config("", "agent_timeout_secs = 120\nstall_timeout_secs = 90", &agent);
    let id = env.add_task(TICKET);
    assert_eq!(id, "DEMO-001", "the mock script is written for DEMO-001");
    let _server = env.serve(0);
    let shows_the_command = |d: &Value| {
        d["timeline"].as_array().unwrap().iter().any(|e| e["message"].as_str().unwrap().contains("sleep 60"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !shows_the_command(&env.json(&["task", "show", &id])) {
        assert!(std::time::Instant::now() < deadline, "gemini never ran its command");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = env.run(&["task", "stop", &id]);
    assert!(out.status.success(), "stop: {}", String::from_utf8_lossy(&out.stderr));
    // The executor records the run's end once the agent is gone; a reaper pass in between may
    // close it as lost first (its job is cancelled), which the executor's record then replaces.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let run = loop {
        let detail = env.json(&["task", "show", &id]);
        let runs = runs_of(&detail, "analysis").into_iter().cloned().collect::<Vec<_>>();
        if let [run] = runs.as_slice()
            && !run["ended_at_ms"].is_null()
            && (run["status"] == "stopped" || std::time::Instant::now() >= deadline)
        {
            break run.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the stopped run was never closed: {detail:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("STOP gemini exited with {} and was recorded {}", run["exit_code"], run["status"]);
    assert_eq!(run["status"], "stopped", "{run:#}");
    assert_eq!(run["model"], "gemini-2.5-pro", "{run:#}");
    drop(mock);
}
