//! The SPEC §4 invariants, checked after every simulated step, and the final "settled" check.
//!
//! Reads the store directly (no faults) plus what the simulator saw the engine answer.

use crate::ports::{AGENT_PROGRAM, DEPLOY_PROGRAM, Execution};
use crate::store::{SimStore, State};
use baton_domain::{Hold, JobId, TaskId, TaskState};
use baton_store::{JobStatus, TaskRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Stages during which a task may hold its repository's merge lease (SPEC §6.3).
pub const LEASE_STAGES: &[&str] = &["deploy_staging", "deploy"];

/// Which invariant a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// §4.2: a task's version moves by exactly one per committed transition, and only from the
    /// version the transition was decided on.
    VersionStep,
    /// §4.2/§4.5: a job finished twice, a job result or a dedup key applied twice.
    DoubleAdvance,
    /// §4.5: an input's dedup key was recorded, but the input was neither applied nor suppressed
    /// (a replay would be dropped as a duplicate of something that never happened).
    LostInput,
    /// §4.6: after a restart's recovery, a job is `running` with no executor to finish it.
    ZombieJob,
    /// The reaper re-adopted (and re-ran) a job whose executor was applying its result (fixed: the
    /// executor leaves `running` only after `apply_event`): the stage runs twice.
    AdoptedWhileDelivering,
    /// §4.6: a task vanished, or is neither terminal, waiting, nor backed by exactly one job.
    LostTask,
    /// §4.3: a done or cancelled task changed.
    TerminalMoved,
    /// §6.3: a lease kept by a task that left deploy_staging/deploy.
    LeaseNotReleased,
    /// §6.3: a live lease held by a task that is not at deploy_staging/deploy.
    LeaseHolder,
    /// Known engine bug (see [`Kind::is_known_engine_bug`]): a lease was (re-)taken for a task
    /// after it left (a stale deploy, the reaper's renewal racing a release, a failed release).
    StaleLease,
    /// A blocked task at deploy_staging/deploy still holds the merge lease after draining (fixed:
    /// the reaper no longer renews the lease of a blocked or paused task).
    BlockedTaskKeepsLease,
    /// §4.7: main moved to a head not retested on it, or without the merge lease.
    MainSacred,
    /// Main moved for a task that is no longer deploying (fixed: a STOP racing the deploy claim
    /// re-decides, and deploy re-checks its task before merging).
    MergeForInactiveTask,
    /// Main moved to a head a stale merge-gate run squashed and never passed (fixed: deploy merges
    /// only the head of the last passing merge gate).
    StaleGateHeadMerged,
    /// §4.6: after draining, a task is neither terminal nor waiting for a human.
    NotSettled,
    /// §12: a task ended `cancelled` while a default branch holds its change (its own merge, or a
    /// merge-queue batch's commit that carries it): shipped code is never called cancelled.
    ShippedCancelled,
    /// §13/§15: more jobs ran than the global running limit or a repository's limit allow (judged
    /// as each claim commits, from the store's rows).
    LimitExceeded,
    /// §6.3: a lease was granted to a second holder while the first holder's grant was live (two
    /// holders believe they hold it; judged as the grant commits).
    DoubleLease,
    /// §4.6: a second agent ran for one job (one stage attempt) while the first was running or
    /// had left its exit record (witnessed by the simulated processes, not the store).
    DuplicateAgent,
    /// §4.6: a head was deployed while another deploy of it ran, or after one of it succeeded.
    DuplicateDeploy,
    /// §8: an agent run was closed as `lost` while its agent was still running and not out of
    /// reach — not started by an instance before it was declared dead (witnessed by the simulated
    /// processes: the run's own execution, in its run directory).
    LostWhileRunning,
    /// §4.7: the default branch moved while a deploy of one of its earlier commits ran (that
    /// deploy no longer runs on the branch's head, and may take the target back behind it).
    MovedUnderDeploy,
    /// §6.4: a job of a task started after the task was declared to wait for another, while that
    /// other was not done.
    DependencyIgnored,
    /// After draining: a done or cancelled task kept its worktree, a cancelled task its branch,
    /// or an agent run of an ended job was never closed.
    LeftBehind,
    /// §6.4: main moved while its repository was frozen, for a task other than a revert of a
    /// degraded deploy — the one the freeze names, or that of another deploy that degraded while
    /// frozen (checked by the forge at the moment main moves, against the open freeze row).
    FrozenMerge,
    /// §6.4: a degraded deploy got more than one incident task, or more than one revert task
    /// (counted from the tasks themselves, not from the timeline links that name them).
    DuplicateIncident,
    /// §6.4: after draining, a degraded task of a repository that reverts has no revert that
    /// landed and took its change off main — and the revert is not blocked or stopped (waiting for
    /// a human, who sees why), nor alerted as impossible.
    NotReverted,
    /// §6.4: after draining, a task is blocked at a stage before its deploy while a default branch
    /// holds its change (a change of a merge-queue batch blocked or sent back while its batch was
    /// landing): shipped code is never held back.
    ShippedHeldBack,
}

