//! `baton init` and `baton serve`: the engine's claim loop plus the HTTP API in one process.

use crate::cli::{EXIT_ERROR, EXIT_OK, open_engine};
use anyhow::Context;
use baton::config::{Config, init_template};
use std::io::Read;
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

/// The API token: from configuration, else the one stored in the data dir, else a new random one.
fn api_token(config: &Config) -> anyhow::Result<String> {
    if let Some(token) = &config.server.api_token {
        return Ok(token.clone());
    }
    let path = config.engine.data_dir.join("api-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_string());
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("reading /dev/urandom")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &token)?;
    eprintln!("generated an API token in {} (set server.api_token to choose one)", path.display());
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
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

// The server is the composition root: it starts the engine loop and the HTTP server on the runtime.
#[allow(clippy::disallowed_methods)]
pub async fn serve(config: Config) -> anyhow::Result<u8> {
    let engine = open_engine(&config).await?;
    let _lock = lock_data_dir(&config.engine.data_dir)?;
    let token = api_token(&config)?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let engine_loop = tokio::spawn(engine.clone().run(shutdown_rx.clone()));
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("listening on {} (server.listen)", config.server.listen))?;
    tracing::info!(
        "baton serve: listening on http://{} · data dir {} · {} repo(s)",
        config.server.listen,
        config.engine.data_dir.display(),
        config.engine.repos.len()
    );
    let state =
        baton_http::AppState { engine: engine.clone(), api_token: Some(token), started_at_ms: engine.clock().now_ms() };
    let mut http_shutdown = shutdown_rx.clone();
    let server = axum::serve(listener, baton_http::app(state)).with_graceful_shutdown(async move {
        let _ = http_shutdown.changed().await;
    });
    let server_task = tokio::spawn(async move { server.await });
    wait_for_signal().await;
    tracing::info!("shutting down: running agents keep running and are recovered on the next start");
    let _ = shutdown_tx.send(true);
    let _ = engine_loop.await;
    match server_task.await {
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
