//! Gitea and Forgejo REST (`https://<host>/api/v1`); Forgejo keeps Gitea's API.

use crate::error::ApiError;
use crate::forge::{
    CiState, Comment, ForgeApi, Issue, LabelEvent, MergeStyle, NewPullRequest, PullRequest, RepoInfo, fold_ci,
    open_pr_for, parse_comment, parse_issue, parse_pr, parse_repo, pr_patch, s,
};
use crate::http::{Auth, ClientConfig, HttpClient, Secret, branch_path, seg};
use async_trait::async_trait;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const MAX_PAGES: usize = 50;
const PAGE: &str = "50";

/// One Gitea/Forgejo repository.
#[derive(Debug, Clone)]
pub struct Gitea {
    http: HttpClient,
    owner: String,
    repo: String,
    /// Label ids by name, listed once and re-listed when a name is missing (a label created since).
    labels: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

impl Gitea {
    /// `config.base_url` ends in `/api/v1`; `config.auth` should be `Auth::GiteaToken`.
    pub fn new(config: ClientConfig, owner: &str, repo: &str) -> Result<Self, ApiError> {
        Ok(Gitea {
            http: HttpClient::new(config, HeaderMap::new())?,
            owner: owner.to_string(),
            repo: repo.to_string(),
            labels: Default::default(),
        })
    }

    pub fn with_token(base_url: &str, token: Secret, owner: &str, repo: &str) -> Result<Self, ApiError> {
        Gitea::new(ClientConfig::new(base_url, Auth::GiteaToken(token)), owner, repo)
    }

    fn path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", seg(&self.owner), seg(&self.repo))
    }

    /// Label ids by name: label calls take ids on every Gitea/Forgejo version.
    async fn label_id(&self, call: &str, name: &str) -> Result<Option<u64>, ApiError> {
        if let Some(id) = self.cached_label(name) {
            return Ok(Some(id));
        }
        let labels = self
            .http
            .get_all_linked(call, &self.path("/labels"), &[("limit", PAGE.to_string())], None, MAX_PAGES)
            .await?;
        let listed: std::collections::HashMap<String, u64> = labels
            .iter()
            .filter_map(|l| Some((crate::forge::s(l, "name"), l.get("id").and_then(Value::as_u64)?)))
            .collect();
        let id = listed.get(name).copied();
        if let Ok(mut cache) = self.labels.lock() {
            *cache = listed;
        }
        Ok(id)
    }

    fn forget_labels(&self) {
        if let Ok(mut cache) = self.labels.lock() {
            cache.clear();
        }
    }

    fn cached_label(&self, name: &str) -> Option<u64> {
        self.labels.lock().ok().and_then(|cache| cache.get(name).copied())
    }
}

