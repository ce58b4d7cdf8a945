//! Shared fixtures: a sample Python project in a real git repository, a config, a script, and
//! helpers to run `baton` commands and `baton serve`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn baton_exe() -> &'static str {
    env!("CARGO_BIN_EXE_baton")
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A scratch environment: `<root>/project` (git repo), `<root>/baton.toml`, `<root>/script.toml`.
pub struct Env {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    /// Environment variables `baton serve` gets besides the test's own.
    pub serve_env: Vec<(String, String)>,
}

/// Additions to the generated baton.toml, section by section; `{root}` in any of them stands for
/// the environment's root directory.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConfigExtra<'a> {
    /// Lines added to `[server]`.
    pub server: &'a str,
    /// Lines added to `[limits]`.
    pub limits: &'a str,
    /// The repository's `test` command (TOML array); `None`: `python3 -m unittest -q`.
    pub test: Option<&'a str>,
    /// Lines added to the `[[repos]]` entry (`deploy`, `health`).
    pub repo: &'a str,
    /// Sections appended at the end.
    pub sections: &'a str,
}

pub const PROJECT_TEST: &str = "import unittest\n\nfrom mathkit.core import add\n\n\nclass AddTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n";

/// Script steps every task gets unless the test's own script overrides them (first match wins).
pub const COMMON_STEPS: &str = r##"
[[task]]
match = "*"
[[task.step]]
stage = "analysis"
actions = [{ write = { path = "docs/baton/{work_item}/01-analysis.md", content = "# {title}\n\nAnalysis.\n" } }]
[[task.step]]
stage = "architecture"
actions = [{ write = { path = "docs/baton/{work_item}/02-architecture.md", content = "Design.\n" } }]
[[task.step]]
stage = "development"
actions = [
  { write = { path = "mathkit/m_{work_item_snake}.py", content = "def value():\n    return 1\n" } },
  { write = { path = "tests/test_{work_item_snake}.py", content = "import unittest\nimport importlib\n\n\nclass T(unittest.TestCase):\n    def test_value(self):\n        self.assertEqual(importlib.import_module('mathkit.m_{work_item_snake}').value(), 1)\n" } },
]
[[task.step]]
stage = "review"
actions = [{ write = { path = "docs/baton/{work_item}/04-review.md", content = "---\nverdict: approve\n---\nOK\n" } }]
[[task.step]]
stage = "testing"
actions = [{ write = { path = "docs/baton/{work_item}/05-test-report.md", content = "---\nverdict: pass\n---\nOK\n" } }]
"##;

impl Env {
    /// Builds the project, a config with fast limits plus `extra_limits`, and `script` + common steps.
    pub fn new(script: &str, extra_limits: &str) -> Env {
        Env::with_config(script, extra_limits, "")
    }

    /// Like [`Env::new`], with `extra` appended to baton.toml (more sections).
    pub fn with_config(script: &str, extra_limits: &str, extra: &str) -> Env {
        Env::with_extra(script, &ConfigExtra { limits: extra_limits, sections: extra, ..ConfigExtra::default() })
    }

