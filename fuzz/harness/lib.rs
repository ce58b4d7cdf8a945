//! Fuzz harnesses for every parser of outside input (SPEC §17), as plain functions: the cargo-fuzz
//! targets in `fuzz_targets/` call them with libFuzzer's inputs, and stable tests in the main
//! workspace replay `corpus/<target>/*` through the same functions (each file is included there
//! with `#[path]`), so CI checks every committed corpus input without nightly.
//!
//! - [`config`]: `baton.toml` text plus `BATON_*` overrides → `baton::config::load_str`.
//! - [`front_matter`]: artifact front matter (`verdict: approve`) → `gates::front_matter`.
//! - [`agent_output`]: agent stdout/stderr → each adapter's `Agent::parse` and `Agent::observe`.
//! - [`mock_llm_script`]: mock-llm script TOML → `baton_mock_llm::Script::from_toml`.
//! - [`api_body`]: HTTP request bodies, query strings and path ids → `baton_http::app`.
//! - [`redact_stream`]: secret masking of an output stream cut anywhere (the shim's run logs).
//! - [`text_input`]: input-text checks and terminal escaping.
//! - [`http_request`]: raw HTTP/1 requests over loopback TCP → the hardened `baton_http` server.
//! - [`webhook`]: signed webhook bodies (GitHub, Gitea, Plane) → `baton_adapters::webhook::parse`.
//! - [`replay`]: runs every file of a corpus directory through a harness, naming any that panics.

pub mod agent_output;
pub mod api_body;
pub mod config;
pub mod front_matter;
pub mod http_request;
pub mod mock_llm_script;
pub mod redact_stream;
pub mod replay;
pub mod text_input;
pub mod webhook;
