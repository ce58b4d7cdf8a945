//! The `gemini` adapter: Gemini CLI in headless mode with its own HOME (a settings file pinning
//! API-key auth and turning telemetry off), the prompt as an argument, and its `json` object or
//! `stream-json` events as the run record.
//!
//! On an API error gemini prints nothing useful on stdout: the JSON report is the last thing on
//! stderr and the exit code is the HTTP status & 255 (400 → 144, 429 → 173). Its `prompt` count
//! includes cached tokens, and `candidates` excludes thinking, which is billed as output: Baton's
//! `output_tokens` include the thinking tokens (also shown as `reasoning_tokens`), as for codex.

use super::cli::{
    CliAgentConfig, Env, add_usage, check_prompt_arg, create_dir, exit_failure, is_placeholder_model, json_lines,
    killed, last_json_object, mentions_quota, raise_usage, real_model_at, reset_time_ms, shorten, str_at, u64_at,
    unreadable, write_file,
};
use super::{Agent, AgentRequest, LiveProgress, provider_wait, questions_in};
use crate::AdapterError;
use baton_domain::{AgentReport, AgentStatus, Usage};
use baton_runner::{ExitReport, ProcessSpec};
use serde_json::{Value, json};

/// Runs the Gemini CLI.
#[derive(Debug, Clone)]
pub struct GeminiAgent {
    pub config: CliAgentConfig,
}

/// Approval mode when none is configured: without `yolo` (or `auto_edit`) no write or shell tools
/// are offered in headless mode.
pub const DEFAULT_APPROVAL_MODE: &str = "yolo";

/// The most attempts gemini accepts in `general.maxAttempts`.
pub const MAX_ATTEMPTS_MAX: u32 = 10;

/// Exit code of an HTTP 429 (429 & 255).
const EXIT_TOO_MANY_REQUESTS: i32 = 173;

impl GeminiAgent {
    pub fn new(config: CliAgentConfig) -> Self {
        GeminiAgent { config }
    }

    /// `$HOME/.gemini/settings.json`: API-key auth pinned (else exit 41), no usage statistics or
    /// telemetry, and the CLI's own attempts per model request capped (`general.maxAttempts`:
    /// retries + 1, at most [`MAX_ATTEMPTS_MAX`]; its default is 10, 5 s apart and doubling).
    pub fn settings_json(&self) -> String {
        let attempts = self.config.max_retries().saturating_add(1).min(MAX_ATTEMPTS_MAX);
        let settings = json!({
            "general": {"maxAttempts": attempts},
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": false},
            "telemetry": {"enabled": false},
        });
        settings.to_string()
    }

    fn args(&self, prompt: &str) -> Vec<String> {
        let format = if self.config.streaming { "stream-json" } else { "json" };
        let mode = self.config.permission_mode.clone().unwrap_or_else(|| DEFAULT_APPROVAL_MODE.to_string());
        // `--prompt=…` in one argument, so a prompt starting with '-' is not read as an option.
        let mut args: Vec<String> =
            vec![format!("--prompt={prompt}"), "-o".into(), format.into(), "--approval-mode".into(), mode];
        if let Some(model) = &self.config.model {
            args.extend(["-m".into(), model.clone()]);
        }
        args.extend(self.config.extra_args.iter().cloned());
        args
    }
}

/// A gemini error report: `{type, message, code}`, where `message` may itself hold the API's JSON
/// error (`{"error": {"code": 429, "message": …, "status": "RESOURCE_EXHAUSTED"}}`).
#[derive(Debug)]
struct GeminiError {
    code: Option<u64>,
    status: Option<String>,
    kind: Option<String>,
    message: String,
    raw: String,
}

