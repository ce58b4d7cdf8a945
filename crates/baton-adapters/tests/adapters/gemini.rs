//! The `gemini` adapter: `-o json` reports, `-o stream-json` events, API errors on stderr with
//! HTTP-status exit codes, quota, live progress, the settings file and the prepared process.

use crate::support::{assert_env_keys, env_value, exit, fixture, has_flag, replay, request, temp, usage};
use baton_adapters::agent::{Agent, CliAgentConfig, GeminiAgent};
use baton_domain::AgentStatus;

fn gemini() -> GeminiAgent {
    GeminiAgent::new(CliAgentConfig::default())
}

#[test]
fn json_sample_gives_exact_figures() {
    // `-o json`: input = prompt - cached, cached as cache reads, candidates as output, no cost.
    let report = gemini().parse(&fixture("gemini_json.json"), "", &exit(0));
    assert_eq!(report.status, AgentStatus::Succeeded);
    assert_eq!(report.usage, usage(1900, 70, 300, 0, 0));
    assert_eq!(report.cost_usd, None);
    assert_eq!(report.model.as_deref(), Some("gemini-2.5-pro"));
    assert_eq!(report.session_id.as_deref(), Some("76c1bff4-4b78-40e3-9e5f-4fd1f1cf072e"));
    assert_eq!(report.final_text.as_deref(), Some("Wrote docs/analysis.md"));
}

#[test]
fn stream_sample_gives_the_result_figures_and_last_text() {
    // stream-json: figures from the `result` event, text = the assistant's words after its last tool call.
    let report = gemini().parse(&fixture("gemini_stream.jsonl"), "", &exit(0));
    assert_eq!(report.status, AgentStatus::Succeeded);
    assert_eq!(report.usage, usage(1900, 70, 300, 0, 0));
    assert_eq!(report.model.as_deref(), Some("gemini-2.5-pro"));
    assert_eq!(report.session_id.as_deref(), Some("4b292f5b-f73b-4fa3-988f-058cd04b7b47"));
    assert_eq!(report.final_text.as_deref(), Some("Wrote docs/analysis.md"));
}

#[test]
fn thinking_counts_as_output_and_models_are_summed() {
    // Thinking tokens are billed as output: output = candidates + thoughts; the router model is summed in.
    let report = gemini().parse(&fixture("gemini_json_thinking_and_router_model.json"), "", &exit(0));
    assert_eq!(report.usage, usage(1800, 210, 500, 0, 120));
    assert_eq!(report.model.as_deref(), Some("gemini-2.5-pro"));
    let streamed = gemini().parse(&fixture("gemini_stream_with_thinking.jsonl"), "", &exit(0));
    assert_eq!(streamed.usage, usage(1500, 200, 500, 0, 120), "stream stats: thinking = total - prompt - candidates");
    assert_eq!(streamed.final_text.as_deref(), Some("Reviewed: LGTM"));
}

#[test]
fn observe_over_stream_ends_at_the_final_usage() {
    // Live usage after the last event equals parse(); tool calls become notes.
    let agent = gemini();
    let stdout = fixture("gemini_stream.jsonl");
    let progress = replay(&agent, &stdout);
    let report = agent.parse(&stdout, "", &exit(0));
    assert_eq!(progress.usage, report.usage);
    assert_eq!(progress.model, report.model);
    assert_eq!(progress.notes, vec!["tool: write_file /home/user/projectASV/docs/analysis.md".to_string()]);
}

#[test]
fn api_error_on_stderr_with_exit_144_fails_with_its_message() {
    // Empty stdout, the JSON report on stderr, exit 144 (400 & 255): Failed with the API's message.
    let report = gemini().parse("", &fixture("gemini_error.json"), &exit(144));
    assert_eq!(
        report.status,
        AgentStatus::Failed { message: "gemini API error 400 INVALID_ARGUMENT: scripted bad request".into() }
    );
}

#[test]
fn quota_error_after_a_stack_trace_with_exit_173_is_quota() {
    // A 429 RESOURCE_EXHAUSTED report after a stack trace on stderr is QuotaExhausted.
    let report = gemini().parse("", &fixture("gemini_quota_429_stderr.txt"), &exit(173));
    assert_eq!(
        report.status,
        AgentStatus::QuotaExhausted {
            message: "gemini stopped on a usage or rate limit: gemini API error 429 RESOURCE_EXHAUSTED: \
                      Resource has been exhausted (e.g. check quota)."
                .into(),
            resets_at_ms: None
        }
    );
}

#[test]
fn exit_173_without_a_report_is_quota() {
    // Exit 173 is HTTP 429 & 255: quota even when stderr holds no JSON report.
    let report = gemini().parse("", "Error: request failed\n", &exit(173));
    assert!(matches!(report.status, AgentStatus::QuotaExhausted { resets_at_ms: None, .. }), "{:?}", report.status);
}

#[test]
fn stream_error_result_fails_with_its_message() {
    // A stream-json `result` with status error fails with the error's message, keeping the session.
    let report = gemini().parse(&fixture("gemini_stream_error_result.jsonl"), "", &exit(1));
    assert_eq!(report.status, AgentStatus::Failed { message: "gemini error: [API Error: scripted outage]".into() });
    assert_eq!(report.session_id.as_deref(), Some("8d9e0f1a-2b3c-4d5e-8f6a-7b8c9d0e1f2a"));
}

