//! The coverage (SPEC §5.1) and security (SPEC §5) gates, run by the merge gate on the tree it has
//! just re-tested, in the same job: what they judge is exactly what lands on the default branch.
//!
//! Coverage: the repository's `coverage` command prints a line percentage (or names a report file
//! holding one), judged against `coverage_min` and the repository's baseline; a tool that fails
//! passes with a warning unless `coverage_fail_open = false`. The measurement is recorded as a
//! `coverage` event carrying the head, so the deploy step can ratchet the baseline up once that
//! head has landed. The report (`coverage_status:` front matter) is written into the job's run
//! directory, not committed: a commit would change the tree that was just tested.
//!
//! Security: the repository's `security` command; a non-zero exit is a finding, and the first
//! lines of its output go into the rollback reason.

use super::GateContext;
use super::command::run_repo_command;
use crate::features::Feature;
use baton_domain::coverage::{self, CoverageRule};
use baton_store::NewEvent;

/// Lines and bytes of a security tool's output kept in the rollback reason.
const FINDINGS_LINES_MAX: usize = 20;
const FINDINGS_BYTES_MAX: usize = 2048;

/// What the checks on a re-tested tree found.
pub(super) enum Quality {
    /// Every check passed, was skipped or failed open.
    Pass,
    /// The change must go back to development: the reason says why.
    Red(String),
    /// Baton could not run a check (the machine, the store): the job fails and is retried.
    Error(String),
}

/// Runs the coverage and then the security check on the worktree, which is at `head`.
pub(super) async fn check(ctx: &GateContext<'_>, head: &str) -> Quality {
    match coverage_check(ctx, head).await {
        Quality::Pass => security_check(ctx).await,
        other => other,
    }
}

async fn event(ctx: &GateContext<'_>, kind: &str, message: String, detail: serde_json::Value) {
    let event = NewEvent {
        task: ctx.task.id,
        at_ms: ctx.clock.now_ms(),
        kind: kind.into(),
        stage: ctx.stage.name.clone(),
        message,
        detail,
    };
    let _ = ctx.store.append_event(event).await;
}

/// The report artifact, beside the job's other run files.
async fn write_report(ctx: &GateContext<'_>, text: &str) {
    let dir = ctx.run_dir.join("docs").join("baton").join(&ctx.task.work_item_id);
    if tokio::fs::create_dir_all(&dir).await.is_ok() {
        let _ = tokio::fs::write(dir.join("coverage.md"), text).await;
    }
}

/// The percentage the coverage command reported, or why there is none.
async fn measure(ctx: &GateContext<'_>, argv: &[String]) -> Result<f64, String> {
    let out = run_repo_command(ctx, "coverage", argv).await.map_err(|error| format!("could not run: {error}"))?;
    if !out.exit.success() {
        return Err(format!("{}; output tail:\n{}", out.exit.describe(), out.tail));
    }
    // A last line naming a file of the worktree (coverage.json, lcov.info): the report is there.
    let last = out.tail.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let named = if !last.is_empty() && !last.contains(char::is_whitespace) && coverage::parse_percent(last).is_err() {
        ctx.timed(ctx.vcs.read_file(ctx.worktree, last)).await
    } else {
        None
    };
    coverage::parse_percent(named.as_deref().unwrap_or(&out.tail))
}

async fn coverage_check(ctx: &GateContext<'_>, head: &str) -> Quality {
    let repo = ctx.repo;
    let Some(argv) = repo.coverage.clone() else {
        return Quality::Pass;
    };
    if !ctx.features.enabled(Feature::Coverage, &repo.name) {
        let message = format!("coverage skipped: switched off for {} ([features] coverage)", repo.name);
        event(ctx, "gate_skipped", message, serde_json::json!({ "gate": "coverage", "feature": "coverage" })).await;
        return Quality::Pass;
    }
    let command = argv.join(" ");
    let baseline = match ctx.store.coverage_baseline(&repo.name).await {
        Ok(baseline) => baseline.map(|b| b.pct),
        Err(error) => return Quality::Error(format!("cannot read the coverage baseline: {error}")),
    };
    let measured = match measure(ctx, &argv).await {
        Ok(pct) => pct,
        Err(why) => {
            let reason = format!("coverage: `{command}` gave no figure: {why}");
            if repo.coverage_fail_open {
                let message = format!("{reason}\n(passed: coverage_fail_open is on)");
                write_report(ctx, &coverage::report("skipped", None, baseline, &message)).await;
                let detail = serde_json::json!({ "gate": "coverage", "head": head, "status": "skipped" });
                event(ctx, "warning", message, detail).await;
                return Quality::Pass;
            }
            write_report(ctx, &coverage::report("fail", None, baseline, &reason)).await;
            return Quality::Red(format!("{reason}\n(coverage_fail_open is off)"));
        }
    };
    let rule =
        CoverageRule { mode: repo.coverage_mode, min_pct: repo.coverage_min, epsilon_pct: repo.coverage_epsilon };
    let judged = coverage::judge(measured, baseline, &rule);
    let status = if judged.pass { "pass" } else { "fail" };
    write_report(ctx, &coverage::report(status, Some(measured), baseline, &judged.reason)).await;
    let detail = serde_json::json!({
        "head": head,
        "pct": measured,
        "baseline_pct": baseline,
        "status": status,
        "mode": repo.coverage_mode.name(),
    });
    event(ctx, "coverage", format!("coverage {status}: {}", judged.reason), detail).await;
    if judged.pass { Quality::Pass } else { Quality::Red(format!("coverage: {}", judged.reason)) }
}

async fn security_check(ctx: &GateContext<'_>) -> Quality {
    let repo = ctx.repo;
    let Some(argv) = repo.security.clone() else {
        return Quality::Pass;
    };
    if !ctx.features.enabled(Feature::Security, &repo.name) {
        let message = format!("security skipped: switched off for {} ([features] security)", repo.name);
        event(ctx, "gate_skipped", message, serde_json::json!({ "gate": "security", "feature": "security" })).await;
        return Quality::Pass;
    }
    let command = argv.join(" ");
    match run_repo_command(ctx, "security", &argv).await {
        Ok(out) if out.exit.success() => Quality::Pass,
        Ok(out) => Quality::Red(format!(
            "security: `{command}` {} with findings:\n{}",
            out.exit.describe(),
            findings(&out.tail)
        )),
        Err(error) => Quality::Error(format!("security: `{command}` could not run: {error}")),
    }
}

/// The first lines of a tool's output, bounded in lines and bytes.
fn findings(output: &str) -> String {
    let mut kept = String::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()).take(FINDINGS_LINES_MAX) {
        if kept.len() + line.len() + 1 > FINDINGS_BYTES_MAX {
            let room = FINDINGS_BYTES_MAX.saturating_sub(kept.len());
            let mut cut = room.min(line.len());
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            kept.push_str(&line[..cut]);
            kept.push('…');
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::findings;

    #[test]
    fn findings_keep_the_first_lines_within_the_bounds() {
        // A noisy tool's output cannot flood the rollback reason (and the next prompt).
        let many: String = (0..100).map(|n| format!("finding {n}\n")).collect();
        let kept = findings(&many);
        assert_eq!(kept.lines().count(), 20);
        assert!(kept.starts_with("finding 0\n") && kept.ends_with("finding 19"));
        let wide = "é".repeat(3000);
        assert!(findings(&wide).len() <= 2048 + '…'.len_utf8());
    }
}
