//! `baton bench` runs and reports every figure it promises.

use crate::support::baton_exe;
use std::process::Command;

// The benchmark reports decide, the three store transactions, the shim spawn bare and sandboxed
// (bubblewrap is installed where the tests run) and a git call, each with positive latencies (it
// measures; the figures themselves are not asserted).
#[test]
fn bench_reports_every_operation() {
    let out = Command::new(baton_exe()).args(["--json", "bench"]).env_remove("BATON_CONFIG").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = figures.as_array().unwrap().iter().map(|f| f["what"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(names.iter().any(|n| n.contains("bwrap sandbox")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("advance")) && names.iter().any(|n| n.contains("shim")));
    assert!(
        figures
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["mean_us"].as_f64().unwrap() > 0.0 && f["runs"].as_u64().unwrap() > 0)
    );
}
