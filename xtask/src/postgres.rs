//! A throwaway PostgreSQL cluster for the test suite: Debian's `postgresql` package (installed
//! when missing), `initdb` into a temporary directory, a server on 127.0.0.1 at a free port with
//! durability off (tests never need it), stopped and deleted when the handle drops. No docker.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster; dropping it stops the server and removes its directory.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`: a superuser that may create databases.
    pub url: String,
}

/// The newest installed server's binaries (`/usr/lib/postgresql/<major>/bin`).
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let major = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Cluster {
    /// Installs PostgreSQL if needed and starts a fresh cluster.
    pub fn start() -> Result<Cluster, String> {
        if server_bin().is_none() {
            super::apt_install(
                &["postgresql"],
                "PostgreSQL is not installed, so the PostgreSQL store tests will fail.\n\
                 Install it (Debian: apt-get install postgresql), or set BATON_TEST_DATABASE_URL to a \
                 server the tests may create databases on, then re-run.",
            )?;
        }
        let bin = server_bin().ok_or("no PostgreSQL server binaries under /usr/lib/postgresql")?;
        // The server refuses to run as root: root runs it as the package's `postgres` user.
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("baton-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!("chown postgres {} failed", dir.display()));
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let cluster = Cluster { dir, bin, as_postgres, url: format!("postgres://postgres@127.0.0.1:{port}/postgres") };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &["-D", &path(&data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"],
        )?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400",
            path(&cluster.dir)
        );
        let log = cluster.dir.join("server.log");
        cluster.run("pg_ctl", &["start", "-w", "-t", "60", "-D", &path(&data), "-l", &path(&log), "-o", &options])?;
        eprintln!("xtask: PostgreSQL test cluster on 127.0.0.1:{port} ({})", cluster.dir.display());
        Ok(cluster)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command.args(args).current_dir(&self.dir).output().map_err(|e| format!("running {tool}: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        Err(format!(
            "{tool} failed ({}): {}{}\n{log}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if let Err(e) = self.run("pg_ctl", &["stop", "-m", "immediate", "-D", &path(&data)]) {
            eprintln!("xtask: stopping the PostgreSQL test cluster: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
