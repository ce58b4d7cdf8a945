//! Anthropic Messages API (`POST /v1/messages`), as the `claude` CLI speaks it.
//!
//! Usage: `input_tokens` excludes cache reads and writes, which are reported as
//! `cache_read_input_tokens` and `cache_creation_input_tokens`; `output_tokens`
//! includes thinking.

use axum::response::Response;
use serde_json::{Value, json};

use crate::exchange::{Answer, Exchange, Failure, count_assistant_runs, find_cwd};
use crate::script::Usage;
use crate::wire::{SseBody, failure_response, json_response};

/// Reduces a Messages request to what the chooser needs.
pub(crate) fn exchange(body: &Value) -> Exchange {
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let user_texts: Vec<&str> = messages
        .iter()
        .filter(|message| message["role"] == "user")
        .flat_map(|message| texts(&message["content"]))
        .collect();
    let system_texts = texts(&body["system"]);
    Exchange {
        prompt_text: user_texts.join("\n"),
        assistant_turns: count_assistant_runs(messages.iter().map(|message| message["role"] == "assistant")),
        cwd: find_cwd(system_texts.into_iter().chain(user_texts.iter().copied())),
    }
}

/// The text of a `content` or `system` value: a string, or the `text` blocks of an array.
fn texts(content: &Value) -> Vec<&str> {
    match content {
        Value::String(text) => vec![text.as_str()],
        Value::Array(blocks) => {
            blocks.iter().filter(|block| block["type"] == "text").filter_map(|block| block["text"].as_str()).collect()
        }
        _ => Vec::new(),
    }
}

/// The answer as an SSE stream or, when the request did not ask to stream, one message.
pub(crate) fn answer_response(answer: &Answer, model: &str, stream: bool) -> Response {
    if stream {
        stream_response(answer, model)
    } else {
        json_response(&message(answer, model, content_blocks(answer), stop_reason(answer)))
    }
}

fn stream_response(answer: &Answer, model: &str) -> Response {
    let mut sse = SseBody::default();
    let mut start = message(answer, model, Vec::new(), Value::Null);
    start["usage"]["output_tokens"] = json!(0);
    sse.event("message_start", &json!({"type": "message_start", "message": start}));
    for (index, block) in content_blocks(answer).into_iter().enumerate() {
        let (empty, delta) = if block["type"] == "tool_use" {
            let mut empty = block.clone();
            empty["input"] = json!({});
            let partial = block["input"].to_string();
            (empty, json!({"type": "input_json_delta", "partial_json": partial}))
        } else {
            let delta = json!({"type": "text_delta", "text": block["text"]});
            (json!({"type": "text", "text": ""}), delta)
        };
        sse.event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": empty}),
        );
        sse.event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}));
        sse.event("content_block_stop", &json!({"type": "content_block_stop", "index": index}));
    }
    sse.event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(answer), "stop_sequence": null},
            "usage": usage(&answer.usage),
        }),
    );
    sse.event("message_stop", &json!({"type": "message_stop"}));
    sse.into_response()
}

fn message(answer: &Answer, model: &str, content: Vec<Value>, stop_reason: Value) -> Value {
    json!({
        "id": format!("msg_mock_{}", answer.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage(&answer.usage),
    })
}

fn content_blocks(answer: &Answer) -> Vec<Value> {
    let text = answer.text.iter().map(|text| json!({"type": "text", "text": text}));
    let tools = answer.tool_calls.iter().map(|call| {
        json!({
            "type": "tool_use",
            "id": format!("toolu_mock_{}_{}", answer.id, call.index),
            "name": call.name,
            "input": call.arguments,
        })
    });
    text.chain(tools).collect()
}

fn stop_reason(answer: &Answer) -> Value {
    if answer.tool_calls.is_empty() { json!("end_turn") } else { json!("tool_use") }
}

fn usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "output_tokens": usage.output + usage.reasoning,
    })
}

/// `{"type":"error","error":{"type":…,"message":…}}` with the failure's status.
pub(crate) fn failure(failure: &Failure) -> Response {
    let kind = failure.kind.clone().unwrap_or_else(|| default_error_type(failure.status).to_string());
    failure_response(failure, json!({"type": "error", "error": {"type": kind, "message": failure.message}}))
}

fn default_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// `POST /v1/messages/count_tokens`: a rough estimate (four bytes a token).
pub(crate) fn count_tokens(body: &Value) -> Response {
    json_response(&json!({"input_tokens": body.to_string().len() / 4}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_counts_assistant_messages_and_reads_cwd_from_system() {
        // Proves the turn index and working directory come from a Claude-shaped request.
        let body = json!({
            "system": [{"type": "text", "text": "You are Claude.\nWorking directory: /tmp/w\n"}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "do it"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Write", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
            ],
        });
        let exchange = exchange(&body);
        assert_eq!(exchange.assistant_turns, 1);
        assert_eq!(exchange.cwd.as_deref(), Some("/tmp/w"));
        assert_eq!(exchange.prompt_text, "do it");
    }
}
