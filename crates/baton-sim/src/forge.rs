//! `SimForge`: the simulated git world behind the engine's real ports — [`Vcs`] (worktrees,
//! commits, rebase, squash, files) and [`Forge`] (fast-forward of the default branch) — checking
//! "main is sacred" (SPEC §4.7) at the moment main moves.
//!
//! Commits are opaque names (`c17`); a worktree is the chain its branch holds (`HEAD^` is the
//! second-last entry) plus its files, committed and uncommitted. Which heads passed the merge gate
//! is not taken from the engine: the simulated re-test command tells (see `ports::SimProcs`), so
//! the check is independent of the code under test.

use crate::check::{Kind, Violation};
use crate::clock::SimClock;
use crate::rng::Rng;
use crate::store::SimStore;
use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::forge::{CiStatus, Forge, ForgeRepo, MergeOutcome, PullRequestRef, PullRequestSpec};
use baton_domain::TaskId;
use baton_engine::Clock;
use baton_engine::gates::merge_lease_name;
use baton_runner::{GitError, Vcs};
use baton_store::task_holder;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The stage whose actor merges (the engine's `Actor::Deploy`).
/// The stage whose deploy actor merges (a change of a landed batch reaches it, woken).
pub(crate) const DEPLOY_STAGE: &str = "deploy";

/// A head that passed the merge gate: retested on top of `base` for `task`.
#[derive(Debug, Clone)]
pub struct Passed {
    pub task: TaskId,
    pub repo: String,
    pub base: String,
}

/// One task worktree.
#[derive(Debug, Clone, Default)]
struct Tree {
    repo: String,
    chain: Vec<String>,
    committed: BTreeMap<String, String>,
    files: BTreeMap<String, String>,
}

impl Tree {
    fn dirty(&self) -> bool {
        self.files != self.committed
    }
}

#[derive(Debug, Default)]
struct Git {
    /// Where repositories live (`<root>/<repo>`) and their default-branch history; the last
    /// entry is the head.
    repos: BTreeMap<PathBuf, String>,
    mains: BTreeMap<String, Vec<String>>,
    /// Task branches by name (they outlive a removed worktree).
    branches: BTreeMap<String, Vec<String>>,
    worktrees: BTreeMap<PathBuf, (String, Tree)>,
    passed: BTreeMap<String, Passed>,
    /// Heads made by a merge gate's squash (passed or not).
    squashed: BTreeSet<String>,
    /// Commits made with another commit's tree on a parent of their own (a merge-queue batch's one
    /// commit): commit → (the commit whose tree it has, its parent).
    aliases: BTreeMap<String, (String, String)>,
    /// Revert commits (`Vcs::revert`): commit → the head whose change it undoes.
    reverts: BTreeMap<String, String>,
    /// What each commit's tree is made of (a rebase's replay: its change and the commit before; a
    /// squash or a batch's commit: the commits it squashes and its parent): commit → sources.
    derived: BTreeMap<String, Vec<String>>,
    next_commit: u64,
    /// Every move of a default branch: (repository, new head, when).
    moves: Vec<(String, String, i64)>,
    violations: Vec<Violation>,
    merges: u64,
    batch_merges: u64,
    /// Tasks whose change a default branch took: a merged head's task and, for a batch's commit,
    /// every change the queue had batched behind it (read from the store as main moved).
    shipped: BTreeSet<TaskId>,
    fault_rng: Option<Rng>,
    fault_per_mille: u32,
    faults_armed: bool,
    /// A one-shot full disk for the next git write named so (scripted scenarios).
    fail_next: Option<String>,
    /// What reading a repository's default branch answers instead of its head, by repository:
    /// the tracking ref of an instance whose last fetch is older than the remote's last push
    /// (scripted scenarios). Merges still see the real head, as the remote does.
    stale_main: BTreeMap<String, String>,
}

/// The simulated forge and repositories.
#[derive(Debug)]
pub struct SimForge {
    git: Mutex<Git>,
    store: Arc<SimStore>,
    clock: Arc<SimClock>,
}

fn failed(what: &str, dir: &Path, why: &str) -> GitError {
    GitError::Failed { args: what.to_string(), dir: dir.display().to_string(), stderr: why.to_string() }
}

impl SimForge {
    /// Repositories `repos` at `<root>/<name>`, each with a one-commit default branch; forge and git
    /// faults use `seed`'s own stream.
    pub fn new(
        root: &Path,
        repos: &[String],
        store: Arc<SimStore>,
        clock: Arc<SimClock>,
        seed: u64,
        fault_per_mille: u32,
    ) -> Self {
        let mut git = Git { fault_rng: Some(Rng::fork(seed, 0xF0F6E)), fault_per_mille, ..Git::default() };
        for repo in repos {
            git.repos.insert(root.join(repo), repo.clone());
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

    /// The default branch head of `repo`.
    pub fn main_head(&self, repo: &str) -> Option<String> {
        self.lock().mains.get(repo).and_then(|m| m.last().cloned())
    }

    /// Reads of `repo`'s default branch answer `commit` from now on (`None`: its head again), as
    /// on an instance whose last fetch of a `url` repository is older than the last merge there.
    pub fn stale_main_reads(&self, repo: &str, commit: Option<&str>) {
        let mut git = self.lock();
        match commit {
            Some(commit) => git.stale_main.insert(repo.to_string(), commit.to_string()),
            None => git.stale_main.remove(repo),
        };
    }

    /// Every move of a default branch, in order: (repository, new head, when).
    pub fn main_moves(&self) -> Vec<(String, String, i64)> {
        self.lock().moves.clone()
    }

    /// The default branch history of `repo`, oldest first.
    pub fn main_history(&self, repo: &str) -> Vec<String> {
        self.lock().mains.get(repo).cloned().unwrap_or_default()
    }

    /// Worktrees that exist, by path.
    pub fn worktree_paths(&self) -> Vec<PathBuf> {
        self.lock().worktrees.keys().cloned().collect()
    }

    /// Task branches that exist.
    pub fn branch_names(&self) -> Vec<String> {
        self.lock().branches.keys().cloned().collect()
    }

    /// The head and its parent of the worktree at `path` (what a command started there tests).
    pub fn head_and_base(&self, path: &Path) -> Option<(String, Option<String>, String)> {
        let git = self.lock();
        let (_, tree) = git.worktrees.get(path)?;
        let head = tree.chain.last()?.clone();
        let base = tree.chain.len().checked_sub(2).and_then(|i| tree.chain.get(i)).cloned();
        Some((head, base, tree.repo.clone()))
    }

    /// Writes a file into a worktree, uncommitted (what an agent does).
    pub fn write(&self, path: &Path, relative: &str, content: &str) {
        if let Some((_, tree)) = self.lock().worktrees.get_mut(path) {
            tree.files.insert(relative.to_string(), content.to_string());
        }
    }

    /// Records that `head` was retested green on top of `base` for `task` (the re-test command said so).
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

    /// Merges of a batch's one commit.
    pub fn batch_merges(&self) -> u64 {
        self.lock().batch_merges
    }

    /// Tasks whose change some default branch took (see `Git::shipped`).
    pub fn shipped_tasks(&self) -> BTreeSet<TaskId> {
        self.lock().shipped.clone()
    }

    /// Whether `repo`'s default branch, after `head` landed, took a commit that carries the revert
    /// of `head` (a revert commit, or one squashed, replayed or batched from it). `None` when
    /// `head` never landed there.
    pub fn main_reverted(&self, repo: &str, head: &str) -> Option<bool> {
        let git = self.lock();
        let main = git.mains.get(repo)?;
        let at = main.iter().position(|c| c == head)?;
        Some(main[at + 1..].iter().any(|c| Self::carries_revert(&git, c, head)))
    }

    /// What the forge knows of `head`'s reverts, for a failure message: the revert commits made
    /// of it, and `repo`'s default branch after it.
    pub fn describe_revert(&self, repo: &str, head: &str) -> String {
        let git = self.lock();
        let reverts: Vec<&String> = git.reverts.iter().filter(|(_, h)| *h == head).map(|(c, _)| c).collect();
        let main = git.mains.get(repo).cloned().unwrap_or_default();
        let after: Vec<String> = main.iter().skip_while(|c| *c != head).cloned().collect();
        let derived: Vec<String> =
            after.iter().map(|c| format!("{c}<-{:?}", git.derived.get(c).cloned().unwrap_or_default())).collect();
        format!("revert commits {reverts:?}; main from the head: {}", derived.join(" "))
    }

    /// Whether `commit` is, or was made from, a revert of `head`.
    fn carries_revert(git: &Git, commit: &str, head: &str) -> bool {
        let mut stack = vec![commit.to_string()];
        let mut seen = BTreeSet::new();
        // Bounded by the commits made in a seed.
        while let Some(commit) = stack.pop() {
            if !seen.insert(commit.clone()) {
                continue;
            }
            if git.reverts.get(&commit).is_some_and(|h| h == head) {
                return true;
            }
            stack.extend(git.derived.get(&commit).into_iter().flatten().cloned());
        }
        false
    }

    fn roll_fault(git: &mut Git) -> bool {
        let (armed, per_mille) = (git.faults_armed, git.fault_per_mille);
        armed && git.fault_rng.as_mut().is_some_and(|rng| rng.chance(per_mille))
    }

    /// Makes the next git write named `what` (`rebase`, `commit`, `worktree add`) fail on a full disk.
    pub fn fail_next(&self, what: &str) {
        self.lock().fail_next = Some(what.to_string());
    }

    /// An injected full disk for a git write, at the fault rate (or scripted by [`Self::fail_next`]).
    fn disk_full(git: &mut Git, what: &str, dir: &Path) -> Result<(), GitError> {
        let scripted = git.fail_next.as_deref() == Some(what);
        if scripted {
            git.fail_next = None;
        }
        if scripted || Self::roll_fault(git) {
            return Err(failed(what, dir, "fatal: unable to write new index file: No space left on device (injected)"));
        }
        Ok(())
    }

    fn new_commit(git: &mut Git) -> String {
        git.next_commit += 1;
        format!("c{}", git.next_commit)
    }

    /// SPEC §4.7 at the moment of a merge: a gate-passed head, on the base it was retested on,
    /// by the task holding the repo's merge lease, while that task is deploying.
    fn check_merge(&self, git: &mut Git, repo: &str, base: &str, head: &str) {
        let now = self.clock.now_ms();
        // A batch's commit has the tree its last change's build was tested on, on its own parent.
        let passed = git.passed.get(head).cloned().or_else(|| {
            let (tree, parent) = git.aliases.get(head)?;
            git.passed.get(tree).cloned().map(|p| Passed { base: parent.clone(), ..p })
        });
        let Some(passed) = passed else {
            let violation = if git.squashed.contains(head) {
                Violation::new(
                    Kind::StaleGateHeadMerged,
                    format!("{repo} main moved to {head}: a merge gate squashed it but its re-test never passed"),
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
        // A frozen repository lands nothing but the revert its freeze names (SPEC §6.4).
        if let Some(freeze) = self.store.peek(|s| s.open_freeze(repo))
            && freeze.revert != Some(passed.task)
            && !self.store.peek(|s| s.is_revert_of_degraded(passed.task))
        {
            git.violations.push(Violation::new(
                Kind::FrozenMerge,
                format!(
                    "{repo} main moved to {head} for task {} while frozen since {} ms ({}; its revert: {:?})",
                    passed.task, freeze.frozen_at_ms, freeze.reason, freeze.revert
                ),
            ));
        }
        git.shipped.insert(passed.task);
        let members: Vec<TaskId> = self.store.peek(|s| {
            let queued = s.queue.values().filter(|e| e.batch == Some(passed.task)).map(|e| e.task);
            queued.chain(s.landing_members.get(&passed.task).into_iter().flatten().copied()).collect()
        });
        git.shipped.extend(members);
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

    async fn merge(
        &self,
        repo: &ForgeRepo,
        _branch: &str,
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
        let now = self.clock.now_ms();
        git.moves.push((repo.name.clone(), head.to_string(), now));
        git.merges += 1;
        if git.aliases.contains_key(head) {
            git.batch_merges += 1;
        }
        // A forge may apply the merge and still fail the reply; the deploy must then re-drive.
        if Self::roll_fault(&mut git) {
            return Err(AdapterError::Transient("merged, but the reply was lost (injected)".into()));
        }
        Ok(MergeOutcome::Merged)
    }

    async fn sync_pull_request(
        &self,
        _repo: &ForgeRepo,
        _spec: &PullRequestSpec,
    ) -> Result<Option<PullRequestRef>, AdapterError> {
        Ok(None)
    }

    async fn ci_status(&self, _repo: &ForgeRepo, _sha: &str) -> Result<CiStatus, AdapterError> {
        Ok(CiStatus::NoChecks)
    }

    async fn delete_branch(&self, repo: &ForgeRepo, branch: &str) -> Result<(), AdapterError> {
        let mut git = self.lock();
        if branch == repo.default_branch || !branch.starts_with("baton/") {
            git.violations
                .push(Violation::new(Kind::MainSacred, format!("asked to delete branch `{branch}` of {}", repo.name)));
            return Err(AdapterError::Rejected(format!("refusing to delete branch `{branch}`")));
        }
        if git.worktrees.values().any(|(name, _)| name == branch) {
            return Err(AdapterError::Rejected(format!("branch `{branch}` is checked out in a worktree")));
        }
        git.branches.remove(branch);
        Ok(())
    }
}

#[async_trait]
impl Vcs for SimForge {
    fn exists(&self, path: &Path) -> bool {
        let git = self.lock();
        git.repos.contains_key(path) || git.worktrees.contains_key(path)
    }

    async fn ensure_worktree(
        &self,
        repo: &Path,
        worktree: &Path,
        branch: &str,
        default_branch: &str,
    ) -> Result<(), GitError> {
        let mut git = self.lock();
        if git.worktrees.contains_key(worktree) {
            return Ok(());
        }
        Self::disk_full(&mut git, "worktree add", worktree)?;
        let repo_name =
            git.repos.get(repo).cloned().ok_or_else(|| failed("worktree add", repo, "not a git repository"))?;
        let chain = match git.branches.get(branch) {
            Some(chain) => chain.clone(),
            None => {
                let head = git.mains.get(&repo_name).and_then(|m| m.last().cloned());
                let head = head.ok_or_else(|| failed("worktree add", repo, &format!("no branch {default_branch}")))?;
                vec![head]
            }
        };
        git.branches.insert(branch.to_string(), chain.clone());
        let tree = Tree { repo: repo_name, chain, ..Tree::default() };
        git.worktrees.insert(worktree.to_path_buf(), (branch.to_string(), tree));
        Ok(())
    }

    async fn clean(&self, worktree: &Path) -> Result<(), GitError> {
        let mut git = self.lock();
        let (_, tree) = git.worktrees.get_mut(worktree).ok_or_else(|| failed("reset", worktree, "no worktree"))?;
        tree.files = tree.committed.clone();
        Ok(())
    }

    async fn commit_all(&self, worktree: &Path, _message: &str, _private: Option<&Path>) -> Result<bool, GitError> {
        let mut git = self.lock();
        if !git.worktrees.get(worktree).is_some_and(|(_, t)| t.dirty()) {
            return Ok(false);
        }
        Self::disk_full(&mut git, "commit", worktree)?;
        let commit = Self::new_commit(&mut git);
        let Some((branch, tree)) = git.worktrees.get_mut(worktree) else {
            return Err(failed("commit", worktree, "no worktree"));
        };
        tree.committed = tree.files.clone();
        tree.chain.push(commit);
        let (branch, chain) = (branch.clone(), tree.chain.clone());
        git.branches.insert(branch, chain);
        Ok(true)
    }

    async fn rev(&self, dir: &Path, rev: &str) -> Option<String> {
        let git = self.lock();
        if let Some((_, parent)) = rev.strip_suffix('^').and_then(|c| git.aliases.get(c)) {
            return Some(parent.clone());
        }
        if let Some(repo) = git.repos.get(dir) {
            let name = rev.strip_prefix("refs/heads/")?;
            if name == "main" {
                if let Some(stale) = git.stale_main.get(repo) {
                    return Some(stale.clone());
                }
                return git.mains.get(repo).and_then(|m| m.last().cloned());
            }
            return git.branches.get(name).and_then(|c| c.last().cloned());
        }
        let (_, tree) = git.worktrees.get(dir)?;
        match rev {
            "HEAD" => tree.chain.last().cloned(),
            "HEAD^" => tree.chain.len().checked_sub(2).and_then(|i| tree.chain.get(i)).cloned(),
            _ => None,
        }
    }

    async fn rebase(&self, worktree: &Path, onto: &str) -> Result<(), GitError> {
        let mut git = self.lock();
        Self::disk_full(&mut git, "rebase", worktree)?;
        let Some((_, tree)) = git.worktrees.get(worktree) else {
            return Err(failed("rebase", worktree, "no worktree"));
        };
        if tree.chain.first().is_some_and(|base| base == onto) {
            return Ok(());
        }
        // The branch's own commits are replayed onto `onto` as new commits.
        let old: Vec<String> = tree.chain.iter().skip(1).cloned().collect();
        let mut chain = vec![onto.to_string()];
        for source in old {
            let commit = Self::new_commit(&mut git);
            // Its change, on the tree of the commit before it.
            let parent = chain.last().cloned().unwrap_or_default();
            git.derived.insert(commit.clone(), vec![source, parent]);
            chain.push(commit);
        }
        if let Some((branch, tree)) = git.worktrees.get_mut(worktree) {
            tree.chain = chain.clone();
            let branch = branch.clone();
            git.branches.insert(branch, chain);
        }
        Ok(())
    }

    async fn squash(&self, worktree: &Path, base: &str, _message: &str) -> Result<(), GitError> {
        let mut git = self.lock();
        Self::disk_full(&mut git, "commit", worktree)?;
        let head = Self::new_commit(&mut git);
        git.squashed.insert(head.clone());
        let mut sources = git.worktrees.get(worktree).map(|(_, t)| lineage(&t.chain, base)).unwrap_or_default();
        sources.push(base.to_string());
        git.derived.insert(head.clone(), sources);
        let Some((branch, tree)) = git.worktrees.get_mut(worktree) else {
            return Err(failed("commit", worktree, "no worktree"));
        };
        tree.chain = vec![base.to_string(), head];
        tree.committed = tree.files.clone();
        let (branch, chain) = (branch.clone(), tree.chain.clone());
        git.branches.insert(branch, chain);
        Ok(())
    }

    async fn reset_to(&self, worktree: &Path, commit: &str) -> Result<(), GitError> {
        let mut git = self.lock();
        Self::disk_full(&mut git, "reset", worktree)?;
        // The chain that ends at `commit`: main's (a batch's commit once landed), or a branch's.
        let chain_to = |git: &Git, commit: &str| {
            git.mains
                .values()
                .find_map(|main| {
                    let at = main.iter().position(|c| c == commit)?;
                    Some(main[..=at].to_vec())
                })
                .or_else(|| {
                    git.branches.values().find(|chain| chain.last().map(String::as_str) == Some(commit)).cloned()
                })
        };
        let chain = chain_to(&git, commit)
            .or_else(|| {
                let (_, parent) = git.aliases.get(commit)?;
                let mut chain = chain_to(&git, parent)?;
                chain.push(commit.to_string());
                Some(chain)
            })
            .ok_or_else(|| failed("reset", worktree, &format!("unknown commit {commit}")))?;
        let Some((branch, tree)) = git.worktrees.get_mut(worktree) else {
            return Err(failed("reset", worktree, "no worktree"));
        };
        tree.chain = chain.clone();
        tree.files = tree.committed.clone();
        let branch = branch.clone();
        git.branches.insert(branch, chain);
        Ok(())
    }

    async fn commit_tree(&self, worktree: &Path, parent: &str, _message: &str) -> Result<String, GitError> {
        let mut git = self.lock();
        Self::disk_full(&mut git, "commit", worktree)?;
        let head = git
            .worktrees
            .get(worktree)
            .and_then(|(_, t)| t.chain.last().cloned())
            .ok_or_else(|| failed("commit-tree", worktree, "no worktree"))?;
        let commit = Self::new_commit(&mut git);
        git.squashed.insert(commit.clone());
        let mut sources = git.worktrees.get(worktree).map(|(_, t)| lineage(&t.chain, parent)).unwrap_or_default();
        sources.push(parent.to_string());
        git.derived.insert(commit.clone(), sources);
        git.aliases.insert(commit.clone(), (head, parent.to_string()));
        Ok(commit)
    }

    async fn revert(&self, worktree: &Path, _base: &str, head: &str, _message: &str) -> Result<(), GitError> {
        let mut git = self.lock();
        Self::disk_full(&mut git, "revert", worktree)?;
        if !git.worktrees.contains_key(worktree) {
            return Err(failed("revert", worktree, "no worktree"));
        }
        let commit = Self::new_commit(&mut git);
        git.reverts.insert(commit.clone(), head.to_string());
        let parent = git.worktrees.get(worktree).and_then(|(_, t)| t.chain.last().cloned()).unwrap_or_default();
        git.derived.insert(commit.clone(), vec![parent]);
        let Some((branch, tree)) = git.worktrees.get_mut(worktree) else {
            return Err(failed("revert", worktree, "no worktree"));
        };
        tree.chain.push(commit);
        let (branch, chain) = (branch.clone(), tree.chain.clone());
        git.branches.insert(branch, chain);
        Ok(())
    }

    async fn same_tree(&self, dir: &Path, a: &str, b: &str) -> bool {
        let git = self.lock();
        let resolve = |rev: &str| -> Option<String> {
            let commit = match (rev, git.worktrees.get(dir)) {
                ("HEAD", Some((_, tree))) => tree.chain.last()?.clone(),
                _ => rev.to_string(),
            };
            // A commit's tree is named by the commit that first had it.
            Some(git.aliases.get(&commit).map_or(commit, |(tree, _)| tree.clone()))
        };
        matches!((resolve(a), resolve(b)), (Some(x), Some(y)) if x == y)
    }

    async fn is_ancestor(&self, dir: &Path, ancestor: &str, descendant: &str) -> bool {
        let git = self.lock();
        let chain = match git.repos.get(dir) {
            Some(repo) => git.mains.get(repo).cloned().unwrap_or_default(),
            None => git.worktrees.get(dir).map(|(_, t)| t.chain.clone()).unwrap_or_default(),
        };
        // Main's history (or a worktree's chain) up to `descendant`.
        chain.iter().position(|c| c == descendant).is_some_and(|at| chain[..=at].iter().any(|c| c == ancestor))
            || git.branches.values().any(|chain| {
                chain.iter().position(|c| c == descendant).is_some_and(|at| chain[..=at].iter().any(|c| c == ancestor))
            })
    }

    async fn remove_worktree(&self, _repo: &Path, worktree: &Path) -> Result<(), GitError> {
        self.lock().worktrees.remove(worktree);
        Ok(())
    }

    async fn read_file(&self, worktree: &Path, relative: &str) -> Option<String> {
        self.lock().worktrees.get(worktree)?.1.files.get(relative).cloned()
    }

    async fn list_dir(&self, worktree: &Path, relative: &str) -> Vec<String> {
        let git = self.lock();
        let Some((_, tree)) = git.worktrees.get(worktree) else {
            return Vec::new();
        };
        let prefix = format!("{}/", relative.trim_end_matches('/'));
        tree.files
            .keys()
            .filter_map(|path| path.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_string)
            .collect()
    }

    fn entries(&self, dir: &Path) -> Vec<String> {
        let git = self.lock();
        let names: BTreeSet<String> = git
            .worktrees
            .keys()
            .filter_map(|path| path.strip_prefix(dir).ok())
            .filter_map(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        names.into_iter().collect()
    }
}

/// The commits of `chain` after `base`; all of it when `base` is not in it (a batch's last change
/// is built on the changes ahead of it, whose heads it then carries).
fn lineage(chain: &[String], base: &str) -> Vec<String> {
    let from = chain.iter().position(|c| c == base).map_or(0, |at| at + 1);
    chain.iter().skip(from).cloned().collect()
}
