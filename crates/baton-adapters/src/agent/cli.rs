//! What the three real agent CLIs (`claude`, `codex`, `gemini`) share: their configuration, the
//! environment they are given, reading their JSON output, and recognising provider quota errors.

use super::{AgentRequest, LiveProgress};
use crate::AdapterError;
use baton_domain::{AgentStatus, Usage};
use baton_runner::ExitReport;
use serde_json::Value;
use std::path::Path;

/// Configuration of one real agent CLI.
#[derive(Debug, Clone, Default)]
pub struct CliAgentConfig {
    /// Path or name of the CLI binary (`claude`, `codex`, `gemini`, or an absolute path); empty
    /// means the adapter's own name.
    pub program: String,
    pub model: Option<String>,
    /// Model API base, e.g. `http://127.0.0.1:PORT` for `baton mock-llm`.
    pub base_url: Option<String>,
    /// Name of the variable holding the API key. Its value is read from the request's `base_env`
    /// only (the engine has already filtered the environment). When absent and `base_url` is set,
    /// a placeholder key is passed so no real key ever reaches a custom endpoint by accident.
    pub api_key_env: Option<String>,
    /// claude `--max-turns`.
    pub max_turns: Option<u32>,
    /// claude `--permission-mode` (default `acceptEdits`); gemini `--approval-mode` (default `yolo`).
    pub permission_mode: Option<String>,
    /// claude `--allowedTools`.
    pub allowed_tools: Vec<String>,
    /// codex `-s` (default `workspace-write`).
    pub sandbox: Option<String>,
    /// claude: `stream-json --verbose` instead of `json`; gemini: `-o stream-json` instead of
    /// `json`. codex always streams (`--json`).
    pub streaming: bool,
    /// Appended to the generated arguments.
    pub extra_args: Vec<String>,
    /// How many times the CLI itself retries a failed model request (a 429, an overload) before
    /// it gives up and Baton's own quota handling decides; `None` means [`DEFAULT_MAX_RETRIES`].
    /// claude `CLAUDE_CODE_MAX_RETRIES`, gemini `general.maxAttempts` (retries + 1), codex
    /// `stream_max_retries` of the provider Baton defines for a `base_url`.
    pub max_retries: Option<u32>,
}

/// The CLIs' own retries of a failed model request when none is configured: a few, so a quota
/// reaches Baton in seconds instead of the minutes the CLIs' defaults wait.
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// The key passed to a custom `base_url` when no key variable is configured.
pub const PLACEHOLDER_API_KEY: &str = "baton-placeholder-key";

/// The OS limit on one argument (`MAX_ARG_STRLEN`, 32 pages), less room for the terminating NUL.
pub const ARG_BYTES_MAX: usize = 131_071;

/// How much of a stream's end is searched for an error report.
const TAIL_BYTES_MAX: usize = 64 * 1024;

impl CliAgentConfig {
    /// The program to run: the configured one, or `default` when none is.
    pub fn program_or(&self, default: &str) -> String {
        if self.program.trim().is_empty() { default.to_string() } else { self.program.clone() }
    }

    /// The API key to pass: the configured variable's value from `base_env`, else a placeholder
    /// when a custom `base_url` is set, else nothing (the CLI uses whatever `base_env` holds).
    pub fn api_key(&self, request: &AgentRequest) -> Result<Option<String>, AdapterError> {
        match &self.api_key_env {
            Some(name) => {
                request.base_env.iter().find(|(k, _)| k == name).map(|(_, v)| Some(v.clone())).ok_or_else(|| {
                    AdapterError::Config(format!(
                        "the API key variable `{name}` is not in the agent's environment; \
                         add it to the environment passed through to agents"
                    ))
                })
            }
            None => Ok(self.base_url.as_ref().map(|_| PLACEHOLDER_API_KEY.to_string())),
        }
    }

