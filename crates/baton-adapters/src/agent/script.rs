//! The built-in `script` agent: deterministic actions per task and stage, read from a TOML file.
//!
//! Baton runs it as a real process (`baton agent-script --script FILE`) so it is supervised,
//! stopped and accounted exactly like a real CLI. Format:
//!
//! ```toml
//! [[task]]
//! match = "multiply"            # case-insensitive substring of the task title; "*" matches any
//! [[task.step]]
//! stage = "analysis"
//! run = 1                       # optional: only the Nth run of this stage for the task
//! model = "claude-sonnet-4-5"   # optional, with usage figures shaped like a real CLI's
//! usage = { input_tokens = 1200, output_tokens = 340, cache_read_tokens = 0, cache_write_tokens = 0 }
//! cost_usd = 0.0087
//! actions = [
//!   { write = { path = "docs/baton/{work_item}/01-analysis.md", content = "..." } },
//!   { run = ["python3", "-m", "unittest"] },
//!   { commit = "message" },
//!   { sleep_ms = 100 },
//!   { questions = "Which rounding?" },   # ends the run with questions (needs_input)
//!   { fail = "reason" },                 # ends the run as failed (exit 1)
//!   { progress = { message = "turn 1", input_tokens = 900, output_tokens = 80, cost_usd = 0.02 } },
//!   { quota = { message = "usage limit reached", resets_in_secs = 30 } },  # ends as quota-exhausted
//!   { append = { path = "agents.log", content = "{work_item} {stage} {attempt} {run} {pid}\n" } },
//! ]
//! ```
//! `{work_item}`, `{work_item_snake}` (`demo_001`), `{title}`, `{stage}`, `{attempt}` (the stage
//! attempt), `{run}` (the run of this stage for the task), `{pid}` (this agent process),
//! `{started_ms}` (when it started, ms since the epoch) and `{run_dir}` (Baton's directory for this
//! run) are substituted in paths, contents and messages.
//!
//! `write` replaces a file of the worktree. `append` adds `content` to the end of a file in one
//! write (lines from concurrent agents do not interleave); its path is relative and confined like
//! `write`'s (no `..`, no absolute path), and it lies under the directory named by
//! `$BATON_SCRIPT_APPEND_DIR` when that variable reaches the agent (an absolute path; pass it
//! through with `[server] agent_env`), else under the worktree. So a test can keep a witness log
//! of every agent execution outside the worktree and outside Baton's store, while a script still
//! cannot write anywhere the operator did not name.

