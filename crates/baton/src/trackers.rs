//! Builds the trackers and ticket pollers of the `[[trackers]]` entries: one `LabelTracker` and
//! `ForgePoller` per GitHub/Gitea repository, one `PlaneTracker` and `PlanePoller` per Plane
//! project, routed by the tickets' reference prefixes.

use anyhow::Context;
use baton::config::TrackerConfig;
use baton_adapters::tracker::{TicketPoller, TrackerSet};
use baton_engine::intake::IntakeSource;
use baton_forges::{
    ForgeApi, ForgePoller, GitHub, Gitea, LabelSettings, LabelTracker, Plane, PlanePoller, PlaneTracker, Secret,
};
use std::sync::Arc;

/// The tracker set (every update routed to its ticket's tracker) and the pollers.
pub fn build(trackers: &[TrackerConfig]) -> anyhow::Result<(TrackerSet, Vec<Arc<dyn TicketPoller>>)> {
    let mut set = TrackerSet::new();
    let mut pollers: Vec<Arc<dyn TicketPoller>> = Vec::new();
    for tracker in trackers {
        let rule = &tracker.rule;
        let token = Secret::new(tracker.token.clone());
        let context = || format!("the {} tracker for {}", rule.source.as_str(), rule.forge_repo);
        if rule.source == IntakeSource::Plane {
            let workspace = tracker.workspace.as_deref().unwrap_or_default();
            let plane = || Plane::with_key(&tracker.api_url, token.clone(), workspace, &rule.forge_repo);
            let mirror = PlaneTracker::new(plane().with_context(context)?);
            set = set.with(mirror.ref_prefix(), Arc::new(mirror));
            if tracker.poll_secs > 0 {
                pollers.push(Arc::new(PlanePoller::new(plane().with_context(context)?, tracker.poll_secs)));
            }
            continue;
        }
        let (owner, name) = rule.forge_repo.split_once('/').unwrap_or((&rule.forge_repo, ""));
        let api: Arc<dyn ForgeApi> = match rule.source {
            IntakeSource::Gitea => {
                Arc::new(Gitea::with_token(&tracker.api_url, token, owner, name).with_context(context)?)
            }
            _ => Arc::new(GitHub::with_token(&tracker.api_url, token, owner, name).with_context(context)?),
        };
        let labels = LabelSettings {
            status_prefix: rule.status_label_prefix.clone(),
            start_label: rule.start_label.clone(),
            approve_label: rule.approve_label.clone(),
            deploy_label: rule.deploy_label.clone(),
            stop_label: rule.stop_label.clone(),
            answer_label: rule.answer_label.clone(),
            close_on_done: rule.close_on_done,
        };
        let mirror = LabelTracker::new(api.clone(), &rule.forge_repo, labels.clone());
        set = set.with(mirror.ref_prefix(), Arc::new(mirror));
        if tracker.poll_secs > 0 {
            let approvers_limited = !rule.approvers.is_empty();
            pollers.push(Arc::new(ForgePoller::new(
                api,
                &rule.forge_repo,
                labels,
                approvers_limited,
                tracker.poll_secs,
            )));
        }
    }
    Ok((set, pollers))
}
