//! Agents: turn a stage request into a process to supervise, and its output into an [`AgentReport`].

pub mod claude;
pub mod cli;
pub mod codex;
pub mod command;
pub mod gemini;
pub mod result_line;
pub mod script;

use crate::AdapterError;
use baton_domain::{AgentReport, Usage};
use baton_runner::{ExitReport, ProcessSpec};
use std::path::{Path, PathBuf};

pub use claude::ClaudeAgent;
pub use cli::CliAgentConfig;
pub use codex::CodexAgent;
pub use command::{CommandAgent, PromptMode};
pub use gemini::GeminiAgent;
pub use script::ScriptAgent;

/// Everything an adapter needs to launch one agent run.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub work_item: String,
    pub title: String,
    pub stage: String,
    pub role: String,
    pub attempt: u32,
    /// 1 for the first run of this stage for this task, 2 for the next, ...
    pub run_number: u32,
    pub worktree: PathBuf,
    /// Baton's directory for this run: the shim's records and the run's logs, and in its
    /// [`AGENT_DIR`] the part the agent may write ([`AgentRequest::agent_dir`]).
    pub run_dir: PathBuf,
    pub prompt: String,
    /// Environment allowed through to the agent (already filtered by the engine).
    pub base_env: Vec<(String, String)>,
    /// Session of this stage's previous run that ended with questions; adapters that can resume
    /// a session (claude `--resume`) continue it, the answers being in the prompt.
    pub resume_session: Option<String>,
    /// Baton's sandbox confines this run: adapters turn their CLI's own sandbox off (a sandbox
    /// inside bubblewrap fails or adds nothing).
    pub sandboxed: bool,
}

/// What a streaming agent has reported so far, updated line by line while it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveProgress {
    /// Cumulative usage so far.
    pub usage: Usage,
    /// Cumulative cost when the CLI reports one; otherwise the engine prices `usage`.
    pub cost_usd: Option<f64>,
    pub model: Option<String>,
    /// Human-readable progress lines for the task timeline (tool calls, turns), drained by the engine.
    pub notes: Vec<String>,
    /// Waits on the provider the CLI announced (a 429 or an overload it retries after a delay),
    /// one line each, e.g. `waiting on the provider: 429 (rate_limit), retry 1/2 in 0.5 s`;
    /// drained by the engine, which records each distinct line once.
    pub waits: Vec<String>,
    /// Adapter bookkeeping: usage already counted per streamed message id, so the repeated lines
    /// of one message (claude prints one per content block) are not counted twice.
    pub counted: std::collections::BTreeMap<String, Usage>,
}

/// The subdirectory of a run directory that belongs to the agent: its prompt, the generated
/// config homes, its private git objects. A sandboxed agent sees and writes this directory alone
/// of the run's: the logs and the shim's launch, intent and exit records beside it are Baton's,
/// and the sandbox hides them (an agent that could write them could forge its own cost or exit).
pub const AGENT_DIR: &str = "agent";

/// The agent's part ([`AGENT_DIR`]) of the run directory `run_dir`.
pub fn agent_dir_of(run_dir: &Path) -> PathBuf {
    run_dir.join(AGENT_DIR)
}

/// The run directory a prompt file at `prompt` belongs to (the parent of its [`AGENT_DIR`]).
pub fn run_dir_of_prompt(prompt: &Path) -> Option<PathBuf> {
    let dir = prompt.parent()?;
    match dir.file_name() {
        Some(name) if name == AGENT_DIR => dir.parent().map(Path::to_path_buf),
        _ => Some(dir.to_path_buf()),
    }
}

/// A line in an agent's final text that starts its questions for a human: `QUESTIONS:`.
pub const QUESTIONS_MARKER: &str = "QUESTIONS:";

