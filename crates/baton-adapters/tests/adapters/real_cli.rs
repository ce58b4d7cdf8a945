//! The adapters driving the real CLIs (when installed) against Baton's scripted model server:
//! prepare() → the runner's spawn → parse() and observe(). A missing CLI is skipped loudly, or
//! fails the test when `CI=true`.

use crate::support::{replay, usage};
use baton_adapters::agent::{Agent, AgentRequest, ClaudeAgent, CliAgentConfig, CodexAgent, GeminiAgent};
use baton_domain::{AgentReport, AgentStatus};
use baton_mock_llm::{MockServer, Script, start};
use baton_runner::RunLimits;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one CLI run may take before it is killed.
const CLI_RUN_TIMEOUT_SECS: u64 = 120;

/// The CLI's executable under `$BATON_CLI_DIR/node_modules/.bin` (default
/// `$HOME/.cache/baton/clis`), or `None` after a loud message; with `CI=true` a missing CLI fails.
fn locate(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BATON_CLI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/baton/clis"));
    let path = dir.join("node_modules/.bin").join(name);
    if path.exists() {
        return Some(path);
    }
    let message = format!(
        "`{name}` not found at {}; install the pinned CLIs with: npm install --prefix \"$HOME/.cache/baton/clis\" \
         @anthropic-ai/claude-code@2.1.197 @openai/codex@0.169.0 @google/gemini-cli@0.61.0",
        path.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("REAL-CLI TEST CANNOT RUN IN CI: {message}");
    }
    // Straight to stderr so the harness does not swallow it as a passing test's output.
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!!!! SKIPPED real-CLI test: {message}\n");
    None
}

async fn server(script: &str) -> MockServer {
    let script = Script::from_toml(script).expect("test script is valid");
    start(script, "127.0.0.1:0".parse().expect("literal address")).await.expect("mock server starts")
}

/// A request whose base_env is what an engine would pass: PATH, a scratch HOME, TMPDIR.
fn request(root: &Path, run: &str, prompt: &str) -> AgentRequest {
    let worktree = root.join("worktree");
    let home = root.join("home");
    std::fs::create_dir_all(&worktree).expect("worktree");
    std::fs::create_dir_all(&home).expect("home");
    AgentRequest {
        work_item: "W-1".into(),
        title: "Smoke".into(),
        stage: "analysis".into(),
        role: "analyst".into(),
        attempt: 1,
        run_number: 1,
        worktree,
        run_dir: root.join("runs/W-1").join(run).join("run1"),
        prompt: prompt.into(),
        base_env: vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), home.display().to_string()),
            ("TMPDIR".into(), std::env::temp_dir().display().to_string()),
        ],
        resume_session: None,
        sandboxed: false,
    }
}

/// Runs the prepared process to the end; returns the report and the stdout text.
async fn run(agent: &dyn Agent, request: &AgentRequest, mock: &MockServer) -> (AgentReport, String) {
    let spec = agent.prepare(request).expect("prepare");
    let mut child = baton_runner::process::spawn(&spec).expect("spawn the CLI");
    let timeout = Duration::from_secs(CLI_RUN_TIMEOUT_SECS);
    let limits = RunLimits { timeout, stall_timeout: timeout, stop_grace: Duration::from_secs(5) };
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let exit = child.wait(limits, stop).await;
    let stdout = std::fs::read_to_string(&spec.stdout).unwrap_or_default();
    let stderr = std::fs::read_to_string(&spec.stderr).unwrap_or_default();
    let report = agent.parse(&stdout, &stderr, &exit);
    let requests: Vec<String> = mock
        .state()
        .requests()
        .iter()
        .map(|r| format!("{} {} conv={:?} turn={:?} -> {}", r.method, r.path, r.conversation, r.turn, r.status))
        .collect();
    let context = format!("exit {exit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\nrequests:\n{}", requests.join("\n"));
    assert!(!matches!(report.status, AgentStatus::Failed { .. }), "{:?}\n{context}", report.status);
    (report, stdout)
}

const CLAUDE_SCRIPT: &str = r#"
[[conversation]]
name = "write"
provider = "anthropic"
match = "Create hello.txt"

[[conversation.turns]]
text = "I'll write the file."
usage = { input = 1000, output = 20, cache_write = 800 }
[[conversation.turns.tool_calls]]
name = "Write"
arguments = { file_path = "{{cwd}}/hello.txt", content = "hello from mock\n" }

[[conversation.turns]]
text = "Wrote hello.txt"
usage = { input = 1200, output = 50, cache_read = 300, cache_write = 50 }

