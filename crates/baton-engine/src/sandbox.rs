//! Baton's agent sandbox as the engine sees it: whether a run is confined ([`Sandbox::confinement`]:
//! the configured mode, and bubblewrap probed once per process), and what a confined run may touch
//! ([`agent_policy`]: its worktree, the worktree's git directory and its run directory read-write;
//! the data directory, other worktrees, run logs, the API token and the database hidden).
//! Only agent runs are confined; repository commands (tests, deploy) are not.

use crate::settings::{AgentSettings, EngineSettings, RepoSettings, SandboxMode, SandboxNetwork, SandboxSettings};
use baton_adapters::agent::AgentRequest;
use baton_runner::git;
use baton_runner::sandbox::{self, HOW_TO_ENABLE, SandboxPolicy};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// How one agent run is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// Wrapped in `bwrap` at this path.
    Sandboxed { bwrap: PathBuf, network: SandboxNetwork },
    /// Run as Baton's user with the whole file system visible.
    Unsandboxed,
    /// Not run at all: the sandbox is required and unavailable. The reason names the fix.
    Refused(String),
}

/// The sandbox settings and what this machine offers, probed at most once per network kind.
#[derive(Debug)]
pub struct Sandbox {
    settings: SandboxSettings,
    bwrap: Option<PathBuf>,
    /// Probe results for the open network and for none, each at most once.
    probes: [OnceLock<Result<PathBuf, String>>; 2],
    warned_unavailable: AtomicBool,
    warned_off: AtomicBool,
}

/// The warning for agents run without a sandbox, naming the risk.
pub const UNSANDBOXED_RISK: &str = "agents run WITHOUT a sandbox: an agent can read Baton's API token and database, \
     every task's worktree and run logs, and the environment of Baton's processes";

impl Sandbox {
    /// `settings`, with bwrap looked up on `PATH` (then /usr/bin/bwrap).
    pub fn new(settings: SandboxSettings) -> Self {
        let bwrap = sandbox::find_bwrap(std::env::var("PATH").ok().as_deref());
        Sandbox::with_bwrap(settings, bwrap)
    }

    /// `settings` with an explicit bwrap (`None`: not installed).
    pub fn with_bwrap(settings: SandboxSettings, bwrap: Option<PathBuf>) -> Self {
        Sandbox {
            settings,
            bwrap,
            probes: [OnceLock::new(), OnceLock::new()],
            warned_unavailable: AtomicBool::new(false),
            warned_off: AtomicBool::new(false),
        }
    }

    pub fn settings(&self) -> &SandboxSettings {
        &self.settings
    }

    /// Whether bwrap works here for `network`: probed on first use, then remembered.
    pub fn available(&self, network: SandboxNetwork) -> Result<PathBuf, String> {
        let slot = match network {
            SandboxNetwork::Open => &self.probes[0],
            SandboxNetwork::None => &self.probes[1],
        };
        slot.get_or_init(|| {
            let bwrap = self.bwrap.clone().ok_or_else(|| "bubblewrap (`bwrap`) is not installed".to_string())?;
            sandbox::probe(&bwrap, network).map(|_| bwrap)
        })
        .clone()
    }

    /// The mode and network of the agent `agent` (its own keys over `[sandbox]`).
    pub fn mode_for(&self, agent: Option<&AgentSettings>) -> (SandboxMode, SandboxNetwork) {
        let mode = agent.and_then(|a| a.sandbox_mode).unwrap_or(self.settings.mode);
        let network = agent.and_then(|a| a.sandbox_network).unwrap_or(self.settings.network);
        (mode, network)
    }

    /// How a run of `agent` is confined. Logs one warning per process when agents run
    /// unsandboxed (mode `off`, or `auto` without a working bubblewrap).
    pub fn confinement(&self, agent: Option<&AgentSettings>) -> Confinement {
        let (mode, network) = self.mode_for(agent);
        if mode == SandboxMode::Off {
            if !self.warned_off.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "sandbox mode is \"off\": {UNSANDBOXED_RISK}; set [sandbox] mode = \"auto\" to confine them"
                );
            }
            return Confinement::Unsandboxed;
        }
        match self.available(network) {
            Ok(bwrap) => Confinement::Sandboxed { bwrap, network },
            Err(why) if mode == SandboxMode::Required => Confinement::Refused(format!(
                "the agent sandbox is required (sandbox mode = \"required\") but unavailable: {why}. To fix: {HOW_TO_ENABLE}"
            )),
            Err(why) => {
                if !self.warned_unavailable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the agent sandbox is unavailable ({why}), so {UNSANDBOXED_RISK}. To fix: {HOW_TO_ENABLE}; \
                         or set [sandbox] mode = \"required\" to refuse to run agents unsandboxed"
                    );
                }
                Confinement::Unsandboxed
            }
        }
    }

    /// One line on the sandbox for the start of `baton serve`: probes at once, so a missing or
    /// broken bubblewrap is reported when Baton starts rather than at the first agent run.
    pub fn startup_report(&self, agents: &[&AgentSettings]) -> String {
        let defaults = self.confinement(None);
        for agent in agents {
            let _ = self.confinement(Some(agent));
        }
        match defaults {
            Confinement::Sandboxed { network, .. } => {
                let net = if network == SandboxNetwork::None { "no network" } else { "open network" };
                format!("agents run sandboxed (bubblewrap, {net})")
            }
            Confinement::Unsandboxed => "agents run unsandboxed (see the warning above)".to_string(),
            Confinement::Refused(why) => format!("agents will not run: {why}"),
        }
    }
}

