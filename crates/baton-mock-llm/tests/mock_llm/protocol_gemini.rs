//! Gemini API: SSE, JSON-array and single replies, function calls, usageMetadata, errors.

use serde_json::{Value, json};

use crate::support::{post, state};

const SCRIPT: &str = r#"
[[conversation]]
provider = "gemini"
[[conversation.turns]]
text = "Writing."
usage = { input = 100, output = 20, cache_read = 50, reasoning = 9 }
[[conversation.turns.tool_calls]]
name = "write_file"
arguments = { file_path = "{{cwd}}/hello.txt", content = "hi" }
[[conversation.turns]]
text = "Done."
usage = { input = 5, output = 1 }
"#;

const CONTEXT: &str = "<session_context>\nMy operating system is: linux\n- **Workspace Directories:**\n  - /ws\n- **Directory Structure:**\n</session_context>";

fn request(assistant_turns: usize) -> Value {
    let mut contents = vec![json!({"role": "user", "parts": [{"text": CONTEXT}, {"text": "write hello"}]})];
    for _ in 0..assistant_turns {
        contents.push(json!({"role": "model", "parts": [{"functionCall": {"name": "write_file", "args": {}}}]}));
        contents.push(json!({"role": "user", "parts": [{"functionResponse": {"name": "write_file", "response": {}}}]}));
    }
    json!({"contents": contents, "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]}})
}

const STREAM: &str = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse";

#[tokio::test]
async fn sse_turn_has_function_call_with_cwd_and_usage_metadata() {
    // Proves the SSE chunk carries text, a substituted functionCall and Gemini usage semantics.
    let state = state(SCRIPT);
    let reply = post(&state, STREAM, &request(0)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = reply.events();
    assert_eq!(events.len(), 1);
    let chunk = &events[0].1;
    let parts = &chunk["candidates"][0]["content"]["parts"];
    assert_eq!(parts[0], json!({"text": "Writing."}));
    assert_eq!(
        parts[1],
        json!({"functionCall": {"name": "write_file", "args": {"file_path": "/ws/hello.txt", "content": "hi"}}})
    );
    assert_eq!(
        chunk["usageMetadata"],
        json!({
            "promptTokenCount": 150,
            "candidatesTokenCount": 20,
            "cachedContentTokenCount": 50,
            "thoughtsTokenCount": 9,
            "totalTokenCount": 179,
        })
    );
    let logged = &state.requests()[0];
    assert_eq!(logged.model.as_deref(), Some("gemini-2.5-pro"));
}

#[tokio::test]
async fn other_framings_and_count_tokens() {
    // Proves generateContent answers one object, streaming without alt=sse a JSON array.
    let state = state(SCRIPT);
    let single = post(&state, "/v1beta/models/m:generateContent", &request(1)).await.json();
    assert_eq!(single["candidates"][0]["content"]["parts"], json!([{"text": "Done."}]));
    let array = post(&state, "/v1beta/models/m:streamGenerateContent", &request(1)).await.json();
    assert_eq!(array[0], single);
    let count = post(&state, "/v1beta/models/m:countTokens", &request(0)).await.json();
    assert!(count["totalTokens"].as_u64().unwrap_or_default() > 0);
}

#[tokio::test]
async fn injected_error_has_google_shape() {
    // Proves a 429 turn answers {"error":{code,message,status:"RESOURCE_EXHAUSTED"}}.
    let state = state("[[turns]]\nerror = { status = 429, message = \"slow down\" }\n");
    let reply = post(&state, STREAM, &request(0)).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json(), json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}));
}
