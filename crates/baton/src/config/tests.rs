//! Tests of configuration loading through `load` and `load_str`, the way the binary and the
//! fuzzers call them: every section, overrides, interpolation, the template and the documented example.

use super::sections::limits_table;
use super::{Config, ConfigIssue, DEFAULT_LISTEN, default_data_dir, init_template, load, load_str};
use baton_domain::pipeline::{Actor, OnGateFail, Pipeline};
use baton_engine::Limits;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    result.unwrap_or_else(|issues| panic!("{}", issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n")))
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
    std::fs::write(git.join("packed-refs"), format!("# pack-refs with: peeled\n{} refs/heads/release\n", main.trim()))
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
    let doc = include_str!("../../../../docs/configuration.md");
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
        ("pipeline.stages[1]", "stage `review` has an artifact or verdict gate but no `artifact` file name", artifact),
        // A duplicate is reported at the first stage of that name.
        ("pipeline.stages[1]", "stage `review` appears twice", "give each stage a unique name"),
        ("pipeline.stages[3]", "stage name `done` is reserved for the terminal stage", reserved),
        ("pipeline.stages[3]", "stage `done` has an artifact or verdict gate but no `artifact` file name", artifact),
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

// The HTTP server keys: defaults, values read (a string list split on commas), and every bad
// value reported with its key.
#[test]
fn server_limits_and_allowed_hosts() {
    let dir = valid_dir();
    let path = dir.path().join("baton.toml");
    let config = loaded(load_file(&path, &[]));
    assert_eq!(
        (config.server.max_connections, config.server.header_timeout_secs, config.server.idle_timeout_secs),
        (512, 10, 60)
    );
    assert!(config.server.allowed_hosts.is_empty());

    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[server]\n",
        "[server]\nmax_connections = 64\nheader_timeout_secs = 5\nidle_timeout_secs = 30\nallowed_hosts = \"baton.lan, [::1]:9000\"\n",
    );
    std::fs::write(&path, text).unwrap();
    let config = loaded(load_file(&path, &[]));
    assert_eq!(
        (config.server.max_connections, config.server.header_timeout_secs, config.server.idle_timeout_secs),
        (64, 5, 30)
    );
    assert_eq!(config.server.allowed_hosts, ["baton.lan", "[::1]:9000"]);

    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_connections = 64", "max_connections = 0")
        .replace("header_timeout_secs = 5", "header_timeout_secs = 0")
        .replace("\"baton.lan, [::1]:9000\"", "[\"http://baton.lan/\"]");
    std::fs::write(&path, text).unwrap();
    let found = issues(load_file(&path, &[]));
    assert!(find(&found, "server.max_connections").fix.contains("between 1 and"));
    find(&found, "server.header_timeout_secs");
    assert!(find(&found, "server.allowed_hosts[0]").message.contains("http://baton.lan/"));
}

// `[sandbox]` defaults to auto with an open network; values and per-agent overrides load; bad
// values and paths that would open the data directory to agents are reported with key and fix.
#[test]
fn sandbox_section_loads_and_reports_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[server]\ndata_dir = \"data\"\n\n";
    let config = loaded(load_str(base, &env(&[]), dir.path(), PathBuf::from("baton")));
    assert_eq!(config.sandbox, baton_engine::SandboxSettings::default());
    assert_eq!(config.sandbox.mode, baton_engine::SandboxMode::Auto);
    assert_eq!(config.sandbox.network, baton_engine::SandboxNetwork::Open);
    let text = format!(
        "{base}[sandbox]\nmode = \"required\"\nnetwork = \"none\"\nwritable = [\"cache\"]\n\n\
         [agents.default]\nadapter = \"command\"\ncommand = [\"agent\"]\nsandbox_mode = \"off\"\nsandbox_network = \"open\"\n"
    );
    let config = loaded(load_str(&text, &env(&[]), dir.path(), PathBuf::from("baton")));
    assert_eq!(config.sandbox.mode, baton_engine::SandboxMode::Required);
    assert_eq!(config.sandbox.network, baton_engine::SandboxNetwork::None);
    assert_eq!(config.sandbox.writable, vec![dir.path().join("cache")]);
    let agent = &config.engine.agents["default"];
    assert_eq!(agent.sandbox_mode, Some(baton_engine::SandboxMode::Off));
    assert_eq!(agent.sandbox_network, Some(baton_engine::SandboxNetwork::Open));
    let bad = format!(
        "{base}[sandbox]\nmode = \"strict\"\nnetwork = \"closed\"\nread_only = [\"data/runs\"]\n\n\
         [agents.default]\nadapter = \"command\"\ncommand = [\"agent\"]\nsandbox_mode = \"yes\"\n"
    );
    let issues = issues(load_str(&bad, &env(&[]), dir.path(), PathBuf::from("baton")));
    assert!(find(&issues, "sandbox.mode").fix.contains("required"), "{issues:#?}");
    assert!(find(&issues, "sandbox.network").fix.contains("none"), "{issues:#?}");
    assert!(find(&issues, "sandbox.read_only[0]").message.contains("data directory"), "{issues:#?}");
    assert!(find(&issues, "agents.default.sandbox_mode").fix.contains("auto"), "{issues:#?}");
}