    /// The CLI's own retries of a failed model request (configured, or [`DEFAULT_MAX_RETRIES`]).
    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    /// `base_url` without a trailing slash.
    pub fn base_url_trimmed(&self) -> Option<String> {
        self.base_url.as_deref().map(|u| u.trim_end_matches('/').to_string()).filter(|u| !u.is_empty())
    }
}

/// An agent's environment: `base_env`, then the context variables, then the adapter's own; a later
/// value replaces an earlier one of the same name so each name appears once.
#[derive(Debug, Default)]
pub struct Env(Vec<(String, String)>);

impl Env {
    /// `base_env` plus the request's context variables.
    pub fn for_request(request: &AgentRequest) -> Env {
        let mut env = Env::default();
        for (key, value) in request.base_env.iter().chain(request.context_env().iter()) {
            env.set(key, value);
        }
        env
    }

    pub fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

/// Refuses a prompt too long to pass as one argument, saying why.
pub fn check_prompt_arg(adapter: &str, prompt: &str) -> Result<(), AdapterError> {
    if prompt.len() > ARG_BYTES_MAX {
        return Err(AdapterError::Config(format!(
            "the prompt is {} bytes; {adapter} takes it as one command-line argument, which the OS limits \
             to {ARG_BYTES_MAX} bytes: shorten the prompt template or the artifacts it includes",
            prompt.len()
        )));
    }
    Ok(())
}

/// Creates a directory, naming it on error.
pub fn create_dir(path: &Path) -> Result<(), AdapterError> {
    std::fs::create_dir_all(path).map_err(|source| AdapterError::Io { what: path.display().to_string(), source })
}

/// Writes a file, naming it on error.
pub fn write_file(path: &Path, contents: &str) -> Result<(), AdapterError> {
    std::fs::write(path, contents).map_err(|source| AdapterError::Io { what: path.display().to_string(), source })
}

/// The JSON objects among `text`'s lines, in order; other lines are skipped.
pub fn json_lines(text: &str) -> impl Iterator<Item = Value> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
}

/// The last complete JSON object in `text` that satisfies `wanted`, also when it spans several
/// lines (gemini pretty-prints its error report after a stack trace). Only objects starting a line
/// are tried, from the end, within the last 64 KiB.
pub fn last_json_object(text: &str, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
    let mut start = text.len().saturating_sub(TAIL_BYTES_MAX);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    let mut candidates: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in tail.split_inclusive('\n') {
        if line.trim_start().starts_with('{') {
            candidates.push(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    candidates.into_iter().rev().find_map(|at| {
        let value = serde_json::Deserializer::from_str(&tail[at..]).into_iter::<Value>().next()?.ok()?;
        (value.is_object() && wanted(&value)).then_some(value)
    })
}

/// A string field, `None` when absent or not a string.
pub fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A count field, 0 when absent, negative or not a number.
pub fn u64_at(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(|v| v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))).unwrap_or(0)
}

/// The last non-empty line of `text`, shortened to 500 characters.
pub fn last_line(text: &str) -> Option<String> {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty()).map(|l| shorten(l, 500))
}

/// `text` cut to at most `chars` characters, with an ellipsis when cut.
pub fn shorten(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().nth(chars).is_some() {
        out.push('…');
    }
    out
}

/// "`adapter` exited with code 2: <stderr's last line>".
pub fn exit_failure(adapter: &str, exit: &ExitReport, stderr: &str) -> String {
    match last_line(stderr) {
        Some(line) => format!("{adapter} {}: {line}", exit.describe()),
        None => format!("{adapter} {}", exit.describe()),
    }
}

/// "the output of `adapter` could not be read: …".
pub fn unreadable(adapter: &str, what: &str) -> String {
    format!("the output of {adapter} could not be read: {what}")
}

/// Whether the run was ended from outside (timeout, stall, stop) rather than by the CLI.
pub fn killed(exit: &ExitReport) -> bool {
    exit.timed_out || exit.stalled || exit.stopped
}

