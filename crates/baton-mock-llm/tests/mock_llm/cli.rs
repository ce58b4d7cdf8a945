//! Harness for running the real agent CLIs against a mock server: locating the pinned
//! install, fresh config dirs, a wall-clock timeout and readable failure output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use baton_mock_llm::{MockServer, Script, start};
use serde_json::Value;

/// How long one CLI run may take before it is killed.
pub const CLI_RUN_TIMEOUT_SECS: u64 = 120;

/// The npm command that installs the pinned CLIs where the tests look for them.
pub const INSTALL_HINT: &str = "npm install --prefix \"$HOME/.cache/baton/clis\" \
    @anthropic-ai/claude-code@2.1.197 @openai/codex@0.169.0 @google/gemini-cli@0.61.0 \
    (or set BATON_CLI_DIR to a directory holding node_modules/.bin/{claude,codex,gemini})";

/// The CLI's executable, or `None` (after a loud message) when it is not installed.
/// With `CI=true` a missing CLI fails the test instead.
pub fn locate(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BATON_CLI_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/baton/clis")
    });
    let path = dir.join("node_modules/.bin").join(name);
    if path.exists() {
        return Some(path);
    }
    let message = format!("`{name}` not found at {}; install it with: {INSTALL_HINT}", path.display());
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("REAL-CLI TEST CANNOT RUN IN CI: {message}");
    }
    // Written to stderr directly, not with eprintln!, so the test harness does not
    // swallow it as captured output of a passing test.
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!!!! SKIPPED real-CLI test: {message}\n");
    None
}

/// A mock server plus a scratch work dir and a scratch home for one CLI run.
pub struct Rig {
    pub server: MockServer,
    pub work: tempfile::TempDir,
    pub home: tempfile::TempDir,
}

impl Rig {
    pub async fn new(script: &str) -> Rig {
        let script = Script::from_toml(script).expect("test script is valid");
        let addr = "127.0.0.1:0".parse().expect("literal address");
        let server = start(script, addr).await.expect("mock server starts");
        Rig { server, work: tempfile::tempdir().expect("work dir"), home: tempfile::tempdir().expect("home dir") }
    }

    /// A command for `program` run in the work dir with a clean environment: only PATH,
    /// HOME (the scratch home) and what the caller adds.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(self.work.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("TMPDIR", std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `command` off the async runtime (the server keeps answering) with a timeout.
    pub async fn run(&self, command: Command) -> Output {
        tokio::task::spawn_blocking(move || run_with_timeout(command)).await.expect("CLI runner thread")
    }

    /// The request log, pretty-printed for assertion messages (bodies shortened).
    pub fn log_summary(&self) -> String {
        let lines: Vec<String> = self
            .server
            .state()
            .requests()
            .iter()
            .map(|request| {
                format!(
                    "{} {} model={:?} conversation={:?} turn={:?} status={}",
                    request.method, request.path, request.model, request.conversation, request.turn, request.status
                )
            })
            .collect();
        lines.join("\n")
    }
}

fn run_with_timeout(mut command: Command) -> Output {
    let mut child = command.spawn().expect("CLI starts");
    let deadline = Instant::now() + Duration::from_secs(CLI_RUN_TIMEOUT_SECS);
    loop {
        if child.try_wait().expect("poll CLI").is_some() {
            return child.wait_with_output().expect("collect CLI output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect CLI output");
            panic!(
                "CLI timed out after {CLI_RUN_TIMEOUT_SECS}s\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything worth seeing when a CLI assertion fails.
pub fn describe(rig: &Rig, output: &Output) -> String {
    format!(
        "exit: {:?}\nstdout:\n{}\nstderr:\n{}\nrequests:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        tail(&String::from_utf8_lossy(&output.stderr), 4000),
        rig.log_summary()
    )
}

fn tail(text: &str, chars: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(chars)).collect()
}

/// Parses stdout as one JSON document.
pub fn stdout_json(rig: &Rig, output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is not JSON ({error})\n{}", describe(rig, output)))
}
