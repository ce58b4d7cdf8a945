//! `SimForge`: the simulated git world — each repository's default branch (a list of heads), each
//! task's worktree (a chain of commits), the heads that passed the merge gate — behind the real
//! [`Forge`] trait, checking "main is sacred" (SPEC §4.7) at the moment main moves.
//!
//! Commits are opaque names (`c17`); a worktree is the chain its branch holds, so `HEAD^` is the
//! second-last entry, exactly what the engine's deploy reads from git.

use crate::check::{Kind, Violation};
use crate::clock::SimClock;
use crate::rng::Rng;
use crate::store::SimStore;
use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::forge::{Forge, ForgeRepo, MergeOutcome};
use baton_domain::TaskId;
use baton_engine::Clock;
use baton_engine::gates::merge_lease_name;
use baton_store::task_holder;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The stage whose actor merges (the engine's `Actor::Deploy`).
const DEPLOY_STAGE: &str = "deploy";

/// A head that passed the merge gate: retested on top of `base` for `task`.
#[derive(Debug, Clone)]
pub struct Passed {
    pub task: TaskId,
    pub repo: String,
    pub base: String,
}

#[derive(Debug, Default)]
struct Git {
    /// Default-branch history per repository; the last entry is the head.
    mains: BTreeMap<String, Vec<String>>,
    /// Each task's branch as a chain of commits.
    worktrees: BTreeMap<TaskId, Vec<String>>,
    passed: BTreeMap<String, Passed>,
    /// Heads made by a merge gate's rebase and squash (passed or not).
    squashed: BTreeSet<String>,
    /// Jobs whose agent run recorded its exit (the shim's exit file survives a restart).
    agent_exits: BTreeSet<baton_domain::JobId>,
    next_commit: u64,
    violations: Vec<Violation>,
    merges: u64,
    fault_rng: Option<Rng>,
    fault_per_mille: u32,
    faults_armed: bool,
}

/// The simulated forge and repositories.
#[derive(Debug)]
pub struct SimForge {
    git: Mutex<Git>,
    store: Arc<SimStore>,
    clock: Arc<SimClock>,
}

impl SimForge {
    /// Repositories `repos`, each with a one-commit default branch; forge faults use `seed`'s own stream.
    pub fn new(repos: &[String], store: Arc<SimStore>, clock: Arc<SimClock>, seed: u64, fault_per_mille: u32) -> Self {
        let mut git = Git { fault_rng: Some(Rng::fork(seed, 0xF0F6E)), fault_per_mille, ..Git::default() };
        for repo in repos {
            git.mains.insert(repo.clone(), vec![format!("{repo}-root")]);
        }
        SimForge { git: Mutex::new(git), store, clock }
    }

    fn lock(&self) -> MutexGuard<'_, Git> {
        self.git.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn arm_faults(&self, armed: bool) {
        self.lock().faults_armed = armed;
    }

    /// The default branch head of `repo` (what `git rev refs/heads/main` returns).
    pub fn main_head(&self, repo: &str) -> Option<String> {
        self.lock().mains.get(repo).and_then(|m| m.last().cloned())
    }

    /// The default branch history of `repo`, oldest first.
    pub fn main_history(&self, repo: &str) -> Vec<String> {
        self.lock().mains.get(repo).cloned().unwrap_or_default()
    }

    /// The task's branch; created from the default branch head on first use (`ensure_worktree`).
    pub fn worktree(&self, task: TaskId, repo: &str) -> Vec<String> {
        let mut git = self.lock();
        let head = git.mains.get(repo).and_then(|m| m.last().cloned()).unwrap_or_default();
        git.worktrees.entry(task).or_insert_with(|| vec![head]).clone()
    }

    /// An agent run commits its work on the task branch.
    pub fn commit(&self, task: TaskId, repo: &str) -> String {
        self.worktree(task, repo);
        let mut git = self.lock();
        git.next_commit += 1;
        let commit = format!("c{}", git.next_commit);
        git.worktrees.entry(task).or_default().push(commit.clone());
        commit
    }

    /// Records that the agent of `job` ran and left its exit record.
    pub fn record_agent_exit(&self, job: baton_domain::JobId) {
        self.lock().agent_exits.insert(job);
    }

    /// Whether the agent of `job` left an exit record.
    pub fn agent_exited(&self, job: baton_domain::JobId) -> bool {
        self.lock().agent_exits.contains(&job)
    }

    /// The merge gate's rebase and squash: the branch becomes `base` plus one new commit.
    pub fn rebase_and_squash(&self, task: TaskId, base: &str) -> String {
        let mut git = self.lock();
        git.next_commit += 1;
        let head = format!("c{}", git.next_commit);
        git.worktrees.insert(task, vec![base.to_string(), head.clone()]);
        git.squashed.insert(head.clone());
        head
    }

    /// Records that `head` was retested on top of `base` for `task`.
    pub fn record_passed(&self, head: &str, passed: Passed) {
        self.lock().passed.insert(head.to_string(), passed);
    }

    /// Safety violations seen when main moved, drained.
    pub fn take_violations(&self) -> Vec<Violation> {
        std::mem::take(&mut self.lock().violations)
    }

    pub fn merges(&self) -> u64 {
        self.lock().merges
    }

    fn roll_fault(git: &mut Git) -> bool {
        let (armed, per_mille) = (git.faults_armed, git.fault_per_mille);
        armed && git.fault_rng.as_mut().is_some_and(|rng| rng.chance(per_mille))
    }

    /// SPEC §4.7 at the moment of a merge: a gate-passed head, on the base it was retested on,
    /// by the task holding the repo's merge lease, while that task is deploying.
    fn check_merge(&self, git: &mut Git, repo: &str, base: &str, head: &str) {
        let now = self.clock.now_ms();
        let Some(passed) = git.passed.get(head).cloned() else {
            let violation = if git.squashed.contains(head) {
                Violation::new(
                    Kind::StaleGateHeadMerged,
                    format!(
                        "{repo} main moved to {head}: a merge gate squashed it but its re-test did not pass \
                         (a stale gate run replaced the worktree HEAD the deploy merged)"
                    ),
                )
            } else {
                Violation::new(
                    Kind::MainSacred,
                    format!("{repo} main moved to {head}, which never passed the merge gate"),
                )
            };
            git.violations.push(violation);
            return;
        };
        if passed.base != base || passed.repo != repo {
            git.violations.push(Violation::new(
                Kind::MainSacred,
                format!(
                    "{repo} main moved to {head} from {base}, but it was retested on {}/{}",
                    passed.repo, passed.base
                ),
            ));
        }
        let holder = task_holder(passed.task);
        match self.store.peek_lease(&merge_lease_name(repo)) {
            Some(lease) if lease.holder == holder && lease.expires_at_ms > now => {}
            other => git.violations.push(Violation::new(
                Kind::MainSacred,
                format!(
                    "{repo} main moved to {head} for task {} without holding the merge lease ({other:?})",
                    passed.task
                ),
            )),
        }
        let task = self.store.peek_task(passed.task);
        let deploying = task.as_ref().is_some_and(|t| {
            !t.state.is_terminal()
                && t.state.stage == DEPLOY_STAGE
                && !matches!(t.state.hold, baton_domain::Hold::Blocked { .. })
        });
        if !deploying {
            let state = task.map_or("missing".to_string(), |t| t.state.display());
            git.violations.push(Violation::new(
                Kind::MergeForInactiveTask,
                format!("{repo} main moved to {head} for task {} while the task is {state}", passed.task),
            ));
        }
    }
}

#[async_trait]
impl Forge for SimForge {
    fn name(&self) -> &str {
        "sim"
    }

    async fn fast_forward(
        &self,
        repo: &ForgeRepo,
        expected_base: &str,
        head: &str,
    ) -> Result<MergeOutcome, AdapterError> {
        let mut git = self.lock();
        if Self::roll_fault(&mut git) {
            return Err(AdapterError::Transient("forge unreachable (injected)".into()));
        }
        let current = git.mains.get(&repo.name).and_then(|m| m.last().cloned()).unwrap_or_default();
        if current == head {
            return Ok(MergeOutcome::AlreadyMerged);
        }
        if current != expected_base {
            return Ok(MergeOutcome::Moved { current });
        }
        self.check_merge(&mut git, &repo.name, expected_base, head);
        git.mains.entry(repo.name.clone()).or_default().push(head.to_string());
        git.merges += 1;
        // A forge may apply the merge and still fail the reply; the deploy must then re-drive.
        if Self::roll_fault(&mut git) {
            return Err(AdapterError::Transient("merged, but the reply was lost (injected)".into()));
        }
        Ok(MergeOutcome::Merged)
    }

    async fn delete_branch(&self, repo: &ForgeRepo, branch: &str) -> Result<(), AdapterError> {
        if branch == repo.default_branch || !branch.starts_with("baton/") {
            self.lock()
                .violations
                .push(Violation::new(Kind::MainSacred, format!("asked to delete branch `{branch}` of {}", repo.name)));
            return Err(AdapterError::Rejected(format!("refusing to delete branch `{branch}`")));
        }
        Ok(())
    }
}
