//! `baton.toml`: reading, `${VAR}` interpolation, `BATON_*` overrides, and checks that report every problem.
//!
//! Loading never stops at the first mistake. The text is parsed (skipping broken lines to find
//! more syntax errors), each section and each entry is deserialized on its own, and then the
//! meaning is checked (names, prefixes, git repositories, files, limits, the pipeline). Every
//! problem becomes one [`ConfigIssue`] naming the key, what is wrong and how to fix it. Secret
//! values that came from the environment are replaced by their `${VAR}` reference in every
//! message, so printing the issues never leaks them.

use baton_domain::ids::{valid_prefix, valid_repo_name};
use baton_domain::pipeline::{Actor, GateSpec, OnGateFail, Pipeline, PipelineProblem, StageSpec};
use baton_engine::{AdapterKind, AgentSettings, Budgets, EngineSettings, Limits, RepoSettings};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use toml::{Table, Value};

/// Where the server listens when `server.listen` is not set.
const DEFAULT_LISTEN: &str = "127.0.0.1:8377";
/// The top-level sections this version understands.
const SECTIONS: &[&str] = &["server", "limits", "budgets", "repos", "agents", "pipeline"];
/// Sections SPEC §13 names that this version does not read yet.
const PLANNED_SECTIONS: &[&str] = &["trackers", "forges", "notifiers", "features", "pricing"];
/// Agent roles always accepted under `[agents.<role>]`.
const BUILTIN_ROLES: &[&str] = &["default", "analyst", "architect", "developer", "reviewer", "tester"];
/// Keys of one `[[pipeline.stages]]` entry (`StageSpec` itself ignores unknown keys).
const STAGE_KEYS: &[&str] = &["name", "actor", "artifact", "gates", "confirm_before", "on_gate_fail"];
/// Limits that make Baton useless at 0 (nothing runs, or every run is stopped at once).
const LIMITS_NONZERO: &[&str] = &[
    "running_max",
    "running_per_repo_max",
    "agent_timeout_secs",
    "stall_timeout_secs",
    "command_timeout_secs",
    "lease_ttl_secs",
    "poll_interval_ms",
];
/// Prefix of the section names that stand in for broken table headers while hunting syntax errors.
const SKIPPED_SECTION: &str = "__baton_skipped_line_";
/// Syntax errors reported before giving up on the rest of the file.
const SYNTAX_ERRORS_MAX: usize = 20;
/// Field errors reported for one section or entry.
const FIELD_ERRORS_MAX: usize = 32;
/// Interpolated values shorter than this are not redacted (they would mangle unrelated text).
const REDACT_LEN_MIN: usize = 4;

/// The `[server]` section.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub api_token: Option<String>,
}

// Written by hand so that debug output and logs never show the token.
impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub engine: EngineSettings,
    /// The file used; `None` means the embedded defaults.
    pub source: Option<PathBuf>,
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
    // Without a current directory relative paths stay relative, which is the best left to do.
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut loader = Loader::new(env, cwd.clone());
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

/// A commented `baton.toml` for `baton init`; it loads cleanly as written.
pub fn init_template(data_dir_hint: &str) -> String {
    let defaults = limits_table(&Limits::default());
    let mut limits = String::new();
    for (key, doc) in LIMIT_DOCS {
        if let Some(value) = defaults.get(*key) {
            let entry = format!("# {key} = {value}");
            limits.push_str(&format!("{entry:<34} # {doc}\n"));
        }
    }
    let data_dir = Value::String(data_dir_hint.to_string());
    format!(
        "{TEMPLATE_HEAD}\n[server]\nlisten = \"{DEFAULT_LISTEN}\"\n\
         # Database, worktrees and agent run logs. Relative paths are resolved against this file's directory.\n\
         data_dir = {data_dir}\n{TEMPLATE_SERVER}\n\
         # Concurrency limits and timeouts; the values shown are the defaults.\n[limits]\n{limits}\n\
         {TEMPLATE_REPOS}\n{TEMPLATE_AGENTS}\n{TEMPLATE_PIPELINE_HEAD}{pipeline}",
        pipeline = commented_pipeline(&Pipeline::default_pipeline()),
    )
}

const TEMPLATE_HEAD: &str = "\
# baton.toml: Baton's configuration (reference: docs/configuration.md).
#
# Every key can also be set from the environment as BATON_<SECTION>__<KEY>, for example
# BATON_LIMITS__RUNNING_MAX=2 or BATON_SERVER__LISTEN=0.0.0.0:8377; BATON_DATA_DIR and
# BATON_API_TOKEN are shorthands. Secrets belong in the environment: write \"${VAR}\" to use one.
# Check this file with `baton config check`.
";

const TEMPLATE_SERVER: &str = "\
# The API token guards the API and dashboard actions. Keep it out of this file: export
# BATON_API_TOKEN, or name another variable here:
# api_token = \"${BATON_API_TOKEN}\"
# Environment variables passed through to agents besides the minimal set, e.g. [\"ANTHROPIC_API_KEY\"].
agent_env = []
";

const TEMPLATE_REPOS: &str = "\
# The repositories Baton works on, one [[repos]] block each. `path` must be a git checkout that
# has `default_branch`. Commands are argument lists (a string is split on spaces, no shell).
# [[repos]]
# name = \"demo\"                          # a-z, 0-9, '.', '_', '-'
# path = \"project\"                       # relative to this file
# default_branch = \"main\"
# prefix = \"DEMO\"                        # work items are DEMO-001, DEMO-002, ...
# test = [\"python3\", \"-m\", \"unittest\"]   # the tests_passed and merge gates run this
# deploy = [\"sh\", \"scripts/deploy.sh\"]   # run by the deploy stage after the merge
# health = [\"sh\", \"scripts/health.sh\"]   # the deploy_status gate runs this
";

const TEMPLATE_AGENTS: &str = "\
# Agents per role (analyst, architect, developer, reviewer, tester); [agents.default] covers
# every role without its own block.
# [agents.default]
# adapter = \"script\"                     # deterministic scripted agent, used by the demo
# script = \"script.toml\"                 # relative to this file
#
# [agents.developer]
# adapter = \"command\"                    # any program: prompt on stdin (or a file), exit code
# command = [\"my-agent\", \"--json\"]
# prompt = \"stdin\"                       # or \"file\": path in $BATON_PROMPT_FILE and {prompt_file}
# model = \"claude-sonnet-4-5\"
#
# [agents.reviewer]
# adapter = \"claude\"                     # or \"codex\", \"gemini\": the real CLIs
# model = \"claude-sonnet-4-5\"
# api_key_env = \"ANTHROPIC_API_KEY\"      # passed to this agent only
# allowed_tools = [\"Bash\"]
# max_turns = 40

# Spending caps in USD (none by default); `baton budget set` overrides them at runtime.
# [budgets]
# task_usd = 5.0
# repo_daily_usd = 50.0
# global_daily_usd = 200.0
# warn_ratio = 0.8                       # one alert per scope and day at 80 % of a cap
";

const TEMPLATE_PIPELINE_HEAD: &str = "\
# The pipeline. Without [pipeline] Baton uses the default below; a [pipeline] section replaces it
# entirely. Uncomment to change it.
# [pipeline]
";

