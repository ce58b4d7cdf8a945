//! Integration tests of the real-CLI agent adapters: parsing the CLIs' recorded output (fixtures
//! under `tests/fixtures/`), live progress, the processes they prepare, and (when the pinned CLIs
//! are installed) real runs against Baton's scripted model server.

mod claude;
mod codex;
mod env_scrub;
mod gemini;
mod real_cli;
mod support;
