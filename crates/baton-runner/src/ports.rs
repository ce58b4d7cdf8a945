//! The ports through which the engine reaches git and processes — [`Vcs`], [`Supervisor`] and
//! [`CommandRunner`] — with their real implementations ([`GitVcs`], [`ShimSupervisor`],
//! [`SupervisedCommands`]). The engine holds only the traits, so the simulation can drive the same engine
//! code over in-memory implementations.
//!
//! Every process started through these ports runs under `baton shim` with a run directory that
//! records the intent to spawn, the launch (pid, group, start time) and the exit, so a restarted
//! Baton adopts a surviving process or takes its recorded exit instead of starting it twice.

use crate::RunError;
use crate::command::{CommandOutput, OUTPUT_TAIL_BYTES_MAX};
use crate::git::{Git, GitError};
use crate::process::{ExitReport, ProcessSpec, RunLimits, Supervised};
use crate::remote::Remote;
use crate::shim::{self, EXIT_FILE, INTENT_FILE, LaunchRecord, Previous};
use async_trait::async_trait;
use baton_domain::redact::Redactor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// Whether an error text says the machine failed rather than the code: a full disk, an I/O error,
/// a read-only file system, no memory, too many open files, a git lock file left behind, a busy
/// database, or a command killed from outside (SIGKILL: the OOM killer, an operator, a dead shim).
/// Such a failure is retried with backoff; it never spends a stage's attempts or reaches an agent
/// prompt.
pub fn is_infrastructure(text: &str) -> bool {
    const SIGNS: &[&str] = &[
        "No space left on device",
        "Disk quota exceeded",
        "Input/output error",
        "Read-only file system",
        "Cannot allocate memory",
        "Too many open files",
        "ENOSPC",
        "EIO",
        "database is locked",
        "database is busy",
        "killed by signal 9",
        // Git's worktree bookkeeping raced another process's `worktree add/remove/prune`.
        "failed to read .git/worktrees/",
        // Two fetches into one clone at once raced for a remote-tracking ref.
        "cannot lock ref",
        // A remote repository that cannot be reached right now.
        "Could not resolve host",
        "Could not resolve hostname",
        "Connection refused",
        "Connection reset",
        "Connection timed out",
        "Operation timed out",
        "unable to access",
        "Failed to connect",
        "Could not read from remote repository",
        "The remote end hung up unexpectedly",
        "Network is unreachable",
        "No route to host",
        "RPC failed",
        "The requested URL returned error: 5",
    ];
    let lock_file = text.contains(".lock") && (text.contains("File exists") || text.contains("Unable to create"));
    lock_file || SIGNS.iter().any(|sign| text.contains(sign))
}

/// The ref recording what the merge gate last squashed `branch` onto (its next rebase replays
/// only the commits after it).
fn built_on_ref(branch: &str) -> String {
    format!("refs/baton/built-on/{branch}")
}

/// Records that `branch` was last built on `base`: written in place as git would, else by git.
async fn set_built_on(git: &Git, branch: &str, base: &str) -> Result<(), GitError> {
    let name = built_on_ref(branch);
    if !crate::git::write_own_ref(git.dir(), &name, base) {
        git.run(&["update-ref", &name, base]).await?;
    }
    Ok(())
}

fn no_head(worktree: &Path) -> GitError {
    GitError::Failed { args: "rev-parse HEAD".into(), dir: worktree.display().to_string(), stderr: "no HEAD".into() }
}

/// A `git merge-tree --write-tree --name-only` that stopped on conflicts, as one line: the
/// conflicted files and git's messages about them (its output's first line, the tree, left out).
fn merge_conflicts(output: &str) -> String {
    let mut sections = output.splitn(2, "\n\n");
    let files: Vec<&str> = sections.next().unwrap_or("").lines().skip(1).filter(|l| !l.is_empty()).collect();
    let messages: Vec<&str> = sections.next().unwrap_or("").lines().filter(|l| l.starts_with("CONFLICT")).collect();
    let mut text = format!("conflicts in {}", if files.is_empty() { "the tree".to_string() } else { files.join(", ") });
    if !messages.is_empty() {
        text.push_str(&format!(" ({})", messages.join("; ")));
    }
    text
}

