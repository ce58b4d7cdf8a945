//! The merge queue (SPEC §6.3) end to end with `baton serve`, real git and real test commands:
//! a human's wait never holds up another task's merge; changes are tested on top of the ones
//! ahead of them; only the culprit is evicted; every commit on main passed the test command on
//! exactly its tree.

use crate::support::{ConfigExtra, Env, assert_each_main_commit_passes_tests, git, main_commits, stage};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn timeline(env: &Env, id: &str) -> Vec<Value> {
    env.json(&["task", "show", id])["timeline"].as_array().unwrap().clone()
}

fn messages(events: &[Value], kind: &str) -> Vec<String> {
    events.iter().filter(|e| e["kind"] == kind).map(|e| e["message"].as_str().unwrap().to_string()).collect()
}

fn hold(task: &Value) -> &str {
    task["state"]["hold"]["kind"].as_str().unwrap_or("")
}

fn find<'t>(tasks: &'t [Value], id: &str) -> &'t Value {
    tasks.iter().find(|t| t["work_item_id"] == id).unwrap()
}

/// A test command that records `<tree> <exit>` for every run in `witness`, so the test can check
/// that main only ever holds trees that passed; a change whose squashed commit's subject starts
/// with `culprit` fails on the merge queue's re-test (and only there: its development commits
/// have other subjects); one starting with `flaky` fails its first re-test of each tree without
/// the culprit's change, and passes the next (a flake each time), whatever the order the changes
/// entered the queue in, and even when the queue moved it to another base between the two runs.
fn witness_test(env: &Env, culprit: &str, flaky: &str) -> String {
    let culprit_file = format!("mathkit/m_{}.py", culprit.to_lowercase().replace('-', "_"));
    let script = format!(
        "#!/bin/sh\n\
         tree=$(git rev-parse 'HEAD^{{tree}}')\n\
         case \"$(git log -1 --format=%s)\" in\n\
         \x20 '{culprit}:'*) echo \"$tree 1\" >> '{root}/witness'; echo 'the combined tree breaks' >&2; exit 1 ;;\n\
         \x20 '{flaky}:'*) if [ ! -e \"{root}/flaked-$tree\" ] && [ ! -e '{culprit_file}' ]; then touch \"{root}/flaked-$tree\"; echo flaky >&2; exit 1; fi ;;\n\
         esac\n\
         python3 -m unittest -q\n\
         rc=$?\n\
         echo \"$tree $rc\" >> '{root}/witness'\n\
         exit $rc\n",
        root = env.root.display()
    );
    std::fs::write(env.root.join("check.sh"), script).unwrap();
    format!("[\"sh\", \"{}/check.sh\"]", env.root.display())
}

/// Every commit on main after the first has a tree the test command passed on.
fn assert_main_trees_passed(env: &Env) {
    let witness = std::fs::read_to_string(env.root.join("witness")).unwrap_or_default();
    let passed: BTreeSet<&str> = witness.lines().filter_map(|l| l.strip_suffix(" 0")).map(str::trim).collect();
    for (sha, subject) in main_commits(&env.project()).iter().skip(1) {
        let tree = git(&env.project(), &["rev-parse", &format!("{sha}^{{tree}}")]);
        assert!(passed.contains(tree.as_str()), "main commit {sha} ({subject}) has a tree no test passed on");
    }
}