use super::result_line::report_from_output;
use super::{Agent, AgentRequest};
use crate::AdapterError;
use baton_domain::AgentReport;
use baton_runner::paths::join_under;
use baton_runner::{CommandSpec, ExitReport, Git, ProcessSpec, run_command};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed script file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    #[serde(default)]
    pub task: Vec<ScriptTask>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTask {
    #[serde(rename = "match")]
    pub matches: String,
    #[serde(default)]
    pub step: Vec<ScriptStep>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScriptUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptStep {
    pub stage: String,
    pub run: Option<u32>,
    pub model: Option<String>,
    #[serde(default)]
    pub usage: ScriptUsage,
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteAction {
    pub path: String,
    pub content: String,
}

/// The variable naming the directory `append` paths lie under (else the worktree).
pub const APPEND_DIR_ENV: &str = "BATON_SCRIPT_APPEND_DIR";

/// One deterministic action.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Write(WriteAction),
    /// Appends to a file under `$BATON_SCRIPT_APPEND_DIR` (else the worktree), in one write.
    Append(WriteAction),
    Run(Vec<String>),
    Commit(String),
    SleepMs(u64),
    Questions(String),
    Fail(String),
    /// Prints a progress line with cumulative usage and cost, like a streaming CLI.
    Progress(ProgressAction),
    /// Ends the run as stopped by the provider's usage limit, resetting in `resets_in_secs`.
    Quota(QuotaAction),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressAction {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaAction {
    pub message: String,
    #[serde(default)]
    pub resets_in_secs: Option<u64>,
}

impl Script {
    /// Reads and parses a script file, naming the file and the problem on error.
    pub fn load(path: &Path) -> Result<Script, AdapterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AdapterError::Io { what: path.display().to_string(), source })?;
        toml::from_str(&text).map_err(|e| AdapterError::Config(format!("script {}: {e}", path.display())))
    }

    /// The step for (title, stage, run): the first matching task, then its first matching step.
    pub fn step(&self, title: &str, stage: &str, run: u32) -> Option<&ScriptStep> {
        let title = title.to_lowercase();
        self.task
            .iter()
            .filter(|t| t.matches == "*" || title.contains(&t.matches.to_lowercase()))
            .find_map(|t| t.step.iter().find(|s| s.stage == stage && s.run.is_none_or(|r| r == run)))
    }
}

/// The `script` adapter: launches `baton agent-script` on a script file.
#[derive(Debug, Clone)]
pub struct ScriptAgent {
    pub script: PathBuf,
    pub baton_exe: PathBuf,
}

impl Agent for ScriptAgent {
    fn adapter(&self) -> &str {
        "script"
    }

    fn model(&self) -> Option<&str> {
        None
    }

    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        let prompt = request.write_prompt()?;
        let mut env = request.base_env.clone();
        env.extend(request.context_env());
        Ok(ProcessSpec {
            program: self.baton_exe.display().to_string(),
            args: vec!["agent-script".into(), "--script".into(), self.script.display().to_string()],
            cwd: request.worktree.clone(),
            env,
            stdin: Some(prompt),
            stdout: request.stdout_path(),
            stderr: request.stderr_path(),
        })
    }

    fn observe(&self, line: &str, progress: &mut super::LiveProgress) {
        super::result_line::observe_line(line, progress);
    }

    fn parse(&self, stdout: &str, stderr: &str, exit: &ExitReport) -> AgentReport {
        report_from_output(stdout, stderr, exit)
    }
}

/// What the interpreter knows about the run (from `BATON_*` variables).
#[derive(Debug, Clone)]
pub struct ScriptContext {
    pub work_item: String,
    pub title: String,
    pub stage: String,
    /// The stage attempt (`BATON_ATTEMPT`; 1 for the first).
    pub attempt: u32,
    pub run: u32,
    pub worktree: PathBuf,
    /// Current time, for reset times of quota endings (and `{started_ms}`).
    pub now_ms: i64,
    /// Baton's directory for this run (`{run_dir}`); the commands' log goes to its agent's part.
    pub run_dir: PathBuf,
    /// This agent process's id (`{pid}`).
    pub pid: u32,
    /// Where `append` paths lie (`$BATON_SCRIPT_APPEND_DIR`); `None`: the worktree.
    pub append_dir: Option<PathBuf>,
}

impl ScriptContext {
    fn fill(&self, text: &str) -> String {
        text.replace("{work_item_snake}", &self.work_item.to_lowercase().replace('-', "_"))
            .replace("{work_item}", &self.work_item)
            .replace("{title}", &self.title)
            .replace("{stage}", &self.stage)
            .replace("{attempt}", &self.attempt.to_string())
            .replace("{run}", &self.run.to_string())
            .replace("{run_dir}", &self.run_dir.display().to_string())
            .replace("{pid}", &self.pid.to_string())
            .replace("{started_ms}", &self.now_ms.to_string())
    }

    /// The file a script path names under `root` (called `what`), refusing traversal and
    /// absolute paths.
    fn confined(&self, root: &Path, what: &str, path: &str) -> Result<PathBuf, String> {
        let relative = self.fill(path);
        let parts: Vec<&str> = relative.split('/').collect();
        join_under(root, &parts).ok_or_else(|| format!("script path `{relative}` leaves {what}"))
    }
}

