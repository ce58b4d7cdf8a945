//! Baton's scripted model server (`baton mock-llm`): answers the real `claude`, `codex`
//! and `gemini` CLIs from a TOML script so they run offline and deterministically.
//!
//! Code map:
//! - [`script`]: the script format ([`Script`], conversations, turns, tool calls,
//!   injected errors, usage) and its validation ([`ScriptError`]).
//! - `exchange`: a provider-neutral view of a request and the stateless choice of the
//!   answer (conversation by `match`, turn by assistant turns in the history,
//!   `{{cwd}}` substitution).
//! - `anthropic`, `openai`, `gemini`: read each API's request and render its replies,
//!   streaming and not, errors included.
//! - `wire`: SSE and error bodies.
//! - [`MockState`]: the script plus the request log.
//! - `server`: [`app`], [`serve`] and [`start`].
//!
//! The format and endpoints are documented in `docs/mock-llm.md`.

mod anthropic;
mod exchange;
mod gemini;
mod openai;
pub mod script;
mod server;
mod state;
mod wire;

pub use script::{Conversation, InjectedError, Provider, Script, ScriptError, ToolCall, Turn, Usage};
pub use server::{MockServer, REQUEST_BODY_BYTES_MAX, app, serve, start};
pub use state::{LoggedRequest, MockState, REQUEST_LOG_ENTRIES_MAX};
