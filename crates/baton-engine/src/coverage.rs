//! The coverage baselines' read and override side (SPEC §5.1): `GET /api/coverage`,
//! `POST /api/coverage/baseline` and `baton coverage …`. The gate and the ratchet live in
//! `gates/quality.rs` and the deploy step; this is where a person sets a baseline either way.

use crate::{Engine, EngineError};
use baton_store::CoverageBaseline;

/// Characters of an override's reason accepted.
pub const COVERAGE_REASON_CHARS_MAX: usize = 500;

impl Engine {
    /// Every repository's recorded coverage baseline.
    pub async fn coverage_baselines(&self) -> Result<Vec<CoverageBaseline>, EngineError> {
        Ok(self.store().coverage_baselines().await?)
    }

    /// Sets `repo`'s baseline to `pct` (up or down), recorded with the principal and the reason.
    /// A repository Baton does not know, a percentage outside 0–100 or an empty reason is refused
    /// and nothing is stored.
    pub async fn set_coverage_baseline(
        &self,
        repo: &str,
        pct: f64,
        reason: &str,
        principal: &str,
    ) -> Result<CoverageBaseline, EngineError> {
        if self.settings().repo(repo).is_none() {
            let known: Vec<&str> = self.settings().repos.iter().map(|r| r.name.as_str()).collect();
            return Err(EngineError::Invalid(format!(
                "no repository named `{repo}`; known: {}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
        if !(pct.is_finite() && (0.0..=100.0).contains(&pct)) {
            return Err(EngineError::Invalid(format!("pct {pct} is out of range: give a percentage from 0 to 100")));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(EngineError::Invalid("reason is empty: say why the baseline is set by hand".into()));
        }
        if let Err(problem) = baton_domain::text::check_line(reason, COVERAGE_REASON_CHARS_MAX) {
            return Err(EngineError::Invalid(format!("reason: {problem}")));
        }
        let now = self.clock().now_ms();
        self.store().set_coverage_baseline(repo, pct, principal, reason, now).await?;
        tracing::info!(repo, pct, principal, reason, "coverage baseline set by hand");
        self.store()
            .coverage_baseline(repo)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("the coverage baseline of {repo}")))
    }
}
