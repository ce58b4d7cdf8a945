//! GitHub REST v3 (`https://api.github.com`, or `https://<host>/api/v3` on Enterprise).

use crate::error::ApiError;
use crate::forge::{
    CiState, Comment, ForgeApi, Issue, LabelEvent, MergeStyle, NewPullRequest, PullRequest, RepoInfo, fold_ci,
    open_pr_for, parse_comment, parse_issue, parse_pr, parse_repo, pr_patch, s,
};
use crate::http::{Auth, ClientConfig, HttpClient, Secret, branch_path, seg};
use async_trait::async_trait;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

const MAX_PAGES: usize = 50;

/// One GitHub repository.
#[derive(Debug, Clone)]
pub struct GitHub {
    http: HttpClient,
    owner: String,
    repo: String,
}

impl GitHub {
    /// `config.auth` should be `Auth::Bearer`; [`GitHub::with_token`] builds it.
    pub fn new(config: ClientConfig, owner: &str, repo: &str) -> Result<Self, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert("Accept", HeaderValue::from_static("application/vnd.github+json"));
        headers.insert("X-GitHub-Api-Version", HeaderValue::from_static("2022-11-28"));
        Ok(GitHub { http: HttpClient::new(config, headers)?, owner: owner.to_string(), repo: repo.to_string() })
    }

    pub fn with_token(base_url: &str, token: Secret, owner: &str, repo: &str) -> Result<Self, ApiError> {
        GitHub::new(ClientConfig::new(base_url, Auth::Bearer(token)), owner, repo)
    }

    fn path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", seg(&self.owner), seg(&self.repo))
    }
}

