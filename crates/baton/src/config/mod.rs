//! `baton.toml`: reading, `${VAR}` interpolation, `BATON_*` overrides, and checks that report every problem.
//!
//! Loading never stops at the first mistake. The text is parsed (skipping broken lines to find
//! more syntax errors), each section and each entry is deserialized on its own, and then the
//! meaning is checked (names, prefixes, git repositories, files, limits, the pipeline). Every
//! problem becomes one [`ConfigIssue`] naming the key, what is wrong and how to fix it. Secret
//! values that came from the environment are replaced by their `${VAR}` reference in every
//! message, so printing the issues never leaks them.
//!
//! The work is split by concern: `sources` (where values come from: `${VAR}` interpolation,
//! `BATON_*` overrides, relative paths, and the final issues named after their sources),
//! `sections` (each section read into the engine's settings and checked), `diagnostics` (TOML
//! and serde errors turned into issues, "did you mean" suggestions) and `template` (the file
//! `baton init` writes).

mod diagnostics;
mod features;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod features_tests;
#[cfg(test)]
mod forge_tests;
mod keys;
mod pipelines;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod pipelines_tests;
mod sections;
mod sources;
mod template;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

pub use keys::accepted_keys;
pub use sections::{NotifierConfig, TelegramConfig, TelegramMode};
pub use template::init_template;

use baton_engine::{EngineSettings, SandboxSettings};
use sources::{Override, clean, env_get};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Table;

/// Where the server listens when `server.listen` is not set.
const DEFAULT_LISTEN: &str = "127.0.0.1:8377";

/// The `[server]` section.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`server.database_url`): several instances share that database. `None`:
    /// the SQLite file `baton.db` in the data directory.
    pub database_url: Option<String>,
    /// This server's name among the instances sharing the store (`server.instance_id`); by
    /// default the host name and a digest of the data directory ([`ServerConfig::instance`]).
    pub instance_id: Option<String>,
    /// The machine this instance reports to the others (`server.host`); by default the host name.
    /// An agent's process group is signalled only by instances on the same machine.
    pub host: Option<String>,
    pub api_token: Option<String>,
    /// Reads (`GET /api/...`) need a token with the `read` scope too.
    pub read_requires_token: bool,
    /// More environment variables whose values are secrets to mask (besides API-key variables and
    /// names with KEY, TOKEN, SECRET, PASSWORD).
    pub secret_env: Vec<String>,
    /// Connections served at once; more wait in the listen backlog (`server.max_connections`).
    pub max_connections: usize,
    /// Time a client has to send a whole request head (`server.header_timeout_secs`).
    pub header_timeout_secs: u64,
    /// A connection with no byte moving this long is closed (`server.idle_timeout_secs`).
    pub idle_timeout_secs: u64,
    /// Host names answered besides loopback and the listen address (`server.allowed_hosts`).
    pub allowed_hosts: Vec<String>,
    /// Serve `/metrics` and `/api/metrics` (`server.metrics`, default true).
    pub metrics: bool,
    /// Serve `/api/queue` (`server.queue_api`, default true).
    pub queue_api: bool,
    /// Serve `/api/events` (`server.events`, default true).
    pub events: bool,
    /// The web dashboard: off, read-only, or on with actions (`server.dashboard`).
    pub dashboard: baton_http::DashboardMode,
}

impl ServerConfig {
    /// The instance id: `server.instance_id`, else `<host>-<digest of the data directory>`
    /// (stable across restarts, distinct for two servers on one machine).
    pub fn instance(&self) -> String {
        if let Some(id) = &self.instance_id {
            return id.clone();
        }
        let dir = std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        // FNV-1a: a short, stable digest (not a secret, only a distinguisher).
        let digest = dir
            .to_string_lossy()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
        format!("{}-{:08x}", baton_engine::engine::local_host(), digest as u32)
    }
}

// Written by hand so that debug output and logs never show the token.
impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(baton_store_postgres::redact_url))
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("read_requires_token", &self.read_requires_token)
            .field("secret_env", &self.secret_env)
            .field("max_connections", &self.max_connections)
            .field("header_timeout_secs", &self.header_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("metrics", &self.metrics)
            .field("queue_api", &self.queue_api)
            .field("events", &self.events)
            .field("dashboard", &self.dashboard)
            .finish()
    }
}

/// What the configuration is loaded for: which missing secrets stop the load.
///
/// A secret's environment variable (`server.api_token = "${VAR}"`, a `[webhooks]` secret, a
/// tracker's `token_env`, a repository's `forge_token_env`) is needed only by the process that
/// uses it. `serve`, `demo` and `config check` insist on all of them; the other commands run
/// without the ones they never use, and keep each as a [`Config::deferred`] issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Every secret's variable must be set (`serve`, `demo`, `config check`).
    Serve,
    /// Commands that act on tasks and may carry out their effects at once (inputs reach the
    /// tracker or forge): the API token and webhook secrets may be unset, service tokens not.
    Act,
    /// Commands that only read or change Baton's own database: every secret may be unset.
    Read,
}

