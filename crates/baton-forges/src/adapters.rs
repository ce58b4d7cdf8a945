//! The engine's ports on top of the clients. The trackers (status labels on GitHub/Gitea issues,
//! Plane states) and the ticket pollers live in [`crate::trackers`]; the `Forge` port is sketched
//! in the crate docs: its `fast_forward(expected_base, head)` carries no PR number, so it waits
//! for the engine change that passes the task's PR.

pub use crate::trackers::{LabelTracker, PlaneTracker, plane_state_for};
