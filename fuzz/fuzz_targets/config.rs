//! Fuzz target `config`: `baton.toml` text and `BATON_*` overrides through the config loader.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static HARNESS: std::sync::OnceLock<baton_fuzz::config::ConfigHarness> = std::sync::OnceLock::new();
    HARNESS.get_or_init(baton_fuzz::config::ConfigHarness::new).run(data);
});
