//! Integration tests of baton-mock-llm: the three model APIs over `oneshot`, and the
//! real `claude`, `codex` and `gemini` CLIs run offline against a live server.
#![allow(clippy::disallowed_methods)]

mod cli;
mod fuzz_corpus;
mod protocol_anthropic;
mod protocol_gemini;
mod protocol_log;
mod protocol_openai;
mod real_claude;
mod real_codex;
mod real_gemini;
mod support;