/// Git operations on repositories and task worktrees.
#[async_trait]
pub trait Vcs: Send + Sync {
    /// Whether `path` exists (a repository that vanished has nothing to clean up).
    fn exists(&self, path: &Path) -> bool;
    /// Makes sure `worktree` is a worktree of `repo` on `branch`, creating the branch from
    /// `default_branch` when it does not exist.
    async fn ensure_worktree(
        &self,
        repo: &Path,
        worktree: &Path,
        branch: &str,
        default_branch: &str,
    ) -> Result<(), GitError>;
    /// Discards uncommitted leftovers (and an interrupted rebase) before a stage runs afresh.
    async fn clean(&self, worktree: &Path) -> Result<(), GitError>;
    /// Stages everything and commits; `false` when there was nothing to commit. `private_objects`:
    /// the object directory a sandboxed agent wrote to (its `git add`s); when it holds objects,
    /// the index may name them and is rebuilt from HEAD first.
    async fn commit_all(
        &self,
        worktree: &Path,
        message: &str,
        private_objects: Option<&Path>,
    ) -> Result<bool, GitError>;
    /// The commit `rev` resolves to in `dir`, or `None`.
    async fn rev(&self, dir: &Path, rev: &str) -> Option<String>;
    /// Rebases the worktree's branch onto `onto`; on failure the rebase is aborted.
    async fn rebase(&self, worktree: &Path, onto: &str) -> Result<(), GitError>;
    /// Squashes everything since `base` into one commit with `message`.
    async fn squash(&self, worktree: &Path, base: &str, message: &str) -> Result<(), GitError>;
    /// The merge gate's build: the worktree branch's own changes (since the base it was last
    /// built on, or since it forked) as one commit with `message` on `onto`; the branch, index and
    /// files move to it. `Ok(None)`: the branch changes nothing relative to `onto` (nothing
    /// moved). On a conflict nothing moves and the error names the files. By default a rebase
    /// and a squash.
    async fn rebuild(&self, worktree: &Path, onto: &str, message: &str) -> Result<Option<String>, GitError> {
        self.rebase(worktree, onto).await?;
        let head = self.rev(worktree, "HEAD").await.ok_or_else(|| no_head(worktree))?;
        if head == onto {
            return Ok(None);
        }
        self.squash(worktree, onto, message).await?;
        self.rev(worktree, "HEAD").await.map(Some).ok_or_else(|| no_head(worktree))
    }
    /// A new commit with the worktree HEAD's tree on `parent` (a merge-queue batch's one commit),
    /// moving no branch; returns its id.
    async fn commit_tree(&self, worktree: &Path, parent: &str, message: &str) -> Result<String, GitError>;
    /// Commits on the worktree's HEAD the inverse of the changes `base..head` (the revert of a
    /// degraded deploy); on a conflict the revert is aborted, nothing is left behind, and the
    /// error says which files. Unsupported by default.
    async fn revert(&self, worktree: &Path, base: &str, head: &str, message: &str) -> Result<(), GitError> {
        let _ = (base, head, message);
        Err(GitError::Failed {
            args: "revert".into(),
            dir: worktree.display().to_string(),
            stderr: "this repository backend cannot revert".into(),
        })
    }
    /// Whether commits `a` and `b` have the same tree, in the repository at `dir`.
    async fn same_tree(&self, dir: &Path, a: &str, b: &str) -> bool;
    /// Moves the worktree's branch, index and files to `commit` (an existing commit of the
    /// repository: a merge-queue batch's commit).
    async fn reset_to(&self, worktree: &Path, commit: &str) -> Result<(), GitError>;
    /// Whether `ancestor` is `descendant` or one of its ancestors, in the repository at `dir`;
    /// `false` when either is unknown.
    async fn is_ancestor(&self, dir: &Path, ancestor: &str, descendant: &str) -> bool;
    /// Removes a worktree (forced) and prunes its registration; a missing one is fine.
    async fn remove_worktree(&self, repo: &Path, worktree: &Path) -> Result<(), GitError>;
    /// Forgets what the merge gate last built the task `branch` on (a task that ended needs it no
    /// more); a missing record is fine. Nothing by default (a backend without it).
    async fn forget_built_on(&self, repo: &Path, branch: &str) -> Result<(), GitError> {
        let _ = (repo, branch);
        Ok(())
    }
    /// The highest work-item number of `prefix` a task branch in the repository at `repo` carries
    /// (`baton/<PREFIX>-<N>-…`, local or fetched from a remote); `None` when there is none. None
    /// by default (a backend without branches).
    async fn highest_task_branch_number(&self, repo: &Path, prefix: &str) -> Result<Option<u64>, GitError> {
        let _ = (repo, prefix);
        Ok(None)
    }
    /// A text file of the worktree (an artifact), or `None`.
    async fn read_file(&self, worktree: &Path, relative: &str) -> Option<String>;
    /// File names in a directory of the worktree, sorted; empty when it does not exist.
    async fn list_dir(&self, worktree: &Path, relative: &str) -> Vec<String>;
    /// Names of the entries of a directory outside any worktree (the worktree root), sorted.
    fn entries(&self, dir: &Path) -> Vec<String>;
    /// A repository that is Baton's clone of `remote`: creates the clone on first use and fetches
    /// (`--prune`). Nothing to do for a local repository (the default).
    async fn sync_remote(&self, repo: &Path, remote: &Remote, default_branch: &str) -> Result<(), GitError> {
        let _ = (repo, remote, default_branch);
        Ok(())
    }
    /// Takes up the task `branch` as another instance pushed it to `remote` (after
    /// [`Vcs::sync_remote`]): moves the clone's branch (and `worktree`, when it has it checked
    /// out) to the remote's. Nothing for a local repository.
    async fn take_branch(&self, repo: &Path, remote: &Remote, worktree: &Path, branch: &str) -> Result<bool, GitError> {
        let _ = (repo, remote, worktree, branch);
        Ok(false)
    }
    /// Pushes the task `branch` of Baton's clone to `remote` with a lease (never the default
    /// branch, never forced); `Ok(false)` when there was nothing new.
    async fn push_branch(
        &self,
        repo: &Path,
        remote: &Remote,
        branch: &str,
        default_branch: &str,
    ) -> Result<bool, GitError> {
        let _ = (repo, remote, branch, default_branch);
        Ok(false)
    }
    /// What the worktree's branch changes relative to `base` (from their merge base), as git's
    /// one-line summary (`3 files changed, 20 insertions(+), 2 deletions(-)`); `None` when
    /// unknown or unchanged. Shown on the dashboard's task page.
    async fn diff_stat(&self, worktree: &Path, base: &str) -> Option<String> {
        let _ = (worktree, base);
        None
    }
    /// The commits in `base..head` of the repository at `dir`, newest first, as
    /// `<short id> <subject>` lines (at most `max`); empty when unknown. Read by the hand-off.
    async fn commits_between(&self, dir: &Path, base: &str, head: &str, max: usize) -> Vec<String> {
        let _ = (dir, base, head, max);
        Vec::new()
    }
    /// Git's per-file diff stat of `base..head` in the repository at `dir` (the hand-off's "what
    /// changed"); `None` when unknown or empty.
    async fn diff_stat_between(&self, dir: &Path, base: &str, head: &str) -> Option<String> {
        let _ = (dir, base, head);
        None
    }
    /// The names of the files directly in directory `relative` of commit `rev`, sorted; empty
    /// when there is none.
    async fn files_at(&self, dir: &Path, rev: &str, relative: &str) -> Vec<String> {
        let _ = (dir, rev, relative);
        Vec::new()
    }
    /// A text file of commit `rev` (an artifact of a task whose worktree is gone), or `None`.
    async fn read_at(&self, dir: &Path, rev: &str, relative: &str) -> Option<String> {
        let _ = (dir, rev, relative);
        None
    }
    /// [`Vcs::read_at`] for several files of one commit, in the order asked.
    async fn read_all_at(&self, dir: &Path, rev: &str, relatives: &[String]) -> Vec<Option<String>> {
        let mut texts = Vec::with_capacity(relatives.len());
        for relative in relatives {
            texts.push(self.read_at(dir, rev, relative).await);
        }
        texts
    }
    /// The files of directory `relative` of commit `rev` whose names end with `suffix`, sorted,
    /// at most `max`, each with its text: [`Vcs::files_at`] and [`Vcs::read_all_at`] in one.
    async fn texts_at(
        &self,
        dir: &Path,
        rev: &str,
        relative: &str,
        suffix: &str,
        max: usize,
    ) -> Vec<(String, Option<String>)> {
        let names: Vec<String> =
            self.files_at(dir, rev, relative).await.into_iter().filter(|n| n.ends_with(suffix)).take(max).collect();
        let paths: Vec<String> = names.iter().map(|name| format!("{relative}/{name}")).collect();
        let texts = self.read_all_at(dir, rev, &paths).await;
        names.into_iter().zip(texts).collect()
    }
}