#[test]
fn known_exit_codes_are_explained() {
    // Gemini's own exit codes get a hint (55: the workspace is not trusted).
    let report = gemini().parse("", "", &exit(55));
    assert_eq!(
        report.status,
        AgentStatus::Failed { message: "gemini exited with code 55 (the workspace is not trusted)".into() }
    );
}

#[test]
fn questions_in_the_response_need_input() {
    // A response with a `QUESTIONS:` line ends the run with those questions.
    let stdout =
        r#"{"session_id":"s","response":"Plan drafted.\nQUESTIONS: Which API version?","stats":{"models":{}}}"#;
    let report = gemini().parse(stdout, "", &exit(0));
    assert_eq!(report.status, AgentStatus::NeedsInput { questions: "Which API version?".into() });
}

#[test]
fn prepare_writes_settings_and_overrides_home() {
    // prepare() gives gemini its own HOME with settings.json, the base URL, key and trust variables.
    let dir = temp();
    let mut req = request(dir.path());
    req.prompt = "- starts with a dash\nStage: review".into();
    req.base_env.push(("GEMINI_KEY".into(), "g-key".into()));
    let agent = GeminiAgent::new(CliAgentConfig {
        model: Some("gemini-2.5-pro".into()),
        base_url: Some("http://127.0.0.1:4010".into()),
        api_key_env: Some("GEMINI_KEY".into()),
        streaming: true,
        ..CliAgentConfig::default()
    });
    let spec = agent.prepare(&req).expect("prepare");
    let home = req.agent_dir().join("gemini-home");
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join(".gemini/settings.json")).expect("settings"))
            .expect("settings.json parses");
    assert_eq!(settings["security"]["auth"]["selectedType"], "gemini-api-key");
    assert_eq!(settings["privacy"]["usageStatisticsEnabled"], false);
    assert_eq!(settings["telemetry"]["enabled"], false);
    assert_eq!(settings["general"]["maxAttempts"], 3, "two retries by default: three attempts");
    assert_eq!(spec.program, "gemini");
    assert_eq!(spec.args[0], format!("--prompt={}", req.prompt));
    assert!(has_flag(&spec.args, "-o", "stream-json"));
    assert!(has_flag(&spec.args, "--approval-mode", "yolo"));
    assert!(has_flag(&spec.args, "-m", "gemini-2.5-pro"));
    assert_eq!(spec.args.len(), 7, "{:?}", spec.args);
    assert_eq!(spec.stdin, None);
    assert_eq!(env_value(&spec, "HOME"), Some(home.display().to_string().as_str()));
    assert_eq!(env_value(&spec, "GOOGLE_GEMINI_BASE_URL"), Some("http://127.0.0.1:4010"));
    assert_eq!(env_value(&spec, "GEMINI_API_KEY"), Some("g-key"));
    assert_eq!(env_value(&spec, "GEMINI_CLI_TRUST_WORKSPACE"), Some("true"));
    assert_env_keys(&spec, &req, &["GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY", "GEMINI_CLI_TRUST_WORKSPACE"]);
}

#[test]
fn stderr_retry_notices_are_waits_and_the_429_ends_as_quota() {
    // Real run (gemini 0.61.0 against `baton mock-llm`, a permanent 429, general.maxAttempts = 3):
    // stderr announces each retry; stdout ends with an error result; exit 173 (429 & 255).
    let agent = GeminiAgent::new(CliAgentConfig { streaming: true, ..CliAgentConfig::default() });
    let stderr = fixture("gemini_quota_429_retries_stderr.txt");
    let mut progress = baton_adapters::agent::LiveProgress::default();
    stderr.lines().for_each(|line| agent.observe_stderr(line, &mut progress));
    assert_eq!(progress.waits, ["waiting on the provider: 429, retry 1/2", "waiting on the provider: 429, retry 2/2"]);
    let report = agent.parse(&fixture("gemini_stream_quota_429_after_retries.jsonl"), &stderr, &exit(173));
    assert!(matches!(report.status, AgentStatus::QuotaExhausted { .. }), "{:?}", report.status);
    assert_eq!(report.model.as_deref(), Some("gemini-2.5-pro"));
}

#[test]
fn an_auto_model_alias_is_never_recorded() {
    // Without `-m`, gemini's init event names its router alias (`auto-gemini-3`): not a model.
    let agent = GeminiAgent::new(CliAgentConfig { streaming: true, ..CliAgentConfig::default() });
    let stdout = r#"{"type":"init","timestamp":"2026-11-21T05:04:58.805Z","session_id":"s","model":"auto-gemini-3"}"#;
    assert_eq!(replay(&agent, stdout).model, None);
    let configured = GeminiAgent::new(CliAgentConfig { max_retries: Some(50), ..CliAgentConfig::default() });
    let dir = temp();
    let req = request(dir.path());
    configured.prepare(&req).expect("prepare");
    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(req.agent_dir().join("gemini-home/.gemini/settings.json")).expect("settings"),
    )
    .expect("settings.json parses");
    assert_eq!(settings["general"]["maxAttempts"], 10, "gemini refuses more than 10 attempts");
}
