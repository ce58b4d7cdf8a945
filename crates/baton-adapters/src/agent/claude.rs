//! The `claude` adapter: Claude Code in print mode (`claude -p`), prompt on stdin, its own fresh
//! config directory, and the final `result` object (json or stream-json) as the run record.
//!
//! Accounting comes from the result's `modelUsage`, keyed by the model the CLI really used (its
//! aliases resolve to other ids than `--model`), and failure from `is_error`, never `subtype`
//! alone: an API error ends with `is_error: true, subtype: "success"`. Its made-up assistant
//! message names the model `<synthetic>`: the run keeps the last real model (or the configured one).

use super::cli::{
    CliAgentConfig, Env, create_dir, exit_failure, is_placeholder_model, json_lines, killed, last_line, mentions_quota,
    quota_status, raise_usage, real_model_at, shorten, str_at, u64_at, unreadable,
};
use super::{Agent, AgentRequest, LiveProgress, provider_wait, questions_in};
use crate::AdapterError;
use baton_domain::{AgentReport, AgentStatus, Usage};
use baton_runner::{ExitReport, ProcessSpec};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Runs Claude Code.
#[derive(Debug, Clone)]
pub struct ClaudeAgent {
    pub config: CliAgentConfig,
}

/// Permission mode when none is configured: file edits allowed, nothing else asked.
pub const DEFAULT_PERMISSION_MODE: &str = "acceptEdits";

/// Directories searched (per level) for an earlier run's session transcript when resuming.
const SESSION_SEARCH_ENTRIES_MAX: usize = 2_000;

impl ClaudeAgent {
    pub fn new(config: CliAgentConfig) -> Self {
        ClaudeAgent { config }
    }

    fn args(&self, resume: Option<&str>) -> Vec<String> {
        let config = &self.config;
        let mut args: Vec<String> = vec!["-p".into(), "--output-format".into()];
        if config.streaming {
            args.extend(["stream-json".into(), "--verbose".into()]);
        } else {
            args.push("json".into());
        }
        if let Some(model) = &config.model {
            args.extend(["--model".into(), model.clone()]);
        }
        let mode = config.permission_mode.clone().unwrap_or_else(|| DEFAULT_PERMISSION_MODE.to_string());
        args.extend(["--permission-mode".into(), mode]);
        if let Some(turns) = config.max_turns {
            args.extend(["--max-turns".into(), turns.to_string()]);
        }
        if let Some(session) = resume {
            args.extend(["--resume".into(), session.to_string()]);
        }
        // Variadic: the tool list ends at the next option, so it goes after the others.
        if !config.allowed_tools.is_empty() {
            args.push("--allowedTools".into());
            args.extend(config.allowed_tools.iter().cloned());
        }
        args.extend(config.extra_args.iter().cloned());
        args
    }

    /// The report when stdout holds no `result` object: the figures streamed so far, and why.
    fn report_without_result(&self, stdout: &str, stderr: &str, exit: &ExitReport) -> AgentReport {
        let mut live = LiveProgress::default();
        stdout.lines().for_each(|line| self.observe(line, &mut live));
        let plain_stdout: String =
            stdout.lines().filter(|l| !l.trim_start().starts_with('{')).collect::<Vec<_>>().join("\n");
        let said = [last_line(stderr), last_line(&plain_stdout)].into_iter().flatten().collect::<Vec<_>>().join(" / ");
        let status = if killed(exit) {
            AgentStatus::Failed { message: format!("claude {}", exit.describe()) }
        } else if !exit.success() && mentions_quota(&said) {
            quota_status(format!("claude stopped on a usage or rate limit: {said}"))
        } else if !exit.success() {
            AgentStatus::Failed {
                message: exit_failure("claude", exit, if stderr.trim().is_empty() { &plain_stdout } else { stderr }),
            }
        } else {
            AgentStatus::Failed { message: unreadable("claude", "no result object on stdout") }
        };
        AgentReport {
            status,
            usage: live.usage,
            cost_usd: None,
            model: live.model.or_else(|| self.config.model.clone()),
            session_id: json_lines(stdout).find_map(|v| str_at(&v, "session_id").map(String::from)),
            turns: None,
            final_text: None,
        }
    }
}

