//! Fuzz target `agent_codex`: `codex exec --json` output through the codex adapter's `parse` and `observe`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::agent_output::codex(data);
});
