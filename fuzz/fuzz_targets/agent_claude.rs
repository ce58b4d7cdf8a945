//! Fuzz target `agent_claude`: Claude Code output through the claude adapter's `parse` and `observe`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::agent_output::claude(data);
});
