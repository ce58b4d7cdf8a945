//! Fuzz target `webhook_github`: an event name and a body through the github webhook parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::webhook::github(data);
});
