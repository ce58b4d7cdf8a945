//! The real `claude` CLI against the mock Anthropic Messages API.

use std::process::Command;

use serde_json::json;

use crate::cli::{Rig, describe, locate, stdout_json};

const WRITE_SCRIPT: &str = r#"
[[conversation]]
name = "write"
provider = "anthropic"
match = "Create hello.txt"

[[conversation.turns]]
text = "I'll write the file."
usage = { input = 1000, output = 20, cache_write = 800 }
[[conversation.turns.tool_calls]]
name = "Write"
arguments = { file_path = "{{cwd}}/hello.txt", content = "hello from mock\n" }

[[conversation.turns]]
text = "Wrote hello.txt"
usage = { input = 1200, output = 50, cache_read = 300, cache_write = 50 }
"#;

fn claude_command(rig: &Rig, claude: &std::path::Path, prompt: &str) -> Command {
    let config = rig.home.path().join("claude-config");
    std::fs::create_dir_all(&config).expect("claude config dir");
    let mut command = rig.command(claude);
    command
        .env("CLAUDE_CONFIG_DIR", &config)
        .env("ANTHROPIC_BASE_URL", rig.server.base_url())
        .env("ANTHROPIC_API_KEY", "mock-key")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .args(["-p", prompt, "--output-format", "json"])
        .args(["--permission-mode", "acceptEdits", "--model", "claude-sonnet-4-5"]);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_writes_file_and_reports_scripted_usage() {
    // Proves the real claude CLI follows a scripted Write call and totals the scripted usage.
    let Some(claude) = locate("claude") else { return };
    let rig = Rig::new(WRITE_SCRIPT).await;
    let output = rig.run(claude_command(&rig, &claude, "Create hello.txt please")).await;
    let context = describe(&rig, &output);
    assert_eq!(output.status.code(), Some(0), "{context}");
    let written = std::fs::read_to_string(rig.work.path().join("hello.txt")).expect(&context);
    assert_eq!(written, "hello from mock\n");
    let result = stdout_json(&rig, &output);
    assert_eq!(result["is_error"], false, "{context}");
    assert_eq!(result["result"], "Wrote hello.txt", "{context}");
    let usage = &result["usage"];
    assert_eq!(usage["input_tokens"], 2200, "{context}");
    assert_eq!(usage["output_tokens"], 70, "{context}");
    assert_eq!(usage["cache_read_input_tokens"], 300, "{context}");
    assert_eq!(usage["cache_creation_input_tokens"], 850, "{context}");
    let model_usage = &result["modelUsage"]["claude-sonnet-4-5"];
    assert_eq!(model_usage["inputTokens"], 2200, "{context}");
    assert_eq!(model_usage["outputTokens"], 70, "{context}");
    assert_eq!(model_usage["cacheReadInputTokens"], 300, "{context}");
    assert_eq!(model_usage["cacheCreationInputTokens"], 850, "{context}");
    let requests = rig.server.state().requests();
    let served: Vec<_> = requests.iter().filter_map(|request| request.turn).collect();
    assert_eq!(served, vec![0, 1], "{context}");
    let first = requests.iter().find(|request| request.turn == Some(0)).expect(&context);
    assert_eq!(first.body["model"], json!("claude-sonnet-4-5"), "{context}");
    assert_eq!(first.body["stream"], json!(true), "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_reports_injected_error_as_is_error() {
    // Proves an injected 400 reaches the claude CLI as is_error with the scripted status.
    let Some(claude) = locate("claude") else { return };
    let rig = Rig::new(
        r#"
        [[turns]]
        error = { status = 400, message = "scripted bad request" }
        "#,
    )
    .await;
    let output = rig.run(claude_command(&rig, &claude, "Anything")).await;
    let context = describe(&rig, &output);
    assert_eq!(output.status.code(), Some(1), "{context}");
    let result = stdout_json(&rig, &output);
    assert_eq!(result["is_error"], true, "{context}");
    assert_eq!(result["api_error_status"], 400, "{context}");
    let text = result["result"].as_str().unwrap_or_default();
    assert!(text.contains("scripted bad request"), "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_retries_transient_rate_limit_then_succeeds() {
    // Proves an error with `times = 1` is retried by claude and the same turn then answers.
    let Some(claude) = locate("claude") else { return };
    let rig = Rig::new(
        r#"
        [[turns]]
        text = "after the retry"
        usage = { input = 10, output = 2 }
        error = { status = 429, message = "Number of request tokens has exceeded your per-minute rate limit", retry_after = 1, times = 1 }
        "#,
    )
    .await;
    let output = rig.run(claude_command(&rig, &claude, "Anything")).await;
    let context = describe(&rig, &output);
    assert_eq!(output.status.code(), Some(0), "{context}");
    let result = stdout_json(&rig, &output);
    assert_eq!(result["result"], "after the retry", "{context}");
    assert_eq!(result["usage"]["input_tokens"], 10, "{context}");
    let statuses: Vec<_> = rig
        .server
        .state()
        .requests()
        .iter()
        .filter(|request| request.turn.is_some())
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, vec![429, 200], "{context}");
}