impl Kind {
    /// Violations that the engine is known to commit today (see the crate docs and the
    /// regression tests named after them); a sweep may count them instead of failing.
    pub fn is_known_engine_bug(self) -> bool {
        // None today: the sweep tolerates no kind.
        false
    }
}

/// One broken invariant, with a sentence saying what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: Kind,
    pub message: String,
}

impl Violation {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Violation { kind, message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// What the simulator saw the engine answer, for the checks the store cannot see.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Tasks whose creation the engine acknowledged.
    pub created: Vec<TaskId>,
    /// `Applied` answers per finished job.
    pub applied_jobs: BTreeMap<JobId, u32>,
    /// `Applied` or `Suppressed` answers per dedup key (a replay must say `Duplicate`).
    pub decided_keys: BTreeMap<String, u32>,
}

/// Incremental checker: remembers what it has already verified.
#[derive(Debug, Default)]
pub struct Checker {
    commits_seen: usize,
    commits_per_task: BTreeMap<TaskId, i64>,
    finished_jobs: BTreeSet<JobId>,
    committed_keys: BTreeSet<String>,
    terminal: BTreeMap<TaskId, (String, i64)>,
    stale_leases_seen: BTreeSet<(String, i64)>,
    /// (job, start time) pairs already judged against the task's dependencies.
    starts_seen: BTreeSet<(JobId, i64)>,
    /// Limit breaches and double lease grants already reported.
    breaches_seen: usize,
    double_grants_seen: usize,
    /// Agent runs closed as lost, each judged once: right after the step that closed it.
    lost_runs_judged: BTreeSet<i64>,
    pub checks: u64,
}

fn is_waiting_for_human(hold: &Hold) -> bool {
    matches!(
        hold,
        Hold::Blocked { .. }
            | Hold::AwaitingApproval
            | Hold::AwaitingConfirm
            | Hold::NeedsInput { .. }
            | Hold::PausedBudget { .. }
    )
}

fn holds_lease_legitimately(state: &TaskState) -> bool {
    !state.is_terminal() && LEASE_STAGES.contains(&state.stage.as_str()) && !matches!(state.hold, Hold::Blocked { .. })
}

impl Checker {
    /// Checks every invariant against the store's current state; returns all violations found.
    pub fn check(&mut self, store: &SimStore, ledger: &Ledger, now_ms: i64) -> Vec<Violation> {
        self.checks += 1;
        let mut found = Vec::new();
        store.peek(|state| {
            self.check_commits(state, &mut found);
            self.check_tasks(state, ledger, &mut found);
            self.check_leases(state, now_ms, &mut found);
            self.check_dependencies(state, &mut found);
            self.check_exclusion(state, &mut found);
            check_incidents(state, &mut found);
        });
        for (job, applied) in &ledger.applied_jobs {
            if *applied > 1 {
                found.push(Violation::new(
                    Kind::DoubleAdvance,
                    format!("the result of job {job} was applied {applied} times"),
                ));
            }
        }
        for (key, decided) in &ledger.decided_keys {
            if *decided > 1 {
                found.push(Violation::new(
                    Kind::DoubleAdvance,
                    format!("input `{key}` was decided {decided} times (a replay must be a duplicate)"),
                ));
            }
        }
        found
    }

