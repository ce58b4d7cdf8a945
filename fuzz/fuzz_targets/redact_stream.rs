//! Fuzz target `redact_stream`: secret masking of an output stream cut anywhere.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::redact_stream::run(data);
});
