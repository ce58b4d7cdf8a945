//! The `codex` adapter: `codex exec --json` with its own `CODEX_HOME` (a generated `config.toml`),
//! the prompt as the last argument and stdin from /dev/null (with any other stdin, exec appends it
//! to the prompt), and its JSONL events as the run record.
//!
//! Usage comes from `turn.completed` (summed); its `input_tokens` include cached input and cache
//! writes, which Baton counts apart. Codex reports no cost: the engine prices the tokens.

use super::cli::{
    CliAgentConfig, Env, add_usage, check_prompt_arg, create_dir, exit_failure, json_lines, killed, last_line,
    mentions_quota, reset_time_ms, shorten, str_at, u64_at, unreadable, write_file,
};
use super::{Agent, AgentRequest, LiveProgress, provider_wait, questions_in};
use crate::AdapterError;
use baton_domain::{AgentReport, AgentStatus, Usage};
use baton_runner::{ExitReport, ProcessSpec};
use serde_json::Value;
use toml::{Table, Value as TomlValue};

/// Runs the OpenAI Codex CLI.
#[derive(Debug, Clone)]
pub struct CodexAgent {
    pub config: CliAgentConfig,
}

/// Sandbox when none is configured: edits in the work dir, no network.
pub const DEFAULT_SANDBOX: &str = "workspace-write";

/// Sandbox mode inside Baton's sandbox: codex's own sandbox off.
pub const SANDBOXED_MODE: &str = "danger-full-access";

/// Name of the provider defined in `config.toml` when a `base_url` is configured.
pub const LOCAL_PROVIDER: &str = "local";

/// Variable carrying the key for the local provider when no `api_key_env` is configured.
pub const LOCAL_KEY_ENV: &str = "BATON_LOCAL_API_KEY";

impl CodexAgent {
    pub fn new(config: CliAgentConfig) -> Self {
        CodexAgent { config }
    }

    /// The variable codex reads the key from: for the local provider the configured one (else
    /// Baton's own); for OpenAI's provider `OPENAI_API_KEY`.
    fn key_env(&self) -> &str {
        match (&self.config.api_key_env, &self.config.base_url) {
            (Some(name), Some(_)) => name,
            (None, Some(_)) => LOCAL_KEY_ENV,
            (_, None) => "OPENAI_API_KEY",
        }
    }

    /// The `config.toml` for this run: model, a `local` provider when `base_url` is set (its own
    /// retries capped, so a quota reaches Baton in seconds; codex ignores such settings for its
    /// built-in OpenAI provider), plugins and analytics off (they reach the internet).
    pub fn config_toml(&self) -> Result<String, AdapterError> {
        let mut root = Table::new();
        if let Some(model) = &self.config.model {
            root.insert("model".into(), model.clone().into());
        }
        if let Some(base_url) = self.config.base_url_trimmed() {
            let api_base = if base_url.ends_with("/v1") { base_url } else { format!("{base_url}/v1") };
            let mut provider = Table::new();
            provider.insert("name".into(), "Baton local".into());
            provider.insert("base_url".into(), api_base.into());
            provider.insert("env_key".into(), self.key_env().into());
            provider.insert("wire_api".into(), "responses".into());
            // Codex retries a turn's stream (a 429 with retry-after, a 5xx) `stream_max_retries`
            // times and, for a 5xx, each try's request `request_max_retries` times more: only the
            // stream retries are kept, so the CLI makes at most `max_retries + 1` requests.
            provider.insert("request_max_retries".into(), 0.into());
            provider.insert("stream_max_retries".into(), i64::from(self.config.max_retries()).into());
            root.insert("model_provider".into(), LOCAL_PROVIDER.into());
            root.insert(
                "model_providers".into(),
                TomlValue::Table(Table::from_iter([(LOCAL_PROVIDER.into(), provider.into())])),
            );
        }
        root.insert("features".into(), TomlValue::Table(Table::from_iter([("plugins".into(), false.into())])));
        root.insert("analytics".into(), TomlValue::Table(Table::from_iter([("enabled".into(), false.into())])));
        toml::to_string(&root).map_err(|e| AdapterError::Config(format!("cannot write codex config.toml: {e}")))
    }

    /// The `-s` mode: the configured one; else `workspace-write`, or `danger-full-access` inside
    /// Baton's sandbox (codex's own bubblewrap cannot start there, and Baton's confines the run).
    pub fn sandbox_mode(&self, sandboxed: bool) -> String {
        match &self.config.sandbox {
            Some(mode) => mode.clone(),
            None if sandboxed => SANDBOXED_MODE.to_string(),
            None => DEFAULT_SANDBOX.to_string(),
        }
    }

