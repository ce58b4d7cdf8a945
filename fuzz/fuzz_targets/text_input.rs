//! Fuzz target `text_input`: input-text checks and terminal escaping.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::text_input::run(data);
});
