//! Witnesses of the crash test (and of the multi-instance test) that live outside Baton's store:
//! every agent execution, test run, deploy and health check appends a line to its own log under
//! `<root>/witness/`, and the checks here count from those lines — then compare them with what the
//! store says.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Log of agent executions, written by the script agent's `append` action.
pub const AGENTS_LOG: &str = "agents.log";
/// Log of the repository's `test` runs (the development gate and the merge gate's re-test).
pub const TESTS_LOG: &str = "tests.log";
/// Log of `deploy` runs.
pub const DEPLOYS_LOG: &str = "deploys.log";
/// Log of `health` runs (the deploy stage's `deploy_status` gate).
pub const HEALTH_LOG: &str = "health.log";

/// The script agent's witness actions: one before a step's own actions, one after them.
pub const AGENT_START: &str = r#"{ append = { path = "agents.log", content = "start {work_item} {stage} {attempt} {run} {pid} {started_ms} {run_dir}\n" } }"#;
pub const AGENT_END: &str =
    r#"{ append = { path = "agents.log", content = "end {work_item} {stage} {attempt} {run} {pid} {run_dir}\n" } }"#;

/// The repository's `test` command: the project's tests between two witness lines.
pub fn test_script(witness: &Path) -> String {
    format!(
        "#!/bin/sh\n# Crash-test witness: one start and one end line per test run.\n\
         log='{log}'\nhead=$(git rev-parse 'HEAD^{{tree}}')\n\
         echo \"start $head $$ $(date +%s%N) ${{BATON_WORK_ITEM:-none}}\" >> \"$log\"\n\
         python3 -m unittest -q\ncode=$?\n\
         echo \"end $head $$ $(date +%s%N) $code\" >> \"$log\"\nexit $code\n",
        log = witness.join(TESTS_LOG).display()
    )
}

/// The repository's `deploy` command: a second of "deploying" between two witness lines; the start
/// line also says where the default branch was.
pub fn deploy_script(witness: &Path) -> String {
    format!(
        "#!/bin/sh\n# Crash-test witness: one start and one end line per deploy.\n\
         log='{log}'\nhead=$(git rev-parse HEAD)\nmain=$(git rev-parse refs/heads/main)\n\
         echo \"start $head $$ $(date +%s%N) ${{BATON_WORK_ITEM:-none}} $main\" >> \"$log\"\n\
         sleep 1\n\
         echo \"end $head $$ $(date +%s%N)\" >> \"$log\"\n",
        log = witness.join(DEPLOYS_LOG).display()
    )
}

/// The repository's `health` command: always healthy, and says so in its log.
pub fn health_script(witness: &Path) -> String {
    format!(
        "#!/bin/sh\n# Crash-test witness: one line per health check.\n\
         echo \"health $(git rev-parse HEAD) $$ $(date +%s%N)\" >> '{log}'\n",
        log = witness.join(HEALTH_LOG).display()
    )
}

/// One agent execution as the agent itself recorded it.
#[derive(Debug, Clone)]
pub struct AgentExec {
    pub work_item: String,
    pub stage: String,
    pub attempt: u32,
    pub run: u32,
    pub pid: u32,
    pub run_dir: String,
    /// The job, from the run directory's `<stage>-job<id>/run<n>` name.
    pub job: Option<i64>,
    /// Whether it reached its last action.
    pub ended: bool,
}

impl AgentExec {
    fn describe(&self) -> String {
        format!(
            "{} {} attempt {} run {} pid {} ({}) in {}",
            self.work_item,
            self.stage,
            self.attempt,
            self.run,
            self.pid,
            if self.ended { "completed" } else { "no end line" },
            self.run_dir
        )
    }
}

/// One run of a shell command (test or deploy): start and, unless it was killed, end.
#[derive(Debug, Clone)]
pub struct CommandExec {
    pub head: String,
    pub pid: u32,
    pub start_ns: u128,
    pub end_ns: Option<u128>,
    pub code: Option<i32>,
    pub work_item: String,
    /// The default branch when a deploy started.
    pub main_at_start: Option<String>,
}

/// Everything the witness logs say.
#[derive(Debug, Default)]
pub struct Witness {
    pub agents: Vec<AgentExec>,
    pub tests: Vec<CommandExec>,
    pub deploys: Vec<CommandExec>,
    /// (head, time) of each health check.
    pub health: Vec<(String, u128)>,
}

