//! Remote repositories: a repository given by URL is worked on through Baton's own bare clone
//! (`origin` = the URL, remote-tracking refs under `refs/remotes/origin/`). Worktrees branch from
//! `origin/<default>`; task branches are pushed with a lease on what Baton itself pushed last
//! (`refs/baton/pushed/<branch>`), so a push never overwrites someone else's; the default branch is
//! only ever pushed as a fast-forward, never forced.
//!
//! Credentials come only from the environment: the variable named by `credentials_env` becomes an
//! `Authorization` header passed to git through `GIT_CONFIG_*` variables of the one call — never on
//! the command line, never written to disk, never in an error text.

use crate::git::{Git, GitError};
use std::path::Path;

/// Where a remote repository lives and how Baton authenticates to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `https://…`, `ssh://…`, `file://…` or the path of a bare repository.
    pub url: String,
    /// Name of the environment variable holding an access token (HTTP basic auth as
    /// `x-access-token:<token>`, which GitHub and Gitea/Forgejo accept).
    pub credentials_env: Option<String>,
}

/// The ref in Baton's clone that remembers what Baton last pushed to a task branch: the lease.
fn pushed_ref(branch: &str) -> String {
    format!("refs/baton/pushed/{branch}")
}

impl Remote {
    /// The environment of a git call that talks to the remote: stalled transfers time out,
    /// ssh never prompts, and the token (when configured and set) is sent as a header.
    fn env(&self) -> Vec<(String, String)> {
        let mut config: Vec<(&str, String)> =
            vec![("http.lowSpeedLimit", "1000".into()), ("http.lowSpeedTime", "30".into())];
        if let Some(name) = &self.credentials_env
            && let Ok(token) = std::env::var(name)
            && !token.is_empty()
        {
            config.push(("http.extraHeader", format!("Authorization: {}", basic_auth(&token))));
        }
        let mut env = vec![("GIT_CONFIG_COUNT".to_string(), config.len().to_string())];
        for (i, (key, value)) in config.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), key.to_string()));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), value));
        }
        if std::env::var_os("GIT_SSH_COMMAND").is_none() {
            // A fixed text, no untrusted part.
            env.push(("GIT_SSH_COMMAND".into(), "ssh -o BatchMode=yes -o ConnectTimeout=30".into()));
        }
        env
    }

    /// Git in `clone`, able to talk to the remote.
    pub fn git(&self, clone: &Path) -> Git {
        Git::new(clone).with_env(self.env())
    }

    /// Creates Baton's bare clone at `clone` when it does not exist yet (and points its `origin`
    /// at the URL), then fetches with `--prune`. Fails when the remote has no `default_branch`.
    pub async fn sync(&self, clone: &Path, default_branch: &str) -> Result<(), GitError> {
        std::fs::create_dir_all(clone).map_err(|e| GitError::Failed {
            args: "init --bare".into(),
            dir: clone.display().to_string(),
            stderr: e.to_string(),
        })?;
        let git = self.git(clone);
        if !clone.join("HEAD").exists() || !clone.join("objects").is_dir() {
            git.run(&["init", "-q", "--bare", "."]).await?;
        }
        // Set every time, so a changed URL in the configuration takes effect.
        git.run(&["config", "remote.origin.url", &self.url]).await?;
        git.run(&["config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"]).await?;
        git.run(&["fetch", "-q", "--prune", "--no-tags", "origin"]).await?;
        if git.rev(&format!("refs/remotes/origin/{default_branch}")).await.is_none() {
            return Err(GitError::Failed {
                args: "fetch origin".into(),
                dir: clone.display().to_string(),
                stderr: format!("the remote has no branch `{default_branch}`"),
            });
        }
        Ok(())
    }

    /// Pushes the task `branch` of `clone` to the remote with `--force-with-lease` on what Baton
    /// pushed last (nothing: the remote branch must not exist), so a branch someone else pushed to
    /// is never overwritten. Refuses the default branch. `Ok(false)`: nothing new to push.
    pub async fn push_branch(&self, clone: &Path, branch: &str, default_branch: &str) -> Result<bool, GitError> {
        let refused = |why: String| GitError::Failed {
            args: format!("push origin {branch}"),
            dir: clone.display().to_string(),
            stderr: why,
        };
        if branch == default_branch || branch.starts_with('-') || branch.is_empty() {
            return Err(refused(format!("refusing to push `{branch}`: only task branches are pushed")));
        }
        let git = self.git(clone);
        let local = git.rev(&format!("refs/heads/{branch}")).await.ok_or_else(|| refused("no such branch".into()))?;
        let expected = git.rev(&pushed_ref(branch)).await.unwrap_or_default();
        if expected == local {
            return Ok(false);
        }
        let lease = format!("--force-with-lease=refs/heads/{branch}:{expected}");
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        match git.run(&["push", "-q", &lease, "origin", &refspec]).await {
            Ok(_) => {}
            Err(GitError::Failed { args, dir, stderr }) if stderr.contains("stale info") => {
                return Err(GitError::Failed {
                    args,
                    dir,
                    stderr: format!(
                        "the remote branch `{branch}` changed since Baton last pushed it (someone else pushed to it); \
                         refusing to overwrite it: {stderr}"
                    ),
                });
            }
            Err(error) => return Err(error),
        }
        git.run(&["update-ref", &pushed_ref(branch), &local]).await?;
        Ok(true)
    }

    /// Takes up the task `branch` as another Baton instance left it on the remote (after a
    /// fetch): when the remote branch is not what this clone pushed last, another instance
    /// pushed its newer work there — the merge gate may even have rewritten it, rebased and
    /// squashed — and the local
    /// branch — and the task's `worktree` when it has the branch checked out — moves to the
    /// remote's commit, and the push lease becomes that commit, so the next push continues from
    /// the other instance's work instead of being refused. `Ok(true)` when the branch moved.
    pub async fn take_branch(&self, clone: &Path, worktree: &Path, branch: &str) -> Result<bool, GitError> {
        let git = self.git(clone);
        let Some(remote) = git.rev(&format!("refs/remotes/origin/{branch}")).await else {
            return Ok(false);
        };
        // Nobody else pushed since this clone last did: its own branch is the newest (it may hold
        // work a failed push left unpushed).
        if git.rev(&pushed_ref(branch)).await.as_deref() == Some(remote.as_str()) {
            return Ok(false);
        }
        let local = git.rev(&format!("refs/heads/{branch}")).await;
        let moved = match &local {
            Some(local) if *local == remote => false,
            Some(local) => {
                let on_branch = worktree.join(".git").exists()
                    && Git::new(worktree).run(&["symbolic-ref", "--short", "-q", "HEAD"]).await.ok().as_deref()
                        == Some(branch);
                if on_branch {
                    Git::new(worktree).run(&["reset", "-q", "--hard", &remote]).await?;
                } else {
                    git.run(&["update-ref", &format!("refs/heads/{branch}"), &remote, local]).await?;
                }
                true
            }
            None => {
                git.run(&["update-ref", &format!("refs/heads/{branch}"), &remote]).await?;
                true
            }
        };
        git.run(&["update-ref", &pushed_ref(branch), &remote]).await?;
        Ok(moved)
    }

    /// The commit `branch` points at on the remote, asked from any directory `dir` (no clone
    /// needed: `baton config check --online`), or `None` when the branch does not exist.
    pub async fn probe(&self, dir: &Path, branch: &str) -> Result<Option<String>, GitError> {
        let listing = self.git(dir).run(&["ls-remote", &self.url, &format!("refs/heads/{branch}")]).await?;
        Ok(listing.split_whitespace().next().map(str::to_string))
    }

    /// The commit `branch` points at on the remote, or `None` when it does not exist.
    pub async fn remote_head(&self, clone: &Path, branch: &str) -> Result<Option<String>, GitError> {
        let listing = self.git(clone).run(&["ls-remote", "origin", &format!("refs/heads/{branch}")]).await?;
        Ok(listing.split_whitespace().next().map(str::to_string))
    }

    /// Pushes `head` to the remote's `branch` as a fast-forward only (no force: git refuses
    /// anything else). `Ok(false)`: refused because the branch is not an ancestor of `head`.
    pub async fn push_fast_forward(&self, clone: &Path, branch: &str, head: &str) -> Result<bool, GitError> {
        let refspec = format!("{head}:refs/heads/{branch}");
        match self.git(clone).run(&["push", "-q", "origin", &refspec]).await {
            Ok(_) => Ok(true),
            Err(GitError::Failed { stderr, .. })
                if stderr.contains("non-fast-forward")
                    || stderr.contains("fetch first")
                    || stderr.contains("[rejected]") =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Deletes the task `branch` on the remote (a missing one is already deleted) and forgets
    /// Baton's lease on it. Refuses the default branch.
    pub async fn delete_branch(&self, clone: &Path, branch: &str, default_branch: &str) -> Result<(), GitError> {
        if branch == default_branch || branch.starts_with('-') || branch.is_empty() {
            return Err(GitError::Failed {
                args: format!("push origin --delete {branch}"),
                dir: clone.display().to_string(),
                stderr: format!("refusing to delete `{branch}`: only task branches"),
            });
        }
        let git = self.git(clone);
        if self.remote_head(clone, branch).await?.is_some() {
            git.run(&["push", "-q", "origin", "--delete", &format!("refs/heads/{branch}")]).await?;
        }
        if git.rev(&pushed_ref(branch)).await.is_some() {
            git.run(&["update-ref", "-d", &pushed_ref(branch)]).await?;
        }
        Ok(())
    }
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Authorization` header value Baton sends for `token` (tests check it on their server).
pub fn basic_auth(token: &str) -> String {
    format!("Basic {}", base64(format!("x-access-token:{token}").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