fn read_error(error: &Value) -> GeminiError {
    let raw = str_at(error, "message").map(String::from).unwrap_or_else(|| error.to_string());
    let inner = raw
        .find(['{', '['])
        .and_then(|at| serde_json::Deserializer::from_str(&raw[at..]).into_iter::<Value>().next())
        .and_then(Result::ok)
        .map(|v| if let Value::Array(items) = v { items.into_iter().next().unwrap_or(Value::Null) } else { v });
    let api = inner.as_ref().and_then(|v| v.get("error")).filter(|e| e.is_object());
    let code =
        api.and_then(|e| e.get("code")).and_then(Value::as_u64).or_else(|| error.get("code").and_then(Value::as_u64));
    GeminiError {
        code,
        status: api.and_then(|e| str_at(e, "status")).map(String::from),
        kind: str_at(error, "type").map(String::from),
        message: api.and_then(|e| str_at(e, "message")).map(String::from).unwrap_or_else(|| raw.clone()),
        raw,
    }
}

impl GeminiError {
    fn is_quota(&self) -> bool {
        self.code == Some(429)
            || self.status.as_deref() == Some("RESOURCE_EXHAUSTED")
            || self.kind.as_deref().is_some_and(|k| k.contains("Quota"))
            || mentions_quota(&self.raw)
    }

    fn describe(&self) -> String {
        let label = match (self.code, &self.status) {
            (Some(code), Some(status)) => format!("gemini API error {code} {status}"),
            (Some(code), None) => format!("gemini error {code}"),
            (None, Some(status)) => format!("gemini API error {status}"),
            (None, None) => "gemini error".to_string(),
        };
        format!("{label}: {}", shorten(self.message.trim(), 1000))
    }

    fn status(&self) -> AgentStatus {
        if self.is_quota() {
            AgentStatus::QuotaExhausted {
                message: format!("gemini stopped on a usage or rate limit: {}", self.describe()),
                resets_at_ms: reset_time_ms(&self.raw),
            }
        } else {
            AgentStatus::Failed { message: self.describe() }
        }
    }
}

/// What gemini's stdout says about a run, in either format.
#[derive(Debug, Default)]
struct GeminiRun {
    readable: bool,
    session_id: Option<String>,
    usage: Usage,
    model: Option<String>,
    final_text: Option<String>,
    error: Option<GeminiError>,
}

/// Usage summed over `models`, each read by `figures`, and the model with the most output.
fn sum_models(models: Option<&Value>, figures: impl Fn(&Value) -> Usage) -> (Usage, Option<String>) {
    let mut total = Usage::default();
    let mut main: Option<(String, u64)> = None;
    for (name, stats) in models.and_then(Value::as_object).into_iter().flatten() {
        let usage = figures(stats);
        add_usage(&mut total, &usage);
        if is_placeholder_model(name) {
            continue;
        }
        if main.as_ref().is_none_or(|(_, most)| usage.output_tokens > *most) {
            main = Some((name.clone(), usage.output_tokens));
        }
    }
    (total, main.map(|(name, _)| name))
}

/// `-o json` figures: `stats.models[m].tokens{prompt, cached, candidates, thoughts}`.
fn json_model_usage(stats: &Value) -> Usage {
    let tokens = stats.get("tokens").unwrap_or(&Value::Null);
    let cached = u64_at(tokens, "cached");
    let prompt =
        if tokens.get("prompt").is_some() { u64_at(tokens, "prompt") } else { u64_at(tokens, "input") + cached };
    let thoughts = u64_at(tokens, "thoughts");
    Usage {
        input_tokens: prompt.saturating_sub(cached),
        output_tokens: u64_at(tokens, "candidates") + thoughts,
        cache_read_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
    }
}

/// `-o stream-json` figures: `{input_tokens (= prompt), cached, output_tokens (= candidates),
/// total_tokens}`. Thinking is not listed; it is what `total_tokens` holds beyond the other two.
fn stream_model_usage(stats: &Value) -> Usage {
    let prompt = u64_at(stats, "input_tokens");
    let cached = u64_at(stats, "cached");
    let candidates = u64_at(stats, "output_tokens");
    let thoughts = u64_at(stats, "total_tokens").saturating_sub(prompt + candidates);
    Usage {
        input_tokens: prompt.saturating_sub(cached),
        output_tokens: candidates + thoughts,
        cache_read_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
    }
}

