//! The engine's `Tracker` port on top of the Plane client (`PlaneTracker`). The `Forge` port is
//! sketched in the crate docs: its `fast_forward(expected_base, head)` carries no PR number, so it
//! waits for the engine change that passes the task's PR.

use crate::plane::{Plane, StateMap};
use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::tracker::{Tracker, TrackerUpdate};
use tokio::sync::Mutex;

/// The Plane state name a task status (`stage` or `stage (hold)`) maps to (SPEC §8 names).
pub fn plane_state_for(status: &str) -> &'static str {
    let (stage, hold) = match status.split_once(" (") {
        Some((stage, hold)) => (stage.trim(), hold.trim_end_matches(')').trim()),
        None => (status.trim(), ""),
    };
    match (stage, hold) {
        ("done", _) => "Done",
        ("cancelled", _) => "Cancelled",
        (_, "needs_input") | (_, "blocked") => "Needs Input",
        (_, "awaiting_approval") => "In Review",
        (_, "awaiting_confirm") => "Awaiting Deploy",
        ("deploy", "") => "Deploying",
        _ => "In Progress",
    }
}

/// Mirrors task status onto a Plane work item (`TrackerUpdate::external_ref` = work item id).
/// States are listed once and cached; an unknown name re-lists once (a state added since).
/// A status whose state the project lacks falls back to "In Progress".
#[derive(Debug)]
pub struct PlaneTracker {
    plane: Plane,
    states: Mutex<Option<StateMap>>,
}

impl PlaneTracker {
    pub fn new(plane: Plane) -> Self {
        PlaneTracker { plane, states: Mutex::new(None) }
    }

    async fn state_id(&self, name: &str) -> Result<String, crate::ApiError> {
        let mut cache = self.states.lock().await;
        if let Some(map) = cache.as_ref()
            && let Some(id) = map.id_for(name)
        {
            return Ok(id.to_string());
        }
        let map = self.plane.list_states().await?;
        let id = match map.id_for(name) {
            Some(id) => id.to_string(),
            None => map.require("plane.task_changed", "In Progress")?.to_string(),
        };
        *cache = Some(map);
        Ok(id)
    }
}

#[async_trait]
impl Tracker for PlaneTracker {
    fn name(&self) -> &str {
        "plane"
    }

    async fn task_changed(&self, update: &TrackerUpdate) -> Result<(), AdapterError> {
        let Some(item) = update.external_ref.as_deref() else {
            return Ok(()); // A task that did not come from Plane.
        };
        let state_id = self.state_id(plane_state_for(&update.status)).await?;
        self.plane.set_state(item, &state_id).await?;
        Ok(())
    }
}
