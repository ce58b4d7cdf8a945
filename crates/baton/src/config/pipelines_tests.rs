//! Tests of named pipelines (`[pipelines.<name>]`, a repository's `pipeline`) and of a stage's
//! own actor keys (`agent`, `adapter`, `model`, `prompt_template`, `timeout_secs`,
//! `stall_timeout_secs`, `budget_usd`): each loads, and each mistake is named with its fix.

use super::{Config, ConfigIssue, load_str};
use baton_domain::pipeline::Pipeline;
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

/// Repositories `a` and `b` (`a` taking `a_extra` among its keys), a script agent for every role,
/// `files` written beside the configuration, then `extra`.
fn load_with(a_extra: &str, extra: &str, files: &[(&str, &str)]) -> Result<Config, Vec<ConfigIssue>> {
    let dir = tempfile::tempdir().unwrap();
    git_repo(&dir.path().join("a"));
    git_repo(&dir.path().join("b"));
    std::fs::write(dir.path().join("s.toml"), "").unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let text = format!(
        "[server]\ndata_dir = \"data\"\n\n\
         [[repos]]\nname = \"a\"\npath = \"a\"\nprefix = \"A\"\n{a_extra}\n\n\
         [[repos]]\nname = \"b\"\npath = \"b\"\nprefix = \"B\"\n\n\
         [agents.default]\nadapter = \"script\"\nscript = \"s.toml\"\n\n{extra}"
    );
    load_str(&text, &[], dir.path(), PathBuf::from("/usr/bin/baton"))
}

fn issues(result: Result<Config, Vec<ConfigIssue>>) -> Vec<ConfigIssue> {
    match result {
        Ok(config) => panic!("expected issues, got {:?}", config.engine.repos),
        Err(issues) => issues,
    }
}

fn loaded(result: Result<Config, Vec<ConfigIssue>>) -> Config {
    result.unwrap_or_else(|issues| panic!("{}", issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n")))
}

fn find<'i>(issues: &'i [ConfigIssue], key: &str) -> &'i ConfigIssue {
    issues.iter().find(|i| i.key == key).unwrap_or_else(|| panic!("no issue for `{key}` in {issues:#?}"))
}

/// A two-stage pipeline named `short`: development, then deploy; `dev_extra` goes into its
/// development stage.
fn short(dev_extra: &str) -> String {
    format!(
        "[[pipelines.short.stages]]\nname = \"development\"\nactor = {{ kind = \"agent\", role = \"developer\" }}\n\
         gates = [\"tests_passed\"]\n{dev_extra}\n\n\
         [[pipelines.short.stages]]\nname = \"deploy\"\nactor = \"deploy\"\ngates = [\"deploy_status\"]\n\
         on_gate_fail = \"block\"\n"
    )
}

// A repository naming `[pipelines.short]` runs through it; the other keeps the global pipeline.
#[test]
fn a_repository_runs_through_the_pipeline_it_names() {
    let config = loaded(load_with("pipeline = \"short\"", &short(""), &[]));
    let a = config.engine.repo("a").unwrap();
    let named = a.pipeline.as_ref().unwrap();
    assert_eq!(named.name, "short");
    let stages: Vec<&str> = named.pipeline.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stages, ["development", "deploy"]);
    assert!(config.engine.repo("b").unwrap().pipeline.is_none());
    assert_eq!(config.engine.effective_pipeline_for("a").stages.len(), 2);
    assert_eq!(config.engine.effective_pipeline_for("b").stages, Pipeline::default_pipeline().stages);
    // The limits apply to a named pipeline as to the global one.
    assert_eq!(config.engine.effective_pipeline_for("a").retry_max, config.engine.limits.retry_max);
}

