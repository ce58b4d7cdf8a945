//! Gemini API (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent`), as the `gemini` CLI speaks it.
//!
//! Usage: `promptTokenCount` includes `cachedContentTokenCount`;
//! `candidatesTokenCount` excludes `thoughtsTokenCount`.

use axum::response::Response;
use serde_json::{Value, json};

use crate::exchange::{Answer, Exchange, Failure, count_assistant_runs, find_cwd};
use crate::script::Usage;
use crate::wire::{SseBody, failure_response, json_response};

/// How the reply is framed, from the method in the path and the `alt` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `:generateContent`: one JSON object.
    Single,
    /// `:streamGenerateContent?alt=sse`: server-sent events.
    Sse,
    /// `:streamGenerateContent` without `alt=sse`: a JSON array of chunks.
    JsonArray,
}

/// Reduces a `generateContent` request to what the chooser needs.
pub(crate) fn exchange(body: &Value) -> Exchange {
    let contents = body["contents"].as_array().map(Vec::as_slice).unwrap_or_default();
    let user_texts: Vec<&str> =
        contents.iter().filter(|content| content["role"] == "user").flat_map(|content| texts(content)).collect();
    let system_texts = texts(&body["systemInstruction"]);
    Exchange {
        prompt_text: user_texts.join("\n"),
        assistant_turns: count_assistant_runs(contents.iter().map(|content| content["role"] == "model")),
        cwd: find_cwd(user_texts.iter().copied().chain(system_texts)),
    }
}

fn texts(content: &Value) -> Vec<&str> {
    content["parts"]
        .as_array()
        .map(|parts| parts.iter().filter_map(|part| part["text"].as_str()).collect())
        .unwrap_or_default()
}

/// The answer framed as the request asked.
pub(crate) fn answer_response(answer: &Answer, model: &str, framing: Framing) -> Response {
    let chunk = chunk(answer, model);
    match framing {
        Framing::Single => json_response(&chunk),
        Framing::JsonArray => json_response(&json!([chunk])),
        Framing::Sse => {
            let mut sse = SseBody::default();
            sse.data(&chunk);
            sse.into_response()
        }
    }
}

fn chunk(answer: &Answer, model: &str) -> Value {
    let text = answer.text.iter().map(|text| json!({"text": text}));
    let calls =
        answer.tool_calls.iter().map(|call| json!({"functionCall": {"name": call.name, "args": call.arguments}}));
    let parts: Vec<Value> = text.chain(calls).collect();
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": usage(&answer.usage),
        "modelVersion": model,
        "responseId": format!("mock_{}", answer.id),
    })
}

fn usage(usage: &Usage) -> Value {
    let prompt = usage.input + usage.cache_read + usage.cache_write;
    json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": usage.output,
        "cachedContentTokenCount": usage.cache_read,
        "thoughtsTokenCount": usage.reasoning,
        "totalTokenCount": prompt + usage.output + usage.reasoning,
    })
}

/// `{"error":{"code","message","status"}}` with the failure's HTTP status.
pub(crate) fn failure(failure: &Failure) -> Response {
    let status = failure.kind.clone().unwrap_or_else(|| default_status_name(failure.status).to_string());
    failure_response(failure, json!({"error": {"code": failure.status, "message": failure.message, "status": status}}))
}

fn default_status_name(status: u16) -> &'static str {
    match status {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
}

/// `:countTokens`: a rough estimate (four bytes a token).
pub(crate) fn count_tokens(body: &Value) -> Response {
    json_response(&json!({"totalTokens": body.to_string().len() / 4}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_counts_model_contents() {
        // Proves the turn index counts model contents and the prompt excludes tool results.
        let body = json!({
            "contents": [
                {"role": "user", "parts": [{"text": "write hello"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "write_file", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "write_file", "response": {}}}]},
            ],
        });
        let exchange = exchange(&body);
        assert_eq!(exchange.assistant_turns, 1);
        assert_eq!(exchange.prompt_text, "write hello");
    }
}
