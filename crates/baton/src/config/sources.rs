//! Where values come from: `${VAR}` interpolation in the file's strings, `BATON_*` overrides from
//! the environment, relative paths resolved against the file or the current directory, and, at
//! the end, every issue named after the variable that set its key, with secret values hidden.

use super::diagnostics::{suggest_fix, type_name};
use super::sections::SECTIONS;
use super::{Config, ConfigIssue, Loader, join_key};
use std::path::{Component, Path, PathBuf};
use toml::{Table, Value};

/// Interpolated values shorter than this are not redacted (they would mangle unrelated text).
const REDACT_LEN_MIN: usize = 4;

/// A key set from the environment, so issues about it can name the variable.
pub(super) struct Override {
    key: String,
    var: String,
}

impl<'a> Loader<'a> {
    fn env_get(&self, name: &str) -> Option<&'a str> {
        env_get(self.env, name)
    }

    /// Replaces `${VAR}` (and `${VAR:-fallback}`) in every string value; `$${` is a literal `${`.
    pub(super) fn interpolate_table(&mut self, table: &mut Table, prefix: &str) {
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
                        let message =
                            format!("`${{{name}}}` refers to the environment variable {name}, which is not set");
                        let fix = format!(
                            "export {name} before starting Baton, or write `${{{name}:-fallback}}` to give a default"
                        );
                        if super::secret_kind(key).is_some() {
                            // A secret is never the reference's own text: it stays unset (empty).
                            self.unset_secret(key, message, fix);
                            return Some(String::new());
                        }
                        self.issue(key, message, fix);
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

    /// Applies `BATON_<SECTION>__<KEY>` variables and the `BATON_DATA_DIR` / `BATON_API_TOKEN` /
    /// `BATON_DATABASE_URL` shorthands.
    pub(super) fn apply_overrides(&mut self, doc: &mut Table) {
        for (var, raw) in self.env {
            let segments: Vec<String> = match var.as_str() {
                "BATON_DATA_DIR" => vec!["server".into(), "data_dir".into()],
                "BATON_API_TOKEN" => vec!["server".into(), "api_token".into()],
                "BATON_DATABASE_URL" => vec!["server".into(), "database_url".into()],
                // `BATON_FEATURES_<SWITCH>=0|1`: the kill switches' shorthand.
                _ if var
                    .strip_prefix("BATON_FEATURES_")
                    .is_some_and(|s| !s.is_empty() && !s.starts_with('_') && !s.contains("__")) =>
                {
                    vec!["features".into(), var["BATON_FEATURES_".len()..].to_ascii_lowercase()]
                }
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
            if segments.last().is_some_and(|key| key == "api_token" || key.ends_with("_secret"))
                && raw.len() >= REDACT_LEN_MIN
            {
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
    pub(super) fn resolve(&self, key: &str, path: &Path) -> PathBuf {
        if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), self.env_get("HOME")) {
            return clean(&Path::new(home).join(rest));
        }
        let base = if self.set_by_env(key) { &self.cwd } else { &self.config_dir };
        clean(&base.join(path))
    }

    /// The issues, each key set by the environment renamed to its variable and secrets hidden.
    pub(super) fn finish(mut self, config: Option<Config>) -> Result<Config, Vec<ConfigIssue>> {
        if self.issues.is_empty() {
            let deferred = std::mem::take(&mut self.deferred);
            let mut config = config.ok_or_else(|| {
                vec![ConfigIssue::new("config", "the configuration could not be assembled", "report this as a bug")]
            })?;
            config.deferred = self.named(deferred);
            return Ok(config);
        }
        let issues = std::mem::take(&mut self.issues);
        Err(self.named(issues))
    }

    /// Issues with each key set by the environment renamed to its variable and secrets hidden.
    fn named(&self, issues: Vec<ConfigIssue>) -> Vec<ConfigIssue> {
        let mut secrets = self.secrets.clone();
        secrets.retain(|(value, _)| value.len() >= REDACT_LEN_MIN);
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        let redact =
            |text: &str| secrets.iter().fold(text.to_string(), |acc, (value, shown)| acc.replace(value, shown));
        let mut out: Vec<ConfigIssue> = Vec::new();
        for mut issue in issues {
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
        out
    }
}

/// The last value of `name` in `env` (a later entry wins, as in a process environment).
pub(super) fn env_get<'e>(env: &'e [(String, String)], name: &str) -> Option<&'e str> {
    env.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// Whether `name` can name an environment variable: letters, digits and `_`, not starting with a digit.
pub(super) fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Lexically removes `.` components so messages show tidy paths.
pub(super) fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

/// An override's value: a TOML value when the text is one (numbers, booleans, arrays), else the
/// text itself. Keys that only take strings always keep the text, so a numeric token stays a string.
fn env_value(segments: &[String], raw: &str) -> Value {
    let last = segments.last().map_or("", String::as_str);
    let string_only = match segments[0].as_str() {
        "server" => matches!(last, "listen" | "data_dir" | "api_token" | "read_requires_token" | "secret_env"),
        "repos" => matches!(
            last,
            "name"
                | "path"
                | "default_branch"
                | "prefix"
                | "url"
                | "credentials_env"
                | "delete_remote_branch"
                | "forge"
                | "forge_repo"
                | "forge_api_url"
                | "forge_token_env"
                | "merge_style"
                | "ci"
        ),
        "agents" => matches!(last, "adapter" | "script" | "model" | "prompt"),
        "webhooks" => true,
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