    /// A dependent's job never starts before its dependency is done: each job start is judged at
    /// the first check after it (checks follow every step, and done is final, so a dependency not
    /// done now was not done when the job started). A job started before the declaration is fine.
    fn check_dependencies(&mut self, state: &State, found: &mut Vec<Violation>) {
        if state.dependencies.is_empty() {
            return;
        }
        for job in state.jobs.values() {
            let Some(started) = job.started_at_ms else { continue };
            if !self.starts_seen.insert((job.id, started)) {
                continue;
            }
            let waits = state.dependencies.range((job.task_id, TaskId(i64::MIN))..=(job.task_id, TaskId(i64::MAX)));
            for ((_, on), (declared_at, _)) in waits {
                let on_stage = state.tasks.get(on).map_or("missing", |t| t.state.stage.as_str());
                if started > *declared_at && on_stage != baton_domain::pipeline::DONE {
                    found.push(Violation::new(
                        Kind::DependencyIgnored,
                        format!(
                            "job {} ({}) of task {} started at {started} though the task waits (since {declared_at}) \
                             for task {on}, which is {on_stage}",
                            job.id, job.stage, job.task_id
                        ),
                    ));
                }
            }
        }
    }

    fn check_commits(&mut self, state: &State, found: &mut Vec<Violation>) {
        for commit in state.commits.iter().skip(self.commits_seen) {
            if commit.expected_version != commit.version_before {
                found.push(Violation::new(
                    Kind::VersionStep,
                    format!(
                        "task {} committed `{}` decided on version {} over version {} (lost compare-and-set applied)",
                        commit.task, commit.kind, commit.expected_version, commit.version_before
                    ),
                ));
            }
            if commit.version_after != commit.version_before + 1 {
                found.push(Violation::new(
                    Kind::VersionStep,
                    format!("task {} version {} → {}", commit.task, commit.version_before, commit.version_after),
                ));
            }
            if commit.stage_before == "done" || commit.stage_before == "cancelled" {
                found.push(Violation::new(
                    Kind::TerminalMoved,
                    format!(
                        "task {} at {} took `{}` to {}",
                        commit.task, commit.stage_before, commit.kind, commit.stage_after
                    ),
                ));
            }
            if let Some(job) = commit.finish_job
                && !self.finished_jobs.insert(job)
            {
                found.push(Violation::new(
                    Kind::DoubleAdvance,
                    format!("job {job} of task {} finished a transition twice", commit.task),
                ));
            }
            let left = LEASE_STAGES.contains(&commit.stage_before.as_str())
                && (!LEASE_STAGES.contains(&commit.stage_after.as_str()) || commit.hold_after == "blocked");
            if left && commit.holds_lease_after {
                found.push(Violation::new(
                    Kind::LeaseNotReleased,
                    format!(
                        "task {} went {} → {} ({}) by `{}` but kept its merge lease",
                        commit.task, commit.stage_before, commit.stage_after, commit.hold_after, commit.kind
                    ),
                ));
            }
            if let Some(key) = &commit.inbox_key {
                self.committed_keys.insert(key.clone());
            }
            *self.commits_per_task.entry(commit.task).or_insert(0) += 1;
        }
        self.commits_seen = state.commits.len();
        for key in state.inbox.keys() {
            if !self.committed_keys.contains(key) && !state.keys_without_commit.contains(key) {
                found.push(Violation::new(
                    Kind::LostInput,
                    format!("input `{key}` is marked as seen, but nothing applied or suppressed it"),
                ));
            }
        }
        for (job, endings) in &state.job_endings {
            if *endings > 1 {
                found.push(Violation::new(Kind::DoubleAdvance, format!("job {job} ended {endings} times")));
            }
        }
    }