/// The parts of claude's final `result` object a report needs.
#[derive(Debug, Default)]
struct ClaudeResult {
    is_error: bool,
    subtype: Option<String>,
    api_error_status: Option<u64>,
    text: Option<String>,
    errors: Vec<String>,
    session_id: Option<String>,
    num_turns: Option<u32>,
    cost_usd: Option<f64>,
    usage: Usage,
    /// The model with the most output tokens in `modelUsage` (the main model, not a helper).
    model: Option<String>,
}

fn read_result(value: &Value) -> ClaudeResult {
    let (usage, model) = match value.get("modelUsage").and_then(Value::as_object).filter(|m| !m.is_empty()) {
        Some(models) => {
            let mut total = Usage::default();
            let mut main: Option<(&String, u64)> = None;
            for (name, figures) in models {
                let usage = Usage {
                    input_tokens: u64_at(figures, "inputTokens"),
                    output_tokens: u64_at(figures, "outputTokens"),
                    cache_read_tokens: u64_at(figures, "cacheReadInputTokens"),
                    cache_write_tokens: u64_at(figures, "cacheCreationInputTokens"),
                    reasoning_tokens: u64_at(figures, "thinkingTokens"),
                };
                super::cli::add_usage(&mut total, &usage);
                if is_placeholder_model(name) {
                    continue;
                }
                if main.is_none_or(|(_, most)| usage.output_tokens > most) {
                    main = Some((name, usage.output_tokens));
                }
            }
            (total, main.map(|(name, _)| name.clone()))
        }
        None => (value.get("usage").map(message_usage).unwrap_or_default(), None),
    };
    ClaudeResult {
        is_error: value.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        subtype: str_at(value, "subtype").map(String::from),
        api_error_status: value.get("api_error_status").and_then(Value::as_u64),
        text: str_at(value, "result").map(String::from),
        errors: value
            .get("errors")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(|e| e.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        session_id: str_at(value, "session_id").map(String::from),
        num_turns: value.get("num_turns").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()),
        cost_usd: value.get("total_cost_usd").and_then(Value::as_f64),
        usage,
        model,
    }
}

/// Anthropic usage figures (`message.usage` or `result.usage`); the four classes are disjoint.
fn message_usage(usage: &Value) -> Usage {
    Usage {
        input_tokens: u64_at(usage, "input_tokens"),
        output_tokens: u64_at(usage, "output_tokens"),
        cache_read_tokens: u64_at(usage, "cache_read_input_tokens"),
        cache_write_tokens: u64_at(usage, "cache_creation_input_tokens"),
        reasoning_tokens: 0,
    }
}

fn is_result(value: &Value) -> bool {
    str_at(value, "type") == Some("result")
}

/// The final `result` object: the whole of stdout (json; an array of messages with `--verbose`),
/// else the last result line (stream-json).
fn find_result(stdout: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(stdout.trim()) {
        Ok(value @ Value::Object(_)) if is_result(&value) => return Some(value),
        Ok(Value::Array(items)) => return items.into_iter().rev().find(is_result),
        _ => {}
    }
    let lines: Vec<Value> = json_lines(stdout).collect();
    lines.into_iter().rev().find(is_result)
}

/// The status of a run whose result says `is_error: true`.
fn error_status(result: &ClaudeResult) -> AgentStatus {
    let text = result.text.clone().unwrap_or_default();
    let detail = match (result.errors.is_empty(), text.trim().is_empty()) {
        (false, _) => result.errors.join("; "),
        (true, false) => text.clone(),
        (true, true) => "no details given".to_string(),
    };
    let quota = result.api_error_status == Some(429)
        || mentions_quota(&text)
        || result.errors.iter().any(|e| mentions_quota(e));
    if quota {
        return quota_status(format!("claude stopped on a usage or rate limit: {detail}"));
    }
    let message = match result.subtype.as_deref() {
        Some("error_max_turns") => {
            let turns = result.num_turns.map(|n| format!(" after {n} turns")).unwrap_or_default();
            format!("claude reached its maximum number of turns{turns}: {detail}")
        }
        Some("error_max_budget_usd") => format!("claude reached its --max-budget-usd limit: {detail}"),
        Some(subtype) if subtype.starts_with("error") => format!("claude ended with {subtype}: {detail}"),
        _ => match result.api_error_status {
            Some(status) => format!("claude reported an error (API status {status}): {detail}"),
            None => format!("claude reported an error: {detail}"),
        },
    };
    AgentStatus::Failed { message }
}

