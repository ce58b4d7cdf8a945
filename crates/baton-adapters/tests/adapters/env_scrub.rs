//! Every adapter passes only base_env, the context variables and its own variables: nothing from
//! Baton's own process environment, and API keys only from base_env. Garbage never panics.

use crate::support::{exit, request, temp};
use baton_adapters::agent::{Agent, ClaudeAgent, CliAgentConfig, CodexAgent, GeminiAgent};
use baton_domain::AgentStatus;
use baton_runner::{CommandSpec, run_command};
use std::time::Duration;

/// The secret placed in this test binary's own environment by the re-run below.
const SECRET: &str = "secret-token-that-must-not-leak";

fn agents() -> Vec<Box<dyn Agent>> {
    let config = CliAgentConfig {
        base_url: Some("http://127.0.0.1:4010".into()),
        api_key_env: Some("AGENT_API_KEY".into()),
        ..CliAgentConfig::default()
    };
    vec![
        Box::new(ClaudeAgent::new(config.clone())),
        Box::new(CodexAgent::new(config.clone())),
        Box::new(GeminiAgent::new(config)),
    ]
}

#[test]
fn process_environment_never_reaches_the_agent() {
    // No variable of Baton's own environment (BATON_API_TOKEN when re-run below) reaches an agent unless in base_env.
    let dir = temp();
    let mut req = request(dir.path());
    req.base_env.push(("AGENT_API_KEY".into(), "key-from-base-env".into()));
    let own = [
        "CLAUDE_CONFIG_DIR",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "CLAUDE_CODE_MAX_RETRIES",
    ];
    let own: Vec<&str> = own
        .into_iter()
        .chain(["CODEX_HOME", "GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY", "GEMINI_CLI_TRUST_WORKSPACE"])
        .collect();
    for agent in agents() {
        let spec = agent.prepare(&req).expect("prepare");
        for (key, value) in std::env::vars() {
            let passed = req.base_env.iter().any(|(k, _)| *k == key) || own.contains(&key.as_str());
            if !passed {
                assert!(!spec.env.iter().any(|(k, _)| *k == key), "{} passed {key} from the process", agent.adapter());
            }
            if key == "BATON_API_TOKEN" {
                assert_eq!(value, SECRET);
                assert!(!spec.env.iter().any(|(_, v)| v.contains(SECRET)), "{} leaked the token", agent.adapter());
            }
        }
        let key_values: Vec<&str> =
            spec.env.iter().filter(|(k, _)| k.ends_with("API_KEY")).map(|(_, v)| v.as_str()).collect();
        assert!(key_values.iter().all(|v| *v == "key-from-base-env"), "{}: {key_values:?}", agent.adapter());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_in_the_process_environment_does_not_leak() {
    // Re-runs the test above in a process whose environment holds BATON_API_TOKEN, and it passes.
    let dir = temp();
    let exe = std::env::current_exe().expect("test binary path");
    let mut env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k != "BATON_API_TOKEN").collect();
    env.push(("BATON_API_TOKEN".into(), SECRET.into()));
    let spec = CommandSpec {
        argv: vec![
            exe.display().to_string(),
            "--exact".into(),
            "env_scrub::process_environment_never_reaches_the_agent".into(),
            "--test-threads=1".into(),
        ],
        cwd: dir.path().to_path_buf(),
        env,
        timeout: Duration::from_secs(60),
        log: dir.path().join("rerun.log"),
    };
    let output = run_command(&spec).await.expect("re-run the test binary");
    assert!(output.exit.success(), "re-run failed: {}", output.tail);
    assert!(output.tail.contains("1 passed"), "the re-run ran the test: {}", output.tail);
}

#[test]
fn garbage_output_is_a_failure_saying_it_could_not_be_read() {
    // Output that is not the CLI's format fails with a clear message on exit 0 and never panics.
    let garbage = ["", "not json at all", "{\"type\":", "[1,2,3]", "{\"usage\":\"many\"}\n\u{0}\u{ffff}"];
    for agent in agents() {
        for stdout in garbage {
            let report = agent.parse(stdout, "\u{0}{{{", &exit(0));
            match &report.status {
                AgentStatus::Failed { message } => {
                    assert!(message.contains("could not be read"), "{}: {message}", agent.adapter())
                }
                other => panic!("{} on {stdout:?}: {other:?}", agent.adapter()),
            }
        }
        // Right shape, wrong types: whatever the verdict, nothing panics.
        let odd =
            "{\"type\":\"result\",\"usage\":\"many\",\"modelUsage\":[1],\"stats\":{\"models\":7},\"is_error\":\"yes\"}";
        let mut progress = baton_adapters::agent::LiveProgress::default();
        for stdout in garbage.iter().chain([&odd]) {
            agent.parse(stdout, stdout, &exit(1));
            stdout.lines().for_each(|line| agent.observe(line, &mut progress));
        }
    }
}
