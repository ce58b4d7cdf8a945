//! Retention (`[retention]`): once at start and then once an hour, the engine deletes history older
//! than `days` — the store's rows in small batches ([`baton_store::Store::prune`], the rule in
//! `baton_store::retention`), then the run logs of ended tasks' agent runs that started before the
//! cutoff. The time is the engine clock's; a failure is logged and retried at the next tick.
//!
//! Run logs are found on disk, not by listing the history: each agent run's log directory is
//! `runs/<work item>/<stage>-job<id>` under the data directory, so a tick walks what is still
//! there (live tasks and the retained window), looks each job up, and deletes a directory only when
//! its task has ended, every run of its job started before the cutoff, and the run's `log_path`
//! resolves inside the data directory (a link out of it is never followed).

use crate::engine::Engine;
use crate::settings::Retention;
use baton_domain::{JobId, TaskId};
use baton_store::{AgentRunRecord, PruneCounts, TaskKey};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How often the retention tick runs (it also runs once at start).
pub const RETENTION_INTERVAL_MS: i64 = 3_600_000;
/// Prune passes per tick at most; a backlog larger than this many batches is taken over the next
/// ticks (an hour apart), so a first start on a large history never stalls the loop for long.
pub const PASSES_PER_TICK_MAX: u32 = 20;
/// Work-item directories under `runs/` looked at per tick at most; the next tick goes on after
/// the last one (and starts over once it reached the end).
pub const RUN_DIRS_PER_TICK_MAX: usize = 500;

/// What one retention tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPass {
    /// Rows deleted, by kind, over every pass of the tick.
    pub rows: PruneCounts,
    /// Prune passes run (the last one deleted nothing, unless the tick hit its limit).
    pub passes: u32,
    /// Run-log directories deleted.
    pub run_logs: u32,
}

/// The retention settings and where the run-log walk stopped.
#[derive(Debug)]
pub struct RetentionState {
    settings: Retention,
    /// The last work-item directory the previous tick looked at, when it stopped early.
    cursor: Mutex<Option<OsString>>,
}

impl RetentionState {
    pub fn new(settings: Retention) -> Self {
        RetentionState { settings, cursor: Mutex::new(None) }
    }

    pub fn settings(&self) -> Retention {
        self.settings
    }
}

/// One retention tick: prunes the store in batches (yielding between them), then the run logs.
/// Never fails; logs a summary when it deleted anything.
pub async fn tick(engine: &Arc<Engine>) -> RetentionPass {
    let settings = engine.retention().settings();
    let mut pass = RetentionPass::default();
    let Some(before_ms) = settings.cutoff_ms(engine.clock().now_ms()) else {
        return pass;
    };
    for _ in 0..PASSES_PER_TICK_MAX {
        match engine.store().prune(before_ms, settings.batch).await {
            Ok(counts) => {
                pass.passes += 1;
                pass.rows.add(counts);
                if counts.is_empty() {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!("pruning old history failed (tried again in an hour): {error}");
                break;
            }
        }
        // Other work (claims, executors, the API) runs between two batches.
        tokio::task::yield_now().await;
    }
    pass.run_logs = prune_run_logs(engine, before_ms).await;
    if !pass.rows.is_empty() || pass.run_logs > 0 {
        let rows = pass.rows;
        tracing::info!(
            events = rows.events,
            jobs = rows.jobs,
            outbox = rows.outbox,
            deliveries = rows.deliveries,
            inbox = rows.inbox,
            run_logs = pass.run_logs,
            passes = pass.passes,
            days = settings.days,
            "retention: pruned history older than {} days",
            settings.days
        );
    }
    pass
}

/// What the walk knows of one task: whether it ended, and its agent runs.
type TaskRuns = (bool, Vec<AgentRunRecord>);

/// Deletes the run-log directories of ended tasks' agent runs that started before `before_ms`;
/// returns how many went.
async fn prune_run_logs(engine: &Arc<Engine>, before_ms: i64) -> u32 {
    let runs_dir = engine.settings().runs_dir();
    let Ok(data_root) = std::fs::canonicalize(&engine.settings().data_dir) else {
        return 0;
    };
    let Some(work_items) = next_work_items(engine.retention(), &runs_dir) else {
        return 0;
    };
    let mut tasks: HashMap<TaskId, TaskRuns> = HashMap::new();
    let mut deleted = 0;
    for work_item in work_items {
        let dir = runs_dir.join(&work_item);
        let (mut seen, mut gone) = (0, 0);
        for job_dir in subdirectories(&dir) {
            seen += 1;
            let Some(job) = job_of_dir(&job_dir) else { continue };
            let Some(paths) = expired_logs(engine, job, before_ms, &mut tasks).await else { continue };
            let mut removed = false;
            for path in paths {
                removed |= remove_inside(&data_root, Path::new(&path));
            }
            if removed || !job_dir.exists() {
                gone += 1;
                deleted += u32::from(removed);
            }
        }
        // The work item's directory goes with its last run: only an ended task's, so no executor
        // is about to create a run directory in it.
        if seen > 0 && gone == seen {
            let _ = std::fs::remove_dir(&dir);
        }
        tokio::task::yield_now().await;
    }
    deleted
}

/// The next work-item directories to look at (sorted, after the cursor, at most
/// [`RUN_DIRS_PER_TICK_MAX`]), moving the cursor; `None` when there is no runs directory.
fn next_work_items(state: &RetentionState, runs_dir: &Path) -> Option<Vec<OsString>> {
    let entries = std::fs::read_dir(runs_dir).ok()?;
    let mut names: Vec<OsString> =
        entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.file_name()).collect();
    names.sort();
    let mut cursor = state.cursor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let start = cursor.as_ref().map_or(0, |after| names.partition_point(|name| name <= after));
    let batch: Vec<OsString> = names.into_iter().skip(start).take(RUN_DIRS_PER_TICK_MAX).collect();
    *cursor = if batch.len() == RUN_DIRS_PER_TICK_MAX { batch.last().cloned() } else { None };
    Some(batch)
}

