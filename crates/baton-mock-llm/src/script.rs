//! The script format: conversations of scripted model turns, read from TOML and validated.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which model API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Anthropic Messages (`POST /v1/messages`), spoken by `claude`.
    #[serde(alias = "claude")]
    Anthropic,
    /// OpenAI Responses (`POST /v1/responses`), spoken by `codex`.
    #[serde(alias = "codex")]
    Openai,
    /// Gemini `generateContent` / `streamGenerateContent`, spoken by `gemini`.
    Gemini,
}

impl Provider {
    /// The lowercase name used in scripts and in the request log.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::Openai => "openai",
            Provider::Gemini => "gemini",
        }
    }
}

/// A whole script: named conversations, plus optional shared `turns` that answer any
/// request no conversation matched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Conversations in priority order; the first one that matches a request answers it.
    #[serde(default, rename = "conversation")]
    pub conversations: Vec<Conversation>,
    /// Shorthand for a last conversation with no `match` and no `provider`.
    #[serde(default)]
    pub turns: Vec<Turn>,
}

/// One scripted dialogue, e.g. one pipeline stage's agent run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversation {
    /// A label for the request log and error messages.
    #[serde(default)]
    pub name: Option<String>,
    /// A substring looked for in the user-written text of the request (the prompt).
    /// Absent: the conversation matches every request.
    #[serde(default, rename = "match")]
    pub match_text: Option<String>,
    /// Restricts the conversation to one API. Absent: any provider.
    #[serde(default)]
    pub provider: Option<Provider>,
    /// The model's answers, in order: turn `n` answers a request whose history already
    /// holds `n` assistant turns.
    #[serde(default)]
    pub turns: Vec<Turn>,
}

/// One model answer: text and/or tool calls, or an injected HTTP error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Assistant text, sent before any tool call.
    #[serde(default)]
    pub text: Option<String>,
    /// Tool calls the model makes in this turn.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// An HTTP error returned instead of (or, with `times`, before) the answer.
    #[serde(default)]
    pub error: Option<InjectedError>,
    /// Token figures reported for this turn.
    #[serde(default)]
    pub usage: Usage,
}

/// A tool call: a function with JSON `arguments`, or a freeform tool (Codex
/// `apply_patch`) with raw text `input`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// Tool name as the CLI offers it (`Write`, `exec_command`, `apply_patch`, `write_file`).
    pub name: String,
    /// JSON object of arguments; strings may hold `{{cwd}}`.
    #[serde(default)]
    pub arguments: Option<Value>,
    /// Raw input text of a custom (freeform) tool; may hold `{{cwd}}`.
    #[serde(default)]
    pub input: Option<String>,
}

/// An HTTP error the server answers with, shaped like the provider's own errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectedError {
    /// HTTP status, 400 to 599.
    pub status: u16,
    /// Human-readable message placed in the provider's error JSON.
    #[serde(default)]
    pub message: Option<String>,
    /// Anthropic `error.type`, OpenAI `error.type` or Gemini `error.status`; derived
    /// from `status` when absent (429 → `rate_limit_error` / `RESOURCE_EXHAUSTED`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// OpenAI `error.code` (e.g. `rate_limit_exceeded`, `insufficient_quota`).
    #[serde(default)]
    pub code: Option<String>,
    /// A verbatim response body that replaces the generated error JSON.
    #[serde(default)]
    pub body: Option<String>,
    /// Seconds for a `retry-after` header.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Serve the error only this many times for this turn, then the turn's answer.
    /// Absent: always (the turn then must hold no text or tool calls).
    #[serde(default)]
    pub times: Option<u32>,
}

/// Token figures of one turn. The four counts are disjoint: `input` is fresh input
/// only, and `output` excludes `reasoning`. Each API reports them in its own way
/// (see `docs/mock-llm.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Input tokens neither read from nor written to a cache.
    #[serde(default)]
    pub input: u64,
    /// Visible output tokens, reasoning excluded.
    #[serde(default)]
    pub output: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write: u64,
    /// Reasoning / thinking tokens.
    #[serde(default)]
    pub reasoning: u64,
}

