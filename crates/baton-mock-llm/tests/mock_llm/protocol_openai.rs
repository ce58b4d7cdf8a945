//! OpenAI Responses API: event sequence, function and custom tool calls, usage, errors.

use serde_json::{Value, json};

use crate::support::{post, state};

const SCRIPT: &str = r#"
[[conversation]]
provider = "codex"
[[conversation.turns]]
text = "Patching."
usage = { input = 100, output = 20, cache_read = 900, cache_write = 10, reasoning = 8 }
[[conversation.turns.tool_calls]]
name = "apply_patch"
input = "*** Begin Patch\n*** Add File: {{cwd}}/a.txt\n+a\n*** End Patch\n"
[[conversation.turns.tool_calls]]
name = "exec_command"
arguments = { cmd = "ls {{cwd}}" }
[[conversation.turns]]
text = "Done."
"#;

fn request(assistant_turns: usize) -> Value {
    let mut input = vec![
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>\n  <cwd>/repo</cwd>\n</environment_context>"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "add a.txt"}]}),
    ];
    for turn in 0..assistant_turns {
        input.push(
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Patching."}]}),
        );
        input.push(
            json!({"type": "custom_tool_call", "call_id": format!("p{turn}"), "name": "apply_patch", "input": ""}),
        );
        input.push(
            json!({"type": "function_call", "call_id": format!("f{turn}"), "name": "exec_command", "arguments": "{}"}),
        );
        input.push(json!({"type": "custom_tool_call_output", "call_id": format!("p{turn}"), "output": "ok"}));
        input.push(json!({"type": "function_call_output", "call_id": format!("f{turn}"), "output": "ok"}));
    }
    json!({"model": "gpt-5.5", "stream": true, "instructions": "You are Codex.", "input": input})
}

#[tokio::test]
async fn first_turn_streams_items_and_completed_usage_including_cache() {
    // Proves the codex event sequence, both tool kinds with {{cwd}}, and OpenAI usage semantics.
    let state = state(SCRIPT);
    let reply = post(&state, "/v1/responses", &request(0)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = reply.events();
    let names: Vec<_> = events.iter().map(|(_, data)| data["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.output_item.added",
            "response.output_text.delta",
            "response.output_item.done",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let message = &events[3].1["item"];
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"][0], json!({"type": "output_text", "text": "Patching.", "annotations": []}));
    let patch = &events[5].1["item"];
    assert_eq!(patch["type"], "custom_tool_call");
    assert_eq!(patch["input"], "*** Begin Patch\n*** Add File: /repo/a.txt\n+a\n*** End Patch\n");
    let exec = &events[7].1["item"];
    assert_eq!(exec["type"], "function_call");
    let arguments: Value = serde_json::from_str(exec["arguments"].as_str().expect("string arguments")).expect("JSON");
    assert_eq!(arguments, json!({"cmd": "ls /repo"}));
    assert_ne!(patch["call_id"], exec["call_id"]);
    let usage = &events[8].1["response"]["usage"];
    assert_eq!(
        *usage,
        json!({
            "input_tokens": 1010,
            "input_tokens_details": {"cached_tokens": 900, "cache_write_tokens": 10},
            "output_tokens": 28,
            "output_tokens_details": {"reasoning_tokens": 8},
            "total_tokens": 1038,
        })
    );
}

#[tokio::test]
async fn one_response_with_several_items_counts_as_one_turn() {
    // Proves a history holding a message plus two calls from one response selects turn 1.
    let state = state(SCRIPT);
    let events = post(&state, "/responses", &request(1)).await.events();
    let done: Vec<_> = events.iter().filter(|(_, data)| data["type"] == "response.output_item.done").collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1["item"]["content"][0]["text"], "Done.");
    assert_eq!(state.requests()[0].turn, Some(1));
}

#[tokio::test]
async fn non_streaming_request_gets_a_response_object() {
    // Proves `stream: false` answers one completed response object.
    let state = state(SCRIPT);
    let mut body = request(1);
    body["stream"] = json!(false);
    let reply = post(&state, "/v1/responses", &body).await.json();
    assert_eq!(reply["object"], "response");
    assert_eq!(reply["status"], "completed");
    assert_eq!(reply["output"][0]["content"][0]["text"], "Done.");
}

#[tokio::test]
async fn injected_errors_have_openai_shape() {
    // Proves error turns answer {"error":{message,type,code}} with derived and scripted fields.
    let state = state(
        r#"
        [[conversation]]
        match = "quota"
        [[conversation.turns]]
        error = { status = 429, message = "quota gone", type = "usage_limit_reached", code = "insufficient_quota" }
        [[conversation]]
        [[conversation.turns]]
        error = { status = 500, message = "boom" }
        "#,
    );
    let reply = post(&state, "/v1/responses", &request(0)).await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.json(),
        json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}})
    );
    let quota = json!({"model": "gpt-5.5", "input": "out of quota?"});
    let reply = post(&state, "/v1/responses", &quota).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["error"]["type"], "usage_limit_reached");
    assert_eq!(reply.json()["error"]["code"], "insufficient_quota");
}