/// One line of documentation per limit, used by the template (a test checks every limit has one).
const LIMIT_DOCS: &[(&str, &str)] = &[
    ("running_max", "jobs running at once, all repositories"),
    ("running_per_repo_max", "jobs running at once in one repository"),
    ("agent_timeout_secs", "wall-clock limit of one agent run"),
    ("stall_timeout_secs", "an agent silent this long is stopped"),
    ("stop_grace_secs", "SIGTERM to SIGKILL delay when stopping"),
    ("command_timeout_secs", "limit of test, deploy, health and gate commands"),
    ("poll_interval_ms", "how often the claim loop looks for work"),
    ("lease_ttl_secs", "lifetime of the merge lease (renewed while held)"),
    ("retry_max", "attempts of one stage before the task is blocked"),
    ("rollback_max", "rollbacks of one task before it is blocked"),
    ("retry_base_secs", "base of the exponential retry backoff"),
    ("merge_defer_secs", "delay before a deferred merge gate is retried"),
    ("merge_defer_max", "merge deferrals before the task is blocked"),
    ("reaper_interval_secs", "how often the reaper looks for orphaned jobs (0 = off)"),
    ("job_backstop_secs", "a job running longer is stopped and failed"),
    ("reconciler_interval_secs", "how often finished but unapplied jobs are looked for"),
    ("reconcile_grace_secs", "idle time before the reconciler acts on a task"),
];

/// The pipeline as commented `[[pipeline.stages]]` blocks in the short forms the loader accepts.
fn commented_pipeline(pipeline: &Pipeline) -> String {
    let short = |kind: &str| Value::String(kind.to_string()).to_string();
    let inline = |value: Option<Value>| value.map_or_else(String::new, |v| v.to_string());
    let mut out = String::new();
    for stage in &pipeline.stages {
        out.push_str("#\n# [[pipeline.stages]]\n");
        out.push_str(&format!("# name = {}\n", Value::String(stage.name.clone())));
        let actor = match &stage.actor {
            Actor::None => short("none"),
            Actor::Deploy => short("deploy"),
            agent => inline(Value::try_from(agent).ok()),
        };
        out.push_str(&format!("# actor = {actor}\n"));
        if let Some(artifact) = &stage.artifact {
            out.push_str(&format!("# artifact = {}\n", Value::String(artifact.clone())));
        }
        let gates: Vec<String> = stage
            .gates
            .iter()
            .map(|gate| match gate {
                GateSpec::Verdict { .. } | GateSpec::Command { .. } => inline(Value::try_from(gate).ok()),
                other => short(other.name()),
            })
            .collect();
        out.push_str(&format!("# gates = [{}]\n", gates.join(", ")));
        if stage.confirm_before {
            out.push_str("# confirm_before = true\n");
        }
        let on_fail = match &stage.on_gate_fail {
            OnGateFail::Retry => short("retry"),
            OnGateFail::Block => short("block"),
            rollback => inline(Value::try_from(rollback).ok()),
        };
        out.push_str(&format!("# on_gate_fail = {on_fail}\n"));
    }
    out
}

/// A key set from the environment, so issues about it can name the variable.
struct Override {
    key: String,
    var: String,
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
}

/// The outcome of deserializing one section or entry: the value, if it could be read once the
/// bad keys were set aside, and those bad keys (semantic checks skip them).
struct Parsed<T> {
    value: Option<T>,
    bad: Vec<String>,
}

impl<'a> Loader<'a> {
    fn new(env: &'a [(String, String)], cwd: PathBuf) -> Self {
        Loader { env, config_dir: cwd.clone(), cwd, issues: Vec::new(), overrides: Vec::new(), secrets: Vec::new() }
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

    fn issue(&mut self, key: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) {
        self.issues.push(ConfigIssue::new(key, message, fix));
    }

    /// Parses the text; on a syntax error, reports it and blanks that line to look for more.
    fn parse_document(&mut self, text: &str, file_name: &str) -> Table {
        let mut text = text.to_string();
        let mut found: Vec<(usize, usize, ConfigIssue)> = Vec::new();
        let mut table = Table::new();
        for attempt in 0..SYNTAX_ERRORS_MAX {
            let error = match text.parse::<Table>() {
                Ok(mut parsed) => {
                    parsed.retain(|key, _| !key.starts_with(SKIPPED_SECTION));
                    table = parsed;
                    break;
                }
                Err(error) => error,
            };
            let offset = error.span().map_or(text.len(), |span| span.start);
            let (line, column) = line_column(&text, offset);
            if found.iter().any(|(seen, _, _)| *seen == line) {
                // An error on a line already skipped is fallout of an unclosed array, table or
                // string; listing more would only add noise.
                break;
            }
            let line_text: String = text.lines().nth(line - 1).unwrap_or("").trim().chars().take(80).collect();
            let issue = ConfigIssue::new(
                format!("{file_name}:{line}:{column}"),
                format!("TOML syntax error at line {line}, column {column}: {}", error.message().trim()),
                if line_text.is_empty() {
                    format!("close the string, array or table that is still open at line {line}")
                } else {
                    format!(
                        "correct line {line} (`{line_text}`); strings need quotes, arrays use [a, b], tables [name]"
                    )
                },
            );
            found.push((line, column, issue));
            let next = skip_line(&text, line, attempt);
            if next == text {
                // The file cannot be parsed even with broken lines skipped; the syntax issues say why.
                break;
            }
            text = next;
        }
        // The parser does not always report the earliest error first; list them by position.
        found.sort_by_key(|(line, column, _)| (*line, *column));
        self.issues.extend(found.into_iter().map(|(_, _, issue)| issue));
        table
    }

    fn env_get(&self, name: &str) -> Option<&'a str> {
        env_get(self.env, name)
    }

    /// Replaces `${VAR}` (and `${VAR:-fallback}`) in every string value; `$${` is a literal `${`.
    fn interpolate_table(&mut self, table: &mut Table, prefix: &str) {
        for (key, value) in table.iter_mut() {
            let path = join_key(prefix, key);
            self.interpolate_value(value, &path);
        }
    }

    fn interpolate_value(&mut self, value: &mut Value, path: &str) {
        match value {
            Value::String(text) => {
                if let Some(expanded) = self.interpolate_str(text, path) {
                    *text = expanded;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate_value(item, &format!("{path}[{i}]"));
                }
            }
            Value::Table(table) => self.interpolate_table(table, path),
            _ => {}
        }
    }