/// A model name a CLI reports that names no real model, so it is never recorded (and never
/// priced): claude's `<synthetic>` (the message it makes up for an API error) and gemini's `auto`
/// aliases (its router picks the real model per request).
pub fn is_placeholder_model(model: &str) -> bool {
    let model = model.trim();
    model.is_empty() || model.starts_with('<') || model == "auto" || model.starts_with("auto-")
}

/// The model name at `key` of `value`, unless it is a placeholder.
pub fn real_model_at(value: &Value, key: &str) -> Option<String> {
    str_at(value, key).filter(|m| !is_placeholder_model(m)).map(String::from)
}

/// Adds `delta` to `usage`.
pub fn add_usage(usage: &mut Usage, delta: &Usage) {
    usage.input_tokens += delta.input_tokens;
    usage.output_tokens += delta.output_tokens;
    usage.cache_read_tokens += delta.cache_read_tokens;
    usage.cache_write_tokens += delta.cache_write_tokens;
    usage.reasoning_tokens += delta.reasoning_tokens;
}

/// Raises live progress to the final figures without ever lowering a count (progress is monotone).
pub fn raise_usage(progress: &mut LiveProgress, final_usage: &Usage) {
    let usage = &mut progress.usage;
    usage.input_tokens = usage.input_tokens.max(final_usage.input_tokens);
    usage.output_tokens = usage.output_tokens.max(final_usage.output_tokens);
    usage.cache_read_tokens = usage.cache_read_tokens.max(final_usage.cache_read_tokens);
    usage.cache_write_tokens = usage.cache_write_tokens.max(final_usage.cache_write_tokens);
    usage.reasoning_tokens = usage.reasoning_tokens.max(final_usage.reasoning_tokens);
}

/// Phrases by which providers and CLIs say a usage limit, rate limit or quota was hit. Only
/// error messages are searched, never an agent's ordinary final text.
const QUOTA_PHRASES: &[&str] = &[
    "usage limit",
    "usage_limit",
    "rate limit",
    "rate_limit",
    "ratelimit",
    "quota",
    "resource_exhausted",
    "resource exhausted",
    "too many requests",
    "hit your limit",
    "session limit",
    "weekly limit",
];

/// Whether an error message says a usage limit, rate limit or quota was hit (or HTTP 429).
pub fn mentions_quota(message: &str) -> bool {
    let lower = message.to_lowercase();
    QUOTA_PHRASES.iter().any(|p| lower.contains(p)) || has_status_429(&lower)
}

