//! Replays the committed fuzz inputs (`fuzz/seeds/<target>/`, `fuzz/corpus/<target>/`) of the
//! parsers this binary wires together — `baton.toml`, artifact front matter, agent output —
//! through the same harness functions the cargo-fuzz targets call, so CI checks them on stable.

#[path = "../../../../fuzz/harness/agent_output.rs"]
mod agent_output;
#[path = "../../../../fuzz/harness/config.rs"]
mod config;
#[path = "../../../../fuzz/harness/front_matter.rs"]
mod front_matter;
#[path = "../../../../fuzz/harness/redact_stream.rs"]
mod redact_stream;
#[path = "../../../../fuzz/harness/replay.rs"]
mod replay;
#[path = "../../../../fuzz/harness/text_input.rs"]
mod text_input;

use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

// Every config input loads to a Config or to a non-empty list of issues; none panics.
#[test]
fn fuzz_corpus_config_loads_or_reports_issues() {
    let harness = config::ConfigHarness::new();
    replay::replay(&fuzz_dir(), "config", |data| harness.run(data));
}

// Every front-matter input parses or is refused without a panic.
#[test]
fn fuzz_corpus_front_matter_never_panics() {
    replay::replay(&fuzz_dir(), "front_matter", front_matter::run);
}

// Every agent-output input goes through each adapter's `observe` and `parse` without a panic.
#[test]
fn fuzz_corpus_agent_outputs_never_panic() {
    replay::replay(&fuzz_dir(), "agent_result_line", agent_output::result_line);
    replay::replay(&fuzz_dir(), "agent_claude", agent_output::claude);
    replay::replay(&fuzz_dir(), "agent_codex", agent_output::codex);
    replay::replay(&fuzz_dir(), "agent_gemini", agent_output::gemini);
}

// Every redaction input masks the same chunked as whole, and leaves no secret behind.
#[test]
fn fuzz_corpus_redact_stream_masks_every_secret() {
    replay::replay(&fuzz_dir(), "redact_stream", redact_stream::run);
}

// Every text input passes or fails the checks without a panic, and escapes to terminal-safe text.
#[test]
fn fuzz_corpus_text_input_is_checked_and_escaped() {
    replay::replay(&fuzz_dir(), "text_input", text_input::run);
}
