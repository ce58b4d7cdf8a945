//! Baton's imperative shell: the claim loop, the job executor (worktrees, agents, gates, merge and
//! deploy), human inputs, and the effects of committed decisions.
//!
//! Code map:
//! - [`engine`]: the [`Engine`] handle, task creation, inputs, applying decisions, the claim loop.
//! - [`executor`]: running one claimed job and turning its result into a `JobFinished` event.
//! - [`gates`]: one file per gate kind, including the merge gate.
//! - [`workspace`]: worktree paths (with path safety), creation and removal.
//! - [`prompts`]: minijinja prompt templates per role.
//! - [`settings`], [`clock`].
//!
//! Invariant: every stage change goes through `baton_domain::decide` and one `Store::advance`;
//! external effects run only after that transaction committed, and only for its winner.

pub mod budgets;
pub mod clock;
pub mod engine;
pub mod executor;
pub mod gates;
pub mod prompts;
pub mod reaper;
pub mod reconciler;
pub mod settings;
pub mod workspace;

pub use clock::{Clock, SystemClock};
pub use engine::{Engine, Input, InputOutcome, NewTaskRequest};
pub use settings::{AdapterKind, AgentSettings, Budgets, EngineSettings, Limits, RepoSettings};

/// Errors at the engine boundary.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] baton_store::StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("io: {0}")]
    Io(String),
    #[error(transparent)]
    Git(#[from] baton_runner::GitError),
    #[error(transparent)]
    Run(#[from] baton_runner::RunError),
    #[error(transparent)]
    Adapter(#[from] baton_adapters::AdapterError),
}
