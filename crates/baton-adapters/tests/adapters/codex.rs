//! The `codex` adapter: `codex exec --json` events, errors, quota, live progress, the generated
//! `config.toml` and the prepared process.

use crate::support::{assert_env_keys, env_value, exit, fixture, replay, request, temp, usage};
use baton_adapters::agent::cli::PLACEHOLDER_API_KEY;
use baton_adapters::agent::codex::LOCAL_KEY_ENV;
use baton_adapters::agent::{Agent, CliAgentConfig, CodexAgent};
use baton_domain::AgentStatus;

fn codex(model: Option<&str>) -> CodexAgent {
    CodexAgent::new(CliAgentConfig { model: model.map(String::from), ..CliAgentConfig::default() })
}

#[test]
fn exec_sample_gives_exact_figures() {
    // Usage comes from turn.completed with cached input taken out of input; no cost; last agent_message.
    let report = codex(Some("gpt-5.5")).parse(&fixture("codex_exec.jsonl"), "", &exit(0));
    assert_eq!(report.status, AgentStatus::Succeeded);
    assert_eq!(report.usage, usage(2800, 110, 600, 0, 0));
    assert_eq!(report.cost_usd, None);
    assert_eq!(report.model.as_deref(), Some("gpt-5.5"));
    assert_eq!(report.session_id.as_deref(), Some("01a1fc7e-28aa-7783-8aec-4cb0f999b09f"));
    assert_eq!(report.final_text.as_deref(), Some("Wrote docs/analysis.md and docs/notes.md"));
}

#[test]
fn exec_usage_matches_the_rollout_totals() {
    // The summed turn.completed usage equals the session rollout's final total_token_usage.
    let rollout = fixture("codex_rollout_token_count.jsonl");
    let last: serde_json::Value =
        serde_json::from_str(rollout.lines().last().expect("a line")).expect("rollout line is JSON");
    let total = &last["payload"]["info"]["total_token_usage"];
    let report = codex(None).parse(&fixture("codex_exec.jsonl"), "", &exit(0));
    let cached = total["cached_input_tokens"].as_u64().expect("cached");
    assert_eq!(
        report.usage.input_tokens + report.usage.cache_read_tokens,
        total["input_tokens"].as_u64().expect("input")
    );
    assert_eq!(report.usage.cache_read_tokens, cached);
    assert_eq!(report.usage.output_tokens, total["output_tokens"].as_u64().expect("output"));
}

#[test]
fn error_and_turn_failed_is_a_failure_with_the_message() {
    // `error` + `turn.failed` fails with the API's message, read out of its JSON body.
    let report = codex(None).parse(&fixture("codex_error.jsonl"), "", &exit(1));
    assert_eq!(
        report.status,
        AgentStatus::Failed { message: "codex failed: scripted bad request (invalid_request_error)".into() }
    );
    assert_eq!(report.session_id.as_deref(), Some("01a1fc7e-2fb6-7e63-9f69-dfd060182146"));
}

#[test]
fn usage_limit_is_quota_with_its_reset_time() {
    // A usage-limit turn failure is QuotaExhausted, its reset read from the body's resets_at.
    let report = codex(None).parse(&fixture("codex_usage_limit_with_reset.jsonl"), "", &exit(1));
    match report.status {
        AgentStatus::QuotaExhausted { message, resets_at_ms } => {
            assert!(
                message.starts_with("codex stopped on a usage or rate limit: You've hit your usage limit"),
                "{message}"
            );
            assert_eq!(resets_at_ms, Some(1_795_255_200_000));
        }
        other => panic!("expected quota, got {other:?}"),
    }
}

#[test]
fn rate_limit_429_after_a_turn_is_quota_and_keeps_usage() {
    // A 429 after a completed turn is quota without a reset time, and the finished turn's usage is kept.
    let report = codex(None).parse(&fixture("codex_rate_limit_429_after_a_turn.jsonl"), "", &exit(1));
    assert_eq!(
        report.status,
        AgentStatus::QuotaExhausted {
            message: "codex stopped on a usage or rate limit: exceeded retry limit, last status: 429 Too Many Requests"
                .into(),
            resets_at_ms: None
        }
    );
    assert_eq!(report.usage, usage(700, 50, 200, 100, 20));
}

#[test]
fn observe_agrees_with_parse_and_notes_actions() {
    // Live usage after the last event equals the parsed usage; commands and file changes become notes.
    let agent = codex(Some("gpt-5.5"));
    let stdout = fixture("codex_exec.jsonl");
    let progress = replay(&agent, &stdout);
    let report = agent.parse(&stdout, "", &exit(0));
    assert_eq!(progress.usage, report.usage);
    assert_eq!(progress.model.as_deref(), Some("gpt-5.5"));
    assert_eq!(
        progress.notes,
        vec![
            "command: /bin/bash -lc \"mkdir -p docs && printf '# Analysis\\\\nok\\\\n' > docs/analysis.md && echo written\" (exit 0)"
                .to_string(),
            "file: add /home/user/project/docs/notes.md".to_string(),
        ]
    );
}

#[test]
fn nonzero_exit_without_events_fails_with_stderr_tail() {
    // No events and a non-zero exit: Failed with stderr's last line.
    let report = codex(None).parse("", "Error: CODEX_HOME points to a missing directory\n", &exit(1));
    assert_eq!(
        report.status,
        AgentStatus::Failed {
            message: "codex exited with code 1: Error: CODEX_HOME points to a missing directory".into()
        }
    );
}

