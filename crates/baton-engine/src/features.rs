//! Kill switches (`[features]`, SPEC §5 and §13): one per optional behaviour, each on everywhere,
//! off everywhere, or set for a list of repositories. A switch that is off means exactly the
//! behaviour without it; every place the behaviour happens asks [`Features::enabled`].
//!
//! Adding a switch is adding a [`Feature`] variant with its name in [`Feature::ALL`]; the
//! configuration loader and its `config check` read the names from there.

use baton_domain::GateSpec;
use std::collections::BTreeMap;

/// An optional behaviour that can be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// Workspace hooks (`[repos.hooks]`).
    Hooks,
    /// The reconciler: finished jobs whose result was never applied, the merge queues' backstop.
    Reconciler,
    /// The reaper's reclaim of a merge lease whose holder no longer needs it.
    ReaperLeaseReclaim,
    /// The `artifact` gate.
    Artifact,
    /// The `verdict` gate.
    Verdict,
    /// The `tests_passed` gate.
    TestsPassed,
    /// The `ci_green` gate.
    CiGreen,
    /// The `deploy_status` gate.
    DeployStatus,
    /// Every `command` gate.
    Command,
    /// The coverage gate on the merge gate's re-tested tree, and the baseline's ratchet.
    Coverage,
    /// The security gate on the merge gate's re-tested tree.
    Security,
    /// The lessons journal: its auto-detectors, its prompt injection and its API (SPEC §10).
    Lessons,
    /// The post-deploy monitor window (`monitor_window_secs`); off: the one `deploy_status` check.
    Monitor,
    /// The repository freeze on a DEGRADED deploy (and the merge queue's halt while frozen); off:
    /// the task is blocked and an incident filed, but merges go on.
    Freeze,
    /// The revert of a DEGRADED deploy's commit (`revert_on_degraded`).
    Revert,
    /// Task dependencies (SPEC §6.4): the claim waits for them, the reconciler blocks cycles and
    /// cancelled dependencies. Off: declared dependencies are kept but ignored.
    Dependencies,
    /// The serial gate of repositories with `serial = true` (SPEC §6.4). Off: tasks run in parallel.
    Serial,
    /// The retro stage of `[retro] enabled` (SPEC §3): off for a repository, its pipeline has no
    /// retro stage and nothing is proposed.
    Retro,
}

impl Feature {
    /// Every switch, in the order `config check` lists them.
    pub const ALL: &'static [Feature] = &[
        Feature::Hooks,
        Feature::Reconciler,
        Feature::ReaperLeaseReclaim,
        Feature::Artifact,
        Feature::Verdict,
        Feature::TestsPassed,
        Feature::CiGreen,
        Feature::DeployStatus,
        Feature::Command,
        Feature::Coverage,
        Feature::Security,
        Feature::Lessons,
        Feature::Monitor,
        Feature::Freeze,
        Feature::Revert,
        Feature::Dependencies,
        Feature::Serial,
        Feature::Retro,
    ];

    /// The switch's key under `[features]`.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Hooks => "hooks",
            Feature::Reconciler => "reconciler",
            Feature::ReaperLeaseReclaim => "reaper_lease_reclaim",
            Feature::Artifact => "artifact",
            Feature::Verdict => "verdict",
            Feature::TestsPassed => "tests_passed",
            Feature::CiGreen => "ci_green",
            Feature::DeployStatus => "deploy_status",
            Feature::Command => "command",
            Feature::Coverage => "coverage",
            Feature::Security => "security",
            Feature::Lessons => "lessons",
            Feature::Monitor => "monitor",
            Feature::Freeze => "freeze",
            Feature::Revert => "revert",
            Feature::Dependencies => "dependencies",
            Feature::Serial => "serial",
            Feature::Retro => "retro",
        }
    }

    /// The switch named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Feature> {
        Feature::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// The switch of a gate kind. `human_approval` (a human's stop) and `mergeable` (the deploy
    /// merges only a head the merge gate re-tested) have none: without them nothing could ship.
    pub fn of_gate(gate: &GateSpec) -> Option<Feature> {
        match gate {
            GateSpec::Artifact => Some(Feature::Artifact),
            GateSpec::Verdict { .. } => Some(Feature::Verdict),
            GateSpec::TestsPassed => Some(Feature::TestsPassed),
            GateSpec::CiGreen => Some(Feature::CiGreen),
            GateSpec::DeployStatus => Some(Feature::DeployStatus),
            GateSpec::Command { .. } => Some(Feature::Command),
            GateSpec::HumanApproval | GateSpec::Mergeable => None,
        }
    }
}

