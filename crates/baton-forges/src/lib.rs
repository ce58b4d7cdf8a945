//! Typed REST clients for GitHub, Gitea/Forgejo and Plane, over one HTTP client.
//!
//! - [`http`]: the one client (reqwest + rustls): connect timeout 5 s, request timeout 30 s,
//!   `User-Agent: baton/<version>`, the service's auth header (`Authorization: Bearer` for GitHub,
//!   `Authorization: token` for Gitea, `X-API-Key` for Plane), retries with jitter for idempotent
//!   calls (GET/PUT/DELETE) on 5xx and transport errors, rate limits (`Retry-After`, GitHub's
//!   `X-RateLimit-Remaining: 0` + `X-RateLimit-Reset`: waited through when short, else
//!   [`ApiError::RateLimited`]), pagination (`Link: rel="next"`, Plane's `next_cursor`), and typed
//!   errors that name the call and never carry the token. Time comes through [`http::Clock`].
//! - [`forge`]: the [`ForgeApi`] trait (PRs, fenced merges, branch deletion, CI state, issues and
//!   labels) with [`GitHub`] and [`Gitea`] (Forgejo shares Gitea's API).
//! - [`plane`]: [`Plane`] work items, states ([`StateMap`] maps "In Progress" to its id), comments.
//! - [`adapters`]: [`PlaneTracker`], the engine's `Tracker` port over Plane.
//! - [`hosted`]: [`HostedForge`], the engine's `Forge` port on GitHub or Gitea/Forgejo: pull
//!   requests found before created, merges through the API fenced on the re-tested head (or a
//!   fast-forward push), CI state with a bounded log tail; git work through the repository's
//!   remote (`docs/forges.md`, "How the engine uses a forge").
//!
//! # How the `Tracker` port sits on top
//!
//! **`Tracker`** (`baton_adapters::tracker`): `task_changed` maps the status (`stage` or
//! `stage (hold)`) to a Plane state name ([`adapters::plane_state_for`]) and writes its id
//! ([`PlaneTracker`], done here). For GitHub/Gitea issues the same update becomes
//! [`ForgeApi::add_label`]/[`ForgeApi::remove_label`] of `baton:<state>` labels and
//! [`ForgeApi::close_issue`] on done/cancelled. Intake (the reconciler's poll) uses
//! [`Plane::list_work_items_in_state`] for "To Analyse" and
//! [`ForgeApi::list_issues_with_label`] for the start label. Comments are status notes only.

pub mod adapters;
pub mod error;
pub mod forge;
pub mod gitea;
pub mod github;
pub mod hosted;
pub mod http;
pub mod plane;

pub use adapters::PlaneTracker;
pub use error::ApiError;
pub use forge::{CiState, ForgeApi, Issue, MergeStyle, NewPullRequest, PullRequest, RepoInfo};
pub use gitea::Gitea;
pub use github::GitHub;
pub use hosted::HostedForge;
pub use http::{Auth, ClientConfig, Clock, RetryPolicy, Secret, SystemClock};
pub use plane::{Plane, PlaneState, StateMap, WorkItem};