// `[retention]` defaults to 90 days in batches of 500, `days = 0` keeps everything, and a zero
// batch, an absurd number of days or an unknown key is reported with its key.
#[test]
fn retention_section_loads_and_reports_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[server]\ndata_dir = \"data\"\n\n";
    let load = |text: &str| load_str(text, &env(&[]), dir.path(), PathBuf::from("baton"));
    let config = loaded(load(base));
    assert_eq!(config.retention, baton_engine::Retention { days: 90, batch: 500 });
    let config = loaded(load(&format!("{base}[retention]\ndays = 0\n")));
    assert_eq!(config.retention.cutoff_ms(1_000_000_000_000), None, "0 keeps everything");
    let config = loaded(load(&format!("{base}[retention]\ndays = 7\nbatch = 50\n")));
    assert_eq!(config.retention, baton_engine::Retention { days: 7, batch: 50 });
    assert_eq!(config.retention.cutoff_ms(8 * 86_400_000), Some(86_400_000));
    let bad = issues(load(&format!("{base}[retention]\ndays = 99999\nbatch = 0\n")));
    assert!(find(&bad, "retention.batch").fix.contains("days = 0"), "{bad:#?}");
    assert!(find(&bad, "retention.days").message.contains("99999"), "{bad:#?}");
    let unknown = issues(load(&format!("{base}[retention]\nweeks = 2\n")));
    assert!(unknown.iter().any(|i| i.key.starts_with("retention")), "{unknown:#?}");
}

// A `url` repository loads with Baton's clone under the data dir as its path; a bare repository's
// path is accepted as its URL (resolved like `path`).
#[test]
fn url_repository_gets_a_clone_under_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    git_repo(&dir.path().join("project"));
    let path = write(
        dir.path(),
        "baton.toml",
        "[server]\ndata_dir = \"data\"\n\n\
         [[repos]]\nname = \"app\"\nurl = \"https://git.example.com/team/app.git\"\ncredentials_env = \"GIT_TOKEN\"\nprefix = \"APP\"\n\n\
         [[repos]]\nname = \"local\"\nurl = \"project\"\nprefix = \"LOC\"\ndelete_remote_branch = \"never\"\npush = false\n",
    );
    let config = loaded(load_file(&path, &[]));
    let app = config.engine.repo("app").unwrap();
    assert_eq!(app.path, dir.path().join("data/repos/app.git"));
    assert!(app.pushes() && app.deletes_remote_branch(true) && app.deletes_remote_branch(false));
    assert_eq!(app.default_ref(), "refs/remotes/origin/main");
    let local = config.engine.repo("local").unwrap();
    assert_eq!(local.url.as_deref(), Some(dir.path().join("project").to_str().unwrap()));
    assert!(!local.pushes() && !local.deletes_remote_branch(false));
}