impl LoadMode {
    /// Whether an unset variable of this kind of secret is deferred rather than an error.
    fn defers(self, secret: SecretKind) -> bool {
        match (self, secret) {
            (LoadMode::Serve, _) => false,
            (LoadMode::Act, SecretKind::Server) => true,
            (LoadMode::Act, SecretKind::Service) => false,
            (LoadMode::Read, _) => true,
        }
    }
}

/// Who uses a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretKind {
    /// Only the server answers with it: `server.api_token`, `[webhooks]` secrets.
    Server,
    /// Calls to a tracker or forge carry it: `[[trackers]] token_env`, `forge_token_env`.
    Service,
}

/// The kind of secret a key holds, if it holds one.
fn secret_kind(key: &str) -> Option<SecretKind> {
    if key == "server.api_token" || key.starts_with("webhooks.") || key == "telegram.webhook_secret_env" {
        return Some(SecretKind::Server);
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    let service = ((key.starts_with("trackers[") || key.starts_with("repos["))
        && matches!(last, "token_env" | "forge_token_env"))
        || key == "telegram.bot_token_env"
        || (key.starts_with("notifiers[") && last == "secret_env");
    service.then_some(SecretKind::Service)
}

/// The loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub engine: EngineSettings,
    /// `[sandbox]`: how agent runs are confined.
    pub sandbox: SandboxSettings,
    /// `[webhooks]`: the secret of each webhook source (unset: that route answers 404).
    pub webhooks: baton_http::WebhookSecrets,
    /// `[[trackers]]`: where tickets come from and where task status is mirrored.
    pub trackers: Vec<TrackerConfig>,
    /// `[telegram]`: the live message per task, alerts and buttons (None: not configured).
    pub telegram: Option<TelegramConfig>,
    /// `[[notifiers]]`: further notifiers (signed JSON webhooks).
    pub notifiers: Vec<NotifierConfig>,
    /// `[retention]`: how long old history is kept (90 days unless set; 0 keeps everything).
    pub retention: baton_engine::Retention,
    /// `[features]`: the kill switches (every behaviour on unless switched off).
    pub features: baton_engine::Features,
    /// `[usage]` and `[pricing]`: the read-time category map and a user's pricing file.
    pub usage: baton_engine::usage::UsageSettings,
    /// `[retro]`: the retro stage after shipping (off unless enabled).
    pub retro: baton_engine::retro::RetroSettings,
    /// The file used; `None` means the embedded defaults.
    pub source: Option<PathBuf>,
    /// Problems the [`LoadMode`] let pass: secrets whose variables are unset, which `baton serve`
    /// (and `config check`) would report. Empty when loaded for `serve`.
    pub deferred: Vec<ConfigIssue>,
}

/// One `[[trackers]]` entry: the intake rule (which tickets start tasks, which labels or states
/// decide) and how to reach the tracker.
#[derive(Clone)]
pub struct TrackerConfig {
    pub rule: baton_engine::intake::IntakeRule,
    /// The REST API's base URL (`https://api.github.com`, `https://gitea.example/api/v1`,
    /// `https://plane.example/api/v1`).
    pub api_url: String,
    /// The variable that holds the token.
    pub token_env: String,
    /// The token itself (from `token_env`); never shown.
    pub token: String,
    /// Seconds between polls of the tracker (0: webhooks only).
    pub poll_secs: u64,
    /// Plane: the workspace slug.
    pub workspace: Option<String>,
}

impl std::fmt::Debug for TrackerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerConfig")
            .field("rule", &self.rule)
            .field("api_url", &self.api_url)
            .field("token_env", &self.token_env)
            .field("token", &"<redacted>")
            .field("poll_secs", &self.poll_secs)
            .field("workspace", &self.workspace)
            .finish()
    }
}

/// One problem in the configuration: the offending key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}\n  fix: {fix}")]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl ConfigIssue {
    fn new(key: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigIssue { key: key.into(), message: message.into(), fix: fix.into() }
    }
}

/// `$BATON_DATA_DIR`, else `$XDG_DATA_HOME/baton`, else `$HOME/.local/share/baton`, else `./baton-data`.
pub fn default_data_dir(env: &[(String, String)]) -> PathBuf {
    if let Some(dir) = env_get(env, "BATON_DATA_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    // The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    if let Some(xdg) = env_get(env, "XDG_DATA_HOME").filter(|v| Path::new(v).is_absolute()) {
        return Path::new(xdg).join("baton");
    }
    match env_get(env, "HOME").filter(|v| !v.is_empty()) {
        Some(home) => Path::new(home).join(".local").join("share").join("baton"),
        None => PathBuf::from("baton-data"),
    }
}

