//! `baton config check --online`: calls each configured outside service once — the PostgreSQL
//! database, the git remote of every `url` repository, the forge API of every hosted repository, every tracker — and says, per
//! service, whether the token works, the repository or project exists, and whether its webhook
//! secret is set, with the fix when it is not.

use baton::config::Config;
use baton_engine::settings::RepoSettings;
use serde::Serialize;
use std::sync::Arc;

/// One check against one service.
#[derive(Debug, Clone, Serialize)]
pub struct OnlineCheck {
    /// What was checked, e.g. `repos[demo] forge (github acme/app)`.
    pub subject: String,
    pub ok: bool,
    /// What was found (on success) or what is wrong.
    pub message: String,
    /// How to fix it (empty on success).
    pub fix: String,
    /// A problem that does not stop Baton (e.g. webhooks off: polling only).
    pub warning: bool,
}

impl OnlineCheck {
    fn ok(subject: &str, message: impl Into<String>) -> Self {
        OnlineCheck { subject: subject.into(), ok: true, message: message.into(), fix: String::new(), warning: false }
    }

    fn problem(subject: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        OnlineCheck { subject: subject.into(), ok: false, message: message.into(), fix: fix.into(), warning: false }
    }

    fn warning(subject: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        OnlineCheck { subject: subject.into(), ok: true, message: message.into(), fix: fix.into(), warning: true }
    }
}

/// The forge API of a hosted repository (`None` for a local forge).
pub fn forge_api(repo: &RepoSettings) -> anyhow::Result<Option<Arc<dyn baton_forges::ForgeApi>>> {
    use baton_engine::ForgeKind;
    use baton_forges::{Auth, ClientConfig, GitHub, Gitea, Secret};
    let forge = &repo.forge;
    if !forge.is_hosted() {
        return Ok(None);
    }
    let (owner, name) = forge.repo.as_deref().and_then(|r| r.split_once('/')).unwrap_or_default();
    let token = forge.token_env.as_deref().and_then(|n| std::env::var(n).ok()).unwrap_or_default();
    let api: Arc<dyn baton_forges::ForgeApi> = match forge.kind {
        ForgeKind::GitHub => {
            let url = forge.api_url.as_deref().unwrap_or("https://api.github.com");
            Arc::new(GitHub::new(ClientConfig::new(url, Auth::Bearer(Secret::new(token))), owner, name)?)
        }
        _ => {
            let url = forge.api_url.as_deref().unwrap_or_default();
            Arc::new(Gitea::new(ClientConfig::new(url, Auth::GiteaToken(Secret::new(token))), owner, name)?)
        }
    };
    Ok(Some(api))
}

/// Runs every online check of `config`, in configuration order.
pub async fn check(config: &Config) -> Vec<OnlineCheck> {
    let mut checks = Vec::new();
    if let Some(url) = &config.server.database_url {
        checks.push(check_database(url).await);
    }
    for repo in &config.engine.repos {
        if let Some(remote) = repo.remote() {
            checks.push(check_remote(config, repo, &remote).await);
        }
        if repo.forge.is_hosted() {
            checks.push(check_forge(repo).await);
        }
    }
    checks.extend(check_trackers(config).await);
    if let Some(telegram) = &config.telegram {
        checks.push(check_telegram(telegram).await);
    }
    checks
}

async fn check_database(url: &str) -> OnlineCheck {
    let subject = format!("server.database_url ({})", baton_store_postgres::redact_url(url));
    match baton_store_postgres::probe(url).await {
        Ok(found) => OnlineCheck::ok(&subject, found),
        Err(error) => OnlineCheck::problem(
            &subject,
            format!("cannot use the database: {error}"),
            "check the host, port, database name, user and password; the server must accept connections from \
             this machine (pg_hba.conf) and the user must own the database or may create tables in it",
        ),
    }
}

