//! `baton db migrate --to postgres://…`: copies the SQLite store of the data directory into an
//! empty PostgreSQL database (`baton_store_postgres::import`), with a progress line per table, a
//! verification table read back from PostgreSQL, and the next step. The SQLite file is left as it
//! was, so going back is keeping it.

use crate::cli::{DbCommand, EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::output;
use anyhow::Context;
use baton::config::Config;
use baton_store::StoreError;
use baton_store_postgres::import::{self, ImportReport, Progress};
use baton_store_postgres::{check_url, is_postgres_url, redact_url, url_password};
use std::io::Write;
use std::path::Path;

/// An example target for messages (never a real password).
const EXAMPLE_URL: &str = "postgres://baton:PASSWORD@db.example.com:5432/baton";

pub async fn run(config: &Config, command: DbCommand, json: bool) -> anyhow::Result<u8> {
    match command {
        DbCommand::Migrate { to } => migrate(config, &to, json).await,
    }
}

async fn migrate(config: &Config, to: &str, json: bool) -> anyhow::Result<u8> {
    if !is_postgres_url(to) {
        warn_line!(
            "error: `--to` takes a PostgreSQL URL (postgres://…), e.g. `--to {EXAMPLE_URL}`; got `{}`",
            masked(&redact_url(to), to)
        );
        return Ok(EXIT_USAGE);
    }
    if let Err(why) = check_url(to) {
        warn_line!("error: `--to`: {}; e.g. `--to {EXAMPLE_URL}`", masked(&why, to));
        return Ok(EXIT_USAGE);
    }
    let data_dir = &config.engine.data_dir;
    let source = data_dir.join("baton.db");
    if !source.is_file() {
        anyhow::bail!(
            "no SQLite database at {}: nothing to migrate (is this the configuration whose data directory holds \
             baton.db? see --config and server.data_dir)",
            source.display()
        );
    }
    let _lock = lock_out_serve(data_dir)?;
    let target = redact_url(to);
    let mut lines = TableLines::new(output_is_terminal());
    let result = import::import_sqlite(&source, to, &mut |p| lines.show(p)).await;
    lines.finish();
    let report = result.map_err(|e| anyhow::anyhow!("{}", masked(&describe(e), to)))?;
    let mismatches = report.mismatches();
    if json {
        output::print_json(&report_json(&report, &source, &target));
    } else {
        print_verification(&report);
    }
    if !mismatches.is_empty() {
        warn_line!(
            "error: the copy of {} does not match the SQLite file (see the table); the SQLite file is unchanged: \
             keep using it, drop the PostgreSQL database and migrate again",
            mismatches.join(", ")
        );
        return Ok(EXIT_ERROR);
    }
    let next = next_step(&source, &target);
    if json {
        warn_line!("{next}");
    } else {
        say!("{next}");
    }
    Ok(EXIT_OK)
}

/// Takes `baton serve`'s own lock on the data directory for the whole copy: a server writing to
/// the file meanwhile would leave PostgreSQL behind it (and no server can start during the copy).
fn lock_out_serve(data_dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = data_dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            anyhow::anyhow!("a `baton serve` is running on {}; stop it first", data_dir.display())
        } else {
            anyhow::anyhow!("cannot lock {} ({errno})", path.display())
        }
    })
}

/// The error's message: a refusal or a missing file reads as the sentence it is, without the
/// store's "database error:" prefix.
fn describe(error: StoreError) -> String {
    match error {
        StoreError::Database(message) | StoreError::NotFound(message) => message,
        other => other.to_string(),
    }
}

/// `text` with the URL's password masked wherever it appears (error texts from below may quote it).
fn masked(text: &str, url: &str) -> String {
    let text = text.replace(url, &redact_url(url));
    match url_password(url) {
        Some(password) => text.replace(&password, "***"),
        None => text,
    }
}

fn output_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// The progress on stderr: one line per table, rewritten in place on a terminal as batches land,
/// written once when the table is done otherwise (a log stays readable).
struct TableLines {
    terminal: bool,
    /// The table being copied and its latest progress.
    current: Option<Progress>,
    width: usize,
}

impl TableLines {
    fn new(terminal: bool) -> Self {
        let width = import::table_names().iter().map(|n| n.len()).max().unwrap_or(0);
        TableLines { terminal, current: None, width }
    }

    fn render(&self, p: &Progress) -> String {
        format!("{:<width$}  {}/{}", p.table, p.copied, p.total, width = self.width)
    }

    fn show(&mut self, progress: &Progress) {
        if self.current.as_ref().is_some_and(|c| c.table != progress.table) {
            self.end_line();
        }
        if self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{}", self.render(progress));
            let _ = stderr.flush();
        }
        self.current = Some(progress.clone());
    }

    /// Ends the current table's line.
    fn end_line(&mut self) {
        let Some(current) = self.current.take() else { return };
        if self.terminal {
            let _ = writeln!(std::io::stderr().lock());
        } else {
            warn_line!("{}", self.render(&current));
        }
    }

    fn finish(&mut self) {
        self.end_line();
    }
}

/// The verification as a table: rows on each side and the content figures.
fn print_verification(report: &ImportReport) {
    let rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            let figures: Vec<String> = t
                .figures
                .iter()
                .map(|f| {
                    if f.sqlite == f.postgres {
                        format!("{} {}", f.name, f.sqlite)
                    } else {
                        format!("{} {} ≠ {}", f.name, f.sqlite, f.postgres)
                    }
                })
                .collect();
            vec![
                t.table.to_string(),
                t.sqlite_rows.to_string(),
                t.postgres_rows.to_string(),
                figures.join(", "),
                if t.matches() { "ok".into() } else { "MISMATCH".into() },
            ]
        })
        .collect();
    output::table(&["TABLE", "SQLITE", "POSTGRESQL", "CONTENT CHECK", "RESULT"], &rows);
    say!("copied {} rows in {} tables", report.rows(), report.tables.len());
}

fn report_json(report: &ImportReport, source: &Path, target: &str) -> serde_json::Value {
    let tables: Vec<serde_json::Value> = report
        .tables
        .iter()
        .map(|t| {
            let figures: Vec<serde_json::Value> = t
                .figures
                .iter()
                .map(|f| serde_json::json!({ "name": f.name, "sqlite": f.sqlite, "postgres": f.postgres }))
                .collect();
            serde_json::json!({
                "table": t.table,
                "sqlite_rows": t.sqlite_rows,
                "postgres_rows": t.postgres_rows,
                "figures": figures,
                "ok": t.matches(),
            })
        })
        .collect();
    serde_json::json!({
        "source": source.display().to_string(),
        "target": target,
        "rows": report.rows(),
        "ok": report.mismatches().is_empty(),
        "mismatches": report.mismatches(),
        "tables": tables,
    })
}

fn next_step(source: &Path, target: &str) -> String {
    format!(
        "next: set server.database_url = \"{target}\" in baton.toml (with the real password, or set \
         BATON_DATABASE_URL) and restart `baton serve`; {} is left untouched: to go back, remove the setting",
        source.display()
    )
}