/// The git directory shared by every worktree of the checkout at `repo` (its `.git`, or where a
/// worktree's `commondir` points).
fn common_git_dir(repo: &Path) -> Option<PathBuf> {
    // A bare repository (Baton's clone of a `url` repository) is its own git directory.
    if !repo.join(".git").exists() && repo.join("HEAD").is_file() && repo.join("objects").is_dir() {
        return Some(repo.to_path_buf());
    }
    git::git_dir(repo).map(|own| git::common_dir(&own))
}

fn absolute_program(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    path.is_absolute().then(|| path.to_path_buf())
}

/// Where a sandboxed agent's git writes its objects: the run's own directory (the repository's
/// object store is read-only inside the sandbox).
pub fn private_objects_dir(run_dir: &Path) -> PathBuf {
    baton_adapters::agent::agent_dir_of(run_dir).join("git-objects")
}

/// The private object directory of one of this job's agent runs (`<job run dir>/run<N>/`) that
/// holds objects, if any: Baton's commit after the run must not trust an index naming them.
pub fn written_private_objects(job_run_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(job_run_dir)
        .ok()?
        .flatten()
        .map(|run| private_objects_dir(&run.path()))
        .find(|objects| std::fs::read_dir(objects).is_ok_and(|mut entries| entries.next().is_some()))
}

/// What a confined run of `agent` (in `request.worktree`) may see and touch:
/// - hidden: `/tmp` and the data directory (the database, the API token, other tasks' worktrees and
///   every run log but this run's);
/// - read-write: the worktree, its git directory (index, HEAD), and the agent's part of this
///   run's directory (`agent/`: prompt, generated config homes, a private git object directory).
///   The rest of the run directory — the run's logs, the shim's launch, intent and exit records —
///   stays hidden with the data directory: an agent cannot forge the output its cost and verdict
///   are read from, nor the record of how it ended;
/// - read-only where hidden: the repository's common git directory, the `baton` binary, the
///   agent's script or absolute program, and `[sandbox] read_only`; `[sandbox] writable` read-write;
/// - environment: git objects written to the run directory with the repository's as alternates
///   (the common git directory stays read-only; Baton commits the agent's work itself after the
///   run). `HOME` stays as the adapter set it: the CLIs' config homes are in the run directory,
///   and the user's real home is readable but not writable (toolchains under it keep working).
///
/// Creates the run's `git-objects` directory.
pub fn agent_policy(
    settings: &EngineSettings,
    sandbox: &SandboxSettings,
    agent: Option<&AgentSettings>,
    network: SandboxNetwork,
    repo: &RepoSettings,
    request: &AgentRequest,
) -> SandboxPolicy {
    let (worktree, run_dir) = (request.worktree.as_path(), request.run_dir.as_path());
    let mut read_only: Vec<PathBuf> = vec![settings.baton_exe.clone()];
    let mut writable: Vec<PathBuf> = vec![worktree.to_path_buf(), request.agent_dir()];
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(common) = common_git_dir(&repo.path) {
        env.push(("GIT_ALTERNATE_OBJECT_DIRECTORIES".into(), common.join("objects").display().to_string()));
        let objects = private_objects_dir(run_dir);
        if std::fs::create_dir_all(&objects).is_ok() {
            env.push(("GIT_OBJECT_DIRECTORY".into(), objects.display().to_string()));
        }
        read_only.push(common);
    }
    if let Some(own) = git::git_dir(worktree) {
        writable.push(own);
    }
    if let Some(agent) = agent {
        read_only.extend(agent.script.iter().cloned());
        read_only.extend(agent.command.iter().flat_map(|argv| argv.first()).filter_map(|p| absolute_program(p)));
        read_only.extend(agent.program.iter().filter_map(|p| absolute_program(p)));
    }
    read_only.extend(sandbox.read_only.iter().cloned());
    writable.extend(sandbox.writable.iter().cloned());
    SandboxPolicy {
        hidden: vec![settings.data_dir.clone()],
        read_only,
        writable,
        masked_files: sandbox.masked_files.clone(),
        network,
        env,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(mode: Option<SandboxMode>) -> AgentSettings {
        let mut agent: AgentSettings =
            serde_json::from_value(serde_json::json!({"adapter": "command", "command": ["/opt/agent/run"]})).unwrap();
        agent.sandbox_mode = mode;
        agent
    }

    // Without bubblewrap: `auto` runs unsandboxed, `required` refuses with the fix, `off` never
    // looks; an agent's own mode wins over `[sandbox]`.
    #[test]
    fn modes_decide_without_bubblewrap() {
        let sandbox = Sandbox::with_bwrap(SandboxSettings::default(), None);
        assert_eq!(sandbox.confinement(None), Confinement::Unsandboxed);
        let Confinement::Refused(why) = sandbox.confinement(Some(&agent(Some(SandboxMode::Required)))) else {
            panic!("required must refuse");
        };
        assert!(why.contains("not installed") && why.contains("apt-get install bubblewrap"), "{why}");
        assert_eq!(sandbox.confinement(Some(&agent(Some(SandboxMode::Off)))), Confinement::Unsandboxed);
        let required = SandboxSettings { mode: SandboxMode::Required, ..SandboxSettings::default() };
        let sandbox = Sandbox::with_bwrap(required, None);
        assert!(matches!(sandbox.confinement(None), Confinement::Refused(_)));
        assert_eq!(sandbox.confinement(Some(&agent(Some(SandboxMode::Auto)))), Confinement::Unsandboxed);
    }
}
