//! The agent sandbox: an agent's process wrapped in a `bwrap` (bubblewrap) invocation that sees
//! the system read-only, an empty `/tmp`, an empty data directory, its own `/proc` (no Baton
//! processes) and, bound back read-write, only what the run needs (the worktree, its git
//! directory, the agent's part of its run directory with the generated config homes).
//!
//! The wrapper runs INSIDE `baton shim` (shim → bwrap → agent): bwrap is started without
//! `--new-session` and without `--die-with-parent`, so the shim stays the leader of the process
//! group and a SIGTERM/SIGKILL to the group reaches bwrap, its pid-1 helper and the agent alike.
//! All capabilities are dropped (`--cap-drop ALL`): a Baton running as root must not hand the
//! agent the power to unmount the tmpfs that hides the data directory.

// Probing bwrap spawns it: the runner is the one crate allowed to spawn processes.
#![allow(clippy::disallowed_methods)]

use crate::ProcessSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Whether agents run sandboxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Sandboxed when bubblewrap works here; otherwise unsandboxed, with a warning.
    #[default]
    Auto,
    /// Sandboxed, or the agent does not run.
    Required,
    /// Never sandboxed: the agent can read Baton's API token and database.
    Off,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Auto => "auto",
            SandboxMode::Required => "required",
            SandboxMode::Off => "off",
        }
    }
}

/// The network a sandboxed agent gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxNetwork {
    /// The host's network (real CLIs need the model API).
    #[default]
    Open,
    /// A network namespace of its own: loopback only, nothing outside.
    None,
}

/// What one sandboxed process may see and touch. Every path must be absolute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Directories replaced by an empty tmpfs (besides `/tmp`, always hidden): the data directory.
    pub hidden: Vec<PathBuf>,
    /// Paths bound back read-only where a hidden directory covers them (the repository's git
    /// directory, the `baton` binary, a script file). Missing ones are skipped.
    pub read_only: Vec<PathBuf>,
    /// Paths bound read-write (the worktree, its git directory, the agent's part of the run
    /// directory). Missing ones are skipped.
    pub writable: Vec<PathBuf>,
    /// Files that cannot be read inside (the host's `/dev/null` bound over them, which the
    /// sandbox's `nodev` mounts refuse to open): Baton's configuration file, which may hold a
    /// token. Missing ones are skipped.
    pub masked_files: Vec<PathBuf>,
    pub network: SandboxNetwork,
    /// Variables set (or replaced) in the sandboxed process's environment.
    pub env: Vec<(String, String)>,
}

/// Where bwrap is looked for when `PATH` does not name it.
pub const BWRAP_FALLBACK: &str = "/usr/bin/bwrap";