#[async_trait]
impl ForgeApi for GitHub {
    fn kind(&self) -> &'static str {
        "github"
    }

    async fn repository(&self) -> Result<RepoInfo, ApiError> {
        let call = "github.repository";
        parse_repo(call, &self.http.get_json(call, &self.path(""), &[]).await?)
    }

    async fn find_open_pr(&self, branch: &str) -> Result<Option<PullRequest>, ApiError> {
        let call = "github.find_open_pr";
        let q = [
            ("state", "open".to_string()),
            ("head", format!("{}:{branch}", self.owner)),
            ("per_page", "100".to_string()),
        ];
        let prs = self.http.get_all_linked(call, &self.path("/pulls"), &q, None, MAX_PAGES).await?;
        open_pr_for(call, &prs, branch)
    }

    async fn create_pr(&self, pr: &NewPullRequest) -> Result<PullRequest, ApiError> {
        let call = "github.create_pr";
        let body = json!({"title": pr.title, "head": pr.head, "base": pr.base, "body": pr.body});
        let reply = self.http.send(call, Method::POST, &self.path("/pulls"), &[], Some(&body)).await?;
        parse_pr(call, &reply.json(call)?)
    }

    async fn get_pr(&self, number: u64) -> Result<PullRequest, ApiError> {
        let call = "github.get_pr";
        parse_pr(call, &self.http.get_json(call, &self.path(&format!("/pulls/{number}")), &[]).await?)
    }

    async fn update_pr(&self, number: u64, title: Option<&str>, body: Option<&str>) -> Result<PullRequest, ApiError> {
        let call = "github.update_pr";
        let patch = pr_patch(title, body);
        let reply =
            self.http.send(call, Method::PATCH, &self.path(&format!("/pulls/{number}")), &[], Some(&patch)).await?;
        parse_pr(call, &reply.json(call)?)
    }

    async fn merge_pr(&self, number: u64, expected_head: &str, style: MergeStyle) -> Result<(), ApiError> {
        let call = "github.merge_pr";
        let method = match style {
            MergeStyle::Merge => "merge",
            MergeStyle::Squash => "squash",
            MergeStyle::Rebase => "rebase",
            MergeStyle::FastForwardOnly => {
                return Err(ApiError::invalid(
                    call,
                    "GitHub has no fast-forward-only merge; use squash, rebase or merge",
                ));
            }
        };
        let body = json!({"merge_method": method, "sha": expected_head});
        let reply =
            self.http.send(call, Method::PUT, &self.path(&format!("/pulls/{number}/merge")), &[], Some(&body)).await?;
        let v = reply.json(call)?;
        if v.get("merged").and_then(Value::as_bool) == Some(false) {
            return Err(ApiError::Conflict {
                call: call.into(),
                status: reply.status.as_u16(),
                message: crate::forge::s(&v, "message"),
            });
        }
        Ok(())
    }

    async fn delete_branch(&self, branch: &str) -> Result<(), ApiError> {
        let call = "github.delete_branch";
        let path = self.path(&format!("/git/refs/heads/{}", branch_path(branch)));
        match self.http.send(call, Method::DELETE, &path, &[], None).await {
            Ok(_) => Ok(()),
            // 422 "Reference does not exist": already deleted (a re-driven effect).
            Err(ApiError::Invalid { message, .. }) if message.contains("422") => Ok(()),
            Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn ci_state(&self, sha: &str) -> Result<CiState, ApiError> {
        let call = "github.ci_state";
        let combined = self.http.get_json(call, &self.path(&format!("/commits/{}/status", seg(sha))), &[]).await?;
        let statuses = combined.get("statuses").and_then(Value::as_array).cloned().unwrap_or_default();
        let runs = self
            .http
            .get_all_linked(
                call,
                &self.path(&format!("/commits/{}/check-runs", seg(sha))),
                &[("per_page", "100".to_string())],
                Some("check_runs"),
                MAX_PAGES,
            )
            .await?;
        Ok(fold_ci(&statuses, &runs))
    }

    async fn list_issues_with_label(&self, label: &str) -> Result<Vec<Issue>, ApiError> {
        let call = "github.list_issues";
        let q = [("labels", label.to_string()), ("state", "open".to_string()), ("per_page", "100".to_string())];
        let items = self.http.get_all_linked(call, &self.path("/issues"), &q, None, MAX_PAGES).await?;
        // GitHub lists pull requests as issues too; they carry a `pull_request` key.
        items.iter().filter(|i| i.get("pull_request").is_none()).map(|i| parse_issue(call, i)).collect()
    }

    async fn get_issue(&self, number: u64) -> Result<Issue, ApiError> {
        let call = "github.get_issue";
        parse_issue(call, &self.http.get_json(call, &self.path(&format!("/issues/{number}")), &[]).await?)
    }

    async fn add_label(&self, number: u64, label: &str) -> Result<(), ApiError> {
        let call = "github.add_label";
        let body = json!({"labels": [label]});
        self.http.send(call, Method::POST, &self.path(&format!("/issues/{number}/labels")), &[], Some(&body)).await?;
        Ok(())
    }

    async fn remove_label(&self, number: u64, label: &str) -> Result<(), ApiError> {
        let call = "github.remove_label";
        let path = self.path(&format!("/issues/{number}/labels/{}", seg(label)));
        match self.http.send(call, Method::DELETE, &path, &[], None).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn comment(&self, number: u64, body: &str) -> Result<(), ApiError> {
        let call = "github.comment";
        let body = json!({"body": body});
        self.http.send(call, Method::POST, &self.path(&format!("/issues/{number}/comments")), &[], Some(&body)).await?;
        Ok(())
    }

    async fn close_issue(&self, number: u64) -> Result<(), ApiError> {
        let call = "github.close_issue";
        let body = json!({"state": "closed"});
        self.http.send(call, Method::PATCH, &self.path(&format!("/issues/{number}")), &[], Some(&body)).await?;
        Ok(())
    }

    async fn list_comments(&self, number: u64, since: Option<&str>) -> Result<Vec<Comment>, ApiError> {
        let call = "github.list_comments";
        let mut q = vec![("per_page", "100".to_string())];
        if let Some(since) = since {
            q.push(("since", since.to_string()));
        }
        let items = self
            .http
            .get_all_linked(call, &self.path(&format!("/issues/{number}/comments")), &q, None, MAX_PAGES)
            .await?;
        Ok(items.iter().map(parse_comment).collect())
    }

    async fn list_label_events(&self, number: u64) -> Result<Vec<LabelEvent>, ApiError> {
        let call = "github.list_label_events";
        let q = [("per_page", "100".to_string())];
        let items = self
            .http
            .get_all_linked(call, &self.path(&format!("/issues/{number}/events")), &q, None, MAX_PAGES)
            .await?;
        Ok(items
            .iter()
            .filter(|e| s(e, "event") == "labeled")
            .map(|e| LabelEvent {
                actor: e.get("actor").map(|a| s(a, "login")).unwrap_or_default(),
                label: e.get("label").map(|l| s(l, "name")).unwrap_or_default(),
                created_at: s(e, "created_at"),
            })
            .collect())
    }
}