// One task's deploy is never confirmed; the other task is confirmed later, yet merges and reaches
// done while the first still waits: a human's wait holds no lease and no queue position.
#[test]
fn a_deploy_never_confirmed_does_not_delay_another_tasks_merge() {
    let env = Env::new("", "");
    let waiting = env.add_task("first change");
    let shipped = env.add_task("second change");
    let _server = env.serve(0);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let tasks = env.tasks();
        if stage(find(&tasks, &shipped)) == "done" {
            let first = find(&tasks, &waiting);
            assert_eq!((stage(first), hold(first)), ("deploy_staging", "awaiting_confirm"), "{first:#}");
            break;
        }
        for task in &tasks {
            let id = task["work_item_id"].as_str().unwrap();
            match hold(task) {
                "awaiting_approval" => {
                    env.run(&["task", "approve", id]);
                }
                // Only the second task's deploy is confirmed, and only once the first one waits
                // for its confirmation too (it got there first: it would hold the lease if a
                // human's wait did).
                "awaiting_confirm" if id == shipped && hold(find(&tasks, &waiting)) == "awaiting_confirm" => {
                    env.run(&["task", "confirm-deploy", id]);
                }
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "timed out: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // While the first task waits for its human, it holds no lease and no place in the queue.
    let status = env.json(&["status"]);
    assert_eq!(status["leases"], serde_json::json!([]), "{status:#}");
    assert_eq!(status["merge_queues"], serde_json::json!([]), "{status:#}");
    // The first change is confirmed at last: it lands on top of the second one, re-tested there.
    env.run(&["task", "confirm-deploy", &waiting]);
    env.drive(Duration::from_secs(120), |tasks| stage(find(tasks, &waiting)) == "done");
    let commits = main_commits(&env.project());
    assert_eq!(commits.len(), 3, "{commits:?}");
    assert!(commits[1].1.starts_with(&shipped) && commits[2].1.starts_with(&waiting), "{commits:?}");
    let passes = messages(&timeline(&env, &waiting), "gate");
    let last_pass = passes.iter().rev().find(|m| m.starts_with("mergeable pass")).expect("a mergeable pass");
    assert!(last_pass.contains(&commits[1].0[..10]), "not re-tested on top of {}: {last_pass}", commits[1].0);
    assert_each_main_commit_passes_tests(&env.project());
}

// Four changes enter the queue together: they are tested on top of each other (speculation), the
// one whose combined tree fails is evicted back to development (and blocks after its rollbacks),
// the changes behind it are re-tested without it, and main receives only trees the test command
// passed on.
#[test]
fn the_queue_tests_changes_on_top_of_each_other_and_evicts_only_the_culprit() {
    let env = Env::with_extra("", &ConfigExtra { limits: "rollback_max = 1", ..ConfigExtra::default() });
    let culprit_id = "DEMO-002";
    let flaky_id = "DEMO-003";
    let test = witness_test(&env, culprit_id, flaky_id);
    // Rewrite the config's test command to the witness script.
    let config = std::fs::read_to_string(env.config()).unwrap();
    let config = config.replace("test = [\"python3\", \"-m\", \"unittest\", \"-q\"]", &format!("test = {test}"));
    std::fs::write(env.config(), config).unwrap();
    let ids: Vec<String> = (1..=4).map(|i| env.add_task(&format!("change {i}"))).collect();
    assert_eq!(ids[1], culprit_id);
    let _server = env.serve(0);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let tasks = env.tasks();
        let settled = |t: &Value| stage(t) == "done" || hold(t) == "blocked";
        if tasks.iter().all(settled) {
            break;
        }
        // Confirm every deploy together, once all four wait for it: they enter the queue at once.
        let all_waiting = tasks.iter().all(|t| hold(t) == "awaiting_confirm" || stage(t) == "done");
        for task in &tasks {
            let id = task["work_item_id"].as_str().unwrap();
            match hold(task) {
                "awaiting_approval" => {
                    env.run(&["task", "approve", id]);
                }
                "awaiting_confirm" if all_waiting || id == culprit_id && task["state"]["rollbacks"] != 0 => {
                    env.run(&["task", "confirm-deploy", id]);
                }
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "timed out: {tasks:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let tasks = env.tasks();
    for id in &ids {
        let task = find(&tasks, id);
        if id == culprit_id {
            assert_eq!(hold(task), "blocked", "{task:#}");
        } else {
            assert_eq!(stage(task), "done", "{task:#}");
        }
    }
    // The culprit was evicted with the re-test's output, and rolled back to development.
    let culprit = timeline(&env, culprit_id);
    let rolled = messages(&culprit, "job_finished");
    assert!(
        rolled.iter().any(|m| m.contains("rolled back to development") && m.contains("the combined tree breaks")),
        "{rolled:#?}"
    );
    // The flaky change failed and then passed on the same tree: a flake, never blamed on it.
    let flaky = timeline(&env, flaky_id);
    let flakes = messages(&flaky, "flake");
    let story: Vec<String> =
        flaky.iter().map(|e| format!("{} {}", e["kind"], e["message"].as_str().unwrap_or(""))).collect();
    let witness = std::fs::read_to_string(env.root.join("witness")).unwrap_or_default();
    assert!(
        !flakes.is_empty() && flakes.iter().all(|m| m.contains("counted as a flake")),
        "the flaky change's timeline:\n{}\nwitness:\n{witness}",
        story.join("\n")
    );
    assert_eq!(find(&tasks, flaky_id)["state"]["rollbacks"], 0, "a flake was blamed on the flaky change");
    // Speculation: some change was tested on top of changes ahead of it, not on main.
    let turns: Vec<String> = ids.iter().flat_map(|id| messages(&timeline(&env, id), "queue_turn")).collect();
    assert!(turns.iter().any(|m| m.contains("on top of the changes ahead")), "{turns:#?}");
    let commits = main_commits(&env.project());
    assert_eq!(commits.len(), 4, "{commits:?}");
    assert!(commits.iter().all(|(_, subject)| !subject.starts_with(culprit_id)), "{commits:?}");
    // Nor did the culprit's change reach main inside a change that was once built on top of it.
    let culprit_file = git(&env.project(), &["ls-tree", "--name-only", "main", "mathkit/m_demo_002.py"]);
    assert!(culprit_file.is_empty(), "the evicted change's file is on main: {culprit_file}");
    assert_main_trees_passed(&env);
    assert_each_main_commit_passes_tests(&env.project());
}

/// A test command for batches: it records `<tree> <exit>` in `witness`, and fails on the merge
/// queue's re-test (a commit whose subject is a batch's or a squashed change's) whenever the tree
/// holds `culprit_file`, whichever changes are tested with it. A re-test waits until the test
/// writes `<root>/go` (at most two minutes), so the changes confirmed while the first one is
/// tested wait together and form a batch, however slow the machine.
fn batch_witness_test(env: &Env, culprit_file: &str) -> String {
    let script = format!(
        "#!/bin/sh\n\
         tree=$(git rev-parse 'HEAD^{{tree}}')\n\
         case \"$(git log -1 --format=%s)\" in\n\
         \x20 'Merge queue batch:'*|DEMO-[0-9][0-9][0-9]:*) n=0; while [ ! -e '{root}/go' ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done; if [ -e '{culprit_file}' ]; then echo \"$tree 1\" >> '{root}/witness'; echo 'the combined tree breaks' >&2; exit 1; fi ;;\n\
         esac\n\
         python3 -m unittest -q\n\
         rc=$?\n\
         echo \"$tree $rc\" >> '{root}/witness'\n\
         exit $rc\n",
        root = env.root.display()
    );
    std::fs::write(env.root.join("check.sh"), script).unwrap();
    format!("[\"sh\", \"{}/check.sh\"]", env.root.display())
}

// Batching: the changes waiting together are tested as one; the red batch is split in halves
// (recorded on each change's timeline) until the culprit is alone and evicted; a green half lands
// as one commit, and every commit on main has a tree the test command passed on, without the
// culprit's change.
#[test]
fn a_red_batch_is_bisected_to_its_culprit_and_the_rest_lands() {
    let env = Env::with_extra(
        "",
        // One unit on the train at a time: while the first change is tested alone, the others
        // (the culprit last) wait and then form one batch.
        &ConfigExtra {
            limits: "rollback_max = 1\nmerge_queue_depth = 1\nmerge_queue_depth_max = 1",
            repo: "merge_batch = 4",
            ..ConfigExtra::default()
        },
    );
    let culprit_id = "DEMO-004";
    let test = batch_witness_test(&env, "mathkit/m_demo_004.py");
    let config = std::fs::read_to_string(env.config()).unwrap();
    let config = config.replace("test = [\"python3\", \"-m\", \"unittest\", \"-q\"]", &format!("test = {test}"));
    std::fs::write(env.config(), config).unwrap();
    let ids: Vec<String> = (1..=4).map(|i| env.add_task(&format!("change {i}"))).collect();
    assert_eq!(ids[3], culprit_id);
    let _server = env.serve(0);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut released = false;
    loop {
        let mut tasks = env.tasks();
        tasks.sort_by_key(|t| t["work_item_id"].as_str().unwrap_or("").to_string());
        let settled = |t: &Value| stage(t) == "done" || hold(t) == "blocked";
        if tasks.iter().all(settled) {
            break;
        }
        // The first change is confirmed alone and enters the queue alone (its test waits for
        // `go`); the other three are confirmed once it is there, the culprit after the other
        // two entered, and wait behind it; `go` is given when they are all parked in the queue,
        // so they form one batch with the culprit last.
        let all_waiting = tasks.iter().all(|t| hold(t) == "awaiting_confirm" || stage(t) == "done");
        let entered =
            |id: &str| messages(&timeline(&env, id), "gate").iter().any(|m| m.contains("entered the merge queue"));
        let culprit_waits = tasks.last().is_some_and(|t| hold(t) == "awaiting_confirm");
        // The culprit enters last (after the two others are in), so the halves of the batch's
        // split are a green pair and the culprit alone.
        let first_queued = !released && culprit_waits && entered(&ids[0]);
        let pair_queued = first_queued && entered(&ids[1]) && entered(&ids[2]);
        if !released && tasks.len() == 4 && tasks.iter().skip(1).all(|t| hold(t) == "merge_queue") {
            std::fs::write(env.root.join("go"), "").unwrap();
            released = true;
        }
        for (n, task) in tasks.iter().enumerate() {
            let id = task["work_item_id"].as_str().unwrap();
            let confirm = match n {
                0 => all_waiting,
                3 => pair_queued,
                _ => first_queued,
            };
            match hold(task) {
                "awaiting_approval" => {
                    env.run(&["task", "approve", id]);
                }
                "awaiting_confirm" if confirm || released || id == culprit_id && task["state"]["rollbacks"] != 0 => {
                    env.run(&["task", "confirm-deploy", id]);
                }
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            let status = String::from_utf8_lossy(&env.run(&["status"]).stdout).to_string();
            let recent: Vec<String> = ids
                .iter()
                .flat_map(|id| {
                    let events = timeline(&env, id);
                    let skip = events.len().saturating_sub(12);
                    events.into_iter().skip(skip).map(move |e| format!("{id} {} {}", e["kind"], e["message"]))
                })
                .collect();
            panic!("timed out: status:\n{status}\nlast events:\n{}\ntasks: {tasks:#?}", recent.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let tasks = env.tasks();
    for id in &ids {
        let task = find(&tasks, id);
        if id == culprit_id {
            assert_eq!(hold(task), "blocked", "{task:#}");
        } else {
            assert_eq!(stage(task), "done", "{task:#}");
        }
    }
    // The culprit's batch was red: the split is on its timeline, naming the halves.
    let bisect = messages(&timeline(&env, culprit_id), "bisect");
    assert!(bisect.iter().any(|m| m.contains("is red on top of") && m.contains("split into")), "{bisect:#?}");
    // The culprit was evicted alone with the re-test's output and rolled back to development.
    let rolled = messages(&timeline(&env, culprit_id), "job_finished");
    assert!(
        rolled.iter().any(|m| m.contains("rolled back to development") && m.contains("the combined tree breaks")),
        "{rolled:#?}"
    );
    // Some batch of more than one change landed as one commit.
    let commits = main_commits(&env.project());
    let story: Vec<String> = ids
        .iter()
        .flat_map(|id| {
            timeline(&env, id)
                .into_iter()
                .filter(|e| matches!(e["kind"].as_str(), Some("queue_turn" | "bisect" | "gate" | "merged")))
                .map(move |e| format!("{id} {} {}", e["kind"], e["message"]))
        })
        .collect();
    assert!(
        commits.iter().any(|(_, subject)| subject.starts_with("Merge queue batch:")),
        "{commits:?}\n{}",
        story.join("\n")
    );
    let culprit_file = git(&env.project(), &["ls-tree", "--name-only", "main", "mathkit/m_demo_004.py"]);
    assert!(culprit_file.is_empty(), "the culprit's file is on main: {culprit_file}");
    for id in ids.iter().filter(|id| *id != culprit_id) {
        let snake = id.to_lowercase().replace('-', "_");
        let path = format!("mathkit/m_{snake}.py");
        assert!(!git(&env.project(), &["ls-tree", "--name-only", "main", &path]).is_empty(), "{path} on main");
    }
    assert_main_trees_passed(&env);
    assert_each_main_commit_passes_tests(&env.project());
}
