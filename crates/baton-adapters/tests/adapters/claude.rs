//! The `claude` adapter: Claude Code's json and stream-json results, errors, quota, questions,
//! live progress and the prepared process.

use crate::support::{assert_env_keys, env_value, exit, fixture, has_flag, replay, request, temp, usage};
use baton_adapters::agent::cli::PLACEHOLDER_API_KEY;
use baton_adapters::agent::{Agent, ClaudeAgent, CliAgentConfig};
use baton_domain::AgentStatus;

fn claude() -> ClaudeAgent {
    ClaudeAgent::new(CliAgentConfig { program: "claude".into(), ..CliAgentConfig::default() })
}

fn failed_message(status: &AgentStatus) -> &str {
    match status {
        AgentStatus::Failed { message } => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn json_sample_gives_exact_figures() {
    // The real `--output-format json` result gives modelUsage tokens, CLI cost, model, session and text.
    let report = claude().parse(&fixture("claude_json.json"), "", &exit(0));
    assert_eq!(report.status, AgentStatus::Succeeded);
    assert_eq!(report.usage, usage(2200, 70, 300, 850, 0));
    assert_eq!(report.cost_usd, Some(0.0109275));
    assert_eq!(report.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(report.session_id.as_deref(), Some("0872e457-1fef-4384-9f4d-fc2b7d175421"));
    assert_eq!(report.turns, Some(2));
    assert_eq!(report.final_text.as_deref(), Some("Wrote docs/analysis.md"));
}

#[test]
fn stream_sample_gives_the_final_result_figures() {
    // stream-json is read from its last `result` line, not from the per-message (non-final) usage.
    let report = claude().parse(&fixture("claude_stream.jsonl"), "", &exit(0));
    assert_eq!(report.status, AgentStatus::Succeeded);
    assert_eq!(report.usage, usage(2200, 70, 300, 850, 0));
    assert_eq!(report.cost_usd, Some(0.0109275));
    assert_eq!(report.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(report.session_id.as_deref(), Some("754c821d-4a06-495a-a1d8-a446f5ee7763"));
    assert_eq!(report.turns, Some(2));
    assert_eq!(report.final_text.as_deref(), Some("Wrote docs/analysis.md"));
}

#[test]
fn verbose_json_array_uses_its_result_element() {
    // `json --verbose` prints an array of messages; the last `result` element is the record.
    let stream = fixture("claude_stream.jsonl");
    let array = format!("[{}]", stream.lines().collect::<Vec<_>>().join(","));
    let report = claude().parse(&array, "", &exit(0));
    assert_eq!(report.usage, usage(2200, 70, 300, 850, 0));
    assert_eq!(report.session_id.as_deref(), Some("754c821d-4a06-495a-a1d8-a446f5ee7763"));
}

#[test]
fn observe_over_stream_ends_at_the_final_usage() {
    // Live usage counts each message once (lines repeat it), never goes down, and ends equal to parse().
    let agent = claude();
    let stdout = fixture("claude_stream.jsonl");
    let lines: Vec<&str> = stdout.lines().collect();
    let before_result = replay(&agent, &lines[..lines.len() - 1].join("\n"));
    assert_eq!(before_result.usage, usage(2200, 2, 300, 850, 0), "two distinct messages, each counted once");
    let progress = replay(&agent, &stdout);
    let report = agent.parse(&stdout, "", &exit(0));
    assert_eq!(progress.usage, report.usage);
    assert_eq!(progress.cost_usd, report.cost_usd);
    assert_eq!(progress.model, report.model);
    assert_eq!(progress.notes, vec!["tool: Write /home/user/projectPbcc3B/docs/analysis.md".to_string()]);
}

#[test]
fn is_error_with_success_subtype_is_a_failure() {
    // An API error ends with `subtype: "success"` but `is_error: true`: is_error decides.
    let report = claude().parse(&fixture("claude_error.json"), "", &exit(1));
    let message = failed_message(&report.status);
    assert!(message.contains("API status 400"), "{message}");
    assert!(message.contains("scripted bad request"), "{message}");
    assert_eq!(report.session_id.as_deref(), Some("6344b50f-94d3-4b04-9d4f-03d25429bf5b"));
    assert_eq!(report.usage, usage(0, 0, 0, 0, 0));
}

#[test]
fn max_turns_is_a_failure_saying_so() {
    // `error_max_turns` fails with a message naming the turn limit, and keeps the figures spent.
    let report = claude().parse(&fixture("claude_error_max_turns.json"), "", &exit(1));
    assert_eq!(
        failed_message(&report.status),
        "claude reached its maximum number of turns after 3 turns: Reached maximum number of turns (2)"
    );
    assert_eq!(report.usage, usage(3000, 150, 1200, 900, 0));
    assert_eq!(report.cost_usd, Some(0.0213));
}

#[test]
fn usage_limit_is_quota_with_its_reset_time() {
    // A 429 usage-limit result is QuotaExhausted (not a failure), reset read from `|<unix seconds>`.
    let report = claude().parse(&fixture("claude_usage_limit_with_reset.json"), "", &exit(1));
    match report.status {
        AgentStatus::QuotaExhausted { message, resets_at_ms } => {
            assert!(message.contains("usage limit"), "{message}");
            assert_eq!(resets_at_ms, Some(1_762_952_400_000));
        }
        other => panic!("expected quota, got {other:?}"),
    }
}

#[test]
fn rate_limit_text_without_status_is_quota() {
    // A result error whose text says "You've hit your limit" is quota even without api_error_status.
    let stdout = r#"{"type":"result","subtype":"success","is_error":true,"result":"You've hit your limit · resets 3pm (Europe/Berlin)","session_id":"s"}"#;
    let report = claude().parse(stdout, "", &exit(1));
    assert_eq!(
        report.status,
        AgentStatus::QuotaExhausted {
            message: "claude stopped on a usage or rate limit: You've hit your limit · resets 3pm (Europe/Berlin)"
                .into(),
            resets_at_ms: None
        }
    );
}

#[test]
fn questions_marker_needs_input() {
    // A successful result whose text has a `QUESTIONS:` line ends the run with those questions.
    let report = claude().parse(&fixture("claude_questions.json"), "", &exit(0));
    assert_eq!(
        report.status,
        AgentStatus::NeedsInput {
            questions: "1. Should totals round half up or half even?\n2. Is the CSV export in scope?".into()
        }
    );
}

#[test]
fn model_is_the_main_model_and_usage_sums_all() {
    // modelUsage is summed over models; the model is the one with most output (not a haiku helper).
    let report = claude().parse(&fixture("claude_main_model_and_haiku_helper.json"), "", &exit(0));
    assert_eq!(report.model.as_deref(), Some("claude-opus-4-8"));
    assert_eq!(report.usage, usage(6500, 940, 8000, 1000, 0));
    assert_eq!(report.cost_usd, Some(0.0513));
}

#[test]
fn nonzero_exit_without_result_fails_with_stderr_tail() {
    // No result object and a non-zero exit: Failed with the exit and stderr's last line.
    let stderr = "starting\nError: Invalid API key · Please run /login\n";
    let report = claude().parse("", stderr, &exit(1));
    assert_eq!(failed_message(&report.status), "claude exited with code 1: Error: Invalid API key · Please run /login");
    assert_eq!(report.cost_usd, None);
}

#[test]
fn killed_stream_keeps_the_usage_streamed_so_far() {
    // A run stopped mid-stream (budget, STOP) reports what it streamed, so its spend is recorded.
    let stream = fixture("claude_stream.jsonl");
    let partial: Vec<&str> = stream.lines().take(3).collect();
    let stopped = baton_runner::ExitReport { stopped: true, code: None, signal: Some(15), ..exit(0) };
    let report = claude().parse(&partial.join("\n"), "", &stopped);
    assert_eq!(failed_message(&report.status), "claude stopped on request");
    assert_eq!(report.usage, usage(1000, 1, 0, 800, 0));
    assert_eq!(report.session_id.as_deref(), Some("754c821d-4a06-495a-a1d8-a446f5ee7763"));
}

#[test]
fn prepare_builds_argv_env_and_config_dir() {
    // prepare() pipes the prompt file on stdin, uses a fresh CLAUDE_CONFIG_DIR and passes the flags.
    let dir = temp();
    let mut req = request(dir.path());
    req.base_env.push(("MY_ANTHROPIC_KEY".into(), "sk-from-base-env".into()));
    let agent = ClaudeAgent::new(CliAgentConfig {
        program: "/opt/clis/claude".into(),
        model: Some("claude-sonnet-4-5".into()),
        base_url: Some("http://127.0.0.1:4010/".into()),
        api_key_env: Some("MY_ANTHROPIC_KEY".into()),
        max_turns: Some(12),
        allowed_tools: vec!["Bash(cargo test:*)".into(), "Edit".into()],
        streaming: true,
        extra_args: vec!["--append-system-prompt".into(), "Be brief.".into()],
        ..CliAgentConfig::default()
    });
    let spec = agent.prepare(&req).expect("prepare");
    assert_eq!(spec.program, "/opt/clis/claude");
    assert_eq!(
        spec.args,
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "claude-sonnet-4-5",
            "--permission-mode",
            "acceptEdits",
            "--max-turns",
            "12",
            "--allowedTools",
            "Bash(cargo test:*)",
            "Edit",
            "--append-system-prompt",
            "Be brief."
        ]
    );
    assert_eq!(spec.cwd, req.worktree);
    assert_eq!(spec.stdin.as_deref(), Some(req.prompt_path().as_path()));
    assert_eq!(std::fs::read_to_string(req.prompt_path()).expect("prompt file"), req.prompt);
    let home = req.agent_dir().join("claude-home");
    assert!(home.is_dir());
    assert_eq!(env_value(&spec, "CLAUDE_CONFIG_DIR"), Some(home.display().to_string().as_str()));
    assert_eq!(env_value(&spec, "ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:4010"));
    assert_eq!(env_value(&spec, "ANTHROPIC_API_KEY"), Some("sk-from-base-env"));
    assert_eq!(env_value(&spec, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"), Some("1"));
    assert_eq!(env_value(&spec, "CLAUDE_CODE_MAX_RETRIES"), Some("2"), "its own retries are capped by default");
    assert_eq!(env_value(&spec, "HOME"), Some("/home/agent"));
    let own = [
        "CLAUDE_CONFIG_DIR",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "CLAUDE_CODE_MAX_RETRIES",
    ];
    assert_env_keys(&spec, &req, &own);
}

#[test]
fn prepare_defaults_json_and_placeholder_key() {
    // Without streaming it asks for json; with a base_url and no key variable a placeholder key is sent.
    let dir = temp();
    let req = request(dir.path());
    let agent = ClaudeAgent::new(CliAgentConfig { base_url: Some("http://127.0.0.1:1".into()), ..Default::default() });
    let spec = agent.prepare(&req).expect("prepare");
    assert_eq!(spec.program, "claude");
    assert_eq!(spec.args, ["-p", "--output-format", "json", "--permission-mode", "acceptEdits"]);
    assert_eq!(env_value(&spec, "ANTHROPIC_API_KEY"), Some(PLACEHOLDER_API_KEY));
}

#[test]
fn prepare_refuses_a_key_variable_missing_from_base_env() {
    // A configured key variable that the engine did not pass through is a configuration error.
    let dir = temp();
    let agent =
        ClaudeAgent::new(CliAgentConfig { api_key_env: Some("ANTHROPIC_API_KEY".into()), ..Default::default() });
    let error = agent.prepare(&request(dir.path())).expect_err("missing key variable");
    assert!(error.to_string().contains("ANTHROPIC_API_KEY"), "{error}");
}

#[test]
fn resume_carries_the_earlier_session_into_the_fresh_config_dir() {
    // With resume_session, the earlier run's transcript is copied into this run's home and --resume
    // passed: from an earlier run's agent directory, and from a run written before runs had one.
    for earlier_home in ["run1/agent/claude-home", "run1/claude-home"] {
        let dir = temp();
        let session = "0872e457-1fef-4384-9f4d-fc2b7d175421";
        let earlier = dir.path().join("runs/W-1/analysis-job0").join(earlier_home).join("projects/-work-worktree");
        std::fs::create_dir_all(&earlier).expect("earlier home");
        std::fs::write(earlier.join(format!("{session}.jsonl")), "{\"type\":\"user\"}\n").expect("transcript");
        let mut req = request(dir.path());
        req.resume_session = Some(session.into());
        let spec = claude().prepare(&req).expect("prepare");
        assert!(has_flag(&spec.args, "--resume", session), "{earlier_home}: {:?}", spec.args);
        let copied = req.agent_dir().join(format!("claude-home/projects/-work-worktree/{session}.jsonl"));
        assert_eq!(std::fs::read_to_string(copied).expect("copied transcript"), "{\"type\":\"user\"}\n");
    }
}

#[test]
fn resume_without_a_transcript_starts_afresh() {
    // A session that cannot be found is not passed (claude would fail); the answers are in the prompt.
    let dir = temp();
    let mut req = request(dir.path());
    req.resume_session = Some("../../etc/passwd".into());
    let spec = claude().prepare(&req).expect("prepare");
    assert!(!spec.args.iter().any(|a| a == "--resume"), "{:?}", spec.args);
}

// Regression (issue 8): a run ending on an API error was recorded under the model `<synthetic>`,
// the name of the message claude makes up for the error. The last real model stands.
#[test]
fn api_error_on_the_first_turn_keeps_the_real_model_not_synthetic() {
    // Real stream (claude 2.1.197 against `baton mock-llm`, a 500 on the first request, no retries).
    let agent = claude();
    let stdout = fixture("claude_stream_api_error_first_turn.jsonl");
    assert!(stdout.contains("\"model\":\"<synthetic>\""), "the fixture holds the synthetic message");
    let report = agent.parse(&stdout, "", &exit(1));
    assert!(failed_message(&report.status).contains("API status 500"), "{:?}", report.status);
    assert_eq!(report.model.as_deref(), Some("claude-sonnet-4-5"), "the init event's model");
    assert_eq!(replay(&agent, &stdout).model.as_deref(), Some("claude-sonnet-4-5"), "live progress too");
    // With no model anywhere but the synthetic message, the configured one stands.
    let configured = ClaudeAgent::new(CliAgentConfig { model: Some("claude-opus-4-1".into()), ..Default::default() });
    let only_synthetic: String =
        stdout.lines().filter(|l| !l.contains("\"subtype\":\"init\"")).collect::<Vec<_>>().join("\n");
    assert_eq!(configured.parse(&only_synthetic, "", &exit(1)).model.as_deref(), Some("claude-opus-4-1"));
    assert_eq!(claude().parse(&only_synthetic, "", &exit(1)).model, None, "never `<synthetic>`");
}

#[test]
fn api_error_after_a_turn_keeps_the_turns_model_usage_and_cost() {
    // Real stream: one real turn (a Write), then a 500. The figures are the real turn's.
    let agent = claude();
    let stdout = fixture("claude_stream_api_error_after_a_turn.jsonl");
    let report = agent.parse(&stdout, "", &exit(1));
    assert!(failed_message(&report.status).contains("scripted outage"), "{:?}", report.status);
    assert_eq!(report.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(report.usage, usage(1000, 20, 0, 800, 0));
    assert_eq!(report.cost_usd, Some(0.0063));
    let progress = replay(&agent, &stdout);
    assert_eq!(progress.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(progress.usage, report.usage);
}

#[test]
fn synthetic_model_usage_entry_is_never_the_model() {
    // A `<synthetic>` key in modelUsage adds its (zero) figures but is never chosen as the model.
    let result = r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":500,"result":"API Error: 500","session_id":"s","modelUsage":{"<synthetic>":{"inputTokens":0,"outputTokens":0,"cacheReadInputTokens":0,"cacheCreationInputTokens":0}}}"#;
    let configured = ClaudeAgent::new(CliAgentConfig { model: Some("claude-sonnet-4-5".into()), ..Default::default() });
    assert_eq!(configured.parse(result, "", &exit(1)).model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(claude().parse(result, "", &exit(1)).model, None);
}

#[test]
fn capped_rate_limit_retries_are_waits_and_end_as_quota() {
    // Real stream: CLAUDE_CODE_MAX_RETRIES=2 and a permanent 429: two `api_retry` events (each a
    // wait on the provider), then the synthetic error message and an is_error result.
    let agent = claude();
    let stdout = fixture("claude_stream_rate_limit_retries_capped.jsonl");
    let report = agent.parse(&stdout, "", &exit(1));
    assert!(matches!(report.status, AgentStatus::QuotaExhausted { .. }), "{:?}", report.status);
    assert_eq!(report.model.as_deref(), Some("claude-sonnet-4-5"));
    let progress = replay(&agent, &stdout);
    assert_eq!(
        progress.waits,
        [
            "waiting on the provider: 429 (rate_limit), retry 1/2 in 0.5 s",
            "waiting on the provider: 429 (rate_limit), retry 2/2 in 1.1 s"
        ]
    );
    assert!(progress.notes.is_empty(), "{:?}", progress.notes);
}

#[test]
fn prepare_caps_claudes_own_retries_as_configured() {
    let dir = temp();
    let agent = ClaudeAgent::new(CliAgentConfig { max_retries: Some(0), ..Default::default() });
    let spec = agent.prepare(&request(dir.path())).expect("prepare");
    assert_eq!(env_value(&spec, "CLAUDE_CODE_MAX_RETRIES"), Some("0"));
}
