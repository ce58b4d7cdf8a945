//! `baton bench` runs and reports every figure it promises; `baton bench webhooks` gets 202 for every
//! delivery and stores each once.

use crate::support::baton_exe;
use std::process::Command;

// The benchmark reports decide, the three store transactions, the spawn through the embedded shim
// and through `baton shim`, the embedded shim's spawn sandboxed (bubblewrap is installed where the
// tests run) and a git call, each with positive latencies (it
// measures; the figures themselves are not asserted).
#[test]
fn bench_reports_every_operation() {
    let out = Command::new(baton_exe()).args(["--json", "bench"]).env_remove("BATON_CONFIG").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = figures.as_array().unwrap().iter().map(|f| f["what"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.iter().any(|n| n.contains("embedded shim + bwrap sandbox")), "{names:?}");
    assert!(names.contains(&"spawn agent via baton shim"), "{names:?}");
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

    let store = baton_store_sqlite::SqliteStore::open(&kept.join("data").join("baton.db")).await.unwrap();
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

// `baton bench pipeline` carries three tickets to done through the whole default pipeline (human
// gates off) and reports every figure it promises: each ticket merged once, at least one job per
// stage and some events per ticket, a database on disk. The speeds are printed, not asserted.
#[test]
fn bench_pipeline_carries_every_ticket_to_done_and_reports_every_figure() {
    let out = Command::new(baton_exe())
        .args(["bench", "pipeline", "--tickets", "3", "--json"])
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{figures}");
    assert_eq!(figures["scenario"], "pipeline", "{figures}");
    assert_eq!((figures["tickets"].as_u64(), figures["tickets_done"].as_u64()), (Some(3), Some(3)), "{figures}");
    assert_eq!(figures["tickets_not_done"], 0, "{figures}");
    assert_eq!(figures["merges"], 3, "one merge per ticket: {figures}");
    for key in ["wall_s", "cpu_s", "merges_per_s", "merge_phase_s", "events_per_ticket"] {
        assert!(figures[key].as_f64().unwrap() > 0.0, "{key}: {figures}");
    }
    assert!(figures["jobs_per_ticket"].as_f64().unwrap() >= 7.0, "a job per stage at least: {figures}");
    assert!(figures["db_bytes"].as_u64().unwrap() > 0, "{figures}");
    assert_eq!((figures["parallel"].as_u64(), figures["test_sleep_ms"].as_u64()), (Some(4), Some(0)));
    assert!(figures.get("baseline").is_none() && figures.get("ratio").is_none(), "no --baseline: {figures}");
    assert_eq!(figures["agent"], "shell", "the agents are `sh -c`, as the baseline's stages: {figures}");
    assert_eq!(figures["unsandboxed"], false, "Baton's own sandbox setting by default: {figures}");
}

// `--unsandboxed`: Baton's agents run with `[sandbox] mode = "off"` (the engine says so as it
// starts), as the plain baseline's stages run, and every ticket still reaches done.
#[test]
fn bench_pipeline_runs_batons_agents_without_the_sandbox_when_asked() {
    let out = Command::new(baton_exe())
        .args(["bench", "pipeline", "--tickets", "2", "--unsandboxed", "--json"])
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((figures["tickets_done"].as_u64(), figures["merges"].as_u64()), (Some(2), Some(2)), "{figures}");
    assert_eq!((&figures["unsandboxed"], &figures["sandboxed"]), (&true.into(), &false.into()), "{figures}");
    assert!(stderr.contains("sandbox mode is \"off\""), "the engine ran with the sandbox off: {stderr}");
    // The like-for-like pairs: an unsandboxed Baton is compared with the plain baseline only.
    let both = Command::new(baton_exe())
        .args(["bench", "pipeline", "--tickets", "1", "--unsandboxed", "--baseline", "--sandboxed-baseline"])
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "{}", String::from_utf8_lossy(&both.stderr));
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("--unsandboxed"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
}

// `--agent script`: the same pipeline with Baton's own script agent in every stage (a `baton`
// process per agent run) carries every ticket to done too, and says which agent it ran.
#[test]
fn bench_pipeline_runs_the_script_agent_when_asked() {
    let out = Command::new(baton_exe())
        .args(["bench", "pipeline", "--tickets", "2", "--agent", "script", "--json"])
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((figures["tickets_done"].as_u64(), figures["merges"].as_u64()), (Some(2), Some(2)), "{figures}");
    assert_eq!(figures["agent"], "script", "{figures}");
}

// `--runs 2 --baseline`: Baton and the baseline measured alternately, twice; each run's pair is
// listed with its processor time, and the figures shown are one of those runs.
#[test]
fn bench_pipeline_runs_alternate_with_the_baseline_and_list_every_pair() {
    let out = Command::new(baton_exe())
        .args(["bench", "pipeline", "--tickets", "2", "--runs", "2", "--baseline", "--json"])
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = figures["runs"].as_array().expect("the runs are listed");
    assert_eq!(runs.len(), 2, "{figures}");
    for run in runs {
        for key in ["wall_s", "cpu_s", "baseline_s", "baseline_cpu_s", "wall_ratio"] {
            assert!(run[key].as_f64().unwrap() > 0.0, "{key}: {figures}");
        }
    }
    let shown = figures["wall_s"].as_f64().unwrap();
    assert!(runs.iter().any(|r| r["wall_s"].as_f64() == Some(shown)), "the figures are one run's: {figures}");
    assert!(figures["baseline"]["cpu_s"].as_f64().unwrap() > 0.0, "{figures}");
}

// `bench/baseline.sh` does the same git and process work for three tickets and prints its one
// JSON line; the repository it leaves holds one squashed commit per ticket on main, and no
// worktree or task branch.
#[test]
fn bench_baseline_script_merges_every_ticket_and_prints_its_json_line() {
    baseline_merges_every_ticket(&[]);
}

// With `--sandbox` its agent stages run under bubblewrap, as Baton's do, and the work is the same.
#[test]
fn bench_baseline_script_with_sandboxed_agents_does_the_same_work() {
    baseline_merges_every_ticket(&["--sandbox"]);
}

fn baseline_merges_every_ticket(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("baseline");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/baseline.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--tickets", "3", "--parallel", "2", "--test-sleep-ms", "10"])
        .args(extra)
        .arg("--dir")
        .arg(&kept)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let figures: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(figures["tickets"], 3, "{figures}");
    assert!(figures["seconds"].as_f64().unwrap() > 0.0 && figures["merges_per_s"].as_f64().unwrap() > 0.0);
    let repo = kept.join("repo");
    let log = crate::support::git(&repo, &["log", "--format=%s", "main"]);
    let mut subjects: Vec<&str> = log.lines().collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["BENCH-001", "BENCH-002", "BENCH-003", "Initial commit"], "{log}");
    // The same files, with the same contents, as the pipeline bench's agents write for a ticket.
    let files = crate::support::git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    for file in [
        "README.md",
        "tickets/.keep",
        "tickets/BENCH-002.txt",
        "docs/baton/BENCH-002/01-analysis.md",
        "docs/baton/BENCH-002/02-architecture.md",
        "docs/baton/BENCH-002/04-review.md",
        "docs/baton/BENCH-002/05-test-report.md",
    ] {
        assert!(files.lines().any(|f| f == file), "{file} missing on main: {files}");
    }
    let show = |path: &str| crate::support::git(&repo, &["show", &format!("main:{path}")]);
    assert_eq!(show("tickets/BENCH-002.txt").trim(), "Bench ticket 2");
    assert_eq!(show("docs/baton/BENCH-002/01-analysis.md").trim(), "# BENCH-002");
    assert!(show("docs/baton/BENCH-002/04-review.md").contains("verdict: approve"));
    assert!(show("docs/baton/BENCH-002/05-test-report.md").contains("verdict: pass"));
    assert_eq!(crate::support::git(&repo, &["worktree", "list"]).lines().count(), 1);
    // Each task branch stays after its merge, as Baton keeps a local repository's task branch.
    assert_eq!(
        crate::support::git(&repo, &["branch", "--format=%(refname:short)"]),
        "baton/BENCH-001\nbaton/BENCH-002\nbaton/BENCH-003\nmain"
    );
}
