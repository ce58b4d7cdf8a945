//! `baton repo frozen|unfreeze NAME`: the repository freezes of DEGRADED deploys and of deploys
//! whose outcome is unknown (SPEC §6.4) from the command line. Whoever can open the data dir is
//! the operator, so the unfreeze needs no token; it is recorded as `cli:<user>`.

use crate::cli::{EXIT_OK, EXIT_USAGE, RepoCommand, open_engine};
use crate::output;
use baton::config::Config;
use baton_engine::EngineError;

pub async fn run(config: &Config, command: RepoCommand, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    match command {
        RepoCommand::Frozen => {
            let freezes = engine.store().repo_freezes().await?;
            if json {
                output::print_json(&serde_json::json!({ "freezes": freezes }));
            } else if freezes.is_empty() {
                say!("no repository is frozen");
            } else {
                for f in &freezes {
                    say!("{}: {} (by {})", output::safe(&f.repo), output::safe(&f.reason), output::safe(&f.frozen_by));
                }
            }
            Ok(EXIT_OK)
        }
        RepoCommand::Unfreeze { name } => {
            let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            match baton_engine::monitor::unfreeze(&engine, &name, &by).await {
                Ok(freeze) => {
                    if json {
                        output::print_json(&freeze);
                    } else {
                        say!(
                            "{}: unfrozen by {by} (was: {})",
                            output::safe(&freeze.repo),
                            output::safe(&freeze.reason)
                        );
                    }
                    Ok(EXIT_OK)
                }
                Err(EngineError::Invalid(message) | EngineError::NotFound(message)) => {
                    warn_line!("error: {message}");
                    Ok(EXIT_USAGE)
                }
                Err(error) => Err(error.into()),
            }
        }
    }
}
