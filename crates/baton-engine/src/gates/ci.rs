//! The `ci_green` gate: the re-tested head is pushed to the task branch, the task's pull request
//! is opened or brought up to date, and the hosted forge's CI must be green on exactly that head.
//! Pending checks defer (the job runs again later), a red check fails with its log tail (the
//! rollback carries it into the developer's prompt). A repository on the local forge passes.

use super::GateContext;
use crate::engine::forge_repo;
use crate::settings::{CiPolicy, ForgeKind, RepoSettings};
use baton_adapters::AdapterError;
use baton_adapters::forge::{CiStatus, PullRequestSpec};
use baton_domain::{GateVerdict, Pipeline, Verdict};

const GATE: &str = "ci_green";

/// Starts the reason of a gate error caused by a forge that cannot be reached right now (rate
/// limits excepted: they defer); the executor treats it as infrastructure.
pub const FORGE_UNAVAILABLE: &str = "the forge is unavailable right now";

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

/// Whether an adapter error is the forge's rate limit (waited out by deferring).
fn rate_limited(error: &AdapterError) -> bool {
    error.is_transient() && error.to_string().contains("rate limited")
}

/// A gate verdict for a failed forge call.
fn forge_error(what: &str, error: &AdapterError) -> GateVerdict {
    if rate_limited(error) {
        return GateVerdict::new(GATE, Verdict::Defer, format!("{what}: the forge's rate limit: {error}"));
    }
    if error.is_transient() {
        return GateVerdict::new(GATE, Verdict::Error, format!("{FORGE_UNAVAILABLE}: {what}: {error}"));
    }
    GateVerdict::new(GATE, Verdict::Error, format!("{what}: {error}"))
}

pub async fn check(ctx: &GateContext<'_>) -> GateVerdict {
    let Some(head) = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await else {
        return GateVerdict::new(GATE, Verdict::Error, "the worktree has no HEAD");
    };
    if !ctx.repo.forge.is_hosted() {
        let mut verdict =
            GateVerdict::new(GATE, Verdict::Pass, format!("{} has no hosted CI (local forge)", ctx.repo.name));
        verdict.evidence = Some(head);
        return verdict;
    }
    let Some(remote) = ctx.repo.remote() else {
        return GateVerdict::new(
            GATE,
            Verdict::Error,
            format!("repository {} has a hosted forge but no `url` to push to", ctx.repo.name),
        );
    };
    // The forge's CI runs on the task branch: it must hold exactly the re-tested head.
    let pushed =
        ctx.timed(ctx.vcs.push_branch(&ctx.repo.path, &remote, &ctx.task.branch, &ctx.repo.default_branch)).await;
    if let Err(error) = pushed {
        return GateVerdict::new(
            GATE,
            Verdict::Error,
            format!("pushing the re-tested head {} to {} failed: {error}", short(&head), ctx.task.branch),
        );
    }
    let repo = forge_repo(ctx.repo);
    let spec = pull_request_spec(
        ctx.repo,
        ctx.pipeline,
        &ctx.task.work_item_id,
        &ctx.task.title,
        &ctx.task.branch,
        &ctx.task.state.display(),
    );
    let pull_request = match ctx.timed(ctx.forge.sync_pull_request(&repo, &spec)).await {
        Ok(pr) => pr.map(|pr| pr.url),
        Err(error) => return forge_error("updating the pull request", &error),
    };
    let status = match ctx.timed(ctx.forge.ci_status(&repo, &head)).await {
        Ok(status) => status,
        Err(error) => return forge_error(&format!("reading CI of {}", short(&head)), &error),
    };
    let pass = |reason: String| {
        let mut verdict = GateVerdict::new(GATE, Verdict::Pass, reason);
        verdict.evidence = Some(head.clone());
        verdict
    };
    let verdict = match status {
        CiStatus::Green => pass(format!("CI is green on {}", short(&head))),
        CiStatus::NoChecks if ctx.repo.forge.ci == CiPolicy::Optional => {
            pass(format!("no CI checks on {} (ci = \"optional\")", short(&head)))
        }
        CiStatus::NoChecks => GateVerdict::new(
            GATE,
            Verdict::Defer,
            format!(
                "waiting for CI on {}: no check reported yet (ci = \"required\"; set ci = \"optional\" for a \
                 repository without CI)",
                short(&head)
            ),
        ),
        CiStatus::Pending { running } if running.is_empty() => {
            GateVerdict::new(GATE, Verdict::Defer, format!("waiting for CI on {}: checks are running", short(&head)))
        }
        CiStatus::Pending { running } => GateVerdict::new(
            GATE,
            Verdict::Defer,
            format!("waiting for CI on {}: {} running", short(&head), running.join(", ")),
        ),
        CiStatus::Red { check, url, log_tail } => {
            let link = url.as_deref().unwrap_or("no link");
            GateVerdict::new(
                GATE,
                Verdict::Fail,
                format!("CI check `{check}` failed on {} ({link}); log tail:\n{log_tail}", short(&head)),
            )
        }
    };
    verdict.with_link(pull_request)
}

/// The web address of a hosted repository (`https://github.com/owner/name`), from its API URL.
pub fn web_url(repo: &RepoSettings) -> Option<String> {
    let name = repo.forge.repo.as_deref()?;
    let api = repo.forge.api_url.as_deref().unwrap_or("https://api.github.com").trim_end_matches('/');
    let host = match repo.forge.kind {
        ForgeKind::Local => return None,
        ForgeKind::GitHub if api == "https://api.github.com" => "https://github.com",
        ForgeKind::GitHub => api.trim_end_matches("/api/v3"),
        ForgeKind::Gitea => api.trim_end_matches("/api/v1"),
    };
    Some(format!("{host}/{name}"))
}

/// The task's pull request: title `<WORK-ID>: <title>`, a body with its status, links to its
/// artifacts on the branch and a marker naming the task. The same inputs give the same text, so
/// re-syncing changes nothing.
pub fn pull_request_spec(
    repo: &RepoSettings,
    pipeline: &Pipeline,
    work_item: &str,
    title: &str,
    branch: &str,
    status: &str,
) -> PullRequestSpec {
    let clean = |text: &str| -> String { text.chars().filter(|c| !c.is_control()).collect() };
    let title = format!("{work_item}: {}", clean(title).chars().take(200).collect::<String>());
    let dir = super::artifact_relative_path(work_item, "");
    let dir = dir.trim_end_matches('/');
    let tree = match repo.forge.kind {
        ForgeKind::Gitea => "src/branch",
        _ => "blob",
    };
    let link = |path: &str| match web_url(repo) {
        Some(web) => format!("[`{path}`]({web}/{tree}/{branch}/{path})"),
        None => format!("`{path}`"),
    };
    let mut body = format!(
        "<!-- baton:{work_item} -->\n**{work_item}** is carried by Baton. Status: `{}`.\n\n\
         Baton merges the head it re-tested once CI is green; pushes to this branch by others are refused.\n\n\
         Artifacts on the branch (under {}):\n",
        clean(status),
        link(dir)
    );
    for name in pipeline.stages.iter().filter_map(|s| s.artifact.as_deref()) {
        body.push_str(&format!("- {}\n", link(&format!("{dir}/{name}"))));
    }
    PullRequestSpec { branch: branch.to_string(), title, body }
}
