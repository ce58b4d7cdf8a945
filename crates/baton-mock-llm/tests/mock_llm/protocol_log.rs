//! The request log, conversation matching across providers, `times`-limited errors and a real socket.

use axum::http::Method;
use baton_mock_llm::{Provider, Script, start};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{post, send, state};

const PIPELINE: &str = r#"
[[conversation]]
name = "analysis"
match = "Stage: analysis"
[[conversation.turns]]
text = "analysed"

[[conversation]]
name = "review"
match = "Stage: review"
provider = "gemini"
[[conversation.turns]]
text = "reviewed"
"#;

#[tokio::test]
async fn log_records_provider_path_model_turn_and_body() {
    // Proves each request is logged in order, over HTTP and in-process, and can be cleared.
    let state = state(PIPELINE);
    let anthropic = json!({"model": "claude-x", "messages": [{"role": "user", "content": "Stage: analysis"}]});
    post(&state, "/v1/messages", &anthropic).await;
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "Stage: review"}]}]});
    post(&state, "/v1beta/models/gemini-x:generateContent", &gemini).await;
    let over_http = send(&state, Method::GET, "/_mock/requests", None).await.json();
    let in_process = serde_json::to_value(state.requests()).expect("log serialises");
    assert_eq!(over_http, in_process);
    assert_eq!(over_http[0]["provider"], "anthropic");
    assert_eq!(over_http[0]["path"], "/v1/messages");
    assert_eq!(over_http[0]["model"], "claude-x");
    assert_eq!(over_http[0]["conversation"], "analysis");
    assert_eq!(over_http[0]["turn"], 0);
    assert_eq!(over_http[0]["body"], anthropic);
    assert_eq!(over_http[1]["provider"], "gemini");
    assert_eq!(over_http[1]["conversation"], "review");
    assert_eq!(send(&state, Method::DELETE, "/_mock/requests", None).await.status, 204);
    assert!(state.requests().is_empty());
}

#[tokio::test]
async fn provider_filter_and_unmatched_prompt_give_explanatory_400() {
    // Proves a conversation restricted to gemini does not answer codex, and the 400 says why.
    let state = state(PIPELINE);
    let codex = json!({"model": "gpt-5.5", "input": "Stage: review"});
    let reply = post(&state, "/v1/responses", &codex).await;
    assert_eq!(reply.status, 400);
    let message = reply.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("no conversation") && message.contains("Stage: review"), "{message}");
    assert_eq!(state.requests()[0].conversation, None);
}

#[tokio::test]
async fn error_with_times_fails_that_many_requests_then_answers() {
    // Proves `times = 2` serves the error twice for the same turn, then the turn's answer.
    let state = state("[[turns]]\ntext = \"finally\"\nerror = { status = 503, times = 2 }\n");
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "go"}]});
    let statuses = [
        post(&state, "/v1/messages", &body).await.status.as_u16(),
        post(&state, "/v1/messages", &body).await.status.as_u16(),
        post(&state, "/v1/messages", &body).await.status.as_u16(),
    ];
    assert_eq!(statuses, [503, 503, 200]);
    let logged: Vec<_> = state.requests().iter().map(|request| request.status).collect();
    assert_eq!(logged, [503, 503, 200]);
}

#[tokio::test]
async fn unknown_routes_and_bad_json_are_logged_and_refused() {
    // Proves unexpected calls are visible in the log rather than silently answered.
    let state = state(PIPELINE);
    let reply = send(&state, Method::POST, "/v2/whatever", Some(&json!({"a": 1}))).await;
    assert_eq!(reply.status, 404);
    assert!(reply.text.contains("no route"));
    let request = axum::http::Request::post("/v1/messages").body(axum::body::Body::from("not json")).expect("request");
    let response = tower::ServiceExt::oneshot(baton_mock_llm::app(state.clone()), request).await.expect("answer");
    assert_eq!(response.status(), 400);
    let log = state.requests();
    assert_eq!((log[0].provider, log[0].status), (None, 404));
    assert_eq!((log[1].provider, log[1].body.clone()), (Some(Provider::Anthropic), json!("not json")));
}

#[tokio::test]
async fn start_serves_on_a_real_loopback_socket() {
    // Proves `start` binds 127.0.0.1:0, answers HTTP and stops when dropped.
    let script = Script::from_toml("[[turns]]\ntext = \"over the wire\"\n").expect("script");
    let server = start(script, "127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let addr = server.addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("over the wire"), "{answer}");
    assert_eq!(server.state().requests().len(), 1);
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "server still listening after drop");
}

#[tokio::test]
async fn documented_example_script_is_valid_and_routes_stages() {
    // Proves the example in docs/mock-llm.md parses and picks conversations by stage prompt.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/mock-llm.md")).expect("doc");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("block end");
    let script = Script::from_toml(&doc[start..end]).expect("documented script is valid");
    assert_eq!(script.conversations.len(), 3);
    let state = baton_mock_llm::MockState::new(script);
    let review = json!({"contents": [{"role": "user", "parts": [{"text": "Stage: review\n- **Workspace Directories:**\n  - /w"}]}]});
    let reply = post(&state, "/v1beta/models/g:generateContent", &review).await.json();
    let call = &reply["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["args"]["file_path"], "/w/REVIEW.md");
    let other = json!({"model": "m", "messages": [{"role": "user", "content": "Stage: unknown"}]});
    let reply = post(&state, "/v1/messages", &other).await.json();
    assert_eq!(reply["content"][0]["text"], "Nothing scripted for this prompt.");
}