/// Processes started under `baton shim`, each with its own run directory.
#[async_trait]
pub trait Supervisor: Send + Sync {
    /// Records the intent (with `owner`, e.g. `job:12`), then starts `spec` under the shim with its
    /// records in `run_dir`.
    async fn launch(&self, spec: ProcessSpec, run_dir: &Path, owner: &str) -> Result<LaunchRecord, RunError>;
    /// The owner recorded with the intent of the launch in `run_dir`.
    fn owner(&self, run_dir: &Path) -> Option<String>;
    /// What a supervised process wrote to `path` (its stdout or stderr file) so far.
    fn read_output(&self, path: &Path) -> Vec<u8>;
    /// What an earlier launch into `run_dir` left behind.
    fn previous(&self, run_dir: &Path) -> Previous;
    /// Waits for a launched (or adopted) process group to end, enforcing `limits` and stopping it
    /// when `stop` turns true. `already_ran` counts toward the timeout of an adopted one.
    async fn wait(
        &self,
        launch: &LaunchRecord,
        run_dir: &Path,
        outputs: [&Path; 2],
        already_ran: Duration,
        limits: RunLimits,
        stop: watch::Receiver<bool>,
    ) -> ExitReport;
    /// Whether `pgid` is alive and still led by the process that started at `start_ticks`.
    fn is_same_group(&self, pgid: u32, start_ticks: Option<u64>) -> bool;
    /// SIGTERM to the group, `grace`, then SIGKILL.
    async fn stop_group(&self, pgid: u32, grace: Duration);
    /// Shims still running whose records lie under `runs_dir`: (pid, process group, run directory).
    fn shims_under(&self, runs_dir: &Path) -> Vec<(u32, u32, PathBuf)>;
    /// Moves the records of a finished or vanished launch in `run_dir` aside (kept for humans), so
    /// the directory can hold a new one. Refuses while its process group runs.
    fn archive(&self, run_dir: &Path) -> Result<(), RunError>;
}

/// A repository command (test, deploy, health, a gate) to run to completion.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub stop_grace: Duration,
    /// Its own directory: intent, launch and exit records, and `output.log`.
    pub run_dir: PathBuf,
    /// Recorded with the intent (e.g. `job:12`): who launched it.
    pub owner: String,
}

/// How a command run came to its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Started now.
    Started,
    /// Started earlier (by a Baton that died) and waited for until it ended.
    Adopted,
    /// Ended earlier; its recorded exit was taken without running anything.
    Recorded,
}

/// A finished command run.
#[derive(Debug, Clone)]
pub struct CommandRun {
    pub output: CommandOutput,
    pub provenance: Provenance,
}

/// Runs repository commands under the shim. A run directory holds at most one execution: when it
/// already holds a running one, that one is waited for; when it holds a finished one, its exit is
/// returned; a new execution needs [`CommandRunner::archive`] first.
#[async_trait]
pub trait CommandRunner: Send + Sync {
    async fn run(&self, request: &CommandRequest, stop: watch::Receiver<bool>) -> Result<CommandRun, RunError>;
    /// What an earlier execution in `run_dir` left behind.
    fn previous(&self, run_dir: &Path) -> Previous;
    /// Who launched the execution in `run_dir` (see [`CommandRequest::owner`]).
    fn owner(&self, run_dir: &Path) -> Option<String>;
    /// Moves a finished or vanished execution's records aside (kept for humans), so that the run
    /// directory can hold a new one. Refuses while its process group runs.
    fn archive(&self, run_dir: &Path) -> Result<(), RunError>;
    /// Makes `run_dir` ready for a fresh execution: a leftover still running is stopped (TERM,
    /// `grace`, KILL), and whatever it left is archived.
    async fn reset(&self, run_dir: &Path, grace: Duration) -> Result<(), RunError>;
}

#[cfg(test)]
mod tests {
    use super::{is_infrastructure, task_branch_number};

    // A task branch's number is read for its own prefix only, local or fetched, digits alone.
    #[test]
    fn task_branch_numbers_are_read_for_their_own_prefix() {
        for (name, number) in [
            ("refs/heads/baton/APP-001-add-feature", Some(1)),
            ("refs/heads/baton/APP-042", Some(42)),
            ("refs/heads/baton/APP-1234-x-2", Some(1234)),
            ("refs/remotes/origin/baton/APP-007-fix", Some(7)),
            ("refs/heads/baton/APPX-009-other-prefix", None),
            ("refs/heads/baton/AP-009-shorter-prefix", None),
            ("refs/heads/baton/APP-01a-not-a-number", None),
            ("refs/heads/baton/APP--1", None),
            ("refs/heads/APP-003-not-a-task-branch", None),
            ("refs/remotes/origin/APP-003-nor-this", None),
            ("refs/tags/baton/APP-005", None),
        ] {
            assert_eq!(task_branch_number(name, "APP"), number, "{name}");
        }
    }

    // The machine's failures are told apart from the code's by what the error says.
    #[test]
    fn infrastructure_failures_are_recognised() {
        for text in [
            "write docs/x.md: No space left on device (os error 28)",
            "fatal: Unable to create '/r/.git/index.lock': File exists.",
            "error returned from database: (code: 5) database is locked",
            "`sh test.sh` killed by signal 9; output tail:",
            "read: Input/output error",
            "fatal: unable to access 'http://127.0.0.1:1/r.git/': Failed to connect to 127.0.0.1 port 1: Connection refused",
            "ssh: Could not resolve hostname example.invalid: Name or service not known",
            "fatal: Could not read from remote repository.",
        ] {
            assert!(is_infrastructure(text), "{text}");
        }
        for text in [
            "`sh test.sh` exited with code 1",
            "killed by signal 11",
            "rebase conflicts in src/lib.rs",
            "! [rejected] baton/x -> baton/x (stale info)",
        ] {
            assert!(!is_infrastructure(text), "{text}");
        }
    }
}