/// Why a script could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read mock-llm script {path}: {source}")]
    Read {
        /// The script path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not TOML of the script's shape (the message names the key and line).
    #[error("mock-llm script is not valid: {message}")]
    Parse {
        /// The TOML parser's explanation, with line and column.
        message: String,
    },
    /// A field holds a value the server cannot use.
    #[error("mock-llm script field `{field}`: {problem}; {fix}")]
    Invalid {
        /// Path of the field, e.g. `conversation[0].turns[1].error.status`.
        field: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
}

impl Script {
    /// Parses and validates a script from TOML text.
    pub fn from_toml(text: &str) -> Result<Script, ScriptError> {
        let script: Script = toml::from_str(text).map_err(|error| ScriptError::Parse { message: error.to_string() })?;
        script.validate()?;
        Ok(script)
    }

    /// Reads, parses and validates a script file.
    pub fn from_path(path: &Path) -> Result<Script, ScriptError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ScriptError::Read { path: path.to_path_buf(), source })?;
        Script::from_toml(&text)
    }

    /// A script of one catch-all conversation, handy in tests.
    pub fn single(turns: Vec<Turn>) -> Script {
        Script { conversations: Vec::new(), turns }
    }

    /// Checks every field the TOML types cannot; a built-in script goes through this too.
    pub fn validate(&self) -> Result<(), ScriptError> {
        if self.conversations.is_empty() && self.turns.is_empty() {
            return Err(invalid(
                "conversation",
                "the script has no conversations and no turns",
                "add a `[[conversation]]` with `[[conversation.turns]]`, or top-level `[[turns]]`",
            ));
        }
        for (index, conversation) in self.conversations.iter().enumerate() {
            let field = format!("conversation[{index}]");
            if conversation.turns.is_empty() {
                return Err(invalid(
                    &format!("{field}.turns"),
                    "the conversation has no turns",
                    "add at least one `[[conversation.turns]]` table after it",
                ));
            }
            if conversation.match_text.as_deref() == Some("") {
                return Err(invalid(
                    &format!("{field}.match"),
                    "an empty `match` matches everything",
                    "remove `match` to match every request, or give a substring of the prompt",
                ));
            }
            validate_turns(&format!("{field}.turns"), &conversation.turns)?;
        }
        validate_turns("turns", &self.turns)
    }

    /// The conversations in matching order, the top-level `turns` last.
    pub(crate) fn effective_conversations(&self) -> Vec<Conversation> {
        let mut all = self.conversations.clone();
        if !self.turns.is_empty() {
            all.push(Conversation {
                name: Some("turns".to_string()),
                match_text: None,
                provider: None,
                turns: self.turns.clone(),
            });
        }
        all
    }
}

fn validate_turns(field: &str, turns: &[Turn]) -> Result<(), ScriptError> {
    for (index, turn) in turns.iter().enumerate() {
        validate_turn(&format!("{field}[{index}]"), turn)?;
    }
    Ok(())
}

fn validate_turn(field: &str, turn: &Turn) -> Result<(), ScriptError> {
    let has_answer = turn.text.is_some() || !turn.tool_calls.is_empty();
    match &turn.error {
        None if !has_answer => {
            return Err(invalid(
                field,
                "the turn has no `text`, no `tool_calls` and no `error`",
                "add `text = \"...\"`, a `[[...tool_calls]]` table or an `error = { status = 500 }`",
            ));
        }
        None => {}
        Some(error) => validate_error(&format!("{field}.error"), error, has_answer)?,
    }
    for (index, call) in turn.tool_calls.iter().enumerate() {
        validate_tool_call(&format!("{field}.tool_calls[{index}]"), call)?;
    }
    Ok(())
}

fn validate_error(field: &str, error: &InjectedError, has_answer: bool) -> Result<(), ScriptError> {
    if !(400..=599).contains(&error.status) {
        return Err(invalid(
            &format!("{field}.status"),
            &format!("{} is not an HTTP error status", error.status),
            "use a status from 400 to 599, e.g. 429 or 500",
        ));
    }
    if error.message.is_some() && error.body.is_some() {
        return Err(invalid(
            field,
            "both `message` and `body` are set",
            "keep `message` for a provider-shaped error JSON, or `body` for a verbatim body",
        ));
    }
    match error.times {
        Some(0) => Err(invalid(
            &format!("{field}.times"),
            "0 would never serve the error",
            "use 1 or more, or remove the `error`",
        )),
        None if has_answer => Err(invalid(
            field,
            "a permanent error hides the turn's `text` and `tool_calls`",
            "set `times = N` to answer after N errors, or move the answer to the next turn",
        )),
        Some(_) if !has_answer => Err(invalid(
            &format!("{field}.times"),
            "after the errors the turn has nothing to answer with",
            "add `text` or `tool_calls` to the turn, or remove `times`",
        )),
        _ => Ok(()),
    }
}

