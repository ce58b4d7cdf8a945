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
//! - [`trackers`]: the engine's `Tracker` port over issues ([`LabelTracker`]: one `baton:<status>`
//!   label, decision labels consumed, closed when done) and over Plane ([`PlaneTracker`]: SPEC §8
//!   states), and the `TicketPoller` port ([`ForgePoller`], [`PlanePoller`]) that recovers lost
//!   webhooks by listing tickets every `poll_secs`.
//! - [`hosted`]: [`HostedForge`], the engine's `Forge` port on GitHub or Gitea/Forgejo: pull
//!   requests found before created, merges through the API fenced on the re-tested head (or a
//!   fast-forward push), CI state with a bounded log tail; git work through the repository's
//!   remote (`docs/forges.md`, "How the engine uses a forge").
//!
//! # How the `Tracker` port sits on top
//!
//! **`Tracker`** (`baton_adapters::tracker`): `task_changed` maps the structured status to a
//! Plane state name ([`trackers::plane_state_for`]) and writes its id ([`PlaneTracker`]), or to
//! one `baton:<status>` label with [`ForgeApi::add_label`]/[`ForgeApi::remove_label`] and
//! [`ForgeApi::close_issue`] when done ([`LabelTracker`]). The pollers list tickets
//! ([`ForgeApi::list_issues_with_label`], [`Plane::list_work_items`]) for the engine's intake.
//! - [`telegram`]: the Bot API client and [`Telegram`], the notifier (alerts) and live board (one
//!   message per task, edited in place, with buttons); [`notify_webhook`]: signed JSON POSTs.
//!
//! Comments are prompt content (answers) or status notes, never triggers.

pub mod adapters;
pub mod error;
pub mod forge;
pub mod gitea;
pub mod github;
pub mod hosted;
pub mod http;
pub mod notify_webhook;
pub mod plane;
pub mod telegram;
pub mod trackers;

pub use error::ApiError;
pub use forge::{CiState, Comment, ForgeApi, Issue, LabelEvent, MergeStyle, NewPullRequest, PullRequest, RepoInfo};
pub use gitea::Gitea;
pub use github::GitHub;
pub use hosted::HostedForge;
pub use http::{Auth, ClientConfig, Clock, RetryPolicy, Secret, SystemClock};
pub use notify_webhook::{NotifierSet, WebhookNotifier};
pub use plane::{Plane, PlaneComment, PlaneState, StateMap, WorkItem};
pub use telegram::{Telegram, TelegramClient, TelegramConfig, TelegramError};
pub use trackers::{ForgePoller, LabelSettings, LabelTracker, PlanePoller, PlaneTracker};