/// Whether the existing directory `worktree` can be reused for `branch`: it is a registered
/// worktree of the repository (`main`) and has `branch` checked out. `Err` says what is wrong.
/// The fast check of [`reusable_worktree`], from git's own files and no process: the worktree's
/// `.git` names an administrative directory under the repository's git dir that points back at
/// it, and its HEAD is the task's branch with no rebase under way. `false` means "check the slow
/// way", never "broken".
fn worktree_on_branch(repo: &Path, worktree: &Path, branch: &str) -> bool {
    let canonical = |path: &Path| crate::git::resolve(path);
    let (Some(admin), Some(repo_git)) = (crate::git::git_dir(worktree), crate::git::git_dir(repo)) else {
        return false;
    };
    let (Some(admin), Some(repo_git)) = (canonical(&admin), canonical(&repo_git)) else {
        return false;
    };
    // `<repository git dir>/worktrees/<name>`: registered with this repository, not a nested one.
    if admin.parent().and_then(Path::parent) != Some(repo_git.as_path()) {
        return false;
    }
    let points_back = std::fs::read_to_string(admin.join("gitdir"))
        .ok()
        .and_then(|text| canonical(Path::new(text.trim())))
        .is_some_and(|back| Some(back) == canonical(&worktree.join(".git")));
    let head = std::fs::read_to_string(admin.join("HEAD")).unwrap_or_default();
    let rebasing = admin.join("rebase-merge").exists() || admin.join("rebase-apply").exists();
    points_back && head.trim() == format!("ref: refs/heads/{branch}") && !rebasing
}

async fn reusable_worktree(main: &Git, worktree: &Path, branch: &str) -> Result<(), String> {
    if !worktree.join(".git").exists() {
        return Err("it is not a git worktree".into());
    }
    let wanted = worktree.canonicalize().map_err(|e| format!("cannot resolve its path: {e}"))?;
    let listing = main.run(&["worktree", "list", "--porcelain"]).await.map_err(|e| e.to_string())?;
    let registered = listing
        .lines()
        .filter_map(|line| line.strip_prefix("worktree "))
        .any(|path| Path::new(path).canonicalize().is_ok_and(|p| p == wanted));
    if !registered {
        return Err(format!("it is not a registered worktree of {}", main.dir().display()));
    }
    let tree = Git::new(worktree);
    // Its own repository, not a nested one: the worktree's common git dir is the repository's.
    let common = |git: &Git| {
        let git = git.clone();
        async move {
            let dir = git.run(&["rev-parse", "--path-format=absolute", "--git-common-dir"]).await.ok()?;
            Path::new(&dir).canonicalize().ok()
        }
    };
    let (own, repo_common) = (common(&tree).await, common(main).await);
    if own.is_none() || own != repo_common {
        return Err(format!("it belongs to another repository than {}", main.dir().display()));
    }
    let head = match tree.run(&["symbolic-ref", "-q", "--short", "HEAD"]).await {
        Ok(head) => head,
        Err(_) => {
            // A Baton killed mid-rebase leaves HEAD detached; aborting puts the branch back.
            let _ = tree.run(&["rebase", "--abort"]).await;
            tree.run(&["symbolic-ref", "-q", "--short", "HEAD"]).await.unwrap_or_default()
        }
    };
    if head != branch {
        let found = if head.is_empty() { "a detached HEAD".to_string() } else { format!("branch `{head}`") };
        return Err(format!("it has {found} checked out, not the task's branch `{branch}`"));
    }
    Ok(())
}

/// The real [`Vcs`]: `git` with argument vectors.
#[derive(Debug, Default, Clone)]
pub struct GitVcs;

impl GitVcs {
    /// The base `branch` was last built on by the merge gate, when its head still sits on it. A
    /// branch squashed before sits on that base — maybe the head of a change ahead in the merge
    /// queue, not the branch's own work: only what came after it is the branch's.
    async fn built_on(&self, git: &Git, branch: &str) -> Option<String> {
        let name = built_on_ref(branch);
        let base = match crate::git::lookup_ref(git.dir(), &name) {
            crate::git::Lookup::Found(id) => id,
            // Never squashed before: nothing to ask git.
            crate::git::Lookup::Absent => return None,
            crate::git::Lookup::Unknown => git.run(&["rev-parse", "-q", "--verify", &name]).await.ok()?,
        };
        git.is_ancestor(&base, "HEAD").await.then_some(base)
    }
}

/// The work-item number of `prefix` a task branch's full ref name carries:
/// `refs/heads/baton/<PREFIX>-<N>[-slug]`, or the same fetched, `refs/remotes/<remote>/baton/…`.
fn task_branch_number(refname: &str, prefix: &str) -> Option<u64> {
    let branch = match refname.strip_prefix("refs/heads/") {
        Some(branch) => branch,
        None => refname.strip_prefix("refs/remotes/")?.split_once('/')?.1,
    };
    let rest = branch.strip_prefix("baton/")?.strip_prefix(prefix)?.strip_prefix('-')?;
    let digits = rest.split('-').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A plain relative path of a commit, safe to ask `cat-file --batch` for on one line: no `..`,
/// no absolute path, no empty part, no line break.
fn plain_path(relative: &str) -> bool {
    !relative.contains(['\n', '\r']) && !relative.split('/').any(|p| p.is_empty() || p == "." || p == "..")
}

/// Git's worktree bookkeeping (`.git/worktrees/`) is not safe under concurrent `worktree add`,
/// `remove` and `prune` in one repository ("failed to read .git/worktrees/…/commondir"): each
/// repository's worktree changes in this process go one at a time.
/// The fetch lock of a remote repository's clone, shared by every task of this process.
fn fetch_lock(repo: &Path) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<Mutex<HashMap<PathBuf, std::sync::Arc<tokio::sync::Mutex<()>>>>> =
        std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut locks = LOCKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    locks.entry(repo.to_path_buf()).or_default().clone()
}

fn worktree_lock(repo: &Path) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<Mutex<HashMap<PathBuf, std::sync::Arc<tokio::sync::Mutex<()>>>>> =
        std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut locks = LOCKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    locks.entry(repo.to_path_buf()).or_default().clone()
}

