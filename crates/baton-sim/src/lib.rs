//! A deterministic simulation of Baton's engine (SPEC §17): thousands of seeded schedules of the
//! real `baton_engine::Engine` over an in-memory store with injected faults, checking the SPEC §4
//! invariants after every step. Run it with `cargo xtask sim [--seeds N] [--seed S]`.
//!
//! **What it covers.** Everything between the engine's inputs and its store: `create_task`,
//! human inputs through `Engine::submit` (approve, answer, confirm deploy, retry, resume, STOP —
//! new, replayed with the same dedup key, delayed and reordered, some wrong for the task's state),
//! job results through `Engine::apply_event` exactly as the executor feeds them (once, twice,
//! concurrently, late after the task moved on), the quota timer, the reconciler
//! (`reconciler::tick`), `Engine::recover` after Baton is killed at any step, lease expiry by
//! moving the clock past the TTL, and several of these interleaved store call by store call. The store ([`SimStore`]) has `SqliteStore`'s semantics
//! (version CAS, guarded job flips, claims under limits and `current_job`, fenced leases with a
//! TTL, the inbox) and fails calls at a seeded rate, before committing or after committing with
//! the reply lost. Jobs are executed by the simulator with scripted, seeded outcomes (pass, gate
//! failure, agent failure, questions, quota, budget, hang, slow exit); the merge gate and deploy
//! mirror the engine's code step by step against a simulated forge ([`SimForge`]) whose default
//! branch checks "main is sacred" at every merge.
//!
//! **What it does not cover.** It spawns no process and runs no git: agents, repo commands,
//! worktrees, process groups, signals and agents outliving Baton are not exercised. The engine's
//! executor, claim loop (`Engine::run`) and reaper (`adopt_orphans` spawns the real executor;
//! `backstop` and `leases` are private) are replaced by copies in [`actors`] — when those change
//! in the engine, the copies must change with them. Real SQLite
//! (locking, durability, the SQL itself) is not under test here: the store conformance suite
//! covers SQL, and the crash test with the real binary (SIGKILL at random points against real
//! SQLite) covers processes and git. Time is simulated, so wall-clock timeouts never fire.
//!
//! Code map:
//! - [`rng`]: the seeded SplitMix64 behind every random choice.
//! - [`sched`]: `block_on` and the seeded interleaving of concurrent engine calls.
//! - [`clock`], [`store`], [`forge`]: the simulated clock, store and forge.
//! - [`actors`]: claim, the executor's start check, scripted agents, the merge gate and deploy.
//! - [`world`]: one simulated installation and the scripted API the regression tests use.
//! - [`check`]: the invariants.
//! - [`driver`]: the seeded schedule, the drain, and sweeps over many seeds.
//! - [`report`]: counts and failure reports.
//!
//! Engine fixes this simulation led to are mirrored in the copies as [`actors::Protection`]s; a
//! world may remove some (`WorldConfig::without`) to restore the old bug, which is how
//! `regression_scenarios_fail_without_their_protection` proves each regression test can fail.
//! Known engine bugs the sweep still counts instead of failing on (`--strict` fails on them):
//! see [`Kind::is_known_engine_bug`].
//!
//! Invariant: deterministic — a seed replays the same schedule (no wall clock, no OS randomness,
//! no hash-order iteration, no threads).

pub mod actors;
pub mod check;
pub mod clock;
pub mod driver;
pub mod forge;
pub mod report;
pub mod rng;
pub mod sched;
pub mod store;
pub mod world;

pub use check::{Kind, Violation};
pub use clock::SimClock;
pub use driver::{Config, run_seed, sweep};
pub use forge::SimForge;
pub use report::{Failure, Totals};
pub use store::{Fault, FaultRates, Mutation, SimStore};
pub use world::{World, WorldConfig};
