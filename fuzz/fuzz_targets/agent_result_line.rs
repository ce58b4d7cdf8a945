//! Fuzz target `agent_result_line`: the `command`/`script` result and progress lines through `Agent::parse` and `observe`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::agent_output::result_line(data);
});