#[async_trait]
impl Vcs for GitVcs {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    async fn ensure_worktree(
        &self,
        repo: &Path,
        worktree: &Path,
        branch: &str,
        default_branch: &str,
    ) -> Result<(), GitError> {
        // The common case, a job in the task's existing worktree: read from git's files, no lock.
        if worktree_on_branch(repo, worktree, branch) {
            return Ok(());
        }
        let main = Git::new(repo);
        let lock = worktree_lock(repo);
        let _one_at_a_time = lock.lock().await;
        if worktree.exists() {
            match reusable_worktree(&main, worktree, branch).await {
                Ok(()) => return Ok(()),
                Err(why) => {
                    // Never let a task work in a tree that is not its own (an old task's worktree
                    // left under a reused work-item id, a checkout switched by hand): start afresh.
                    tracing::warn!("re-creating worktree {}: {why}", worktree.display());
                    remove_worktree_locked(&main, worktree).await?;
                }
            }
        }
        if let Some(parent) = worktree.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError::Failed {
                args: "worktree add".into(),
                dir: parent.display().to_string(),
                stderr: e.to_string(),
            })?;
        }
        let path = worktree.display().to_string();
        let exists = main.rev(&format!("refs/heads/{branch}")).await.is_some();
        let add = || async {
            if exists {
                main.run(&["worktree", "add", "-q", &path, branch]).await
            } else {
                main.run(&["worktree", "add", "-q", "--no-track", "-b", branch, &path, default_branch]).await
            }
        };
        if add().await.is_err() {
            // A stale registration (a worktree directory deleted by hand) blocks `worktree add`:
            // forget what no longer exists, then try once more (the error then is the real one).
            main.run(&["worktree", "prune"]).await?;
            add().await?;
        }
        // A checkout git just made holds exactly its HEAD.
        Git::new(worktree).mark_clean();
        Ok(())
    }

    async fn clean(&self, worktree: &Path) -> Result<(), GitError> {
        let git = Git::new(worktree);
        // A Baton killed mid-git leaves its lock; nothing else works in a task's worktree.
        let git_dir = match crate::git::git_dir(worktree) {
            Some(dir) => Some(dir),
            None => git.run(&["rev-parse", "--absolute-git-dir"]).await.ok().map(PathBuf::from),
        };
        if let Some(dir) = &git_dir {
            let _ = std::fs::remove_file(dir.join("index.lock"));
            // And the locks of its `HEAD` and its branch, left by a commit killed mid-way (past
            // their stale age: the branch is this task's own, but a lock is never taken lightly).
            crate::git::remove_stale_lock(&dir.join("HEAD.lock"));
            if let Ok(head) = std::fs::read_to_string(dir.join("HEAD"))
                && let Some(branch) = head.trim().strip_prefix("ref: ")
                && branch.starts_with("refs/heads/")
                && !branch.contains("..")
            {
                crate::git::remove_stale_lock(&crate::git::common_dir(dir).join(format!("{branch}.lock")));
            }
        }
        let rebasing =
            git_dir.as_ref().is_none_or(|d| d.join("rebase-merge").exists() || d.join("rebase-apply").exists());
        if rebasing {
            let _ = git.run(&["rebase", "--abort"]).await;
        }
        // The common case is a tree the last job left committed: Baton's own commit moments ago
        // with nothing run there since (no process at all), else one status instead of two writes.
        if !rebasing && crate::git::clean_marks::is_clean(worktree) {
            return Ok(());
        }
        if rebasing || !git.is_clean().await? {
            git.run(&["reset", "-q", "--hard"]).await?;
            git.run(&["clean", "-q", "-fd"]).await?;
        }
        // Clean now: the next job here need not ask again while nothing runs in it.
        git.mark_clean();
        Ok(())
    }

    async fn commit_all(
        &self,
        worktree: &Path,
        message: &str,
        private_objects: Option<&Path>,
    ) -> Result<bool, GitError> {
        let git = Git::new(worktree);
        let index_may_be_foreign = private_objects
            .is_some_and(|dir| std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()).unwrap_or(false));
        if index_may_be_foreign { git.commit_all(message).await } else { git.commit_all_keeping_index(message).await }
    }

    async fn rev(&self, dir: &Path, rev: &str) -> Option<String> {
        Git::new(dir).rev(rev).await
    }

    async fn rebase(&self, worktree: &Path, onto: &str) -> Result<(), GitError> {
        let git = Git::new(worktree);
        let built_on = match git.current_branch().await {
            Some(branch) => self.built_on(&git, &branch).await,
            None => None,
        };
        let rebased = match built_on {
            Some(upstream) => git.run(&["rebase", "-q", "--onto", onto, &upstream]).await,
            None => git.run(&["rebase", "-q", onto]).await,
        };
        if rebased.is_err() {
            let _ = git.run(&["rebase", "--abort"]).await;
        }
        rebased.map(|_| ())
    }

    async fn rebuild(&self, worktree: &Path, onto: &str, message: &str) -> Result<Option<String>, GitError> {
        // One three-way merge of the branch's own changes onto `onto` (no commit-by-commit replay
        // through the working tree, as a rebase does), one commit on `onto`, then the branch and
        // files move to it.
        let git = Git::new(worktree);
        // Clean now (the job's start made it so) means clean after `reset --hard` too: the reset
        // makes the index and every tracked file the new commit's, and there is nothing untracked.
        let was_clean = crate::git::clean_marks::is_clean(worktree);
        let branch = git.current_branch().await;
        let built_on = match &branch {
            Some(branch) => self.built_on(&git, branch).await,
            None => None,
        };
        let mut args = vec!["merge-tree", "--write-tree", "--name-only"];
        if let Some(base) = &built_on {
            args.extend(["--merge-base", base.as_str()]);
        }
        args.extend([onto, "HEAD"]);
        let tree = match git.run(&args).await {
            Ok(out) => out.lines().next().unwrap_or("").to_string(),
            Err(GitError::Failed { args, dir, stderr })
                if stderr.lines().next().is_some_and(crate::git::is_object_id) =>
            {
                return Err(GitError::Failed { args, dir, stderr: merge_conflicts(&stderr) });
            }
            Err(error) => return Err(error),
        };
        let onto_tree = git.run(&["rev-parse", &format!("{onto}^{{tree}}")]).await?;
        if tree == onto_tree {
            return Ok(None);
        }
        let commit = git.run(&["commit-tree", &tree, "-p", onto, "-m", message]).await?;
        git.run(&["reset", "-q", "--hard", &commit]).await?;
        if let Some(branch) = &branch {
            set_built_on(&git, branch, onto).await?;
        }
        if was_clean {
            git.mark_clean();
        }
        Ok(Some(commit))
    }

    async fn squash(&self, worktree: &Path, base: &str, message: &str) -> Result<(), GitError> {
        let git = Git::new(worktree);
        git.run(&["reset", "-q", "--soft", base]).await?;
        git.run(&["commit", "-q", "-m", message]).await?;
        if let Some(branch) = git.current_branch().await {
            set_built_on(&git, &branch, base).await?;
        }
        Ok(())
    }

    async fn commit_tree(&self, worktree: &Path, parent: &str, message: &str) -> Result<String, GitError> {
        Git::new(worktree).run(&["commit-tree", "HEAD^{tree}", "-p", parent, "-m", message]).await
    }

    async fn revert(&self, worktree: &Path, base: &str, head: &str, message: &str) -> Result<(), GitError> {
        let git = Git::new(worktree);
        let range = format!("{base}..{head}");
        if let Err(error) = git.run(&["revert", "--no-commit", "--no-edit", &range]).await {
            let _ = git.run(&["revert", "--abort"]).await;
            return Err(error);
        }
        git.run(&["commit", "-q", "-m", message]).await.map(|_| ())
    }

    async fn same_tree(&self, dir: &Path, a: &str, b: &str) -> bool {
        let git = Git::new(dir);
        let tree = |rev: &str| format!("{rev}^{{tree}}");
        // Both trees in one call; either unknown fails it.
        let Ok(trees) = git.run(&["rev-parse", &tree(a), &tree(b)]).await else {
            return false;
        };
        let mut lines = trees.lines();
        match (lines.next(), lines.next(), lines.next()) {
            (Some(x), Some(y), None) => x == y,
            _ => false,
        }
    }

    async fn reset_to(&self, worktree: &Path, commit: &str) -> Result<(), GitError> {
        Git::new(worktree).run(&["reset", "-q", "--hard", commit]).await.map(|_| ())
    }

    async fn is_ancestor(&self, dir: &Path, ancestor: &str, descendant: &str) -> bool {
        Git::new(dir).is_ancestor(ancestor, descendant).await
    }

    async fn remove_worktree(&self, repo: &Path, worktree: &Path) -> Result<(), GitError> {
        let lock = worktree_lock(repo);
        let _one_at_a_time = lock.lock().await;
        remove_worktree_locked(&Git::new(repo), worktree).await
    }

    async fn forget_built_on(&self, repo: &Path, branch: &str) -> Result<(), GitError> {
        let name = built_on_ref(branch);
        if !crate::git::delete_own_ref(repo, &name) {
            Git::new(repo).run(&["update-ref", "-d", &name]).await?;
        }
        Ok(())
    }

    async fn highest_task_branch_number(&self, repo: &Path, prefix: &str) -> Result<Option<u64>, GitError> {
        let refs =
            Git::new(repo).run(&["for-each-ref", "--format=%(refname)", "refs/heads/baton/", "refs/remotes/"]).await?;
        Ok(refs.lines().filter_map(|name| task_branch_number(name, prefix)).max())
    }

    async fn diff_stat(&self, worktree: &Path, base: &str) -> Option<String> {
        // A branch that is its base (just merged, or no commit yet) changes nothing.
        if let (Some(head), crate::git::Lookup::Found(base_id)) =
            (crate::git::read_ref(worktree, "HEAD"), crate::git::lookup_ref(worktree, base))
            && head == base_id
        {
            return None;
        }
        let range = format!("{base}...HEAD");
        let stat = Git::new(worktree).run(&["diff", "--shortstat", &range]).await.ok()?;
        let stat = stat.trim();
        (!stat.is_empty()).then(|| stat.to_string())
    }

    async fn commits_between(&self, dir: &Path, base: &str, head: &str, max: usize) -> Vec<String> {
        let (range, max) = (format!("{base}..{head}"), format!("--max-count={max}"));
        let Ok(log) = Git::new(dir).run(&["log", "--no-color", "--format=%h %s", &max, &range, "--"]).await else {
            return Vec::new();
        };
        log.lines().map(str::to_string).filter(|line| !line.is_empty()).collect()
    }

    async fn diff_stat_between(&self, dir: &Path, base: &str, head: &str) -> Option<String> {
        let stat = Git::new(dir).run(&["diff", "--no-color", "--stat=100", base, head, "--"]).await.ok()?;
        let stat = stat.trim_end();
        (!stat.is_empty()).then(|| stat.to_string())
    }

    async fn files_at(&self, dir: &Path, rev: &str, relative: &str) -> Vec<String> {
        let tree = format!("{rev}:{relative}");
        let Ok(names) = Git::new(dir).run(&["ls-tree", "--name-only", &tree]).await else {
            return Vec::new();
        };
        let mut names: Vec<String> = names.lines().map(str::to_string).filter(|n| !n.is_empty()).collect();
        names.sort();
        names
    }

    async fn read_at(&self, dir: &Path, rev: &str, relative: &str) -> Option<String> {
        // Only plain relative paths name a file of the commit (no `..`, no absolute path).
        if relative.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return None;
        }
        Git::new(dir).run(&["show", &format!("{rev}:{relative}")]).await.ok()
    }

    async fn read_all_at(&self, dir: &Path, rev: &str, relatives: &[String]) -> Vec<Option<String>> {
        // One `cat-file --batch` for them all; a name that is not a plain relative path (or could
        // break the batch's lines) is not asked.
        let asked: Vec<&String> = relatives.iter().filter(|r| plain_path(r)).collect();
        if asked.is_empty() || rev.contains(['\n', '\r', ':']) {
            return relatives.iter().map(|_| None).collect();
        }
        let input: String = asked.iter().map(|relative| format!("{rev}:{relative}\n")).collect();
        let Ok(output) = Git::new(dir).run_with_input(&["cat-file", "--batch"], input.as_bytes()).await else {
            return relatives.iter().map(|_| None).collect();
        };
        let mut answers = crate::git::parse_batch(&output, asked.len()).into_iter();
        relatives.iter().map(|relative| if plain_path(relative) { answers.next().flatten() } else { None }).collect()
    }

    async fn texts_at(
        &self,
        dir: &Path,
        rev: &str,
        relative: &str,
        suffix: &str,
        max: usize,
    ) -> Vec<(String, Option<String>)> {
        // One `cat-file --batch` for the directory and its files; only plain names are asked.
        if !plain_path(relative) || rev.contains(['\n', '\r', ':']) {
            return Vec::new();
        }
        let mut found =
            Git::new(dir).read_dir_at(rev, relative, |name| name.ends_with(suffix), max).await.unwrap_or_default();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    async fn read_file(&self, worktree: &Path, relative: &str) -> Option<String> {
        let path = crate::paths::join_under(worktree, &relative.split('/').collect::<Vec<_>>())?;
        std::fs::read_to_string(path).ok()
    }

    async fn list_dir(&self, worktree: &Path, relative: &str) -> Vec<String> {
        match crate::paths::join_under(worktree, &relative.split('/').collect::<Vec<_>>()) {
            Some(dir) => self.entries(&dir),
            None => Vec::new(),
        }
    }

    async fn sync_remote(&self, repo: &Path, remote: &Remote, default_branch: &str) -> Result<(), GitError> {
        // One fetch at a time per clone: two at once fight over the same remote-tracking refs
        // ("cannot lock ref").
        let lock = fetch_lock(repo);
        let _one_at_a_time = lock.lock().await;
        remote.sync(repo, default_branch).await
    }

    async fn push_branch(
        &self,
        repo: &Path,
        remote: &Remote,
        branch: &str,
        default_branch: &str,
    ) -> Result<bool, GitError> {
        remote.push_branch(repo, branch, default_branch).await
    }

    async fn take_branch(&self, repo: &Path, remote: &Remote, worktree: &Path, branch: &str) -> Result<bool, GitError> {
        remote.take_branch(repo, worktree, branch).await
    }

    fn entries(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// The real [`Supervisor`]: `baton shim` (at `baton_exe`) leads each process group.
#[derive(Debug)]
pub struct ShimSupervisor {
    baton_exe: PathBuf,
    /// Secrets the shim masks in every launched command's output.
    redactor: Redactor,
    /// Children this process started, by process group, so waiting reaps them.
    children: Mutex<HashMap<u32, Supervised>>,
    /// Whether launches go through the embedded shim ([`shim::embedded`]) when it starts here.
    embedded: bool,
}

impl ShimSupervisor {
    pub fn new(baton_exe: impl Into<PathBuf>) -> Self {
        ShimSupervisor {
            baton_exe: baton_exe.into(),
            redactor: Redactor::default(),
            children: Mutex::new(HashMap::new()),
            embedded: true,
        }
    }

    /// The same supervisor, launching `baton shim` (the whole binary) even where the embedded
    /// shim starts: what a remote host runs, kept working and tested here.
    pub fn launching_baton_shim(mut self) -> Self {
        self.embedded = false;
        self
    }

    /// The same supervisor, masking `redactor`'s secrets in every launched command's output and
    /// in the recorded intent.
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }
}

fn io_error(what: &Path, source: std::io::Error) -> RunError {
    RunError::Io { what: what.display().to_string(), source }
}

#[async_trait]
impl Supervisor for ShimSupervisor {
    async fn launch(&self, spec: ProcessSpec, run_dir: &Path, owner: &str) -> Result<LaunchRecord, RunError> {
        std::fs::create_dir_all(run_dir).map_err(|e| io_error(run_dir, e))?;
        let intent = run_dir.join(INTENT_FILE);
        let argv: Vec<&str> =
            std::iter::once(spec.program.as_str()).chain(spec.args.iter().map(String::as_str)).collect();
        let argv: Vec<String> = argv.iter().map(|arg| self.redactor.redact(arg).into_owned()).collect();
        let record = serde_json::json!({ "argv": argv, "owner": owner }).to_string();
        std::fs::write(&intent, record).map_err(|e| io_error(&intent, e))?;
        let exit_file = run_dir.join(EXIT_FILE);
        let embedded = if self.embedded { shim::embedded() } else { None };
        let spec = shim::wrap(spec, embedded.unwrap_or(&self.baton_exe), &exit_file, &self.redactor);
        let child = crate::process::spawn_as(&spec, embedded.map(|_| "baton-shim"))?;
        let launch = LaunchRecord {
            pid: child.pid,
            pgid: child.pgid,
            start_ticks: crate::process::process_start_ticks(child.pid),
        };
        if let Ok(mut children) = self.children.lock() {
            children.insert(child.pgid, child);
        }
        Ok(launch)
    }

    fn previous(&self, run_dir: &Path) -> Previous {
        shim::previous(run_dir)
    }

    fn owner(&self, run_dir: &Path) -> Option<String> {
        let text = std::fs::read_to_string(run_dir.join(INTENT_FILE)).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value.get("owner")?.as_str().map(str::to_string)
    }

    fn read_output(&self, path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap_or_default()
    }

    async fn wait(
        &self,
        launch: &LaunchRecord,
        run_dir: &Path,
        outputs: [&Path; 2],
        already_ran: Duration,
        limits: RunLimits,
        stop: watch::Receiver<bool>,
    ) -> ExitReport {
        let child = self.children.lock().ok().and_then(|mut children| children.remove(&launch.pgid));
        match child {
            Some(mut child) => child.wait(limits, stop).await,
            None => {
                crate::process::wait_adopted(launch.pgid, &run_dir.join(EXIT_FILE), outputs, already_ran, limits, stop)
                    .await
            }
        }
    }

    fn is_same_group(&self, pgid: u32, start_ticks: Option<u64>) -> bool {
        shim::same_group(pgid, start_ticks)
    }

    async fn stop_group(&self, pgid: u32, grace: Duration) {
        crate::process::stop_group(pgid, grace).await;
    }

    fn shims_under(&self, runs_dir: &Path) -> Vec<(u32, u32, PathBuf)> {
        crate::process::find_shims(&runs_dir.display().to_string())
            .into_iter()
            .map(|(pid, pgid, exit_file)| (pid, pgid, exit_file.parent().map(Path::to_path_buf).unwrap_or_default()))
            .collect()
    }

    fn archive(&self, run_dir: &Path) -> Result<(), RunError> {
        if let Previous::Running(launch) = shim::previous(run_dir) {
            return Err(RunError::Io {
                what: run_dir.display().to_string(),
                source: std::io::Error::other(format!("its process group {} is still running", launch.pgid)),
            });
        }
        if !run_dir.exists() {
            return Ok(());
        }
        let name = run_dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let parent = run_dir.parent().unwrap_or(run_dir);
        let mut n = 1;
        while parent.join(format!("{name}.{n}")).exists() {
            n += 1;
        }
        std::fs::rename(run_dir, parent.join(format!("{name}.{n}"))).map_err(|e| io_error(run_dir, e))
    }
}

/// The [`CommandRunner`] over any [`Supervisor`]: with [`ShimSupervisor`] each command runs under
/// the shim; the simulation runs this same code over its simulated processes.
pub struct SupervisedCommands {
    supervisor: std::sync::Arc<dyn Supervisor>,
}

impl std::fmt::Debug for SupervisedCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SupervisedCommands")
    }
}

