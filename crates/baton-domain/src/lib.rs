//! Baton's pure core: ids, tasks, the pipeline as data, events, gate verdicts and `decide()`.
//!
//! Code map:
//! - [`ids`]: newtype ids and the sanitizers that make titles safe for branch and path names.
//! - [`pipeline`]: stages, actors, gates and human gates as data, with the SPEC §3 default.
//! - [`task`]: the task state that `decide` reads and writes.
//! - [`event`]: what can happen to a task (job results, human inputs, STOP).
//! - [`decide`]: the one function that decides stage changes.
//! - [`agent`]: the common agent-run record every adapter produces.
//! - [`retry`]: the retry backoff schedule.
//! - [`pricing`]: the versioned model price table and its exact/normalized/longest-prefix lookup.
//! - [`redact`]: secret masking for whole texts and for output streams cut anywhere.
//! - [`text`]: checks on untrusted input text and terminal-safe escaping on output.
//! - [`money`]: amounts of money for people (`$0.0527`).
//! - [`usage`]: usage categories mapped at read time (`[usage.categories]`).
//! - [`coverage`]: coverage percentages read from tool output and judged against floor and baseline.
//!
//! Invariant: no IO, no async, no clock or random reads. `now` and randomness come in as arguments.

pub mod agent;
pub mod coverage;
pub mod decide;
pub mod event;
pub mod ids;
pub mod money;
pub mod pipeline;
pub mod pricing;
pub mod redact;
pub mod retry;
pub mod task;
pub mod text;
pub mod usage;

pub use agent::{AgentReport, AgentStatus, Usage};
pub use decide::{DEPLOY_DEGRADED, Decision, Effect, NotifyKind, decide};
pub use event::{Event, GateVerdict, JobOutcome, MERGED_VERDICT, Verdict};
pub use ids::{JobId, TaskId, WorkItemId};
pub use money::money;
pub use pipeline::{Actor, GateSpec, MonitorSpec, OnGateFail, Pipeline, PipelineProblem, StageOverrides, StageSpec};
pub use pricing::{MatchKind, ModelPrice, PriceMatch, PriceTable, PriceTier, PricedCost, PricingError};
pub use redact::{Redactor, StreamRedactor};
pub use task::{Hold, TaskState};
