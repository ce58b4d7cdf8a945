//! Forges hold the default branch and merge into it. The built-in default is a local repository,
//! or a plain git remote (a `url` repository) reached from Baton's clone of it. Hosted forges
//! (GitHub, Gitea/Forgejo) add pull requests and CI; [`ForgeSet`] routes each repository to its own.

use crate::AdapterError;
use async_trait::async_trait;
use baton_runner::{Git, Remote};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// How a task's re-tested head lands on the default branch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeStyle {
    /// The default branch moves to the re-tested (already squashed) head itself.
    #[default]
    FastForward,
    /// One commit with the re-tested head's tree on top of the default branch (a hosted forge's
    /// squash merge; locally the same as a fast-forward, the merge gate having squashed already).
    Squash,
    /// A merge commit (parents: the default head, the re-tested head) with the head's tree.
    Merge,
}

impl MergeStyle {
    /// The configuration spelling (`fast-forward`, `squash`, `merge`).
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStyle::FastForward => "fast-forward",
            MergeStyle::Squash => "squash",
            MergeStyle::Merge => "merge",
        }
    }
}

/// What a forge needs to know about a repository.
#[derive(Debug, Clone)]
pub struct ForgeRepo {
    pub name: String,
    pub path: PathBuf,
    pub default_branch: String,
    /// A `url` repository's remote (`path` is Baton's clone of it): merges and branch deletions
    /// happen there.
    pub remote: Option<Remote>,
    pub merge_style: MergeStyle,
}

/// Result of a merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The default branch now holds the merged head.
    Merged,
    /// The default branch already held the head (a re-drive after a restart).
    AlreadyMerged,
    /// The default branch moved since the merge gate: refuse (main is sacred).
    Moved { current: String },
}

/// The pull request Baton keeps for a task branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestSpec {
    pub branch: String,
    pub title: String,
    pub body: String,
}

/// A pull request on a hosted forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestRef {
    pub number: u64,
    pub url: String,
}

/// The CI verdict for one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiStatus {
    /// No status and no check at all (a local forge, or a repository without CI).
    NoChecks,
    /// Checks still run (their names, when the forge says), none failed.
    Pending { running: Vec<String> },
    /// Every check succeeded.
    Green,
    /// A check failed: its name, link and the end of its log.
    Red { check: String, url: Option<String>, log_tail: String },
}

/// A forge (Gitea/Forgejo, GitHub; built-in: local repository).
#[async_trait]
pub trait Forge: Send + Sync {
    fn name(&self) -> &str;

    /// Lands `head` (the merge gate's re-tested head of task `branch`) on the default branch,
    /// which must still be at `expected_base`; never forces. The default branch's tree afterwards
    /// is exactly `head`'s tree, whatever the repository's merge style.
    async fn merge(
        &self,
        repo: &ForgeRepo,
        branch: &str,
        expected_base: &str,
        head: &str,
    ) -> Result<MergeOutcome, AdapterError>;

    /// Opens (once) or updates the task branch's pull request; `Ok(None)` when the forge has
    /// none (local) or the branch is not on the remote yet.
    async fn sync_pull_request(
        &self,
        repo: &ForgeRepo,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequestRef>, AdapterError>;

    /// The CI verdict for `sha`.
    async fn ci_status(&self, repo: &ForgeRepo, sha: &str) -> Result<CiStatus, AdapterError>;

    /// Deletes a task branch. Refuses the default branch; never forced (`-d` semantics are not
    /// required because cancelled work stays reachable from the tombstoned task's history).
    async fn delete_branch(&self, repo: &ForgeRepo, branch: &str) -> Result<(), AdapterError>;
}

/// Routes each repository (by name) to its own forge, others to a default one.
pub struct ForgeSet {
    default: Arc<dyn Forge>,
    by_repo: BTreeMap<String, Arc<dyn Forge>>,
}

impl std::fmt::Debug for ForgeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: BTreeMap<&str, &str> = self.by_repo.iter().map(|(k, v)| (k.as_str(), v.name())).collect();
        f.debug_struct("ForgeSet").field("default", &self.default.name()).field("by_repo", &routes).finish()
    }
}

impl ForgeSet {
    /// Every repository on `default`.
    pub fn new(default: Arc<dyn Forge>) -> Self {
        ForgeSet { default, by_repo: BTreeMap::new() }
    }