impl SupervisedCommands {
    pub fn new(supervisor: std::sync::Arc<dyn Supervisor>) -> Self {
        SupervisedCommands { supervisor }
    }

    /// The last bytes of a command's output, for failure reasons.
    fn tail(&self, log: &Path) -> String {
        let bytes = self.supervisor.read_output(log);
        let start = bytes.len().saturating_sub(OUTPUT_TAIL_BYTES_MAX);
        String::from_utf8_lossy(&bytes[start..]).trim().to_string()
    }
}

/// File name of a command's combined output inside its run directory.
pub const OUTPUT_FILE: &str = "output.log";

fn exit_report(exit: shim::ExitRecord) -> ExitReport {
    ExitReport {
        code: exit.code,
        signal: exit.signal,
        timed_out: false,
        stalled: false,
        stopped: false,
        duration_ms: 0,
    }
}

#[async_trait]
impl CommandRunner for SupervisedCommands {
    async fn run(&self, request: &CommandRequest, stop: watch::Receiver<bool>) -> Result<CommandRun, RunError> {
        let log = request.run_dir.join(OUTPUT_FILE);
        let limits =
            RunLimits { timeout: request.timeout, stall_timeout: request.timeout, stop_grace: request.stop_grace };
        let (launch, provenance) = match self.supervisor.previous(&request.run_dir) {
            Previous::Exited(exit) => {
                let output = CommandOutput { exit: exit_report(exit), tail: self.tail(&log) };
                return Ok(CommandRun { output, provenance: Provenance::Recorded });
            }
            Previous::Vanished(_) => {
                // Killed together with its shim: no exit to report, and running it again is the
                // caller's decision (archive first).
                let exit = ExitReport {
                    code: None,
                    signal: Some(9),
                    timed_out: false,
                    stalled: false,
                    stopped: false,
                    duration_ms: 0,
                };
                return Ok(CommandRun {
                    output: CommandOutput { exit, tail: self.tail(&log) },
                    provenance: Provenance::Recorded,
                });
            }
            Previous::Running(launch) => (launch, Provenance::Adopted),
            Previous::Nothing => {
                let (program, args) = request.argv.split_first().ok_or(RunError::EmptyCommand)?;
                // A test or deploy command usually writes nothing in the worktree: when Baton
                // knows it clean now, finding the same files afterwards needs no `git status`.
                crate::git::clean_marks::watch(&request.cwd);
                let spec = ProcessSpec {
                    program: program.clone(),
                    args: args.to_vec(),
                    cwd: request.cwd.clone(),
                    env: request.env.clone(),
                    stdin: None,
                    stdout: log.clone(),
                    stderr: log.clone(),
                };
                (self.supervisor.launch(spec, &request.run_dir, &request.owner).await?, Provenance::Started)
            }
        };
        let exit = self.supervisor.wait(&launch, &request.run_dir, [&log, &log], Duration::ZERO, limits, stop).await;
        Ok(CommandRun { output: CommandOutput { exit, tail: self.tail(&log) }, provenance })
    }

