//! Reading each section of `baton.toml` into the engine's settings and checking what it means:
//! `[server]`, `[limits]`, `[budgets]`, `[[repos]]` (names, prefixes, git checkouts and branches),
//! `[agents.<role>]`, `[pipeline]`, `[sandbox]`, `[webhooks]` and `[retention]`.

use super::diagnostics::{suggest_fix, type_name};
use super::sources::{clean, valid_env_name};
use super::{Config, ConfigIssue, DEFAULT_LISTEN, Loader, ServerConfig, TrackerConfig, default_data_dir};
use baton_domain::ids::{valid_prefix, valid_repo_name};
use baton_domain::pipeline::{Actor, GateSpec, Pipeline, PipelineProblem, StageSpec};
use baton_engine::intake::{IntakeRule, IntakeSource};
use baton_engine::retro::RetroSettings;
use baton_engine::{
    AdapterKind, AgentSettings, Budgets, CiPolicy, EngineSettings, ForgeKind, Limits, MergeStyle, RepoForge,
    RepoSettings, Retention, SandboxSettings,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// The top-level sections this version understands.
pub(super) const SECTIONS: &[&str] = &[
    "server",
    "limits",
    "budgets",
    "repos",
    "agents",
    "pipeline",
    "pipelines",
    "sandbox",
    "webhooks",
    "trackers",
    "telegram",
    "notifiers",
    "retention",
    "features",
    "usage",
    "pricing",
    "retro",
];

/// The longest retention accepted (100 years); `0` is the way to keep everything.
const RETENTION_DAYS_MAX: u32 = 36_500;

/// Shortest webhook secret accepted: the signature is only as strong as the secret.
const WEBHOOK_SECRET_CHARS_MIN: usize = 16;

/// Sections SPEC §13 names that this version does not read yet.
const PLANNED_SECTIONS: &[&str] = &["forges"];

/// Agent roles always accepted under `[agents.<role>]`.
const BUILTIN_ROLES: &[&str] = &["default", "analyst", "architect", "developer", "reviewer", "tester", "retro"];

/// Keys of one `[[pipeline.stages]]` entry (`StageSpec` itself ignores unknown keys); the stage's
/// own actor choice ([`super::pipelines::STAGE_ACTOR_KEYS`]) is read apart.
const STAGE_KEYS: &[&str] = &[
    "name",
    "actor",
    "artifact",
    "gates",
    "confirm_before",
    "on_gate_fail",
    "agent",
    "adapter",
    "model",
    "prompt_template",
    "timeout_secs",
    "stall_timeout_secs",
    "budget_usd",
];

/// The forge keys of a `[[repos]]` entry (read apart from the git ones).
pub(super) const FORGE_KEYS: &[&str] =
    &["forge", "forge_repo", "forge_api_url", "forge_token_env", "merge_style", "ci"];

/// Limits that make Baton useless at 0 (nothing runs, or every run is stopped at once).
const LIMITS_NONZERO: &[&str] = &[
    "heartbeat_secs",
    "instance_grace_secs",
    "title_chars_max",
    "body_bytes_max",
    "answer_bytes_max",
    "external_ref_bytes_max",
    "running_max",
    "running_per_repo_max",
    "agent_timeout_secs",
    "stall_timeout_secs",
    "command_timeout_secs",
    "lease_ttl_secs",
    "poll_interval_ms",
];

impl Loader<'_> {
    /// Reads every section of the parsed document; `None` when any of them has a problem.
    pub(super) fn build(&mut self, mut doc: Table, source: Option<PathBuf>, baton_exe: PathBuf) -> Option<Config> {
        for key in doc.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                let issue = unknown_section(key);
                self.issues.push(issue);
            }
        }
        let mut roles = pipeline_roles(doc.get("pipeline"), doc.get("pipelines"));
        // The agent entry `[retro] agent` names is an entry of its own, like a stage's `agent`.
        if let Some(agent) = doc.get("retro").and_then(|r| r.get("agent")).and_then(Value::as_str)
            && !roles.iter().any(|r| r == agent)
        {
            roles.push(agent.to_string());
        }
        // Each repository's `pipeline = "<name>"` is resolved once the named pipelines are read.
        let repo_pipelines = super::pipelines::take_repo_pipelines(&mut doc);
        let server = self.server(doc.remove("server"));
        let limits = self.limits(doc.remove("limits"));
        let budgets = self.budgets(doc.remove("budgets"));
        let repos = self.repos(doc.remove("repos"));
        let agents = self.agents(doc.remove("agents"), &roles);
        let pipeline = self.pipeline("pipeline", doc.remove("pipeline"), agents.as_ref(), limits.as_ref());
        let pipelines = self.pipelines(doc.remove("pipelines"), agents.as_ref(), limits.as_ref());
        let sandbox = self.sandbox(doc.remove("sandbox"), server.as_ref().map(|(s, _)| s.data_dir.as_path()));
        let webhooks = self.webhooks(doc.remove("webhooks"));
        let trackers = self.trackers(doc.remove("trackers"), repos.as_deref().unwrap_or(&[]));
        let telegram = self.telegram(doc.remove("telegram"));
        let notifiers = self.notifiers(doc.remove("notifiers"));
        let retention = self.retention(doc.remove("retention"));
        let features = self.features(doc.remove("features"), repos.as_deref());
        let usage = self.usage(doc.remove("usage"), doc.remove("pricing"));
        let retro = self.retro(doc.remove("retro"), agents.as_ref(), pipeline.as_ref(), pipelines.as_ref());
        let (server, env_passthrough) = server?;
        let mut pipeline = pipeline?;
        let mut pipelines = pipelines?;
        if repos.as_deref().is_some_and(|r| r.iter().any(|repo| repo.forge.is_hosted())) {
            with_ci_gate(&mut pipeline);
            pipelines.values_mut().for_each(with_ci_gate);
        }
        let mut repos = repos;
        if let Some(repos) = repos.as_mut() {
            self.assign_pipelines(repos, repo_pipelines, &pipelines)?;
        }
        let engine = EngineSettings {
            data_dir: server.data_dir.clone(),
            limits: limits?,
            repos: repos?,
            agents: agents?,
            pipeline,
            budgets: budgets?,
            baton_exe,
            env_passthrough,
        };
        // Several instances on one database each work in their own clone of a `url` repository
        // (docs/postgres.md); a merge-queue batch's one commit lives only in the clone that built
        // it, so batches stay with SQLite's single instance for now.
        if server.database_url.is_some() {
            for (i, repo) in engine.repos.iter().enumerate() {
                if repo.merge_batch > 1 {
                    self.issue(
                        format!("repos[{i}].merge_batch"),
                        "merge-queue batches are not supported with several instances yet (a batch's commit lives in one instance's clone)",
                        "remove `merge_batch` (speculative testing still tests several changes at once), or remove `server.database_url`",
                    );
                }
            }
        }
        // A `url` repository is worked on in Baton's own clone under the data dir.
        let mut engine = engine;
        for repo in engine.repos.iter_mut().filter(|r| r.url.is_some()) {
            repo.path = engine.data_dir.join("repos").join(format!("{}.git", repo.name));
        }
        let mut sandbox = sandbox?;
        // Agents never read the configuration: it may hold `server.api_token` or other secrets.
        sandbox.masked_files.extend(source.iter().cloned());
        let telegram = telegram?;
        let mut webhooks = webhooks?;
        webhooks.telegram = telegram.as_ref().and_then(|t| t.webhook_secret.clone());
        Some(Config {
            server,
            engine,
            sandbox,
            webhooks,
            trackers: trackers?,
            telegram,
            notifiers: notifiers?,
            retention: retention?,
            features: features?,
            usage: usage?,
            retro: retro?,
            source,
            deferred: Vec::new(),
        })
    }

    /// Takes a section that must be a table; reports it otherwise.
    pub(super) fn section_table(&mut self, key: &str, value: Option<Value>, how: &str) -> Option<Table> {
        match value {
            None => Some(Table::new()),
            Some(Value::Table(table)) => Some(table),
            Some(other) => {
                self.issue(key, format!("`{key}` must be a table, not {}", type_name(&other)), how.to_string());
                None
            }
        }
    }

    fn server(&mut self, raw: Option<Value>) -> Option<(ServerConfig, Vec<String>)> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ServerSection {
            #[serde(default)]
            listen: Option<String>,
            #[serde(default)]
            data_dir: Option<PathBuf>,
            #[serde(default)]
            database_url: Option<String>,
            #[serde(default)]
            instance_id: Option<String>,
            #[serde(default)]
            host: Option<String>,
            #[serde(default)]
            api_token: Option<String>,
            #[serde(default)]
            read_requires_token: bool,
            #[serde(default)]
            secret_env: Vec<String>,
            #[serde(default)]
            agent_env: Vec<String>,
            #[serde(default)]
            max_connections: Option<usize>,
            #[serde(default)]
            header_timeout_secs: Option<u64>,
            #[serde(default)]
            idle_timeout_secs: Option<u64>,
            #[serde(default)]
            allowed_hosts: Vec<String>,
            #[serde(default = "on")]
            metrics: bool,
            #[serde(default = "on")]
            queue_api: bool,
            #[serde(default = "on")]
            events: bool,
            #[serde(default)]
            dashboard: Option<String>,
        }
        fn on() -> bool {
            true
        }
        let mut table = self.section_table("server", raw, "write it as a [server] section")?;
        split_string_list(&mut table, "agent_env", |c| c.is_whitespace() || c == ',');
        split_string_list(&mut table, "secret_env", |c| c.is_whitespace() || c == ',');
        split_string_list(&mut table, "allowed_hosts", |c| c.is_whitespace() || c == ',');
        let parsed = self.deserialize::<ServerSection>("server", table);
        let bad = |key: &str| parsed.bad.iter().any(|b| b == key);
        let (skip_listen, skip_data_dir, skip_env) = (bad("listen"), bad("data_dir"), bad("agent_env"));
        let sound = parsed.bad.is_empty();
        let section = parsed.value?;
        let listen_text = section.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = parse_listen(&listen_text);
        if listen.is_none() && !skip_listen {
            self.issue(
                "server.listen",
                format!("`{listen_text}` is not an address and port"),
                format!("write an IP address and a port, e.g. \"{DEFAULT_LISTEN}\" or \"0.0.0.0:8377\""),
            );
        }
        let data_dir = match section.data_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                if !skip_data_dir {
                    self.issue(
                        "server.data_dir",
                        "the data directory is empty",
                        "name a directory, e.g. \"baton-data\"",
                    );
                }
                None
            }
            Some(dir) => Some(self.resolve("server.data_dir", &dir)),
            None => Some(clean(&self.cwd.join(default_data_dir(self.env)))),
        };
        let database_url = self.database_url(section.database_url);
        let instance_id = section.instance_id.filter(|id| !id.trim().is_empty());
        if let Some(id) = &instance_id
            && (id.len() > 100 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
        {
            self.issue(
                "server.instance_id",
                format!("`{id}` is not a usable instance id"),
                "use up to 100 letters, digits, `-`, `_`, `.` or `:`, unique per `baton serve`, e.g. \"build-1\"",
            );
        }
        let host = section.host.filter(|h| !h.trim().is_empty());
        if let Some(host) = &host
            && (host.len() > 253 || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            self.issue(
                "server.host",
                format!("`{host}` is not a usable machine name"),
                "use the machine's host name (letters, digits, `-`, `_`, `.`), or leave `host` out to use it",
            );
        }
        let api_token = section.api_token.filter(|token| !token.is_empty());
        if let Some(token) = &api_token {
            // A token written literally in the file is hidden from messages too.
            self.secrets.push((token.clone(), "<api_token>".to_string()));
        }
        for (i, name) in section.agent_env.iter().enumerate() {
            if !skip_env && !valid_env_name(name) {
                self.issue(
                    format!("server.agent_env[{i}]"),
                    format!("`{name}` is not an environment variable name"),
                    "list variable names only (letters, digits, `_`), e.g. [\"ANTHROPIC_API_KEY\"]",
                );
            }
        }
        let limits = self.server_limits(
            section.max_connections,
            section.header_timeout_secs,
            section.idle_timeout_secs,
            &section.allowed_hosts,
        );
        let dashboard = match section.dashboard.as_deref().map(baton_http::DashboardMode::parse) {
            None => Some(baton_http::DashboardMode::default()),
            Some(Ok(mode)) => Some(mode),
            Some(Err(why)) => {
                self.issue("server.dashboard", why, "write dashboard = \"on\", \"read_only\" or \"off\"");
                None
            }
        };
        let server = ServerConfig {
            listen: listen?,
            data_dir: data_dir?,
            database_url,
            instance_id,
            host,
            api_token,
            read_requires_token: section.read_requires_token,
            secret_env: section.secret_env.clone(),
            max_connections: limits.0,
            header_timeout_secs: limits.1,
            idle_timeout_secs: limits.2,
            allowed_hosts: section.allowed_hosts,
            metrics: section.metrics,
            queue_api: section.queue_api,
            events: section.events,
            dashboard: dashboard?,
        };
        sound.then_some((server, section.agent_env))
    }

    /// `server.database_url`: empty or absent means the SQLite file in the data directory; else a
    /// PostgreSQL URL, checked for shape here (`config check --online` connects). Its password is
    /// a secret, masked in every message.
    fn database_url(&mut self, url: Option<String>) -> Option<String> {
        let url = url.filter(|u| !u.trim().is_empty())?;
        let example = "write postgres://USER:PASSWORD@HOST:5432/DATABASE (the password from the environment: \
                       \"postgres://baton:${BATON_DB_PASSWORD}@db:5432/baton\"), or remove the key to use SQLite";
        if !baton_store_postgres::is_postgres_url(&url) {
            let scheme = url.split("://").next().unwrap_or_default();
            self.issue(
                "server.database_url",
                format!("`{scheme}://…` is not a PostgreSQL URL (Baton stores in SQLite or PostgreSQL)"),
                example,
            );
            return None;
        }
        if let Some(password) = baton_store_postgres::url_password(&url) {
            self.secrets.push((password, "<database password>".to_string()));
        }
        if let Err(why) = baton_store_postgres::check_url(&url) {
            self.issue("server.database_url", why, example);
            return None;
        }
        Some(url)
    }

    /// The HTTP server's limits with their defaults, each checked: (max connections, header
    /// timeout, idle timeout); an out-of-range value is an issue and falls back to the default.
    fn server_limits(
        &mut self,
        max_connections: Option<usize>,
        header_timeout_secs: Option<u64>,
        idle_timeout_secs: Option<u64>,
        allowed_hosts: &[String],
    ) -> (usize, u64, u64) {
        use baton_http::server::{
            HEADER_TIMEOUT_SECS_DEFAULT, IDLE_TIMEOUT_SECS_DEFAULT, MAX_CONNECTIONS_DEFAULT, MAX_CONNECTIONS_LIMIT,
        };
        /// Longest accepted timeout: a day.
        const TIMEOUT_SECS_MAX: u64 = 86_400;
        let max_connections = max_connections.unwrap_or(MAX_CONNECTIONS_DEFAULT);
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&max_connections) {
            self.issue(
                "server.max_connections",
                format!("{max_connections} is out of range"),
                format!("set it between 1 and {MAX_CONNECTIONS_LIMIT} (default {MAX_CONNECTIONS_DEFAULT})"),
            );
        }
        let mut timeout = |key: &str, value: Option<u64>, default: u64| {
            let value = value.unwrap_or(default);
            if !(1..=TIMEOUT_SECS_MAX).contains(&value) {
                self.issue(
                    format!("server.{key}"),
                    format!("{value} is out of range"),
                    format!("set it between 1 and {TIMEOUT_SECS_MAX} seconds (default {default})"),
                );
            }
            value
        };
        let header = timeout("header_timeout_secs", header_timeout_secs, HEADER_TIMEOUT_SECS_DEFAULT);
        let idle = timeout("idle_timeout_secs", idle_timeout_secs, IDLE_TIMEOUT_SECS_DEFAULT);
        for (i, entry) in allowed_hosts.iter().enumerate() {
            if entry.trim() != "*"
                && let Err(why) = baton_http::guard::HostPattern::parse(entry)
            {
                self.issue(
                    format!("server.allowed_hosts[{i}]"),
                    why,
                    "write a host name or IP address, optionally with :port, e.g. \"baton.example.com\" or \"[::1]:8377\"; \"*\" allows every host",
                );
            }
        }
        (max_connections, header, idle)
    }

    /// `[sandbox]`: mode and network are checked by their types; extra paths are resolved like
    /// every other path and must not open the data directory to agents.
    /// `[webhooks]`: one secret per source, normally `"${VAR}"`; a secret written in the file is
    /// hidden from messages like `server.api_token`. Empty means unset (the route is off).
    /// `[[trackers]]`: where tickets come from. Each entry maps a forge repository's issues (start
    /// label) or a Plane project's work items (start state) to a Baton repository, says how to
    /// reach the tracker (`api_url`, `token_env`) and how often to poll it.
    fn trackers(&mut self, raw: Option<Value>, repos: &[RepoSettings]) -> Option<Vec<TrackerConfig>> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TrackerEntry {
            kind: String,
            repo: String,
            #[serde(default)]
            forge_repo: Option<String>,
            #[serde(default)]
            start_label: Option<String>,
            #[serde(default)]
            authors: Vec<String>,
            #[serde(default)]
            approve_label: Option<String>,
            #[serde(default)]
            deploy_label: Option<String>,
            #[serde(default)]
            stop_label: Option<String>,
            #[serde(default)]
            answer_label: Option<String>,
            #[serde(default)]
            status_label_prefix: Option<String>,
            #[serde(default)]
            close_on_done: Option<bool>,
            #[serde(default)]
            approvers: Vec<String>,
            #[serde(default)]
            api_url: Option<String>,
            #[serde(default)]
            token_env: Option<String>,
            #[serde(default = "default_poll_secs")]
            poll_secs: u64,
            #[serde(default)]
            workspace: Option<String>,
            #[serde(default)]
            project: Option<String>,
            #[serde(default)]
            start_state: Option<String>,
        }
        fn default_poll_secs() -> u64 {
            60
        }
        let entries = match raw {
            None => return Some(Vec::new()),
            Some(Value::Array(entries)) => entries,
            Some(other) => {
                self.issue(
                    "trackers",
                    format!("`trackers` must be a list of tables, not {}", type_name(&other)),
                    "write each tracker as its own [[trackers]] block (two brackets)",
                );
                return None;
            }
        };
        let mut trackers = Vec::new();
        let mut ok = true;
        for (i, entry) in entries.into_iter().enumerate() {
            let base = format!("trackers[{i}]");
            let Value::Table(mut table) = entry else {
                self.issue(base, "a tracker entry must be a table", "write each tracker as a [[trackers]] block");
                ok = false;
                continue;
            };
            split_string_list(&mut table, "authors", |c| c.is_whitespace() || c == ',');
            split_string_list(&mut table, "approvers", |c| c.is_whitespace() || c == ',');
            let parsed = self.deserialize::<TrackerEntry>(&base, table);
            ok &= parsed.bad.is_empty();
            let Some(entry) = parsed.value else {
                ok = false;
                continue;
            };
            let before = self.issues.len();
            let source = match entry.kind.as_str() {
                "github" => Some(IntakeSource::Github),
                "gitea" | "forgejo" => Some(IntakeSource::Gitea),
                "plane" => Some(IntakeSource::Plane),
                other => {
                    self.issue(
                        format!("{base}.kind"),
                        format!("`{other}` is not a tracker kind Baton reads"),
                        "use \"github\", \"gitea\" (Forgejo too) or \"plane\"",
                    );
                    None
                }
            };
            if !repos.iter().any(|r| r.name == entry.repo) {
                let known: Vec<&str> = repos.iter().map(|r| r.name.as_str()).collect();
                self.issue(
                    format!("{base}.repo"),
                    format!("`{}` is not a configured repository", entry.repo),
                    format!(
                        "name one of the [[repos]] entries: {}",
                        if known.is_empty() { "none yet".into() } else { known.join(", ") }
                    ),
                );
            }
            let Some(source) = source else {
                ok = false;
                continue;
            };
            let plane = source == IntakeSource::Plane;
            // Keys of the other kind are mistakes, not silently ignored.
            let label_keys = [
                ("forge_repo", entry.forge_repo.is_some()),
                ("start_label", entry.start_label.is_some()),
                ("approve_label", entry.approve_label.is_some()),
                ("deploy_label", entry.deploy_label.is_some()),
                ("stop_label", entry.stop_label.is_some()),
                ("answer_label", entry.answer_label.is_some()),
                ("status_label_prefix", entry.status_label_prefix.is_some()),
                ("close_on_done", entry.close_on_done.is_some()),
            ];
            let plane_keys = [
                ("workspace", entry.workspace.is_some()),
                ("project", entry.project.is_some()),
                ("start_state", entry.start_state.is_some()),
            ];
            let (foreign, fix) = if plane {
                (&label_keys[..], "a Plane tracker names `workspace`, `project` and `start_state`; remove this key")
            } else {
                (&plane_keys[..], "this key is for `kind = \"plane\"` only; remove it")
            };
            for (key, _) in foreign.iter().filter(|(_, set)| *set) {
                self.issue(format!("{base}.{key}"), format!("`{key}` does not apply to a {} tracker", entry.kind), fix);
            }
            let api_url = match (&entry.api_url, source) {
                (Some(url), _) => url.trim_end_matches('/').to_string(),
                (None, IntakeSource::Github) => "https://api.github.com".to_string(),
                (None, _) => {
                    let example =
                        if plane { "https://plane.example.com/api/v1" } else { "https://gitea.example.com/api/v1" };
                    self.issue(
                        format!("{base}.api_url"),
                        format!("a {} tracker needs the API's URL", entry.kind),
                        format!("set `api_url`, e.g. \"{example}\""),
                    );
                    String::new()
                }
            };
            if !api_url.is_empty() {
                self.check_api_url(&format!("{base}.api_url"), &api_url);
            }
            let mut token = String::new();
            match &entry.token_env {
                None => self.issue(
                    format!("{base}.token_env"),
                    "no token variable",
                    "name the environment variable that holds the API token, e.g. token_env = \"GITHUB_TOKEN\"",
                ),
                Some(name) if !valid_env_name(name) => self.issue(
                    format!("{base}.token_env"),
                    format!("`{name}` is not an environment variable name"),
                    "name the variable that holds the token (never the token itself), e.g. \"GITHUB_TOKEN\"",
                ),
                Some(name) => match super::sources::env_get(self.env, name).filter(|v| !v.is_empty()) {
                    Some(value) => {
                        token = value.to_string();
                        self.secrets.push((token.clone(), format!("${{{name}}}")));
                    }
                    None => self.unset_secret(
                        &format!("{base}.token_env"),
                        format!("the variable `{name}` is not set"),
                        format!("export {name} with the tracker's API token before starting Baton"),
                    ),
                },
            }
            let forge_repo = if plane {
                let mut need = |key: &str, value: &Option<String>, example: &str| match value {
                    Some(v) if !v.trim().is_empty() && !v.contains(['/', ' ']) => v.trim().to_string(),
                    _ => {
                        self.issue(
                            format!("{base}.{key}"),
                            format!("a Plane tracker needs `{key}` (without spaces or slashes)"),
                            format!("set `{key}`, e.g. {key} = \"{example}\""),
                        );
                        String::new()
                    }
                };
                need("workspace", &entry.workspace, "acme");
                need("project", &entry.project, "the project's id from its URL")
            } else {
                let forge_repo = entry.forge_repo.clone().unwrap_or_default();
                let parts: Vec<&str> = forge_repo.split('/').collect();
                if parts.len() != 2 || parts.iter().any(|p| p.is_empty() || p.contains(char::is_whitespace)) {
                    self.issue(
                        format!("{base}.forge_repo"),
                        format!("`{forge_repo}` is not `owner/name`"),
                        "write the repository as it appears in its URL, e.g. \"acme/shop\"",
                    );
                }
                forge_repo
            };
            let start = if plane {
                entry.start_state.clone().unwrap_or_else(|| "To Analyse".to_string())
            } else {
                entry.start_label.clone().unwrap_or_else(|| "baton".to_string())
            };
            if start.trim().is_empty() {
                let key = if plane { "start_state" } else { "start_label" };
                self.issue(
                    format!("{base}.{key}"),
                    format!("the {} is empty", if plane { "start state" } else { "start label" }),
                    if plane {
                        "name the state that starts a ticket, e.g. \"To Analyse\""
                    } else {
                        "name the label that starts a ticket, e.g. \"baton\""
                    },
                );
            }
            let prefix = entry.status_label_prefix.clone().unwrap_or_else(|| "baton:".to_string());
            let label = |value: &Option<String>, default: &str| value.clone().unwrap_or_else(|| default.to_string());
            let rule = IntakeRule {
                source,
                forge_repo,
                repo: entry.repo.clone(),
                start_label: start,
                authors: entry.authors.clone(),
                approve_label: if plane { String::new() } else { label(&entry.approve_label, "baton:approved") },
                deploy_label: if plane { String::new() } else { label(&entry.deploy_label, "baton:deploy") },
                stop_label: if plane { String::new() } else { label(&entry.stop_label, "baton:stop") },
                answer_label: if plane { String::new() } else { label(&entry.answer_label, "baton:answered") },
                status_label_prefix: prefix.clone(),
                close_on_done: entry.close_on_done.unwrap_or(true),
                approvers: entry.approvers.clone(),
            };
            if !plane {
                let status_labels: Vec<String> = baton_adapters::tracker::TicketStatus::ALL
                    .iter()
                    .map(|s| format!("{prefix}{}", s.slug()))
                    .collect();
                for (key, value) in [
                    ("start_label", &rule.start_label),
                    ("approve_label", &rule.approve_label),
                    ("deploy_label", &rule.deploy_label),
                    ("stop_label", &rule.stop_label),
                    ("answer_label", &rule.answer_label),
                ] {
                    if status_labels.contains(value) {
                        self.issue(
                            format!("{base}.{key}"),
                            format!("`{value}` is one of Baton's status labels (`status_label_prefix` + a status)"),
                            "choose another label, or another `status_label_prefix`",
                        );
                    }
                }
            }
            if self.issues.len() != before {
                ok = false;
                continue;
            }
            trackers.push(TrackerConfig {
                rule,
                api_url,
                token_env: entry.token_env.unwrap_or_default(),
                token,
                poll_secs: entry.poll_secs,
                workspace: entry.workspace.filter(|_| plane),
            });
        }
        ok.then_some(trackers)
    }

    /// An API base URL (a forge, a tracker): https, or http on loopback only (the token travels
    /// with every call); a host, no credentials.
    fn check_api_url(&mut self, key: &str, url: &str) {
        let Some((scheme, rest)) = url.split_once("://") else {
            self.issue(
                key,
                format!("`{url}` is not a URL"),
                "give the API's full URL, e.g. \"https://api.github.com\" or \"https://git.example.com/api/v1\"",
            );
            return;
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) || authority.contains('@') || host.is_empty() {
            self.issue(
                key,
                format!("`{url}` is not a plain URL with a host"),
                "give the API's URL without credentials, e.g. \"https://api.github.com\"",
            );
            return;
        }
        match scheme {
            "https" => {}
            "http" if matches!(host, "127.0.0.1" | "localhost" | "[::1]") => {}
            "http" => self.issue(
                key,
                "plain http sends the token unencrypted",
                "use https://… (http is allowed on loopback only)",
            ),
            other => self.issue(key, format!("the URL scheme `{other}` is not supported"), "use https://…"),
        }
    }

    fn webhooks(&mut self, raw: Option<Value>) -> Option<baton_http::WebhookSecrets> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct WebhooksSection {
            #[serde(default)]
            github_secret: Option<String>,
            #[serde(default)]
            gitea_secret: Option<String>,
            #[serde(default)]
            plane_secret: Option<String>,
        }
        let table = self.section_table("webhooks", raw, "write it as a [webhooks] section")?;
        let parsed = self.deserialize::<WebhooksSection>("webhooks", table);
        let sound = parsed.bad.is_empty();
        let section = parsed.value?;
        let mut check = |key: &str, value: Option<String>| {
            let value = value.filter(|v| !v.is_empty())?;
            self.secrets.push((value.clone(), format!("<webhooks.{key}>")));
            if value.chars().count() < WEBHOOK_SECRET_CHARS_MIN {
                self.issue(
                    format!("webhooks.{key}"),
                    format!("the secret is shorter than {WEBHOOK_SECRET_CHARS_MIN} characters"),
                    "use a long random secret, e.g. the output of `openssl rand -hex 32`, in the forge and here",
                );
            }
            Some(value)
        };
        let secrets = baton_http::WebhookSecrets {
            github: check("github_secret", section.github_secret),
            gitea: check("gitea_secret", section.gitea_secret),
            plane: check("plane_secret", section.plane_secret),
            telegram: None,
        };
        sound.then_some(secrets)
    }

    fn sandbox(&mut self, raw: Option<Value>, data_dir: Option<&Path>) -> Option<SandboxSettings> {
        let table = self.section_table("sandbox", raw, "write it as a [sandbox] section")?;
        let parsed = self.deserialize::<SandboxSettings>("sandbox", table);
        let mut ok = parsed.bad.is_empty();
        let mut sandbox = parsed.value?;
        for (key, paths) in [("writable", &mut sandbox.writable), ("read_only", &mut sandbox.read_only)] {
            for (i, path) in paths.iter_mut().enumerate() {
                let at = format!("sandbox.{key}[{i}]");
                *path = self.resolve(&at, path);
                if let Some(data_dir) = data_dir
                    && (path.starts_with(data_dir) || data_dir == path.as_path())
                {
                    ok = false;
                    self.issue(
                        at,
                        format!("{} is the data directory or inside it", path.display()),
                        "remove it: agents must not see Baton's database, API token or other tasks' worktrees",
                    );
                }
            }
        }
        ok.then_some(sandbox)
    }

    /// `[retention]`: `days` (0 keeps everything) and `batch` (at least 1: rows of each kind one
    /// prune batch deletes).
    fn retention(&mut self, raw: Option<Value>) -> Option<Retention> {
        let table = self.section_table("retention", raw, "write it as a [retention] section")?;
        let parsed = self.deserialize::<Retention>("retention", table);
        let retention = parsed.value?;
        let mut ok = parsed.bad.is_empty();
        if retention.batch == 0 {
            ok = false;
            self.issue(
                "retention.batch",
                "`batch` is 0; no old row could ever be deleted",
                "use a small positive number of rows per batch (the default is 500); set `days = 0` to keep everything",
            );
        }
        if retention.days > RETENTION_DAYS_MAX {
            ok = false;
            self.issue(
                "retention.days",
                format!("`days` is {}; at most {RETENTION_DAYS_MAX} (100 years) is accepted", retention.days),
                "use `days = 0` to keep everything",
            );
        }
        ok.then_some(retention)
    }

    /// `[retro]`: the retro stage after shipping. Its `agent` must name an `[agents.<name>]` entry,
    /// some entry must serve the role when it is on, `max_proposals` is 1 to 50, and no pipeline
    /// may already have a stage named `retro`.
    fn retro(
        &mut self,
        raw: Option<Value>,
        agents: Option<&BTreeMap<String, AgentSettings>>,
        pipeline: Option<&Pipeline>,
        pipelines: Option<&BTreeMap<String, Pipeline>>,
    ) -> Option<RetroSettings> {
        let table = self.section_table("retro", raw, "write it as a [retro] section")?;
        let parsed = self.deserialize::<RetroSettings>("retro", table);
        let retro = parsed.value?;
        let mut ok = parsed.bad.is_empty();
        let max = baton_engine::retro::MAX_PROPOSALS_LIMIT;
        if retro.max_proposals == 0 || retro.max_proposals > max {
            ok = false;
            self.issue(
                "retro.max_proposals",
                format!("`max_proposals` is {}; it must be between 1 and {max}", retro.max_proposals),
                format!("use a small number (the default is {})", baton_engine::retro::MAX_PROPOSALS_DEFAULT),
            );
        }
        let agents = agents?;
        if let Some(agent) = &retro.agent
            && !agents.contains_key(agent)
        {
            ok = false;
            let known: Vec<&str> = agents.keys().map(String::as_str).collect();
            self.issue(
                "retro.agent",
                format!("`agent = \"{agent}\"` names no [agents.{agent}] entry"),
                suggest_fix(agent, &known, "the agent entries are"),
            );
        }
        let served = retro.agent.is_some() || ["retro", "developer", "default"].iter().any(|e| agents.contains_key(*e));
        if retro.enabled && !served {
            ok = false;
            self.issue(
                "retro.agent",
                "the retro is on but no agent entry runs it",
                "add [agents.retro] (or [agents.developer] / [agents.default]), or name an entry with `agent`",
            );
        }
        let named = pipelines.into_iter().flat_map(|p| p.iter().map(|(name, p)| (format!("pipelines.{name}"), p)));
        for (key, p) in pipeline.map(|p| ("pipeline".to_string(), p)).into_iter().chain(named) {
            if retro.enabled && p.stage(baton_engine::retro::STAGE).is_some() {
                ok = false;
                self.issue(
                    format!("{key}.stages"),
                    "a stage is named `retro`, the name of the stage `[retro] enabled` appends",
                    "rename that stage, or leave `[retro] enabled` off",
                );
            }
        }
        ok.then_some(retro)
    }

    /// `[usage]` (the read-time category map) and `[pricing]` (a user's pricing file, relative to
    /// the config file's directory; a bad one is reported with its line).
    fn usage(&mut self, usage: Option<Value>, pricing: Option<Value>) -> Option<baton_engine::usage::UsageSettings> {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields, default)]
        struct UsageSection {
            categories: BTreeMap<String, String>,
        }
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields, default)]
        struct PricingSection {
            file: Option<PathBuf>,
        }
        let usage_table = self.section_table("usage", usage, "write it as a [usage] section");
        let pricing_table = self.section_table("pricing", pricing, "write it as a [pricing] section");
        let usage = self.deserialize::<UsageSection>("usage", usage_table?).value;
        let pricing = self.deserialize::<PricingSection>("pricing", pricing_table?).value;
        let categories = match baton_domain::usage::CategoryMap::new(usage?.categories) {
            Ok(map) => Some(map),
            Err(problem) => {
                self.issue(
                    format!("usage.categories.\"{}\"", problem.key),
                    format!("`{}` {}", problem.key, problem.problem),
                    "map a key such as \"agent:*\", \"agent:review\", \"source:transcriber\" or a category name to a category, e.g. \"agent:*\" = \"engineering\"",
                );
                None
            }
        };
        let user_prices = match pricing?.file {
            None => None,
            Some(file) => {
                let path = if file.is_absolute() { file.clone() } else { self.config_dir.join(&file) };
                let text = match std::fs::read_to_string(&path) {
                    Ok(text) => text,
                    Err(error) => {
                        self.issue(
                            "pricing.file",
                            format!("cannot read the pricing file {}: {error}", path.display()),
                            "point `file` at a pricing TOML file (relative paths start at the config file's directory), or remove it to use the built-in table",
                        );
                        return None;
                    }
                };
                match baton_domain::PriceTable::from_toml(&text) {
                    Ok(table) => Some(table),
                    Err(error) => {
                        let at = baton_domain::PriceTable::error_line(&text, &error)
                            .map_or(String::new(), |line| format!(" (line {line})"));
                        self.issue(
                            "pricing.file",
                            format!("{}{at}: {error}", path.display()),
                            "fix that line; the format is the built-in table's (docs/usage.md: version, effective_date, [units], [[model]] entries)",
                        );
                        return None;
                    }
                }
            }
        };
        Some(baton_engine::usage::UsageSettings { categories: categories?, user_prices })
    }

    fn budgets(&mut self, raw: Option<Value>) -> Option<Budgets> {
        let table = self.section_table("budgets", raw, "write it as a [budgets] section")?;
        let parsed = self.deserialize::<Budgets>("budgets", table);
        let budgets = parsed.value?;
        let mut ok = parsed.bad.is_empty();
        for (key, value) in [
            ("task_usd", budgets.task_usd),
            ("repo_daily_usd", budgets.repo_daily_usd),
            ("global_daily_usd", budgets.global_daily_usd),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                ok = false;
                self.issue(
                    format!("budgets.{key}"),
                    format!("`{key}` is {v}; a cap must be a positive number of dollars"),
                    "set it to the most you want spent (e.g. 5.0), or remove it for no cap",
                );
            }
        }
        if !(budgets.warn_ratio > 0.0 && budgets.warn_ratio <= 1.0) {
            ok = false;
            self.issue(
                "budgets.warn_ratio",
                format!("`warn_ratio` is {}; it is a fraction of the cap", budgets.warn_ratio),
                "use a number above 0 and at most 1, e.g. 0.8 to warn at 80 %",
            );
        }
        ok.then_some(budgets)
    }

    fn limits(&mut self, raw: Option<Value>) -> Option<Limits> {
        let table = self.section_table("limits", raw, "write it as a [limits] section")?;
        let parsed = self.deserialize::<Limits>("limits", table);
        let limits = parsed.value?;
        let values = limits_table(&limits);
        let defaults = limits_table(&Limits::default());
        let mut ok = parsed.bad.is_empty();
        for key in LIMITS_NONZERO {
            if parsed.bad.iter().any(|b| b == key) || values.get(*key).and_then(Value::as_integer) != Some(0) {
                continue;
            }
            ok = false;
            let default = defaults.get(*key).map_or_else(String::new, |v| format!(" (the default is {v})"));
            let message = if key.contains("running") {
                format!("`{key}` is 0, so no job could ever run")
            } else {
                format!("`{key}` is 0, which would stop or spin every run at once")
            };
            self.issue(format!("limits.{key}"), message, format!("set it to at least 1{default}, or remove it"));
        }
        ok.then_some(limits)
    }

    fn repos(&mut self, raw: Option<Value>) -> Option<Vec<RepoSettings>> {
        let entries = match raw {
            None => return Some(Vec::new()),
            Some(Value::Array(entries)) => entries,
            Some(other) => {
                self.issue(
                    "repos",
                    format!("`repos` must be a list of tables, not {}", type_name(&other)),
                    "write each repository as its own [[repos]] block (two brackets)",
                );
                return None;
            }
        };
        let mut repos = Vec::new();
        let mut ok = true;
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let base = format!("repos[{i}]");
            let Value::Table(mut table) = entry else {
                self.issue(base, "a repository entry must be a table", "write each repository as a [[repos]] block");
                ok = false;
                continue;
            };
            for key in ["test", "deploy", "health", "coverage", "security"] {
                split_string_list(&mut table, key, char::is_whitespace);
            }
            let hooks = self.repo_hooks(&base, table.remove("hooks"));
            // The forge keys are read on their own (the engine keeps them apart from git's).
            let mut forge_table = Table::new();
            for key in FORGE_KEYS {
                if let Some(value) = table.remove(*key) {
                    forge_table.insert(key.to_string(), value);
                }
            }
            let parsed = self.deserialize::<RepoSettings>(&base, table);
            ok &= parsed.bad.is_empty();
            let Some(mut repo) = parsed.value else {
                ok = false;
                continue;
            };
            ok &= self.check_repo(&base, &mut repo, &parsed.bad, &mut names, i);
            match hooks {
                Some(hooks) => repo.hooks = hooks,
                None => ok = false,
            }
            match self.repo_forge(&base, forge_table, &repo) {
                Some(forge) => repo.forge = forge,
                None => ok = false,
            }
            if repo.merge_batch > 1 && repo.forge.is_hosted() {
                self.issue(
                    format!("{base}.merge_batch"),
                    "batches land as one commit pushed to the default branch; a hosted forge merges pull requests one by one",
                    "remove `merge_batch` (the merge queue still tests several changes at once, each on top of the ones ahead), or use the repository without `forge`",
                );
                ok = false;
            }
            repos.push(repo);
        }
        ok.then_some(repos)
    }

    /// A repository's forge keys: `forge` (local, github, gitea/forgejo), `forge_repo`,
    /// `forge_api_url`, `forge_token_env`, `merge_style`, `ci`. A hosted forge needs the
    /// repository's `url`, its `owner/name`, an API URL (GitHub's by default) and a token variable
    /// that is set; the token is masked like every secret.
    fn repo_forge(&mut self, base: &str, table: Table, repo: &RepoSettings) -> Option<RepoForge> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ForgeEntry {
            #[serde(default)]
            forge: Option<String>,
            #[serde(default)]
            forge_repo: Option<String>,
            #[serde(default)]
            forge_api_url: Option<String>,
            #[serde(default)]
            forge_token_env: Option<String>,
            #[serde(default)]
            merge_style: MergeStyle,
            #[serde(default)]
            ci: Option<CiPolicy>,
        }
        let before = self.issues.len();
        let parsed = self.deserialize::<ForgeEntry>(base, table);
        let entry = parsed.value?;
        let kind = match entry.forge.as_deref().unwrap_or("local") {
            "local" => ForgeKind::Local,
            "github" => ForgeKind::GitHub,
            "gitea" | "forgejo" => ForgeKind::Gitea,
            other => {
                self.issue(
                    format!("{base}.forge"),
                    format!("`{other}` is not a forge Baton knows"),
                    "use \"local\" (the default), \"github\" or \"gitea\" (Forgejo: \"gitea\" or \"forgejo\")",
                );
                return None;
            }
        };
        let forge = RepoForge {
            kind,
            repo: entry.forge_repo.clone(),
            api_url: entry.forge_api_url.clone(),
            token_env: entry.forge_token_env.clone().or_else(|| repo.credentials_env.clone()),
            merge_style: entry.merge_style,
            ci: entry.ci.unwrap_or_default(),
        };
        if kind == ForgeKind::Local {
            for (key, set) in [
                ("forge_repo", entry.forge_repo.is_some()),
                ("forge_api_url", entry.forge_api_url.is_some()),
                ("forge_token_env", entry.forge_token_env.is_some()),
                ("ci", entry.ci.is_some()),
            ] {
                if set {
                    self.issue(
                        format!("{base}.{key}"),
                        format!("`{key}` applies only to a hosted forge"),
                        "remove it, or set `forge = \"github\"` or `forge = \"gitea\"`",
                    );
                }
            }
            return (self.issues.len() == before).then_some(forge);
        }
        if repo.url.is_none() {
            self.issue(
                format!("{base}.url"),
                format!("a repository on the `{}` forge needs `url`", entry.forge.as_deref().unwrap_or_default()),
                "give the repository's clone URL as `url` (Baton pushes task branches there) instead of `path`",
            );
        }
        match entry.forge_repo.as_deref() {
            None => self.issue(
                format!("{base}.forge_repo"),
                "a hosted forge needs the repository's `owner/name`",
                "add `forge_repo = \"owner/name\"` as it appears in the repository's web address",
            ),
            Some(name) => {
                let parts: Vec<&str> = name.split('/').collect();
                if parts.len() != 2 || parts.iter().any(|p| p.is_empty() || p.contains(char::is_whitespace)) {
                    self.issue(
                        format!("{base}.forge_repo"),
                        format!("`{name}` is not `owner/name`"),
                        "write the repository as it appears in its URL, e.g. \"acme/shop\"",
                    );
                }
            }
        }
        match (kind, entry.forge_api_url.as_deref()) {
            (ForgeKind::Gitea, None) => self.issue(
                format!("{base}.forge_api_url"),
                "a Gitea/Forgejo forge needs its API URL",
                "add `forge_api_url = \"https://git.example.com/api/v1\"`",
            ),
            (_, Some(url)) => self.check_api_url(&format!("{base}.forge_api_url"), url),
            _ => {}
        }
        match forge.token_env.as_deref() {
            None => self.issue(
                format!("{base}.forge_token_env"),
                "a hosted forge needs an API token",
                "name the environment variable that holds it: `forge_token_env = \"FORGE_TOKEN\"` (default: `credentials_env`)",
            ),
            Some(name) if !valid_env_name(name) => self.issue(
                format!("{base}.forge_token_env"),
                format!("`{name}` is not an environment variable name"),
                "name the variable that holds the token, e.g. \"FORGE_TOKEN\" (never the token itself)",
            ),
            Some(name) => match self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()) {
                Some(token) if !token.is_empty() => self.secrets.push((token, format!("${name}"))),
                _ => self.unset_secret(
                    &format!("{base}.forge_token_env"),
                    format!("the environment variable `{name}` is not set"),
                    format!("export {name}=<an API token of the forge> before starting Baton"),
                ),
            },
        }
        (self.issues.len() == before).then_some(forge)
    }

    /// Checks one repository's meaning; resolves its path. Returns whether it is sound.
    fn check_repo(
        &mut self,
        base: &str,
        repo: &mut RepoSettings,
        bad: &[String],
        names: &mut BTreeMap<String, usize>,
        index: usize,
    ) -> bool {
        let before = self.issues.len();
        let skip = |key: &str| bad.iter().any(|b| b == key);
        if !skip("name") {
            if !valid_repo_name(&repo.name) {
                self.issue(
                    format!("{base}.name"),
                    format!("`{}` is not a valid repository name", repo.name),
                    "use 1–64 characters of a–z, 0–9, '.', '_' or '-', not starting with a dot, e.g. \"demo\"",
                );
            } else if let Some(first) = names.get(&repo.name) {
                self.issue(
                    format!("{base}.name"),
                    format!("the repository name `{}` is already used by repos[{first}]", repo.name),
                    "give each repository a unique name",
                );
            } else {
                names.insert(repo.name.clone(), index);
            }
        }
        if !skip("prefix") && !valid_prefix(&repo.prefix) {
            self.issue(
                format!("{base}.prefix"),
                format!("`{}` is not a valid work-item prefix", repo.prefix),
                "use 1–10 upper-case letters/digits starting with a letter, e.g. ORCH",
            );
        }
        if repo.url.is_some() {
            if !skip("url") {
                self.check_remote(base, repo);
            }
        } else {
            for (key, set) in [
                ("push", repo.push.is_some()),
                ("credentials_env", repo.credentials_env.is_some()),
                ("delete_remote_branch", repo.delete_remote_branch != Default::default()),
            ] {
                if set {
                    self.issue(
                        format!("{base}.{key}"),
                        format!("`{key}` applies only to a repository given by `url`"),
                        "remove it, or give the repository's `url` instead of `path`",
                    );
                }
            }
            if repo.path.as_os_str().is_empty() {
                if !skip("path") {
                    self.issue(
                        format!("{base}.path"),
                        "the repository has neither `path` nor `url`",
                        "set `path` to a local git checkout, or `url` to a remote (https://…, ssh://…, or a bare repository's path)",
                    );
                }
            } else if !skip("path") {
                repo.path = self.resolve(&format!("{base}.path"), &repo.path);
                if !skip("default_branch") {
                    self.check_git_repo(base, &repo.path, &repo.default_branch);
                }
            }
        }
        if !skip("merge_batch") && !(1..=baton_engine::settings::MERGE_BATCH_MAX).contains(&repo.merge_batch) {
            self.issue(
                format!("{base}.merge_batch"),
                format!("`merge_batch = {}` is out of range", repo.merge_batch),
                format!(
                    "use 1 (no batches) to {}: how many queued changes are tested together",
                    baton_engine::settings::MERGE_BATCH_MAX
                ),
            );
        }
        let window_max = baton_engine::settings::MONITOR_WINDOW_SECS_MAX;
        if !skip("monitor_window_secs") && repo.monitor_window_secs > window_max {
            self.issue(
                format!("{base}.monitor_window_secs"),
                format!("`monitor_window_secs = {}` is out of range", repo.monitor_window_secs),
                format!("use 0 (no post-deploy monitor) to {window_max} seconds: how long `health` is watched after a deploy"),
            );
        }
        if repo.monitor_window_secs > 0 {
            if !skip("monitor_interval_secs") && !(1..=repo.monitor_window_secs).contains(&repo.monitor_interval_secs) {
                self.issue(
                    format!("{base}.monitor_interval_secs"),
                    format!(
                        "`monitor_interval_secs = {}` does not fit the {} s monitor window",
                        repo.monitor_interval_secs, repo.monitor_window_secs
                    ),
                    "give the seconds between health checks, from 1 to `monitor_window_secs`",
                );
            }
            if !skip("monitor_failures") && repo.monitor_failures == 0 {
                self.issue(
                    format!("{base}.monitor_failures"),
                    "`monitor_failures = 0` would call every deploy degraded",
                    "give how many failed health checks in a row make a deploy DEGRADED, e.g. 3",
                );
            }
            if !skip("health") && repo.health.is_none() {
                self.issue(
                    format!("{base}.monitor_window_secs"),
                    "a post-deploy monitor window without a `health` command watches nothing",
                    "set `health` to the command that checks the deployed service, or `monitor_window_secs = 0`",
                );
            }
        } else if !skip("revert_on_degraded") && repo.revert_on_degraded {
            self.issue(
                format!("{base}.revert_on_degraded"),
                "`revert_on_degraded` needs the post-deploy monitor (only a DEGRADED deploy is reverted)",
                "set `monitor_window_secs` above 0, or remove `revert_on_degraded`",
            );
        }
        for (key, value) in [("coverage_min", repo.coverage_min), ("coverage_epsilon", repo.coverage_epsilon)] {
            let in_range = value.is_finite() && (0.0..=100.0).contains(&value);
            if !skip(key) && !in_range {
                self.issue(
                    format!("{base}.{key}"),
                    format!("`{key} = {value}` is out of range"),
                    "give percentage points from 0 to 100, e.g. 80 or 0.5",
                );
            }
        }
        let argvs = [
            ("test", &repo.test),
            ("deploy", &repo.deploy),
            ("health", &repo.health),
            ("coverage", &repo.coverage),
            ("security", &repo.security),
        ];
        for (key, argv) in argvs {
            if let Some(argv) = argv
                && !skip(key)
            {
                self.check_argv(&format!("{base}.{key}"), argv);
            }
        }
        self.issues.len() == before
    }

    /// A `url` repository: one of https (http only on loopback), ssh, file or a bare repository's
    /// path; no credentials in the URL (they come from `credentials_env`); not with `path`. A path
    /// is resolved like `path`. Baton's clone (`path`) is set once the data dir is known.
    fn check_remote(&mut self, base: &str, repo: &mut RepoSettings) {
        let key = format!("{base}.url");
        let url = repo.url.clone().unwrap_or_default();
        if !repo.path.as_os_str().is_empty() {
            self.issue(
                format!("{base}.path"),
                "`path` and `url` are mutually exclusive",
                "keep `url` for a remote repository (Baton keeps its own clone) or `path` for a local checkout",
            );
        }
        if let Some(name) = &repo.credentials_env
            && !valid_env_name(name)
        {
            self.issue(
                format!("{base}.credentials_env"),
                format!("`{name}` is not an environment variable name"),
                "name the variable that holds the token, e.g. \"GIT_TOKEN\" (never the token itself)",
            );
        }
        let branch = &repo.default_branch;
        if branch.is_empty()
            || branch.starts_with(['/', '-'])
            || branch.split('/').any(|part| part.is_empty() || part == "." || part == "..")
        {
            self.issue(
                format!("{base}.default_branch"),
                format!("`{branch}` is not a valid branch name"),
                "name the repository's main branch, e.g. \"main\"",
            );
        }
        let no_credentials =
            "remove them from the URL; put the token in an environment variable and name it in `credentials_env`";
        if url.starts_with('-') || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            self.issue(key, "the URL has spaces, control characters or a leading '-'", "give a plain URL");
            return;
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            let authority = rest.split('/').next().unwrap_or_default();
            let (userinfo, host) = match authority.rsplit_once('@') {
                Some((userinfo, host)) => (Some(userinfo), host),
                None => (None, authority),
            };
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            match scheme {
                "https" | "http" | "ssh" | "file" => {}
                _ => {
                    self.issue(
                        key,
                        format!("the URL scheme `{scheme}` is not supported"),
                        "use https://…, ssh://…, file://… or a bare repository's path",
                    );
                    return;
                }
            }
            if userinfo.is_some_and(|u| u.contains(':') || scheme.starts_with("http")) {
                self.issue(key, "the URL holds credentials", no_credentials);
                return;
            }
            if scheme == "http" && !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                self.issue(
                    key.clone(),
                    "plain http sends the token unencrypted",
                    "use https://… (http is allowed on loopback only)",
                );
            }
            if scheme != "file" && host.is_empty() {
                self.issue(key, "the URL has no host", "give the full URL, e.g. https://git.example.com/team/app.git");
            }
            return;
        }
        // scp-like ssh (`git@host:team/app.git`): a colon before any slash.
        if let Some((before, _)) = url.split_once(':')
            && !before.contains('/')
            && !before.is_empty()
        {
            if url.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':')) {
                self.issue(key, "the URL holds credentials", no_credentials);
            }
            return;
        }
        let path = self.resolve(&key, Path::new(&url));
        if !(path.join("HEAD").is_file() && path.join("objects").is_dir())
            && baton_runner::git::git_dir(&path).is_none()
        {
            self.issue(
                key,
                format!("{} is not a git repository", path.display()),
                "give https://…, ssh://… or the path of a bare repository (`git init --bare`)",
            );
            return;
        }
        repo.url = Some(path.display().to_string());
    }

    /// The path must be a git checkout that has the default branch; read from files, no `git` spawned.
    fn check_git_repo(&mut self, base: &str, path: &Path, branch: &str) {
        if !path.exists() {
            self.issue(
                format!("{base}.path"),
                format!("the repository path {} does not exist", path.display()),
                "point `path` at a git checkout (relative paths start at the config file's directory)",
            );
            return;
        }
        let Some(git_dir) = baton_runner::git::git_dir(path) else {
            self.issue(
                format!("{base}.path"),
                format!("{} is not a git repository (it has no .git)", path.display()),
                "run `git init` there and make a first commit, or point `path` at a git checkout",
            );
            return;
        };
        let branch_ok = !branch.is_empty()
            && !branch.starts_with(['/', '-'])
            && !branch.split('/').any(|part| part.is_empty() || part == "." || part == "..");
        if !branch_ok {
            self.issue(
                format!("{base}.default_branch"),
                format!("`{branch}` is not a valid branch name"),
                "name the repository's main branch, e.g. \"main\"",
            );
            return;
        }
        if !baton_runner::git::has_branch(&git_dir, branch) {
            self.issue(
                format!("{base}.default_branch"),
                format!("the repository {} has no branch `{branch}`", path.display()),
                format!("set `default_branch` to an existing branch, or create it (a new repository needs a first commit on `{branch}`)"),
            );
        }
    }

    fn check_argv(&mut self, key: &str, argv: &[String]) {
        if argv.first().is_none_or(|program| program.trim().is_empty()) {
            self.issue(
                key,
                "the command is empty",
                "give the program and its arguments, e.g. [\"python3\", \"-m\", \"unittest\"], or remove the key",
            );
        }
    }

    fn agents(&mut self, raw: Option<Value>, roles: &[String]) -> Option<BTreeMap<String, AgentSettings>> {
        let table = self.section_table("agents", raw, "write one [agents.<role>] table per role")?;
        let mut agents = BTreeMap::new();
        let mut ok = true;
        for (role, entry) in table {
            let base = format!("agents.{role}");
            if !roles.contains(&role) {
                let known: Vec<&str> = roles.iter().map(String::as_str).collect();
                self.issue(
                    base.clone(),
                    format!("`{role}` is not a role of the pipeline"),
                    suggest_fix(&role, &known, "the roles are"),
                );
                ok = false;
            }
            let Value::Table(mut entry) = entry else {
                self.issue(base, format!("`agents.{role}` must be a table"), format!("write it as [agents.{role}]"));
                ok = false;
                continue;
            };
            split_string_list(&mut entry, "command", char::is_whitespace);
            let parsed = self.deserialize::<AgentSettings>(&base, entry);
            ok &= parsed.bad.is_empty();
            let Some(mut agent) = parsed.value else {
                ok = false;
                continue;
            };
            ok &= self.check_agent(&base, &mut agent, &parsed.bad);
            agents.insert(role, agent);
        }
        ok.then_some(agents)
    }

    /// Checks one agent: the script adapter needs an existing script, the command adapter a command.
    fn check_agent(&mut self, base: &str, agent: &mut AgentSettings, bad: &[String]) -> bool {
        let before = self.issues.len();
        let skip = |key: &str| bad.iter().any(|b| b == key);
        if let Some(script) = &agent.script
            && !skip("script")
        {
            let resolved = self.resolve(&format!("{base}.script"), script);
            if !resolved.is_file() {
                self.issue(
                    format!("{base}.script"),
                    format!("the script file {} does not exist", resolved.display()),
                    "create it or correct `script` (relative paths start at the config file's directory)",
                );
            }
            agent.script = Some(resolved);
        }
        if let Some(command) = &agent.command
            && !skip("command")
        {
            let command = command.clone();
            self.check_argv(&format!("{base}.command"), &command);
        }
        match agent.adapter {
            AdapterKind::Script if agent.script.is_none() && !skip("script") => self.issue(
                format!("{base}.script"),
                "the script adapter needs a script file",
                "add `script = \"script.toml\"` (relative to the config file's directory)",
            ),
            AdapterKind::Command if agent.command.is_none() && !skip("command") => self.issue(
                format!("{base}.command"),
                "the command adapter needs a command",
                "add `command = [\"program\", \"arg\"]`; the prompt arrives on stdin",
            ),
            _ => {}
        }
        self.issues.len() == before
    }

    /// Reads `[pipeline]` (`at` = `pipeline`) or one `[pipelines.<name>]` (`at` =
    /// `pipelines.<name>`): its stages, each stage's own actor choice, then the whole.
    pub(super) fn pipeline(
        &mut self,
        at: &str,
        raw: Option<Value>,
        agents: Option<&BTreeMap<String, AgentSettings>>,
        limits: Option<&Limits>,
    ) -> Option<Pipeline> {
        let Some(raw) = raw else {
            return Some(Pipeline::default_pipeline());
        };
        let mut table = self.section_table(at, Some(raw), &format!("write it as a [{at}] section"))?;
        let mut ok = true;
        for key in table.keys().filter(|k| k.as_str() != "stages") {
            let fix = suggest_fix(key, &["stages"], "the only key is");
            self.issues.push(ConfigIssue::new(format!("{at}.{key}"), format!("unknown key `{key}`"), fix));
            ok = false;
        }
        let stages = match table.remove("stages") {
            Some(Value::Array(stages)) => stages,
            Some(other) => {
                self.issue(
                    format!("{at}.stages"),
                    format!("`stages` must be a list of tables, not {}", type_name(&other)),
                    format!("write each stage as a [[{at}.stages]] block"),
                );
                return None;
            }
            None => {
                let fix = if at == "pipeline" {
                    "list the stages as [[pipeline.stages]] blocks, or remove [pipeline] to use the default pipeline"
                        .to_string()
                } else {
                    format!("list the stages as [[{at}.stages]] blocks")
                };
                self.issue(format!("{at}.stages"), format!("[{at}] has no `stages`"), fix);
                return None;
            }
        };
        let mut specs = Vec::new();
        for (i, stage) in stages.into_iter().enumerate() {
            let base = format!("{at}.stages[{i}]");
            let Value::Table(stage) = stage else {
                self.issue(base, "a stage must be a table", format!("write each stage as a [[{at}.stages]] block"));
                ok = false;
                continue;
            };
            let mut stage = self.stage_defaults(&base, stage);
            let actor_keys = super::pipelines::take_actor_keys(&mut stage);
            let parsed = self.deserialize::<StageSpec>(&base, stage);
            ok &= parsed.bad.is_empty();
            match parsed.value {
                Some(mut spec) => {
                    for (g, gate) in spec.gates.iter().enumerate() {
                        if let GateSpec::Command { argv, .. } = gate {
                            self.check_argv(&format!("{base}.gates[{g}].argv"), argv);
                        }
                    }
                    match self.stage_overrides(&base, &spec, actor_keys, agents, limits) {
                        Some(overrides) => spec.overrides = overrides,
                        None => ok = false,
                    }
                    specs.push(spec);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let pipeline = Pipeline { stages: specs, ..Pipeline::default_pipeline() };
        let problems = pipeline.validate();
        for problem in &problems {
            self.issue(stage_key(at, &pipeline, problem), problem.to_string(), pipeline_fix(problem));
        }
        problems.is_empty().then_some(pipeline)
    }

    /// Checks a stage's keys and fills the short forms: `"retry"` for `{ kind = "retry" }`, and
    /// defaults for `gates`, `confirm_before` and `on_gate_fail`.
    fn stage_defaults(&mut self, base: &str, mut stage: Table) -> Table {
        let unknown: Vec<String> = stage.keys().filter(|k| !STAGE_KEYS.contains(&k.as_str())).cloned().collect();
        for key in unknown {
            let fix = suggest_fix(&key, STAGE_KEYS, "the stage keys are");
            self.issue(format!("{base}.{key}"), format!("unknown key `{key}`"), fix);
            stage.remove(&key);
        }
        let kind = |value: &mut Value| {
            if let Value::String(kind) = value {
                let mut table = Table::new();
                table.insert("kind".into(), Value::String(kind.clone()));
                *value = Value::Table(table);
            }
        };
        if let Some(actor) = stage.get_mut("actor") {
            kind(actor);
        }
        if let Some(Value::Array(gates)) = stage.get_mut("gates") {
            gates.iter_mut().for_each(kind);
        }
        let retry = {
            let mut table = Table::new();
            table.insert("kind".into(), Value::String("retry".into()));
            Value::Table(table)
        };
        let on_fail = stage.entry("on_gate_fail").or_insert(retry);
        kind(on_fail);
        stage.entry("gates").or_insert_with(|| Value::Array(Vec::new()));
        stage.entry("confirm_before").or_insert(Value::Boolean(false));
        stage
    }
}

/// A string where a list is expected becomes that list (split by `sep`, no shell involved).
fn split_string_list(table: &mut Table, key: &str, sep: fn(char) -> bool) {
    if let Some(value) = table.get_mut(key)
        && let Value::String(text) = value
    {
        let parts = text.split(sep).filter(|p| !p.is_empty()).map(|p| Value::String(p.to_string())).collect();
        *value = Value::Array(parts);
    }
}

/// An address and port; `localhost:<port>` is taken as `127.0.0.1:<port>`.
fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    // `localhost:8377` is common enough to accept without a DNS lookup.
    let port = text.strip_prefix("localhost:")?;
    format!("127.0.0.1:{port}").parse().ok()
}

/// The limits as a TOML table, to look values up by key.
pub(super) fn limits_table(limits: &Limits) -> Table {
    match Value::try_from(limits) {
        Ok(Value::Table(table)) => table,
        _ => Table::new(),
    }
}

/// The issue for a top-level section this version does not read.
fn unknown_section(key: &str) -> ConfigIssue {
    if PLANNED_SECTIONS.contains(&key) {
        return ConfigIssue::new(
            key,
            format!("the `{key}` section is not supported by this version of Baton"),
            "remove it; the sections read are server, limits, budgets, repos, agents, pipeline, sandbox, webhooks, trackers, telegram, notifiers, retention, features, usage and pricing",
        );
    }
    ConfigIssue::new(key, format!("unknown section `{key}`"), suggest_fix(key, SECTIONS, "the sections are"))
}

/// The agent roles `[agents.<role>]` may name: the built-in ones plus every role of the pipeline.
fn pipeline_roles(raw: Option<&Value>, named: Option<&Value>) -> Vec<String> {
    let mut roles: Vec<String> = BUILTIN_ROLES.iter().map(|r| r.to_string()).collect();
    let from_pipeline: Vec<String> = match raw {
        None => Pipeline::default_pipeline()
            .stages
            .iter()
            .filter_map(|s| match &s.actor {
                Actor::Agent { role } => Some(role.clone()),
                _ => None,
            })
            .collect(),
        Some(raw) => raw
            .get("stages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|stage| stage.get("actor")?.get("role")?.as_str().map(str::to_string))
            .collect(),
    };
    // A named pipeline's roles, and the agent entries stages name with `agent = "<entry>"`.
    let named_roles = super::pipelines::named_roles(raw, named);
    let from_pipeline = from_pipeline.into_iter().chain(named_roles);
    for role in from_pipeline {
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles
}

/// The key of the stage a pipeline problem concerns (the first stage of that name), or of the
/// whole list for a problem of the pipeline.
fn stage_key(at: &str, pipeline: &Pipeline, problem: &PipelineProblem) -> String {
    problem
        .stage()
        .and_then(|name| pipeline.stages.iter().position(|s| s.name == name))
        .map_or_else(|| format!("{at}.stages"), |i| format!("{at}.stages[{i}]"))
}

/// How to fix a pipeline problem in `baton.toml`.
fn pipeline_fix(problem: &PipelineProblem) -> &'static str {
    match problem {
        PipelineProblem::Empty => "list at least one stage, or remove [pipeline] to use the default pipeline",
        PipelineProblem::ReservedStageName { .. } => "rename the stage; `done` and `cancelled` are the terminal stages",
        PipelineProblem::DuplicateStage { .. } => "give each stage a unique name",
        PipelineProblem::UnknownRollbackTarget { .. } | PipelineProblem::RollbackNotEarlier { .. } => {
            "set `on_gate_fail = { kind = \"rollback\", to = \"<stage>\" }` to an earlier stage's name"
        }
        PipelineProblem::MissingArtifact { .. } => {
            "add `artifact = \"NN-name.md\"` to the stage, or drop its artifact and verdict gates"
        }
        PipelineProblem::ConfirmAfterMergeQueue { .. } => {
            "move `confirm_before = true` to the stage whose gates include `mergeable` (confirm, then queue)"
        }
    }
}

/// A hosted forge's CI gates the merge: `ci_green` right after `mergeable`, in every stage that
/// has `mergeable` and no `ci_green` yet (a custom pipeline may place it itself). On a repository
/// of the local forge the gate passes at once.
pub(super) fn with_ci_gate(pipeline: &mut Pipeline) {
    for stage in &mut pipeline.stages {
        if stage.gates.contains(&GateSpec::CiGreen) {
            continue;
        }
        if let Some(at) = stage.gates.iter().position(|g| *g == GateSpec::Mergeable) {
            stage.gates.insert(at + 1, GateSpec::CiGreen);
        }
    }
}

/// How Telegram button presses reach Baton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelegramMode {
    /// `POST /webhooks/telegram` (set with the Bot API's `setWebhook` and `secret_token`).
    Webhook,
    /// Long polling `getUpdates` from the engine loop.
    Poll,
}

/// `[telegram]`: the bot, its chat and who may press its buttons.
#[derive(Clone, PartialEq, Eq)]
pub struct TelegramConfig {
    pub api_url: String,
    pub bot_token: String,
    pub chat_id: String,
    pub allowed_user_ids: Vec<i64>,
    pub mode: TelegramMode,
    /// The `setWebhook` secret token (mode `webhook`).
    pub webhook_secret: Option<String>,
}

// Written by hand so that debug output never shows the token or the secret.
impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("api_url", &self.api_url)
            .field("bot_token", &"<redacted>")
            .field("chat_id", &self.chat_id)
            .field("allowed_user_ids", &self.allowed_user_ids)
            .field("mode", &self.mode)
            .finish()
    }
}

