//! Fuzz target `api_body`: HTTP bodies, query strings and task ids through `baton_http::app`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static HARNESS: std::sync::OnceLock<baton_fuzz::api_body::ApiHarness> = std::sync::OnceLock::new();
    HARNESS.get_or_init(baton_fuzz::api_body::ApiHarness::new).run(data);
});
