//! End-to-end tests of the `baton` binary on real git repositories, a real SQLite file and real
//! processes: the demo, restart after `kill -9`, STOP, path safety, the merge lease, config check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod agents;
mod config_check;
mod demo;
mod lease;
mod path_safety;
mod real_cli;
mod restart;
mod stop;
mod support;