/// Runs the script step for `context`; returns the result line to print and the exit code.
pub async fn interpret(script: &Script, context: &ScriptContext) -> (String, i32) {
    let step = script.step(&context.title, &context.stage, context.run);
    let mut questions = None;
    let mut error = None;
    let mut quota: Option<(String, Option<u64>)> = None;
    if let Some(step) = step {
        for action in &step.actions {
            match perform(action, context).await {
                Ok(Some(Ending::Questions(q))) => {
                    questions = Some(q);
                    break;
                }
                Ok(Some(Ending::Fail(reason))) => {
                    error = Some(reason);
                    break;
                }
                Ok(Some(Ending::Quota(message, resets_in))) => {
                    error = Some(message.clone());
                    quota = Some((message, resets_in));
                    break;
                }
                Ok(None) => {}
                Err(reason) => {
                    error = Some(reason);
                    break;
                }
            }
        }
    }
    let usage = step.map(|s| s.usage.clone()).unwrap_or_default();
    let line = serde_json::json!({
        "type": "result",
        "is_error": error.is_some(),
        "result": error.clone().unwrap_or_else(|| format!("{} run {} finished", context.stage, context.run)),
        "questions": questions,
        "model": step.and_then(|s| s.model.clone()),
        "session_id": format!("script-{}-{}-{}", context.work_item, context.stage, context.run),
        "num_turns": step.map_or(0, |s| s.actions.len()),
        "total_cost_usd": step.and_then(|s| s.cost_usd),
        "error_class": quota.as_ref().map(|_| "quota"),
        "resets_at_ms": quota.as_ref().and_then(|(_, secs)| *secs).map(|secs| context.now_ms + secs as i64 * 1000),
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
        },
    });
    (line.to_string(), if error.is_some() { 1 } else { 0 })
}

enum Ending {
    Questions(String),
    Fail(String),
    Quota(String, Option<u64>),
}

