//! Every key `baton.toml` accepts, found by asking the loader itself: each section's reader is
//! given a key it cannot know, and its "unknown key" issue lists the keys it takes (from the
//! section's own struct or key table). Used to check that the configuration reference documents
//! every key.

use super::sections::{FORGE_KEYS, SECTIONS};
use super::{ConfigIssue, load_str};
use std::path::Path;

/// A key name no section takes.
const PROBE: &str = "baton_probe_unknown_key";

/// Each probe: the TOML that puts [`PROBE`] in one place, and how that place's keys are named.
const PROBES: &[(&str, &str)] = &[
    ("PROBE = 1\n", ""),
    ("[server]\nPROBE = 1\n", "server"),
    ("[limits]\nPROBE = 1\n", "limits"),
    ("[budgets]\nPROBE = 1\n", "budgets"),
    ("[retention]\nPROBE = 1\n", "retention"),
    ("[usage]\nPROBE = 1\n", "usage"),
    ("[retro]\nPROBE = 1\n", "retro"),
    ("[pricing]\nPROBE = 1\n", "pricing"),
    ("[sandbox]\nPROBE = 1\n", "sandbox"),
    ("[webhooks]\nPROBE = 1\n", "webhooks"),
    ("[[repos]]\nname = \"a\"\npath = \".\"\nprefix = \"A\"\nPROBE = 1\n", "repos"),
    ("[[repos]]\nname = \"a\"\npath = \".\"\nprefix = \"A\"\n[repos.hooks]\nPROBE = 1\n", "repos.hooks"),
    ("[features]\nPROBE = 1\n", "features"),
    ("[features]\nhooks = { PROBE = 1 }\n", "features.<switch>"),
    ("[agents.default]\nadapter = \"script\"\nPROBE = 1\n", "agents.<role>"),
    ("[[trackers]]\nkind = \"github\"\nrepo = \"a\"\nPROBE = 1\n", "trackers"),
    ("[[pipeline.stages]]\nname = \"a\"\nactor = \"deploy\"\nPROBE = 1\n", "pipeline.stages"),
];

/// Every accepted key as `section.key` (`server.listen`, `repos.forge_token_env`,
/// `agents.<role>.model`, `pipeline.stages.gates`); top-level sections by their name alone.
pub fn accepted_keys() -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for (text, section) in PROBES {
        let text = text.replace("PROBE", PROBE);
        let issues = load_str(&text, &[], Path::new("/"), "baton".into()).err().unwrap_or_default();
        let names = issues.iter().find(|i| i.key.ends_with(PROBE)).map(listed_keys).unwrap_or_default();
        keys.extend(
            names.iter().map(|name| if section.is_empty() { name.clone() } else { format!("{section}.{name}") }),
        );
    }
    // The forge keys of a repository are read apart from its git keys.
    keys.extend(FORGE_KEYS.iter().map(|k| format!("repos.{k}")));
    // So is the name of its pipeline (resolved once `[pipelines]` is read).
    keys.push("repos.pipeline".to_string());
    keys.extend(SECTIONS.iter().map(|s| s.to_string()));
    keys.sort();
    keys.dedup();
    keys
}

/// The names an unknown-key issue lists as allowed (after "… are: ").
fn listed_keys(issue: &ConfigIssue) -> Vec<String> {
    let Some((_, list)) = issue.fix.split_once(" are: ") else { return Vec::new() };
    list.trim_end_matches(')').split(", ").map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect()
}
