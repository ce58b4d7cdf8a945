//! Replays the committed fuzz inputs of the `mock_llm_script` target (`fuzz/seeds/…`,
//! `fuzz/corpus/…`) through the same harness the cargo-fuzz target calls, on stable.

#[path = "../../../../fuzz/harness/mock_llm_script.rs"]
mod mock_llm_script;
#[path = "../../../../fuzz/harness/replay.rs"]
mod replay;

// Every script input loads or is refused with a `ScriptError`, without a panic.
#[test]
fn fuzz_corpus_scripts_load_or_are_refused() {
    let fuzz_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    replay::replay(&fuzz_dir, "mock_llm_script", mock_llm_script::run);
}