/// A short description of a tool call for the timeline: its name and main argument.
fn tool_note(block: &Value) -> String {
    let name = str_at(block, "name").unwrap_or("tool");
    let input = block.get("input").cloned().unwrap_or(Value::Null);
    let argument = ["file_path", "notebook_path", "command", "pattern", "path", "url", "query", "description"]
        .iter()
        .find_map(|key| str_at(&input, key));
    match argument {
        Some(argument) => format!("tool: {name} {}", shorten(argument.lines().next().unwrap_or(""), 160)),
        None => format!("tool: {name}"),
    }
}

fn observe_assistant(event: &Value, progress: &mut LiveProgress) {
    let Some(message) = event.get("message") else { return };
    if let Some(usage) = message.get("usage") {
        let now = message_usage(usage);
        let id = str_at(message, "id").or_else(|| str_at(event, "uuid")).unwrap_or("").to_string();
        let counted = progress.counted.entry(id).or_default();
        // Lines of one message repeat its usage; count only what grew since the last line.
        let delta = Usage {
            input_tokens: now.input_tokens.saturating_sub(counted.input_tokens),
            output_tokens: now.output_tokens.saturating_sub(counted.output_tokens),
            cache_read_tokens: now.cache_read_tokens.saturating_sub(counted.cache_read_tokens),
            cache_write_tokens: now.cache_write_tokens.saturating_sub(counted.cache_write_tokens),
            reasoning_tokens: 0,
        };
        super::cli::add_usage(counted, &delta);
        super::cli::add_usage(&mut progress.usage, &delta);
    }
    // An API error ends with a made-up `<synthetic>` message: the last real model stands.
    if event.get("parent_tool_use_id").is_none_or(Value::is_null)
        && let Some(model) = real_model_at(message, "model")
    {
        progress.model = Some(model);
    }
    let blocks = message.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for block in blocks.iter().filter(|b| str_at(b, "type") == Some("tool_use")) {
        progress.notes.push(tool_note(block));
    }
}

fn observe_system(event: &Value, progress: &mut LiveProgress) {
    match str_at(event, "subtype") {
        Some("init") if progress.model.is_none() => progress.model = real_model_at(event, "model"),
        // `{attempt, max_retries, retry_delay_ms, error_status (null: no connection), error}`.
        Some("api_retry") => {
            let status = event.get("error_status").and_then(Value::as_u64).map(|s| s.to_string());
            let why = match (status, str_at(event, "error")) {
                (Some(status), Some(error)) => format!("{status} ({error})"),
                (Some(status), None) => status,
                (None, Some(error)) => error.to_string(),
                (None, None) => "connection error".to_string(),
            };
            let max = event.get("max_retries").and_then(Value::as_u64);
            let delay = event.get("retry_delay_ms").and_then(Value::as_f64);
            progress.waits.push(provider_wait(&why, u64_at(event, "attempt"), max, delay));
        }
        Some("compact_boundary") => progress.notes.push("context compacted".to_string()),
        _ => {}
    }
}

/// A session id safe to use as a file name.
fn safe_session_id(session: &str) -> bool {
    !session.is_empty()
        && session.len() <= 200
        && session.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).take(SESSION_SEARCH_ENTRIES_MAX).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The claude CLI's config directory in the agent's directory (`CLAUDE_CONFIG_DIR`).
const CLAUDE_HOME: &str = "claude-home";