// A repository naming a pipeline that is not defined is told which ones are, or how to define it.
#[test]
fn an_unknown_pipeline_name_is_reported_with_the_known_ones() {
    let found = issues(load_with("pipeline = \"shrot\"", &short(""), &[]));
    let issue = find(&found, "repos[0].pipeline");
    assert!(issue.message.contains("no pipeline `shrot`"), "{issue}");
    assert!(issue.fix.contains("short"), "{issue}");
    let found = issues(load_with("pipeline = \"fast\"", "", &[]));
    assert!(find(&found, "repos[0].pipeline").fix.contains("[pipelines.fast]"));
    let found = issues(load_with("pipeline = 3", "", &[]));
    assert!(find(&found, "repos[0].pipeline").message.contains("must be the name of a pipeline"));
}

// A named pipeline gets the checks of `[pipeline]`, each reported under its own name.
#[test]
fn named_pipeline_problems_name_the_pipeline() {
    let broken = "[[pipelines.broken.stages]]\nname = \"review\"\nactor = \"none\"\n\
                  on_gate_fail = { kind = \"rollback\", to = \"nowhere\" }\n";
    let found = issues(load_with("pipeline = \"broken\"", broken, &[]));
    let issue = find(&found, "pipelines.broken.stages[0]");
    assert!(issue.message.contains("unknown stage `nowhere`"), "{issue}");
    let found = issues(load_with("", "[pipelines.empty]\nretries = 2\n", &[]));
    assert!(find(&found, "pipelines.empty.retries").fix.contains("stages"));
    assert!(find(&found, "pipelines.empty.stages").message.contains("[pipelines.empty] has no `stages`"));
    let found = issues(load_with("", "[pipelines.\"bad name\"]\n", &[]));
    assert!(find(&found, "pipelines.bad name").fix.contains("letters, digits"));
}

// Every actor key of a stage loads: the agent entry it names (accepted under `[agents.*]`), the
// adapter, the model, the prompt template from a file or inline, both timeouts and the budget.
#[test]
fn every_stage_actor_key_loads() {
    let dev = "agent = \"fast\"\nadapter = \"command\"\nmodel = \"small-model\"\nprompt_template = \"dev.md.j2\"\n\
               timeout_secs = 120\nstall_timeout_secs = 30\nbudget_usd = 1.5\n";
    let extra = format!(
        "{}\n[agents.fast]\nadapter = \"script\"\nscript = \"s.toml\"\ncommand = [\"my-agent\"]\n\n\
         [[pipeline.stages]]\nname = \"review\"\nactor = {{ kind = \"agent\", role = \"reviewer\" }}\n\
         prompt_template = {{ inline = \"Review {{{{ task.title }}}}\" }}\nbudget_usd = 2\n",
        short(dev)
    );
    let config = loaded(load_with("pipeline = \"short\"", &extra, &[("dev.md.j2", "Build {{ task.title }}")]));
    assert!(config.engine.agents.contains_key("fast"));
    let pipeline = config.engine.effective_pipeline_for("a");
    let stage = pipeline.stage("development").unwrap();
    let o = &stage.overrides;
    assert_eq!(o.agent.as_deref(), Some("fast"));
    assert_eq!(o.adapter.as_deref(), Some("command"));
    assert_eq!(o.model.as_deref(), Some("small-model"));
    assert_eq!(o.prompt_template.as_deref(), Some("Build {{ task.title }}"));
    assert_eq!((o.timeout_secs, o.stall_timeout_secs, o.budget_usd), (Some(120), Some(30), Some(1.5)));
    // Stage override > agent entry: the entry `fast` with the stage's adapter and model.
    let agent = config.engine.agent_for_stage("developer", stage).unwrap();
    assert_eq!(agent.adapter, baton_engine::AdapterKind::Command);
    assert_eq!(agent.model.as_deref(), Some("small-model"));
    assert_eq!(agent.command.as_deref(), Some(&["my-agent".to_string()][..]));
    let review = config.engine.effective_pipeline_for("b");
    let review = review.stage("review").unwrap();
    assert_eq!(review.overrides.prompt_template.as_deref(), Some("Review {{ task.title }}"));
    assert_eq!(review.overrides.budget_usd, Some(2.0));
    // Without overrides a stage runs with its role's entry (here the default).
    let plain = Pipeline::default_pipeline();
    let agent = config.engine.agent_for_stage("developer", plain.stage("development").unwrap()).unwrap();
    assert_eq!(agent.adapter, baton_engine::AdapterKind::Script);
}