async fn check_remote(config: &Config, repo: &RepoSettings, remote: &baton_runner::Remote) -> OnlineCheck {
    let subject = format!("repos[{}] remote", repo.name);
    let dir = config.engine.data_dir.parent().map(std::path::Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let dir = if dir.is_dir() { dir } else { std::env::temp_dir() };
    match remote.probe(&dir, &repo.default_branch).await {
        Ok(Some(head)) => OnlineCheck::ok(
            &subject,
            format!("`{}` has `{}` at {}", repo.url.as_deref().unwrap_or_default(), repo.default_branch, short(&head)),
        ),
        Ok(None) => OnlineCheck::problem(
            &subject,
            format!("the remote has no branch `{}`", repo.default_branch),
            format!("set `repos[{}].default_branch` to the remote's default branch, or push it", repo.name),
        ),
        Err(error) => OnlineCheck::problem(
            &subject,
            format!("git cannot reach the remote: {error}"),
            match &repo.credentials_env {
                Some(var) => format!("check the URL, and that ${var} holds a token that may read and push it"),
                None => {
                    "check the URL; for a private remote set `credentials_env` to a variable holding a token".into()
                }
            },
        ),
    }
}

async fn check_forge(repo: &RepoSettings) -> OnlineCheck {
    let forge = &repo.forge;
    let want = forge.repo.clone().unwrap_or_default();
    let subject = format!("repos[{}] forge ({} {want})", repo.name, forge_kind(repo));
    let var = forge.token_env.clone().unwrap_or_default();
    if std::env::var(&var).map(|v| v.is_empty()).unwrap_or(true) {
        return OnlineCheck::problem(
            &subject,
            format!("${var} is not set"),
            format!("export {var}=<token> before running Baton (see docs/{}.md for its scopes)", forge_kind(repo)),
        );
    }
    let api = match forge_api(repo) {
        Ok(Some(api)) => api,
        Ok(None) => return OnlineCheck::ok(&subject, "local forge"),
        Err(error) => return OnlineCheck::problem(&subject, error.to_string(), "check `forge_api_url`"),
    };
    match api.repository().await {
        Ok(info) if !info.full_name.eq_ignore_ascii_case(&want) => OnlineCheck::problem(
            &subject,
            format!("the forge answered with `{}` (renamed or moved?)", info.full_name),
            format!("set `repos[{}].forge_repo = \"{}\"`", repo.name, info.full_name),
        ),
        Ok(info) if info.default_branch != repo.default_branch => OnlineCheck::problem(
            &subject,
            format!(
                "the forge's default branch is `{}`, the configuration says `{}`",
                info.default_branch, repo.default_branch
            ),
            format!("set `repos[{}].default_branch = \"{}\"`", repo.name, info.default_branch),
        ),
        Ok(info) if info.can_push == Some(false) => OnlineCheck::problem(
            &subject,
            format!("the token in ${var} may read `{}` but not push to it", info.full_name),
            format!("give the token write access to the repository (docs/{}.md)", forge_kind(repo)),
        ),
        Ok(info) => OnlineCheck::ok(
            &subject,
            format!("`{}` found, default branch `{}`, token may push", info.full_name, info.default_branch),
        ),
        Err(baton_forges::ApiError::Unauthorized { .. }) => OnlineCheck::problem(
            &subject,
            format!("the forge refused the token in ${var} (401/403)"),
            format!("create a new token with the scopes in docs/{}.md and put it in ${var}", forge_kind(repo)),
        ),
        Err(baton_forges::ApiError::NotFound { .. }) => OnlineCheck::problem(
            &subject,
            format!("`{want}` does not exist, or the token in ${var} cannot see it"),
            format!("check `repos[{}].forge_repo` and the token's repository access", repo.name),
        ),
        Err(error) => OnlineCheck::problem(
            &subject,
            error.to_string(),
            "check `forge_api_url` and that the forge is reachable from here",
        ),
    }
}

fn forge_kind(repo: &RepoSettings) -> &'static str {
    match repo.forge.kind {
        baton_engine::ForgeKind::GitHub => "github",
        baton_engine::ForgeKind::Local => "local",
        _ => "gitea",
    }
}

/// Each tracker: one API call (GitHub/Gitea: the repository; Plane: the project's states, with
/// the SPEC §8 states Baton uses), and its webhook secret.
async fn check_trackers(config: &Config) -> Vec<OnlineCheck> {
    use baton_engine::intake::IntakeSource;
    use baton_forges::{ForgeApi, GitHub, Gitea, Plane, Secret};
    let mut checks = Vec::new();
    for (i, tracker) in config.trackers.iter().enumerate() {
        let rule = &tracker.rule;
        let source = rule.source.as_str();
        let subject = format!("trackers[{i}] ({source} {})", rule.forge_repo);
        let token = Secret::new(tracker.token.clone());
        let var = &tracker.token_env;
        let check = if rule.source == IntakeSource::Plane {
            let workspace = tracker.workspace.as_deref().unwrap_or_default();
            match Plane::with_key(&tracker.api_url, token, workspace, &rule.forge_repo) {
                Ok(plane) => match plane.list_states().await {
                    Ok(states) => {
                        let wanted = [rule.start_label.as_str(), "In Progress", "Needs Input", "In Review", "Approved"]
                            .into_iter()
                            .chain(["Awaiting Deploy", "Deploying", "Done"]);
                        let missing: Vec<&str> = wanted.filter(|name| states.id_for(name).is_none()).collect();
                        let stop = states.id_for("STOP").is_some() || states.id_for("Cancelled").is_some();
                        if missing.is_empty() && stop {
                            OnlineCheck::ok(
                                &subject,
                                format!("project `{}` found with every state Baton uses", rule.forge_repo),
                            )
                        } else {
                            let mut missing = missing.join("`, `");
                            if !stop {
                                missing.push_str(if missing.is_empty() { "STOP" } else { "`, `STOP" });
                            }
                            OnlineCheck::problem(
                                &subject,
                                format!("the project has no state `{missing}`"),
                                "add the states in Plane's project settings (docs/plane.md lists them)",
                            )
                        }
                    }
                    Err(error) => api_problem(&subject, var, &error, "plane", "check `workspace` and `project`"),
                },
                Err(error) => OnlineCheck::problem(&subject, error.to_string(), "check `api_url`"),
            }
        } else {
            let (owner, name) = rule.forge_repo.split_once('/').unwrap_or((&rule.forge_repo, ""));
            let api: Result<Arc<dyn ForgeApi>, _> = match rule.source {
                IntakeSource::Gitea => {
                    Gitea::with_token(&tracker.api_url, token, owner, name).map(|a| Arc::new(a) as _)
                }
                _ => GitHub::with_token(&tracker.api_url, token, owner, name).map(|a| Arc::new(a) as _),
            };
            match api {
                Ok(api) => match api.repository().await {
                    Ok(info) => OnlineCheck::ok(&subject, format!("issues of `{}` readable", info.full_name)),
                    Err(error) => api_problem(&subject, var, &error, source, "check `forge_repo`"),
                },
                Err(error) => OnlineCheck::problem(&subject, error.to_string(), "check `api_url`"),
            }
        };
        checks.push(check);
        checks.push(webhook_secret(config, source, &subject));
    }
    checks
}

