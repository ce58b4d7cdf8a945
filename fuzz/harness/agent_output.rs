//! Fuzz harness: what agent CLIs print. Each adapter's `Agent::parse` reads a finished run's
//! stdout and stderr; `Agent::observe` reads stdout line by line while it runs. Both promise never
//! to panic on bad output.
//!
//! Input: stdout, then optionally a NUL byte and stderr. Every input is parsed under each way a
//! process can end, and with stdout and stderr swapped (quota errors arrive on either).

use baton_adapters::agent::{
    Agent, ClaudeAgent, CliAgentConfig, CodexAgent, CommandAgent, GeminiAgent, LiveProgress, PromptMode,
};
use baton_runner::ExitReport;

/// The ways a run can end that adapters tell apart.
fn exits() -> [ExitReport; 8] {
    let base =
        ExitReport { code: Some(0), signal: None, timed_out: false, stalled: false, stopped: false, duration_ms: 1 };
    [
        base.clone(),
        ExitReport { code: Some(1), ..base.clone() },
        ExitReport { code: Some(53), ..base.clone() },
        ExitReport { code: Some(173), ..base.clone() },
        ExitReport { code: None, signal: Some(9), ..base.clone() },
        ExitReport { code: None, signal: Some(15), timed_out: true, ..base.clone() },
        ExitReport { code: None, signal: Some(15), stalled: true, ..base.clone() },
        ExitReport { code: None, signal: Some(15), stopped: true, ..base },
    ]
}

/// Runs `agent` over `data`: every stdout line through `observe`, then `parse` for every exit.
pub fn run_agent(agent: &dyn Agent, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (stdout, stderr) = text.split_once('\0').unwrap_or((&text, ""));
    let mut progress = LiveProgress::default();
    for line in stdout.lines() {
        agent.observe(line, &mut progress);
    }
    for exit in exits() {
        drop(agent.parse(stdout, stderr, &exit));
        drop(agent.parse(stderr, stdout, &exit));
    }
}

fn cli_config(streaming: bool) -> CliAgentConfig {
    CliAgentConfig { model: Some("fuzz-model".into()), streaming, ..CliAgentConfig::default() }
}

/// The `command` contract's optional result and progress lines (also what `script` prints).
pub fn result_line(data: &[u8]) {
    let agent =
        CommandAgent { name: "command".into(), argv: vec!["agent".into()], prompt: PromptMode::Stdin, model: None };
    run_agent(&agent, data);
}

/// Claude Code: `--output-format json` and `stream-json`.
pub fn claude(data: &[u8]) {
    run_agent(&ClaudeAgent::new(cli_config(false)), data);
    run_agent(&ClaudeAgent::new(cli_config(true)), data);
}

/// Codex: `codex exec --json` events.
pub fn codex(data: &[u8]) {
    run_agent(&CodexAgent::new(cli_config(true)), data);
}

/// Gemini CLI: `-o json` and `-o stream-json`.
pub fn gemini(data: &[u8]) {
    run_agent(&GeminiAgent::new(cli_config(false)), data);
    run_agent(&GeminiAgent::new(cli_config(true)), data);
}