    fn args(&self, prompt: &str, sandboxed: bool) -> Vec<String> {
        let sandbox = self.sandbox_mode(sandboxed);
        let mut args: Vec<String> =
            vec!["exec".into(), "--json".into(), "--skip-git-repo-check".into(), "-s".into(), sandbox];
        args.extend(self.config.extra_args.iter().cloned());
        // `--` keeps a prompt that starts with '-' from being read as an option.
        args.extend(["--".into(), prompt.to_string()]);
        args
    }
}

/// Codex usage: `input_tokens` includes cached input and cache writes; `output_tokens` includes
/// reasoning (kept in `output_tokens`, also shown as `reasoning_tokens`).
fn turn_usage(usage: &Value) -> Usage {
    let cached = u64_at(usage, "cached_input_tokens");
    let written = u64_at(usage, "cache_write_input_tokens");
    Usage {
        input_tokens: u64_at(usage, "input_tokens").saturating_sub(cached).saturating_sub(written),
        output_tokens: u64_at(usage, "output_tokens"),
        cache_read_tokens: cached,
        cache_write_tokens: written,
        reasoning_tokens: u64_at(usage, "reasoning_output_tokens"),
    }
}

/// An error message made readable: a JSON error body inside it (`{"error": {"message": …}}`) is
/// replaced by its message and type.
fn readable_error(raw: &str) -> String {
    let Some(at) = raw.find('{') else { return shorten(raw.trim(), 1000) };
    let Some(Ok(body)) = serde_json::Deserializer::from_str(&raw[at..]).into_iter::<Value>().next() else {
        return shorten(raw.trim(), 1000);
    };
    let error = body.get("error").unwrap_or(&body);
    let Some(message) = str_at(error, "message").or_else(|| error.as_str()) else { return shorten(raw.trim(), 1000) };
    let kind = str_at(error, "type").or_else(|| str_at(error, "code"));
    let prefix = raw[..at].trim().trim_end_matches(':').trim();
    let mut text = if prefix.is_empty() { message.to_string() } else { format!("{prefix}: {message}") };
    if let Some(kind) = kind {
        text.push_str(&format!(" ({kind})"));
    }
    shorten(&text, 1000)
}

/// What codex's events say about a run.
#[derive(Debug, Default)]
struct CodexRun {
    events: usize,
    thread_id: Option<String>,
    usage: Usage,
    final_text: Option<String>,
    turn_failed: Option<String>,
    last_error: Option<String>,
}

fn read_events(stdout: &str) -> CodexRun {
    let mut run = CodexRun::default();
    for event in json_lines(stdout) {
        let Some(kind) = str_at(&event, "type") else { continue };
        let known = ["thread.", "turn.", "item."].iter().any(|p| kind.starts_with(p)) || kind == "error";
        if !known {
            continue;
        }
        run.events += 1;
        match kind {
            "thread.started" => run.thread_id = str_at(&event, "thread_id").map(String::from),
            "turn.completed" => add_usage(&mut run.usage, &event.get("usage").map(turn_usage).unwrap_or_default()),
            "item.completed" => {
                let item = event.get("item").unwrap_or(&Value::Null);
                if str_at(item, "type") == Some("agent_message") {
                    run.final_text = str_at(item, "text").map(String::from);
                }
            }
            "turn.failed" => {
                let error = event.get("error").unwrap_or(&Value::Null);
                run.turn_failed = Some(str_at(error, "message").unwrap_or("the turn failed").to_string());
            }
            "error" => run.last_error = str_at(&event, "message").map(String::from),
            _ => {}
        }
    }
    run
}

/// The provider wait in codex's retry notice `Reconnecting... 1/2 (<why>)` (an `error` event).
fn reconnecting(message: &str) -> Option<String> {
    let rest = message.trim().strip_prefix("Reconnecting...")?.trim_start();
    let (count, why) = rest.split_once(' ').unwrap_or((rest, ""));
    let (attempt, max) = count.split_once('/')?;
    let why = why.trim().trim_start_matches('(').trim_end_matches(')');
    let why = if why.is_empty() { "request failed".to_string() } else { shorten(why, 200) };
    Some(provider_wait(&why, attempt.parse().ok()?, max.parse().ok(), None))
}