    /// Like [`Env::new`], with additions to every section of baton.toml.
    pub fn with_extra(script: &str, extra: &ConfigExtra<'_>) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let project = root.join("project");
        for (path, content) in [
            ("mathkit/__init__.py", ""),
            ("mathkit/core.py", "def add(a, b):\n    return a + b\n"),
            ("tests/__init__.py", ""),
            ("tests/test_core.py", PROJECT_TEST),
            (".gitignore", "__pycache__/\n"),
        ] {
            let target = project.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, content).unwrap();
        }
        git(&project, &["init", "-q", "-b", "main"]);
        git(&project, &["add", "-A"]);
        git(&project, &["commit", "-q", "-m", "Initial commit"]);
        let script = format!("{script}\n{COMMON_STEPS}");
        std::fs::write(root.join("script.toml"), script).unwrap();
        let ConfigExtra { server, limits, test, repo, sections } = *extra;
        let test = test.unwrap_or("[\"python3\", \"-m\", \"unittest\", \"-q\"]");
        let root_text = root.display().to_string();
        let [server, limits, test, repo, sections] =
            [server, limits, test, repo, sections].map(|s| s.replace("{root}", &root_text));
        let config = format!(
            "[server]\ndata_dir = \"data\"\nlisten = \"127.0.0.1:0\"\napi_token = \"test-token\"\n{server}\n\n\
             [limits]\nretry_base_secs = 1\nmerge_defer_secs = 1\npoll_interval_ms = 100\nstop_grace_secs = 2\n\
             running_max = 4\nrunning_per_repo_max = 4\n{limits}\n\n\
             [[repos]]\nname = \"demo\"\npath = \"project\"\nprefix = \"DEMO\"\ntest = {test}\n{repo}\n\n\
             [agents.default]\nadapter = \"script\"\nscript = \"script.toml\"\n\n{sections}"
        );
        std::fs::write(root.join("baton.toml"), config).unwrap();
        Env { _tmp: tmp, root, serve_env: Vec::new() }
    }

    pub fn request(&self, title: &str) -> baton_engine::NewTaskRequest {
        baton_engine::NewTaskRequest {
            repo: "demo".into(),
            title: title.into(),
            body: String::new(),
            external_ref: None,
        }
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("baton.toml")
    }

    pub fn project(&self) -> PathBuf {
        self.root.join("project")
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(baton_exe());
        command.arg("--config").arg(self.config()).env_remove("BATON_CONFIG").env("HOME", &self.root);
        // The CLI runs in the server's environment (its tokens' variables are set there too).
        command.envs(self.serve_env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `baton <args>` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("baton runs")
    }

    /// Runs `baton --json <args>` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.command().arg("--json").args(args).output().expect("baton runs");
        assert!(out.status.success(), "baton {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("baton {args:?} printed no JSON ({e})"))
    }

    pub fn add_task(&self, title: &str) -> String {
        let out = self.run(&["task", "add", "--repo", "demo", "--title", title]);
        assert!(out.status.success(), "task add: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts `baton serve` in the background with its log in `<root>/serve-<n>.log`.
    pub fn serve(&self, n: u32) -> Server {
        let log = std::fs::File::create(self.root.join(format!("serve-{n}.log"))).unwrap();
        let child = self
            .command()
            .arg("serve")
            .env("BATON_LOG", "info")
            .envs(self.serve_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("baton serve starts");
        Server { child }
    }

    pub fn tasks(&self) -> Vec<Value> {
        self.json(&["task", "list", "--all"]).as_array().unwrap().clone()
    }

    /// Approves and confirms whatever waits, until `done(tasks)` or the timeout.
    pub fn drive(&self, timeout: Duration, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let tasks = self.tasks();
            if done(&tasks) {
                return tasks;
            }
            self.play_human(&tasks);
            assert!(Instant::now() < deadline, "timed out; tasks: {tasks:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Approves every analysis and confirms every deploy that waits, once.
    pub fn play_human(&self, tasks: &[Value]) {
        for task in tasks {
            let id = task["work_item_id"].as_str().unwrap();
            match task["state"]["hold"]["kind"].as_str() {
                Some("awaiting_approval") => {
                    self.run(&["task", "approve", id]);
                }
                Some("awaiting_confirm") => {
                    self.run(&["task", "confirm-deploy", id]);
                }
                _ => {}
            }
        }
    }
}

pub fn stage(task: &Value) -> &str {
    task["state"]["stage"].as_str().unwrap()
}

pub fn all_done(tasks: &[Value]) -> bool {
    !tasks.is_empty() && tasks.iter().all(|t| stage(t) == "done")
}

/// A background `baton serve`, killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
}

impl Server {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Every commit on main, oldest first: (sha, subject).
pub fn main_commits(project: &Path) -> Vec<(String, String)> {
    git(project, &["log", "--reverse", "--format=%H %s", "main"])
        .lines()
        .map(|l| {
            let (sha, subject) = l.split_once(' ').unwrap();
            (sha.to_string(), subject.to_string())
        })
        .collect()
}

/// Checks out every commit of main in a scratch worktree and runs the project's tests there.
pub fn assert_each_main_commit_passes_tests(project: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    for (i, (sha, subject)) in main_commits(project).iter().enumerate() {
        let path = scratch.path().join(format!("c{i}"));
        git(project, &["worktree", "add", "-q", "--detach", path.to_str().unwrap(), sha]);
        let out = Command::new("python3").args(["-m", "unittest", "-q"]).current_dir(&path).output().unwrap();
        assert!(
            out.status.success(),
            "commit {sha} ({subject}) fails its tests: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        git(project, &["worktree", "remove", "--force", path.to_str().unwrap()]);
    }
}

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct FakeClock(std::sync::atomic::AtomicI64);

impl FakeClock {
    pub fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl baton_engine::Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.now()
    }

    /// Waiting still takes real time: agents and commands are real processes.
    fn sleep(&self, duration: std::time::Duration) -> baton_engine::BoxFuture {
        baton_engine::SystemClock.sleep(duration)
    }
}

/// An engine on a fake clock over a fresh environment (script agents run as real processes).
pub async fn engine_for(script: &str) -> (Env, std::sync::Arc<baton_engine::Engine>, std::sync::Arc<FakeClock>) {
    engine_with_features(script, baton_engine::Features::all_on()).await
}

/// Like [`engine_for`], with the kill switches `features`.
pub async fn engine_with_features(
    script: &str,
    features: baton_engine::Features,
) -> (Env, std::sync::Arc<baton_engine::Engine>, std::sync::Arc<FakeClock>) {
    use std::sync::Arc;
    let env = Env::new(script, "");
    let store = baton_store_sqlite::SqliteStore::open(&env.root.join("engine.db")).await.unwrap();
    let limits = baton_engine::Limits { poll_interval_ms: 50, stop_grace_secs: 2, ..baton_engine::Limits::default() };
    let agent = baton_engine::AgentSettings {
        adapter: baton_engine::AdapterKind::Script,
        script: Some(env.root.join("script.toml")),
        command: None,
        prompt: Default::default(),
        model: None,
        program: None,
        base_url: None,
        api_key_env: None,
        max_turns: None,
        permission_mode: None,
        allowed_tools: vec![],
        sandbox: None,
        sandbox_mode: None,
        sandbox_network: None,
        streaming: true,
        extra_args: vec![],
        max_retries: None,
        env: vec![],
    };
    let settings = baton_engine::EngineSettings {
        data_dir: env.root.join("engine-data"),
        limits,
        repos: vec![baton_engine::RepoSettings {
            name: "demo".into(),
            path: env.project(),
            default_branch: "main".into(),
            url: None,
            push: None,
            delete_remote_branch: baton_engine::DeleteRemoteBranch::default(),
            credentials_env: None,
            prefix: "DEMO".into(),
            test: Some(vec!["python3".into(), "-m".into(), "unittest".into(), "-q".into()]),
            deploy: None,
            health: None,
            coverage: None,
            coverage_mode: Default::default(),
            coverage_min: 0.0,
            coverage_epsilon: 0.1,
            coverage_fail_open: true,
            security: None,
            merge_batch: 1,
            monitor_window_secs: 0,
            monitor_interval_secs: 30,
            monitor_failures: 3,
            revert_on_degraded: false,
            revert_confirm: false,
            serial: false,
            hooks: Default::default(),
            pipeline: None,
            forge: Default::default(),
        }],
        agents: [("default".to_string(), agent)].into_iter().collect(),
        pipeline: baton_domain::Pipeline::default_pipeline(),
        budgets: baton_engine::Budgets::default(),
        baton_exe: PathBuf::from(baton_exe()),
        env_passthrough: vec![],
    };
    let clock = Arc::new(FakeClock(std::sync::atomic::AtomicI64::new(1_800_000_000_000)));
    let engine =
        baton_engine::Engine::builder(settings, Arc::new(store)).clock(clock.clone()).features(features).build();
    (env, engine, clock)
}

/// Polls the task until `done` holds (real-time timeout: 60 s).
pub async fn wait_for(
    engine: &baton_engine::Engine,
    key: &baton_store::TaskKey,
    done: impl Fn(&baton_store::TaskRecord) -> bool,
) -> baton_store::TaskRecord {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let task = engine.store().task(key).await.unwrap().unwrap();
        if done(&task) {
            return task;
        }
        assert!(Instant::now() < deadline, "timed out waiting; task: {:#?}", task.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The address `baton serve` printed in its log.
pub fn served_address(log: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1) {
            return rest.split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "serve never said where it listens: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