    /// Repository `repo` (its name) on `forge`.
    pub fn with(mut self, repo: impl Into<String>, forge: Arc<dyn Forge>) -> Self {
        self.by_repo.insert(repo.into(), forge);
        self
    }

    /// The forge of `repo`.
    pub fn forge_for(&self, repo: &str) -> &Arc<dyn Forge> {
        self.by_repo.get(repo).unwrap_or(&self.default)
    }
}

#[async_trait]
impl Forge for ForgeSet {
    fn name(&self) -> &str {
        "set"
    }

    async fn merge(
        &self,
        repo: &ForgeRepo,
        branch: &str,
        expected_base: &str,
        head: &str,
    ) -> Result<MergeOutcome, AdapterError> {
        self.forge_for(&repo.name).merge(repo, branch, expected_base, head).await
    }

    async fn sync_pull_request(
        &self,
        repo: &ForgeRepo,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequestRef>, AdapterError> {
        self.forge_for(&repo.name).sync_pull_request(repo, spec).await
    }

    async fn ci_status(&self, repo: &ForgeRepo, sha: &str) -> Result<CiStatus, AdapterError> {
        self.forge_for(&repo.name).ci_status(repo, sha).await
    }

    async fn delete_branch(&self, repo: &ForgeRepo, branch: &str) -> Result<(), AdapterError> {
        self.forge_for(&repo.name).delete_branch(repo, branch).await
    }
}

/// The built-in forge: merges by moving the default branch of a local repository (or pushing a
/// `url` repository's default branch, fast-forward only).
#[derive(Debug, Default, Clone)]
pub struct LocalForge;

#[async_trait]
impl Forge for LocalForge {
    fn name(&self) -> &str {
        "local"
    }

    async fn merge(
        &self,
        repo: &ForgeRepo,
        branch: &str,
        expected_base: &str,
        head: &str,
    ) -> Result<MergeOutcome, AdapterError> {
        let git = match &repo.remote {
            Some(remote) => remote.git(&repo.path),
            None => Git::new(&repo.path),
        };
        // What the default branch moves to: the head itself, or a merge commit with its tree.
        let target = match repo.merge_style {
            MergeStyle::FastForward | MergeStyle::Squash => head.to_string(),
            MergeStyle::Merge => merge_commit(&git, repo, branch, expected_base, head).await?,
        };
        if let Some(remote) = &repo.remote {
            return fast_forward_remote(remote, repo, expected_base, head, &target).await;
        }
        let branch_ref = format!("refs/heads/{}", repo.default_branch);
        let Some(current) = git.rev(&branch_ref).await else {
            return Err(AdapterError::Git(baton_runner::GitError::Failed {
                args: format!("rev-parse --verify {branch_ref}"),
                dir: repo.path.display().to_string(),
                stderr: format!("the default branch `{}` cannot be read", repo.default_branch),
            }));
        };
        // (A merge of `head` onto the base is never the base itself: no git call in the common case.)
        let merged = current == head
            || current == target
            || (current != expected_base && is_merge_of(&git, &current, expected_base, head).await);
        if merged {
            return Ok(MergeOutcome::AlreadyMerged);
        }
        if current != expected_base {
            return Ok(MergeOutcome::Moved { current });
        }
        // A checkout has a `.git` (a bare repository has none): there the default branch may be
        // checked out, and moves with its working tree.
        let checked_out = match baton_runner::git::git_dir(&repo.path) {
            Some(_) => git.current_branch().await,
            None => None,
        };
        if checked_out.as_deref() == Some(repo.default_branch.as_str()) {
            // The default branch is checked out: move it with its working tree, fast-forward only
            // (git refuses anything else itself; only then is it asked why).
            if let Err(error) = git.run(&["merge", "--ff-only", "-q", &target]).await {
                if !git.is_ancestor(&current, &target).await {
                    return Ok(MergeOutcome::Moved { current });
                }
                return Err(error.into());
            }
        } else if !git.is_ancestor(&current, &target).await {
            return Ok(MergeOutcome::Moved { current });
        } else {
            // Compare-and-set on the ref: fails if someone moved it in between.
            git.run(&["update-ref", &branch_ref, &target, &current]).await?;
        }
        Ok(MergeOutcome::Merged)
    }

    async fn sync_pull_request(
        &self,
        _repo: &ForgeRepo,
        _spec: &PullRequestSpec,
    ) -> Result<Option<PullRequestRef>, AdapterError> {
        Ok(None)
    }

