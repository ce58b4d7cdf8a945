//! The database file deleted or replaced under a running `baton serve`: the server stops loudly
//! (an error naming the path and what happened, a non-zero exit) instead of writing on into a
//! file nobody will read again.

use crate::support::Env;
use std::path::Path;
use std::time::{Duration, Instant};

/// Starts `baton serve`, waits until it listens, runs `damage` on the database file, and returns
/// the server's exit code and log.
fn serve_then(env: &Env, n: u32, damage: impl FnOnce(&Path)) -> (Option<i32>, String) {
    let log_path = env.root.join(format!("serve-{n}.log"));
    let mut server = env.serve(n);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_path).unwrap_or_default().contains("listening on") {
        assert!(server.child.try_wait().unwrap().is_none(), "serve exited early");
        assert!(Instant::now() < deadline, "serve never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let db = env.root.join("data").join("baton.db");
    assert!(db.exists(), "the database file is where expected");
    let damaged_at = Instant::now();
    damage(&db);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve kept running on a lost database file");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("measured: serve exited {:?} after the damage", damaged_at.elapsed());
    (status.code(), std::fs::read_to_string(&log_path).unwrap())
}

// Deleting the database file makes `baton serve` exit non-zero with an error naming the path.
#[test]
fn deleting_the_database_stops_serve_with_an_error() {
    let env = Env::new("", "");
    let (code, log) = serve_then(&env, 1, |db| std::fs::remove_file(db).unwrap());
    assert!(matches!(code, Some(c) if c != 0), "exit code {code:?}\n{log}");
    let db = env.root.join("data").join("baton.db");
    assert!(log.contains("was deleted while Baton ran") && log.contains(&db.display().to_string()), "{log}");
    assert!(log.contains("ERROR"), "{log}");
}

// Replacing the database file (a restore over the running server's file) also stops it, non-zero.
#[test]
fn replacing_the_database_stops_serve_with_an_error() {
    let env = Env::new("", "");
    let (code, log) = serve_then(&env, 1, |db| {
        let copy = db.with_extension("copy");
        std::fs::copy(db, &copy).unwrap();
        std::fs::rename(&copy, db).unwrap();
    });
    assert!(matches!(code, Some(c) if c != 0), "exit code {code:?}\n{log}");
    assert!(log.contains("was replaced by a different file"), "{log}");
}
