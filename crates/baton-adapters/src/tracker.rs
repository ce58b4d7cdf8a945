//! Trackers mirror task status to where tickets live. The built-in default is Baton's own task list.

use async_trait::async_trait;

/// A task change as a tracker sees it.
#[derive(Debug, Clone)]
pub struct TrackerUpdate {
    pub work_item: String,
    pub external_ref: Option<String>,
    pub title: String,
    /// `stage` or `stage (hold)`.
    pub status: String,
}

/// A ticket tracker (Plane, GitHub Issues, Gitea issues; built-in: none needed).
#[async_trait]
pub trait Tracker: Send + Sync {
    fn name(&self) -> &str;

    /// Mirrors a task's status. Observers never fail a transition: errors are logged by the caller.
    async fn task_changed(&self, update: &TrackerUpdate) -> Result<(), crate::AdapterError>;
}

/// The built-in tracker: Baton's own tasks (CLI, API). Mirroring is a no-op.
#[derive(Debug, Default, Clone)]
pub struct LocalTracker;

#[async_trait]
impl Tracker for LocalTracker {
    fn name(&self) -> &str {
        "local"
    }

    async fn task_changed(&self, _update: &TrackerUpdate) -> Result<(), crate::AdapterError> {
        Ok(())
    }
}