// Every mistake in a `url` repository is reported with its key and a fix.
#[test]
fn url_repository_mistakes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    git_repo(&dir.path().join("project"));
    let path = write(
        dir.path(),
        "baton.toml",
        "[[repos]]\nname = \"a\"\nurl = \"https://user:secret@git.example.com/a.git\"\nprefix = \"A\"\n\n\
         [[repos]]\nname = \"b\"\nurl = \"http://git.example.com/b.git\"\nprefix = \"B\"\ncredentials_env = \"not a name\"\n\n\
         [[repos]]\nname = \"c\"\nurl = \"ftp://host/c.git\"\npath = \"project\"\nprefix = \"C\"\n\n\
         [[repos]]\nname = \"d\"\npath = \"project\"\nprefix = \"D\"\npush = true\ncredentials_env = \"GIT_TOKEN\"\n\n\
         [[repos]]\nname = \"e\"\nprefix = \"E\"\n\n\
         [[repos]]\nname = \"f\"\nurl = \"missing-dir\"\nprefix = \"F\"\n\n\
         [[repos]]\nname = \"g\"\nurl = \"https://host/g.git\"\nprefix = \"G\"\ndelete_remote_branch = \"sometimes\"\n",
    );
    let found = issues(load_file(&path, &[]));
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    for key in [
        "repos[0].url",
        "repos[1].url",
        "repos[1].credentials_env",
        "repos[2].url",
        "repos[2].path",
        "repos[3].push",
        "repos[3].credentials_env",
        "repos[4].path",
        "repos[5].url",
        "repos[6].delete_remote_branch",
    ] {
        assert!(keys.contains(&key), "no issue for {key}: {found:#?}");
    }
    let credentials = found.iter().find(|i| i.key == "repos[0].url").unwrap();
    assert!(credentials.fix.contains("credentials_env"), "{credentials:?}");
    assert!(!found.iter().any(|i| i.to_string().contains("secret@")), "the URL's password was echoed: {found:#?}");
}

// `[webhooks]`: secrets from `${VAR}` or `BATON_WEBHOOKS__*`, unset ones leave the route off, a short
// one is an issue, and no secret value appears in debug output or messages.
#[test]
fn webhook_secrets_load_from_the_environment_and_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    let github = "gh-webhook-secret-0123456789";
    let plane = "plane-webhook-secret-abcdef";
    let path = write(
        dir.path(),
        "baton.toml",
        "[server]\ndata_dir = \"d\"\n[webhooks]\ngithub_secret = \"${GH_HOOK}\"\ngitea_secret = \"\"\n",
    );
    let config = loaded(load_file(&path, &[("GH_HOOK", github), ("BATON_WEBHOOKS__PLANE_SECRET", plane)]));
    assert_eq!(config.webhooks.github.as_deref(), Some(github));
    assert_eq!(config.webhooks.gitea, None, "empty means off");
    assert_eq!(config.webhooks.plane.as_deref(), Some(plane));
    let shown = format!("{config:?}");
    assert!(!shown.contains(github) && !shown.contains(plane), "{shown}");

    let short = write(dir.path(), "short.toml", "[webhooks]\ngitea_secret = \"${SHORT}\"\nnope = 1\n");
    let found = issues(load_file(&short, &[("SHORT", "tiny-secret")]));
    assert!(find(&found, "webhooks.gitea_secret").message.contains("16"));
    find(&found, "webhooks.nope");
    for issue in &found {
        assert!(!issue.to_string().contains("tiny-secret"), "secret leaked: {issue}");
    }
}

// `[[trackers]]`: an entry maps a forge repository's labelled issues to a configured repository;
// every mistake is reported with its key and a fix.
#[test]
fn trackers_load_and_report_mistakes() {
    let dir = valid_dir();
    let path = dir.path().join("baton.toml");
    let base = std::fs::read_to_string(&path).unwrap();
    let good = format!(
        "{base}\n[[trackers]]\nkind = \"github\"\nrepo = \"demo\"\nforge_repo = \"acme/shop\"\nauthors = \"alice, bob\"\n\
         token_env = \"GH_TOKEN\"\n"
    );
    std::fs::write(&path, good).unwrap();
    let config = loaded(load_file(&path, &[("GH_TOKEN", "ghp_secret_token_value_1234")]));
    assert_eq!(config.trackers.len(), 1);
    let tracker = &config.trackers[0];
    assert_eq!(tracker.rule.start_label, "baton", "the default start label");
    assert_eq!(tracker.rule.authors, ["alice", "bob"]);
    assert_eq!(
        (tracker.rule.approve_label.as_str(), tracker.rule.stop_label.as_str(), tracker.rule.answer_label.as_str()),
        ("baton:approved", "baton:stop", "baton:answered")
    );
    assert_eq!((tracker.rule.status_label_prefix.as_str(), tracker.rule.close_on_done), ("baton:", true));
    assert_eq!((tracker.api_url.as_str(), tracker.poll_secs), ("https://api.github.com", 60));
    assert_eq!(tracker.token, "ghp_secret_token_value_1234");
    assert!(!format!("{config:?}").contains("ghp_secret_token_value_1234"), "the token is never shown");
    assert!(tracker.rule.approvers.is_empty());
    let bad = format!(
        "{base}\n[[trackers]]\nkind = \"jira\"\nrepo = \"nope\"\nforge_repo = \"acme\"\n\n\
         [[trackers]]\nkind = \"github\"\nrepo = \"demo\"\nforge_repo = \"acme\"\nstart_label = \" \"\n"
    );
    std::fs::write(&path, bad).unwrap();
    let found = issues(load_file(&path, &[]));
    assert!(find(&found, "trackers[0].kind").fix.contains("plane"), "{found:#?}");
    assert!(find(&found, "trackers[0].repo").fix.contains("demo"), "{found:#?}");
    assert!(find(&found, "trackers[1].forge_repo").message.contains("owner/name"), "{found:#?}");
    find(&found, "trackers[1].start_label");
    assert!(find(&found, "trackers[1].token_env").fix.contains("token_env"), "{found:#?}");
}