    fn check_tasks(&mut self, state: &State, ledger: &Ledger, found: &mut Vec<Violation>) {
        for id in &ledger.created {
            if !state.tasks.contains_key(id) {
                found.push(Violation::new(Kind::LostTask, format!("task {id} was created but is gone")));
            }
        }
        let mut refs = BTreeSet::new();
        for task in state.tasks.values() {
            if let Some(external) = &task.external_ref
                && !refs.insert(external.clone())
            {
                found.push(Violation::new(Kind::DoubleAdvance, format!("ticket {external} has two live tasks")));
            }
            if task.state.stage == "cancelled" && task.external_ref.is_some() {
                found.push(Violation::new(
                    Kind::LostTask,
                    format!("cancelled task {} still holds its ticket id", task.id),
                ));
            }
            let commits = self.commits_per_task.get(&task.id).copied().unwrap_or(0);
            let claims = state.claim_bumps.get(&task.id).copied().unwrap_or(0);
            if task.version != 1 + commits + claims {
                found.push(Violation::new(
                    Kind::VersionStep,
                    format!(
                        "task {} is at version {} after {commits} transitions and {claims} claims",
                        task.id, task.version
                    ),
                ));
            }
            if let Some((stage, version)) = self.terminal.get(&task.id) {
                if &task.state.stage != stage || task.version != *version {
                    found.push(Violation::new(
                        Kind::TerminalMoved,
                        format!(
                            "task {} was {stage} at version {version}, now {} at version {}",
                            task.id,
                            task.state.display(),
                            task.version
                        ),
                    ));
                }
            } else if task.state.is_terminal() {
                self.terminal.insert(task.id, (task.state.stage.clone(), task.version));
            }
            if let Some(problem) = job_problem(state, task) {
                found.push(Violation::new(
                    Kind::LostTask,
                    format!("task {} ({}): {problem}", task.id, task.state.display()),
                ));
            }
        }
    }

    /// What the claim lock and the lease locks exclude: running past a limit, two lease holders.
    fn check_exclusion(&mut self, state: &State, found: &mut Vec<Violation>) {
        for breach in state.limit_breaches.iter().skip(self.breaches_seen) {
            found.push(Violation::new(Kind::LimitExceeded, breach.clone()));
        }
        self.breaches_seen = state.limit_breaches.len();
        for grant in state.double_grants.iter().skip(self.double_grants_seen) {
            found.push(Violation::new(Kind::DoubleLease, grant.clone()));
        }
        self.double_grants_seen = state.double_grants.len();
    }

    fn check_leases(&mut self, state: &State, now_ms: i64, found: &mut Vec<Violation>) {
        for lease in state.leases.values() {
            if lease.expires_at_ms <= now_ms {
                continue;
            }
            let task = lease
                .holder
                .strip_prefix("task:")
                .and_then(|id| id.parse::<i64>().ok())
                .and_then(|id| state.tasks.get(&TaskId(id)));
            let Some(task) = task else {
                found.push(Violation::new(
                    Kind::LeaseHolder,
                    format!("lease {} held by unknown {}", lease.name, lease.holder),
                ));
                continue;
            };
            if lease.name != format!("merge:{}", task.repo) {
                found.push(Violation::new(
                    Kind::LeaseHolder,
                    format!("task {} of {} holds {}", task.id, task.repo, lease.name),
                ));
            }
            let key = (lease.name.clone(), lease.token);
            if holds_lease_legitimately(&task.state) || self.stale_leases_seen.contains(&key) {
                continue;
            }
            if lease.acquired_at_ms >= task.updated_at_ms {
                // Taken after the task's last transition: a stale actor, not a missed release.
                if self.stale_leases_seen.insert(key) {
                    found.push(Violation::new(
                        Kind::StaleLease,
                        format!(
                            "{} (token {}) was taken by task {} after it became {}; held until its TTL",
                            lease.name,
                            lease.token,
                            task.id,
                            task.state.display()
                        ),
                    ));
                }
            } else {
                found.push(Violation::new(
                    Kind::LeaseHolder,
                    format!("{} is held by task {}, which is {}", lease.name, task.id, task.state.display()),
                ));
            }
        }
    }

