//! A deterministic simulation of Baton's engine (SPEC §17): thousands of seeded schedules of the
//! real `baton_engine::Engine` — its executor, gates, merge gate, deploy step, reaper,
//! reconciler, quota timer and outbox worker — over in-memory ports with injected faults, checking
//! the SPEC §4 invariants after every step. Run it with `cargo xtask sim [--seeds N] [--seed S]`.
//!
//! **How the real code runs here.** The engine is built with `Engine::builder` over simulated
//! ports: [`SimStore`] (the store, with `SqliteStore`'s semantics — or, in a seeded quarter of the
//! worlds, PostgreSQL's READ COMMITTED interleavings, see below — failing calls at a seeded rate
//! before committing or after committing with the reply lost), [`SimForge`] (git worktrees,
//! commits, rebase, squash and files behind the `Vcs` port, the forge's fast-forward, and injected
//! full disks), [`ports::SimProcs`] (process groups behind the `Supervisor` and `CommandRunner`
//! ports: launch, exit and vanish records that outlive a killed Baton, as `baton shim` makes them),
//! [`ports::SimAgents`], a [`SimClock`] whose sleeps end when the simulator moves time, and
//! [`ports::SimSpawner`], which hands the executors the engine spawns to the seeded scheduler
//! ([`sched::run_with`]). The simulator never decides a job's outcome itself: it releases a job's
//! processes with a [`ports::Script`] (agents write their artifacts, commands exit 0 or 1) and the
//! engine's own code evaluates gates, rebases, squashes, merges and applies the result.
//!
//! **Independent witnesses.** Which heads passed the merge gate comes from the simulated re-test
//! command (not from the engine's verdict), so "main is sacred" is checked against what was tested;
//! the simulated processes count agent executions per job and deploys per head.
//!
//! **READ COMMITTED.** A world at [`Isolation::ReadCommitted`] runs the calls `PgStore` runs as
//! several statements (claims, advance, task creation, lease acquire/renew/release, job
//! close/requeue, event appends) step by step in `PgStore`'s statement order, with a yield to the
//! scheduler between steps: a step reads the newest committed state, writes commit all at once
//! (a fault before the commit, or a kill, discards them), written rows are locked until the commit
//! (a second writer waits, then re-checks its condition on the newest row, as PostgreSQL does
//! after a row lock wait), and the advisory locks are named locks. Such a world runs a second
//! Baton instance (its own owner, heartbeating) whose claim loop claims alongside the first (its
//! reconciler and outbox worker too, and its executors run its jobs), so the claim lock is what
//! keeps the limits ([`Kind::LimitExceeded`]) and the lease lock what keeps one
//! holder ([`Kind::DoubleLease`]); [`Mutation::ClaimWithoutLock`] and
//! [`Mutation::LeaseWithoutLock`] remove them. That second instance's process now and then stops
//! past the grace period ([`World::freeze_peer`]: its executors stay mid-await, its processes run
//! on) while the first declares it dead and takes its jobs over, then runs on where it was. It does not model a statement's own snapshot (each
//! step reads at one instant), `SKIP LOCKED`, serialization failures, nor a call re-reading its own
//! uncommitted writes in a later statement (such reads happen inside one step). Sweeps choose the
//! isolation per seed with [`IsolationMix`] (`--isolation rc|serial|mixed`, mixed by default).
//!
//! **What it does not cover.** Real processes, signals, files and SQL: the store conformance suite
//! covers SQL, and the crash test with the real binary (SIGKILL at random points against real
//! SQLite, git and `baton shim`) covers processes and git. Streaming progress and budgets are not
//! simulated (simulated agents report no usage).
//!
//! Code map:
//! - [`rng`]: the seeded SplitMix64 behind every random choice.
//! - [`sched`]: `block_on`, the seeded interleaving of concurrent engine calls, and the executors.
//! - [`clock`], [`store`], [`forge`], [`ports`]: the simulated ports.
//! - [`world`]: one simulated installation and the scripted API the regression tests use.
//! - [`check`]: the invariants.
//! - [`driver`]: the seeded schedule, the drain, and sweeps over many seeds.
//! - [`report`]: counts and failure reports.
//!
//! Every guard in the engine's own code that a regression test pins is removed from the real code
//! by `cargo xtask guards`, which expects the pinning test to fail without it. The sweep tolerates
//! no invariant kind.
//!
//! Invariant: deterministic — a seed replays the same schedule (no wall clock, no OS randomness,
//! no hash-order iteration, no threads).

pub mod check;
pub mod clock;
pub mod driver;
pub mod forge;
pub mod ports;
pub mod report;
pub mod rng;
pub mod sched;
pub mod store;
pub mod world;

pub use check::{Kind, Violation};
pub use clock::SimClock;
pub use driver::{Config, IsolationMix, run_seed, sweep};
pub use forge::SimForge;
pub use report::{Failure, Totals};
pub use store::{Fault, FaultRates, Isolation, Mutation, SimStore};
pub use world::{World, WorldConfig};
