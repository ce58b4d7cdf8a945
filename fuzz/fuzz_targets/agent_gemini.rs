//! Fuzz target `agent_gemini`: Gemini CLI output through the gemini adapter's `parse` and `observe`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::agent_output::gemini(data);
});