// The tracker keys: a Plane entry with its workspace, project and start state; gitea needs its
// API URL; http only on loopback; the token variable must be set; keys of the other kind and
// status labels used as decision labels are mistakes; no message shows the token.
#[test]
fn tracker_keys_for_each_kind_and_their_errors() {
    let dir = valid_dir();
    let path = dir.path().join("baton.toml");
    let base = std::fs::read_to_string(&path).unwrap();
    let plane = format!(
        "{base}\n[[trackers]]\nkind = \"plane\"\nrepo = \"demo\"\nworkspace = \"acme\"\nproject = \"p-123\"\n\
         api_url = \"https://plane.example.com/api/v1/\"\ntoken_env = \"PLANE_KEY\"\napprovers = \"Alice\"\npoll_secs = 0\n\n\
         [[trackers]]\nkind = \"gitea\"\nrepo = \"demo\"\nforge_repo = \"team/app\"\napi_url = \"http://127.0.0.1:3000/api/v1\"\n\
         token_env = \"GITEA_TOKEN\"\nanswer_label = \"answered\"\nstatus_label_prefix = \"bot/\"\nclose_on_done = false\n"
    );
    std::fs::write(&path, plane).unwrap();
    let config = loaded(load_file(
        &path,
        &[("PLANE_KEY", "plane_api_key_0123456789"), ("GITEA_TOKEN", "gitea_token_0123456789")],
    ));
    let plane = &config.trackers[0];
    assert_eq!(plane.rule.source, baton_engine::intake::IntakeSource::Plane);
    assert_eq!((plane.rule.forge_repo.as_str(), plane.rule.start_label.as_str()), ("p-123", "To Analyse"));
    assert_eq!(
        (plane.workspace.as_deref(), plane.api_url.as_str()),
        (Some("acme"), "https://plane.example.com/api/v1")
    );
    assert_eq!((plane.poll_secs, plane.rule.approvers.clone()), (0, vec!["Alice".to_string()]));
    let gitea = &config.trackers[1];
    assert_eq!(
        (gitea.rule.answer_label.as_str(), gitea.rule.status_label_prefix.as_str(), gitea.rule.close_on_done),
        ("answered", "bot/", false)
    );

    let bad = format!(
        "{base}\n[[trackers]]\nkind = \"plane\"\nrepo = \"demo\"\nforge_repo = \"a/b\"\nstart_state = \"\"\n\
         api_url = \"https://plane.example.com/api/v1\"\ntoken_env = \"UNSET_VAR\"\n\n\
         [[trackers]]\nkind = \"gitea\"\nrepo = \"demo\"\nforge_repo = \"team/app\"\ntoken_env = \"not a name\"\nproject = \"x\"\n\n\
         [[trackers]]\nkind = \"github\"\nrepo = \"demo\"\nforge_repo = \"team/app\"\napi_url = \"http://github.example.com\"\n\
         token_env = \"GH\"\napprove_label = \"baton:in-review\"\n\n\
         [[trackers]]\nkind = \"github\"\nrepo = \"demo\"\nforge_repo = \"team/app\"\napi_url = \"https://u:p@github.example.com\"\ntoken_env = \"GH\"\n"
    );
    std::fs::write(&path, bad).unwrap();
    let found = issues(load_file(&path, &[("GH", "ghp_do_not_show_0123456789")]));
    assert!(find(&found, "trackers[0].forge_repo").fix.contains("workspace"), "{found:#?}");
    assert!(find(&found, "trackers[0].workspace").fix.contains("workspace ="), "{found:#?}");
    find(&found, "trackers[0].project");
    find(&found, "trackers[0].start_state");
    assert!(find(&found, "trackers[0].token_env").fix.contains("export UNSET_VAR"), "{found:#?}");
    assert!(find(&found, "trackers[1].api_url").fix.contains("api_url"), "{found:#?}");
    find(&found, "trackers[1].token_env");
    assert!(find(&found, "trackers[1].project").fix.contains("plane"), "{found:#?}");
    assert!(find(&found, "trackers[2].api_url").fix.contains("loopback"), "{found:#?}");
    assert!(find(&found, "trackers[2].approve_label").message.contains("status label"), "{found:#?}");
    find(&found, "trackers[3].api_url");
    for issue in &found {
        assert!(!issue.to_string().contains("ghp_do_not_show_0123456789"), "token leaked: {issue}");
    }
}

