//! Anthropic Messages API: streaming and plain replies, turn choice, `{{cwd}}`, usage, errors.

use serde_json::{Value, json};

use crate::support::{post, state};

const SCRIPT: &str = r#"
[[conversation]]
provider = "anthropic"
match = "write hello"
[[conversation.turns]]
text = "Writing."
usage = { input = 100, output = 20, cache_read = 30, cache_write = 40, reasoning = 5 }
[[conversation.turns.tool_calls]]
name = "Write"
arguments = { file_path = "{{cwd}}/hello.txt", content = "hi" }
[[conversation.turns]]
text = "Done."
usage = { input = 7, output = 3 }
"#;

fn request(assistant_turns: usize, stream: bool) -> Value {
    let mut messages = vec![json!({"role": "user", "content": [{"type": "text", "text": "please write hello"}]})];
    for turn in 0..assistant_turns {
        let id = format!("toolu_{turn}");
        messages.push(
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Write", "input": {}}]}),
        );
        messages
            .push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "ok"}]}));
    }
    json!({
        "model": "claude-sonnet-4-5",
        "stream": stream,
        "system": [{"type": "text", "text": "# Environment\n - Primary working directory: /home/user/project\n"}],
        "messages": messages,
    })
}

#[tokio::test]
async fn first_turn_streams_tool_use_with_cwd_and_disjoint_usage() {
    // Proves turn 0 streams the full event sequence, a substituted Write call and Anthropic usage.
    let state = state(SCRIPT);
    let reply = post(&state, "/v1/messages?beta=true", &request(0, true)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = reply.events();
    let names: Vec<_> = events.iter().map(|(name, _)| name.clone().unwrap_or_default()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (name, data) in &events {
        assert_eq!(Some(data["type"].as_str().unwrap_or_default()), name.as_deref());
    }
    assert_eq!(events[2].1["delta"], json!({"type": "text_delta", "text": "Writing."}));
    assert_eq!(events[4].1["content_block"]["type"], "tool_use");
    assert_eq!(events[4].1["content_block"]["name"], "Write");
    let partial = events[5].1["delta"]["partial_json"].as_str().expect("input_json_delta");
    let input: Value = serde_json::from_str(partial).expect("partial_json is the whole input");
    assert_eq!(input, json!({"file_path": "/home/user/project/hello.txt", "content": "hi"}));
    let delta = &events[7].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 100, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 40, "output_tokens": 25})
    );
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 100);
}

#[tokio::test]
async fn history_with_one_assistant_turn_gets_second_turn_and_retry_repeats_it() {
    // Proves the turn index is the assistant turns in the history, so a retry is answered the same.
    let state = state(SCRIPT);
    let first = post(&state, "/v1/messages", &request(1, false)).await.json();
    let again = post(&state, "/v1/messages", &request(1, false)).await.json();
    assert_eq!(first, again);
    assert_eq!(first["content"], json!([{"type": "text", "text": "Done."}]));
    assert_eq!(first["stop_reason"], "end_turn");
    assert_eq!(first["usage"]["input_tokens"], 7);
    assert_eq!(first["model"], "claude-sonnet-4-5");
}

#[tokio::test]
async fn exhausted_script_answers_400_naming_the_conversation() {
    // Proves a request past the last turn gets a 400 Anthropic error explaining why.
    let state = state(SCRIPT);
    let reply = post(&state, "/v1/messages", &request(2, true)).await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("exhausted"));
}

#[tokio::test]
async fn injected_rate_limit_has_anthropic_shape_and_retry_after() {
    // Proves a 429 turn answers with rate_limit_error, the scripted message and retry-after.
    let state = state(
        r#"
        [[turns]]
        error = { status = 429, message = "You have reached your usage limit", retry_after = 30 }
        "#,
    );
    let reply = post(&state, "/v1/messages", &request(0, true)).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers["retry-after"], "30");
    assert_eq!(
        reply.json(),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "You have reached your usage limit"}})
    );
}

#[tokio::test]
async fn verbatim_error_body_and_overloaded_type() {
    // Proves `body` is sent verbatim and `type` overrides the derived error type.
    let state = state(
        r#"
        [[conversation]]
        match = "raw"
        [[conversation.turns]]
        error = { status = 500, body = '{"custom":true}' }
        [[conversation]]
        [[conversation.turns]]
        error = { status = 529, type = "overloaded_error", message = "busy" }
        "#,
    );
    let mut raw = request(0, true);
    raw["messages"][0]["content"][0]["text"] = json!("raw please");
    let reply = post(&state, "/v1/messages", &raw).await;
    assert_eq!((reply.status.as_u16(), reply.text.as_str()), (500, r#"{"custom":true}"#));
    let reply = post(&state, "/v1/messages", &request(0, true)).await;
    assert_eq!(reply.status.as_u16(), 529);
    assert_eq!(reply.json()["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn count_tokens_answers_an_estimate() {
    // Proves the token-counting endpoint answers without consuming a turn.
    let state = state(SCRIPT);
    let reply = post(&state, "/v1/messages/count_tokens?beta=true", &request(0, false)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.json()["input_tokens"].as_u64().unwrap_or_default() > 0);
    assert_eq!(state.requests()[0].turn, None);
}
