//! Provider-neutral view of a model request and the stateless choice of the scripted answer.
//!
//! Each API module reduces its request body to an [`Exchange`]; [`choose`] then picks
//! the conversation (first whose `provider` and `match` fit) and the turn (the number
//! of assistant turns already in the history), and substitutes `{{cwd}}`.

use serde_json::{Map, Value};

use crate::script::{Conversation, InjectedError, Provider, Turn, Usage};

/// The placeholder replaced by the CLI's working directory.
pub(crate) const CWD_PLACEHOLDER: &str = "{{cwd}}";

/// What the chooser needs to know about one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Exchange {
    /// User-written text of the request (tool results excluded), for `match`.
    pub prompt_text: String,
    /// Assistant turns already in the history: the index of the turn to answer with.
    pub assistant_turns: usize,
    /// The CLI's working directory, when the request states it.
    pub cwd: Option<String>,
}

/// A scripted answer made concrete for one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    /// Stable id fragment, `c<conversation>t<turn>`, so a retried request gets the same ids.
    pub id: String,
    /// Assistant text.
    pub text: Option<String>,
    /// Tool calls with placeholders substituted.
    pub tool_calls: Vec<ResolvedCall>,
    /// Token figures to report.
    pub usage: Usage,
}

/// One tool call ready to render.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedCall {
    /// Index of the call within its turn.
    pub index: usize,
    /// Tool name.
    pub name: String,
    /// JSON object arguments (empty object for freeform tools).
    pub arguments: Map<String, Value>,
    /// Raw input of a freeform tool.
    pub input: Option<String>,
}

/// An error reply, rendered in each provider's error shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// HTTP status.
    pub status: u16,
    /// Message for the error JSON.
    pub message: String,
    /// Provider error type / status string override.
    pub kind: Option<String>,
    /// OpenAI error code.
    pub code: Option<String>,
    /// Verbatim body override.
    pub body: Option<String>,
    /// Seconds for `retry-after`.
    pub retry_after: Option<u64>,
}

impl Failure {
    /// A mock-side problem (no matching conversation, script exhausted): a 400 so the
    /// CLI stops at once instead of retrying.
    pub(crate) fn mock(message: String) -> Failure {
        Failure {
            status: 400,
            message: format!("baton mock-llm: {message}"),
            kind: None,
            code: None,
            body: None,
            retry_after: None,
        }
    }

    fn injected(error: &InjectedError) -> Failure {
        Failure {
            status: error.status,
            message: error.message.clone().unwrap_or_else(|| format!("scripted error {}", error.status)),
            kind: error.kind.clone(),
            code: error.code.clone(),
            body: error.body.clone(),
            retry_after: error.retry_after,
        }
    }
}

/// The result of choosing: an answer or a failure, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    /// The conversation's label, when one matched.
    pub conversation: Option<String>,
    /// The turn index, when a conversation matched.
    pub turn: Option<usize>,
    /// What to send back.
    pub outcome: Result<Answer, Failure>,
}

/// Where a matched turn is, so an error with `times` can be counted per turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TurnKey {
    pub conversation: usize,
    pub turn: usize,
}

/// Picks the answer for `exchange`. `serve_error` is asked, for a turn whose error has
/// `times`, whether this request still gets the error (it counts the servings).
pub(crate) fn choose(
    conversations: &[Conversation],
    provider: Provider,
    exchange: &Exchange,
    serve_error: impl FnOnce(TurnKey, u32) -> bool,
) -> Choice {
    let Some((index, conversation)) = conversations
        .iter()
        .enumerate()
        .find(|(_, conversation)| matches(conversation, provider, &exchange.prompt_text))
    else {
        return Choice {
            conversation: None,
            turn: None,
            outcome: Err(Failure::mock(format!(
                "no conversation in the script matches this {} request (prompt begins {:?})",
                provider.as_str(),
                prompt_excerpt(&exchange.prompt_text),
            ))),
        };
    };
    let label = conversation.name.clone().unwrap_or_else(|| format!("conversation[{index}]"));
    let turn_index = exchange.assistant_turns;
    let outcome = match conversation.turns.get(turn_index) {
        None => Err(Failure::mock(format!(
            "script exhausted: conversation {label:?} has {} turns but the request history \
             already holds {turn_index} assistant turns",
            conversation.turns.len()
        ))),
        Some(turn) => answer_turn(turn, exchange, index, turn_index, serve_error),
    };
    Choice { conversation: Some(label), turn: Some(turn_index), outcome }
}