    /// Right after a restart whose recovery succeeded: every running job has an executor here.
    /// What the simulated processes witnessed: at most one agent per job unless the earlier one
    /// vanished without an exit record or its job was taken over from the instance that started
    /// it, declared dead (`taken_over`: when, each time; then the stage runs afresh elsewhere),
    /// and each head deployed by one deploy at a time and never again after one succeeded.
    pub fn check_executions(
        &self,
        executions: &[Execution],
        forge: &crate::forge::SimForge,
        taken_over: &BTreeMap<JobId, Vec<i64>>,
    ) -> Vec<Violation> {
        let mut found = Vec::new();
        // Nothing lands on top of a commit while its deploy runs: a deploy runs under the merge
        // lease, a batch's members (deploying its one commit) behind queue entries that hold later
        // changes back, and no change merges while another's deploy job runs (which also holds
        // where the lease expired under a Baton frozen past its TTL).
        let moves = forge.main_moves();
        for deploy in executions.iter().filter(|e| e.program == DEPLOY_PROGRAM) {
            let Some(head) = deploy.head.as_deref() else { continue };
            let Some((repo, _, _)) = moves.iter().find(|(_, moved_to, _)| moved_to == head) else { continue };
            let during = |at: i64| at > deploy.started_ms && deploy.ended_ms.is_none_or(|end| at < end);
            for (_, moved_to, at) in moves.iter().filter(|(r, to, at)| r == repo && to != head && during(*at)) {
                found.push(Violation::new(
                    Kind::MovedUnderDeploy,
                    format!(
                        "{repo} main moved to {moved_to} at {at} ms while the deploy of {head} (job {:?}, from {} ms) ran",
                        deploy.job, deploy.started_ms
                    ),
                ));
            }
        }
        let mut agents: BTreeMap<JobId, Vec<&Execution>> = BTreeMap::new();
        let mut deploys: BTreeMap<&str, Vec<&Execution>> = BTreeMap::new();
        for execution in executions {
            if execution.program == AGENT_PROGRAM
                && let Some(job) = execution.job
            {
                agents.entry(job).or_default().push(execution);
            }
            if execution.program == DEPLOY_PROGRAM
                && let Some(head) = execution.head.as_deref()
            {
                deploys.entry(head).or_default().push(execution);
            }
        }
        for (job, runs) in agents {
            for pair in runs.windows(2) {
                let (earlier, later) = (pair[0], pair[1]);
                let ended_before = earlier.ended_ms.is_some_and(|end| end <= later.started_ms);
                // Taken over from an instance declared dead: the stage runs again wherever the job
                // is claimed next, which cannot know of the agent the silent instance started on
                // its own machine — before the take-over, or (on another instance) after it, the
                // silent one running on unaware until its loop stopped it.
                let rerun_after_take_over = taken_over.get(&job).is_some_and(|times| {
                    times.iter().any(|at| {
                        *at <= later.started_ms && (*at >= earlier.started_ms || earlier.instance != later.instance)
                    })
                });
                if !(rerun_after_take_over || ended_before && earlier.vanished) {
                    found.push(Violation::new(
                        Kind::DuplicateAgent,
                        format!(
                            "job {job} started a second agent at {} ms ({}) while its first ({}) {}",
                            later.started_ms,
                            later.run_dir.display(),
                            earlier.run_dir.display(),
                            if earlier.ended_ms.is_none() { "was still running" } else { "had recorded its exit" }
                        ),
                    ));
                }
            }
        }
        for (head, runs) in deploys {
            for pair in runs.windows(2) {
                let (earlier, later) = (pair[0], pair[1]);
                let overlapping = earlier.ended_ms.is_none_or(|end| end > later.started_ms);
                // A job deploys a head once; only a new job (a human's retry) may deploy it again,
                // and only after the earlier deploy failed.
                let same_job = earlier.job == later.job;
                if overlapping || same_job || earlier.succeeded == Some(true) {
                    found.push(Violation::new(
                        Kind::DuplicateDeploy,
                        format!(
                            "{head} deployed again at {} ms (job {:?}) while an earlier deploy (job {:?}) {}",
                            later.started_ms,
                            later.job,
                            earlier.job,
                            if overlapping {
                                "was still running"
                            } else if same_job {
                                "was the same job's"
                            } else {
                                "had succeeded"
                            }
                        ),
                    ));
                }
            }
        }
        found
    }

