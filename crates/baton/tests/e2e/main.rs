//! End-to-end tests of the `baton` binary on real git repositories, a real SQLite file and real
//! processes: the demo, restart after `kill -9`, the crash test (SIGKILL at random moments), STOP,
//! path safety, the merge lease, config check, `db migrate` into PostgreSQL, usage ingest and
//! economics, and the replay of the committed fuzz inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod agents;
mod bench;
mod cli;
mod config_check;
mod coverage;
mod crash;
mod dashboard;
mod db_migrate;
mod demo;
mod dependencies;
mod forges;
mod fuzz_corpus;
mod handoff;
mod hooks;
mod instances;
mod lease;
mod lessons;
mod lost_database;
mod monitor;
mod path_safety;
mod pipelines;
mod real_cli;
mod recovery;
mod remote;
mod restart;
mod retro;
mod sandbox;
mod stop;
mod supervised;
mod support;
mod trust;
mod usage;