fn matches(conversation: &Conversation, provider: Provider, prompt_text: &str) -> bool {
    let provider_fits = conversation.provider.is_none_or(|wanted| wanted == provider);
    let text_fits = conversation.match_text.as_deref().is_none_or(|needle| prompt_text.contains(needle));
    provider_fits && text_fits
}

fn answer_turn(
    turn: &Turn,
    exchange: &Exchange,
    conversation: usize,
    turn_index: usize,
    serve_error: impl FnOnce(TurnKey, u32) -> bool,
) -> Result<Answer, Failure> {
    if let Some(error) = &turn.error {
        let key = TurnKey { conversation, turn: turn_index };
        let still_failing = match error.times {
            None => true,
            Some(times) => serve_error(key, times),
        };
        if still_failing {
            return Err(Failure::injected(error));
        }
    }
    let cwd = exchange.cwd.as_deref();
    let text = turn.text.as_deref().map(|text| substitute(text, cwd)).transpose()?;
    let tool_calls = turn
        .tool_calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let arguments = match &call.arguments {
                Some(Value::Object(map)) => substitute_map(map, cwd)?,
                _ => Map::new(),
            };
            let input = call.input.as_deref().map(|input| substitute(input, cwd)).transpose()?;
            Ok(ResolvedCall { index, name: call.name.clone(), arguments, input })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(Answer { id: format!("c{conversation}t{turn_index}"), text, tool_calls, usage: turn.usage })
}

fn substitute(text: &str, cwd: Option<&str>) -> Result<String, Failure> {
    if !text.contains(CWD_PLACEHOLDER) {
        return Ok(text.to_string());
    }
    match cwd {
        Some(cwd) => Ok(text.replace(CWD_PLACEHOLDER, cwd)),
        None => {
            Err(Failure::mock(format!("the script uses {CWD_PLACEHOLDER} but the request states no working directory")))
        }
    }
}

fn substitute_map(map: &Map<String, Value>, cwd: Option<&str>) -> Result<Map<String, Value>, Failure> {
    map.iter().map(|(key, value)| Ok((key.clone(), substitute_value(value, cwd)?))).collect()
}

fn substitute_value(value: &Value, cwd: Option<&str>) -> Result<Value, Failure> {
    Ok(match value {
        Value::String(text) => Value::String(substitute(text, cwd)?),
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| substitute_value(item, cwd)).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => Value::Object(substitute_map(map, cwd)?),
        other => other.clone(),
    })
}

fn prompt_excerpt(text: &str) -> String {
    let trimmed = text.trim();
    let excerpt: String = trimmed.chars().take(80).collect();
    if excerpt.len() < trimmed.len() { format!("{excerpt}…") } else { excerpt }
}

/// Counts runs of consecutive assistant entries: parallel tool calls (several items
/// in a row) are one turn.
pub(crate) fn count_assistant_runs(is_assistant: impl IntoIterator<Item = bool>) -> usize {
    let mut runs = 0;
    let mut previous = false;
    for current in is_assistant {
        if current && !previous {
            runs += 1;
        }
        previous = current;
    }
    runs
}

/// Finds the working directory in the texts of a request, trying each CLI's wording:
/// Claude's "Primary working directory: <dir>" (older builds: "Working directory:"),
/// Codex's `<cwd><dir></cwd>`, and Gemini's "- **Workspace Directories:**" list in its
/// `<session_context>` message (the first entry; older builds: "I'm currently working
/// in the directory: <dir>").
pub(crate) fn find_cwd<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<String> {
    texts.into_iter().find_map(cwd_in)
}