    /// Every agent run closed as `lost` (by a take-over, a restart's recovery or the reaper) had
    /// no agent running at that moment in its run directory, unless that agent was out of reach:
    /// started before a take-over of its job (an instance declared dead), or by the instance that
    /// is `frozen` (stopped where it was: what it started runs on until it wakes and finds its
    /// claims gone). An agent whose Baton was killed is an orphan the living instances answer for.
    /// Judged right after the step that closed the run, once. Catches a close that labels the
    /// fresh run of the job's next claim, and a job ended with the agent it adopted left running.
    pub fn check_lost_runs(
        &mut self,
        store: &SimStore,
        executions: &[Execution],
        taken_over: &BTreeMap<JobId, Vec<i64>>,
        frozen: Option<&str>,
    ) -> Vec<Violation> {
        let judged = &mut self.lost_runs_judged;
        let lost: Vec<baton_store::AgentRunRecord> = store.peek(|state| {
            state
                .agent_runs
                .iter()
                .filter(|r| r.status.as_deref() == Some("lost") && judged.insert(r.id))
                .cloned()
                .collect()
        });
        if lost.is_empty() {
            return Vec::new();
        }
        // Indexed only when a run was newly closed as lost (rarely): not at every step.
        let by_dir: BTreeMap<&std::path::Path, &Execution> =
            executions.iter().map(|e| (e.run_dir.as_path(), e)).collect();
        lost.iter()
            .filter_map(|run| {
                let closed = run.ended_at_ms?;
                let agent = by_dir.get(std::path::Path::new(&run.log_path))?;
                let running = agent.started_ms <= closed && agent.ended_ms.is_none_or(|end| end > closed);
                let out_of_reach = frozen == Some(agent.instance.as_str())
                    || taken_over
                        .get(&run.job_id)
                        .is_some_and(|times| times.iter().any(|at| agent.started_ms <= *at && *at <= closed));
                (running && !out_of_reach).then(|| {
                    Violation::new(
                        Kind::LostWhileRunning,
                        format!(
                            "agent run {} of job {} was closed as lost at {closed} ms while its agent (started at \
                                 {} ms by {}) ran on: {}",
                            run.id,
                            run.job_id,
                            agent.started_ms,
                            agent.instance,
                            run.error.as_deref().unwrap_or("no reason")
                        ),
                    )
                })
            })
            .collect()
    }

    /// After draining: no agent run of a job that is no longer running is left open.
    pub fn check_runs_closed(&self, store: &SimStore) -> Vec<Violation> {
        store.peek(|state| {
            state
                .agent_runs
                .iter()
                .filter(|r| r.ended_at_ms.is_none())
                .filter(|r| state.jobs.get(&r.job_id).is_none_or(|j| j.status != JobStatus::Running))
                .map(|r| {
                    Violation::new(Kind::LeftBehind, format!("agent run {} of job {} was never closed", r.id, r.job_id))
                })
                .collect()
        })
    }

    pub fn check_no_zombies(&self, store: &SimStore, watched: &[JobId]) -> Vec<Violation> {
        store.peek(|state| {
            state
                .jobs
                .values()
                .filter(|j| j.status == JobStatus::Running && !watched.contains(&j.id))
                .map(|j| {
                    Violation::new(
                        Kind::ZombieJob,
                        format!(
                            "job {} ({}) of task {} is running with no executor after recovery",
                            j.id, j.stage, j.task_id
                        ),
                    )
                })
                .collect()
        })
    }