// The load modes: `serve` needs every secret's variable; a task input needs the tracker's token
// but not the API token or a webhook secret; a read needs none. Whatever is let pass is kept in
// `deferred`, naming the variable, and the secret stays unset (never the reference's own text).
#[test]
fn load_modes_defer_only_the_secrets_a_command_never_uses() {
    use super::{LoadMode, load_for};
    let dir = valid_dir();
    let path = dir.path().join("baton.toml");
    let base = std::fs::read_to_string(&path).unwrap().replace("[server]\n", "[server]\napi_token = \"${API_TOK}\"\n");
    assert!(base.contains("${API_TOK}"), "{base}");
    let text = format!(
        "{base}\n[webhooks]\ngithub_secret = \"${{HOOK_SECRET}}\"\n\n[[trackers]]\nkind = \"github\"\nrepo = \"demo\"\n\
         forge_repo = \"acme/shop\"\ntoken_env = \"TRACKER_TOK\"\n\n\
         [telegram]\nbot_token_env = \"BOT_TOK\"\nchat_id = -100123\nmode = \"poll\"\nallowed_user_ids = [42]\n"
    );
    std::fs::write(&path, text).unwrap();
    let exe = PathBuf::from("/usr/bin/baton");
    let serve = issues(load_for(Some(&path), &[], exe.clone(), LoadMode::Serve));
    for (key, var) in [
        ("server.api_token", "API_TOK"),
        ("webhooks.github_secret", "HOOK_SECRET"),
        ("trackers[0].token_env", "TRACKER_TOK"),
        ("telegram.bot_token_env", "BOT_TOK"),
    ] {
        assert!(find(&serve, key).message.contains(var), "{serve:#?}");
    }
    assert!(serve.iter().all(|i| !i.message.contains("16")), "an unset secret is not a short one: {serve:#?}");
    let act = issues(load_for(Some(&path), &[], exe.clone(), LoadMode::Act));
    assert_eq!(act.len(), 2, "{act:#?}");
    find(&act, "trackers[0].token_env");
    find(&act, "telegram.bot_token_env");
    let both = env(&[("TRACKER_TOK", "tracker-token-1234"), ("BOT_TOK", "123:bot-token")]);
    let config = loaded(load_for(Some(&path), &both, exe.clone(), LoadMode::Act));
    assert_eq!((config.server.api_token.as_deref(), config.webhooks.github.as_deref()), (None, None));
    assert_eq!(config.deferred.len(), 2, "{:#?}", config.deferred);
    let read = loaded(load_for(Some(&path), &[], exe, LoadMode::Read));
    assert_eq!(read.trackers[0].token, "");
    let keys: Vec<&str> = read.deferred.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["server.api_token", "webhooks.github_secret", "trackers[0].token_env", "telegram.bot_token_env"]);
}

