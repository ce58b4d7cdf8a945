//! Baton's imperative shell: the claim loop, the job executor (worktrees, agents, gates, merge and
//! deploy), human inputs, and the effects of committed decisions.
//!
//! Code map:
//! - [`engine`]: the [`Engine`] handle and its [`EngineBuilder`] (the ports), task creation,
//!   inputs, applying decisions, recovery, the claim loop.
//! - [`executor`]: running one claimed job and turning its result into a `JobFinished` event.
//! - [`effects`]: the outbox of durable effects and its worker.
//! - [`intake`]: forge issues with the start label become tasks (a webhook sink).
//! - [`ticket_dependencies`]: the dependencies a ticket declares in its body (`Depends on #12`).
//! - [`features`]: the kill switches (`[features]`), asked wherever an optional behaviour happens.
//! - [`hooks`]: workspace hooks run in a task's worktree (`[repos.hooks]`).
//! - [`handoff`]: a task's hand-off document (Markdown and HTML) when it is done or blocked.
//! - [`gates`]: one file per gate kind, including the merge gate; gates see only a `GateContext`.
//! - [`access`]: principals, scoped API tokens (stored as digests), the scope a decision needs.
//! - [`agents`]: the agent port ([`AgentFactory`]) and the configured adapters.
//! - [`clock`]: the time and spawn ports ([`Clock`], [`Spawner`]).
//! - [`workspace`]: worktree paths (with path safety), creation and removal.
//! - [`prompts`]: minijinja prompt templates per role.
//! - `redacting`: the store wrapper that masks every known secret in what the engine writes.
//! - [`sandbox`]: whether an agent run is confined, and what a confined run may touch.
//! - [`webhooks`]: the webhook inbox worker and the [`webhooks::WebhookSink`] hook.
//! - [`stats`]: what the reaper's and the reconciler's last passes did (read by `/api/queue`).
//! - [`settings`], [`clock`].
//!
//! Invariant: every stage change goes through `baton_domain::decide` and one `Store::advance`;
//! external effects run only after that transaction committed, and only for its winner.

pub mod access;
pub mod agents;
pub mod budgets;
pub mod clock;
pub mod coverage;
pub mod dependencies;
pub mod effects;
pub mod engine;
pub mod executor;
pub mod features;
pub mod gates;
pub mod handoff;
pub mod hooks;
pub mod intake;
pub mod lessons;
pub mod monitor;
pub mod prompts;
pub mod queue;
pub mod reaper;
pub mod reconciler;
mod redacting;
pub mod retention;
pub mod retro;
pub mod sandbox;
pub mod settings;
pub mod stats;
pub mod telegram;
#[cfg(test)]
mod testing;
pub mod ticket_dependencies;
pub mod usage;
pub mod usage_report;
pub mod webhooks;
pub mod workspace;

pub use access::{Principal, Scope};
pub use agents::{AgentFactory, ConfiguredAgents};
pub use clock::{BoxFuture, Clock, Spawner, SystemClock, TokioSpawner};
pub use engine::{Engine, EngineBuilder, Input, InputOutcome, NewTaskRequest};
pub use features::{Feature, FeatureScope, Features};
pub use sandbox::{Confinement, Sandbox};
pub use settings::{
    AdapterKind, AgentSettings, Budgets, CiPolicy, DeleteRemoteBranch, EngineSettings, ForgeKind, Limits, MergeStyle,
    NamedPipeline, RepoForge, RepoHooks, RepoSettings, Retention, SandboxMode, SandboxNetwork, SandboxSettings,
};

/// Errors at the engine boundary.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] baton_store::StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The request contradicts what is stored (a dependency that would close a cycle).
    #[error("{0}")]
    Refused(String),
    #[error("io: {0}")]
    Io(String),
    #[error(transparent)]
    Git(#[from] baton_runner::GitError),
    #[error(transparent)]
    Run(#[from] baton_runner::RunError),
    #[error(transparent)]
    Adapter(#[from] baton_adapters::AdapterError),
}

impl EngineError {
    /// Whether the machine failed rather than the code or the configuration (disk, I/O, git
    /// locks, the database): such a failure is retried without spending the stage's attempts.
    pub fn is_infrastructure(&self) -> bool {
        match self {
            EngineError::Store(
                baton_store::StoreError::Database(_)
                | baton_store::StoreError::Busy(_)
                | baton_store::StoreError::Unavailable(_)
                | baton_store::StoreError::Lost(_),
            )
            | EngineError::Io(_) => true,
            EngineError::Run(baton_runner::RunError::Io { .. }) => true,
            EngineError::Store(_) | EngineError::Invalid(_) | EngineError::NotFound(_) | EngineError::Refused(_) => {
                false
            }
            EngineError::Run(_) => false,
            other => baton_runner::is_infrastructure(&other.to_string()),
        }
    }
}
