//! `[features]` (the kill switches) and each repository's `[repos.hooks]` (workspace hooks):
//! read into the engine's `Features` and `RepoHooks` and checked — unknown switches and
//! repositories, values of the wrong shape, empty commands, a zero timeout.

use super::diagnostics::{suggest_fix, type_name};
use super::{ConfigIssue, Loader};
use baton_engine::{Feature, FeatureScope, Features, RepoHooks, RepoSettings};
use serde::Deserialize;
use toml::{Table, Value};

/// The keys of `[repos.hooks]` that hold a command.
const HOOK_COMMANDS: &[&str] = &["after_create", "before_run", "after_run", "before_remove"];

/// The longest hook timeout accepted (a day).
const HOOK_TIMEOUT_SECS_MAX: u64 = 86_400;

/// The table form of a switch: `{ enabled = false, repos = ["a"] }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeEntry {
    #[serde(default = "on")]
    enabled: bool,
    #[serde(default)]
    repos: Option<Vec<String>>,
}

fn on() -> bool {
    true
}

/// The names of every switch, as `config check` lists them.
fn switch_names() -> Vec<&'static str> {
    Feature::ALL.iter().map(|f| f.name()).collect()
}

impl Loader<'_> {
    /// `[features]`: each key a switch, each value `true`/`false` (`1`/`0` from the environment)
    /// or `{ enabled = …, repos = [...] }`. `repos` is `None` when the repositories could not be
    /// read (their names are then not checked).
    pub(super) fn features(&mut self, raw: Option<Value>, repos: Option<&[RepoSettings]>) -> Option<Features> {
        let table = self.section_table("features", raw, "write it as a [features] section")?;
        let before = self.issues.len();
        let mut features = Features::all_on();
        for (key, value) in table {
            let base = format!("features.{key}");
            let Some(feature) = Feature::parse(&key) else {
                let fix = suggest_fix(&key, &switch_names(), "the switches are");
                self.issue(base, format!("unknown switch `{key}`"), fix);
                continue;
            };
            let scope = match value {
                Value::Boolean(enabled) => FeatureScope::everywhere(enabled),
                Value::Integer(n @ (0 | 1)) => FeatureScope::everywhere(n == 1),
                Value::Table(table) => match self.scope(&base, table, repos) {
                    Some(scope) => scope,
                    None => continue,
                },
                other => {
                    self.issue(
                        base,
                        format!("a switch is `true`, `false` or a table, not {}", type_name(&other)),
                        format!("write `{key} = false` to switch it off, or `{key} = {{ enabled = false, repos = [\"name\"] }}` for some repositories"),
                    );
                    continue;
                }
            };
            features.set(feature, scope);
        }
        (self.issues.len() == before).then_some(features)
    }

    /// One switch in its table form; its repositories must be configured ones.
    fn scope(&mut self, base: &str, table: Table, repos: Option<&[RepoSettings]>) -> Option<FeatureScope> {
        let parsed = self.deserialize::<ScopeEntry>(base, table);
        let entry = parsed.value?;
        if !parsed.bad.is_empty() {
            return None;
        }
        let before = self.issues.len();
        if let Some(names) = &entry.repos {
            if names.is_empty() {
                self.issue(
                    format!("{base}.repos"),
                    "the list names no repository",
                    "name the repositories the switch is for, or remove `repos` to set it for all of them",
                );
            }
            if let Some(repos) = repos {
                let known: Vec<&str> = repos.iter().map(|r| r.name.as_str()).collect();
                for (i, name) in names.iter().enumerate() {
                    if !known.contains(&name.as_str()) {
                        self.issue(
                            format!("{base}.repos[{i}]"),
                            format!("`{name}` is not a configured repository"),
                            if known.is_empty() {
                                "add the repository as a [[repos]] entry first".to_string()
                            } else {
                                suggest_fix(name, &known, "the repositories are")
                            },
                        );
                    }
                }
            }
        }
        (self.issues.len() == before).then_some(FeatureScope { enabled: entry.enabled, repos: entry.repos })
    }

    /// A repository's `hooks` table (taken out of the entry before the rest is read): each hook
    /// an argument vector (a string is split on whitespace, no shell), `timeout_secs` above 0.
    pub(super) fn repo_hooks(&mut self, base: &str, raw: Option<Value>) -> Option<RepoHooks> {
        let key = format!("{base}.hooks");
        let mut table = match raw {
            None => return Some(RepoHooks::default()),
            Some(Value::Table(table)) => table,
            Some(other) => {
                self.issue(
                    key,
                    format!("`hooks` must be a table, not {}", type_name(&other)),
                    "write it as `[repos.hooks]` under the repository, or `hooks = { after_create = [\"…\"] }`",
                );
                return None;
            }
        };
        for name in HOOK_COMMANDS {
            if let Some(value) = table.get_mut(*name)
                && let Value::String(text) = value
            {
                let parts = text.split_whitespace().map(|p| Value::String(p.to_string())).collect();
                *value = Value::Array(parts);
            }
        }
        let parsed = self.deserialize::<RepoHooks>(&key, table);
        let hooks = parsed.value?;
        let mut ok = parsed.bad.is_empty();
        for (name, argv) in [
            ("after_create", &hooks.after_create),
            ("before_run", &hooks.before_run),
            ("after_run", &hooks.after_run),
            ("before_remove", &hooks.before_remove),
        ] {
            if argv.as_ref().is_some_and(|argv| argv.first().is_none_or(|p| p.trim().is_empty())) {
                ok = false;
                self.issues.push(ConfigIssue::new(
                    format!("{key}.{name}"),
                    "the hook's command is empty",
                    "give the program and its arguments, e.g. [\"cp\", \"../.env\", \".env\"], or remove the key",
                ));
            }
        }
        if !(1..=HOOK_TIMEOUT_SECS_MAX).contains(&hooks.timeout_secs) {
            ok = false;
            self.issue(
                format!("{key}.timeout_secs"),
                format!("{} is out of range", hooks.timeout_secs),
                format!(
                    "set it between 1 and {HOOK_TIMEOUT_SECS_MAX} seconds (default {})",
                    baton_engine::settings::HOOK_TIMEOUT_SECS_DEFAULT
                ),
            );
        }
        ok.then_some(hooks)
    }
}