/// The questions in an agent's final text: everything after a line starting with `QUESTIONS:`.
pub fn questions_in(final_text: &str) -> Option<String> {
    let index = final_text.lines().position(|l| l.trim_start().starts_with(QUESTIONS_MARKER))?;
    let mut lines = final_text.lines().skip(index);
    let first = lines.next()?.trim_start().trim_start_matches(QUESTIONS_MARKER).trim().to_string();
    let rest: Vec<&str> = lines.collect();
    let text = if first.is_empty() {
        rest.join("\n")
    } else {
        std::iter::once(first.as_str()).chain(rest).collect::<Vec<_>>().join("\n")
    };
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

impl AgentRequest {
    pub fn stdout_path(&self) -> PathBuf {
        self.run_dir.join("stdout.log")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.run_dir.join("stderr.log")
    }

    /// The part of the run directory the agent may write ([`AGENT_DIR`]).
    pub fn agent_dir(&self) -> PathBuf {
        agent_dir_of(&self.run_dir)
    }

    pub fn prompt_path(&self) -> PathBuf {
        self.agent_dir().join("prompt.md")
    }

    /// Writes the prompt file (creating the agent's directory); ticket text reaches agents only
    /// as file or stdin content.
    pub fn write_prompt(&self) -> Result<PathBuf, AdapterError> {
        let path = self.prompt_path();
        let dir = self.agent_dir();
        std::fs::create_dir_all(&dir).map_err(|source| AdapterError::Io { what: dir.display().to_string(), source })?;
        std::fs::write(&path, &self.prompt)
            .map_err(|source| AdapterError::Io { what: path.display().to_string(), source })?;
        Ok(path)
    }

    /// The context variables every adapter exposes (`BATON_STAGE`, `BATON_WORK_ITEM`, ...).
    pub fn context_env(&self) -> Vec<(String, String)> {
        vec![
            ("BATON_WORK_ITEM".into(), self.work_item.clone()),
            ("BATON_TASK_TITLE".into(), self.title.clone()),
            ("BATON_STAGE".into(), self.stage.clone()),
            ("BATON_ROLE".into(), self.role.clone()),
            ("BATON_ATTEMPT".into(), self.attempt.to_string()),
            ("BATON_RUN".into(), self.run_number.to_string()),
            ("BATON_PROMPT_FILE".into(), self.prompt_path().display().to_string()),
        ]
    }
}

/// An agent adapter.
pub trait Agent: Send + Sync {
    /// Adapter name as recorded on agent runs (`script`, `command`, `claude`, ...).
    fn adapter(&self) -> &str;

    /// Model the run is configured for, if any.
    fn model(&self) -> Option<&str>;

    /// Prepares files (prompt, config homes) and returns the process to run.
    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError>;

    /// Turns the finished process's output into the common record. Never panics on bad output.
    fn parse(&self, stdout: &str, stderr: &str, exit: &ExitReport) -> AgentReport;

    /// Reads one complete stdout line while the agent runs (streaming adapters update usage and
    /// add timeline notes). The default ignores it. Never panics on bad input.
    fn observe(&self, _line: &str, _progress: &mut LiveProgress) {}

    /// Reads one complete stderr line while the agent runs (CLIs that announce their retries there
    /// add provider waits). The default ignores it. Never panics on bad input.
    fn observe_stderr(&self, _line: &str, _progress: &mut LiveProgress) {}
}

/// The timeline line for one wait on the provider: `waiting on the provider: <why>, retry n/m`
/// and, when the CLI says, ` in <seconds> s`.
pub fn provider_wait(why: &str, attempt: u64, max: Option<u64>, delay_ms: Option<f64>) -> String {
    let of = max.map(|m| format!("/{m}")).unwrap_or_default();
    let delay = delay_ms.map(|ms| format!(" in {:.1} s", ms / 1000.0)).unwrap_or_default();
    format!("waiting on the provider: {why}, retry {attempt}{of}{delay}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The prompt lies in the agent's part of the run directory; the run directory is the one above
    // it (and, for a prompt written before runs had that part, its own directory).
    #[test]
    fn the_run_directory_of_a_prompt_is_above_the_agents_part() {
        let run = Path::new("/data/runs/W-1/analysis-job3/run1");
        assert_eq!(run_dir_of_prompt(&run.join("agent/prompt.md")).as_deref(), Some(run));
        assert_eq!(run_dir_of_prompt(&run.join("prompt.md")).as_deref(), Some(run));
    }
}
