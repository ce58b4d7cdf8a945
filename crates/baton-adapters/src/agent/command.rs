//! The `command` adapter: any program; prompt on stdin or as a file; exit code; optional result line.

use super::result_line::report_from_output;
use super::{Agent, AgentRequest};
use crate::AdapterError;
use baton_domain::AgentReport;
use baton_runner::{ExitReport, ProcessSpec};
use serde::Deserialize;

/// How the prompt reaches the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromptMode {
    /// The prompt file is the program's stdin.
    #[default]
    Stdin,
    /// The prompt file's path is in `BATON_PROMPT_FILE` and replaces `{prompt_file}` in the argv.
    File,
}

/// Runs any program as an agent.
#[derive(Debug, Clone)]
pub struct CommandAgent {
    pub name: String,
    pub argv: Vec<String>,
    pub prompt: PromptMode,
    pub model: Option<String>,
}

impl Agent for CommandAgent {
    fn adapter(&self) -> &str {
        &self.name
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        let prompt_path = request.write_prompt()?;
        let prompt_text = prompt_path.display().to_string();
        let mut argv = self.argv.iter().map(|a| a.replace("{prompt_file}", &prompt_text));
        let program = argv.next().ok_or_else(|| AdapterError::Config("agent command is empty".into()))?;
        let mut env = request.base_env.clone();
        env.extend(request.context_env());
        Ok(ProcessSpec {
            program,
            args: argv.collect(),
            cwd: request.worktree.clone(),
            env,
            stdin: (self.prompt == PromptMode::Stdin).then_some(prompt_path),
            stdout: request.stdout_path(),
            stderr: request.stderr_path(),
        })
    }

    fn observe(&self, line: &str, progress: &mut super::LiveProgress) {
        super::result_line::observe_line(line, progress);
    }

    fn parse(&self, stdout: &str, stderr: &str, exit: &ExitReport) -> AgentReport {
        let mut report = report_from_output(stdout, stderr, exit);
        if report.model.is_none() {
            report.model = self.model.clone();
        }
        report
    }
}