/// "429" standing alone as a number (not part of a longer number such as a request id).
fn has_status_429(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("429").any(|(at, _)| {
        let before = at.checked_sub(1).and_then(|i| bytes.get(i));
        let after = bytes.get(at + 3);
        !before.is_some_and(|b| b.is_ascii_alphanumeric()) && !after.is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

/// The quota status for an error message, with the reset time when the message states it.
pub fn quota_status(message: String) -> AgentStatus {
    let resets_at_ms = reset_time_ms(&message);
    AgentStatus::QuotaExhausted { message, resets_at_ms }
}

/// The reset time stated in a quota message, in Unix milliseconds: Claude's
/// `usage limit reached|<unix seconds>`, a JSON `"resets_at": <unix seconds>`, or an ISO 8601 time
/// with a zone (`2026-11-21T10:00:00Z`). A bare clock time ("resets 3pm", "try again at 3:15 PM")
/// or a relative one ("in 2 hours") names no date, and parsing has no clock, so it gives `None`
/// and the engine backs off instead.
pub fn reset_time_ms(message: &str) -> Option<i64> {
    pipe_timestamp(message).or_else(|| resets_at_field(message)).or_else(|| iso_time_ms(message))
}

fn unix_to_ms(digits: &str) -> Option<i64> {
    let value: i64 = digits.parse().ok()?;
    match digits.len() {
        9 | 10 => Some(value * 1000),
        12 | 13 => Some(value),
        _ => None,
    }
}

fn pipe_timestamp(message: &str) -> Option<i64> {
    let (_, after) = message.rsplit_once('|')?;
    let digits: String = after.trim_start().chars().take_while(char::is_ascii_digit).collect();
    unix_to_ms(&digits)
}

fn resets_at_field(message: &str) -> Option<i64> {
    let at = message.find("resets_at")?;
    let rest = message[at + "resets_at".len()..].trim_start_matches(['"', ':', ' ']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    unix_to_ms(&digits)
}

/// The first `YYYY-MM-DD[T ]HH:MM[:SS[.fff]](Z|±HH[:]MM)` in `text`, in Unix milliseconds.
pub fn iso_time_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find_map(|at| iso_at(&bytes[at..]))
}

fn digits(bytes: &[u8], at: usize, count: usize) -> Option<i64> {
    let slice = bytes.get(at..at + count)?;
    slice.iter().all(u8::is_ascii_digit).then(|| slice.iter().fold(0i64, |n, b| n * 10 + i64::from(b - b'0')))
}

fn iso_at(b: &[u8]) -> Option<i64> {
    let year = digits(b, 0, 4)?;
    (b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-')).then_some(())?;
    let (month, day) = (digits(b, 5, 2)?, digits(b, 8, 2)?);
    matches!(b.get(10), Some(b'T' | b' ')).then_some(())?;
    let (hour, minute) = (digits(b, 11, 2)?, digits(b, 14, 2)?);
    (b.get(13) == Some(&b':')).then_some(())?;
    let mut at = 16;
    let mut second = 0;
    if b.get(at) == Some(&b':') {
        second = digits(b, at + 1, 2)?;
        at += 3;
    }
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let fraction = &b[start..at];
        millis =
            fraction.iter().chain([b'0', b'0', b'0'].iter()).take(3).fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    }
    let offset_minutes = match b.get(at) {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = digits(b, at + 1, 2)?;
            let minutes = if b.get(at + 3) == Some(&b':') { digits(b, at + 4, 2)? } else { digits(b, at + 3, 2)? };
            let total = hours * 60 + minutes;
            if *sign == b'+' { total } else { -total }
        }
        _ => return None,
    };
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60 && second < 61;
    valid.then_some(())?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reset times are read from Claude's pipe form, a resets_at field and zoned ISO times only.
    #[test]
    fn reset_times() {
        assert_eq!(reset_time_ms("Claude AI usage limit reached|1762952400"), Some(1_762_952_400_000));
        assert_eq!(reset_time_ms(r#"{"type":"usage_limit_reached","resets_at": 1735510500}"#), Some(1_735_510_500_000));
        assert_eq!(reset_time_ms("limit resets at 2026-11-21T10:00:00Z"), Some(1_795_255_200_000));
        assert_eq!(reset_time_ms("resets 2026-11-21T11:00:00.5+01:00"), Some(1_795_255_200_500));
        assert_eq!(reset_time_ms("resets 2026-11-21 10:00"), None);
        assert_eq!(reset_time_ms("You've hit your limit · resets 3pm (Europe/Berlin)"), None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    // 429 counts only as a standalone number, and ordinary words do not look like quota errors.
    #[test]
    fn quota_phrases() {
        assert!(mentions_quota("exceeded retry limit, last status: 429 Too Many Requests"));
        assert!(mentions_quota("You've hit your usage limit. Try again at 3:15 PM."));
        assert!(!mentions_quota("request req_14290 failed: 400 bad request"));
        assert!(!mentions_quota("API Error: 400 scripted bad request"));
    }

    // A pretty-printed object after a stack trace is found; a later non-matching line is skipped.
    #[test]
    fn last_object_spanning_lines() {
        let text = "Error: boom\n    at x (y.js:1)\n{\n  \"error\": {\"code\": 400}\n}\n{\"other\":1}\n";
        let found = last_json_object(text, |v| v.get("error").is_some());
        assert_eq!(found.and_then(|v| v["error"]["code"].as_u64()), Some(400));
    }
}