    /// After draining: every task is terminal or waiting for a human, and no lease is held by a
    /// task that should not hold it (the reaper reclaims those).
    pub fn check_settled(&self, store: &SimStore) -> Vec<Violation> {
        let mut found = Vec::new();
        store.peek(|state| {
            for task in state.tasks.values() {
                // A change waiting in a frozen repository's merge queue waits for a human's unfreeze.
                let frozen_out = task.state.hold == Hold::MergeQueue && state.open_freeze(&task.repo).is_some();
                if !task.state.is_terminal()
                    && !is_waiting_for_human(&task.state.hold)
                    && !waits_for_live_task(state, task)
                    && !frozen_out
                {
                    let jobs: Vec<String> = state
                        .jobs
                        .values()
                        .filter(|j| j.task_id == task.id && matches!(j.status, JobStatus::Queued | JobStatus::Running))
                        .map(|j| format!("job {} {} {:?} owner {:?}", j.id, j.stage, j.status, j.owner))
                        .collect();
                    let queued = state.queue.get(&task.id).map_or(String::new(), |e| {
                        format!(
                            "; queue entry {} base {:?} head {:?} batch {:?} split {:?} fails {}",
                            e.state.as_str(),
                            e.base,
                            e.head,
                            e.batch,
                            e.split,
                            e.fails
                        )
                    });
                    let running: Vec<String> = state
                        .jobs
                        .values()
                        .filter(|j| j.status == JobStatus::Running)
                        .map(|j| format!("job {} of task {} ({})", j.id, j.task_id, j.repo))
                        .collect();
                    found.push(Violation::new(
                        Kind::NotSettled,
                        format!(
                            "task {} is {} after draining; active: [{}]{queued}; running anywhere: [{}]",
                            task.id,
                            task.state.display(),
                            jobs.join(", "),
                            running.join(", ")
                        ),
                    ));
                }
            }
            for lease in state.leases.values() {
                let holder = lease.holder.strip_prefix("task:").and_then(|id| id.parse::<i64>().ok());
                let task = holder.and_then(|id| state.tasks.get(&TaskId(id)));
                if !task.is_some_and(|t| holds_lease_legitimately(&t.state)) {
                    // The reaper used to renew leases of blocked tasks at the merge stages.
                    let blocked_at_merge = task.is_some_and(|t| {
                        matches!(t.state.hold, Hold::Blocked { .. }) && LEASE_STAGES.contains(&t.state.stage.as_str())
                    });
                    let kind = if blocked_at_merge { Kind::BlockedTaskKeepsLease } else { Kind::LeaseHolder };
                    found.push(Violation::new(
                        kind,
                        format!(
                            "after draining, {} is still held by {} ({})",
                            lease.name,
                            lease.holder,
                            task.map_or("unknown".into(), |t| t.state.display())
                        ),
                    ));
                }
            }
        });
        found
    }
}

/// The title an incident task of the degraded task `work_item` starts with.
fn incident_title(work_item: &str) -> String {
    format!("Incident: {work_item} degraded ")
}

/// The title a revert task of the degraded task `work_item` starts with.
fn revert_title(work_item: &str) -> String {
    format!("Revert {work_item}: ")
}

/// At most one incident and one revert per degraded task, whatever crashes happened: counted from
/// the tasks that exist (their titles name the task), independently of the links the engine wrote.
fn check_incidents(state: &State, found: &mut Vec<Violation>) {
    let mut filed: BTreeMap<(&str, &str), Vec<TaskId>> = BTreeMap::new();
    for task in state.tasks.values() {
        for (what, prefix) in [("incident", "Incident: "), ("revert", "Revert ")] {
            let Some(rest) = task.title.strip_prefix(prefix) else { continue };
            let of = state
                .tasks
                .values()
                .map(|t| t.work_item_id.as_str())
                .find(|wi| rest.starts_with(&format!("{wi} degraded ")) || rest.starts_with(&format!("{wi}: ")));
            if let Some(of) = of {
                filed.entry((of, what)).or_default().push(task.id);
            }
        }
    }
    for ((of, what), tasks) in filed {
        if tasks.len() > 1 {
            let ids: Vec<String> = tasks.iter().map(ToString::to_string).collect();
            found.push(Violation::new(
                Kind::DuplicateIncident,
                format!("the degraded deploy of {of} got {} {what} tasks: {}", tasks.len(), ids.join(", ")),
            ));
        }
    }
}

/// A degraded task, its reverts, its merged head, whether a `revert_failed` alert was raised, and
/// what its repository's freeze and the reverts' queue entries look like (for the message).
type Degraded = (TaskRecord, Vec<TaskRecord>, Option<String>, bool, String);

/// After draining: each degraded task of a repository in `revert_repos` ends with its revert done
/// and main carrying that revert after the degraded head; or with its revert blocked or stopped
/// (waiting for a human, who is told why); or with a `revert_failed` alert on its timeline (no
/// merged change to revert, or the revert could not be made).
pub fn check_reverted(store: &SimStore, forge: &crate::forge::SimForge, revert_repos: &[String]) -> Vec<Violation> {
    let mut found = Vec::new();
    let degraded: Vec<Degraded> = store.peek(|state| {
        state
            .tasks
            .values()
            .filter(|t| revert_repos.contains(&t.repo))
            .filter(|t| state.tasks.values().any(|i| i.title.starts_with(&incident_title(&t.work_item_id))))
            .map(|t| {
                let reverts: Vec<TaskRecord> = state
                    .tasks
                    .values()
                    .filter(|r| r.title.starts_with(&revert_title(&t.work_item_id)))
                    .cloned()
                    .collect();
                let events = state.events.iter().filter(|e| e.task_id == t.id);
                let head = events
                    .clone()
                    .filter(|e| e.kind == "merged")
                    .find_map(|e| e.detail.get("head").and_then(|h| h.as_str()).map(str::to_string));
                let alerted = events.clone().any(|e| e.kind == "revert_failed");
                let mut freeze =
                    state.open_freeze(&t.repo).map(|f| format!("; {} frozen, its revert {:?}", t.repo, f.revert));
                for revert in &reverts {
                    if let Some(e) = state.queue.get(&revert.id) {
                        let entry = format!(
                            "; queue entry of {}: {} base {:?} head {:?} reason {:?}",
                            revert.id,
                            e.state.as_str(),
                            e.base,
                            e.head,
                            e.reason
                        );
                        freeze.get_or_insert_with(String::new).push_str(&entry);
                    }
                }
                (t.clone(), reverts, head, alerted, freeze.unwrap_or_default())
            })
            .collect()
    });
    for (task, reverts, head, alerted, freeze) in degraded {
        if alerted {
            continue;
        }
        let Some(revert) = reverts.first() else {
            found.push(Violation::new(
                Kind::NotReverted,
                format!(
                    "task {} ({}) degraded, but no revert was filed and no alert says why",
                    task.id, task.work_item_id
                ),
            ));
            continue;
        };
        let waits_for_human = matches!(revert.state.hold, Hold::Blocked { .. })
            || revert.state.stage == baton_domain::pipeline::CANCELLED;
        if waits_for_human {
            continue;
        }
        let reverted = head.as_deref().and_then(|h| forge.main_reverted(&task.repo, h));
        if revert.state.stage != baton_domain::pipeline::DONE || reverted != Some(true) {
            found.push(Violation::new(
                Kind::NotReverted,
                format!(
                    "task {} ({}) degraded; its revert {} is {} and main {} (head {head:?}){freeze}; {}",
                    task.id,
                    task.work_item_id,
                    revert.id,
                    revert.state.display(),
                    match reverted {
                        Some(true) => "took the revert",
                        Some(false) => "still holds the change",
                        None => "never had the change",
                    },
                    head.as_deref().map(|h| forge.describe_revert(&task.repo, h)).unwrap_or_default()
                ),
            ));
        }
    }
    found
}

/// Whether the task (its queued job, or its change in the merge queue) waits for a dependency that is still live (itself waiting for a
/// human, or further down a chain that does): settled, not stuck. A cancelled dependency does not
/// count: the reconciler's backstop must have blocked the task.
fn waits_for_live_task(state: &State, task: &TaskRecord) -> bool {
    matches!(task.state.hold, Hold::None | Hold::MergeQueue)
        && state
            .dependencies
            .range((task.id, TaskId(i64::MIN))..=(task.id, TaskId(i64::MAX)))
            .any(|((_, on), _)| state.tasks.get(on).is_some_and(|t| !t.state.is_terminal()))
}

/// Why a task's jobs do not match its state (SPEC §4.6 "no lost task"), if they do not.
fn job_problem(state: &State, task: &TaskRecord) -> Option<String> {
    let active: Vec<_> = state
        .jobs
        .values()
        .filter(|j| j.task_id == task.id && matches!(j.status, JobStatus::Queued | JobStatus::Running))
        .collect();
    if task.state.is_terminal() || task.state.hold != Hold::None {
        if let Some(job) = task.state.job {
            return Some(format!("has current job {job} while not running"));
        }
        if let Some(job) = active.first() {
            return Some(format!("job {} is still {:?}", job.id, job.status));
        }
        return None;
    }
    let Some(current) = task.state.job else {
        return Some("runs nothing and waits for nobody".into());
    };
    let Some(job) = state.jobs.get(&current) else {
        return Some(format!("current job {current} does not exist"));
    };
    if !matches!(job.status, JobStatus::Queued | JobStatus::Running) {
        return Some(format!("current job {current} is {:?}", job.status));
    }
    if job.stage != task.state.stage {
        return Some(format!("current job {current} is for {}", job.stage));
    }
    if active.len() != 1 {
        let ids: Vec<String> = active.iter().map(|j| j.id.to_string()).collect();
        return Some(format!("{} active jobs ({})", active.len(), ids.join(", ")));
    }
    None
}
