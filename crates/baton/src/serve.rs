//! `baton init` and `baton serve`: the engine's claim loop plus the HTTP API in one process.

use crate::cli::{EXIT_ERROR, EXIT_OK, open_engine};
use anyhow::Context;
use baton::config::{Config, init_template};
use std::path::Path;

/// Writes a commented `baton.toml` into `dir`, refusing to overwrite one.
pub fn init(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("baton.toml");
    if path.exists() {
        anyhow::bail!("{} already exists; edit it, or remove it to start over", path.display());
    }
    std::fs::write(&path, init_template("baton-data")).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    println!("next: add a [[repos]] entry, then `baton --config {} config check`", path.display());
    Ok(())
}

/// Holds an exclusive lock on `<data_dir>/serve.lock` for the life of the server: two servers on
/// one database would each think the other's running jobs were orphans.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = data_dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        anyhow::anyhow!("another `baton serve` already runs on {} ({errno}); stop it first", data_dir.display())
    })
}

/// Says how to get a token when none can act, and that the old plaintext token file is no longer
/// used (tokens are stored as digests; an agent must never find one on disk).
async fn warn_about_tokens(config: &Config, engine: &baton_engine::Engine) {
    let old = config.engine.data_dir.join("api-token");
    if old.exists() {
        match std::fs::remove_file(&old) {
            Ok(()) => tracing::warn!(
                "removed {}: API tokens are now named and stored only as digests; create one with \
                 `baton token create NAME --scope act`",
                old.display()
            ),
            Err(error) => tracing::warn!("{} is no longer used and could not be removed: {error}", old.display()),
        }
    }
    let named = engine.store().api_tokens().await.map(|t| t.iter().any(|t| t.revoked_at_ms.is_none()));
    if config.server.api_token.is_none() && matches!(named, Ok(false)) {
        tracing::warn!(
            "no API token exists, so HTTP actions are refused; create one with \
             `baton token create NAME --scope act` (it is shown once)"
        );
    }
}

// The server is the composition root: it starts the engine loop and the HTTP server on the runtime.
#[allow(clippy::disallowed_methods)]
pub async fn serve(config: Config) -> anyhow::Result<u8> {
    let engine = open_engine(&config).await?;
    let _lock = lock_data_dir(&config.engine.data_dir)?;
    warn_about_tokens(&config, &engine).await;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut engine_loop = tokio::spawn(engine.clone().run(shutdown_rx.clone()));
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("listening on {} (server.listen)", config.server.listen))?;
    let bound = listener.local_addr().unwrap_or(config.server.listen);
    tracing::info!(
        "baton serve: listening on http://{} · data dir {} · {} repo(s)",
        bound,
        config.engine.data_dir.display(),
        config.engine.repos.len()
    );
    if let Some(sandbox) = engine.sandbox() {
        let agents: Vec<&baton_engine::AgentSettings> = config.engine.agents.values().collect();
        tracing::info!("baton serve: {}", sandbox.startup_report(&agents));
    }
    let state = baton_http::AppState {
        engine: engine.clone(),
        api_token: config.server.api_token.clone(),
        read_requires_token: config.server.read_requires_token,
        started_at_ms: engine.clock().now_ms(),
        webhooks: config.webhooks.clone(),
        observability: baton_http::Observability {
            metrics: config.server.metrics,
            queue_api: config.server.queue_api,
            events: config.server.events,
        },
        dashboard: baton_http::Dashboard::new(config.server.dashboard),
    };
    let settings = baton_http::server::ServerSettings {
        max_connections: config.server.max_connections,
        header_timeout: std::time::Duration::from_secs(config.server.header_timeout_secs),
        idle_timeout: std::time::Duration::from_secs(config.server.idle_timeout_secs),
        allowed_hosts: config.server.allowed_hosts.clone(),
        ..Default::default()
    };
    let mut http_shutdown = shutdown_rx.clone();
    let server_task = tokio::spawn(baton_http::server::serve_with(listener, state, settings, async move {
        let _ = http_shutdown.changed().await;
    }));
    // The engine loop ends on its own only when the store is lost (its database file deleted or
    // replaced): then the whole server stops, loudly, rather than keep answering from a lost file.
    let engine_ended = tokio::select! {
        _ = wait_for_signal() => false,
        _ = &mut engine_loop => true,
    };
    if engine_ended {
        let why = engine.store_lost().unwrap_or_else(|| "the engine loop ended".into());
        tracing::error!("stopping: the store can no longer be used: {why}");
    } else {
        tracing::info!("shutting down: running agents keep running and are recovered on the next start");
    }
    let _ = shutdown_tx.send(true);
    if !engine_ended {
        let _ = engine_loop.await;
    }
    let served = server_task.await;
    if engine_ended {
        return Ok(EXIT_ERROR);
    }
    match served {
        Ok(Ok(())) => Ok(EXIT_OK),
        Ok(Err(error)) => {
            tracing::error!("HTTP server error: {error}");
            Ok(EXIT_ERROR)
        }
        Err(error) => Err(error.into()),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
