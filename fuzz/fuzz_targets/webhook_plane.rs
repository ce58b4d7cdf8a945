//! Fuzz target `webhook_plane`: an event name and a body through the plane webhook parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::webhook::plane(data);
});
