//! `HostedForge`: the engine's `Forge` port on a hosted forge (GitHub, Gitea/Forgejo). Git work
//! (reading and pushing the default branch, deleting branches) goes through the repository's git
//! remote as on the local forge; pull requests, API merges and CI go through [`ForgeApi`].

use crate::error::ApiError;
use crate::forge::{CiState, ForgeApi, MergeStyle as ApiMergeStyle, NewPullRequest};
use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::forge::{
    CiStatus, Forge, ForgeRepo, LocalForge, MergeOutcome, MergeStyle, PullRequestRef, PullRequestSpec,
};
use baton_runner::Remote;
use std::sync::Arc;

/// Longest CI log tail handed on (lines).
const LOG_TAIL_LINES: usize = 40;
/// Longest CI log tail handed on (bytes).
const LOG_TAIL_BYTES: usize = 4096;

/// A repository on GitHub or Gitea/Forgejo.
pub struct HostedForge {
    api: Arc<dyn ForgeApi>,
    git: LocalForge,
}

impl std::fmt::Debug for HostedForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedForge").field("kind", &self.api.kind()).finish()
    }
}

impl HostedForge {
    pub fn new(api: Arc<dyn ForgeApi>) -> Self {
        HostedForge { api, git: LocalForge }
    }
}

/// The last 40 lines and at most 4 KiB of a log, cut at a character boundary.
pub fn bounded_tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let kept = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    crate::forge::tail(&kept, LOG_TAIL_BYTES)
}

fn remote(repo: &ForgeRepo) -> Result<&Remote, AdapterError> {
    repo.remote.as_ref().ok_or_else(|| {
        AdapterError::Config(format!(
            "repository {} is on a hosted forge but has no `url`: give its clone URL as `url`",
            repo.name
        ))
    })
}

/// An API error as the engine sees it: rate limits, 5xx and transport failures are transient
/// (the machine's fault, retried); 401/403 and refusals are not.
fn adapter_error(error: ApiError) -> AdapterError {
    error.into()
}

#[async_trait]
impl Forge for HostedForge {
    fn name(&self) -> &str {
        self.api.kind()
    }

    async fn merge(
        &self,
        repo: &ForgeRepo,
        branch: &str,
        expected_base: &str,
        head: &str,
    ) -> Result<MergeOutcome, AdapterError> {
        let remote = remote(repo)?;
        let default = &repo.default_branch;
        let current = remote
            .remote_head(&repo.path, default)
            .await?
            .ok_or_else(|| AdapterError::Rejected(format!("the remote has no branch `{default}`")))?;
        if current == head {
            return Ok(MergeOutcome::AlreadyMerged);
        }
        if current != expected_base {
            // Perhaps our own API merge landed and its answer was lost: a commit on the base with
            // exactly the head's tree (squash), or the merge of the head (merge).
            remote.sync(&repo.path, default).await?;
            if repo.merge_style != MergeStyle::FastForward && lands(remote, repo, &current, expected_base, head).await {
                return Ok(MergeOutcome::AlreadyMerged);
            }
            return Ok(MergeOutcome::Moved { current });
        }
        let style = match repo.merge_style {
            // A fast-forward push; the forge marks the pull request merged by itself.
            MergeStyle::FastForward => return self.git.merge(repo, branch, expected_base, head).await,
            MergeStyle::Squash => ApiMergeStyle::Squash,
            MergeStyle::Merge => ApiMergeStyle::Merge,
        };
        let pr = self.api.find_open_pr(branch).await.map_err(adapter_error)?.ok_or_else(|| {
            AdapterError::Rejected(format!(
                "no open pull request for `{branch}` to merge (closed by hand?); reopen it, then retry the task"
            ))
        })?;
        if pr.merged {
            return Ok(MergeOutcome::AlreadyMerged);
        }
        let outcome = match self.api.merge_pr(pr.number, head, style).await {
            Ok(()) => MergeOutcome::Merged,
            Err(ApiError::Conflict { .. }) => {
                // The PR's head moved, or the PR was merged meanwhile.
                let now = self.api.get_pr(pr.number).await.map_err(adapter_error)?;
                if now.merged && now.head_sha == head {
                    MergeOutcome::AlreadyMerged
                } else {
                    let current = remote.remote_head(&repo.path, default).await?.unwrap_or(current);
                    MergeOutcome::Moved { current }
                }
            }
            Err(error) => return Err(adapter_error(error)),
        };
        // Baton's clone sees the merged default branch.
        remote.sync(&repo.path, default).await?;
        Ok(outcome)
    }

    async fn sync_pull_request(
        &self,
        repo: &ForgeRepo,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequestRef>, AdapterError> {
        let remote = remote(repo)?;
        if remote.remote_head(&repo.path, &spec.branch).await?.is_none() {
            return Ok(None);
        }
        let wanted = NewPullRequest {
            head: spec.branch.clone(),
            base: repo.default_branch.clone(),
            title: spec.title.clone(),
            body: spec.body.clone(),
        };
        let pr = self.api.ensure_pr(&wanted).await.map_err(adapter_error)?;
        let title = (pr.title != spec.title).then_some(spec.title.as_str());
        let body = (pr.body.trim_end() != spec.body.trim_end()).then_some(spec.body.as_str());
        let pr = if title.is_some() || body.is_some() {
            self.api.update_pr(pr.number, title, body).await.map_err(adapter_error)?
        } else {
            pr
        };
        Ok(Some(PullRequestRef { number: pr.number, url: pr.html_url }))
    }

    async fn ci_status(&self, _repo: &ForgeRepo, sha: &str) -> Result<CiStatus, AdapterError> {
        Ok(match self.api.ci_state(sha).await.map_err(adapter_error)? {
            CiState::NoChecks => CiStatus::NoChecks,
            CiState::Pending => CiStatus::Pending { running: Vec::new() },
            CiState::Green => CiStatus::Green,
            CiState::Red { check, details_url, summary } => CiStatus::Red {
                check,
                url: details_url,
                log_tail: bounded_tail(summary.as_deref().unwrap_or("(the forge gave no log)")),
            },
        })
    }

    async fn delete_branch(&self, repo: &ForgeRepo, branch: &str) -> Result<(), AdapterError> {
        // By git, as on the local forge: the same refusals, and Baton's lease on the branch goes too.
        self.git.delete_branch(repo, branch).await
    }
}

/// Whether `commit` (the remote default head, fetched) is `head` landed on `base` by the forge:
/// its first parent is `base` and its tree is `head`'s.
async fn lands(remote: &Remote, repo: &ForgeRepo, commit: &str, base: &str, head: &str) -> bool {
    let git = remote.git(&repo.path);
    let parent = git.rev(&format!("{commit}^1")).await;
    let tree = |c: &str| format!("{c}^{{tree}}");
    let landed = git.run(&["rev-parse", "--verify", "--quiet", &tree(commit)]).await.ok();
    let tested = git.run(&["rev-parse", "--verify", "--quiet", &tree(head)]).await.ok();
    parent.as_deref() == Some(base) && landed.is_some() && landed == tested
}
