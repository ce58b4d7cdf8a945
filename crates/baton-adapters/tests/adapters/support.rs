//! Shared helpers: fixtures, exit reports, requests and replaying a stream through `observe`.

use baton_adapters::agent::{Agent, AgentRequest, LiveProgress};
use baton_domain::Usage;
use baton_runner::{ExitReport, ProcessSpec};
use std::path::Path;

/// The text of `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A process that exited by itself with `code`.
pub fn exit(code: i32) -> ExitReport {
    ExitReport { code: Some(code), signal: None, timed_out: false, stalled: false, stopped: false, duration_ms: 1200 }
}

/// A request for a run under `root/runs/W-1/analysis-job1/run1`, with a small `base_env`.
pub fn request(root: &Path) -> AgentRequest {
    let worktree = root.join("worktree");
    std::fs::create_dir_all(&worktree).expect("worktree");
    AgentRequest {
        work_item: "W-1".into(),
        title: "Multiply numbers".into(),
        stage: "analysis".into(),
        role: "analyst".into(),
        attempt: 1,
        run_number: 1,
        worktree,
        run_dir: root.join("runs/W-1/analysis-job1/run1"),
        prompt: "Stage: analysis\nWrite docs/analysis.md".into(),
        base_env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOME".into(), "/home/agent".into()),
            ("TMPDIR".into(), "/tmp".into()),
        ],
        resume_session: None,
        sandboxed: false,
    }
}

/// The value of `key` in a process spec's environment.
pub fn env_value<'a>(spec: &'a ProcessSpec, key: &str) -> Option<&'a str> {
    spec.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Whether `args` holds `flag` immediately followed by `value`.
pub fn has_flag(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

/// Feeds every line of `stdout` to `observe`, checking after each line that no count went down.
pub fn replay(agent: &dyn Agent, stdout: &str) -> LiveProgress {
    let mut progress = LiveProgress::default();
    for line in stdout.lines() {
        let before = progress.usage;
        agent.observe(line, &mut progress);
        assert_monotone(&before, &progress.usage, line);
    }
    progress
}

fn assert_monotone(before: &Usage, after: &Usage, line: &str) {
    let pairs = [
        (before.input_tokens, after.input_tokens),
        (before.output_tokens, after.output_tokens),
        (before.cache_read_tokens, after.cache_read_tokens),
        (before.cache_write_tokens, after.cache_write_tokens),
        (before.reasoning_tokens, after.reasoning_tokens),
    ];
    assert!(pairs.iter().all(|(b, a)| a >= b), "live usage went down on line {line}: {before:?} -> {after:?}");
}

/// Usage in the order input, output, cache read, cache write, reasoning.
pub fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64, reasoning: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        reasoning_tokens: reasoning,
    }
}

/// A temporary directory for one test.
pub fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Keys of the context variables every adapter passes.
pub const CONTEXT_KEYS: &[&str] = &[
    "BATON_WORK_ITEM",
    "BATON_TASK_TITLE",
    "BATON_STAGE",
    "BATON_ROLE",
    "BATON_ATTEMPT",
    "BATON_RUN",
    "BATON_PROMPT_FILE",
];

/// Asserts that the environment holds exactly `base_env`'s keys, the context keys and `own`.
pub fn assert_env_keys(spec: &ProcessSpec, request: &AgentRequest, own: &[&str]) {
    let mut allowed: Vec<&str> = request.base_env.iter().map(|(k, _)| k.as_str()).collect();
    allowed.extend(CONTEXT_KEYS);
    allowed.extend(own);
    let mut keys: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, keys.len(), "each variable appears once: {:?}", spec.env);
    for key in &keys {
        assert!(allowed.contains(key), "unexpected variable {key} in the agent's environment");
    }
    for key in own.iter().chain(CONTEXT_KEYS) {
        assert!(keys.contains(key), "missing variable {key}");
    }
}
