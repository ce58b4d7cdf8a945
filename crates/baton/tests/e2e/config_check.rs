//! `baton config check` on a broken file lists each error with its key and a fix.

use crate::support::baton_exe;
use std::process::Command;

// A file with problems in several sections: every one is reported, with key and fix, exit 2.
#[test]
fn config_check_lists_every_error_with_key_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("baton.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"not an address\"\n\n[limits]\nrunning_max = 0\n\n\
         [[repos]]\nname = \"demo\"\npath = \"missing-dir\"\nprefix = \"lower\"\n\n\
         [agents.default]\nadapter = \"script\"\n",
    )
    .unwrap();
    let out = Command::new(baton_exe()).arg("--config").arg(&path).args(["config", "check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for key in ["server.listen", "limits.running_max", "repos[0].path", "repos[0].prefix", "agents.default"] {
        assert!(stderr.contains(key), "missing `{key}` in:\n{stderr}");
    }
    assert!(stderr.matches("fix:").count() >= 5, "{stderr}");
}

// A valid file passes with exit 0; a missing file is an error naming it.
#[test]
fn config_check_accepts_valid_and_rejects_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.toml");
    let out = Command::new(baton_exe()).arg("--config").arg(&missing).args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
    let out = Command::new(baton_exe()).args(["init", "--dir"]).arg(tmp.path()).output().unwrap();
    assert!(out.status.success());
    let out = Command::new(baton_exe())
        .arg("--config")
        .arg(tmp.path().join("baton.toml"))
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