/// The arguments common to every sandbox (and to the probe): a read-only system, fresh `/dev`,
/// `/proc` of a private pid namespace, private IPC, no capabilities, an empty `/tmp`.
fn base_args(network: SandboxNetwork) -> Vec<String> {
    let mut args: Vec<String> = [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--unshare-pid",
        "--proc",
        "/proc",
        "--unshare-ipc",
        "--cap-drop",
        "ALL",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    if network == SandboxNetwork::None {
        args.push("--unshare-net".into());
    }
    args
}

/// One mount of the sandbox, applied shallowest path first so deeper ones land on top.
enum Mount<'a> {
    Tmpfs(&'a Path),
    ReadOnly(&'a Path),
    Writable(&'a Path),
}

impl Mount<'_> {
    fn path(&self) -> &Path {
        match self {
            Mount::Tmpfs(p) | Mount::ReadOnly(p) | Mount::Writable(p) => p,
        }
    }
}

/// The bwrap arguments (without the program) that run `spec` under `policy`.
pub fn bwrap_args(spec: &ProcessSpec, policy: &SandboxPolicy) -> Vec<String> {
    let mut args = base_args(policy.network);
    let tmp = Path::new("/tmp");
    let mut mounts: Vec<Mount<'_>> = vec![Mount::Tmpfs(tmp)];
    mounts.extend(policy.hidden.iter().map(|p| Mount::Tmpfs(p)));
    // A read-only path no other mount covers is already what `--ro-bind / /` shows: binding it
    // again would only cost bwrap another pass over the mount table.
    let covers: Vec<Cover<'_>> = std::iter::once(tmp)
        .chain(policy.hidden.iter().map(PathBuf::as_path))
        .chain(policy.writable.iter().map(PathBuf::as_path))
        .map(Cover::new)
        .collect();
    mounts.extend(policy.read_only.iter().filter(|p| covered(p, &covers)).map(|p| Mount::ReadOnly(p)));
    mounts.extend(policy.writable.iter().map(|p| Mount::Writable(p)));
    // A mount hides what an earlier one put below its path: parents first, children on top, and at
    // equal depth tmpfs, then read-only, then writable (the order they were listed in).
    mounts.sort_by_key(|m| m.path().components().count());
    for mount in mounts {
        let path = mount.path().to_string_lossy().to_string();
        match mount {
            Mount::Tmpfs(_) => args.extend(["--tmpfs".to_string(), path]),
            Mount::ReadOnly(_) => args.extend(["--ro-bind-try".to_string(), path.clone(), path]),
            Mount::Writable(_) => args.extend(["--bind-try".to_string(), path.clone(), path]),
        }
    }
    for file in policy.masked_files.iter().filter(|f| f.is_file()) {
        args.extend(["--ro-bind".to_string(), "/dev/null".to_string(), file.to_string_lossy().to_string()]);
    }
    args.extend(["--chdir".to_string(), spec.cwd.to_string_lossy().to_string(), "--".to_string()]);
    args
}

/// A tmpfs or writable mount of the sandbox, as written and with its symbolic links resolved.
struct Cover<'a> {
    path: &'a Path,
    real: Option<PathBuf>,
}

impl<'a> Cover<'a> {
    fn new(path: &'a Path) -> Self {
        Cover { path, real: std::fs::canonicalize(path).ok() }
    }

    fn holds(&self, path: &Path) -> bool {
        path.starts_with(self.path) || self.real.as_deref().is_some_and(|real| path.starts_with(real))
    }
}

/// Whether `path` lies in or under one of `covers` (the sandbox's tmpfs and writable mounts), as
/// written or once its symbolic links are resolved (bwrap binds what a link points to). A path
/// that does not exist is covered by nothing: `--ro-bind-try` would skip it anyway.
fn covered(path: &Path, covers: &[Cover<'_>]) -> bool {
    let real = std::fs::canonicalize(path).ok();
    covers.iter().any(|cover| [Some(path), real.as_deref()].into_iter().flatten().any(|p| cover.holds(p)))
}

/// `spec` run inside the sandbox by `bwrap`: same output files, stdin and working directory;
/// the policy's variables added to its environment.
pub fn wrap(spec: ProcessSpec, bwrap: &Path, policy: &SandboxPolicy) -> ProcessSpec {
    let mut args = bwrap_args(&spec, policy);
    args.push(spec.program.clone());
    args.extend(spec.args.iter().cloned());
    let mut env: Vec<(String, String)> =
        spec.env.into_iter().filter(|(k, _)| !policy.env.iter().any(|(name, _)| name == k)).collect();
    env.extend(policy.env.iter().cloned());
    ProcessSpec {
        program: bwrap.to_string_lossy().to_string(),
        args,
        cwd: spec.cwd,
        env,
        stdin: spec.stdin,
        stdout: spec.stdout,
        stderr: spec.stderr,
    }
}

/// The bwrap binary: the first `bwrap` on `path` (a `PATH` value), else [`BWRAP_FALLBACK`] when
/// it exists.
pub fn find_bwrap(path: Option<&str>) -> Option<PathBuf> {
    let on_path = path
        .into_iter()
        .flat_map(|p| p.split(':'))
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join("bwrap"))
        .find(|candidate| candidate.is_file());
    on_path.or_else(|| Some(PathBuf::from(BWRAP_FALLBACK)).filter(|p| p.is_file()))
}

/// How to make the sandbox available, for warnings and refusals.
pub const HOW_TO_ENABLE: &str = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`) and allow \
     unprivileged user namespaces (`sysctl kernel.unprivileged_userns_clone=1`, or on Ubuntu 24.04+ \
     `sysctl kernel.apparmor_restrict_unprivileged_userns=0`)";

/// Whether bwrap works here: runs `true` inside a sandbox with the same namespaces and mounts an
/// agent gets. `Err` says why not, in one line.
pub fn probe(bwrap: &Path, network: SandboxNetwork) -> Result<(), String> {
    let mut args = base_args(network);
    args.extend(["--tmpfs".into(), "/tmp".into(), "--".into(), "true".into()]);
    let output = std::process::Command::new(bwrap)
        .args(&args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
    Err(format!("`{} --ro-bind / / … true` failed ({}): {reason}", bwrap.display(), output.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ProcessSpec {
        ProcessSpec {
            program: "agent".into(),
            args: vec!["--flag".into()],
            cwd: PathBuf::from("/data/worktrees/demo/DEMO-001"),
            env: vec![("HOME".into(), "/root".into()), ("PATH".into(), "/usr/bin".into())],
            stdin: None,
            stdout: PathBuf::from("/data/runs/x/stdout.log"),
            stderr: PathBuf::from("/data/runs/x/stderr.log"),
        }
    }

    // Mounts come parents first, whatever order the policy lists them in; the program follows `--`.
    #[test]
    fn mounts_are_ordered_by_depth_and_the_program_follows() {
        let policy = SandboxPolicy {
            hidden: vec![PathBuf::from("/data")],
            read_only: vec![PathBuf::from("/data/repo/.git")],
            writable: vec![
                PathBuf::from("/data/worktrees/demo/DEMO-001"),
                PathBuf::from("/data/repo/.git/worktrees/x"),
            ],
            masked_files: vec![],
            network: SandboxNetwork::None,
            env: vec![("HOME".into(), "/data/runs/x/home".into())],
        };
        let wrapped = wrap(spec(), Path::new("/usr/bin/bwrap"), &policy);
        assert_eq!(wrapped.program, "/usr/bin/bwrap");
        let args = wrapped.args.join(" ");
        let at = |needle: &str| args.find(needle).unwrap_or_else(|| panic!("{needle} missing in {args}"));
        assert!(at("--tmpfs /tmp") < at("--tmpfs /data"));
        assert!(at("--tmpfs /data") < at("--bind-try /data/worktrees"));
        assert!(at("--ro-bind-try /data/repo/.git /data/repo/.git") < at("--bind-try /data/repo/.git/worktrees/x"));
        assert!(args.contains("--unshare-net"));
        assert!(args.contains("--unshare-pid"));
        assert!(!args.contains("--new-session") && !args.contains("--die-with-parent"));
        assert!(args.ends_with("--chdir /data/worktrees/demo/DEMO-001 -- agent --flag"));
        assert_eq!(wrapped.env.iter().filter(|(k, _)| k == "HOME").count(), 1);
        assert!(wrapped.env.contains(&("HOME".into(), "/data/runs/x/home".into())));
        assert_eq!(wrapped.stdout, spec().stdout);
    }

    // Read-only binds are made only where a tmpfs or a writable bind would otherwise decide what
    // the agent sees there: under them (as written or through a symbolic link), never elsewhere.
    #[test]
    fn read_only_paths_are_bound_only_where_another_mount_covers_them() {
        let dir = tempfile::tempdir().unwrap();
        let (hidden, writable, outside) = (dir.path().join("data"), dir.path().join("work"), dir.path().join("opt"));
        for d in [&hidden, &writable, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(hidden.join("baton"), "").unwrap();
        std::fs::write(writable.join("protected"), "").unwrap();
        std::fs::write(outside.join("tool"), "").unwrap();
        std::os::unix::fs::symlink(hidden.join("baton"), outside.join("link")).unwrap();
        let covers = [Cover::new(&hidden), Cover::new(&writable)];
        assert!(covered(&hidden.join("baton"), &covers));
        assert!(covered(&writable.join("protected"), &covers));
        assert!(covered(&outside.join("link"), &covers), "a link into a hidden directory is bound");
        assert!(!covered(&outside.join("tool"), &covers));
        assert!(!covered(&outside.join("missing"), &covers));
        // The whole argument list: /usr/bin is shown by `--ro-bind / /` already.
        let policy = SandboxPolicy {
            hidden: vec![hidden.clone()],
            read_only: vec![PathBuf::from("/usr/bin"), hidden.join("baton")],
            ..SandboxPolicy::default()
        };
        let args = bwrap_args(&spec(), &policy).join(" ");
        assert!(!args.contains("/usr/bin /usr/bin"), "{args}");
        let baton = hidden.join("baton").display().to_string();
        assert!(args.contains(&format!("--ro-bind-try {baton} {baton}")), "{args}");
    }

    #[test]
    fn open_network_shares_the_host_network() {
        let args = bwrap_args(&spec(), &SandboxPolicy::default()).join(" ");
        assert!(!args.contains("--unshare-net"));
    }
}