fn is_json_report(value: &Value) -> bool {
    value.get("type").is_none() && ["response", "stats", "error", "session_id"].iter().any(|k| value.get(k).is_some())
}

fn read_json_report(report: &Value) -> GeminiRun {
    let (usage, model) = sum_models(report.get("stats").and_then(|s| s.get("models")), json_model_usage);
    GeminiRun {
        readable: true,
        session_id: str_at(report, "session_id").map(String::from),
        usage,
        model,
        final_text: str_at(report, "response").map(String::from),
        error: report.get("error").filter(|e| !e.is_null()).map(read_error),
    }
}

fn read_stream(events: &[Value]) -> GeminiRun {
    let mut run = GeminiRun { readable: true, ..GeminiRun::default() };
    // The final text is the assistant's text after its last tool call.
    let mut text = String::new();
    for event in events {
        match str_at(event, "type") {
            Some("init") => {
                run.session_id = str_at(event, "session_id").map(String::from);
                run.model = real_model_at(event, "model");
            }
            Some("message") if str_at(event, "role") == Some("assistant") => {
                text.push_str(str_at(event, "content").unwrap_or(""));
            }
            Some("tool_use" | "tool_result") => text.clear(),
            Some("error") if str_at(event, "severity") != Some("warning") => run.error = Some(read_error(event)),
            Some("result") => {
                let stats = event.get("stats").unwrap_or(&Value::Null);
                let (usage, model) = sum_models(stats.get("models"), stream_model_usage);
                run.usage = usage;
                run.model = model.or(run.model.take());
                if str_at(event, "status") == Some("error") {
                    run.error = Some(read_error(event.get("error").unwrap_or(&Value::Null)));
                }
            }
            _ => {}
        }
    }
    run.final_text = (!text.is_empty()).then_some(text);
    run
}

fn read_stdout(stdout: &str) -> GeminiRun {
    let events: Vec<Value> = json_lines(stdout).filter(|v| str_at(v, "type").is_some()).collect();
    if !events.is_empty() {
        return read_stream(&events);
    }
    last_json_object(stdout, is_json_report).map(|report| read_json_report(&report)).unwrap_or_default()
}

/// What gemini's own exit codes mean, for the failure message.
fn exit_hint(code: Option<i32>) -> Option<&'static str> {
    match code? {
        41 => Some("authentication is not configured"),
        42 => Some("the input was refused"),
        44 => Some("the sandbox could not start"),
        52 => Some("the configuration is invalid"),
        53 => Some("the session reached its turn limit"),
        55 => Some("the workspace is not trusted"),
        _ => None,
    }
}

fn tool_note(event: &Value) -> String {
    let name = str_at(event, "tool_name").unwrap_or("tool");
    let parameters = event.get("parameters").unwrap_or(&Value::Null);
    let argument = ["file_path", "absolute_path", "path", "command", "pattern", "url", "query"]
        .iter()
        .find_map(|key| str_at(parameters, key));
    match argument {
        Some(argument) => format!("tool: {name} {}", shorten(argument.lines().next().unwrap_or(""), 160)),
        None => format!("tool: {name}"),
    }
}

impl Agent for GeminiAgent {
    fn adapter(&self) -> &str {
        "gemini"
    }