/// Finds an earlier run's transcript of `session` (`<run>/agent/claude-home/projects/<cwd>/<session>.jsonl`
/// under the task's run directories, up to two levels above this run; `<run>/claude-home/…` for a
/// run written before the agent had a directory of its own) and copies it into this run's fresh
/// config directory, so `--resume` finds it. Returns whether it did.
fn carry_session(run_dir: &Path, home: &Path, session: &str) -> bool {
    if !safe_session_id(session) {
        return false;
    }
    let file_name = format!("{session}.jsonl");
    let task_dir = run_dir.parent().and_then(Path::parent);
    let runs = task_dir.map(entries).unwrap_or_default().into_iter().flat_map(|job| entries(&job));
    let found = runs
        .filter(|run| run.as_path() != run_dir)
        .flat_map(|run| [super::agent_dir_of(&run).join(CLAUDE_HOME), run.join(CLAUDE_HOME)])
        .flat_map(|home| entries(&home.join("projects")))
        .map(|project| project.join(&file_name))
        .find(|transcript| transcript.is_file());
    let Some(transcript) = found else { return false };
    let Some(project) = transcript.parent().and_then(Path::file_name) else { return false };
    let target = home.join("projects").join(project);
    let copied = std::fs::create_dir_all(&target).and_then(|()| std::fs::copy(&transcript, target.join(&file_name)));
    if let Err(error) = &copied {
        tracing::warn!(%error, session, "cannot carry the claude session into the new run");
    }
    copied.is_ok()
}

impl Agent for ClaudeAgent {
    fn adapter(&self) -> &str {
        "claude"
    }

    fn model(&self) -> Option<&str> {
        self.config.model.as_deref()
    }

    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        let prompt = request.write_prompt()?;
        let home = request.agent_dir().join(CLAUDE_HOME);
        create_dir(&home)?;
        let resume = request.resume_session.as_deref().filter(|session| {
            let carried = carry_session(&request.run_dir, &home, session);
            if !carried {
                tracing::warn!(
                    session,
                    "claude session to resume not found; starting afresh (answers are in the prompt)"
                );
            }
            carried
        });
        let mut env = Env::for_request(request);
        env.set("CLAUDE_CONFIG_DIR", &home.display().to_string());
        if let Some(base_url) = self.config.base_url_trimmed() {
            env.set("ANTHROPIC_BASE_URL", &base_url);
        }
        if let Some(key) = self.config.api_key(request)? {
            env.set("ANTHROPIC_API_KEY", &key);
        }
        env.set("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
        // Its own retries of a 429 or an overload (default 10, clamped at 15 by the CLI).
        env.set("CLAUDE_CODE_MAX_RETRIES", &self.config.max_retries().to_string());
        Ok(ProcessSpec {
            program: self.config.program_or("claude"),
            args: self.args(resume),
            cwd: request.worktree.clone(),
            env: env.into_vec(),
            // `claude -p` without a prompt argument reads the prompt from stdin.
            stdin: Some(prompt),
            stdout: request.stdout_path(),
            stderr: request.stderr_path(),
        })
    }

    fn parse(&self, stdout: &str, stderr: &str, exit: &ExitReport) -> AgentReport {
        let Some(value) = find_result(stdout) else {
            return self.report_without_result(stdout, stderr, exit);
        };
        let result = read_result(&value);
        let status = if result.is_error {
            error_status(&result)
        } else if !exit.success() {
            AgentStatus::Failed { message: exit_failure("claude", exit, stderr) }
        } else {
            match result.text.as_deref().and_then(questions_in) {
                Some(questions) => AgentStatus::NeedsInput { questions },
                None => AgentStatus::Succeeded,
            }
        };
        let model = result.model.clone().or_else(|| {
            let mut live = LiveProgress::default();
            stdout.lines().for_each(|line| self.observe(line, &mut live));
            live.model.or_else(|| self.config.model.clone())
        });
        AgentReport {
            status,
            usage: result.usage,
            cost_usd: result.cost_usd,
            model,
            session_id: result.session_id,
            turns: result.num_turns,
            final_text: result.text,
        }
    }

    fn observe(&self, line: &str, progress: &mut LiveProgress) {
        let Ok(event) = serde_json::from_str::<Value>(line.trim()) else { return };
        match str_at(&event, "type") {
            Some("assistant") => observe_assistant(&event, progress),
            Some("system") => observe_system(&event, progress),
            Some("result") => {
                let result = read_result(&event);
                raise_usage(progress, &result.usage);
                if result.cost_usd.is_some() {
                    progress.cost_usd = result.cost_usd;
                }
                if result.model.is_some() {
                    progress.model = result.model;
                }
            }
            _ => {}
        }
    }
}
