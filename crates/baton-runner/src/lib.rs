//! Baton's only door to the operating system's processes: supervised agent processes and `git`.
//!
//! - [`process`]: spawn in its own process group with a scrubbed environment, stdout/stderr to
//!   files, wall-clock and stall timeouts, stop = SIGTERM to the group, grace, SIGKILL.
//! - [`command`]: short commands (tests, deploy, health, hooks) run to completion with a timeout.
//! - [`git`]: `git` invoked with argument vectors only.
//! - [`paths`]: path-safety checks for derived paths.
//! - [`net`]: a free loopback port for a task attempt (`BATON_PORT`).
//! - [`remote`]: Baton's clone of a remote repository: fetch, lease pushes, fast-forward pushes.
//! - [`sandbox`]: the bubblewrap wrapper that confines agent processes.
//! - [`ports`]: the `Vcs`, `Supervisor` and `CommandRunner` ports the engine uses, with their
//!   real implementations (git, `baton shim`).
//!
//! Invariant: nothing outside this crate spawns a process (clippy `disallowed-methods`); no shell
//! ever sees untrusted text.

pub mod command;
pub mod git;
pub mod net;
pub mod paths;
pub mod ports;
pub mod process;
pub mod remote;
pub mod sandbox;
pub mod shim;

pub use command::{CommandOutput, CommandSpec, run_command};
pub use git::{Git, GitError};
pub use ports::{
    CommandRequest, CommandRun, CommandRunner, GitVcs, Provenance, ShimSupervisor, SupervisedCommands, Supervisor, Vcs,
    is_infrastructure,
};
pub use process::{ExitReport, ProcessSpec, RunLimits, Supervised, group_alive, stop_group};
pub use remote::Remote;
pub use sandbox::{SandboxMode, SandboxNetwork, SandboxPolicy};
pub use shim::{LaunchRecord, Previous};

/// Errors from running processes.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("io error on {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("empty command: give at least the program to run")]
    EmptyCommand,
}
