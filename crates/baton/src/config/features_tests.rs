//! Tests of `[features]` (the kill switches, their repository scopes and environment overrides)
//! and of each repository's `[repos.hooks]`.

use super::{Config, ConfigIssue, load_str};
use baton_engine::{Feature, RepoHooks};
use std::path::{Path, PathBuf};

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

/// Two repositories, `a` and `b`, followed by `extra`.
fn load_with(extra: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<ConfigIssue>> {
    let dir = tempfile::tempdir().unwrap();
    git_repo(&dir.path().join("a"));
    git_repo(&dir.path().join("b"));
    let text = format!(
        "[server]\ndata_dir = \"data\"\n\n\
         [[repos]]\nname = \"a\"\npath = \"a\"\nprefix = \"A\"\n\n\
         [[repos]]\nname = \"b\"\npath = \"b\"\nprefix = \"B\"\n\n{extra}"
    );
    let env: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    load_str(&text, &env, dir.path(), PathBuf::from("/usr/bin/baton"))
}

fn issues(result: Result<Config, Vec<ConfigIssue>>) -> Vec<ConfigIssue> {
    match result {
        Ok(config) => panic!("expected issues, got {:?}", config.features),
        Err(issues) => issues,
    }
}

fn find<'i>(issues: &'i [ConfigIssue], key: &str) -> &'i ConfigIssue {
    issues.iter().find(|i| i.key == key).unwrap_or_else(|| panic!("no issue for `{key}` in {issues:#?}"))
}

// Without `[features]` every switch is on for every repository (the behaviour Baton always had).
#[test]
fn every_switch_is_on_by_default() {
    let config = load_with("", &[]).unwrap();
    for feature in Feature::ALL {
        assert!(config.features.enabled(*feature, "a") && config.features.enabled(*feature, "b"), "{feature:?}");
    }
}

// A boolean switches a behaviour everywhere; a table switches it for the listed repositories only.
#[test]
fn switches_and_scopes_load() {
    let config = load_with(
        "[features]\nhooks = false\nreconciler = true\ntests_passed = { enabled = false, repos = [\"b\"] }\n\
         reaper_lease_reclaim = { enabled = true, repos = [\"a\"] }\n",
        &[],
    )
    .unwrap_or_else(|issues| panic!("{issues:#?}"));
    let f = &config.features;
    assert!(!f.enabled(Feature::Hooks, "a") && !f.enabled(Feature::Hooks, "b"));
    assert!(f.enabled(Feature::Reconciler, "a"));
    assert!(f.enabled(Feature::TestsPassed, "a") && !f.enabled(Feature::TestsPassed, "b"));
    assert!(f.enabled(Feature::ReaperLeaseReclaim, "a") && !f.enabled(Feature::ReaperLeaseReclaim, "b"));
}

// An unknown switch is named with every known one listed (and the closest suggested).
#[test]
fn unknown_switch_lists_the_known_ones() {
    let found = issues(load_with("[features]\nhook = false\nteleport = true\n", &[]));
    let hook = find(&found, "features.hook");
    assert!(hook.message.contains("unknown switch `hook`"), "{hook}");
    assert!(hook.fix.contains("did you mean `hooks`?"), "{hook}");
    let teleport = find(&found, "features.teleport");
    for feature in Feature::ALL {
        assert!(teleport.fix.contains(feature.name()), "{teleport}");
    }
}

// Values of the wrong type, unknown repositories, an empty list and unknown table keys are each
// reported at their key.
#[test]
fn bad_switch_values_are_reported() {
    let found = issues(load_with(
        "[features]\nhooks = \"off\"\nreconciler = 2\ntests_passed = { enabled = false, repos = [\"a\", \"nope\"] }\n\
         artifact = { enabled = false, repos = [] }\nverdict = { enable = false }\ncommand = { enabled = \"no\" }\n",
        &[],
    ));
    assert!(find(&found, "features.hooks").message.contains("not a string"), "{found:#?}");
    assert!(find(&found, "features.reconciler").message.contains("not an integer"), "{found:#?}");
    let repo = find(&found, "features.tests_passed.repos[1]");
    assert!(repo.message.contains("`nope` is not a configured repository"), "{repo}");
    assert!(repo.fix.contains("a, b"), "{repo}");
    assert!(find(&found, "features.artifact.repos").message.contains("names no repository"), "{found:#?}");
    assert!(find(&found, "features.verdict.enable").fix.contains("enabled"), "{found:#?}");
    find(&found, "features.command.enabled");
}

