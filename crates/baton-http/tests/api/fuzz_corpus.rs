//! Replays the committed fuzz inputs of the `api_body` target (`fuzz/seeds/api_body/`,
//! `fuzz/corpus/api_body/`) through the same harness the cargo-fuzz target calls, on stable.

#[path = "../../../../fuzz/harness/api_body.rs"]
mod api_body;
#[path = "../../../../fuzz/harness/replay.rs"]
mod replay;

// Every API input (body, query string or task id) gets an answer other than 500, without a panic.
#[test]
fn fuzz_corpus_api_bodies_never_panic_or_500() {
    let harness = api_body::ApiHarness::new();
    let fuzz_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    replay::replay(&fuzz_dir, "api_body", |data| harness.run(data));
}