fn cwd_in(text: &str) -> Option<String> {
    let after_label = |label: &str| {
        text.find(label).and_then(|start| {
            let rest = &text[start + label.len()..];
            let line = rest.lines().next().unwrap_or_default().trim();
            (!line.is_empty()).then(|| line.to_string())
        })
    };
    for label in ["Primary working directory:", "Working directory:"] {
        if let Some(dir) = after_label(label) {
            return Some(dir);
        }
    }
    if let Some(start) = text.find("<cwd>") {
        let rest = &text[start + "<cwd>".len()..];
        if let Some(end) = rest.find("</cwd>") {
            return Some(rest[..end].trim().to_string());
        }
    }
    if let Some(start) = text.find("Workspace Directories:") {
        let rest = &text[start + "Workspace Directories:".len()..];
        let first =
            rest.lines().map(|line| line.trim().trim_start_matches(['-', '*']).trim()).find(|line| !line.is_empty());
        if let Some(dir) = first.filter(|dir| dir.starts_with('/')) {
            return Some(dir.to_string());
        }
    }
    after_label("I'm currently working in the directory:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::ToolCall;
    use serde_json::json;

    fn conversation(match_text: Option<&str>, provider: Option<Provider>, texts: &[&str]) -> Conversation {
        Conversation {
            name: None,
            match_text: match_text.map(str::to_string),
            provider,
            turns: texts.iter().map(|text| Turn { text: Some((*text).to_string()), ..Turn::default() }).collect(),
        }
    }

    fn exchange(prompt: &str, assistant_turns: usize) -> Exchange {
        Exchange { prompt_text: prompt.to_string(), assistant_turns, cwd: Some("/w".to_string()) }
    }

    #[test]
    fn first_matching_conversation_and_history_index_win() {
        // Proves selection by match substring and provider, with the turn from history length.
        let conversations = vec![
            conversation(Some("review"), None, &["r0", "r1"]),
            conversation(None, Some(Provider::Gemini), &["g0"]),
            conversation(None, None, &["d0", "d1"]),
        ];
        let pick = |provider, prompt, turns| {
            choose(&conversations, provider, &exchange(prompt, turns), |_, _| true).outcome.expect("answer").text
        };
        assert_eq!(pick(Provider::Openai, "please review", 1), Some("r1".to_string()));
        assert_eq!(pick(Provider::Gemini, "analyse", 0), Some("g0".to_string()));
        assert_eq!(pick(Provider::Anthropic, "analyse", 1), Some("d1".to_string()));
    }

    #[test]
    fn exhausted_and_unmatched_requests_fail_with_400() {
        // Proves a request past the last turn or matching nothing gets an explanatory 400.
        let conversations = vec![conversation(Some("x"), None, &["only"])];
        let unmatched = choose(&conversations, Provider::Openai, &exchange("y", 0), |_, _| true);
        let failure = unmatched.outcome.expect_err("no match");
        assert_eq!(failure.status, 400);
        assert!(failure.message.contains("no conversation"), "{}", failure.message);
        let exhausted = choose(&conversations, Provider::Openai, &exchange("x", 1), |_, _| true);
        assert!(exhausted.outcome.expect_err("exhausted").message.contains("exhausted"));
    }

    #[test]
    fn cwd_is_substituted_deeply_and_missing_cwd_fails() {
        // Proves {{cwd}} is replaced in nested arguments and raw input, and is never sent raw.
        let turn = Turn {
            tool_calls: vec![
                ToolCall {
                    name: "Write".to_string(),
                    arguments: Some(json!({"file_path": "{{cwd}}/a", "list": ["{{cwd}}"]})),
                    input: None,
                },
                ToolCall {
                    name: "apply_patch".to_string(),
                    arguments: None,
                    input: Some("*** Add File: {{cwd}}/b".to_string()),
                },
            ],
            ..Turn::default()
        };
        let conversations = vec![Conversation { turns: vec![turn], ..Conversation::default() }];
        let answer =
            choose(&conversations, Provider::Anthropic, &exchange("", 0), |_, _| true).outcome.expect("answer");
        assert_eq!(answer.tool_calls[0].arguments["file_path"], "/w/a");
        assert_eq!(answer.tool_calls[0].arguments["list"][0], "/w");
        assert_eq!(answer.tool_calls[1].input.as_deref(), Some("*** Add File: /w/b"));
        let mut no_cwd = exchange("", 0);
        no_cwd.cwd = None;
        let failure = choose(&conversations, Provider::Anthropic, &no_cwd, |_, _| true).outcome.expect_err("no cwd");
        assert!(failure.message.contains("working directory"), "{}", failure.message);
    }

    #[test]
    fn runs_count_parallel_calls_once() {
        // Proves consecutive assistant items count as one turn.
        assert_eq!(count_assistant_runs([false, true, true, false, true]), 2);
        assert_eq!(count_assistant_runs([false]), 0);
    }

    #[test]
    fn cwd_found_in_each_cli_wording() {
        // Proves the working directory is read from Claude, Codex and Gemini phrasing.
        assert_eq!(find_cwd(["x\nWorking directory: /a b\nmore"]), Some("/a b".to_string()));
        assert_eq!(
            find_cwd(["# Environment\n - Primary working directory: /p\n - Is a git repository: false"]),
            Some("/p".to_string())
        );
        assert_eq!(find_cwd(["<env>\n  <cwd>/c</cwd>"]), Some("/c".to_string()));
        assert_eq!(find_cwd(["Workspace Directories:\n  - /g\n  - /h"]), Some("/g".to_string()));
        assert_eq!(find_cwd(["nothing here"]), None);
    }
}