    /// The expanded text, or `None` when it has no references or a reference is broken (reported).
    fn interpolate_str(&mut self, text: &str, key: &str) -> Option<String> {
        if !text.contains('$') {
            return None;
        }
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
            } else if let Some(after) = tail.strip_prefix("${") {
                let Some(end) = after.find('}') else {
                    self.issue(
                        key,
                        "a `${` has no closing `}`",
                        "close the reference as `${NAME}`, or write `$${` for a literal `${`",
                    );
                    return None;
                };
                let reference = &after[..end];
                let (name, fallback) = match reference.split_once(":-") {
                    Some((name, fallback)) => (name, Some(fallback)),
                    None => (reference, None),
                };
                if !valid_env_name(name) {
                    self.issue(
                        key,
                        format!("`${{{name}}}` is not a valid environment variable reference"),
                        "use letters, digits and `_`, not starting with a digit, e.g. `${BATON_API_TOKEN}`",
                    );
                    return None;
                }
                let value = match (self.env_get(name), fallback) {
                    (Some(""), Some(fallback)) => fallback,
                    (Some(value), _) => value,
                    (None, Some(fallback)) => fallback,
                    (None, None) => {
                        self.issue(
                            key,
                            format!("`${{{name}}}` refers to the environment variable {name}, which is not set"),
                            format!("export {name} before starting Baton, or write `${{{name}:-fallback}}` to give a default"),
                        );
                        return None;
                    }
                };
                self.secrets.push((value.to_string(), format!("${{{name}}}")));
                out.push_str(value);
                rest = &after[end + 1..];
            } else {
                out.push('$');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        Some(out)
    }

    /// Applies `BATON_<SECTION>__<KEY>` variables and the `BATON_DATA_DIR` / `BATON_API_TOKEN` shorthands.
    fn apply_overrides(&mut self, doc: &mut Table) {
        for (var, raw) in self.env {
            let segments: Vec<String> = match var.as_str() {
                "BATON_DATA_DIR" => vec!["server".into(), "data_dir".into()],
                "BATON_API_TOKEN" => vec!["server".into(), "api_token".into()],
                _ => match var.strip_prefix("BATON_").filter(|rest| rest.contains("__")) {
                    Some(rest) => rest.split("__").map(str::to_ascii_lowercase).collect(),
                    None => continue,
                },
            };
            if segments.iter().any(String::is_empty) {
                self.issue(
                    var.clone(),
                    "the variable name has an empty part",
                    "name it BATON_<SECTION>__<KEY>, e.g. BATON_LIMITS__RUNNING_MAX",
                );
                continue;
            }
            if !SECTIONS.contains(&segments[0].as_str()) {
                let fix = suggest_fix(&segments[0], SECTIONS, "the sections are");
                self.issue(var.clone(), format!("there is no `{}` section to override", segments[0]), fix);
                continue;
            }
            if segments.last().is_some_and(|key| key == "api_token") && raw.len() >= REDACT_LEN_MIN {
                self.secrets.push((raw.clone(), format!("${var}")));
            }
            let value = env_value(&segments, raw);
            match set_path(doc, &segments, value, "") {
                Ok(key) => self.overrides.push(Override { key, var: var.clone() }),
                Err(message) => self.issue(var.clone(), message, "check the section and key names in the variable"),
            }
        }
    }

    fn set_by_env(&self, key: &str) -> bool {
        self.overrides.iter().any(|o| o.key == key)
    }

