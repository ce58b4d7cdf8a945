//! `baton token create|list|revoke`: the named, scoped API tokens (SPEC §16). A token is printed
//! once at creation and stored only as a digest; whoever runs these commands can open the data
//! dir, so they act as the operator.

use crate::cli::{EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, TokenCommand, open_engine};
use crate::output;
use baton::config::Config;
use baton_engine::{EngineError, Scope};

pub async fn run(config: &Config, command: TokenCommand, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    match command {
        TokenCommand::Create { name, scope } => {
            let Some(scope) = Scope::parse(&scope) else {
                warn_line!(
                    "error: `--scope {scope}` is not a scope; use read, act, admin or ingest (ingest may only report usage)"
                );
                return Ok(EXIT_USAGE);
            };
            let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            match engine.create_token(&name, scope, &by).await {
                Ok(token) => {
                    if json {
                        output::print_json(
                            &serde_json::json!({ "name": name, "scope": scope.as_str(), "token": token }),
                        );
                    } else {
                        say!("{token}");
                        warn_line!(
                            "created token `{name}` with the `{scope}` scope; it is shown only now (Baton keeps a \\
                             digest). Send it as `Authorization: Bearer <token>`; inputs made with it are recorded \\
                             as `api:{name}`."
                        );
                    }
                    Ok(EXIT_OK)
                }
                Err(EngineError::Invalid(message)) => {
                    warn_line!("error: {message}");
                    Ok(EXIT_USAGE)
                }
                Err(other) => Err(other.into()),
            }
        }
        TokenCommand::List => {
            let tokens = engine.store().api_tokens().await?;
            if json {
                output::print_json(&tokens);
            } else if tokens.is_empty() {
                say!("no tokens; create one with `baton token create NAME --scope act`");
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.scope.clone(),
                            t.created_by.clone(),
                            if t.revoked_at_ms.is_some() { "revoked".into() } else { "live".into() },
                        ]
                    })
                    .collect();
                output::table(&["NAME", "SCOPE", "CREATED BY", "STATE"], &rows);
            }
            Ok(EXIT_OK)
        }
        TokenCommand::Revoke { name } => {
            if engine.store().revoke_api_token(&name, engine.clock().now_ms()).await? {
                say!("revoked token `{name}`; requests with it are refused from now on");
                Ok(EXIT_OK)
            } else {
                warn_line!("error: no live token named `{name}`; `baton token list` shows them");
                Ok(EXIT_NOT_FOUND)
            }
        }
    }
}