    fn previous(&self, run_dir: &Path) -> Previous {
        self.supervisor.previous(run_dir)
    }

    fn owner(&self, run_dir: &Path) -> Option<String> {
        self.supervisor.owner(run_dir)
    }

    async fn reset(&self, run_dir: &Path, grace: Duration) -> Result<(), RunError> {
        match self.supervisor.previous(run_dir) {
            Previous::Nothing if !run_dir.exists() => return Ok(()),
            Previous::Running(launch) => self.supervisor.stop_group(launch.pgid, grace).await,
            _ => {}
        }
        self.archive(run_dir)
    }

    fn archive(&self, run_dir: &Path) -> Result<(), RunError> {
        self.supervisor.archive(run_dir)
    }
}

/// Removes a worktree (forced) and prunes its registration; the caller holds the repository's
/// worktree lock.
async fn remove_worktree_locked(main: &Git, worktree: &Path) -> Result<(), GitError> {
    if worktree.exists() {
        let path = worktree.display().to_string();
        if main.run(&["worktree", "remove", "--force", &path]).await.is_ok() {
            // git removed the directory and its registration together.
            return Ok(());
        }
        std::fs::remove_dir_all(worktree).map_err(|e| GitError::Failed {
            args: "worktree remove".into(),
            dir: path.clone(),
            stderr: e.to_string(),
        })?;
    } else if !still_registered(main.dir(), worktree) {
        // Removed before (a task's cleanup runs once at its end and again after its last job):
        // nothing of it is left to forget.
        return Ok(());
    }
    main.run(&["worktree", "prune"]).await?;
    Ok(())
}

/// Whether the repository at `repo` still lists `worktree` among its worktrees
/// (`<git dir>/worktrees/*/gitdir` naming its `.git`); `true` when that cannot be read, so the
/// caller prunes.
fn still_registered(repo: &Path, worktree: &Path) -> bool {
    let Some(admin) = crate::git::git_dir(repo).map(|dir| dir.join("worktrees")) else {
        return true;
    };
    let Ok(entries) = std::fs::read_dir(&admin) else {
        return admin.exists();
    };
    let dot_git = worktree.join(".git");
    entries.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("gitdir")).map_or(true, |text| Path::new(text.trim()) == dot_git)
    })
}
