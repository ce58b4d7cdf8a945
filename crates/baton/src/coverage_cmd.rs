//! `baton coverage show|baseline set`: the coverage baselines (SPEC §5.1) from the command line.
//! Whoever can open the data dir is the operator, so the override needs no token; it is recorded
//! as `cli:<user>` with its reason.

use crate::cli::{CoverageBaselineCommand, CoverageCommand, EXIT_OK, EXIT_USAGE, open_engine};
use crate::output;
use baton::config::Config;
use baton_engine::EngineError;

pub async fn run(config: &Config, command: CoverageCommand, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    match command {
        CoverageCommand::Show => {
            let baselines = engine.coverage_baselines().await?;
            if json {
                output::print_json(&serde_json::json!({ "baselines": baselines }));
            } else if baselines.is_empty() {
                say!("no coverage baseline yet (the first merge that measures coverage records one)");
            } else {
                for b in &baselines {
                    say!(
                        "{}: {:.2}% (set by {}: {})",
                        output::safe(&b.repo),
                        b.pct,
                        output::safe(&b.set_by),
                        output::safe(&b.reason)
                    );
                }
            }
            Ok(EXIT_OK)
        }
        CoverageCommand::Baseline(CoverageBaselineCommand::Set { repo, pct, reason }) => {
            let Ok(pct) = pct.trim_end_matches('%').parse::<f64>() else {
                warn_line!("error: PCT must be a percentage such as 82.5, not `{pct}`");
                return Ok(EXIT_USAGE);
            };
            let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            match engine.set_coverage_baseline(&repo, pct, &reason, &by).await {
                Ok(set) => {
                    if json {
                        output::print_json(&set);
                    } else {
                        say!("{}: coverage baseline {:.2}%", output::safe(&set.repo), set.pct);
                    }
                    Ok(EXIT_OK)
                }
                Err(EngineError::Invalid(message)) => {
                    warn_line!("error: {message}");
                    Ok(EXIT_USAGE)
                }
                Err(error) => Err(error.into()),
            }
        }
    }
}