/// Loads `path` (or the embedded defaults when `None`), applying `${VAR}` interpolation and
/// `BATON_*` overrides from `env`; returns every problem found.
pub fn load(path: Option<&Path>, env: &[(String, String)], baton_exe: PathBuf) -> Result<Config, Vec<ConfigIssue>> {
    load_for(path, env, baton_exe, LoadMode::Serve)
}

/// Like [`load`], for a command that needs only some secrets (see [`LoadMode`]): a secret whose
/// variable is unset and that `mode` does not need is left empty and listed in
/// [`Config::deferred`] instead of failing the load.
pub fn load_for(
    path: Option<&Path>,
    env: &[(String, String)],
    baton_exe: PathBuf,
    mode: LoadMode,
) -> Result<Config, Vec<ConfigIssue>> {
    // Without a current directory relative paths stay relative, which is the best left to do.
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut loader = Loader::new(env, cwd.clone());
    loader.mode = mode;
    let Some(path) = path else {
        return loader.load_text(None, None, baton_exe);
    };
    let path = clean(&cwd.join(path));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(vec![ConfigIssue::new(
                path.display().to_string(),
                "the configuration file does not exist",
                "run `baton init` to write a commented baton.toml, or pass the right file with --config or BATON_CONFIG",
            )]);
        }
        Err(e) => {
            return Err(vec![ConfigIssue::new(
                path.display().to_string(),
                format!("the configuration file cannot be read: {e}"),
                "check that the path names a readable file",
            )]);
        }
    };
    let file_name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
    loader.config_dir = path.parent().map_or_else(|| cwd.clone(), Path::to_path_buf);
    loader.load_text(Some((&text, &file_name)), Some(path), baton_exe)
}

/// Loads configuration text as if read from `<base_dir>/baton.toml` with `base_dir` as the current
/// directory: the same parsing, interpolation, overrides and checks as [`load`], without reading
/// the file (tests and fuzzers). `Config::source` is `None`: the text came from no file.
pub fn load_str(
    text: &str,
    env: &[(String, String)],
    base_dir: &Path,
    baton_exe: PathBuf,
) -> Result<Config, Vec<ConfigIssue>> {
    Loader::new(env, base_dir.to_path_buf()).load_text(Some((text, "baton.toml")), None, baton_exe)
}

/// The state of one `load`: what has been found wrong, and where values came from.
struct Loader<'a> {
    env: &'a [(String, String)],
    cwd: PathBuf,
    /// Relative paths in the file resolve against this directory.
    config_dir: PathBuf,
    issues: Vec<ConfigIssue>,
    overrides: Vec<Override>,
    /// Values to hide in messages, each with what to show instead.
    secrets: Vec<(String, String)>,
    /// Which unset secrets are let pass.
    mode: LoadMode,
    /// The unset secrets let pass (reported in `Config::deferred`).
    deferred: Vec<ConfigIssue>,
}

impl<'a> Loader<'a> {
    fn new(env: &'a [(String, String)], cwd: PathBuf) -> Self {
        Loader {
            env,
            config_dir: cwd.clone(),
            cwd,
            issues: Vec::new(),
            overrides: Vec::new(),
            secrets: Vec::new(),
            mode: LoadMode::Serve,
            deferred: Vec::new(),
        }
    }

    /// Parses `text` (named `file_name` in issues) when given, then applies the `BATON_*`
    /// overrides, builds the configuration and checks it.
    fn load_text(
        mut self,
        text: Option<(&str, &str)>,
        source: Option<PathBuf>,
        baton_exe: PathBuf,
    ) -> Result<Config, Vec<ConfigIssue>> {
        let mut doc = Table::new();
        if let Some((text, file_name)) = text {
            doc = self.parse_document(text, file_name);
            self.interpolate_table(&mut doc, "");
        }
        self.apply_overrides(&mut doc);
        let config = self.build(doc, source, baton_exe);
        self.finish(config)
    }

    /// Records one problem.
    fn issue(&mut self, key: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) {
        self.issues.push(ConfigIssue::new(key, message, fix));
    }

    /// Records that the variable of the secret at `key` is unset: an issue, or a deferred one
    /// when the load mode lets this kind of secret pass.
    fn unset_secret(&mut self, key: &str, message: impl Into<String>, fix: impl Into<String>) {
        let issue = ConfigIssue::new(key, message, fix);
        match secret_kind(key) {
            Some(kind) if self.mode.defers(kind) => self.deferred.push(issue),
            _ => self.issues.push(issue),
        }
    }
}

/// A dotted key: `prefix.key`, or `key` at the top level.
fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}
