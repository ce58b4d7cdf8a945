//! The commented `baton.toml` that `baton init` writes: every section explained, the limits with
//! their defaults, and the default pipeline in the short forms the loader accepts.

use super::DEFAULT_LISTEN;
use super::sections::limits_table;
use baton_domain::pipeline::{Actor, GateSpec, OnGateFail, Pipeline};
use baton_engine::Limits;
use toml::Value;

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
# merge_batch = 4   # test up to 4 waiting changes as one in the merge queue (default 1: each alone)
# monitor_window_secs = 600   # watch `health` this long after a deploy (default 0: one check)
# monitor_interval_secs = 30   # seconds between post-deploy health checks
# monitor_failures = 3         # failed checks in a row that make a deploy DEGRADED (freeze + incident)
# revert_on_degraded = false   # revert a DEGRADED deploy's commit through the merge gate
# revert_confirm = false       # whether that revert still waits for Confirm Deploy
# serial = true     # one task at a time, in id order, each branched from its predecessor's main
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
# max_retries = 2                        # the CLI's own retries of a 429 before Baton's quota logic

# Spending caps in USD (none by default); `baton budget set` overrides them at runtime.
# [budgets]
# task_usd = 5.0
# repo_daily_usd = 50.0
# global_daily_usd = 200.0
# warn_ratio = 0.8                       # one alert per scope and day at 80 % of a cap

# How long old history is kept: hourly, the chatter of tasks that ended more than `days` ago goes
# (their summary — stages, gates, who decided — and all spend stay), with their run logs.
# [retention]
# days = 90                              # 0 keeps everything
# batch = 500                            # rows of each kind deleted per batch

# The retro (off by default): after a change shipped, an agent reads its hand-off and proposes
# lessons and next tasks; a person accepts them (`baton lessons accept`, `baton proposals accept`).
# [retro]
# enabled = true
# agent = \"developer\"                    # default: [agents.retro], else the developer's entry
# max_proposals = 5

# Signed webhooks (docs/webhooks.md): each secret turns on POST /webhooks/<source>. Keep the
# secrets in the environment.
# [webhooks]
# github_secret = \"${GITHUB_WEBHOOK_SECRET}\"
# gitea_secret = \"${GITEA_WEBHOOK_SECRET}\"
# plane_secret = \"${PLANE_WEBHOOK_SECRET}\"
";

const TEMPLATE_PIPELINE_HEAD: &str = "\
# The pipeline. Without [pipeline] Baton uses the default below; a [pipeline] section replaces it
# entirely. Uncomment to change it. A repository may run its own pipeline instead: define it as
# [pipelines.<name>] (same keys) and set `pipeline = \"<name>\"` in its [[repos]] entry. An agent
# stage may set its own agent, adapter, model, prompt_template, timeout_secs, stall_timeout_secs
# and budget_usd (docs/configuration.md).
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
    ("merge_defer_secs", "delay before a deferred gate (CI pending) is retried"),
    ("merge_defer_max", "deferrals of one stage before the task is blocked"),
    ("merge_queue_depth", "merge-queue changes tested at once, each on top of the ones ahead"),
    ("merge_queue_depth_max", "deepest the adaptive speculation grows after green results"),
    ("reaper_interval_secs", "how often the reaper looks for orphaned jobs (0 = off)"),
    ("job_backstop_secs", "a job running longer is stopped and failed"),
    ("reconciler_interval_secs", "how often finished but unapplied jobs are looked for"),
    ("reconcile_grace_secs", "idle time before the reconciler acts on a task"),
    ("heartbeat_secs", "how often a running server records that it is alive"),
    ("instance_grace_secs", "a server silent this long is dead: another one requeues its jobs"),
    ("title_chars_max", "longest task title, in characters"),
    ("body_bytes_max", "largest task body, in bytes (files are read only this far)"),
    ("answer_bytes_max", "largest human answer, in bytes"),
    ("external_ref_bytes_max", "longest tracker reference, in bytes"),
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
