//! Fuzz target `http_request`: raw bytes as an HTTP/1 request over loopback TCP to the hardened server.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static HARNESS: std::sync::OnceLock<baton_fuzz::http_request::HttpHarness> = std::sync::OnceLock::new();
    HARNESS.get_or_init(baton_fuzz::http_request::HttpHarness::new).run(data);
});