fn lines(dir: &Path, name: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The job id and run number a run directory names (`…/<stage>-job<id>/run<n>`).
pub fn job_and_run(run_dir: &str) -> Option<(i64, u32)> {
    let path = Path::new(run_dir);
    let run = path.file_name()?.to_str()?.strip_prefix("run")?.parse().ok()?;
    let job = path.parent()?.file_name()?.to_str()?.rsplit_once("-job")?.1.parse().ok()?;
    Some((job, run))
}

fn commands(dir: &Path, name: &str) -> Vec<CommandExec> {
    let mut runs: Vec<CommandExec> = Vec::new();
    for fields in lines(dir, name) {
        let field = |i: usize| fields.get(i).cloned().unwrap_or_default();
        match fields.first().map(String::as_str) {
            Some("start") => runs.push(CommandExec {
                head: field(1),
                pid: field(2).parse().unwrap_or(0),
                start_ns: field(3).parse().unwrap_or(0),
                end_ns: None,
                code: None,
                work_item: field(4),
                main_at_start: fields.get(5).cloned(),
            }),
            Some("end") => {
                let (head, pid) = (field(1), field(2).parse().unwrap_or(0));
                if let Some(run) = runs.iter_mut().rev().find(|r| r.pid == pid && r.head == head && r.end_ns.is_none())
                {
                    run.end_ns = field(3).parse().ok();
                    // A deploy's end line has no exit code: it ended, so it succeeded.
                    run.code = Some(fields.get(4).and_then(|c| c.parse().ok()).unwrap_or(0));
                }
            }
            _ => {}
        }
    }
    runs
}

impl Witness {
    pub fn read(dir: &Path) -> Witness {
        let mut agents: Vec<AgentExec> = Vec::new();
        for fields in lines(dir, AGENTS_LOG) {
            let field = |i: usize| fields.get(i).cloned().unwrap_or_default();
            match fields.first().map(String::as_str) {
                Some("start") => {
                    let run_dir = field(7);
                    agents.push(AgentExec {
                        work_item: field(1),
                        stage: field(2),
                        attempt: field(3).parse().unwrap_or(0),
                        run: field(4).parse().unwrap_or(0),
                        pid: field(5).parse().unwrap_or(0),
                        job: job_and_run(&run_dir).map(|(job, _)| job),
                        run_dir,
                        ended: false,
                    });
                }
                Some("end") => {
                    let (pid, run_dir) = (field(5).parse::<u32>().unwrap_or(0), field(6));
                    if let Some(exec) = agents.iter_mut().rev().find(|a| a.pid == pid && a.run_dir == run_dir) {
                        exec.ended = true;
                    }
                }
                _ => {}
            }
        }
        let health = lines(dir, HEALTH_LOG)
            .into_iter()
            .filter(|f| f.len() >= 4)
            .map(|f| (f[1].clone(), f[3].parse().unwrap_or(0)))
            .collect();
        Witness { agents, tests: commands(dir, TESTS_LOG), deploys: commands(dir, DEPLOYS_LOG), health }
    }
}

/// What the store says about one task: `baton task show --json`.
pub struct Detail<'a> {
    pub work_item: &'a str,
    pub value: &'a Value,
}

impl Detail<'_> {
    pub fn jobs(&self) -> &[Value] {
        self.value["jobs"].as_array().map_or(&[], Vec::as_slice)
    }

    pub fn runs(&self) -> &[Value] {
        self.value["agent_runs"].as_array().map_or(&[], Vec::as_slice)
    }
}

/// A broken invariant, with the task it concerns (its timeline goes into the failure message).
#[derive(Debug, Clone)]
pub struct Violation {
    pub task: Option<String>,
    pub text: String,
}

fn violation(task: Option<&str>, text: String) -> Violation {
    Violation { task: task.map(str::to_string), text }
}

/// Counts the witness checks report, for the summary.
#[derive(Debug, Default)]
pub struct Counts {
    pub agent_executions: usize,
    pub agent_completed: usize,
    pub agent_killed_by_test: usize,
    /// Executions that ended early on their own (a failed action: a full disk).
    pub agent_failed: usize,
    /// Executions interrupted by Baton itself (a STOP, or the start-up sweep of an orphan).
    pub agent_interrupted_by_baton: usize,
    pub store_agent_runs: usize,
    pub store_lost_runs: usize,
    pub test_runs: usize,
    pub test_runs_unfinished: usize,
    pub deploys: usize,
    pub health_checks: usize,
    /// How executions that did not complete ended, by the store's account.
    pub unfinished: Vec<String>,
}

