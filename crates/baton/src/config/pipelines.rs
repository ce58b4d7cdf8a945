//! Named pipelines (`[pipelines.<name>]`, chosen per repository with `pipeline = "<name>"`) and a
//! stage's own actor choice (`agent`, `adapter`, `model`, `prompt_template`, `timeout_secs`,
//! `stall_timeout_secs`, `budget_usd`), read and checked for `baton config check`.

use super::Loader;
use super::diagnostics::{suggest_fix, type_name};
use baton_domain::pipeline::{Actor, Pipeline, StageOverrides, StageSpec};
use baton_engine::{AdapterKind, AgentSettings, Limits, NamedPipeline, RepoSettings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::{Table, Value};

/// The keys of a stage that choose who runs it and with what limits.
pub(super) const STAGE_ACTOR_KEYS: &[&str] =
    &["agent", "adapter", "model", "prompt_template", "timeout_secs", "stall_timeout_secs", "budget_usd"];

/// Takes a stage's actor keys out of its table (they are read apart from the stage itself).
pub(super) fn take_actor_keys(stage: &mut Table) -> Table {
    STAGE_ACTOR_KEYS.iter().filter_map(|key| stage.remove(*key).map(|value| (key.to_string(), value))).collect()
}

/// Takes each repository's `pipeline` key out of `[[repos]]`: (index of the entry, value).
pub(super) fn take_repo_pipelines(doc: &mut Table) -> Vec<(usize, Value)> {
    let Some(Value::Array(entries)) = doc.get_mut("repos") else {
        return Vec::new();
    };
    entries
        .iter_mut()
        .enumerate()
        .filter_map(|(i, entry)| Some((i, entry.as_table_mut()?.remove("pipeline")?)))
        .collect()
}

/// The roles the named pipelines' agent stages name, and the agent entries any stage names with
/// `agent = "<entry>"` (each may have an `[agents.<entry>]` table).
pub(super) fn named_roles(global: Option<&Value>, named: Option<&Value>) -> Vec<String> {
    let stages_of = |pipeline: &Value| -> Vec<Value> {
        pipeline.get("stages").and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let mut stages: Vec<Value> = global.map(stages_of).unwrap_or_default();
    if let Some(Value::Table(named)) = named {
        stages.extend(named.values().flat_map(stages_of));
    }
    let mut roles = Vec::new();
    for stage in &stages {
        if let Some(role) = stage.get("actor").and_then(|a| a.get("role")).and_then(Value::as_str) {
            roles.push(role.to_string());
        }
        if let Some(agent) = stage.get("agent").and_then(Value::as_str) {
            roles.push(agent.to_string());
        }
    }
    roles
}

/// A pipeline name Baton accepts: letters, digits, `-` and `_`.
fn valid_pipeline_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Loader<'_> {
    /// `[pipelines.<name>]`: each a pipeline of its own, checked like `[pipeline]`.
    pub(super) fn pipelines(
        &mut self,
        raw: Option<Value>,
        agents: Option<&BTreeMap<String, AgentSettings>>,
        limits: Option<&Limits>,
    ) -> Option<BTreeMap<String, Pipeline>> {
        let table = self.section_table(
            "pipelines",
            raw,
            "write each named pipeline as [pipelines.<name>] with its [[pipelines.<name>.stages]]",
        )?;
        let mut pipelines = BTreeMap::new();
        let mut ok = true;
        for (name, value) in table {
            let at = format!("pipelines.{name}");
            if !valid_pipeline_name(&name) {
                self.issue(
                    at.clone(),
                    format!("`{name}` is not a valid pipeline name"),
                    "use letters, digits, `-` and `_` only (at most 64)",
                );
                ok = false;
                continue;
            }
            match self.pipeline(&at, Some(value), agents, limits) {
                Some(pipeline) => {
                    pipelines.insert(name, pipeline);
                }
                None => ok = false,
            }
        }
        ok.then_some(pipelines)
    }

    /// Gives each repository that names a pipeline that pipeline; `None` when a name is unknown.
    pub(super) fn assign_pipelines(
        &mut self,
        repos: &mut [RepoSettings],
        names: Vec<(usize, Value)>,
        pipelines: &BTreeMap<String, Pipeline>,
    ) -> Option<()> {
        let before = self.issues.len();
        for (i, value) in names {
            let key = format!("repos[{i}].pipeline");
            let Value::String(name) = value else {
                self.issue(
                    key,
                    format!("`pipeline` must be the name of a pipeline, not {}", type_name(&value)),
                    "write `pipeline = \"<name>\"` naming a [pipelines.<name>] section",
                );
                continue;
            };
            let Some(pipeline) = pipelines.get(&name) else {
                let known: Vec<&str> = pipelines.keys().map(String::as_str).collect();
                let fix = if known.is_empty() {
                    format!(
                        "define it as [pipelines.{name}] with [[pipelines.{name}.stages]] blocks, or remove `pipeline` \
                         to use [pipeline]"
                    )
                } else {
                    suggest_fix(&name, &known, "the pipelines are")
                };
                self.issue(key, format!("no pipeline `{name}`: there is no [pipelines.{name}] section"), fix);
                continue;
            };
            if let Some(repo) = repos.get_mut(i) {
                repo.pipeline = Some(NamedPipeline { name, pipeline: pipeline.clone() });
            }
        }
        (self.issues.len() == before).then_some(())
    }

    /// Reads and checks a stage's actor keys (`base` names the stage): stage override > agent
    /// entry > defaults, so each override must make sense for the agent it changes.
    pub(super) fn stage_overrides(
        &mut self,
        base: &str,
        stage: &StageSpec,
        mut keys: Table,
        agents: Option<&BTreeMap<String, AgentSettings>>,
        limits: Option<&Limits>,
    ) -> Option<StageOverrides> {
        let before = self.issues.len();
        let mut overrides = StageOverrides::default();
        if keys.is_empty() {
            return Some(overrides);
        }
        let Actor::Agent { role } = &stage.actor else {
            for key in keys.keys() {
                self.issue(
                    format!("{base}.{key}"),
                    format!("`{key}` applies only to an agent stage; stage `{}` has no agent", stage.name),
                    "remove it, or make the stage's actor `{ kind = \"agent\", role = \"<role>\" }`",
                );
            }
            return None;
        };
        overrides.agent = self.text_key(base, &mut keys, "agent");
        overrides.adapter = self.text_key(base, &mut keys, "adapter");
        overrides.model = self.text_key(base, &mut keys, "model");
        overrides.timeout_secs = self.secs_key(base, &mut keys, "timeout_secs", "limits.agent_timeout_secs");
        overrides.stall_timeout_secs =
            self.secs_key(base, &mut keys, "stall_timeout_secs", "limits.stall_timeout_secs");
        overrides.budget_usd = self.budget_key(base, &mut keys);
        overrides.prompt_template = self.template_key(base, &mut keys);
        // The agent entry the stage runs with: its own, else its role's, else the default.
        let entry = match (&overrides.agent, agents) {
            (Some(name), Some(agents)) => {
                let found = agents.get(name);
                if found.is_none() {
                    let known: Vec<&str> = agents.keys().map(String::as_str).collect();
                    let fix = if known.is_empty() {
                        format!("add an [agents.{name}] table, or remove `agent` to use the role's agent")
                    } else {
                        format!(
                            "add an [agents.{name}] table, or {}",
                            suggest_fix(name, &known, "the agent entries are")
                        )
                    };
                    self.issue(
                        format!("{base}.agent"),
                        format!("no agent entry `{name}`: [agents.{name}] is missing"),
                        fix,
                    );
                }
                found
            }
            (None, Some(agents)) => agents.get(role).or_else(|| agents.get("default")),
            (_, None) => None,
        };
        if let Some(adapter) = &overrides.adapter {
            match AdapterKind::parse(adapter) {
                None => self.issue(
                    format!("{base}.adapter"),
                    format!("`{adapter}` is not an adapter Baton knows"),
                    suggest_fix(adapter, AdapterKind::NAMES, "the adapters are"),
                ),
                Some(kind) => self.check_stage_adapter(base, kind, entry, agents.is_some()),
            }
        }
        if let (Some(timeout), Some(limits)) = (overrides.timeout_secs, limits)
            && timeout > limits.job_backstop_secs
        {
            self.issue(
                format!("{base}.timeout_secs"),
                format!(
                    "{timeout} s is past the reaper's backstop (limits.job_backstop_secs = {}), which would stop the job first",
                    limits.job_backstop_secs
                ),
                "lower `timeout_secs`, or raise `limits.job_backstop_secs` above it",
            );
        }
        (self.issues.len() == before).then_some(overrides)
    }

    /// A stage's adapter override must find what that adapter needs in the agent entry it changes.
    fn check_stage_adapter(&mut self, base: &str, kind: AdapterKind, entry: Option<&AgentSettings>, have_agents: bool) {
        let Some(entry) = entry else {
            if have_agents {
                self.issue(
                    format!("{base}.adapter"),
                    "no agent entry serves this stage, so there is nothing for `adapter` to change",
                    "add [agents.<role>] or [agents.default], or name an entry with `agent = \"<entry>\"`",
                );
            }
            return;
        };
        let missing = match kind {
            AdapterKind::Script if entry.script.is_none() => Some(("script", "a `script` file")),
            AdapterKind::Command if entry.command.is_none() => Some(("command", "a `command`")),
            _ => None,
        };
        if let Some((adapter, what)) = missing {
            self.issue(
                format!("{base}.adapter"),
                format!("the {adapter} adapter needs {what}, and the stage's agent entry has none"),
                format!("name an agent entry that sets {what} with `agent = \"<entry>\"`, or pick another adapter"),
            );
        }
    }

    /// A non-empty string key.
    fn text_key(&mut self, base: &str, keys: &mut Table, key: &str) -> Option<String> {
        match keys.remove(key)? {
            Value::String(text) if !text.trim().is_empty() => Some(text),
            Value::String(_) => {
                self.issue(format!("{base}.{key}"), format!("`{key}` is empty"), format!("set `{key}`, or remove it"));
                None
            }
            other => {
                self.issue(
                    format!("{base}.{key}"),
                    format!("`{key}` must be a string, not {}", type_name(&other)),
                    format!("write it as `{key} = \"…\"`"),
                );
                None
            }
        }
    }

    /// A number of seconds, at least 1.
    fn secs_key(&mut self, base: &str, keys: &mut Table, key: &str, default: &str) -> Option<u64> {
        match keys.remove(key)? {
            Value::Integer(secs) if secs >= 1 => Some(secs as u64),
            other => {
                self.issue(
                    format!("{base}.{key}"),
                    format!("`{key}` must be a whole number of seconds, at least 1 (got {other})"),
                    format!("set it to e.g. `{key} = 600`, or remove it to use `{default}`"),
                );
                None
            }
        }
    }

    /// A positive amount of USD.
    fn budget_key(&mut self, base: &str, keys: &mut Table) -> Option<f64> {
        let usd = match keys.remove("budget_usd")? {
            Value::Float(usd) => usd,
            Value::Integer(usd) => usd as f64,
            other => {
                self.issue(
                    format!("{base}.budget_usd"),
                    format!("`budget_usd` must be an amount in USD, not {}", type_name(&other)),
                    "write it as `budget_usd = 2.5`",
                );
                return None;
            }
        };
        if usd.is_finite() && usd > 0.0 {
            return Some(usd);
        }
        self.issue(
            format!("{base}.budget_usd"),
            format!("`budget_usd` is {usd}; a cap on one run must be more than 0"),
            "set a positive amount such as `budget_usd = 2.5`, or remove it (no cap for the stage)",
        );
        None
    }

    /// `prompt_template`: a file path (relative to the config file's directory) or
    /// `{ inline = "…" }`; the text must compile as a template.
    fn template_key(&mut self, base: &str, keys: &mut Table) -> Option<String> {
        let key = format!("{base}.prompt_template");
        let text = match keys.remove("prompt_template")? {
            Value::String(path) => {
                let resolved = self.resolve(&key, &PathBuf::from(&path));
                match std::fs::read_to_string(&resolved) {
                    Ok(text) => text,
                    Err(error) => {
                        self.issue(
                            key,
                            format!("the prompt template {} cannot be read: {error}", resolved.display()),
                            "create the file or correct the path (relative paths start at the config file's \
                             directory); for a template written in place use `prompt_template = { inline = \"…\" }`",
                        );
                        return None;
                    }
                }
            }
            Value::Table(mut table) if table.len() == 1 && table.get("inline").is_some_and(Value::is_str) => {
                match table.remove("inline") {
                    Some(Value::String(text)) => text,
                    _ => return None,
                }
            }
            other => {
                self.issue(
                    key,
                    format!(
                        "`prompt_template` must be a file path or `{{ inline = \"…\" }}`, not {}",
                        type_name(&other)
                    ),
                    "write `prompt_template = \"prompts/review.md.j2\"` or `prompt_template = { inline = \"…\" }`",
                );
                return None;
            }
        };
        if let Err(error) = baton_engine::prompts::check_template(&text) {
            self.issue(
                key,
                format!("the prompt template does not compile: {error}"),
                "fix the template's minijinja syntax (`{{ task.title }}`, `{% if failure %}…{% endif %}`)",
            );
            return None;
        }
        Some(text)
    }
}
