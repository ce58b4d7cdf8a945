//! Fuzz target `webhook_gitea`: an event name and a body through the gitea webhook parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::webhook::gitea(data);
});
