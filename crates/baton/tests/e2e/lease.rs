//! The merge lease (SPEC §6.3): two tasks reach the merge gate of one repo together.

use crate::support::{Env, assert_each_main_commit_passes_tests, main_commits, stage};
use serde_json::Value;
use std::time::{Duration, Instant};

fn timeline(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["task", "show", id])["timeline"].as_array().unwrap().clone()
}

fn messages(events: &[Value], kind: &str) -> Vec<String> {
    events.iter().filter(|e| e["kind"] == kind).map(|e| e["message"].as_str().unwrap().to_string()).collect()
}

// Both tasks arrive at deploy_staging; the lease holder goes on to deploy while the other defers
// (no deadlock); once the first is done the second takes the lease, is rebased onto the first's
// merged commit and re-tested there, and merges. Main = initial + both, each commit green.
#[test]
fn two_tasks_at_the_merge_gate_one_defers_then_both_merge_retested_on_top() {
    let env = Env::new("", "");
    let ids = [env.add_task("first change"), env.add_task("second change")];
    let _server = env.serve(0);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut deferred_seen = false;
    loop {
        let tasks = env.tasks();
        if tasks.iter().all(|t| stage(t) == "done") {
            break;
        }
        for task in &tasks {
            let id = task["work_item_id"].as_str().unwrap();
            match task["state"]["hold"]["kind"].as_str() {
                Some("awaiting_approval") => {
                    env.run(&["task", "approve", id]);
                }
                // Confirm the deploy only once the other task has been deferred at the merge gate.
                Some("awaiting_confirm") => {
                    let other = ids.iter().find(|o| *o != id).unwrap();
                    let deferred =
                        messages(&timeline(&env, other), "job_finished").iter().any(|m| m.contains("deferred"));
                    let other_done = tasks.iter().any(|t| t["work_item_id"] == other.as_str() && stage(t) == "done");
                    if deferred || other_done {
                        deferred_seen |= deferred;
                        env.run(&["task", "confirm-deploy", id]);
                    }
                }
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "timed out: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(deferred_seen, "no task was deferred at the merge gate");

    let commits = main_commits(&env.project());
    assert_eq!(commits.len(), 3, "{commits:?}");
    let (first_sha, first_subject) = &commits[1];
    let second_id = if first_subject.starts_with(&ids[0]) { &ids[1] } else { &ids[0] };
    // The second task's merge gate rebased onto the first task's merged commit and re-tested there.
    let passes = messages(&timeline(&env, second_id), "gate");
    let last_pass = passes.iter().rev().find(|m| m.starts_with("mergeable pass")).expect("a mergeable pass");
    assert!(last_pass.contains(&first_sha[..10]), "second merge gate did not rebase onto {first_sha}: {last_pass}");
    assert_each_main_commit_passes_tests(&env.project());
}