/// The directories directly under `dir` (never a symbolic link).
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

/// The job a run directory belongs to: `<stage>-job<id>` (see `executor::job_run_dir`).
fn job_of_dir(dir: &Path) -> Option<JobId> {
    let name = dir.file_name()?.to_str()?;
    let (_, id) = name.rsplit_once("-job")?;
    id.parse().ok().map(JobId)
}

/// The log paths of `job`'s agent runs when they may go: its task has ended and every run of
/// the job started before the cutoff. `None` when they stay (or the job or task is unknown).
async fn expired_logs(
    engine: &Arc<Engine>,
    job: JobId,
    before_ms: i64,
    tasks: &mut HashMap<TaskId, TaskRuns>,
) -> Option<Vec<String>> {
    let job = engine.store().job(job).await.ok()??;
    if !tasks.contains_key(&job.task_id) {
        let task = engine.store().task(&TaskKey::Id(job.task_id)).await.ok()??;
        let ended = baton_store::retention::task_ended(&task.state.stage);
        let runs = if ended { engine.store().agent_runs(task.id).await.ok()? } else { Vec::new() };
        tasks.insert(task.id, (ended, runs));
    }
    let (ended, runs) = tasks.get(&job.task_id)?;
    let runs: Vec<&AgentRunRecord> = runs.iter().filter(|r| r.job_id == job.id).collect();
    let expired = *ended && !runs.is_empty() && runs.iter().all(|r| r.started_at_ms < before_ms);
    expired.then(|| {
        let mut paths: Vec<String> = runs.iter().map(|r| r.log_path.clone()).collect();
        paths.dedup();
        paths
    })
}

/// Deletes `path` (a run's log directory or file) when it resolves strictly inside `root` (the
/// canonical data directory) and is not itself a symbolic link; `true` when something was deleted.
/// A missing path is fine (deleted before, or never written).
fn remove_inside(root: &Path, path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
    if meta.file_type().is_symlink() {
        tracing::warn!(path = %path.display(), "retention: a run log that is a symbolic link is left alone");
        return false;
    }
    let Ok(resolved) = std::fs::canonicalize(path) else { return false };
    if resolved == root || !resolved.starts_with(root) {
        tracing::warn!(path = %path.display(), "retention: a run log outside the data directory is left alone");
        return false;
    }
    let removed = if meta.is_dir() { std::fs::remove_dir_all(&resolved) } else { std::fs::remove_file(&resolved) };
    match removed {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => {
            tracing::warn!(path = %resolved.display(), "retention: deleting a run log failed: {error}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_names_its_job() {
        // `executor::job_run_dir` writes `<stage>-job<id>`; a stage name may hold dashes.
        assert_eq!(job_of_dir(Path::new("runs/APP-1/code-review-job42")), Some(JobId(42)));
        assert_eq!(job_of_dir(Path::new("runs/APP-1/deploys")), None);
    }

    #[test]
    fn a_path_outside_the_root_or_through_a_link_is_never_deleted() {
        // The containment check resolves links: nothing outside the data directory goes.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("runs/A-1/plan-job1")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("runs/A-1/plan-job2")).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        assert!(!remove_inside(&root, &outside), "outside the root");
        assert!(!remove_inside(&root, &root.join("runs/A-1/plan-job2")), "a link out");
        assert!(!remove_inside(&root, &root.join("runs/A-1/../../outside")), "dot-dot out");
        assert!(!remove_inside(&root, &root), "the root itself");
        assert!(outside.exists());
        assert!(remove_inside(&root, &root.join("runs/A-1/plan-job1")));
        assert!(!root.join("runs/A-1/plan-job1").exists());
        assert!(!remove_inside(&root, &root.join("runs/A-1/plan-job1")), "a missing path is fine");
    }
}