async fn perform(action: &Action, context: &ScriptContext) -> Result<Option<Ending>, String> {
    match action {
        Action::Write(write) => {
            let path = context.confined(&context.worktree, "the worktree", &write.path)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
            }
            std::fs::write(&path, context.fill(&write.content))
                .map_err(|e| format!("write {}: {e}", context.fill(&write.path)))?;
            Ok(None)
        }
        Action::Append(append) => {
            let (root, what) = match &context.append_dir {
                Some(dir) if dir.is_absolute() => (dir, format!("${APPEND_DIR_ENV}")),
                Some(dir) => return Err(format!("{APPEND_DIR_ENV} must be an absolute path, not `{}`", dir.display())),
                None => (&context.worktree, "the worktree".to_string()),
            };
            let path = context.confined(root, &what, &append.path)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
            }
            // One write of the whole text on an O_APPEND file: concurrent appenders do not interleave.
            let text = context.fill(&append.content);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
                .map_err(|e| format!("append to {}: {e}", path.display()))?;
            Ok(None)
        }
        Action::Run(argv) => {
            let spec = CommandSpec {
                argv: argv.iter().map(|a| context.fill(a)).collect(),
                cwd: context.worktree.clone(),
                env: std::env::vars().collect(),
                timeout: Duration::from_secs(600),
                log: super::agent_dir_of(&context.run_dir).join("script-commands.log"),
            };
            let output = run_command(&spec).await.map_err(|e| e.to_string())?;
            eprintln!("{}", output.tail);
            if output.exit.success() {
                Ok(None)
            } else {
                Err(format!("`{}` {}", argv.join(" "), output.exit.describe()))
            }
        }
        Action::Commit(message) => {
            Git::new(&context.worktree).commit_all(&context.fill(message)).await.map_err(|e| e.to_string())?;
            Ok(None)
        }
        Action::SleepMs(ms) => {
            #[allow(clippy::disallowed_methods)] // the script agent runs as its own process (`baton agent-script`)
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            Ok(None)
        }
        Action::Questions(text) => Ok(Some(Ending::Questions(context.fill(text)))),
        Action::Fail(reason) => Ok(Some(Ending::Fail(context.fill(reason)))),
        Action::Progress(p) => {
            let line = serde_json::json!({
                "type": "progress",
                "message": p.message.as_deref().map(|m| context.fill(m)),
                "total_cost_usd": p.cost_usd,
                "usage": { "input_tokens": p.input_tokens, "output_tokens": p.output_tokens },
            });
            println!("{line}");
            Ok(None)
        }
        Action::Quota(q) => Ok(Some(Ending::Quota(context.fill(&q.message), q.resets_in_secs))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Steps are chosen by title substring, stage and run number, a run-less step matching any run.
    #[test]
    fn step_selection() {
        let script: Script = toml::from_str(
            r#"
            [[task]]
            match = "Divide"
            [[task.step]]
            stage = "review"
            run = 1
            actions = [{ fail = "first" }]
            [[task.step]]
            stage = "review"
            actions = [{ commit = "later" }]
            [[task]]
            match = "*"
            [[task.step]]
            stage = "review"
            actions = []
            "#,
        )
        .unwrap();
        assert!(matches!(script.step("Safe divide", "review", 1).unwrap().actions[0], Action::Fail(_)));
        assert!(matches!(script.step("Safe divide", "review", 2).unwrap().actions[0], Action::Commit(_)));
        assert!(script.step("Other", "review", 1).unwrap().actions.is_empty());
        assert!(script.step("Other", "analysis", 1).is_none());
    }

    fn context(worktree: &Path, append_dir: Option<PathBuf>) -> ScriptContext {
        ScriptContext {
            work_item: "DEMO-007".into(),
            title: "Witness".into(),
            stage: "review".into(),
            attempt: 2,
            run: 3,
            worktree: worktree.to_path_buf(),
            now_ms: 1_700_000_000_123,
            run_dir: PathBuf::from("/data/runs/DEMO-007/review-job9/run3"),
            pid: 4242,
            append_dir,
        }
    }

    // `append` adds lines (never replaces) under $BATON_SCRIPT_APPEND_DIR with every template
    // variable filled in, and leaves the worktree alone; without the variable it appends in the
    // worktree.
    #[test]
    fn append_adds_lines_under_the_append_dir() {
        let worktree = tempfile::tempdir().unwrap();
        let witness = tempfile::tempdir().unwrap();
        let script: Script = toml::from_str(
            r#"
            [[task]]
            match = "*"
            [[task.step]]
            stage = "review"
            actions = [
              { append = { path = "w/agents.log", content = "{work_item} {stage} {attempt} {run} {pid} {started_ms} {run_dir}\n" } },
              { append = { path = "w/agents.log", content = "end {work_item_snake}\n" } },
            ]
            "#,
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (line, code) =
            runtime.block_on(interpret(&script, &context(worktree.path(), Some(witness.path().to_path_buf()))));
        assert_eq!(code, 0, "{line}");
        let log = std::fs::read_to_string(witness.path().join("w/agents.log")).unwrap();
        assert_eq!(log, "DEMO-007 review 2 3 4242 1700000000123 /data/runs/DEMO-007/review-job9/run3\nend demo_007\n");
        assert!(!worktree.path().join("w").exists(), "append wrote into the worktree");
        // Without an append directory the file lies in the worktree; a second run appends.
        for _ in 0..2 {
            let (_, code) = runtime.block_on(interpret(&script, &context(worktree.path(), None)));
            assert_eq!(code, 0);
        }
        let log = std::fs::read_to_string(worktree.path().join("w/agents.log")).unwrap();
        assert_eq!(log.lines().count(), 4, "{log}");
    }

    // `append` paths are confined like `write` paths: traversal and absolute paths fail the run,
    // and a relative append directory is refused; nothing is written outside.
    #[test]
    fn append_paths_are_confined() {
        let worktree = tempfile::tempdir().unwrap();
        let witness = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for path in ["../escape.log", "/tmp/escape.log", "a/../../escape.log", ""] {
            let action = Action::Append(WriteAction { path: path.into(), content: "x\n".into() });
            let context = context(worktree.path(), Some(witness.path().join("inner")));
            let error = runtime.block_on(perform(&action, &context)).err().unwrap_or_default();
            assert!(error.contains("leaves $BATON_SCRIPT_APPEND_DIR"), "{path}: {error}");
        }
        assert!(!witness.path().join("escape.log").exists());
        let action = Action::Append(WriteAction { path: "ok.log".into(), content: "x\n".into() });
        let relative = context(worktree.path(), Some(PathBuf::from("witness")));
        let error = runtime.block_on(perform(&action, &relative)).err().unwrap_or_default();
        assert!(error.contains("must be an absolute path"), "{error}");
    }

    // An unknown action is rejected with a message naming it.
    #[test]
    fn unknown_action_rejected() {
        let error = toml::from_str::<Script>("[[task]]\nmatch='*'\n[[task.step]]\nstage='a'\nactions=[{explode=1}]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("explode"), "{error}");
    }
}
