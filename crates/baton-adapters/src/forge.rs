//! Forges hold the default branch and merge into it. The built-in default is a local repository,
//! or a plain git remote (a `url` repository) reached from Baton's clone of it.

use crate::AdapterError;
use async_trait::async_trait;
use baton_runner::{Git, Remote};
use std::path::PathBuf;

/// What a forge needs to know about a repository.
#[derive(Debug, Clone)]
pub struct ForgeRepo {
    pub name: String,
    pub path: PathBuf,
    pub default_branch: String,
    /// A `url` repository's remote (`path` is Baton's clone of it): merges and branch deletions
    /// happen there.
    pub remote: Option<Remote>,
}

/// Result of a fast-forward request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The default branch now points at the merged head.
    Merged,
    /// The default branch already pointed at the head (a re-drive after a restart).
    AlreadyMerged,
    /// The default branch moved since the merge gate: refuse (main is sacred).
    Moved { current: String },
}

/// A forge (Gitea/Forgejo, GitHub; built-in: local repository).
#[async_trait]
pub trait Forge: Send + Sync {
    fn name(&self) -> &str;

    /// Fast-forwards the default branch from `expected_base` to `head`; never forces.
    async fn fast_forward(
        &self,
        repo: &ForgeRepo,
        expected_base: &str,
        head: &str,
    ) -> Result<MergeOutcome, AdapterError>;

    /// Deletes a task branch. Refuses the default branch; never forced (`-d` semantics are not
    /// required because cancelled work stays reachable from the tombstoned task's history).
    async fn delete_branch(&self, repo: &ForgeRepo, branch: &str) -> Result<(), AdapterError>;
}

/// The built-in forge: merges by moving the default branch of a local repository.
#[derive(Debug, Default, Clone)]
pub struct LocalForge;

#[async_trait]
impl Forge for LocalForge {
    fn name(&self) -> &str {
        "local"
    }

    async fn fast_forward(
        &self,
        repo: &ForgeRepo,
        expected_base: &str,
        head: &str,
    ) -> Result<MergeOutcome, AdapterError> {
        if let Some(remote) = &repo.remote {
            return fast_forward_remote(remote, repo, expected_base, head).await;
        }
        let git = Git::new(&repo.path);
        let branch_ref = format!("refs/heads/{}", repo.default_branch);
        let current = git.run(&["rev-parse", "--verify", &branch_ref]).await?;
        if current == head {
            return Ok(MergeOutcome::AlreadyMerged);
        }
        if current != expected_base || !git.is_ancestor(&current, head).await {
            return Ok(MergeOutcome::Moved { current });
        }
        let checked_out = git.run(&["symbolic-ref", "-q", "HEAD"]).await.ok();
        let bare = git.run(&["rev-parse", "--is-bare-repository"]).await.map(|b| b == "true").unwrap_or(false);
        if !bare && checked_out.as_deref() == Some(branch_ref.as_str()) {
            // The default branch is checked out: move it with its working tree, fast-forward only.
            git.run(&["merge", "--ff-only", "-q", head]).await?;
        } else {
            // Compare-and-set on the ref: fails if someone moved it in between.
            git.run(&["update-ref", &branch_ref, head, &current]).await?;
        }
        Ok(MergeOutcome::Merged)
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

/// The merge of a `url` repository: the remote's default branch is pushed to `head` as a
/// fast-forward only (never forced). A remote default branch other than `expected_base`, or a push
/// refused as not a fast-forward, is `Moved` (back to the merge gate).
async fn fast_forward_remote(
    remote: &Remote,
    repo: &ForgeRepo,
    expected_base: &str,
    head: &str,
) -> Result<MergeOutcome, AdapterError> {
    let branch = &repo.default_branch;
    let current = remote.remote_head(&repo.path, branch).await?;
    let missing = || AdapterError::Rejected(format!("the remote has no branch `{branch}`"));
    let current = current.ok_or_else(missing)?;
    if current == head {
        return Ok(MergeOutcome::AlreadyMerged);
    }
    if current != expected_base {
        return Ok(MergeOutcome::Moved { current });
    }
    if remote.push_fast_forward(&repo.path, branch, head).await? {
        return Ok(MergeOutcome::Merged);
    }
    // Refused: someone pushed in between (or the push landed and its answer was lost).
    let current = remote.remote_head(&repo.path, branch).await?.ok_or_else(missing)?;
    if current == head { Ok(MergeOutcome::AlreadyMerged) } else { Ok(MergeOutcome::Moved { current }) }
}