// The post-deploy monitor's settings load per repository, and each bad value is named with its fix:
// a window too long, an interval outside it, zero failures, a window without `health`, a revert
// without a window.
#[test]
fn monitor_settings_load_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        git_repo(&dir.path().join(name));
    }
    write(dir.path(), "script.toml", "");
    let repo = |name: &str, prefix: &str, extra: &str| {
        format!("[[repos]]\nname = \"{name}\"\npath = \"{name}\"\nprefix = \"{prefix}\"\n{extra}\n")
    };
    let text = format!(
        "{}{}{}[agents.default]\nadapter = \"script\"\nscript = \"script.toml\"\n",
        repo(
            "a",
            "A",
            "health = [\"true\"]\nmonitor_window_secs = 600\nmonitor_interval_secs = 20\nmonitor_failures = 4\n\
             revert_on_degraded = true\nrevert_confirm = true\n"
        ),
        repo("b", "B", "health = [\"true\"]\nmonitor_window_secs = 9999999\n"),
        repo("c", "C", "monitor_window_secs = 60\nmonitor_interval_secs = 61\nmonitor_failures = 0\n"),
    );
    let found = issues(load_file(&write(dir.path(), "baton.toml", &text), &[]));
    assert!(find(&found, "repos[1].monitor_window_secs").message.contains("out of range"), "{found:#?}");
    assert!(find(&found, "repos[2].monitor_interval_secs").fix.contains("from 1 to `monitor_window_secs`"));
    assert!(find(&found, "repos[2].monitor_failures").message.contains("every deploy degraded"));
    assert!(found.iter().any(|i| i.key == "repos[2].monitor_window_secs" && i.message.contains("without a `health`")));
    assert!(!found.iter().any(|i| i.key.starts_with("repos[0]")), "repo a is valid: {found:#?}");

    let only_a = format!(
        "{}[agents.default]\nadapter = \"script\"\nscript = \"script.toml\"\n",
        repo(
            "a",
            "A",
            "health = [\"true\"]\nmonitor_window_secs = 600\nmonitor_interval_secs = 20\nmonitor_failures = 4\n\
         revert_on_degraded = true\nrevert_confirm = true\n"
        )
    );
    let config = loaded(load_file(&write(dir.path(), "baton.toml", &only_a), &[]));
    let a = &config.engine.repos[0];
    assert_eq!(
        (a.monitor_window_secs, a.monitor_interval_secs, a.monitor_failures, a.revert_on_degraded, a.revert_confirm),
        (600, 20, 4, true, true)
    );
    let revert_alone = format!(
        "{}[agents.default]\nadapter = \"script\"\nscript = \"script.toml\"\n",
        repo("a", "A", "revert_on_degraded = true\n")
    );
    let found = issues(load_file(&write(dir.path(), "baton.toml", &revert_alone), &[]));
    assert!(find(&found, "repos[0].revert_on_degraded").fix.contains("monitor_window_secs"));
}

// `[retro]` is off by default; enabled, it loads with its defaults; a `max_proposals` out of
// range, an `agent` naming no entry, a retro no entry can run and a pipeline that already has a
// `retro` stage are each reported with their key.
#[test]
fn retro_section_loads_and_reports_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.toml"), "").unwrap();
    let base = "[server]\ndata_dir = \"data\"\n\n[agents.default]\nadapter = \"script\"\nscript = \"s.toml\"\n\n";
    let load = |text: &str| load_str(text, &env(&[]), dir.path(), PathBuf::from("baton"));
    let config = loaded(load(base));
    assert_eq!(config.retro, baton_engine::retro::RetroSettings::default());
    assert!(!config.retro.enabled, "off by default");
    let config = loaded(load(&format!("{base}[retro]\nenabled = true\n")));
    assert_eq!((config.retro.enabled, config.retro.max_proposals, config.retro.agent), (true, 5, None));
    let config = loaded(load(&format!(
        "{base}[agents.cheap]\nadapter = \"script\"\nscript = \"s.toml\"\n\n[retro]\nenabled = true\nagent = \"cheap\"\n"
    )));
    assert_eq!(config.retro.agent.as_deref(), Some("cheap"));
    let bad = issues(load(&format!("{base}[retro]\nenabled = true\nmax_proposals = 0\nagent = \"nobody\"\n")));
    assert!(find(&bad, "retro.max_proposals").message.contains("between 1 and 50"), "{bad:#?}");
    assert!(find(&bad, "retro.agent").message.contains("nobody"), "{bad:#?}");
    let unknown = issues(load(&format!("{base}[retro]\nenable = true\n")));
    assert!(unknown.iter().any(|i| i.key.starts_with("retro")), "{unknown:#?}");
    let unserved = issues(load("[server]\ndata_dir = \"data\"\n\n[retro]\nenabled = true\n"));
    assert!(find(&unserved, "retro.agent").message.contains("no agent entry"), "{unserved:#?}");
    let taken = format!(
        "{base}[[pipeline.stages]]\nname = \"retro\"\nactor = {{ kind = \"agent\", role = \"developer\" }}\ngates = []\n\n[retro]\nenabled = true\n"
    );
    let taken = issues(load(&taken));
    assert!(find(&taken, "pipeline.stages").message.contains("named `retro`"), "{taken:#?}");
}