fn item_notes(item: &Value, notes: &mut Vec<String>) {
    match str_at(item, "type") {
        Some("command_execution") => {
            let command = shorten(str_at(item, "command").unwrap_or(""), 160);
            match item.get("exit_code").and_then(Value::as_i64) {
                Some(code) => notes.push(format!("command: {command} (exit {code})")),
                None => notes.push(format!("command: {command}")),
            }
        }
        Some("file_change") => {
            let changes = item.get("changes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for change in changes {
                let kind = str_at(change, "kind").unwrap_or("change");
                notes.push(format!("file: {kind} {}", str_at(change, "path").unwrap_or("?")));
            }
        }
        Some("mcp_tool_call") => {
            notes.push(format!(
                "tool: {}.{}",
                str_at(item, "server").unwrap_or("mcp"),
                str_at(item, "tool").unwrap_or("?")
            ));
        }
        Some("web_search") => notes.push(format!("web search: {}", shorten(str_at(item, "query").unwrap_or(""), 160))),
        _ => {}
    }
}

impl Agent for CodexAgent {
    fn adapter(&self) -> &str {
        "codex"
    }

    fn model(&self) -> Option<&str> {
        self.config.model.as_deref()
    }

    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        request.write_prompt()?;
        check_prompt_arg("codex", &request.prompt)?;
        let home = request.agent_dir().join("codex-home");
        create_dir(&home)?;
        write_file(&home.join("config.toml"), &self.config_toml()?)?;
        let mut env = Env::for_request(request);
        env.set("CODEX_HOME", &home.display().to_string());
        if let Some(key) = self.config.api_key(request)? {
            env.set(self.key_env(), &key);
            if self.config.base_url.is_none() {
                // `codex exec` prefers CODEX_API_KEY over a login stored in CODEX_HOME.
                env.set("CODEX_API_KEY", &key);
            }
        }
        Ok(ProcessSpec {
            program: self.config.program_or("codex"),
            args: self.args(&request.prompt, request.sandboxed),
            cwd: request.worktree.clone(),
            env: env.into_vec(),
            stdin: None,
            stdout: request.stdout_path(),
            stderr: request.stderr_path(),
        })
    }

    fn parse(&self, stdout: &str, stderr: &str, exit: &ExitReport) -> AgentReport {
        let run = read_events(stdout);
        let status = if killed(exit) {
            AgentStatus::Failed { message: format!("codex {}", exit.describe()) }
        } else if run.turn_failed.is_some() || !exit.success() {
            let raw = run.turn_failed.clone().or_else(|| run.last_error.clone()).or_else(|| last_line(stderr));
            match raw {
                Some(raw) if mentions_quota(&raw) => AgentStatus::QuotaExhausted {
                    message: format!("codex stopped on a usage or rate limit: {}", readable_error(&raw)),
                    resets_at_ms: reset_time_ms(&raw),
                },
                Some(raw) if run.turn_failed.is_some() || run.last_error.is_some() => {
                    AgentStatus::Failed { message: format!("codex failed: {}", readable_error(&raw)) }
                }
                _ => AgentStatus::Failed { message: exit_failure("codex", exit, stderr) },
            }
        } else if run.events == 0 {
            AgentStatus::Failed { message: unreadable("codex", "no JSON events on stdout") }
        } else {
            match run.final_text.as_deref().and_then(questions_in) {
                Some(questions) => AgentStatus::NeedsInput { questions },
                None => AgentStatus::Succeeded,
            }
        };
        AgentReport {
            status,
            usage: run.usage,
            cost_usd: None,
            model: self.config.model.clone(),
            session_id: run.thread_id,
            turns: None,
            final_text: run.final_text,
        }
    }

    fn observe(&self, line: &str, progress: &mut LiveProgress) {
        let Ok(event) = serde_json::from_str::<Value>(line.trim()) else { return };
        if progress.model.is_none() {
            progress.model = self.config.model.clone();
        }
        match str_at(&event, "type") {
            Some("turn.completed") => {
                add_usage(&mut progress.usage, &event.get("usage").map(turn_usage).unwrap_or_default());
            }
            Some("item.completed") => item_notes(event.get("item").unwrap_or(&Value::Null), &mut progress.notes),
            Some("turn.failed") => {
                let message = event.get("error").and_then(|e| str_at(e, "message")).unwrap_or("the turn failed");
                progress.notes.push(format!("turn failed: {}", readable_error(message)));
            }
            Some("error") => {
                if let Some(wait) = str_at(&event, "message").and_then(reconnecting) {
                    progress.waits.push(wait);
                }
            }
            _ => {}
        }
    }
}