#[async_trait]
impl ForgeApi for Gitea {
    fn kind(&self) -> &'static str {
        "gitea"
    }

    async fn repository(&self) -> Result<RepoInfo, ApiError> {
        let call = "gitea.repository";
        parse_repo(call, &self.http.get_json(call, &self.path(""), &[]).await?)
    }

    async fn find_open_pr(&self, branch: &str) -> Result<Option<PullRequest>, ApiError> {
        let call = "gitea.find_open_pr";
        let q = [("state", "open".to_string()), ("limit", PAGE.to_string())];
        let prs = self.http.get_all_linked(call, &self.path("/pulls"), &q, None, MAX_PAGES).await?;
        open_pr_for(call, &prs, branch)
    }

    async fn create_pr(&self, pr: &NewPullRequest) -> Result<PullRequest, ApiError> {
        let call = "gitea.create_pr";
        let body = json!({"head": pr.head, "base": pr.base, "title": pr.title, "body": pr.body});
        let reply = self.http.send(call, Method::POST, &self.path("/pulls"), &[], Some(&body)).await?;
        parse_pr(call, &reply.json(call)?)
    }

    async fn get_pr(&self, number: u64) -> Result<PullRequest, ApiError> {
        let call = "gitea.get_pr";
        parse_pr(call, &self.http.get_json(call, &self.path(&format!("/pulls/{number}")), &[]).await?)
    }

    async fn update_pr(&self, number: u64, title: Option<&str>, body: Option<&str>) -> Result<PullRequest, ApiError> {
        let call = "gitea.update_pr";
        let patch = pr_patch(title, body);
        let reply =
            self.http.send(call, Method::PATCH, &self.path(&format!("/pulls/{number}")), &[], Some(&patch)).await?;
        parse_pr(call, &reply.json(call)?)
    }

    async fn merge_pr(&self, number: u64, expected_head: &str, style: MergeStyle) -> Result<(), ApiError> {
        let call = "gitea.merge_pr";
        let style = match style {
            MergeStyle::Merge => "merge",
            MergeStyle::Squash => "squash",
            MergeStyle::Rebase => "rebase",
            MergeStyle::FastForwardOnly => "fast-forward-only",
        };
        // `Do` is the key every version reads; `head_commit_id` fences the merge to the re-tested head.
        let body = json!({
            "Do": style,
            "head_commit_id": expected_head,
            "delete_branch_after_merge": false,
            "force_merge": false,
            "merge_when_checks_succeed": false,
        });
        self.http.send(call, Method::POST, &self.path(&format!("/pulls/{number}/merge")), &[], Some(&body)).await?;
        Ok(())
    }

    async fn delete_branch(&self, branch: &str) -> Result<(), ApiError> {
        let call = "gitea.delete_branch";
        let path = self.path(&format!("/branches/{}", branch_path(branch)));
        match self.http.send(call, Method::DELETE, &path, &[], None).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn ci_state(&self, sha: &str) -> Result<CiState, ApiError> {
        let call = "gitea.ci_state";
        let combined = self.http.get_json(call, &self.path(&format!("/commits/{}/status", seg(sha))), &[]).await?;
        // No statuses: Gitea answers `state: ""`, `total_count: 0` (GitHub says "pending").
        let statuses = combined.get("statuses").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(fold_ci(&statuses, &[]))
    }

    async fn list_issues_with_label(&self, label: &str) -> Result<Vec<Issue>, ApiError> {
        let call = "gitea.list_issues";
        let q = [
            ("labels", label.to_string()),
            ("state", "open".to_string()),
            ("type", "issues".to_string()),
            ("limit", PAGE.to_string()),
        ];
        let items = self.http.get_all_linked(call, &self.path("/issues"), &q, None, MAX_PAGES).await?;
        items
            .iter()
            .filter(|i| i.get("pull_request").is_none_or(Value::is_null))
            .map(|i| parse_issue(call, i))
            .collect()
    }

    async fn get_issue(&self, number: u64) -> Result<Issue, ApiError> {
        let call = "gitea.get_issue";
        parse_issue(call, &self.http.get_json(call, &self.path(&format!("/issues/{number}")), &[]).await?)
    }

    async fn add_label(&self, number: u64, label: &str) -> Result<(), ApiError> {
        let call = "gitea.add_label";
        let id = self
            .label_id(call, label)
            .await?
            .ok_or_else(|| ApiError::invalid(call, format!("no label `{label}` in the repository")))?;
        let body = json!({"labels": [id]});
        let path = self.path(&format!("/issues/{number}/labels"));
        if let Err(error) = self.http.send(call, Method::POST, &path, &[], Some(&body)).await {
            // The cached id may be stale (the label was deleted and made again): list afresh next time.
            self.forget_labels();
            return Err(error);
        }
        Ok(())
    }

    async fn remove_label(&self, number: u64, label: &str) -> Result<(), ApiError> {
        let call = "gitea.remove_label";
        for fresh in [false, true] {
            let Some(id) = self.label_id(call, label).await? else { return Ok(()) };
            let path = self.path(&format!("/issues/{number}/labels/{id}"));
            match self.http.send(call, Method::DELETE, &path, &[], None).await {
                Ok(_) => return Ok(()),
                // Not on the issue — or a stale cached id: list the labels again once.
                Err(ApiError::NotFound { .. }) if !fresh => self.forget_labels(),
                Err(ApiError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn comment(&self, number: u64, body: &str) -> Result<(), ApiError> {
        let call = "gitea.comment";
        let body = json!({"body": body});
        self.http.send(call, Method::POST, &self.path(&format!("/issues/{number}/comments")), &[], Some(&body)).await?;
        Ok(())
    }

    async fn close_issue(&self, number: u64) -> Result<(), ApiError> {
        let call = "gitea.close_issue";
        let body = json!({"state": "closed"});
        self.http.send(call, Method::PATCH, &self.path(&format!("/issues/{number}")), &[], Some(&body)).await?;
        Ok(())
    }

    async fn list_comments(&self, number: u64, since: Option<&str>) -> Result<Vec<Comment>, ApiError> {
        let call = "gitea.list_comments";
        let mut q = vec![("limit", PAGE.to_string())];
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
        let call = "gitea.list_label_events";
        let q = [("limit", PAGE.to_string())];
        let items = self
            .http
            .get_all_linked(call, &self.path(&format!("/issues/{number}/timeline")), &q, None, MAX_PAGES)
            .await?;
        // A `label` entry whose body is "1" added the label; an empty body removed it.
        Ok(items
            .iter()
            .filter(|e| s(e, "type") == "label" && s(e, "body") == "1")
            .map(|e| LabelEvent {
                actor: e.get("user").map(|u| s(u, "login")).unwrap_or_default(),
                label: e.get("label").map(|l| s(l, "name")).unwrap_or_default(),
                created_at: s(e, "created_at"),
            })
            .collect())
    }
}
