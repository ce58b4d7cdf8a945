//! `baton bench` runs and reports every figure it promises; `baton bench webhooks` gets 202 for every
//! delivery and stores each once.

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

// `baton bench webhooks` sends every delivery and redelivery it plans, each answered 202 (the
// redeliveries as duplicates), and the inbox it leaves behind (read here with the store, not
// through the benchmark's own figures) holds each delivery exactly once, all parsed by the engine
// loop. The latencies are printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_webhooks_gets_202_for_every_delivery_and_stores_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept");
    let out = Command::new(baton_exe())
        .args(["--json", "bench", "webhooks", "--deliveries", "120", "--replay-percent", "25", "--concurrency", "4"])
        .arg("--dir")
        .arg(&kept)
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(figures["deliveries"], 120, "{figures}");
    assert_eq!(figures["replays"], 30, "{figures}");
    assert_eq!((figures["accepted_new"].as_u64(), figures["accepted_duplicate"].as_u64()), (Some(120), Some(30)));
    for key in ["p50_us", "p99_us", "max_us", "deliveries_per_sec"] {
        assert!(figures[key].as_f64().unwrap() > 0.0, "{key}: {figures}");
    }
    println!("{figures}");

    let store = baton_store::SqliteStore::open(&kept.join("data").join("baton.db")).await.unwrap();
    let rows = baton_store::Store::deliveries(&store, Some("github")).await.unwrap();
    assert_eq!(rows.len(), 120, "one row per distinct delivery, none per redelivery");
    let ids: std::collections::HashSet<&str> = rows.iter().map(|r| r.delivery_id.as_str()).collect();
    assert_eq!(ids.len(), 120);
    assert!(
        rows.iter().all(|r| r.event == "issues" && r.processed_at_ms.is_some() && r.error.is_none()),
        "{:?}",
        rows[0]
    );

    // A second run into the same directory is refused, naming the flag.
    let again = Command::new(baton_exe())
        .args(["bench", "webhooks", "--deliveries", "1", "--dir"])
        .arg(&kept)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--dir"), "{}", String::from_utf8_lossy(&again.stderr));
}