    /// `~/` expands to `$HOME`; a relative path resolves against the config file's directory, or
    /// against the current directory when it came from the environment.
    fn resolve(&self, key: &str, path: &Path) -> PathBuf {
        if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), self.env_get("HOME")) {
            return clean(&Path::new(home).join(rest));
        }
        let base = if self.set_by_env(key) { &self.cwd } else { &self.config_dir };
        clean(&base.join(path))
    }

    fn build(&mut self, mut doc: Table, source: Option<PathBuf>, baton_exe: PathBuf) -> Option<Config> {
        for key in doc.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                let issue = unknown_section(key);
                self.issues.push(issue);
            }
        }
        let roles = pipeline_roles(doc.get("pipeline"));
        let server = self.server(doc.remove("server"));
        let limits = self.limits(doc.remove("limits"));
        let budgets = self.budgets(doc.remove("budgets"));
        let repos = self.repos(doc.remove("repos"));
        let agents = self.agents(doc.remove("agents"), &roles);
        let pipeline = self.pipeline(doc.remove("pipeline"));
        let (server, env_passthrough) = server?;
        let engine = EngineSettings {
            data_dir: server.data_dir.clone(),
            limits: limits?,
            repos: repos?,
            agents: agents?,
            pipeline: pipeline?,
            budgets: budgets?,
            baton_exe,
            env_passthrough,
        };
        Some(Config { server, engine, source })
    }

    /// The issues, each key set by the environment renamed to its variable and secrets hidden.
    fn finish(self, config: Option<Config>) -> Result<Config, Vec<ConfigIssue>> {
        if self.issues.is_empty() {
            return config.ok_or_else(|| {
                vec![ConfigIssue::new("config", "the configuration could not be assembled", "report this as a bug")]
            });
        }
        let mut secrets = self.secrets;
        secrets.retain(|(value, _)| value.len() >= REDACT_LEN_MIN);
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        let redact =
            |text: &str| secrets.iter().fold(text.to_string(), |acc, (value, shown)| acc.replace(value, shown));
        let mut out: Vec<ConfigIssue> = Vec::new();
        for mut issue in self.issues {
            let set_by = self.overrides.iter().rev().find(|o| {
                issue.key == o.key
                    || issue.key.strip_prefix(o.key.as_str()).is_some_and(|rest| rest.starts_with(['.', '[']))
            });
            if let Some(o) = set_by {
                issue.message = format!("{} (`{}` is set by {})", issue.message, issue.key, o.var);
                issue.key = o.var.clone();
            }
            issue.message = redact(&issue.message);
            issue.fix = redact(&issue.fix);
            if !out.contains(&issue) {
                out.push(issue);
            }
        }
        Err(out)
    }

    /// Takes a section that must be a table; reports it otherwise.
    fn section_table(&mut self, key: &str, value: Option<Value>, how: &str) -> Option<Table> {
        match value {
            None => Some(Table::new()),
            Some(Value::Table(table)) => Some(table),
            Some(other) => {
                self.issue(key, format!("`{key}` must be a table, not {}", type_name(&other)), how.to_string());
                None
            }
        }
    }

    /// Deserializes one section or entry, reporting each bad key (up to a limit), not just the first.
    /// A bad value is replaced by a placeholder of a type the field accepts (or removed), so the
    /// rest of the entry can still be read and checked.
    fn deserialize<T: DeserializeOwned>(&mut self, base: &str, mut table: Table) -> Parsed<T> {
        let mut bad: Vec<String> = Vec::new();
        for _ in 0..FIELD_ERRORS_MAX {
            let error = match try_table::<T>(&table) {
                Ok(value) => return Parsed { value: Some(value), bad },
                Err(error) => error,
            };
            let problem = SerdeProblem::from_error(&error);
            if let ProblemKind::Missing(field) = &problem.kind
                && problem.path.is_empty()
                && bad.contains(field)
            {
                // A required key set aside as bad: already reported.
                return Parsed { value: None, bad };
            }
            self.issues.push(problem.issue(base));
            let Some(key) = problem.culprit().filter(|key| table.contains_key(key)) else {
                return Parsed { value: None, bad };
            };
            let placeholder = match problem.kind {
                ProblemKind::UnknownField { .. } => None,
                _ => placeholder_for::<T>(&table, &key, &problem),
            };
            match placeholder {
                Some(value) => table.insert(key.clone(), value),
                None => table.remove(&key),
            };
            bad.push(key);
        }
        Parsed { value: None, bad }
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
            api_token: Option<String>,
            #[serde(default)]
            agent_env: Vec<String>,
        }
        let mut table = self.section_table("server", raw, "write it as a [server] section")?;
        split_string_list(&mut table, "agent_env", |c| c.is_whitespace() || c == ',');
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
        let server = ServerConfig { listen: listen?, data_dir: data_dir?, api_token };
        sound.then_some((server, section.agent_env))
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
            for key in ["test", "deploy", "health"] {
                split_string_list(&mut table, key, char::is_whitespace);
            }
            let parsed = self.deserialize::<RepoSettings>(&base, table);
            ok &= parsed.bad.is_empty();
            let Some(mut repo) = parsed.value else {
                ok = false;
                continue;
            };
            ok &= self.check_repo(&base, &mut repo, &parsed.bad, &mut names, i);
            repos.push(repo);
        }
        ok.then_some(repos)
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
        if !skip("path") {
            repo.path = self.resolve(&format!("{base}.path"), &repo.path);
            if !skip("default_branch") {
                self.check_git_repo(base, &repo.path, &repo.default_branch);
            }
        }
        for (key, argv) in [("test", &repo.test), ("deploy", &repo.deploy), ("health", &repo.health)] {
            if let Some(argv) = argv
                && !skip(key)
            {
                self.check_argv(&format!("{base}.{key}"), argv);
            }
        }
        self.issues.len() == before
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
        let Some(git_dir) = git_dir(path) else {
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
        if !has_branch(&git_dir, branch) {
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

    fn pipeline(&mut self, raw: Option<Value>) -> Option<Pipeline> {
        let Some(raw) = raw else {
            return Some(Pipeline::default_pipeline());
        };
        let mut table = self.section_table("pipeline", Some(raw), "write it as a [pipeline] section")?;
        let mut ok = true;
        for key in table.keys().filter(|k| k.as_str() != "stages") {
            let fix = suggest_fix(key, &["stages"], "the only key is");
            self.issues.push(ConfigIssue::new(format!("pipeline.{key}"), format!("unknown key `{key}`"), fix));
            ok = false;
        }
        let stages = match table.remove("stages") {
            Some(Value::Array(stages)) => stages,
            Some(other) => {
                self.issue(
                    "pipeline.stages",
                    format!("`stages` must be a list of tables, not {}", type_name(&other)),
                    "write each stage as a [[pipeline.stages]] block",
                );
                return None;
            }
            None => {
                self.issue(
                    "pipeline.stages",
                    "[pipeline] has no `stages`",
                    "list the stages as [[pipeline.stages]] blocks, or remove [pipeline] to use the default pipeline",
                );
                return None;
            }
        };
        let mut specs = Vec::new();
        for (i, stage) in stages.into_iter().enumerate() {
            let base = format!("pipeline.stages[{i}]");
            let Value::Table(stage) = stage else {
                self.issue(base, "a stage must be a table", "write each stage as a [[pipeline.stages]] block");
                ok = false;
                continue;
            };
            let stage = self.stage_defaults(&base, stage);
            let parsed = self.deserialize::<StageSpec>(&base, stage);
            ok &= parsed.bad.is_empty();
            match parsed.value {
                Some(spec) => {
                    for (g, gate) in spec.gates.iter().enumerate() {
                        if let GateSpec::Command { argv, .. } = gate {
                            self.check_argv(&format!("{base}.gates[{g}].argv"), argv);
                        }
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
            self.issue(stage_key(&pipeline, problem), problem.to_string(), pipeline_fix(problem));
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

fn try_table<T: DeserializeOwned>(table: &Table) -> Result<T, toml::de::Error> {
    Value::Table(table.clone()).try_into::<T>()
}

/// A value for `key` that deserializes, so the other keys of the entry can be checked.
fn placeholder_for<T: DeserializeOwned>(table: &Table, key: &str, problem: &SerdeProblem) -> Option<Value> {
    let mut candidates = Vec::new();
    if let ProblemKind::UnknownVariant { expected, .. } = &problem.kind {
        candidates.extend(expected.first().map(|variant| Value::String(variant.clone())));
    }
    candidates.extend([
        Value::String(String::new()),
        Value::Integer(1),
        Value::Boolean(false),
        Value::Array(Vec::new()),
        Value::Table(Table::new()),
    ]);
    candidates.into_iter().find(|candidate| {
        let mut trial = table.clone();
        trial.insert(key.to_string(), candidate.clone());
        match try_table::<T>(&trial) {
            Ok(_) => true,
            Err(error) => SerdeProblem::from_error(&error).culprit().as_deref() != Some(key),
        }
    })
}

/// What serde said was wrong, and where.
struct SerdeProblem {
    kind: ProblemKind,
    /// Keys below the section leading to the problem (from toml's "in `a.b`" note).
    path: Vec<String>,
    message: String,
}

enum ProblemKind {
    UnknownField { field: String, expected: Vec<String> },
    Missing(String),
    UnknownVariant { expected: Vec<String>, given: String },
    Other { expected: Option<String> },
}

impl SerdeProblem {
    fn from_error(error: &toml::de::Error) -> Self {
        let message = error.message().trim().to_string();
        // toml appends "in `a.b`" to the display of errors raised below the top level.
        let rendered = error.to_string();
        let path = rendered
            .lines()
            .rev()
            .find_map(|line| line.trim().strip_prefix("in `")?.strip_suffix('`').map(str::to_string))
            .map(|p| p.split('.').map(str::to_string).collect())
            .unwrap_or_default();
        let ticks = backticked(&message);
        let expected_ticks = message.split_once("expected").map(|(_, rest)| backticked(rest)).unwrap_or_default();
        let kind = if message.starts_with("unknown field") {
            ProblemKind::UnknownField { field: ticks.first().cloned().unwrap_or_default(), expected: expected_ticks }
        } else if message.starts_with("missing field") {
            ProblemKind::Missing(ticks.first().cloned().unwrap_or_default())
        } else if message.starts_with("unknown variant") {
            ProblemKind::UnknownVariant { given: ticks.first().cloned().unwrap_or_default(), expected: expected_ticks }
        } else {
            let expected = message.rsplit_once(", expected ").map(|(_, e)| friendly_type(e));
            ProblemKind::Other { expected }
        };
        SerdeProblem { kind, path, message }
    }

    /// The key of the section or entry to set aside so the rest can be checked.
    fn culprit(&self) -> Option<String> {
        match (&self.kind, self.path.first()) {
            (_, Some(first)) => Some(first.clone()),
            (ProblemKind::UnknownField { field, .. }, None) => Some(field.clone()),
            _ => None,
        }
    }

    fn issue(&self, base: &str) -> ConfigIssue {
        let at = self.path.iter().fold(base.to_string(), |acc, part| join_key(&acc, part));
        match &self.kind {
            ProblemKind::UnknownField { field, expected } => {
                let known: Vec<&str> = expected.iter().map(String::as_str).collect();
                ConfigIssue::new(
                    join_key(&at, field),
                    format!("unknown key `{field}`"),
                    suggest_fix(field, &known, "the keys allowed here are"),
                )
            }
            ProblemKind::Missing(field) => ConfigIssue::new(
                join_key(&at, field),
                format!("the required key `{field}` is missing"),
                format!("add `{field} = …` to {at}"),
            ),
            ProblemKind::UnknownVariant { given, expected } => {
                let known: Vec<&str> = expected.iter().map(String::as_str).collect();
                ConfigIssue::new(
                    at,
                    format!("`{given}` is not one of the accepted values"),
                    suggest_fix(given, &known, "use one of"),
                )
            }
            ProblemKind::Other { expected } => {
                let fix = match expected {
                    Some(expected) => format!("give `{at}` {expected}"),
                    None => format!("correct the value of `{at}`"),
                };
                ConfigIssue::new(at, self.message.clone(), fix)
            }
        }
    }
}

/// Serde's type words in configuration terms.
fn friendly_type(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "a sequence" => "a list, e.g. [\"a\", \"b\"]".to_string(),
        "a boolean" => "true or false".to_string(),
        other if other.starts_with("struct ") || other.contains("enum ") => "a table".to_string(),
        other => other.to_string(),
    }
}

fn env_get<'e>(env: &'e [(String, String)], name: &str) -> Option<&'e str> {
    env.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

/// Lexically removes `.` components so messages show tidy paths.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The text with line `line` (1-based) neutralized: a broken table header becomes a placeholder
/// section (so the keys under it do not land in the previous table), anything else a blank line.
fn skip_line(text: &str, line: usize, attempt: usize) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    if let Some(target) = lines.get_mut(line - 1) {
        *target =
            if target.trim_start().starts_with('[') { format!("[{SKIPPED_SECTION}{attempt}]") } else { String::new() };
    }
    lines.join("\n")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// The `name` in each backtick pair of `text`.
fn backticked(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
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

fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    // `localhost:8377` is common enough to accept without a DNS lookup.
    let port = text.strip_prefix("localhost:")?;
    format!("127.0.0.1:{port}").parse().ok()
}

fn limits_table(limits: &Limits) -> Table {
    match Value::try_from(limits) {
        Ok(Value::Table(table)) => table,
        _ => Table::new(),
    }
}

/// An override's value: a TOML value when the text is one (numbers, booleans, arrays), else the
/// text itself. Keys that only take strings always keep the text, so a numeric token stays a string.
fn env_value(segments: &[String], raw: &str) -> Value {
    let last = segments.last().map_or("", String::as_str);
    let string_only = match segments[0].as_str() {
        "server" => matches!(last, "listen" | "data_dir" | "api_token"),
        "repos" => matches!(last, "name" | "path" | "default_branch" | "prefix"),
        "agents" => matches!(last, "adapter" | "script" | "model" | "prompt"),
        _ => false,
    };
    if !string_only
        && let Ok(mut table) = format!("value = {raw}").parse::<Table>()
        && table.len() == 1
        && let Some(value) = table.remove("value")
        && !matches!(value, Value::Datetime(_))
    {
        return value;
    }
    Value::String(raw.to_string())
}

/// Sets `segments` in `table`, creating tables on the way; an array element is chosen by index
/// or by its `name`. Returns the key as issues spell it (`repos[0].path`).
fn set_path(table: &mut Table, segments: &[String], value: Value, prefix: &str) -> Result<String, String> {
    let Some((first, rest)) = segments.split_first() else {
        return Err("the variable names no key".to_string());
    };
    let key = join_key(prefix, first);
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(key);
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| if first == "repos" { Value::Array(Vec::new()) } else { Value::Table(Table::new()) });
    match entry {
        Value::Table(inner) => set_path(inner, rest, value, &key),
        Value::Array(items) => {
            let (selector, rest) = rest.split_first().ok_or_else(|| format!("`{key}` needs an index"))?;
            let index = selector.parse::<usize>().ok().filter(|i| *i < items.len()).or_else(|| {
                items.iter().position(|item| item.get("name").and_then(Value::as_str) == Some(selector.as_str()))
            });
            let Some(index) = index else {
                return Err(format!(
                    "`{key}` has no entry `{selector}` (use an index below {} or an entry's name)",
                    items.len()
                ));
            };
            let key = format!("{key}[{index}]");
            match (rest.is_empty(), &mut items[index]) {
                (true, slot) => {
                    *slot = value;
                    Ok(key)
                }
                (false, Value::Table(inner)) => set_path(inner, rest, value, &key),
                (false, _) => Err(format!("`{key}` is not a table")),
            }
        }
        other => Err(format!("`{key}` is {}, so nothing can be set inside it", type_name(other))),
    }
}

fn unknown_section(key: &str) -> ConfigIssue {
    if PLANNED_SECTIONS.contains(&key) {
        return ConfigIssue::new(
            key,
            format!("the `{key}` section is not supported by this version of Baton"),
            "remove it; the sections read are server, limits, repos, agents and pipeline",
        );
    }
    ConfigIssue::new(key, format!("unknown section `{key}`"), suggest_fix(key, SECTIONS, "the sections are"))
}

/// The agent roles `[agents.<role>]` may name: the built-in ones plus every role of the pipeline.
fn pipeline_roles(raw: Option<&Value>) -> Vec<String> {
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
    for role in from_pipeline {
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles
}

/// The key of the stage a pipeline problem concerns (the first stage of that name), or of the
/// whole list for a problem of the pipeline.
fn stage_key(pipeline: &Pipeline, problem: &PipelineProblem) -> String {
    problem
        .stage()
        .and_then(|name| pipeline.stages.iter().position(|s| s.name == name))
        .map_or_else(|| "pipeline.stages".to_string(), |i| format!("pipeline.stages[{i}]"))
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
    }
}

/// "did you mean `x`?" when a known name is close, else the list of known names.
fn suggest_fix(given: &str, known: &[&str], list_intro: &str) -> String {
    let closest = known
        .iter()
        .map(|k| (edit_distance(given, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    match closest {
        Some(name) => format!("did you mean `{name}`? ({list_intro}: {})", known.join(", ")),
        None if known.is_empty() => format!("remove `{given}`"),
        None => format!("remove or rename `{given}`; {list_intro}: {}", known.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The git directory of a checkout: `.git` itself, or where a `.git` file (`gitdir: …`) points.
fn git_dir(repo: &Path) -> Option<PathBuf> {
    let dot_git = repo.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    Some(repo.join(target))
}

/// Whether the branch exists as a loose ref or in packed-refs (in the common dir of a worktree).
fn has_branch(git_dir: &Path, branch: &str) -> bool {
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim()),
        Err(_) => git_dir.to_path_buf(),
    };
    // The reftable format cannot be read without git; trust the configuration then.
    if common.join("reftable").is_dir() {
        return true;
    }
    if common.join("refs").join("heads").join(branch).is_file() {
        return true;
    }
    let wanted = format!("refs/heads/{branch}");
    std::fs::read_to_string(common.join("packed-refs")).is_ok_and(|packed| {
        packed.lines().any(|line| line.split_once(' ').is_some_and(|(_, name)| name.trim() == wanted))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A git repository at `path` with one commit on `main`.
    #[allow(clippy::disallowed_methods)] // tests may run git directly to build fixtures
    fn git_repo(path: &Path) {
        std::fs::create_dir_all(path).unwrap();
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "init"],
        ] {
            let status = std::process::Command::new("git").args(args).current_dir(path).status().unwrap();
            assert!(status.success(), "git {args:?}");
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load_file(path: &Path, vars: &[(&str, &str)]) -> Result<Config, Vec<ConfigIssue>> {
        load(Some(path), &env(vars), PathBuf::from("/usr/bin/baton"))
    }

    fn issues(result: Result<Config, Vec<ConfigIssue>>) -> Vec<ConfigIssue> {
        match result {
            Ok(config) => panic!("expected issues, got {config:?}"),
            Err(issues) => issues,
        }
    }

    fn loaded(result: Result<Config, Vec<ConfigIssue>>) -> Config {
        result
            .unwrap_or_else(|issues| panic!("{}", issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n")))
    }

    fn find<'i>(issues: &'i [ConfigIssue], key: &str) -> &'i ConfigIssue {
        issues.iter().find(|i| i.key == key).unwrap_or_else(|| panic!("no issue for `{key}` in {issues:#?}"))
    }

    /// A valid file: a git repo `project`, a script file, one default agent.
    fn valid_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git_repo(&dir.path().join("project"));
        write(dir.path(), "script.toml", "");
        write(
            dir.path(),
            "baton.toml",
            "[server]\nlisten = \"127.0.0.1:9000\"\ndata_dir = \"data\"\nagent_env = [\"ANTHROPIC_API_KEY\"]\n\n\
             [limits]\nrunning_max = 3\n\n\
             [[repos]]\nname = \"demo\"\npath = \"./project\"\nprefix = \"DEMO\"\ntest = \"python3 -m  unittest\"\n\
             deploy = [\"sh\", \"scripts/deploy.sh\"]\n\n\
             [agents.default]\nadapter = \"script\"\nscript = \"script.toml\"\n\n\
             [agents.developer]\nadapter = \"command\"\ncommand = \"my-agent --json\"\n",
        );
        dir
    }

    // Without a file, the embedded defaults load: default listen, XDG-style data dir, default pipeline.
    #[test]
    fn no_file_means_embedded_defaults() {
        let config = loaded(load(None, &env(&[("HOME", "/home/u")]), PathBuf::from("baton")));
        assert_eq!(config.server.listen, DEFAULT_LISTEN.parse::<SocketAddr>().unwrap());
        assert_eq!(config.server.data_dir, PathBuf::from("/home/u/.local/share/baton"));
        assert_eq!(config.engine.data_dir, config.server.data_dir);
        assert_eq!(config.server.api_token, None);
        assert!(config.engine.repos.is_empty() && config.engine.agents.is_empty());
        assert_eq!(config.engine.pipeline, Pipeline::default_pipeline());
        assert_eq!(config.engine.limits.running_max, Limits::default().running_max);
        assert_eq!(config.engine.baton_exe, PathBuf::from("baton"));
        assert!(config.source.is_none());
    }

    // Text loaded with `load_str` gives what `load` gives for the same file, relative paths
    // resolving against the base directory, with no source file recorded.
    #[test]
    fn load_str_matches_load_of_the_same_file() {
        let dir = valid_dir();
        let root = dir.path();
        let text = std::fs::read_to_string(root.join("baton.toml")).unwrap();
        let from_text = loaded(load_str(&text, &env(&[]), root, PathBuf::from("/usr/bin/baton")));
        let from_file = loaded(load_file(&root.join("baton.toml"), &[]));
        assert!(from_text.source.is_none());
        assert_eq!(format!("{:?}", from_text.engine), format!("{:?}", from_file.engine));
        assert_eq!(from_text.server.data_dir, root.join("data"));
        let found = issues(load_str("[server\nlisten = 1\n", &env(&[]), root, PathBuf::from("baton")));
        assert!(found[0].key.starts_with("baton.toml:1:"), "{found:#?}");
    }

    // The default data dir prefers BATON_DATA_DIR, then an absolute XDG_DATA_HOME, then HOME.
    #[test]
    fn default_data_dir_precedence() {
        let all = env(&[("HOME", "/h"), ("XDG_DATA_HOME", "/x"), ("BATON_DATA_DIR", "/b")]);
        assert_eq!(default_data_dir(&all), PathBuf::from("/b"));
        assert_eq!(default_data_dir(&all[..2]), PathBuf::from("/x/baton"));
        assert_eq!(
            default_data_dir(&env(&[("HOME", "/h"), ("XDG_DATA_HOME", "rel")])),
            PathBuf::from("/h/.local/share/baton")
        );
        assert_eq!(default_data_dir(&[]), PathBuf::from("baton-data"));
    }

    // A missing file is one issue that names the file and points at `baton init`.
    #[test]
    fn missing_file_suggests_init() {
        let dir = tempfile::tempdir().unwrap();
        let found = issues(load_file(&dir.path().join("nope.toml"), &[]));
        assert_eq!(found.len(), 1);
        assert!(found[0].key.ends_with("nope.toml"));
        assert!(found[0].fix.contains("baton init"));
    }

    // A valid file loads; relative paths resolve against its directory; string commands are split.
    #[test]
    fn valid_file_resolves_paths_and_splits_commands() {
        let dir = valid_dir();
        let root = dir.path();
        let config = loaded(load_file(&root.join("baton.toml"), &[]));
        assert_eq!(config.source.as_deref(), Some(root.join("baton.toml").as_path()));
        assert_eq!(config.server.listen.port(), 9000);
        assert_eq!(config.server.data_dir, root.join("data"));
        assert_eq!(config.engine.env_passthrough, vec!["ANTHROPIC_API_KEY".to_string()]);
        assert_eq!(config.engine.limits.running_max, 3);
        let repo = config.engine.repo("demo").unwrap();
        assert_eq!(repo.path, root.join("project"));
        assert_eq!(repo.default_branch, "main");
        assert_eq!(repo.test.as_deref().unwrap(), ["python3", "-m", "unittest"]);
        let default = config.engine.agent_for("analyst").unwrap();
        assert_eq!(default.script.as_deref(), Some(root.join("script.toml").as_path()));
        let developer = config.engine.agent_for("developer").unwrap();
        assert_eq!(developer.command.as_deref().unwrap(), ["my-agent", "--json"]);
    }

    // A file with mistakes in every section reports all of them, each with its key and a fix.
    #[test]
    fn every_problem_is_reported_with_key_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        git_repo(&dir.path().join("project"));
        std::fs::create_dir_all(dir.path().join("plain")).unwrap();
        let path = write(
            dir.path(),
            "baton.toml",
            "[server]\nlisten = \"not an address\"\napi_token = \"${MISSING_TOKEN}\"\n\n\
             [limits]\nrunning_max = 0\nruning_per_repo_max = 2\nagent_timeout_secs = \"long\"\n\n\
             [[repos]]\nname = \"demo\"\npath = \"project\"\nprefix = \"demo\"\ndefault_branch = \"develop\"\ntest = []\n\n\
             [[repos]]\nname = \"demo\"\npath = \"plain\"\nprefix = 7\n\n\
             [[repos]]\nname = \"Bad Name\"\npath = \"missing\"\nprefix = \"OK\"\n\n\
             [agents.default]\nadapter = \"script\"\n\n\
             [agents.developer]\nadapter = \"scrip\"\n\n\
             [agents.wizard]\nadapter = \"command\"\n\n\
             [pipeline]\nstages = [{ name = \"build\", actor = \"none\", on_gate_fail = { kind = \"rollback\", to = \"nowhere\" } }]\n\n\
             [trackers]\nkind = \"plane\"\n\n[extra]\n",
        );
        let found = issues(load_file(&path, &[]));
        for key in [
            "trackers",
            "extra",
            "server.api_token",
            "server.listen",
            "limits.running_max",
            "limits.runing_per_repo_max",
            "limits.agent_timeout_secs",
            "repos[0].prefix",
            "repos[0].default_branch",
            "repos[0].test",
            "repos[1].prefix",
            "repos[2].name",
            "repos[2].path",
            "agents.default.script",
            "agents.developer.adapter",
            "agents.wizard",
            "agents.wizard.command",
            "pipeline.stages[0]",
        ] {
            let issue = find(&found, key);
            assert!(!issue.message.is_empty() && !issue.fix.is_empty(), "{issue:?}");
        }
        assert!(find(&found, "limits.runing_per_repo_max").fix.contains("running_per_repo_max"));
        assert!(find(&found, "agents.developer.adapter").fix.contains("`script`"));
        assert!(find(&found, "repos[0].prefix").fix.contains("ORCH"));
        assert!(find(&found, "server.api_token").message.contains("MISSING_TOKEN"));
        // The second `demo` is a duplicate name; the `plain` directory is not a git repository.
        assert!(found.iter().any(|i| i.key == "repos[1].name" && i.message.contains("already used")));
        assert!(find(&found, "repos[1].path").message.contains("not a git repository"));
        assert!(found.len() >= 20, "{found:#?}");
    }

    // Syntax errors carry line and column; broken lines are skipped so later sections are still checked.
    #[test]
    fn syntax_errors_do_not_hide_other_problems() {
        let dir = tempfile::tempdir().unwrap();
        let path =
            write(dir.path(), "baton.toml", "[server]\nlisten = 127.0.0.1:80\n\n[limits]\nrunning_max = 0\n[[repos]\n");
        let found = issues(load_file(&path, &[]));
        let syntax: Vec<_> = found.iter().filter(|i| i.message.starts_with("TOML syntax error")).collect();
        assert_eq!(syntax.len(), 2, "{found:#?}");
        assert!(syntax[0].key.starts_with("baton.toml:2:"), "{:?}", syntax[0]);
        assert!(syntax[0].message.contains("line 2, column"));
        assert!(syntax[1].key.starts_with("baton.toml:6:"));
        find(&found, "limits.running_max");
    }

    // Environment overrides set keys (parsed as TOML values), and relative env paths use the current dir.
    #[test]
    fn env_overrides_apply() {
        let dir = valid_dir();
        let vars = [
            ("BATON_SERVER__LISTEN", "0.0.0.0:7000"),
            ("BATON_LIMITS__RUNNING_MAX", "2"),
            ("BATON_LIMITS__STOP_GRACE_SECS", "0"),
            ("BATON_DATA_DIR", "from-env"),
            ("BATON_API_TOKEN", "12345678"),
            ("BATON_REPOS__DEMO__TEST", "make check"),
            ("BATON_REPOS__0__PREFIX", "ORCH"),
            ("BATON_AGENTS__DEVELOPER__COMMAND", "[\"other\", \"--x\"]"),
            ("BATON_PROMPT_FILE", "/ignored"),
        ];
        let config = loaded(load_file(&dir.path().join("baton.toml"), &vars));
        assert_eq!(config.server.listen, "0.0.0.0:7000".parse::<SocketAddr>().unwrap());
        assert_eq!(config.engine.limits.running_max, 2);
        assert_eq!(config.engine.limits.stop_grace_secs, 0);
        assert_eq!(config.server.data_dir, std::env::current_dir().unwrap().join("from-env"));
        assert_eq!(config.server.api_token.as_deref(), Some("12345678"));
        let repo = config.engine.repo("demo").unwrap();
        assert_eq!(repo.test.as_deref().unwrap(), ["make", "check"]);
        assert_eq!(repo.prefix, "ORCH");
        assert_eq!(config.engine.agents["developer"].command.as_deref().unwrap(), ["other", "--x"]);
    }

    // A bad override is reported under the variable's name, with the key it overrides in the message.
    #[test]
    fn bad_env_overrides_name_the_variable() {
        let vars = [
            ("BATON_LIMITS__RUNNING_MAX", "many"),
            ("BATON_LIMITS__COMMAND_TIMEOUT_SECS", "0"),
            ("BATON_LIMITS__RUNING_MAX", "1"),
            ("BATON_NOPE__X", "1"),
            ("BATON_SERVER__LISTEN", "nowhere"),
            ("BATON_REPOS__GHOST__PATH", "/tmp"),
        ];
        let found = issues(load(None, &env(&vars), PathBuf::from("baton")));
        for (var, _) in vars {
            let issue = find(&found, var);
            assert!(!issue.fix.is_empty());
        }
        assert!(find(&found, "BATON_LIMITS__RUNNING_MAX").message.contains("limits.running_max"));
        assert!(find(&found, "BATON_LIMITS__RUNING_MAX").fix.contains("running_max"));
        assert!(find(&found, "BATON_NOPE__X").fix.contains("server"));
        assert_eq!(found.len(), vars.len(), "{found:#?}");
    }

    // `${VAR}` takes the variable's value; an unset one is named; secret values never appear in messages.
    #[test]
    fn interpolation_expands_and_never_leaks_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "s3cr3t-token-value";
        let good =
            write(dir.path(), "good.toml", "[server]\napi_token = \"${TOKEN}\"\ndata_dir = \"${BASE:-fallback}/d\"\n");
        let config = loaded(load_file(&good, &[("TOKEN", secret)]));
        assert_eq!(config.server.api_token.as_deref(), Some(secret));
        assert_eq!(config.server.data_dir, dir.path().join("fallback/d"));
        assert!(!format!("{config:?}").contains(secret));

        let bad = write(
            dir.path(),
            "bad.toml",
            "[server]\napi_token = \"${TOKEN}\"\nlisten = \"${TOKEN}\"\n[limits]\nrunning_max = \"${TOKEN}\"\n\
             [[repos]]\nname = \"x\"\npath = \"${NOT_SET}\"\nprefix = \"$${LITERAL}\"\n",
        );
        let found = issues(load_file(&bad, &[("TOKEN", secret)]));
        let unset = find(&found, "repos[0].path");
        assert!(unset.message.contains("NOT_SET") && unset.fix.contains("export NOT_SET"));
        find(&found, "server.listen");
        find(&found, "limits.running_max");
        assert!(find(&found, "repos[0].prefix").message.contains("${LITERAL}"));
        for issue in &found {
            assert!(!issue.to_string().contains(secret), "secret leaked: {issue}");
        }
    }

    // A custom pipeline in short form loads; its agent roles become valid `[agents.<role>]` names.
    #[test]
    fn custom_pipeline_and_its_roles() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.toml", "");
        let path = write(
            dir.path(),
            "baton.toml",
            "[agents.coder]\nadapter = \"script\"\nscript = \"s.toml\"\n\n\
             [[pipeline.stages]]\nname = \"code\"\nactor = { kind = \"agent\", role = \"coder\" }\ngates = [\"tests_passed\"]\n\n\
             [[pipeline.stages]]\nname = \"ship\"\nactor = \"deploy\"\ngates = [\"deploy_status\"]\nconfirm_before = true\non_gate_fail = \"block\"\n",
        );
        let config = loaded(load_file(&path, &[]));
        let stages = &config.engine.pipeline.stages;
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].on_gate_fail, OnGateFail::Retry);
        assert_eq!(stages[1].actor, Actor::Deploy);
        assert!(stages[1].confirm_before);
        assert!(config.engine.agents.contains_key("coder"));
    }

    // Branches are found in packed-refs too; a missing default branch is reported.
    #[test]
    fn default_branch_is_read_from_files() {
        let dir = valid_dir();
        let git = dir.path().join("project/.git");
        let main = std::fs::read_to_string(git.join("refs/heads/main")).unwrap();
        std::fs::write(
            git.join("packed-refs"),
            format!("# pack-refs with: peeled\n{} refs/heads/release\n", main.trim()),
        )
        .unwrap();
        let path = dir.path().join("baton.toml");
        loaded(load_file(&path, &[("BATON_REPOS__DEMO__DEFAULT_BRANCH", "release")]));
        let found = issues(load_file(&path, &[("BATON_REPOS__DEMO__DEFAULT_BRANCH", "develop")]));
        assert!(find(&found, "BATON_REPOS__DEMO__DEFAULT_BRANCH").message.contains("no branch `develop`"));
    }

    // The `baton init` template loads as written, and its commented pipeline is the default one.
    #[test]
    fn init_template_loads_and_documents_the_default_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let text = init_template("baton-data");
        let path = write(dir.path(), "baton.toml", &text);
        let config = loaded(load_file(&path, &[]));
        assert_eq!(config.server.data_dir, dir.path().join("baton-data"));
        assert_eq!(config.engine.pipeline, Pipeline::default_pipeline());
        let pipeline_part = &text[text.find("# [pipeline]").unwrap()..];
        let uncommented: String = pipeline_part.lines().map(|l| format!("{}\n", l.trim_start_matches("# "))).collect();
        let path = write(dir.path(), "pipeline.toml", &uncommented);
        assert_eq!(loaded(load_file(&path, &[])).engine.pipeline, Pipeline::default_pipeline());
        let defaults = limits_table(&Limits::default());
        for key in defaults.keys() {
            assert!(text.contains(&format!("# {key} = ")), "template misses limits.{key}");
        }
    }

    // The example in docs/configuration.md loads, given its repository and script file.
    #[test]
    fn documented_example_loads() {
        let doc = include_str!("../../../docs/configuration.md");
        let example = doc.split("## Example\n\n```toml\n").nth(1).unwrap().split("```").next().unwrap();
        let dir = tempfile::tempdir().unwrap();
        git_repo(&dir.path().join("project"));
        write(dir.path(), "script.toml", "");
        let path = write(dir.path(), "baton.toml", example);
        let config = loaded(load_file(&path, &[("BATON_API_TOKEN", "from-the-environment")]));
        assert_eq!(config.engine.repos[0].health.as_deref().unwrap(), ["sh", "scripts/health.sh"]);
        assert_eq!(config.engine.pipeline.stages.len(), 3);
    }

    // Each pipeline problem is reported at the key of the stage it concerns, with the fix for that problem.
    #[test]
    fn pipeline_problems_name_their_stage_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let stage =
            |name: &str, extra: &str| format!("[[pipeline.stages]]\nname = \"{name}\"\nactor = \"none\"\n{extra}\n");
        let text = [
            stage("build", "on_gate_fail = { kind = \"rollback\", to = \"ship\" }"),
            stage("review", "gates = [{ kind = \"verdict\", key = \"verdict\", pass = [\"ok\"] }]\non_gate_fail = { kind = \"rollback\", to = \"nowhere\" }"),
            stage("review", "artifact = \"r.md\"\ngates = [\"artifact\"]"),
            stage("done", "gates = [\"artifact\"]"),
            stage("cancelled", ""),
            stage("ship", "artifact = \"s.md\"\non_gate_fail = { kind = \"rollback\", to = \"ship\" }"),
        ]
        .concat();
        let found = issues(load_str(&text, &env(&[]), dir.path(), PathBuf::from("baton")));
        let rollback = "set `on_gate_fail = { kind = \"rollback\", to = \"<stage>\" }` to an earlier stage's name";
        let artifact = "add `artifact = \"NN-name.md\"` to the stage, or drop its artifact and verdict gates";
        let reserved = "rename the stage; `done` and `cancelled` are the terminal stages";
        let expected = [
            ("pipeline.stages[0]", "stage `build` rolls back to `ship`, which is not an earlier stage", rollback),
            ("pipeline.stages[1]", "stage `review` rolls back to unknown stage `nowhere`", rollback),
            (
                "pipeline.stages[1]",
                "stage `review` has an artifact or verdict gate but no `artifact` file name",
                artifact,
            ),
            // A duplicate is reported at the first stage of that name.
            ("pipeline.stages[1]", "stage `review` appears twice", "give each stage a unique name"),
            ("pipeline.stages[3]", "stage name `done` is reserved for the terminal stage", reserved),
            (
                "pipeline.stages[3]",
                "stage `done` has an artifact or verdict gate but no `artifact` file name",
                artifact,
            ),
            ("pipeline.stages[4]", "stage name `cancelled` is reserved for the terminal stage", reserved),
            ("pipeline.stages[5]", "stage `ship` rolls back to `ship`, which is not an earlier stage", rollback),
        ];
        let shown: Vec<(&str, &str, &str)> =
            found.iter().map(|i| (i.key.as_str(), i.message.as_str(), i.fix.as_str())).collect();
        assert_eq!(shown, expected);
        let empty = issues(load_str("[pipeline]\nstages = []\n", &env(&[]), dir.path(), PathBuf::from("baton")));
        assert_eq!(
            empty,
            [ConfigIssue::new(
                "pipeline.stages",
                "the pipeline has no stages",
                "list at least one stage, or remove [pipeline] to use the default pipeline"
            )]
        );
        // The fix follows the problem, not words of the stage's name.
        let twice = [stage("reserved", ""), stage("reserved", "")].concat();
        let found = issues(load_str(&twice, &env(&[]), dir.path(), PathBuf::from("baton")));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].fix, "give each stage a unique name");
    }

    // An issue displays as key, message and fix on two lines.
    #[test]
    fn issue_display() {
        let issue = ConfigIssue::new("limits.running_max", "is 0", "set it to 1");
        assert_eq!(issue.to_string(), "limits.running_max: is 0\n  fix: set it to 1");
    }
}
