//! `git` through argument vectors only: never a shell, never untrusted text in a command string.

// The runner is the one crate allowed to spawn processes.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    /// git ran and failed; `stderr` says why.
    #[error("git {args} failed in {dir}: {stderr}")]
    Failed { args: String, dir: String, stderr: String },
}

/// A git repository or worktree directory.
#[derive(Clone)]
pub struct Git {
    dir: PathBuf,
    /// Milliseconds spent inside git, summed, for overhead accounting.
    spent_ms: Option<Arc<AtomicU64>>,
    /// Extra environment of every call (a remote's credentials as `GIT_CONFIG_*`: never on the
    /// command line, never on disk).
    env: Vec<(String, String)>,
}

/// Settings applied to every invocation: no prompts, no background gc, no signing, a fixed identity.
const FIXED_CONFIG: &[&str] = &[
    "-c",
    "gc.auto=0",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "user.name=Baton",
    "-c",
    "user.email=baton@localhost",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "advice.mergeConflict=false",
];

impl std::fmt::Debug for Git {
    // The environment may hold a credential: only its names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Git").field("dir", &self.dir).field("env", &names).finish()
    }
}

impl Git {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Git { dir: dir.into(), spent_ms: None, env: Vec::new() }
    }

    /// Adds `env` to the environment of every call.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// Adds the time of every git call to `counter`.
    pub fn with_timer(mut self, counter: Arc<AtomicU64>) -> Self {
        self.spent_ms = Some(counter);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs git with `args`; returns trimmed stdout, or the failure with stderr.
    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let started = Instant::now();
        let output = tokio::process::Command::new("git")
            .args(FIXED_CONFIG)
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(GitError::Spawn)?;
        if let Some(counter) = &self.spent_ms {
            counter.fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if stderr.is_empty() {
                stderr = String::from_utf8_lossy(&output.stdout).trim().to_string();
            }
            Err(GitError::Failed { args: args.join(" "), dir: self.dir.display().to_string(), stderr })
        }
    }

    /// The commit id `rev` resolves to, or `None` when it does not exist.
    pub async fn rev(&self, rev: &str) -> Option<String> {
        self.run(&["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).await.ok()
    }

    /// Stages everything and commits with `message`; `Ok(false)` when there was nothing to commit.
    pub async fn commit_all(&self, message: &str) -> Result<bool, GitError> {
        // The index goes back to HEAD first: a sandboxed agent's `git add` wrote its blobs to the
        // run's private object directory, so an index naming them would not commit here.
        let _ = self.run(&["reset", "-q"]).await;
        self.run(&["add", "-A"]).await?;
        let status = self.run(&["status", "--porcelain"]).await?;
        if status.is_empty() {
            return Ok(false);
        }
        self.run(&["commit", "-q", "-m", message]).await?;
        Ok(true)
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `descendant`.
    pub async fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        self.run(&["merge-base", "--is-ancestor", ancestor, descendant]).await.is_ok()
    }
}

/// The git directory of a checkout: `.git` itself, or where a `.git` file (`gitdir: …`) points.
pub fn git_dir(repo: &Path) -> Option<PathBuf> {
    let dot_git = repo.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    Some(repo.join(target))
}

/// Whether the branch exists as a loose ref or in packed-refs (in the common dir of a worktree).
pub fn has_branch(git_dir: &Path, branch: &str) -> bool {
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim()),
        Err(_) => git_dir.to_path_buf(),
    };
    // The reftable format cannot be read without git; trust the configuration then.
    if common.join("reftable").is_dir() {
        return true;
    }
    if common.join("refs").join("heads").join(branch).is_file() {
        return true;
    }
    let wanted = format!("refs/heads/{branch}");
    std::fs::read_to_string(common.join("packed-refs")).is_ok_and(|packed| {
        packed.lines().any(|line| line.split_once(' ').is_some_and(|(_, name)| name.trim() == wanted))
    })
}
