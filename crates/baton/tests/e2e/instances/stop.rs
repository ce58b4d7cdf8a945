//! STOP across instances (SPEC §12, §15): two `baton serve` processes on one PostgreSQL database,
//! each saying it runs on its own machine (`server.host`); a STOP sent to the instance that does
//! not run the agent reaches the one that does, which kills the agent's process group. The time from the STOP's reply to the agent's death
//! is printed (a figure for the notes, not a timed assertion; the bound is only a hang guard).

use super::fleet::{Instance, call};
use super::fresh_database;
use crate::support::{ConfigExtra, Env, pid_alive};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// An analysis that runs for a minute unless it is stopped.
const SLOW_ANALYSIS: &str = r#"
[[task]]
match = "*"
[[task.step]]
stage = "analysis"
actions = [{ sleep_ms = 60000 }, { write = { path = "docs/baton/{work_item}/01-analysis.md", content = "Late.\n" } }]
"#;

/// Waits for `what` to return something, up to `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stop_sent_to_another_instance_kills_the_agent_where_it_runs() {
    let database_url = fresh_database("stop");
    let mut env = Env::with_extra(
        SLOW_ANALYSIS,
        &ConfigExtra { limits: "heartbeat_secs = 1\ninstance_grace_secs = 10", ..ConfigExtra::default() },
    );
    env.serve_env.push(("BATON_DATABASE_URL".into(), database_url));
    // As on two machines: the instance that takes the STOP cannot signal the agent itself.
    let mut instances = [Instance::on_machine("a", "machine-a"), Instance::on_machine("b", "machine-b")];
    for instance in &mut instances {
        instance.start(&env);
    }
    let addrs: Vec<String> = instances
        .iter_mut()
        .map(|i| wait_for(Duration::from_secs(60), "the instance's address", || i.address(&env)))
        .collect();
    let hosts = wait_for(Duration::from_secs(30), "both instances' heartbeats", || {
        let status = env.json(&["status"]);
        let mut hosts: Vec<String> =
            status["instances"].as_array()?.iter().filter_map(|i| i["host"].as_str().map(str::to_string)).collect();
        hosts.sort();
        (hosts.len() == 2).then_some(hosts)
    });
    assert_eq!(hosts, ["machine-a", "machine-b"], "each instance reports its own machine");
    let created = call(&addrs[0], "POST", "/api/tasks", Some(&json!({ "repo": "demo", "title": "slow" }))).unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["work_item_id"].as_str().unwrap().to_string();

    // The agent runs on whichever instance claimed the job.
    let (owner, pid) = wait_for(Duration::from_secs(60), "the agent to start", || {
        let detail = call(&addrs[0], "GET", &format!("/api/tasks/{id}"), None).ok()?.json();
        let jobs = detail["jobs"].as_array()?.clone();
        jobs.iter().find_map(|j: &Value| {
            let pid = j["pid"].as_u64().filter(|_| j["status"] == "running")?;
            Some((j["owner"].as_str()?.to_string(), pid))
        })
    });
    assert!(pid_alive(pid));
    let runs_on = instances.iter().position(|i| owner.contains(i.name)).expect("the owner is one of the instances");
    let elsewhere = &addrs[1 - runs_on];

    let asked = Instant::now();
    let stopped = call(elsewhere, "POST", &format!("/api/tasks/{id}/stop"), None).unwrap();
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    let replied = asked.elapsed();
    while pid_alive(pid) {
        assert!(asked.elapsed() < Duration::from_secs(30), "the agent on instance {owner} outlived the STOP");
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = asked.elapsed();
    println!(
        "stop across instances: replied in {} ms; the agent on instance {owner} died {} ms after the STOP was sent",
        replied.as_millis(),
        killed.as_millis()
    );
    let detail = call(&addrs[runs_on], "GET", &format!("/api/tasks/{id}"), None).unwrap().json();
    assert_eq!(detail["state"]["stage"], "cancelled", "{detail:#}");
    let run_status = wait_for(Duration::from_secs(30), "the run to be closed", || {
        let detail = call(&addrs[runs_on], "GET", &format!("/api/tasks/{id}"), None).ok()?.json();
        let status = detail["agent_runs"][0]["status"].as_str()?.to_string();
        (status != "running").then_some(status)
    });
    assert_eq!(run_status, "stopped", "the owner recorded its agent as stopped");
    for instance in &mut instances {
        instance.kill();
    }
}
