//! The real process ports (`ShimSupervisor`, `SupervisedCommands`) with the real `baton shim`: a run
//! directory holds at most one execution (a finished one is returned, never run again), a process
//! whose Baton died between the spawn and storing its pid is found from the shim's own launch
//! record and adopted, and a reset stops a leftover before a fresh run. Executions are counted from
//! a witness file the commands append to, not from Baton's records.

use crate::support::{baton_exe, pid_alive};
use baton_runner::{
    CommandRequest, CommandRunner, Previous, ProcessSpec, Provenance, RunLimits, ShimSupervisor, SupervisedCommands,
    Supervisor,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn witness_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

fn request(dir: &Path, run_dir: &Path, script: &str) -> CommandRequest {
    CommandRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: dir.to_path_buf(),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        timeout: Duration::from_secs(30),
        stop_grace: Duration::from_secs(1),
        run_dir: run_dir.to_path_buf(),
        owner: "job:7".into(),
    }
}

// A command's run directory keeps its one execution: asking again returns the recorded exit and
// runs nothing; only after `archive` does a new execution start.
#[tokio::test]
async fn a_run_directory_holds_one_execution() {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("witness.log");
    let run_dir = dir.path().join("runs/deploy-abc");
    let commands = SupervisedCommands::new(Arc::new(ShimSupervisor::new(baton_exe())));
    let script = format!("echo deployed >> {}; exit 3", witness.display());
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let first = commands.run(&request(dir.path(), &run_dir, &script), stop.clone()).await.unwrap();
    assert_eq!(first.provenance, Provenance::Started);
    assert_eq!(first.output.exit.code, Some(3));
    assert_eq!(commands.owner(&run_dir).as_deref(), Some("job:7"), "the intent names its owner");
    assert!(run_dir.join("launch.json").exists() && run_dir.join("exit.json").exists());
    let again = commands.run(&request(dir.path(), &run_dir, &script), stop.clone()).await.unwrap();
    assert_eq!(again.provenance, Provenance::Recorded);
    assert_eq!(again.output.exit.code, Some(3));
    assert_eq!(witness_lines(&witness), 1, "the recorded execution is not run again");
    commands.archive(&run_dir).unwrap();
    assert!(dir.path().join("runs/deploy-abc.1/exit.json").exists(), "the earlier records are kept aside");
    let fresh = commands.run(&request(dir.path(), &run_dir, &script), stop).await.unwrap();
    assert_eq!(fresh.provenance, Provenance::Started);
    assert_eq!(witness_lines(&witness), 2);
}

// Baton dies right after the spawn, before it stores the pid: a new supervisor finds the process
// from the launch record the shim wrote before starting the command, waits for it, and takes its
// exit — the command ran once.
#[tokio::test]
async fn a_process_whose_pid_was_never_stored_is_adopted_from_the_shims_launch_record() {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("witness.log");
    let run_dir = dir.path().join("runs/run1");
    let spec = ProcessSpec {
        program: "sh".into(),
        args: vec!["-c".into(), format!("echo started >> {}; sleep 1; exit 0", witness.display())],
        cwd: dir.path().to_path_buf(),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        stdin: None,
        stdout: run_dir.join("stdout.log"),
        stderr: run_dir.join("stderr.log"),
    };
    {
        let dying = ShimSupervisor::new(baton_exe());
        dying.launch(spec, &run_dir, "job:9").await.unwrap();
        // The launch result is dropped: nothing of it reaches a store.
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !run_dir.join("launch.json").exists() {
        assert!(std::time::Instant::now() < deadline, "the shim never wrote its launch record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted = ShimSupervisor::new(baton_exe());
    let Previous::Running(launch) = restarted.previous(&run_dir) else {
        panic!("the surviving process was not found: {:?}", restarted.previous(&run_dir));
    };
    assert!(pid_alive(launch.pid.into()));
    let limits = RunLimits {
        timeout: Duration::from_secs(30),
        stall_timeout: Duration::from_secs(30),
        stop_grace: Duration::from_secs(1),
    };
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let outputs = [run_dir.join("stdout.log"), run_dir.join("stderr.log")];
    let exit = restarted.wait(&launch, &run_dir, [&outputs[0], &outputs[1]], Duration::ZERO, limits, stop).await;
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(matches!(restarted.previous(&run_dir), Previous::Exited(_)));
    assert_eq!(witness_lines(&witness), 1, "adopted, not started again");
}

// A check left running by a dead Baton is stopped and its records set aside before it runs afresh.
#[tokio::test]
async fn reset_stops_a_leftover_before_a_fresh_run() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("runs/cmd-test");
    let supervisor = Arc::new(ShimSupervisor::new(baton_exe()));
    let commands = SupervisedCommands::new(supervisor.clone());
    let spec = ProcessSpec {
        program: "sleep".into(),
        args: vec!["30".into()],
        cwd: dir.path().to_path_buf(),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        stdin: None,
        stdout: run_dir.join("output.log"),
        stderr: run_dir.join("output.log"),
    };
    let launch = supervisor.launch(spec, &run_dir, "job:3").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(commands.previous(&run_dir), Previous::Running(_)) {
        assert!(std::time::Instant::now() < deadline, "the leftover never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    commands.reset(&run_dir, Duration::from_secs(1)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pid_alive(launch.pid.into()) {
        assert!(std::time::Instant::now() < deadline, "the leftover survived the reset");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(commands.previous(&run_dir), Previous::Nothing), "the run directory is free again");
}