[[conversation.turns]]
text = "Resumed with the answers."
usage = { input = 100, output = 5 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_runs_reports_and_resumes() {
    // Real claude: prompt on stdin, stream-json parsed and observed exactly; --resume continues the session.
    let Some(claude) = locate("claude") else { return };
    let mock = server(CLAUDE_SCRIPT).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = ClaudeAgent::new(CliAgentConfig {
        program: claude.display().to_string(),
        model: Some("claude-sonnet-4-5".into()),
        base_url: Some(mock.base_url()),
        streaming: true,
        ..CliAgentConfig::default()
    });
    let first = request(dir.path(), "analysis-job1", "Stage: analysis\nCreate hello.txt please");
    let (report, stdout) = run(&agent, &first, &mock).await;
    assert_eq!(report.status, AgentStatus::Succeeded);
    assert_eq!(report.usage, usage(2200, 70, 300, 850, 0));
    assert_eq!(report.final_text.as_deref(), Some("Wrote hello.txt"));
    assert_eq!(report.model.as_deref(), Some("claude-sonnet-4-5"));
    assert!(report.cost_usd.is_some_and(|c| c > 0.0), "{:?}", report.cost_usd);
    assert_eq!(replay(&agent, &stdout).usage, report.usage);
    let written = std::fs::read_to_string(first.worktree.join("hello.txt")).expect("hello.txt written");
    assert_eq!(written, "hello from mock\n");

    let mut second = request(dir.path(), "analysis-job2", "Answers: round half up.");
    second.resume_session = report.session_id.clone();
    let (resumed, _) = run(&agent, &second, &mock).await;
    assert_eq!(resumed.final_text.as_deref(), Some("Resumed with the answers."), "the session's history was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_and_reports() {
    // Real codex: generated CODEX_HOME, prompt after `--` even when it starts with '-', usage split.
    let Some(codex) = locate("codex") else { return };
    let mock = server(
        r#"
        [[conversation]]
        provider = "codex"
        match = "Say done"
        [[conversation.turns]]
        text = "done"
        usage = { input = 1000, output = 20, cache_read = 300, reasoning = 5 }
        "#,
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = CodexAgent::new(CliAgentConfig {
        program: codex.display().to_string(),
        model: Some("gpt-5.5".into()),
        base_url: Some(mock.base_url()),
        ..CliAgentConfig::default()
    });
    let req = request(dir.path(), "implement-job1", "- Say done");
    let (report, stdout) = run(&agent, &req, &mock).await;
    assert_eq!(report.status, AgentStatus::Succeeded);
    assert_eq!(report.final_text.as_deref(), Some("done"));
    assert_eq!(report.usage, usage(1000, 25, 300, 0, 5));
    assert!(report.session_id.is_some());
    assert_eq!(replay(&agent, &stdout).usage, report.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_runs_and_reports() {
    // Real gemini: own HOME and settings, `--prompt=` even when it starts with '-', stream-json figures.
    let Some(gemini) = locate("gemini") else { return };
    let mock = server(
        r#"
        [[conversation]]
        provider = "gemini"
        match = "Say done"
        [[conversation.turns]]
        text = "done"
        usage = { input = 1000, output = 20, cache_read = 300, reasoning = 5 }
        "#,
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = GeminiAgent::new(CliAgentConfig {
        program: gemini.display().to_string(),
        model: Some("gemini-2.5-pro".into()),
        base_url: Some(mock.base_url()),
        streaming: true,
        ..CliAgentConfig::default()
    });
    let req = request(dir.path(), "review-job1", "- Say done");
    let (report, stdout) = run(&agent, &req, &mock).await;
    assert_eq!(report.status, AgentStatus::Succeeded);
    assert_eq!(report.final_text.as_deref(), Some("done"));
    assert_eq!(report.usage, usage(1000, 25, 300, 0, 5));
    assert_eq!(report.model.as_deref(), Some("gemini-2.5-pro"));
    assert_eq!(replay(&agent, &stdout).usage, report.usage);
}

/// How long a CLI capped to a few retries may take to give up on a permanent 429.
const QUOTA_GIVE_UP_SECS_MAX: u64 = 40;

/// Runs `agent` against `mock` (whose only conversation answers 429 forever) to its end; returns
/// the report, the live progress over stdout and stderr, the model requests the mock saw and
/// the seconds the run took.
async fn run_to_quota(
    agent: &dyn Agent,
    request: &AgentRequest,
    mock: &MockServer,
) -> (AgentReport, baton_adapters::agent::LiveProgress, usize, f64) {
    let spec = agent.prepare(request).expect("prepare");
    let mut child = baton_runner::process::spawn(&spec).expect("spawn the CLI");
    let timeout = Duration::from_secs(CLI_RUN_TIMEOUT_SECS);
    let limits = RunLimits { timeout, stall_timeout: timeout, stop_grace: Duration::from_secs(5) };
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let exit = child.wait(limits, stop).await;
    let stdout = std::fs::read_to_string(&spec.stdout).unwrap_or_default();
    let stderr = std::fs::read_to_string(&spec.stderr).unwrap_or_default();
    let report = agent.parse(&stdout, &stderr, &exit);
    let mut progress = replay(agent, &stdout);
    stderr.lines().for_each(|line| agent.observe_stderr(line, &mut progress));
    let tries = mock.state().requests().iter().filter(|r| r.turn.is_some() && r.status == 429).count();
    let seconds = exit.duration_ms as f64 / 1000.0;
    let _ = writeln!(std::io::stderr(), "QUOTA {} gave up after {tries} requests in {seconds:.1} s", agent.adapter());
    let context = format!("exit {exit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(matches!(report.status, AgentStatus::QuotaExhausted { .. }), "{:?}\n{context}", report.status);
    assert!(seconds < QUOTA_GIVE_UP_SECS_MAX as f64, "took {seconds} s\n{context}");
    (report, progress, tries, seconds)
}

fn quota_script(provider: &str, retry_after: bool) -> String {
    let retry_after = if retry_after { ", retry_after = 1" } else { "" };
    format!(
        "[[conversation]]\nname = \"quota\"\nprovider = \"{provider}\"\nmatch = \"Say done\"\n[[conversation.turns]]\n\
         error = {{ status = 429, message = \"Rate limit reached for requests\"{retry_after} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_gives_up_on_a_429_after_its_capped_retries() {
    // CLAUDE_CODE_MAX_RETRIES = 2: three requests, two waits on the provider, then quota, in
    // seconds (its default is 10 retries with backoff). The model stays the configured one.
    let Some(claude) = locate("claude") else { return };
    let mock = server(&quota_script("anthropic", false)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = ClaudeAgent::new(CliAgentConfig {
        program: claude.display().to_string(),
        model: Some("claude-sonnet-4-5".into()),
        base_url: Some(mock.base_url()),
        streaming: true,
        max_retries: Some(2),
        ..CliAgentConfig::default()
    });
    let (report, progress, tries, _) = run_to_quota(&agent, &request(dir.path(), "q-job1", "Say done"), &mock).await;
    assert_eq!(tries, 3, "one request and two retries");
    assert_eq!(progress.waits.len(), 2, "{:?}", progress.waits);
    assert!(
        progress.waits[0].starts_with("waiting on the provider: 429 (rate_limit), retry 1/2 in "),
        "{:?}",
        progress.waits
    );
    assert_eq!(report.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(progress.model.as_deref(), Some("claude-sonnet-4-5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_gives_up_on_a_429_after_its_capped_attempts() {
    // general.maxAttempts = 2 (one retry, 5 s later; its default is 10 attempts, doubling from
    // 5 s): two requests, one wait announced on stderr, then quota.
    let Some(gemini) = locate("gemini") else { return };
    let mock = server(&quota_script("gemini", false)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = GeminiAgent::new(CliAgentConfig {
        program: gemini.display().to_string(),
        model: Some("gemini-2.5-pro".into()),
        base_url: Some(mock.base_url()),
        streaming: true,
        max_retries: Some(1),
        ..CliAgentConfig::default()
    });
    let (report, progress, tries, _) = run_to_quota(&agent, &request(dir.path(), "q-job1", "Say done"), &mock).await;
    assert_eq!(tries, 2, "one request and one retry");
    assert_eq!(progress.waits, ["waiting on the provider: 429, retry 1/1"]);
    assert_eq!(report.model.as_deref(), Some("gemini-2.5-pro"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_gives_up_on_a_429_after_its_capped_retries() {
    // stream_max_retries = 2 (request retries off): a 429 with retry-after is tried three times,
    // each retry announced as `Reconnecting... n/2`, then quota.
    let Some(codex) = locate("codex") else { return };
    let mock = server(&quota_script("codex", true)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = CodexAgent::new(CliAgentConfig {
        program: codex.display().to_string(),
        model: Some("gpt-5.5".into()),
        base_url: Some(mock.base_url()),
        max_retries: Some(2),
        ..CliAgentConfig::default()
    });
    let (_, progress, tries, _) = run_to_quota(&agent, &request(dir.path(), "q-job1", "Say done"), &mock).await;
    assert_eq!(tries, 3, "one request and two retries");
    assert_eq!(progress.waits.len(), 2, "{:?}", progress.waits);
}
