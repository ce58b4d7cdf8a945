//! The real `gemini` CLI against the mock Gemini API.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::cli::{Rig, describe, locate, stdout_json};

const WRITE_SCRIPT: &str = r#"
[[conversation]]
name = "write"
provider = "gemini"
match = "Create hello.txt"

[[conversation.turns]]
text = "I'll write the file."
usage = { input = 1000, output = 20, reasoning = 7 }
[[conversation.turns.tool_calls]]
name = "write_file"
arguments = { file_path = "{{cwd}}/hello.txt", content = "hello from mock\n" }

[[conversation.turns]]
text = "Wrote hello.txt"
usage = { input = 900, output = 50, cache_read = 300 }
"#;

/// Gemini reads its settings from `$HOME/.gemini/settings.json`.
fn gemini_command(rig: &Rig, gemini: &Path, prompt: &str) -> Command {
    let settings_dir = rig.home.path().join(".gemini");
    std::fs::create_dir_all(&settings_dir).expect("gemini settings dir");
    let settings = json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
    });
    std::fs::write(settings_dir.join("settings.json"), settings.to_string()).expect("settings");
    let mut command = rig.command(gemini);
    command
        .env("GOOGLE_GEMINI_BASE_URL", rig.server.base_url())
        .env("GEMINI_API_KEY", "mock-key")
        .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
        .args(["-p", prompt, "--output-format", "json"])
        .args(["--approval-mode", "yolo", "-m", "gemini-2.5-pro"]);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_writes_file_and_reports_scripted_usage() {
    // Proves the real gemini CLI follows a scripted write_file call and totals the scripted usage.
    let Some(gemini) = locate("gemini") else { return };
    let rig = Rig::new(WRITE_SCRIPT).await;
    let output = rig.run(gemini_command(&rig, &gemini, "Create hello.txt please")).await;
    let context = describe(&rig, &output);
    assert_eq!(output.status.code(), Some(0), "{context}");
    let written = std::fs::read_to_string(rig.work.path().join("hello.txt")).expect(&context);
    assert_eq!(written, "hello from mock\n");
    let result = stdout_json(&rig, &output);
    assert_eq!(result["response"], "Wrote hello.txt", "{context}");
    let tokens = &result["stats"]["models"]["gemini-2.5-pro"]["tokens"];
    assert_eq!(tokens["prompt"], 2200, "{context}");
    assert_eq!(tokens["cached"], 300, "{context}");
    assert_eq!(tokens["input"], 1900, "{context}");
    assert_eq!(tokens["candidates"], 70, "{context}");
    assert_eq!(tokens["thoughts"], 7, "{context}");
    let served: Vec<_> = rig.server.state().requests().iter().filter_map(|r| r.turn).collect();
    assert_eq!(served, vec![0, 1], "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_reports_injected_error_on_stderr_with_status_exit_code() {
    // Proves an injected 400 makes gemini exit with the status and print the error JSON on stderr.
    let Some(gemini) = locate("gemini") else { return };
    let rig = Rig::new(
        r#"
        [[turns]]
        error = { status = 400, message = "scripted bad request" }
        "#,
    )
    .await;
    let output = rig.run(gemini_command(&rig, &gemini, "Anything")).await;
    let context = describe(&rig, &output);
    assert_eq!(output.status.code(), Some(400 & 255), "{context}");
    // stderr holds a stack trace, then the JSON report starting on a line of its own.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let start = stderr.rfind("\n{\n").expect(&context);
    let error: Value = serde_json::from_str(&stderr[start..]).expect(&context);
    assert_eq!(error["error"]["code"], 400, "{context}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("scripted bad request"), "{context}");
}