/// `[telegram]`: `getMe` proves the bot token (the bot's name is shown).
async fn check_telegram(t: &baton::config::TelegramConfig) -> OnlineCheck {
    let subject = "telegram";
    if t.bot_token.is_empty() {
        return OnlineCheck::problem(subject, "the bot token is not set", "export the variable `bot_token_env` names");
    }
    let config = baton_forges::TelegramConfig::new(&t.api_url, &t.bot_token, &t.chat_id);
    let client = match baton_forges::TelegramClient::new(config) {
        Ok(client) => client,
        Err(error) => return OnlineCheck::problem(subject, error.to_string(), "check `telegram.api_url`"),
    };
    match client.get_me().await {
        Ok(name) => OnlineCheck::ok(subject, format!("the bot token works (bot @{name})")),
        Err(error) if error.code == Some(401) || error.code == Some(404) => OnlineCheck::problem(
            subject,
            "Telegram refused the bot token (401/404)",
            "take the token from @BotFather (`/token`) and put it in the variable `bot_token_env` names",
        ),
        Err(error) => OnlineCheck::problem(subject, error.to_string(), "check `telegram.api_url` and the network"),
    }
}

/// A failed API call as a check: a refused token, a missing repository or project, or another error.
fn api_problem(subject: &str, var: &str, error: &baton_forges::ApiError, docs: &str, missing: &str) -> OnlineCheck {
    match error {
        baton_forges::ApiError::Unauthorized { .. } => OnlineCheck::problem(
            subject,
            format!("the service refused the token in ${var} (401/403)"),
            format!("create a new token with the scopes in docs/{docs}.md and put it in ${var}"),
        ),
        baton_forges::ApiError::NotFound { .. } => {
            OnlineCheck::problem(subject, "not found, or the token cannot see it", missing.to_string())
        }
        other => OnlineCheck::problem(subject, other.to_string(), "check `api_url` and that the service is reachable"),
    }
}

/// Whether a webhook source has its secret; when not, a warning (polling only).
pub(crate) fn webhook_secret(config: &Config, source: &str, subject: &str) -> OnlineCheck {
    let set = match source {
        "github" => config.webhooks.github.is_some(),
        "gitea" => config.webhooks.gitea.is_some(),
        _ => config.webhooks.plane.is_some(),
    };
    if set {
        OnlineCheck::ok(subject, format!("webhook secret set: `/webhooks/{source}` accepts signed deliveries"))
    } else {
        OnlineCheck::warning(
            subject,
            format!("no `webhooks.{source}_secret`: `/webhooks/{source}` is off and changes arrive by polling only"),
            format!("set `[webhooks] {source}_secret = \"${{VAR}}\"` and the same secret on the {source} webhook"),
        )
    }
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

/// Prints the checks; returns whether all passed.
pub fn print(checks: &[OnlineCheck], json: bool) -> bool {
    let ok = checks.iter().all(|c| c.ok);
    if json {
        let value = serde_json::json!({ "ok": ok, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return ok;
    }
    if checks.is_empty() {
        say!("nothing to check online: no url repository, hosted forge or tracker is configured");
    }
    for c in checks {
        let mark = match (c.ok, c.warning) {
            (true, false) => "ok  ",
            (true, true) => "warn",
            (false, _) => "FAIL",
        };
        say!("{mark} {}: {}", c.subject, c.message);
        if !c.fix.is_empty() {
            say!("     fix: {}", c.fix);
        }
    }
    ok
}