    fn model(&self) -> Option<&str> {
        self.config.model.as_deref()
    }

    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        request.write_prompt()?;
        check_prompt_arg("gemini", &format!("--prompt={}", request.prompt))?;
        let home = request.agent_dir().join("gemini-home");
        let settings_dir = home.join(".gemini");
        create_dir(&settings_dir)?;
        write_file(&settings_dir.join("settings.json"), &self.settings_json())?;
        let mut env = Env::for_request(request);
        env.set("HOME", &home.display().to_string());
        if let Some(base_url) = self.config.base_url_trimmed() {
            env.set("GOOGLE_GEMINI_BASE_URL", &base_url);
        }
        if let Some(key) = self.config.api_key(request)? {
            env.set("GEMINI_API_KEY", &key);
        }
        env.set("GEMINI_CLI_TRUST_WORKSPACE", "true");
        Ok(ProcessSpec {
            program: self.config.program_or("gemini"),
            args: self.args(&request.prompt),
            cwd: request.worktree.clone(),
            env: env.into_vec(),
            stdin: None,
            stdout: request.stdout_path(),
            stderr: request.stderr_path(),
        })
    }

    fn parse(&self, stdout: &str, stderr: &str, exit: &ExitReport) -> AgentReport {
        let mut run = read_stdout(stdout);
        if run.error.is_none() && !exit.success() {
            run.error = last_json_object(stderr, |v| v.get("error").is_some_and(Value::is_object))
                .and_then(|report| report.get("error").map(read_error));
        }
        let status = if killed(exit) {
            AgentStatus::Failed { message: format!("gemini {}", exit.describe()) }
        } else if let Some(error) = &run.error {
            error.status()
        } else if exit.code == Some(EXIT_TOO_MANY_REQUESTS) {
            AgentStatus::QuotaExhausted {
                message: format!("gemini stopped on a usage or rate limit: {}", exit_failure("gemini", exit, stderr)),
                resets_at_ms: None,
            }
        } else if !exit.success() {
            let mut message = exit_failure("gemini", exit, stderr);
            if let Some(hint) = exit_hint(exit.code) {
                message.push_str(&format!(" ({hint})"));
            }
            AgentStatus::Failed { message }
        } else if !run.readable {
            AgentStatus::Failed { message: unreadable("gemini", "no JSON report or events on stdout") }
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
            model: run.model.or_else(|| self.config.model.clone()),
            session_id: run.session_id,
            turns: None,
            final_text: run.final_text,
        }
    }

    /// gemini announces its retries on stderr: `Attempt 1 failed with status 429. Retrying with
    /// backoff...` or `Attempt 1 failed: <why>. Retrying after 5000ms...`.
    fn observe_stderr(&self, line: &str, progress: &mut LiveProgress) {
        let Some(rest) = line.trim().strip_prefix("Attempt ") else { return };
        let Some((attempt, rest)) = rest.split_once(" failed") else { return };
        let Ok(attempt) = attempt.parse::<u64>() else { return };
        let Some((why, after)) = rest.split_once(". Retrying") else { return };
        let why = why.trim_start_matches(':').trim();
        let why = why.strip_prefix("with status ").unwrap_or(why);
        let why = if why.is_empty() { "request failed".to_string() } else { shorten(why, 200) };
        let delay_ms = after
            .trim()
            .strip_prefix("after ")
            .and_then(|d| d.split("ms").next())
            .and_then(|d| d.trim().parse::<f64>().ok());
        let retries = u64::from(self.config.max_retries().min(MAX_ATTEMPTS_MAX - 1));
        progress.waits.push(provider_wait(&why, attempt, Some(retries), delay_ms));
    }

    fn observe(&self, line: &str, progress: &mut LiveProgress) {
        let Ok(event) = serde_json::from_str::<Value>(line.trim()) else { return };
        match str_at(&event, "type") {
            Some("init") => progress.model = real_model_at(&event, "model").or(progress.model.take()),
            Some("tool_use") => progress.notes.push(tool_note(&event)),
            Some("tool_result") if str_at(&event, "status") == Some("error") => {
                let error =
                    event.get("error").map(|e| str_at(e, "message").unwrap_or("").to_string()).unwrap_or_default();
                progress.notes.push(format!("tool failed: {}", shorten(&error, 160)));
            }
            Some("result") => {
                let stats = event.get("stats").unwrap_or(&Value::Null);
                let (usage, model) = sum_models(stats.get("models"), stream_model_usage);
                raise_usage(progress, &usage);
                if model.is_some() {
                    progress.model = model;
                }
            }
            _ => {}
        }
    }
}