fn validate_tool_call(field: &str, call: &ToolCall) -> Result<(), ScriptError> {
    if call.name.trim().is_empty() {
        return Err(invalid(
            &format!("{field}.name"),
            "the tool name is empty",
            "name the tool the CLI offers, e.g. `Write`, `exec_command` or `write_file`",
        ));
    }
    match (&call.arguments, &call.input) {
        (Some(_), Some(_)) => Err(invalid(
            field,
            "both `arguments` and `input` are set",
            "use `arguments = { ... }` for a function tool or `input = \"...\"` for a freeform tool",
        )),
        (Some(arguments), None) if !arguments.is_object() => Err(invalid(
            &format!("{field}.arguments"),
            "the arguments are not a table",
            "write them as a table, e.g. `arguments = { file_path = \"{{cwd}}/a.txt\" }`",
        )),
        _ => Ok(()),
    }
}

fn invalid(field: &str, problem: &str, fix: &str) -> ScriptError {
    ScriptError::Invalid { field: field.to_string(), problem: problem.to_string(), fix: fix.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conversations_tool_calls_and_usage() {
        // Proves the documented TOML shape maps onto the script types.
        let script = Script::from_toml(
            r#"
            [[conversation]]
            name = "analysis"
            match = "Analyse"
            provider = "claude"
            [[conversation.turns]]
            text = "Writing."
            usage = { input = 10, output = 2, cache_read = 3, cache_write = 4, reasoning = 1 }
            [[conversation.turns.tool_calls]]
            name = "Write"
            arguments = { file_path = "{{cwd}}/a.md", content = "x" }
            [[conversation.turns]]
            text = "Done."
            "#,
        )
        .expect("valid script");
        let conversation = &script.conversations[0];
        assert_eq!(conversation.provider, Some(Provider::Anthropic));
        assert_eq!(conversation.match_text.as_deref(), Some("Analyse"));
        assert_eq!(conversation.turns.len(), 2);
        assert_eq!(conversation.turns[0].usage.cache_write, 4);
        let call = &conversation.turns[0].tool_calls[0];
        assert_eq!(call.arguments.as_ref().expect("arguments")["file_path"], "{{cwd}}/a.md");
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        // Proves a typo in a key is reported with the key's name.
        let error = Script::from_toml("[[turns]]\ntxt = \"hi\"\n").expect_err("typo rejected");
        let message = error.to_string();
        assert!(message.contains("txt"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn empty_turn_names_field_and_fix() {
        // Proves a turn with nothing to say is rejected with its path and a fix.
        let error = Script::from_toml("[[conversation]]\n[[conversation.turns]]\nusage = {}\n")
            .expect_err("empty turn rejected");
        let message = error.to_string();
        assert!(message.contains("conversation[0].turns[0]"), "{message}");
        assert!(message.contains("add `text"), "{message}");
    }

    #[test]
    fn bad_status_and_permanent_error_with_answer_are_rejected() {
        // Proves error injections are checked for a usable status and for hidden answers.
        let status =
            Script::from_toml("[[turns]]\nerror = { status = 200 }\n").expect_err("status 200 rejected").to_string();
        assert!(status.contains("turns[0].error.status"), "{status}");
        let hidden = Script::from_toml("[[turns]]\ntext = \"x\"\nerror = { status = 500 }\n")
            .expect_err("hidden answer rejected")
            .to_string();
        assert!(hidden.contains("times"), "{hidden}");
    }

    #[test]
    fn tool_call_needs_table_arguments() {
        // Proves non-table arguments are rejected with an example of the right form.
        let error = Script::from_toml("[[turns]]\n[[turns.tool_calls]]\nname = \"Write\"\narguments = \"oops\"\n")
            .expect_err("string arguments rejected")
            .to_string();
        assert!(error.contains("turns[0].tool_calls[0].arguments"), "{error}");
    }

    #[test]
    fn empty_script_is_rejected() {
        // Proves an empty file does not silently serve nothing.
        let error = Script::from_toml("").expect_err("empty rejected").to_string();
        assert!(error.contains("no conversations"), "{error}");
    }
}
