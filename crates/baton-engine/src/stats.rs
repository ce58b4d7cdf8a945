//! What the engine's periodic passes last did (the reaper and the reconciler), kept in memory for
//! `/api/queue`: written only by the passes, read as a copy.

use serde::Serialize;
use std::sync::Mutex;

/// One reaper pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReaperPass {
    /// When the pass ended, in the engine clock's milliseconds.
    pub at_ms: i64,
    /// Running jobs no executor watched, re-adopted.
    pub adopted: u32,
    /// Jobs failed for running past the backstop.
    pub backstopped: u32,
    pub leases_renewed: u32,
    /// Leases taken back from holders that are gone.
    pub leases_reclaimed: u32,
    /// Agent runs closed as lost.
    pub runs_closed: u32,
    /// Worktrees of tasks another instance ended, removed (only with other instances).
    pub worktrees_swept: u32,
}

/// One reconciler pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcilerPass {
    pub at_ms: i64,
    /// Idle active tasks looked at.
    pub examined: u32,
    /// Finished jobs whose recorded outcome was applied.
    pub reapplied: u32,
    pub failed: u32,
}

/// The last pass of each and how many ran since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceSnapshot {
    pub reaper_passes: u64,
    pub reaper_last: Option<ReaperPass>,
    pub reconciler_passes: u64,
    pub reconciler_last: Option<ReconcilerPass>,
}

/// The engine's record of its passes.
#[derive(Debug, Default)]
pub struct MaintenanceStats {
    inner: Mutex<MaintenanceSnapshot>,
    /// Jobs that ended before this were looked at by the reconciler already (0 at start: the
    /// first pass looks at every ended job once).
    reconciler_since_ms: std::sync::atomic::AtomicI64,
}

impl MaintenanceStats {
    pub(crate) fn reconciler_since_ms(&self) -> i64 {
        self.reconciler_since_ms.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn set_reconciler_since_ms(&self, since_ms: i64) {
        self.reconciler_since_ms.fetch_max(since_ms, std::sync::atomic::Ordering::AcqRel);
    }

    pub(crate) fn reaper_done(&self, pass: ReaperPass) {
        if let Ok(mut stats) = self.inner.lock() {
            stats.reaper_passes += 1;
            stats.reaper_last = Some(pass);
        }
    }

    pub(crate) fn reconciler_done(&self, pass: ReconcilerPass) {
        if let Ok(mut stats) = self.inner.lock() {
            stats.reconciler_passes += 1;
            stats.reconciler_last = Some(pass);
        }
    }

    /// A copy of what was recorded.
    pub fn snapshot(&self) -> MaintenanceSnapshot {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