// `BATON_FEATURES_<SWITCH>=0|1` and the general `BATON_FEATURES__<SWITCH>` override the file.
#[test]
fn environment_overrides_switches() {
    let config = load_with(
        "[features]\nhooks = true\n",
        &[("BATON_FEATURES_HOOKS", "0"), ("BATON_FEATURES__RECONCILER", "false"), ("BATON_FEATURES_CI_GREEN", "1")],
    )
    .unwrap_or_else(|issues| panic!("{issues:#?}"));
    assert!(!config.features.enabled(Feature::Hooks, "a"));
    assert!(!config.features.enabled(Feature::Reconciler, "a"));
    assert!(config.features.enabled(Feature::CiGreen, "a"));
    let found = issues(load_with("", &[("BATON_FEATURES_WARP", "1")]));
    let issue = find(&found, "BATON_FEATURES_WARP");
    assert!(issue.message.contains("unknown switch `warp`"), "{issue}");
}

// A repository's hooks load as argument vectors (a string split on whitespace) with their timeout.
#[test]
fn repo_hooks_load() {
    let dir = tempfile::tempdir().unwrap();
    git_repo(&dir.path().join("a"));
    let text = "[server]\ndata_dir = \"data\"\n\n[[repos]]\nname = \"a\"\npath = \"a\"\nprefix = \"A\"\n\
                [repos.hooks]\nafter_create = [\"sh\", \"-c\", \"cp ../.env .env\"]\nbefore_run = \"make deps\"\n\
                timeout_secs = 30\n";
    let config = load_str(text, &[], dir.path(), PathBuf::from("baton")).unwrap_or_else(|i| panic!("{i:#?}"));
    let hooks = &config.engine.repo("a").unwrap().hooks;
    assert_eq!(hooks.after_create.as_deref().unwrap(), ["sh", "-c", "cp ../.env .env"]);
    assert_eq!(hooks.before_run.as_deref().unwrap(), ["make", "deps"]);
    assert_eq!((hooks.after_run.as_ref(), hooks.timeout_secs), (None, 30));
    let plain = load_with("", &[]).unwrap();
    assert_eq!(plain.engine.repo("b").unwrap().hooks, RepoHooks::default());
}

// Empty hook commands, a zero timeout, unknown hook keys and a non-table `hooks` are reported.
#[test]
fn bad_hooks_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    git_repo(&dir.path().join("a"));
    let text = "[server]\ndata_dir = \"data\"\n\n[[repos]]\nname = \"a\"\npath = \"a\"\nprefix = \"A\"\n\
                [repos.hooks]\nafter_create = []\nbefore_run = \"\"\ntimeout_secs = 0\nafter_creat = [\"x\"]\n\n\
                [[repos]]\nname = \"b\"\npath = \"a\"\nprefix = \"B\"\nhooks = [\"cp\"]\n";
    let found = issues(load_str(text, &[], dir.path(), PathBuf::from("baton")));
    assert!(find(&found, "repos[0].hooks.after_create").message.contains("empty"), "{found:#?}");
    assert!(find(&found, "repos[0].hooks.before_run").message.contains("empty"), "{found:#?}");
    assert!(find(&found, "repos[0].hooks.timeout_secs").message.contains("out of range"), "{found:#?}");
    assert!(find(&found, "repos[0].hooks.after_creat").fix.contains("after_create"), "{found:#?}");
    assert!(find(&found, "repos[1].hooks").message.contains("must be a table"), "{found:#?}");
}

// `serial` on a repository is read (off by default), the two new switches take repository scopes,
// and a `serial` that is not a boolean is reported with its key.
#[test]
fn serial_repositories_and_the_dependency_switches_load() {
    let config = load_with(
        "serial = true\n\n[features]\nserial = { enabled = false, repos = [\"a\"] }\ndependencies = false\n",
        &[],
    )
    .unwrap();
    let serial: Vec<(&str, bool)> = config.engine.repos.iter().map(|r| (r.name.as_str(), r.serial)).collect();
    assert_eq!(serial, vec![("a", false), ("b", true)]);
    assert!(!config.features.enabled(Feature::Serial, "a") && config.features.enabled(Feature::Serial, "b"));
    assert!(config.features.off_everywhere(Feature::Dependencies));
    let found = issues(load_with("serial = \"yes\"\n", &[]));
    assert!(found.iter().any(|i| i.key.contains("serial")), "{found:?}");
}