/// Where one switch is on: `enabled` for the repositories listed (all when `repos` is `None`),
/// the opposite for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureScope {
    pub enabled: bool,
    pub repos: Option<Vec<String>>,
}

impl FeatureScope {
    /// On (or off) everywhere.
    pub fn everywhere(enabled: bool) -> Self {
        FeatureScope { enabled, repos: None }
    }
}

/// The kill switches; a switch not set is on everywhere (the behaviour Baton always had).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    scopes: BTreeMap<Feature, FeatureScope>,
}

impl Features {
    /// Every switch on everywhere.
    pub fn all_on() -> Self {
        Features::default()
    }

    /// Sets where `feature` is on.
    pub fn set(&mut self, feature: Feature, scope: FeatureScope) {
        self.scopes.insert(feature, scope);
    }

    /// Like [`Features::set`], returning the switches.
    pub fn with(mut self, feature: Feature, scope: FeatureScope) -> Self {
        self.set(feature, scope);
        self
    }

    /// Whether `feature` is on for the repository `repo`.
    pub fn enabled(&self, feature: Feature, repo: &str) -> bool {
        match self.scopes.get(&feature) {
            None => true,
            Some(FeatureScope { enabled, repos: None }) => *enabled,
            Some(FeatureScope { enabled, repos: Some(repos) }) => {
                if repos.iter().any(|r| r == repo) {
                    *enabled
                } else {
                    !*enabled
                }
            }
        }
    }

    /// Whether `feature` is off for every repository (its background work need not run at all).
    pub fn off_everywhere(&self, feature: Feature) -> bool {
        matches!(self.scopes.get(&feature), Some(FeatureScope { enabled: false, repos: None }))
    }

    /// The switches set, with their scopes (for `baton status` and logs).
    pub fn scopes(&self) -> impl Iterator<Item = (Feature, &FeatureScope)> {
        self.scopes.iter().map(|(f, s)| (*f, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Unset switches are on; a repo list turns the switch the given way there and the other way elsewhere.
    #[test]
    fn scopes_decide_per_repository() {
        let features = Features::all_on()
            .with(Feature::Hooks, FeatureScope::everywhere(false))
            .with(Feature::TestsPassed, FeatureScope { enabled: false, repos: Some(vec!["b".into()]) })
            .with(Feature::Reconciler, FeatureScope { enabled: true, repos: Some(vec!["a".into()]) });
        assert!(features.enabled(Feature::Artifact, "a"));
        assert!(!features.enabled(Feature::Hooks, "a") && features.off_everywhere(Feature::Hooks));
        assert!(features.enabled(Feature::TestsPassed, "a") && !features.enabled(Feature::TestsPassed, "b"));
        assert!(features.enabled(Feature::Reconciler, "a") && !features.enabled(Feature::Reconciler, "b"));
        assert!(!features.off_everywhere(Feature::Reconciler));
    }

    // Every switch's name parses back to it, and only the gates a pipeline may lose have one.
    #[test]
    fn names_round_trip_and_gates_map() {
        for feature in Feature::ALL {
            assert_eq!(Feature::parse(feature.name()), Some(*feature));
        }
        assert_eq!(Feature::parse("mergeable"), None);
        assert_eq!(Feature::of_gate(&GateSpec::TestsPassed), Some(Feature::TestsPassed));
        assert_eq!(Feature::of_gate(&GateSpec::Mergeable), None);
        assert_eq!(Feature::of_gate(&GateSpec::HumanApproval), None);
    }
}
