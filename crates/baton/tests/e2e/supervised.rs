//! The real process ports (`ShimSupervisor`, `SupervisedCommands`) with each real shim — the one
//! embedded in the binary and `baton shim`: a run directory holds at most one execution (a finished
//! one is returned, never run again), a process whose Baton died between the spawn and storing its
//! pid is found from the shim's own launch record and adopted, a reset stops a leftover before a
//! fresh run, secrets never reach the run's files, a group's stop signal ends the command while
//! its shim lives on to record how, and a leftover holding the output does not hold the exit back.
//! Executions are counted from a witness file the commands append to, not from Baton's records.

use crate::support::{baton_exe, pid_alive};
use baton_runner::{
    CommandRequest, CommandRunner, Previous, ProcessSpec, Provenance, RunLimits, ShimSupervisor, SupervisedCommands,
    Supervisor,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Which shim a supervisor launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shim {
    /// The small program carried inside the binary (what `baton serve` launches here).
    Embedded,
    /// `baton shim`: the whole binary (what a remote host runs).
    Baton,
}

fn supervisor(shim: Shim) -> ShimSupervisor {
    let supervisor = ShimSupervisor::new(baton_exe());
    match shim {
        Shim::Embedded => {
            assert!(baton_runner::shim::embedded().is_some(), "the embedded shim must start on this machine");
            supervisor
        }
        Shim::Baton => supervisor.launching_baton_shim(),
    }
}

/// One test per shim, each running `$body(shim)`.
macro_rules! with_each_shim {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$body(super::Shim::Embedded).await;
            }
            #[tokio::test]
            async fn baton_shim() {
                super::$body(super::Shim::Baton).await;
            }
        }
    };
}

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
with_each_shim!(a_run_directory_holds_one_execution, one_execution);
async fn one_execution(shim: Shim) {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("witness.log");
    let run_dir = dir.path().join("runs/deploy-abc");
    let commands = SupervisedCommands::new(Arc::new(supervisor(shim)));
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
with_each_shim!(a_process_whose_pid_was_never_stored_is_adopted_from_the_shims_launch_record, adopted);
async fn adopted(shim: Shim) {
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
        let dying = supervisor(shim);
        dying.launch(spec, &run_dir, "job:9").await.unwrap();
        // The launch result is dropped: nothing of it reaches a store.
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !run_dir.join("launch.json").exists() {
        assert!(std::time::Instant::now() < deadline, "the shim never wrote its launch record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted = supervisor(shim);
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
with_each_shim!(reset_stops_a_leftover_before_a_fresh_run, reset);
async fn reset(shim: Shim) {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("runs/cmd-test");
    let supervisor = Arc::new(supervisor(shim));
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

fn spec(dir: &Path, run_dir: &Path, script: &str) -> ProcessSpec {
    ProcessSpec {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: dir.to_path_buf(),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        stdin: None,
        stdout: run_dir.join("stdout.log"),
        stderr: run_dir.join("stderr.log"),
    }
}

fn limits() -> RunLimits {
    RunLimits {
        timeout: Duration::from_secs(30),
        stall_timeout: Duration::from_secs(30),
        stop_grace: Duration::from_secs(1),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// A secret the command prints — on either stream, in pieces or whole — reaches the run's files
// masked, the command never sees the variable that carried the secrets, and its exit is recorded.
with_each_shim!(secrets_never_reach_the_run_files, masked);
async fn masked(shim: Shim) {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("runs/run1");
    let secret = "sk-live-0123456789abcdef";
    let supervisor = supervisor(shim).with_redactor(baton_domain::redact::Redactor::new([secret]));
    let script = format!(
        "echo \"key {secret} end\"; printf 'sk-live-0123'; sleep 0.1; printf '456789abcdef!\\n'; \
         echo \"err {secret}\" >&2; echo \"seen=${{BATON_SHIM_REDACT:-none}}\"; exit 5"
    );
    let launch = supervisor.launch(spec(dir.path(), &run_dir, &script), &run_dir, "job:1").await.unwrap();
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let outputs = [run_dir.join("stdout.log"), run_dir.join("stderr.log")];
    let exit = supervisor.wait(&launch, &run_dir, [&outputs[0], &outputs[1]], Duration::ZERO, limits(), stop).await;
    assert_eq!(exit.code, Some(5), "{exit:?}");
    let (out, err) = (read(&outputs[0]), read(&outputs[1]));
    assert_eq!(out, "key [REDACTED] end\n[REDACTED]!\nseen=none\n", "{shim:?}");
    assert_eq!(err, "err [REDACTED]\n", "{shim:?}");
    assert!(matches!(supervisor.previous(&run_dir), Previous::Exited(e) if e.code == Some(5)));
}

// The group's SIGTERM ends the command; its shim, in the same group, lives on and records that the
// command died of the signal. The shim is found among the running shims by its command line, as the
// reaper finds it, and the embedded one is the program from the binary, named `baton-shim`.
with_each_shim!(a_stopped_command_has_its_end_recorded_by_the_shim, stopped);
async fn stopped(shim: Shim) {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let run_dir = runs.join("run1");
    let supervisor = supervisor(shim);
    let launch = supervisor.launch(spec(dir.path(), &run_dir, "exec sleep 30"), &run_dir, "job:2").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(supervisor.previous(&run_dir), Previous::Running(_)) {
        assert!(std::time::Instant::now() < deadline, "the command never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = supervisor.shims_under(&runs);
    assert_eq!(found, vec![(launch.pid, launch.pgid, run_dir.clone())], "{shim:?}");
    let cmdline = read(Path::new(&format!("/proc/{}/cmdline", launch.pid)));
    let argv0 = cmdline.split('\0').next().unwrap_or_default().to_string();
    let exe = std::fs::read_link(format!("/proc/{}/exe", launch.pid)).unwrap().display().to_string();
    match shim {
        Shim::Embedded => assert!(argv0 == "baton-shim" && exe.contains("memfd:baton-shim"), "{argv0} {exe}"),
        Shim::Baton => assert!(argv0 == baton_exe() && !exe.contains("memfd"), "{argv0} {exe}"),
    }
    // As a stop sends it: SIGTERM to the whole group.
    let group = nix::unistd::Pid::from_raw(i32::try_from(launch.pgid).unwrap());
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let outputs = [run_dir.join("stdout.log"), run_dir.join("stderr.log")];
    let exit = supervisor.wait(&launch, &run_dir, [&outputs[0], &outputs[1]], Duration::ZERO, limits(), stop).await;
    assert_eq!(exit.code, Some(128 + 15), "the shim exits as the command did: {exit:?}");
    let Previous::Exited(record) = supervisor.previous(&run_dir) else {
        panic!("no exit record: {:?}", supervisor.previous(&run_dir));
    };
    assert_eq!((record.code, record.signal), (None, Some(15)), "{shim:?}");
}

// A command that exits leaving a process behind that holds its output open — silent, or writing
// on and on — is recorded as exited once the shim has copied the rest for its bounded while (two
// seconds), not when the leftover ends (30 s on): what the command wrote before its exit is in the
// files. The bound checked is 20 s, well clear of both, so a loaded machine cannot flake it.
with_each_shim!(a_command_whose_leftover_holds_its_output_is_recorded_without_waiting_for_the_leftover, leftover);
async fn leftover(shim: Shim) {
    for (name, leftover) in [("silent", "sleep 30"), ("writing", "while :; do echo more; sleep 0.02; done")] {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("runs/run1");
        let supervisor = supervisor(shim);
        let script = format!("echo before; ({leftover}) & echo after >&2; exit 4");
        let started = std::time::Instant::now();
        let launch = supervisor.launch(spec(dir.path(), &run_dir, &script), &run_dir, "job:3").await.unwrap();
        let (_keep, stop) = tokio::sync::watch::channel(false);
        let outputs = [run_dir.join("stdout.log"), run_dir.join("stderr.log")];
        let exit = supervisor.wait(&launch, &run_dir, [&outputs[0], &outputs[1]], Duration::ZERO, limits(), stop).await;
        let took = started.elapsed();
        // The leftover is in the shim's group: gone with it before anything is asserted.
        let group = nix::unistd::Pid::from_raw(i32::try_from(launch.pgid).unwrap());
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        assert_eq!(exit.code, Some(4), "{shim:?} {name}: {exit:?}");
        assert!(took < Duration::from_secs(20), "{shim:?} {name}: the exit waited for the leftover ({took:?})");
        assert!(read(&outputs[0]).starts_with("before\n"), "{shim:?} {name}: {:?}", read(&outputs[0]));
        assert_eq!(read(&outputs[1]), "after\n", "{shim:?} {name}");
        assert!(matches!(supervisor.previous(&run_dir), Previous::Exited(e) if e.code == Some(4)), "{shim:?} {name}");
    }
}

// Only a process that leads its group is a shim: a shim's child shows the shim's command line
// between its fork and its exec, in the shim's group, and is no second shim of that run (the
// reaper finds shims this way). The same `baton shim` command line is found when it leads its
// group, as every shim Baton starts does, and not when it runs in a group another process leads.
#[tokio::test]
async fn only_a_group_leader_with_the_shims_command_line_is_found_as_a_shim() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let supervisor = supervisor(Shim::Baton);
    for (n, leads) in [(1, false), (2, true)] {
        let run_dir = runs.join(format!("run{n}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let exit_file = run_dir.join("exit.json");
        // Either the shim itself leads a new group, or a shell does and the shim is its child.
        let mut command = if leads {
            let mut shim = std::process::Command::new(baton_exe());
            shim.args(["shim", "--exit-file"]).arg(&exit_file).args(["--", "sleep", "30"]);
            shim
        } else {
            let mut shell = std::process::Command::new("sh");
            shell.args(["-c", "\"$0\" shim --exit-file \"$1\" -- sleep 30 & wait"]).arg(baton_exe()).arg(&exit_file);
            shell
        };
        let mut child = command
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The shim records its launch before it starts the command, and lives on with it: once
        // the record is there, the shim runs. (Not `previous`: a shim that leads no group is not
        // one Baton would adopt, and says so.)
        let launch = run_dir.join(baton_runner::shim::LAUNCH_FILE);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !launch.exists() {
            assert!(std::time::Instant::now() < deadline, "the shim never recorded its launch");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let found = supervisor.shims_under(&runs);
        let group = child.id();
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(i32::try_from(group).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        let expected = if leads { vec![(group, group, run_dir.clone())] } else { Vec::new() };
        assert_eq!(found, expected, "the shim leads its group: {leads}");
    }
}