/// One `[[notifiers]]` entry: a JSON webhook signed with the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    pub name: String,
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for NotifierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierConfig").field("name", &self.name).field("url", &self.url).finish()
    }
}

impl Loader<'_> {
    /// The value of the variable `key` names, registered as a secret; an issue when unset.
    fn secret_env(&mut self, key: &str, name: &str, example: &str) -> Option<String> {
        if !valid_env_name(name) {
            self.issue(
                key,
                format!("`{name}` is not an environment variable name"),
                format!("name the variable that holds the secret (never the secret itself), e.g. \"{example}\""),
            );
            return None;
        }
        match super::sources::env_get(self.env, name).filter(|v| !v.is_empty()) {
            Some(value) => {
                let value = value.to_string();
                self.secrets.push((value.clone(), format!("${{{name}}}")));
                Some(value)
            }
            None => {
                self.unset_secret(
                    key,
                    format!("the variable `{name}` is not set"),
                    format!("export {name}=… before starting Baton"),
                );
                None
            }
        }
    }

    /// `[telegram]`.
    fn telegram(&mut self, raw: Option<Value>) -> Option<Option<TelegramConfig>> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TelegramSection {
            bot_token_env: String,
            chat_id: Value,
            #[serde(default)]
            allowed_user_ids: Vec<i64>,
            #[serde(default)]
            mode: Option<String>,
            #[serde(default)]
            webhook_secret_env: Option<String>,
            #[serde(default)]
            api_url: Option<String>,
        }
        let Some(raw) = raw else { return Some(None) };
        let table = self.section_table("telegram", Some(raw), "write it as a [telegram] section")?;
        let parsed = self.deserialize::<TelegramSection>("telegram", table);
        let section = parsed.value?;
        let before = self.issues.len();
        let api_url =
            section.api_url.as_deref().unwrap_or("https://api.telegram.org").trim_end_matches('/').to_string();
        self.check_api_url("telegram.api_url", &api_url);
        let bot_token = self.secret_env("telegram.bot_token_env", &section.bot_token_env, "TELEGRAM_BOT_TOKEN");
        let chat_id = match &section.chat_id {
            Value::Integer(id) => id.to_string(),
            Value::String(name) if name.starts_with('@') && name.len() > 1 => name.clone(),
            Value::String(id) if id.trim().parse::<i64>().is_ok() => id.trim().to_string(),
            other => {
                self.issue(
                    "telegram.chat_id",
                    format!("`{other}` is not a chat id"),
                    "give the numeric chat id (e.g. -1001234567890 for a group) or a channel's \"@name\"",
                );
                String::new()
            }
        };
        if section.allowed_user_ids.is_empty() {
            self.issue(
                "telegram.allowed_user_ids",
                "no user may press the buttons",
                "list the Telegram user ids allowed to approve, confirm and stop, e.g. allowed_user_ids = [123456789]",
            );
        }
        let mode = match section.mode.as_deref().unwrap_or("webhook") {
            "webhook" => TelegramMode::Webhook,
            "poll" => TelegramMode::Poll,
            other => {
                self.issue("telegram.mode", format!("`{other}` is not a mode"), "use \"webhook\" or \"poll\"");
                TelegramMode::Webhook
            }
        };
        let webhook_secret = match (&section.webhook_secret_env, mode) {
            (Some(name), _) => self.secret_env("telegram.webhook_secret_env", name, "TELEGRAM_WEBHOOK_SECRET"),
            (None, TelegramMode::Webhook) => {
                self.issue(
                    "telegram.webhook_secret_env",
                    "mode \"webhook\" needs the secret Telegram sends in X-Telegram-Bot-Api-Secret-Token",
                    "name the variable holding it, e.g. webhook_secret_env = \"TELEGRAM_WEBHOOK_SECRET\", or set mode = \"poll\"",
                );
                None
            }
            (None, TelegramMode::Poll) => None,
        };
        if let Some(secret) = &webhook_secret {
            let valid = (1..=256).contains(&secret.len())
                && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid || secret.len() < WEBHOOK_SECRET_CHARS_MIN {
                self.issue(
                    "telegram.webhook_secret_env",
                    format!("Telegram takes 1-256 characters of A-Z, a-z, 0-9, _ and -, and Baton wants at least {WEBHOOK_SECRET_CHARS_MIN}"),
                    "use e.g. the output of `openssl rand -hex 32`",
                );
            }
        }
        if self.issues.len() > before || !parsed.bad.is_empty() {
            return None;
        }
        Some(Some(TelegramConfig {
            api_url,
            // Unset only when the load mode let it pass (a read-only command): never used then.
            bot_token: bot_token.unwrap_or_default(),
            chat_id,
            allowed_user_ids: section.allowed_user_ids,
            mode,
            webhook_secret,
        }))
    }

    /// `[[notifiers]]`.
    fn notifiers(&mut self, raw: Option<Value>) -> Option<Vec<NotifierConfig>> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NotifierEntry {
            kind: String,
            url: String,
            secret_env: String,
            #[serde(default)]
            name: Option<String>,
        }
        let entries = match raw {
            None => return Some(Vec::new()),
            Some(Value::Array(entries)) => entries,
            Some(other) => {
                self.issue(
                    "notifiers",
                    format!("`notifiers` must be a list of tables, not {}", type_name(&other)),
                    "write each notifier as its own [[notifiers]] block (two brackets)",
                );
                return None;
            }
        };
        let before = self.issues.len();
        let mut out = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let base = format!("notifiers[{i}]");
            let Value::Table(table) = entry else {
                self.issue(base, "a notifier entry must be a table", "write each notifier as a [[notifiers]] block");
                continue;
            };
            let Some(entry) = self.deserialize::<NotifierEntry>(&base, table).value else { continue };
            if entry.kind != "webhook" {
                self.issue(
                    format!("{base}.kind"),
                    format!("`{}` is not a notifier kind", entry.kind),
                    "use kind = \"webhook\" (Telegram is configured in [telegram])",
                );
            }
            self.check_api_url(&format!("{base}.url"), &entry.url);
            let secret = self.secret_env(&format!("{base}.secret_env"), &entry.secret_env, "BATON_NOTIFY_SECRET");
            // Unset only when the load mode let it pass (a read-only command): never used then.
            out.push(NotifierConfig {
                name: entry.name.unwrap_or_else(|| format!("webhook-{i}")),
                url: entry.url,
                secret: secret.unwrap_or_default(),
            });
        }
        (self.issues.len() == before).then_some(out)
    }
}
