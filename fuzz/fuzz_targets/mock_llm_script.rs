//! Fuzz target `mock_llm_script`: mock-llm scripts through `Script::from_toml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::mock_llm_script::run(data);
});