    async fn ci_status(&self, _repo: &ForgeRepo, _sha: &str) -> Result<CiStatus, AdapterError> {
        Ok(CiStatus::NoChecks)
    }

    async fn delete_branch(&self, repo: &ForgeRepo, branch: &str) -> Result<(), AdapterError> {
        if branch == repo.default_branch || !branch.starts_with("baton/") {
            return Err(AdapterError::Rejected(format!("refusing to delete branch `{branch}`: only task branches")));
        }
        let git = Git::new(&repo.path);
        if git.rev(&format!("refs/heads/{branch}")).await.is_some() {
            git.run(&["branch", "-D", branch]).await?;
        }
        if let Some(remote) = &repo.remote {
            remote.delete_branch(&repo.path, branch, &repo.default_branch).await?;
        }
        Ok(())
    }
}

/// The merge commit of `head` onto `base`: `head`'s tree, parents `base` then `head`. Its id is
/// the same every time (fixed author and committer dates from `head`), so a re-driven merge finds
/// the one it made.
async fn merge_commit(
    git: &Git,
    repo: &ForgeRepo,
    branch: &str,
    base: &str,
    head: &str,
) -> Result<String, AdapterError> {
    let tree = format!("{head}^{{tree}}");
    let date = git.run(&["log", "-1", "--format=%ct", head]).await?;
    let message = format!("Merge branch '{branch}' into {}", repo.default_branch);
    // Only local work: a fresh `Git` with fixed identities and dates, no remote environment.
    let git = Git::new(git.dir()).with_env(vec![
        ("GIT_AUTHOR_DATE".into(), format!("@{date} +0000")),
        ("GIT_COMMITTER_DATE".into(), format!("@{date} +0000")),
        ("GIT_AUTHOR_NAME".into(), "Baton".into()),
        ("GIT_AUTHOR_EMAIL".into(), "baton@localhost".into()),
        ("GIT_COMMITTER_NAME".into(), "Baton".into()),
        ("GIT_COMMITTER_EMAIL".into(), "baton@localhost".into()),
    ]);
    Ok(git.run(&["commit-tree", &tree, "-p", base, "-p", head, "-m", &message]).await?)
}

/// Whether `commit` is a merge of `head` onto `base` with `head`'s tree (one Baton made).
async fn is_merge_of(git: &Git, commit: &str, base: &str, head: &str) -> bool {
    // One call: the commit's parents (`^@`, one line each), then both trees; an unknown name fails it.
    let (all_parents, tree) = (format!("{commit}^@"), |c: &str| format!("{c}^{{tree}}"));
    let Ok(lines) = git.run(&["rev-parse", &all_parents, &tree(commit), &tree(head)]).await else {
        return false;
    };
    match lines.lines().collect::<Vec<_>>().as_slice() {
        [first, second, merged, tested] => [*first, *second] == [base, head] && merged == tested,
        _ => false,
    }
}

/// The merge of a `url` repository: the remote's default branch is pushed to `target` (`head`, or
/// a merge commit of it) as a fast-forward only (never forced). A remote default branch other
/// than `expected_base`, or a push refused as not a fast-forward, is `Moved` (back to the merge
/// gate).
async fn fast_forward_remote(
    remote: &Remote,
    repo: &ForgeRepo,
    expected_base: &str,
    head: &str,
    target: &str,
) -> Result<MergeOutcome, AdapterError> {
    let branch = &repo.default_branch;
    let git = remote.git(&repo.path);
    let current = remote.remote_head(&repo.path, branch).await?;
    let missing = || AdapterError::Rejected(format!("the remote has no branch `{branch}`"));
    let current = current.ok_or_else(missing)?;
    if current == head || current == target {
        return Ok(MergeOutcome::AlreadyMerged);
    }
    if current != expected_base {
        return Ok(MergeOutcome::Moved { current });
    }
    if remote.push_fast_forward(&repo.path, branch, target).await? {
        return Ok(MergeOutcome::Merged);
    }
    // Refused: someone pushed in between (or the push landed and its answer was lost).
    let current = remote.remote_head(&repo.path, branch).await?.ok_or_else(missing)?;
    if current == head || current == target || is_merge_of(&git, &current, expected_base, head).await {
        Ok(MergeOutcome::AlreadyMerged)
    } else {
        Ok(MergeOutcome::Moved { current })
    }
}