/// Agent executions against the store: at most one per (task, stage, run), each one known to the
/// store as the agent run of its run directory (same job, same attempt); at most one per agent run,
/// and a completed one for each run that succeeded; at most one completed execution per job and
/// exactly one per finished agent job; no agent run left open; and no run closed as lost although
/// its agent completed (unless the test killed its group after its last line).
pub fn check_agents(
    witness: &Witness,
    details: &[Detail<'_>],
    killed: &BTreeSet<PathBuf>,
    agent_stages: &[&str],
    counts: &mut Counts,
) -> Vec<Violation> {
    let mut found = Vec::new();
    counts.agent_executions = witness.agents.len();
    counts.agent_completed = witness.agents.iter().filter(|a| a.ended).count();
    counts.agent_killed_by_test = witness.agents.iter().filter(|a| killed.contains(Path::new(&a.run_dir))).count();
    let mut per_run: BTreeMap<(&str, &str, u32), Vec<&AgentExec>> = BTreeMap::new();
    for exec in &witness.agents {
        per_run.entry((&exec.work_item, &exec.stage, exec.run)).or_default().push(exec);
    }
    for ((work_item, stage, run), execs) in &per_run {
        if execs.len() > 1 {
            let list: Vec<String> = execs.iter().map(|e| e.describe()).collect();
            found.push(violation(
                Some(work_item),
                format!("{work_item} {stage} run {run} executed {} times:\n    {}", execs.len(), list.join("\n    ")),
            ));
        }
    }
    let by_item: BTreeMap<&str, &Detail<'_>> = details.iter().map(|d| (d.work_item, d)).collect();
    for exec in &witness.agents {
        let Some(detail) = by_item.get(exec.work_item.as_str()) else {
            found
                .push(violation(None, format!("an agent ran for a task the store does not know: {}", exec.describe())));
            continue;
        };
        let runs: Vec<&Value> =
            detail.runs().iter().filter(|r| r["log_path"].as_str() == Some(&exec.run_dir)).collect();
        if runs.len() != 1 {
            found.push(violation(
                Some(&exec.work_item),
                format!("{} agent run row(s) for the execution {}", runs.len(), exec.describe()),
            ));
            continue;
        }
        let run = runs[0];
        if !exec.ended && !killed.contains(Path::new(&exec.run_dir)) {
            // It ended before its last line: on its own (an exit code) or stopped by Baton.
            if run["exit_code"].is_i64() {
                counts.agent_failed += 1;
            } else {
                counts.agent_interrupted_by_baton += 1;
            }
            let error: String = run["error"].as_str().unwrap_or("").chars().take(120).collect();
            counts.unfinished.push(format!("{}: {} {error}", exec.describe(), run["status"]));
        }
        let job = detail.jobs().iter().find(|j| j["id"].as_i64() == run["job_id"].as_i64());
        let job_attempt = job.and_then(|j| j["attempt"].as_u64());
        if exec.job != run["job_id"].as_i64()
            || job_attempt != Some(u64::from(exec.attempt))
            || run["stage"] != exec.stage
        {
            found.push(violation(
                Some(&exec.work_item),
                format!(
                    "the execution {} does not match its agent run {} (job {}, stage {}, job attempt {:?})",
                    exec.describe(),
                    run["id"],
                    run["job_id"],
                    run["stage"],
                    job_attempt
                ),
            ));
        }
        if run["status"] == "lost" && exec.ended && !killed.contains(Path::new(&exec.run_dir)) {
            found.push(violation(
                Some(&exec.work_item),
                format!("agent run {} was closed as lost although its agent completed: {}", run["id"], exec.describe()),
            ));
        }
    }
    for detail in details {
        for run in detail.runs() {
            counts.store_agent_runs += 1;
            counts.store_lost_runs += usize::from(run["status"] == "lost");
            if run["ended_at_ms"].is_null() || run["status"].is_null() {
                found.push(violation(
                    Some(detail.work_item),
                    format!(
                        "agent run {} (job {}, {}) has no end: status {}, ended_at_ms {}",
                        run["id"], run["job_id"], run["stage"], run["status"], run["ended_at_ms"]
                    ),
                ));
            }
            // A run that succeeded was one completed execution; any run was one execution at most
            // (none when it was stopped or lost before its agent's first line).
            let path = run["log_path"].as_str().unwrap_or("");
            let execs: Vec<&AgentExec> = witness.agents.iter().filter(|a| a.run_dir == path).collect();
            let succeeded = run["status"] == "succeeded";
            if execs.len() > 1 || (succeeded && !(execs.len() == 1 && execs[0].ended)) {
                let list: Vec<String> = execs.iter().map(|e| e.describe()).collect();
                found.push(violation(
                    Some(detail.work_item),
                    format!(
                        "agent run {} (job {}, {}, {}) has {} witnessed executions: {list:?}",
                        run["id"],
                        run["job_id"],
                        run["stage"],
                        run["status"],
                        execs.len()
                    ),
                ));
            }
        }
        for job in detail.jobs() {
            let stage = job["stage"].as_str().unwrap_or("");
            if !agent_stages.contains(&stage) {
                continue;
            }
            let id = job["id"].as_i64();
            let execs: Vec<&AgentExec> = witness.agents.iter().filter(|a| a.job == id).collect();
            let completed: Vec<&&AgentExec> =
                execs.iter().filter(|a| a.ended && !killed.contains(Path::new(&a.run_dir))).collect();
            // A kill sent after an execution's last line may find its process already gone (a
            // no-op): such an execution may be the one that completed a done job.
            let completed_or_killed_after_end = execs.iter().filter(|a| a.ended).count();
            let wanted = if job["status"] == "done" { 1..=1 } else { 0..=1 };
            let done_by_a_killed_one =
                job["status"] == "done" && completed.is_empty() && completed_or_killed_after_end >= 1;
            if !wanted.contains(&completed.len()) && !done_by_a_killed_one {
                let list: Vec<String> = execs.iter().map(|e| e.describe()).collect();
                found.push(violation(
                    Some(detail.work_item),
                    format!(
                        "job {} ({stage} attempt {}, {}) has {} completed agent executions (want {wanted:?}); all:\n    {}",
                        job["id"],
                        job["attempt"],
                        job["status"],
                        completed.len(),
                        list.join("\n    ")
                    ),
                ));
            }
        }
    }
    found
}

/// Deploys and test runs against main: each merged head deployed exactly once, while main was
/// exactly that head, never two deploys at once, every deploy finished and followed by a health
/// check, no deploy of anything not on main; and each merged head re-tested (a passing test run of
/// that very commit) before its deploy started.
/// `merged`: each commit on main after the first, with its tree (a test run is logged by the tree
/// it tested: a merge-queue batch's commit has the tree its last change's build was tested on).
pub fn check_commands(witness: &Witness, merged: &[(String, String)], counts: &mut Counts) -> Vec<Violation> {
    let merged_heads: Vec<String> = merged.iter().map(|(head, _)| head.clone()).collect();
    let trees: std::collections::BTreeMap<&str, &str> =
        merged.iter().map(|(head, tree)| (head.as_str(), tree.as_str())).collect();
    let mut found = Vec::new();
    counts.test_runs = witness.tests.len();
    counts.test_runs_unfinished = witness.tests.iter().filter(|t| t.end_ns.is_none()).count();
    counts.deploys = witness.deploys.len();
    counts.health_checks = witness.health.len();
    let merged: BTreeSet<&str> = merged_heads.iter().map(String::as_str).collect();
    for head in &merged_heads {
        let deploys: Vec<&CommandExec> = witness.deploys.iter().filter(|d| &d.head == head).collect();
        if deploys.len() != 1 {
            found.push(violation(
                deploys.first().map(|d| d.work_item.as_str()),
                format!("merged head {head} was deployed {} times: {deploys:?}", deploys.len()),
            ));
        }
        let Some(deploy) = deploys.first() else { continue };
        let retested = witness.tests.iter().any(|t| {
            Some(t.head.as_str()) == trees.get(head.as_str()).copied()
                && t.code == Some(0)
                && t.end_ns.is_some_and(|end| end <= deploy.start_ns)
        });
        if !retested {
            found.push(violation(
                Some(&deploy.work_item),
                format!("merged head {head} was deployed without a passing test run of its tree before it"),
            ));
        }
        if deploy.main_at_start.as_deref() != Some(head.as_str()) {
            found.push(violation(
                Some(&deploy.work_item),
                format!("the deploy of {head} started while main was at {:?}", deploy.main_at_start),
            ));
        }
        match deploy.end_ns {
            None => found.push(violation(Some(&deploy.work_item), format!("the deploy of {head} never finished"))),
            Some(end) => {
                if !witness.health.iter().any(|(h, at)| h == head && *at >= end) {
                    found.push(violation(
                        Some(&deploy.work_item),
                        format!("no health check of {head} after its deploy"),
                    ));
                }
            }
        }
    }
    for deploy in &witness.deploys {
        if !merged.contains(deploy.head.as_str()) {
            found.push(violation(
                Some(&deploy.work_item),
                format!("deployed {} which is not a commit on main: {deploy:?}", deploy.head),
            ));
        }
    }
    let mut spans: Vec<(u128, u128, &CommandExec)> =
        witness.deploys.iter().map(|d| (d.start_ns, d.end_ns.unwrap_or(u128::MAX), d)).collect();
    spans.sort_by_key(|(start, _, _)| *start);
    for pair in spans.windows(2) {
        let ((_, end, first), (start, _, second)) = (pair[0], pair[1]);
        if start < end {
            found.push(violation(
                Some(&second.work_item),
                format!(
                    "two deploys overlapped: {} ({}, pid {}) and {} ({}, pid {})",
                    first.head, first.work_item, first.pid, second.head, second.work_item, second.pid
                ),
            ));
        }
    }
    found
}
