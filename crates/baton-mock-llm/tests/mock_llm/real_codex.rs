//! The real `codex` CLI against the mock OpenAI Responses API.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::cli::{Rig, describe, locate};

const WRITE_SCRIPT: &str = r#"
[[conversation]]
name = "write"
provider = "openai"
match = "Create hello.txt"

[[conversation.turns]]
text = "I'll add the file."
usage = { input = 1000, output = 20, cache_read = 0, reasoning = 10 }
[[conversation.turns.tool_calls]]
name = "apply_patch"
input = """
*** Begin Patch
*** Add File: {{cwd}}/hello.txt
+hello from mock
*** End Patch
"""

[[conversation.turns]]
usage = { input = 200, output = 30, cache_read = 1000, cache_write = 100 }
[[conversation.turns.tool_calls]]
name = "exec_command"
arguments = { cmd = "cp hello.txt copy.txt" }

[[conversation.turns]]
text = "Wrote hello.txt"
usage = { input = 100, output = 40, cache_read = 1200, reasoning = 5 }
"#;

/// Writes `$CODEX_HOME/config.toml` pointing codex at the mock, without retries.
fn codex_command(rig: &Rig, codex: &Path, prompt: &str) -> Command {
    let codex_home = rig.home.path().join("codex-home");
    std::fs::create_dir_all(&codex_home).expect("CODEX_HOME");
    let config = format!(
        r#"model = "gpt-5.5"
model_provider = "mock"

[model_providers.mock]
name = "Baton mock-llm"
base_url = "{}/v1"
env_key = "MOCK_OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[features]
plugins = false

[analytics]
enabled = false
"#,
        rig.server.base_url()
    );
    std::fs::write(codex_home.join("config.toml"), config).expect("codex config");
    let mut command = rig.command(codex);
    command.env("CODEX_HOME", &codex_home).env("MOCK_OPENAI_API_KEY", "mock-key").args([
        "exec",
        "--json",
        "--skip-git-repo-check",
        // codex's own sandbox re-runs itself under bubblewrap, which cannot work in a temp dir
        // where bubblewrap is installed; Baton runs codex with it off inside its own sandbox, and
        // this test is about the model server, not codex's sandbox.
        "-s",
        "danger-full-access",
        prompt,
    ]);
    command
}

fn events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout).lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_patches_runs_command_and_reports_scripted_usage() {
    // Proves the real codex CLI applies a scripted patch, runs a scripted command and sums usage.
    let Some(codex) = locate("codex") else { return };
    let rig = Rig::new(WRITE_SCRIPT).await;
    let output = rig.run(codex_command(&rig, &codex, "Create hello.txt please")).await;
    let context = describe(&rig, &output);
    assert_eq!(output.status.code(), Some(0), "{context}");
    let hello = rig.work.path().join("hello.txt");
    assert_eq!(std::fs::read_to_string(&hello).expect(&context), "hello from mock\n");
    let copy = rig.work.path().join("copy.txt");
    assert_eq!(std::fs::read_to_string(&copy).expect(&context), "hello from mock\n");
    let events = events(&output.stdout);
    let completed = events.iter().find(|event| event["type"] == "turn.completed").expect(&context);
    let usage = &completed["usage"];
    assert_eq!(usage["input_tokens"], 1000 + 1300 + 1300, "{context}");
    assert_eq!(usage["cached_input_tokens"], 2200, "{context}");
    assert_eq!(usage["cache_write_input_tokens"], 100, "{context}");
    assert_eq!(usage["output_tokens"], 30 + 30 + 45, "{context}");
    assert_eq!(usage["reasoning_output_tokens"], 15, "{context}");
    let last_message = events.iter().rev().find(|event| event["item"]["type"] == "agent_message").expect(&context);
    assert_eq!(last_message["item"]["text"], "Wrote hello.txt", "{context}");
    let served: Vec<_> = rig.server.state().requests().iter().filter_map(|r| r.turn).collect();
    assert_eq!(served, vec![0, 1, 2], "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_reports_injected_error_as_failed_turn() {
    // Proves an injected 400 ends the codex turn with turn.failed carrying the scripted message.
    let Some(codex) = locate("codex") else { return };
    let rig = Rig::new(
        r#"
        [[turns]]
        error = { status = 400, message = "scripted bad request" }
        "#,
    )
    .await;
    let output = rig.run(codex_command(&rig, &codex, "Anything")).await;
    let context = describe(&rig, &output);
    assert_eq!(output.status.code(), Some(1), "{context}");
    let events = events(&output.stdout);
    let failed = events.iter().find(|event| event["type"] == "turn.failed").expect(&context);
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("scripted bad request"), "{context}");
}
