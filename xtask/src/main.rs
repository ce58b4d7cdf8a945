//! Baton's task runner: `cargo xtask test` is the one command that runs every test (CI calls it);
//! `cargo xtask sim` runs the simulation; `cargo xtask guards` proves each regression test fails
//! when its guard is removed from the real code.
//!
//! It installs the pinned agent CLIs from npm into a cache outside the repository (reused when
//! present), bubblewrap (the agent sandbox's tests need `bwrap`) and Chromium with chromedriver (the
//! dashboard's browser tests), both with apt-get on Debian as root or with sudo, starts a throwaway
//! PostgreSQL cluster for the PostgreSQL store's tests (unless `BATON_TEST_DATABASE_URL` names one),
//! then runs the whole workspace's tests with cargo-nextest (or `cargo test` without it).

// xtask exists to run other programs.
#![allow(clippy::disallowed_methods)]

mod guards;
mod postgres;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// The agent CLIs the real-CLI suites drive, pinned.
const CLI_PACKAGES: &[(&str, &str)] = &[
    ("claude", "@anthropic-ai/claude-code@2.1.197"),
    ("codex", "@openai/codex@0.169.0"),
    ("gemini", "@google/gemini-cli@0.61.0"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("install-clis") => install_clis().map(|_| ()),
        Some("install-bwrap") => install_bwrap(),
        Some("install-chromium") => install_chromium(),
        Some("sim") => sim(&args[1..]),
        Some("guards") => {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            guards::run(&root, args.get(1).map(String::as_str))
        }
        _ => {
            eprintln!(
                "usage: cargo xtask test [nextest args…] | cargo xtask install-clis | cargo xtask install-bwrap | cargo xtask install-chromium | cargo xtask sim [--seeds N] [--first S] [--seed S] [--steps N] [--tasks MIN-MAX] [--isolation rc|serial|mixed] | cargo xtask guards [NAME]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn cli_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("BATON_CLI_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    PathBuf::from(home).join(".cache/baton/clis")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Installs the pinned CLIs into the cache unless all are already there.
fn install_clis() -> Result<PathBuf, String> {
    let dir = cli_dir();
    let missing: Vec<&str> = CLI_PACKAGES
        .iter()
        .filter(|(bin, _)| !dir.join("node_modules/.bin").join(bin).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        eprintln!("xtask: agent CLIs present in {}", dir.display());
        return Ok(dir);
    }
    if Command::new("npm").arg("--version").output().is_err() {
        let message = format!(
            "npm is not installed, so the real agent CLIs ({}) cannot be installed and their end-to-end suites cannot run.\n\
             Install Node.js and npm (Debian: apt-get install nodejs npm), then re-run.",
            missing.join(", ")
        );
        if in_ci() {
            return Err(message);
        }
        eprintln!(
            "\n!!!!! {message}\n!!!!! Continuing outside CI: the real-CLI tests will report themselves as skipped.\n"
        );
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    eprintln!("xtask: installing {} into {} …", missing.join(" "), dir.display());
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
        .arg(&dir)
        .args(CLI_PACKAGES.iter().map(|(_, pkg)| *pkg))
        .status()
        .map_err(|e| format!("running npm: {e}"))?;
    if !status.success() {
        return Err(format!("npm install failed ({status}); the real-CLI suites need these packages"));
    }
    Ok(dir)
}

/// Whether `program --version` runs.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

/// Installs bubblewrap with apt-get when `bwrap` is missing (Debian/Ubuntu, as root or through
/// sudo); otherwise says how, since the sandbox tests fail without it.
fn install_bwrap() -> Result<(), String> {
    if runs("bwrap", &["--version"]) || std::path::Path::new("/usr/bin/bwrap").exists() {
        eprintln!("xtask: bubblewrap present");
        return Ok(());
    }
    let note = "bubblewrap (`bwrap`) is not installed, so the agent sandbox tests will fail.\n\
                Install it (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), then re-run.";
    apt_install(&["bubblewrap"], note)
}

/// Installs Chromium and chromedriver with apt-get when either is missing: the dashboard's
/// browser tests drive real headless Chromium and fail (saying how to install it) without them.
fn install_chromium() -> Result<(), String> {
    if runs("chromedriver", &["--version"])
        && (runs("chromium", &["--version"]) || runs("chromium-browser", &["--version"]))
    {
        eprintln!("xtask: chromium and chromedriver present");
        return Ok(());
    }
    let note = "Chromium and chromedriver are not installed, so the dashboard's browser tests will fail.\n\
                Install them (Debian: apt-get install chromium chromium-driver), then re-run.";
    apt_install(&["chromium", "chromium-driver"], note)
}

/// `apt-get install -y packages` as root or through password-less sudo (refreshing the package
/// lists once if the first try fails); without apt-get or the rights, prints `note` and goes on.
fn apt_install(packages: &[&str], note: &str) -> Result<(), String> {
    if !runs("apt-get", &["--version"]) {
        eprintln!("\n!!!!! {note}\n");
        return Ok(());
    }
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root && !runs("sudo", &["-n", "true"]) {
        eprintln!("\n!!!!! {note}\n!!!!! (not root and no password-less sudo: not installing it myself)\n");
        return Ok(());
    }
    let apt = |args: &[&str]| {
        let mut command = if is_root { Command::new("apt-get") } else { Command::new("sudo") };
        if !is_root {
            command.args(["-n", "apt-get"]);
        }
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("running apt-get: {e}"))
    };
    let names = packages.join(" ");
    eprintln!("xtask: installing {names} with apt-get …");
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend_from_slice(packages);
    if apt(&install)?.success() {
        return Ok(());
    }
    // The package lists may be missing (fresh containers): refresh them once and retry.
    let _ = apt(&["update"])?;
    let status = apt(&install)?;
    if status.success() { Ok(()) } else { Err(format!("apt-get install {names} failed ({status}); {note}")) }
}

/// Free space below which the tests are likely to fail for want of disk (a clean debug build,
/// the end-to-end tests' repositories and worktrees at their peak): about 5 GB measured.
const DISK_NEEDED_MB: u64 = 6_000;

/// Says so, before any test runs, when the build or temporary directory has less free space than
/// the tests need: a test that then fails with "No space left on device" is explained up front.
fn warn_if_disk_short() {
    let temp = std::env::temp_dir();
    for dir in [PathBuf::from("."), temp] {
        let Ok(out) = Command::new("df").arg("-Pk").arg(&dir).output() else { continue };
        let text = String::from_utf8_lossy(&out.stdout);
        // `Filesystem 1024-blocks Used Available Capacity Mounted-on`, then one line.
        let free_kb = text.lines().nth(1).and_then(|line| line.split_whitespace().nth(3)?.parse::<u64>().ok());
        if let Some(free_kb) = free_kb
            && free_kb / 1024 < DISK_NEEDED_MB
        {
            eprintln!(
                "xtask: warning: only {} MB free for {} (the tests need about {DISK_NEEDED_MB} MB); \
                 a test may fail with \"No space left on device\"",
                free_kb / 1024,
                dir.display()
            );
        }
    }
}

fn test(extra: &[String]) -> Result<(), String> {
    warn_if_disk_short();
    install_bwrap()?;
    install_chromium()?;
    let dir = install_clis()?;
    // The PostgreSQL store's tests run on a throwaway cluster unless one is named already.
    let cluster = match std::env::var("BATON_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            eprintln!("xtask: PostgreSQL tests use BATON_TEST_DATABASE_URL");
            None
        }
        _ => Some(postgres::Cluster::start()?),
    };
    let has_nextest = Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success());
    let mut command = Command::new("cargo");
    if has_nextest {
        command.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        eprintln!("xtask: cargo-nextest not found; using cargo test");
        command.args(["test", "--workspace", "--no-fail-fast"]);
    }
    command.args(extra).env("BATON_CLI_DIR", &dir);
    if let Some(cluster) = &cluster {
        command.env("BATON_TEST_DATABASE_URL", &cluster.url);
    }
    let status = command.status().map_err(|e| format!("running cargo: {e}"))?;
    drop(cluster);
    if status.success() { Ok(()) } else { Err(format!("tests failed ({status})")) }
}

/// The deterministic simulation (crates/baton-sim), built with optimizations: seeds per second matter.
fn sim(extra: &[String]) -> Result<(), String> {
    let status = Command::new("cargo")
        .args(["run", "--quiet", "--release", "-p", "baton-sim", "--"])
        .args(extra)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("the simulation failed ({status})")) }
}
