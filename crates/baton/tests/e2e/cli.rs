//! The command line as a newcomer meets it: read-only commands without the server's secrets, a
//! closed pipe, `task show` with the artifact and log paths and the failure's tail, money as
//! people read it, budget spend, whether a server runs, the serve log of agent runs, progress of
//! long commands, and a configuration reference that names every key the loader accepts.

use crate::support::{Env, baton_exe, git};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The variables the secret-holding config of [`secret_env`] names.
const SECRET_VARS: &[&str] =
    &["CLI_TEST_API_TOKEN", "CLI_TEST_HOOK_SECRET", "CLI_TEST_TRACKER_TOKEN", "CLI_TEST_FORGE_TOKEN"];

/// An environment whose config reads every kind of secret from a variable: `server.api_token`,
/// a `[webhooks]` secret, a tracker's `token_env` and a hosted repository's `forge_token_env`.
fn secret_env() -> Env {
    let env = Env::new("", "");
    let remote = env.root.join("remote.git");
    git(&env.root, &["clone", "-q", "--bare", "project", remote.to_str().unwrap()]);
    let config = std::fs::read_to_string(env.config())
        .unwrap()
        .replace("api_token = \"test-token\"", "api_token = \"${CLI_TEST_API_TOKEN}\"");
    let config = format!(
        "{config}\n[webhooks]\ngithub_secret = \"${{CLI_TEST_HOOK_SECRET}}\"\n\n\
         [[repos]]\nname = \"hosted\"\nurl = \"remote.git\"\nprefix = \"HOST\"\nforge = \"github\"\n\
         forge_repo = \"acme/hosted\"\nforge_token_env = \"CLI_TEST_FORGE_TOKEN\"\n\n\
         [[trackers]]\nkind = \"github\"\nrepo = \"demo\"\nforge_repo = \"acme/demo\"\n\
         token_env = \"CLI_TEST_TRACKER_TOKEN\"\npoll_secs = 0\n"
    );
    std::fs::write(env.config(), config).unwrap();
    env
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

// With none of the secrets' variables set, every read-only command runs (exit 0), while `config
// check` and `serve` still refuse, naming each unset variable; with them set, a task can be filed.
#[test]
fn read_only_commands_run_without_the_servers_secrets() {
    let env = secret_env();
    let with_secrets = |args: &[&str]| {
        let mut command = env.command();
        for var in SECRET_VARS {
            command.env(var, format!("{var}-value-long-enough-for-a-secret"));
        }
        command.args(args).output().unwrap()
    };
    let out = with_secrets(&["task", "add", "--repo", "demo", "--title", "Read me later"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let without = |args: &[&str]| {
        let mut command = env.command();
        for var in SECRET_VARS {
            command.env_remove(var);
        }
        command.args(args).output().unwrap()
    };
    for args in [
        &["task", "list"][..],
        &["task", "show", "DEMO-001"],
        &["status"],
        &["usage"],
        &["budget", "show"],
        &["token", "list"],
        &["--json", "task", "list"],
    ] {
        let out = without(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "baton {args:?} failed without the secrets:\n{stdout}\n{stderr}");
    }
    let (stdout, _) = text(&without(&["task", "show", "DEMO-001"]));
    assert!(stdout.contains("Read me later"), "{stdout}");
    for args in [&["config", "check"][..], &["serve"]] {
        let out = without(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "baton {args:?} must refuse:\n{stderr}");
        for var in SECRET_VARS {
            assert!(stderr.contains(var), "baton {args:?} does not name {var}:\n{stderr}");
        }
        // The reference is named as written, not garbled by the masking of secret values.
        assert!(stderr.contains("`${CLI_TEST_API_TOKEN}`"), "{stderr}");
        assert!(!stderr.contains("shorter than 16"), "an unset secret is not a short one:\n{stderr}");
    }
    // `status` says what `serve` would need.
    let (_, stderr) = text(&without(&["status"]));
    assert!(stderr.contains("CLI_TEST_FORGE_TOKEN"), "{stderr}");
}

// Every printing command whose stdout is closed before it writes exits quietly: 0 or 141, no
// panic message, no "Broken pipe"; `task show X | head -1` prints its first line.
#[test]
fn closed_pipe_ends_output_quietly() {
    let env = Env::new("", "");
    for n in 0..3 {
        env.add_task(&format!("Pipe task {n}"));
    }
    let init_dir = env.root.join("init-here");
    std::fs::create_dir_all(&init_dir).unwrap();
    let commands: Vec<Vec<String>> = [
        &["task", "list", "--all"][..],
        &["task", "show", "DEMO-001"],
        &["--json", "task", "show", "DEMO-001"],
        &["status"],
        &["usage"],
        &["budget", "show"],
        &["token", "list"],
        &["config", "check"],
        &["--help"],
        &["init", "--dir", init_dir.to_str().unwrap()],
    ]
    .iter()
    .map(|args| args.iter().map(|a| a.to_string()).collect())
    .collect();
    for args in commands {
        let mut child = env.command().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(0 | 141)), "baton {args:?}: {:?}\n{stderr}", out.status);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "baton {args:?}:\n{stderr}");
    }
    let script = format!(
        "'{}' --config '{}' task show DEMO-001 | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
        baton_exe(),
        env.config().display()
    );
    let out = Command::new("bash").arg("-c").arg(&script).env("HOME", &env.root).output().unwrap();
    let (stdout, stderr) = text(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}\n{stderr}");
    assert!(lines[0].starts_with("DEMO-001"), "{stdout}");
    assert!(matches!(lines[1], "status=0" | "status=141"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The analysis of a "broken" task fails after spending an awkward amount.
const FAILING_ANALYSIS: &str = r#"
[[task]]
match = "broken"
[[task.step]]
stage = "analysis"
model = "claude-sonnet-4-5"
usage = { input_tokens = 1200, output_tokens = 340, cache_read_tokens = 0, cache_write_tokens = 0 }
cost_usd = 0.052649999999999995
actions = [{ fail = "the analysis could not read the ticket" }]
"#;

/// Polls `baton --json task show id` until `done` holds.
fn wait_show(env: &Env, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let show = env.json(&["task", "show", id]);
        if done(&show) {
            return show;
        }
        assert!(Instant::now() < deadline, "timed out waiting on {id}: {show:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// A failed agent run: `task show` names the artifact paths (in the worktree and absolute), the
// failing run's log and its tail; money reads `$0.0527` in show, usage and budget show (JSON keeps
// the number); `status` and `task add` say whether a server runs; serve logs the run's start and end.
#[test]
fn task_show_budget_status_and_serve_log_after_a_failed_run() {
    let env = Env::new(FAILING_ANALYSIS, "retry_max = 1");
    // No server yet: status and task add say so, and how the task will start.
    let (stdout, _) = text(&env.run(&["status"]));
    assert!(stdout.contains("server: not running") && stdout.contains("baton serve"), "{stdout}");
    assert_eq!(env.json(&["status"])["server"]["running"], Value::Bool(false));
    let out = env.run(&["task", "add", "--repo", "demo", "--title", "broken ticket"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout.trim(), "DEMO-001", "the id alone on stdout");
    assert!(stderr.contains("no `baton serve` is running") && stderr.contains("`baton serve`"), "{stderr}");

    let _server = env.serve(0);
    let show = wait_show(&env, "DEMO-001", Duration::from_secs(60), |show| {
        show["jobs"].as_array().unwrap().iter().any(|j| j["status"] == "failed")
    });
    let (stdout, _) = text(&env.run(&["status"]));
    assert!(stdout.contains("server: running"), "{stdout}");
    let out = env.run(&["task", "add", "--repo", "demo", "--title", "another ticket"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("running `baton serve` starts"), "{:?}", text(&out));

    // JSON keeps the plain number.
    let run = &show["agent_runs"][0];
    assert_eq!(run["cost_usd"].as_f64(), Some(0.052649999999999995));
    let failure = &show["files"]["last_failure"];
    let log = std::path::PathBuf::from(failure["log"].as_str().expect("the failing run's log"));
    assert!(log.is_file(), "{log:?}");
    let (stdout, _) = text(&env.run(&["task", "show", "DEMO-001"]));
    let worktree = env.root.join("data").join("worktrees").join("demo").join("DEMO-001");
    assert!(stdout.contains("docs/baton/DEMO-001/01-analysis.md"), "{stdout}");
    assert!(stdout.contains(&worktree.join("docs/baton/DEMO-001/01-analysis.md").display().to_string()), "{stdout}");
    assert!(stdout.contains(&format!("log: {}", log.display())), "{stdout}");
    assert!(stdout.contains("agent run") && stdout.contains("(script)"), "{stdout}");
    let last_line = std::fs::read_to_string(&log).unwrap().trim_end().lines().last().unwrap().to_string();
    assert!(stdout.contains(last_line.trim()), "the log's last line `{last_line}` is not in:\n{stdout}");
    assert!(stdout.contains("could not read the ticket"), "{stdout}");
    // Money for people, everywhere.
    assert!(stdout.contains("$0.0527"), "{stdout}");
    let (usage, _) = text(&env.run(&["usage"]));
    assert!(usage.contains("$0.0527"), "{usage}");
    let out = env.run(&["budget", "set", "--global", "--usd", "1"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (budget, _) = text(&env.run(&["budget", "show"]));
    let global = budget.lines().find(|l| l.starts_with("all repos today")).unwrap_or_else(|| panic!("{budget}"));
    for part in ["$0.0527", "$1.00", "5 %"] {
        assert!(global.contains(part), "`{part}` missing in `{global}`");
    }
    let task_row = budget.lines().find(|l| l.starts_with("task DEMO-001")).unwrap_or_else(|| panic!("{budget}"));
    assert!(task_row.contains("$0.0527"), "{task_row}");
    let spend = env.json(&["budget", "show"]);
    let global = spend["spend"].as_array().unwrap().iter().find(|s| s["scope"] == "global").unwrap().clone();
    assert_eq!(global["spent_usd"].as_f64(), Some(0.052649999999999995));
    let run_row = stdout.lines().find(|l| l.starts_with("analysis  script")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(run_row.ends_with("$0.0527"), "{run_row}");
    // Baton's own figures never show the float's noise (the run log's raw JSON line may).
    let own = stdout.lines().filter(|l| !l.contains("\"total_cost_usd\""));
    for line in own.chain(usage.lines()).chain(budget.lines()) {
        assert!(!line.contains("0.05264999"), "{line}");
    }

    // The serve log has the run's start and end at info level.
    let serve_log = strip_ansi(&std::fs::read_to_string(env.root.join("serve-0.log")).unwrap());
    let started = serve_log.lines().find(|l| l.contains("agent started")).unwrap_or_else(|| panic!("{serve_log}"));
    for part in ["task=DEMO-001", "stage=analysis", "adapter=\"script\"", "pid=", "INFO"] {
        assert!(started.contains(part), "`{part}` missing in `{started}`");
    }
    let ended = serve_log.lines().find(|l| l.contains("agent ended")).unwrap_or_else(|| panic!("{serve_log}"));
    for part in
        ["task=DEMO-001", "status=failed", "input_tokens=1200", "output_tokens=340", "cost=$0.052", "duration_s="]
    {
        assert!(ended.contains(part), "`{part}` missing in `{ended}`");
    }
}

/// The text without ANSI escape sequences (the log writer may colour field names).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            // CSI: ESC [ parameters final-letter.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

// `baton bench` without a terminal reports its progress as plain lines on stderr, one per step,
// with no carriage returns or escape sequences; stdout keeps only the figures.
#[test]
fn bench_progress_is_plain_lines_off_a_terminal() {
    let out = Command::new(baton_exe()).arg("bench").env_remove("BATON_CONFIG").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("bench: ")).collect();
    assert!(progress.len() >= 5, "{stderr}");
    assert!(progress.iter().any(|l| l.contains("1/5")) && progress.last().unwrap().contains("5/5"), "{stderr}");
    assert!(!stderr.contains('\r') && !stderr.contains('\x1b'), "{stderr:?}");
    assert!(stdout.starts_with("OPERATION") && !stdout.contains("bench: "), "{stdout}");
}

// docs/configuration.md documents every key the loader accepts, each in the section of its table
// (the keys come from the loader's own structs and key tables, not a copy).
#[test]
fn configuration_reference_names_every_key() {
    let doc_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    // The doc split at its `## ` headings: (heading, body).
    let sections: Vec<(&str, &str)> =
        doc.split("\n## ").skip(1).map(|part| part.split_once('\n').unwrap_or((part, ""))).collect();
    let keys = baton::config::accepted_keys();
    assert!(keys.len() > 80, "the loader was not asked properly: {keys:?}");
    let mut missing = Vec::new();
    for key in &keys {
        let (section, name) = match key.rsplit_once('.') {
            // `agents.<role>.model`, `pipeline.stages.gates`: the section is the first part.
            Some((section, name)) => (section.split('.').next().unwrap(), name),
            None => (key.as_str(), ""),
        };
        let heading =
            sections.iter().find(|(h, _)| h.contains(&format!("[{section}]")) || h.contains(&format!("[{section}.")));
        let Some((_, body)) = heading else {
            missing.push(format!("{key} (no `## [{section}]` heading)"));
            continue;
        };
        if !name.is_empty() && !body.contains(&format!("`{name}`")) {
            missing.push(key.clone());
        }
    }
    assert!(missing.is_empty(), "{} does not document: {missing:#?}", doc_path.display());
}
