//! OpenAI Responses API (`POST /v1/responses`), as the `codex` CLI speaks it.
//!
//! Usage: `input_tokens` includes cached tokens (`input_tokens_details.cached_tokens`,
//! and cache writes as `cache_write_tokens`); `output_tokens` includes
//! `output_tokens_details.reasoning_tokens`.

use axum::response::Response;
use serde_json::{Value, json};

use crate::exchange::{Answer, Exchange, Failure, count_assistant_runs, find_cwd};
use crate::script::Usage;
use crate::wire::{SseBody, failure_response, json_response};

/// Item types the model produced; anything else in `input` came from the user or a tool.
const ASSISTANT_ITEM_TYPES: [&str; 7] = [
    "function_call",
    "custom_tool_call",
    "reasoning",
    "local_shell_call",
    "web_search_call",
    "tool_search_call",
    "image_generation_call",
];

/// Reduces a Responses request to what the chooser needs.
pub(crate) fn exchange(body: &Value) -> Exchange {
    let items = match &body["input"] {
        Value::String(prompt) => {
            return Exchange {
                prompt_text: prompt.clone(),
                assistant_turns: 0,
                cwd: find_cwd([prompt.as_str(), body["instructions"].as_str().unwrap_or("")]),
            };
        }
        Value::Array(items) => items.as_slice(),
        _ => &[],
    };
    let user_texts: Vec<&str> =
        items.iter().filter(|item| item["role"] == "user").flat_map(|item| texts(&item["content"])).collect();
    let all_texts = items.iter().flat_map(|item| texts(&item["content"])).chain(body["instructions"].as_str());
    Exchange {
        prompt_text: user_texts.join("\n"),
        assistant_turns: count_assistant_runs(items.iter().map(is_assistant)),
        cwd: find_cwd(all_texts),
    }
}

fn is_assistant(item: &Value) -> bool {
    item["role"] == "assistant" || item["type"].as_str().is_some_and(|kind| ASSISTANT_ITEM_TYPES.contains(&kind))
}

fn texts(content: &Value) -> Vec<&str> {
    match content {
        Value::String(text) => vec![text.as_str()],
        Value::Array(parts) => parts.iter().filter_map(|part| part["text"].as_str()).collect(),
        _ => Vec::new(),
    }
}

/// The answer as the Responses SSE sequence or, when not streaming, one response object.
pub(crate) fn answer_response(answer: &Answer, model: &str, stream: bool) -> Response {
    let items = output_items(answer);
    if !stream {
        return json_response(&response_object(answer, model, "completed", &items));
    }
    let mut sse = SseBody::default();
    sse.event(
        "response.created",
        &json!({
            "type": "response.created",
            "response": response_object(answer, model, "in_progress", &[]),
        }),
    );
    for (index, item) in items.iter().enumerate() {
        sse.event(
            "response.output_item.added",
            &json!({"type": "response.output_item.added", "output_index": index, "item": in_progress(item)}),
        );
        if item["type"] == "message" {
            sse.event(
                "response.output_text.delta",
                &json!({
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "delta": item["content"][0]["text"],
                }),
            );
        }
        sse.event(
            "response.output_item.done",
            &json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
    }
    sse.event(
        "response.completed",
        &json!({
            "type": "response.completed",
            "response": response_object(answer, model, "completed", &items),
        }),
    );
    sse.into_response()
}

fn response_object(answer: &Answer, model: &str, status: &str, items: &[Value]) -> Value {
    let mut response = json!({
        "id": format!("resp_mock_{}", answer.id),
        "object": "response",
        "created_at": 0,
        "status": status,
        "model": model,
        "output": items,
    });
    if status == "completed" {
        response["usage"] = usage(&answer.usage);
    }
    response
}

fn output_items(answer: &Answer) -> Vec<Value> {
    let message = answer.text.iter().map(|text| {
        json!({
            "type": "message",
            "id": format!("msg_mock_{}", answer.id),
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })
    });
    let calls = answer.tool_calls.iter().map(|call| {
        let id = format!("{}_{}", answer.id, call.index);
        match &call.input {
            Some(input) => json!({
                "type": "custom_tool_call",
                "id": format!("ctc_mock_{id}"),
                "call_id": format!("call_mock_{id}"),
                "name": call.name,
                "input": input,
                "status": "completed",
            }),
            None => json!({
                "type": "function_call",
                "id": format!("fc_mock_{id}"),
                "call_id": format!("call_mock_{id}"),
                "name": call.name,
                "arguments": Value::Object(call.arguments.clone()).to_string(),
                "status": "completed",
            }),
        }
    });
    message.chain(calls).collect()
}

/// The item as announced by `output_item.added`: same identity, no content yet.
fn in_progress(item: &Value) -> Value {
    let mut item = item.clone();
    item["status"] = json!("in_progress");
    match item["type"].as_str() {
        Some("message") => item["content"] = json!([]),
        Some("function_call") => item["arguments"] = json!(""),
        Some("custom_tool_call") => item["input"] = json!(""),
        _ => {}
    }
    item
}

fn usage(usage: &Usage) -> Value {
    let input = usage.input + usage.cache_read + usage.cache_write;
    let output = usage.output + usage.reasoning;
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read,
            "cache_write_tokens": usage.cache_write,
        },
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": input + output,
    })
}

/// `{"error":{"message","type","param","code"}}` with the failure's status.
pub(crate) fn failure(failure: &Failure) -> Response {
    let (default_type, default_code) = match failure.status {
        429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    let kind = failure.kind.as_deref().unwrap_or(default_type);
    let code = failure.code.as_deref().or(default_code);
    failure_response(failure, json!({"error": {"message": failure.message, "type": kind, "param": null, "code": code}}))
}

/// `GET /v1/models`: an empty list, so a client falls back to its built-in model data.
pub(crate) fn models() -> Response {
    json_response(&json!({"object": "list", "data": [], "models": []}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_counts_runs_of_model_items_and_reads_cwd_tag() {
        // Proves parallel calls count once and the <cwd> tag gives the working directory.
        let body = json!({
            "instructions": "You are Codex.",
            "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>\n  <cwd>/tmp/c</cwd>\n</environment_context>"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "write hello"}]},
                {"type": "function_call", "name": "exec_command", "arguments": "{}", "call_id": "a"},
                {"type": "function_call", "name": "exec_command", "arguments": "{}", "call_id": "b"},
                {"type": "function_call_output", "call_id": "a", "output": "ok"},
                {"type": "function_call_output", "call_id": "b", "output": "ok"},
            ],
        });
        let exchange = exchange(&body);
        assert_eq!(exchange.assistant_turns, 1);
        assert_eq!(exchange.cwd.as_deref(), Some("/tmp/c"));
        assert!(exchange.prompt_text.contains("write hello"));
    }
}