/// The issues of a global pipeline with one agent stage carrying `keys`.
fn stage_issues(keys: &str, files: &[(&str, &str)]) -> Vec<ConfigIssue> {
    let extra = format!(
        "[limits]\njob_backstop_secs = 3600\n\n\
         [[pipeline.stages]]\nname = \"development\"\nactor = {{ kind = \"agent\", role = \"developer\" }}\n{keys}\n"
    );
    issues(load_with("", &extra, files))
}

// Each bad actor key is named at its stage with a fix.
#[test]
fn bad_stage_actor_keys_are_reported_with_their_fix() {
    let at = |key: &str| format!("pipeline.stages[0].{key}");
    let found = stage_issues("agent = \"fsat\"", &[]);
    let issue = find(&found, &at("agent"));
    assert!(issue.message.contains("[agents.fsat] is missing") && issue.fix.contains("[agents.fsat]"), "{issue}");
    let found = stage_issues("adapter = \"claud\"", &[]);
    let issue = find(&found, &at("adapter"));
    assert!(issue.message.contains("not an adapter") && issue.fix.contains("claude"), "{issue}");
    let found = stage_issues("adapter = \"command\"", &[]);
    assert!(find(&found, &at("adapter")).message.contains("needs a `command`"));
    let found = stage_issues("model = \"\"", &[]);
    assert!(find(&found, &at("model")).message.contains("is empty"));
    let found = stage_issues("prompt_template = \"missing.md.j2\"", &[]);
    let issue = find(&found, &at("prompt_template"));
    assert!(issue.message.contains("missing.md.j2") && issue.fix.contains("inline"), "{issue}");
    let found = stage_issues("prompt_template = \"bad.md.j2\"", &[("bad.md.j2", "{% if %}")]);
    assert!(find(&found, &at("prompt_template")).message.contains("does not compile"));
    let found = stage_issues("prompt_template = { file = \"x\" }", &[]);
    assert!(find(&found, &at("prompt_template")).message.contains("file path or"));
    let found = stage_issues("timeout_secs = 0", &[]);
    assert!(find(&found, &at("timeout_secs")).message.contains("at least 1"));
    let found = stage_issues("timeout_secs = 7200", &[]);
    let issue = find(&found, &at("timeout_secs"));
    assert!(issue.message.contains("backstop") && issue.fix.contains("job_backstop_secs"), "{issue}");
    let found = stage_issues("stall_timeout_secs = -5", &[]);
    assert!(find(&found, &at("stall_timeout_secs")).fix.contains("limits.stall_timeout_secs"));
    let found = stage_issues("budget_usd = -1.0", &[]);
    assert!(find(&found, &at("budget_usd")).message.contains("more than 0"));
    let found = stage_issues("budget_usd = \"lots\"", &[]);
    assert!(find(&found, &at("budget_usd")).message.contains("amount in USD"));
}

// Actor keys on a stage without an agent are refused: nothing would use them.
#[test]
fn actor_keys_need_an_agent_stage() {
    let extra =
        "[[pipeline.stages]]\nname = \"deploy\"\nactor = \"deploy\"\nmodel = \"m\"\ngates = [\"deploy_status\"]\n";
    let found = issues(load_with("", extra, &[]));
    let issue = find(&found, "pipeline.stages[0].model");
    assert!(issue.message.contains("only to an agent stage") && issue.fix.contains("kind = \"agent\""), "{issue}");
}