#[test]
fn prepare_writes_a_local_provider_config() {
    // With base_url: config.toml (valid TOML) defines the local provider, capped retries, plugins and analytics off.
    let dir = temp();
    let req = request(dir.path());
    let agent = CodexAgent::new(CliAgentConfig {
        program: "/opt/clis/codex".into(),
        model: Some("gpt-5.5".into()),
        base_url: Some("http://127.0.0.1:4010".into()),
        ..CliAgentConfig::default()
    });
    let spec = agent.prepare(&req).expect("prepare");
    let home = req.agent_dir().join("codex-home");
    let text = std::fs::read_to_string(home.join("config.toml")).expect("config.toml");
    let config: toml::Table = toml::from_str(&text).expect("config.toml parses");
    assert_eq!(config["model"].as_str(), Some("gpt-5.5"));
    assert_eq!(config["model_provider"].as_str(), Some("local"));
    let provider = &config["model_providers"]["local"];
    assert_eq!(provider["base_url"].as_str(), Some("http://127.0.0.1:4010/v1"));
    assert_eq!(provider["env_key"].as_str(), Some(LOCAL_KEY_ENV));
    assert_eq!(provider["wire_api"].as_str(), Some("responses"));
    assert_eq!(provider["request_max_retries"].as_integer(), Some(0));
    assert_eq!(provider["stream_max_retries"].as_integer(), Some(2));
    assert_eq!(config["features"]["plugins"].as_bool(), Some(false));
    assert_eq!(config["analytics"]["enabled"].as_bool(), Some(false));
    assert_eq!(spec.program, "/opt/clis/codex");
    assert_eq!(
        spec.args,
        ["exec", "--json", "--skip-git-repo-check", "-s", "workspace-write", "--", req.prompt.as_str()]
    );
    assert_eq!(spec.stdin, None, "stdin must be /dev/null or codex appends it to the prompt");
    assert_eq!(spec.cwd, req.worktree);
    assert_eq!(env_value(&spec, "CODEX_HOME"), Some(home.display().to_string().as_str()));
    assert_eq!(env_value(&spec, LOCAL_KEY_ENV), Some(PLACEHOLDER_API_KEY));
    assert_env_keys(&spec, &req, &["CODEX_HOME", LOCAL_KEY_ENV]);
}

#[test]
fn prepare_without_base_url_uses_openai_with_the_key_from_base_env() {
    // Without base_url no provider is defined; the key comes from base_env under the configured name.
    let dir = temp();
    let mut req = request(dir.path());
    req.base_env.push(("TEAM_OPENAI_KEY".into(), "sk-team".into()));
    let agent = CodexAgent::new(CliAgentConfig {
        api_key_env: Some("TEAM_OPENAI_KEY".into()),
        sandbox: Some("read-only".into()),
        extra_args: vec!["-c".into(), "model_reasoning_effort=\"high\"".into()],
        ..CliAgentConfig::default()
    });
    let spec = agent.prepare(&req).expect("prepare");
    let text = std::fs::read_to_string(req.agent_dir().join("codex-home/config.toml")).expect("config.toml");
    let config: toml::Table = toml::from_str(&text).expect("config.toml parses");
    assert!(config.get("model_provider").is_none() && config.get("model_providers").is_none(), "{text}");
    assert_eq!(config["features"]["plugins"].as_bool(), Some(false));
    assert_eq!(
        spec.args,
        ["exec", "--json", "--skip-git-repo-check", "-s", "read-only", "-c", "model_reasoning_effort=\"high\"", "--"]
            .into_iter()
            .chain([req.prompt.as_str()])
            .collect::<Vec<_>>()
    );
    assert_eq!(env_value(&spec, "OPENAI_API_KEY"), Some("sk-team"));
    assert_eq!(env_value(&spec, "CODEX_API_KEY"), Some("sk-team"));
    assert_env_keys(&spec, &req, &["CODEX_HOME", "OPENAI_API_KEY", "CODEX_API_KEY"]);
}

#[test]
fn prepare_refuses_a_prompt_longer_than_one_argument_may_be() {
    // A prompt over the OS's per-argument limit is refused with a reason instead of failing at spawn.
    let dir = temp();
    let mut req = request(dir.path());
    req.prompt = "x".repeat(200_000);
    let error = codex(None).prepare(&req).expect_err("too long");
    assert!(error.to_string().contains("200000 bytes"), "{error}");
}

#[test]
fn reconnecting_notices_are_waits_and_the_429_ends_as_quota() {
    // Real stream (codex 0.169.0 against `baton mock-llm`, a permanent 429 with retry-after,
    // stream_max_retries = 2): each `Reconnecting... n/2` error event is one wait on the provider.
    let agent = CodexAgent::new(CliAgentConfig { model: Some("gpt-5.5".into()), ..CliAgentConfig::default() });
    let stdout = fixture("codex_rate_limit_429_reconnecting.jsonl");
    let progress = replay(&agent, &stdout);
    let why = "exceeded retry limit, last status: 429 Too Many Requests";
    assert_eq!(
        progress.waits,
        [format!("waiting on the provider: {why}, retry 1/2"), format!("waiting on the provider: {why}, retry 2/2")]
    );
    let report = agent.parse(&stdout, "", &exit(1));
    assert!(matches!(report.status, AgentStatus::QuotaExhausted { .. }), "{:?}", report.status);
}
