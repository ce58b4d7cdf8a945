//! The optional final JSON result line of the `command` contract (Claude-shaped `type: result`).
//!
//! ```text
//! {"type":"result","is_error":false,"result":"final text","questions":"...","model":"m",
//!  "session_id":"s","num_turns":3,"total_cost_usd":0.01,
//!  "usage":{"input_tokens":1,"output_tokens":2,"cache_read_input_tokens":3,"cache_creation_input_tokens":4}}
//! ```

use baton_domain::{AgentReport, AgentStatus, Usage};
use baton_runner::ExitReport;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
struct ResultUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
    #[serde(default)]
    reasoning_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct ResultLine {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    is_error: bool,
    result: Option<String>,
    questions: Option<String>,
    model: Option<String>,
    session_id: Option<String>,
    num_turns: Option<u32>,
    total_cost_usd: Option<f64>,
    #[serde(default)]
    usage: ResultUsage,
    /// `"quota"`: the provider's usage limit ended the run (not a failure of the agent).
    error_class: Option<String>,
    resets_at_ms: Option<i64>,
}

/// A progress line: `{"type":"progress","message":"…","usage":{…},"total_cost_usd":0.1,"model":"m"}`
/// with cumulative figures.
#[derive(Debug, Deserialize)]
struct ProgressLine {
    #[serde(rename = "type")]
    kind: String,
    message: Option<String>,
    model: Option<String>,
    total_cost_usd: Option<f64>,
    usage: Option<ResultUsage>,
}

/// Updates `progress` from one stdout line of the command contract (ignores anything else).
pub fn observe_line(line: &str, progress: &mut super::LiveProgress) {
    let Ok(p) = serde_json::from_str::<ProgressLine>(line.trim()) else {
        return;
    };
    if p.kind != "progress" {
        return;
    }
    if let Some(u) = p.usage {
        progress.usage = Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_input_tokens,
            cache_write_tokens: u.cache_creation_input_tokens,
            reasoning_tokens: u.reasoning_tokens,
        };
    }
    if p.total_cost_usd.is_some() {
        progress.cost_usd = p.total_cost_usd;
    }
    if p.model.is_some() {
        progress.model = p.model;
    }
    if let Some(message) = p.message {
        progress.notes.push(message);
    }
}

/// Finds the last line of `stdout` that is a `{"type":"result"}` object.
fn find_result(stdout: &str) -> Option<ResultLine> {
    stdout
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<ResultLine>(l.trim()).ok().filter(|r| r.kind == "result"))
}

/// Builds the agent report from the exit status and the optional result line.
pub fn report_from_output(stdout: &str, stderr: &str, exit: &ExitReport) -> AgentReport {
    let line = find_result(stdout);
    let status = match (&line, exit.success()) {
        (Some(l), _) if l.error_class.as_deref() == Some("quota") => AgentStatus::QuotaExhausted {
            message: l.result.clone().unwrap_or_else(|| "provider usage limit reached".into()),
            resets_at_ms: l.resets_at_ms,
        },
        (_, false) => AgentStatus::Failed { message: failure_message(exit, line.as_ref(), stderr) },
        (Some(l), true) if l.is_error => AgentStatus::Failed {
            message: format!("agent reported an error: {}", l.result.clone().unwrap_or_default()),
        },
        (Some(l), true) => match l.questions.as_deref().map(str::trim) {
            Some(q) if !q.is_empty() => AgentStatus::NeedsInput { questions: q.to_string() },
            _ => AgentStatus::Succeeded,
        },
        (None, true) => AgentStatus::Succeeded,
    };
    match line {
        Some(l) => AgentReport {
            status,
            usage: Usage {
                input_tokens: l.usage.input_tokens,
                output_tokens: l.usage.output_tokens,
                cache_read_tokens: l.usage.cache_read_input_tokens,
                cache_write_tokens: l.usage.cache_creation_input_tokens,
                reasoning_tokens: l.usage.reasoning_tokens,
            },
            cost_usd: l.total_cost_usd,
            model: l.model,
            session_id: l.session_id,
            turns: l.num_turns,
            final_text: l.result,
        },
        None => AgentReport { status, ..AgentReport::failed("") },
    }
}

fn failure_message(exit: &ExitReport, line: Option<&ResultLine>, stderr: &str) -> String {
    let mut message = format!("agent {}", exit.describe());
    if let Some(text) = line.and_then(|l| l.result.as_deref()).filter(|t| !t.is_empty()) {
        message.push_str(&format!(": {text}"));
    } else if let Some(last) = stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        message.push_str(&format!(": {}", last.trim()));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> ExitReport {
        ExitReport { code: Some(code), signal: None, timed_out: false, stalled: false, stopped: false, duration_ms: 5 }
    }

    // A result line with usage and questions becomes a needs-input report with its figures.
    #[test]
    fn result_line_with_questions() {
        let out = "noise\n{\"type\":\"result\",\"result\":\"hi\",\"questions\":\"Why?\",\"total_cost_usd\":0.5,\"usage\":{\"input_tokens\":10,\"output_tokens\":2}}\n";
        let report = report_from_output(out, "", &exit(0));
        assert_eq!(report.status, AgentStatus::NeedsInput { questions: "Why?".into() });
        assert_eq!(report.usage.input_tokens, 10);
        assert_eq!(report.cost_usd, Some(0.5));
    }

    // is_error decides failure even on exit 0; a non-zero exit fails with stderr's last line.
    #[test]
    fn errors_are_failures() {
        let out = "{\"type\":\"result\",\"is_error\":true,\"result\":\"API down\"}";
        assert!(matches!(report_from_output(out, "", &exit(0)).status, AgentStatus::Failed { .. }));
        let report = report_from_output("garbage", "boom\n", &exit(2));
        assert_eq!(report.status, AgentStatus::Failed { message: "agent exited with code 2: boom".into() });
        assert_eq!(report.cost_usd, None);
    }
}
