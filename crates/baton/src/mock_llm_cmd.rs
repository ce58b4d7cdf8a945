//! `baton mock-llm`: serves a scripted model API (Anthropic, OpenAI Responses, Gemini) so the real
//! `claude`, `codex` and `gemini` CLIs run offline. The first stdout line is the bound address
//! (`listening on http://127.0.0.1:PORT`), for scripts and tests started on port 0.

use crate::cli::{EXIT_OK, EXIT_USAGE};
use anyhow::Context;
use baton_mock_llm::{MockState, Script};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

/// Loads `script` and serves it on `listen` until Ctrl-C or SIGTERM.
pub async fn run(script: &Path, listen: SocketAddr) -> anyhow::Result<u8> {
    let script = match Script::from_path(script) {
        Ok(script) => script,
        Err(error) => {
            eprintln!("error: {error}");
            eprintln!("  the format is described in docs/mock-llm.md");
            return Ok(EXIT_USAGE);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {listen}: {error}; pass another address with --listen");
            return Ok(EXIT_USAGE);
        }
    };
    let addr = listener.local_addr().context("reading the bound address")?;
    let conversations = script.conversations.len();
    // Printed and flushed before serving: whoever started us reads the port from this line.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{addr}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    eprintln!("baton mock-llm: {conversations} conversation(s); request log at http://{addr}/_mock/requests");
    tokio::select! {
        served = baton_mock_llm::serve(listener, MockState::new(script)) => {
            served.with_context(|| format!("serving on {addr}"))?;
        }
        () = crate::serve::wait_for_signal() => {}
    }
    Ok(EXIT_OK)
}
