//! `cargo xtask guards`: proves that each regression test pins a guard in the real code. For every
//! named guard it edits the guard out of the source (a literal find-and-replace), runs the pinning
//! test and expects it to fail, restores the file, and runs the test again expecting it to pass.
//! The source is always restored, even when a step fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One edit of a source file: `find` must occur exactly once.
struct Edit {
    file: &'static str,
    find: &'static str,
    replace: &'static str,
}

/// A guard, the edits that remove it, and the test that pins it: a test of `baton-sim`'s `sim`
/// suite by name, or `package/suite/name` for another suite.
struct Guard {
    name: &'static str,
    edits: &'static [Edit],
    test: &'static str,
}

const EXECUTOR: &str = "crates/baton-engine/src/executor.rs";
const GIT: &str = "crates/baton-runner/src/git.rs";

// Two guards are layered behind others in the real code, so removing one alone harms nothing a
// test can see, and they are not listed: the executor keeping its job until the result is applied
// (an adopted twin re-checks its task at start and finds it moved on; a deploy's run-once record
// stops a second deploy), and deploy re-checking its task before merging (a STOP reads the running
// deploy job and defers; a claim bumps the task version). Their scenarios still run as tests.
// The merge queue's landing (`queue::land`, and the merge gate's own landing of a change green on
// the default head) takes the lease in one transaction with the entry's move to landing
// (`Store::queue_land`): there is no give-back left to remove. Its guards break the store call and
// are pinned by its conformance test; no scheduled scenario puts a STOP between a pass's read and
// its landing (`queue_never_keeps_the_lease_for_a_change_stopped_meanwhile` tries).
const GUARDS: &[Guard] = &[
    Guard {
        name: "deploy re-judges the merge lease after the freeze check",
        edits: &[Edit {
            file: EXECUTOR,
            find: "    if expires_at_ms - engine.clock().now_ms() <= ttl_ms / 2 {",
            replace: "    if expires_at_ms < i64::MIN {",
        }],
        test: "a_deploy_paused_past_its_lease_never_merges",
    },
    Guard {
        name: "the reaper decides nothing about a lease whose holder it failed to read",
        edits: &[Edit {
            file: "crates/baton-engine/src/reaper.rs",
            find: "                Err(_) => continue,",
            replace: "                Err(_) => None,",
        }],
        test: "reaper_keeps_the_lease_when_reading_its_holder_fails",
    },
    Guard {
        name: "the reaper keeps the merge lease only for active holds",
        edits: &[Edit {
            file: "crates/baton-engine/src/reaper.rs",
            find: "matches!(t.state.hold, baton_domain::Hold::None | baton_domain::Hold::AwaitingConfirm)",
            replace: "true",
        }],
        test: "blocked_task_does_not_keep_the_merge_lease",
    },
    Guard {
        name: "a running deploy is waited for, never started a second time",
        edits: &[Edit {
            file: EXECUTOR,
            find: "        Previous::Running(_) => {} // waited for below, never started twice",
            replace: "        Previous::Running(_) => {\n            let _ = commands.reset(&run_dir, Duration::ZERO).await;\n        }",
        }],
        test: "a_deploy_survives_a_kill_and_runs_once",
    },
    Guard {
        name: "restart recovery never requeues a job whose agent survives",
        edits: &[Edit {
            file: "crates/baton-engine/src/engine.rs",
            find: "        Ok(alive\n            || matches!(",
            replace: "        Ok(false\n            && matches!(",
        }],
        test: "zombie_running_job_does_not_block_the_queue",
    },
    Guard {
        name: "a gate failing on a full disk is an infrastructure failure",
        edits: &[Edit { file: EXECUTOR, find: "&& gates::is_infrastructure(&v.reason)", replace: "&& false" }],
        test: "a_full_disk_in_the_merge_gate_is_not_a_code_failure",
    },
    Guard {
        name: "a decision's effects are written to the outbox in its transaction",
        edits: &[Edit {
            file: "crates/baton-engine/src/engine.rs",
            find: "                        effects: effects::outbox_rows(\n                            &pipeline,\n                            &task,\n                            &next,\n                            &effects,\n                            &running,\n                            effects::OutboxOptions {\n                                hosted_forge: self.settings.repo(&task.repo).is_some_and(|r| r.forge.is_hosted()),\n                                live: self.live.is_some(),\n                                handoffs: self.handoffs,\n                            },\n                        ),",
            replace: "                        effects: { let _ = (&running, &pipeline); Vec::new() },",
        }],
        test: "stop_cleanup_survives_a_crash",
    },
    Guard {
        name: "a STOP after the deploy merged arrives too late (shipped code is never cancelled)",
        edits: &[Edit {
            file: "crates/baton-domain/src/decide.rs",
            find: "        if let Some(head) = outcome.merged_head() {",
            replace: "        if let Some(head) = None::<&str> {",
        }],
        test: "deferred_stop_during_deploy_keeps_the_running_job",
    },
    Guard {
        name: "a job is ranked by its stage's place in the pipeline (later stages claimed first)",
        edits: &[Edit {
            file: "crates/baton-engine/src/engine.rs",
            find: "                transition.rank = stage_rank(pipeline, stage);",
            replace: "                transition.rank = stage_rank(pipeline, \"\");",
        }],
        test: "a_later_stage_is_claimed_before_an_earlier_stage_of_another_task",
    },
    Guard {
        name: "a landed deploy run again without the lease deploys, never goes back to the queue",
        edits: &[Edit {
            file: EXECUTOR,
            find: "            let main = landed_before(ctx, &base, &head).await.ok_or(Refused::LeaseLost(reason.clone()))?;",
            replace: "            let main: String = return Err(Refused::LeaseLost(reason));",
        }],
        test: "a_landed_deploy_rerun_without_the_lease_still_deploys",
    },
    Guard {
        name: "a change waits for the landing and the deploy ahead of it whatever its instance last fetched",
        // Two safeguards, each enough here: the landing entry of the change ahead, and its deploy
        // job still running.
        edits: &[
            Edit {
                file: EXECUTOR,
                find: "    if let Some(landing) = others.find(|e| e.state == baton_store::QueueState::Landing) {\n        return Some(landing.work_item_id);\n    }\n",
                replace: "",
            },
            Edit {
                file: EXECUTOR,
                find: "    if let Some(other) = deploying_elsewhere(ctx).await {",
                replace: "    if let Some(other) = deploying_elsewhere(ctx).await.filter(|_| false) {",
            },
        ],
        test: "a_change_never_lands_on_an_undeployed_commit_whatever_its_instance_last_fetched",
    },
    Guard {
        name: "an executor starts no agent for a job taken over while its process stood still",
        edits: &[Edit {
            file: EXECUTOR,
            find: "    if taken_away(engine, ctx.job.id).await {",
            replace: "    if false && taken_away(engine, ctx.job.id).await {",
        }],
        test: "seeds_where_a_stopped_instance_ran_on_keep_the_invariants",
    },
    Guard {
        name: "a failed adoption stops what it adopted before its job ends",
        edits: &[Edit {
            file: EXECUTOR,
            find: "    if start == Start::Adopt && outcome.is_err() {",
            replace: "    if false && start == Start::Adopt && outcome.is_err() {",
        }],
        // In the simulation the reaper's pass (the next guard) stops such an agent a little later.
        test: "baton-engine/unwatched/an_agent_whose_adoption_failed_is_stopped_before_its_job_ends",
    },
    Guard {
        name: "the reaper stops an agent whose job ended while no Baton watched it",
        edits: &[Edit {
            file: "crates/baton-engine/src/reaper.rs",
            find: "        if let baton_runner::Previous::Running(launch) = supervisor.previous(",
            replace: "        if false && let baton_runner::Previous::Running(launch) = supervisor.previous(",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "a STOP is told when the default branch already holds the task's change",
        edits: &[Edit {
            file: "crates/baton-engine/src/engine.rs",
            find: "        Ok((false, self.landed_head(task).await?.is_some()))",
            replace: "        Ok((false, false))",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "a deploy that settled nothing keeps a deferred STOP waiting",
        edits: &[Edit {
            file: "crates/baton-domain/src/decide.rs",
            find: "        if spec.actor == Actor::Deploy && unsettled {",
            replace: "        if spec.actor == Actor::Deploy && unsettled && false {",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "deploy reports a store that cannot be read before the merge as the machine's failure",
        edits: &[Edit {
            file: EXECUTOR,
            find: "        Err(error) => return Err(Refused::Machine(format!(\"cannot read the task before the merge: {error}\"))),",
            replace: "        Err(_) => None,",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "the reaper's backstop of a deploy whose change landed says it landed",
        edits: &[Edit {
            file: "crates/baton-engine/src/reaper.rs",
            find: "        let outcome = match landed {",
            replace: "        let outcome = match None::<String>.or(landed.filter(|_| false)) {",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "the simulated store lets one idempotency key name one task",
        edits: &[Edit {
            file: "crates/baton-sim/src/store/state.rs",
            find: "            return Err(StoreError::Exists(Box::new(task.clone())));\n        }\n        let idempotency_key",
            replace: "        }\n        let idempotency_key",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "a deploy never re-runs one an instance declared dead merged and may have run",
        edits: &[Edit {
            file: EXECUTOR,
            find: "    let (_, instance, _) = merges.into_iter().next()?;",
            replace: "    let (_, instance, _) = merges.into_iter().next().filter(|_| false)?;",
        }],
        test: "baton-engine/deploy_takeover/a_deploy_merged_by_an_instance_declared_dead_is_not_run_again_after_a_failed_take_over",
    },
    Guard {
        name: "a change of a landing batch is never cancelled",
        edits: &[Edit {
            file: "crates/baton-store/src/lib.rs",
            find: "    if !member || state != QueueState::Landing.as_str() {",
            replace: "    if true {",
        }],
        test: "baton-store-sqlite/conformance/merge_queue_entries_commit_with_the_parking_and_leave_with_the_lease",
    },
    Guard {
        name: "the write-ahead log is checkpointed while the store is open",
        edits: &[Edit {
            file: "crates/baton-store-sqlite/src/lib.rs",
            find: "        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };",
            replace: "        let Some(runtime) = None::<tokio::runtime::Handle> else { return };",
        }],
        test: "baton-store-sqlite/checkpoint/the_database_file_takes_the_logs_pages_while_the_store_stays_open",
    },
    Guard {
        name: "a long log's checkpoint finishes under the writer so the log starts over",
        edits: &[Edit {
            file: "crates/baton-store-sqlite/src/lib.rs",
            find: "            if std::fs::metadata(&this.log).is_ok_and(|log| log.len() > LOG_RESTART_BYTES) {",
            replace: "            if LOG_RESTART_BYTES == 0 {",
        }],
        test: "baton-store-sqlite/checkpoint/steady_writes_start_the_log_over_instead_of_growing_it_without_end",
    },
    Guard {
        name: "a worktree a command wrote in is asked git status again",
        edits: &[Edit {
            file: GIT,
            find: "let holds = fingerprint(dir, None) == Some(before);",
            replace: "let holds = Some(before).is_some();",
        }],
        test: "baton-runner/clean_marks/a_repository_command_that_writes_anything_in_the_worktree_or_its_index_has_git_asked_again",
    },
    Guard {
        name: "a fingerprint a command may have broken is checked before the next command",
        edits: &[
            Edit {
                file: GIT,
                find: "        if let Some(before) = files {",
                replace: "        if let Some(before) = files.filter(|_| false) {",
            },
            Edit { file: GIT, find: "            && !mark.unverified\n", replace: "\n" },
        ],
        test: "baton-runner/clean_marks/a_write_by_one_command_is_not_forgiven_by_a_later_command_that_writes_nothing",
    },
    Guard {
        name: "only a process leading its group is a shim",
        edits: &[Edit {
            file: "crates/baton-runner/src/process.rs",
            find: "(stat.live() && stat.pgid == pid).then(",
            replace: "stat.live().then(",
        }],
        test: "baton/e2e/supervised::only_a_group_leader_with_the_shims_command_line_is_found_as_a_shim",
    },
    Guard {
        name: "a worktree's clean mark is keyed by its real path",
        edits: &[Edit {
            file: GIT,
            find: "        super::resolve(dir).unwrap_or_else(|| dir.to_path_buf())",
            replace: "        dir.to_path_buf()",
        }],
        test: "baton-runner/clean_marks/a_process_started_in_the_worktree_through_a_link_forgets_its_mark_as_a_direct_one_does",
    },
    Guard {
        name: "a change to the index alone is a change",
        edits: &[Edit {
            file: GIT,
            find: "let index = super::git_dir(worktree)?.join(\"index\");",
            replace: "let index = super::git_dir(worktree)?.join(\"not-the-index\");",
        }],
        test: "baton-runner/clean_marks/a_repository_command_that_writes_anything_in_the_worktree_or_its_index_has_git_asked_again",
    },
    Guard {
        name: "a file as new as the file system's clock is never fingerprinted",
        edits: &[Edit {
            file: GIT,
            find: "if not_after.is_some_and(|now| newest(stat) >= now) {",
            replace: "if not_after.is_some_and(|_| false) {",
        }],
        test: "baton-runner/clean_marks/a_file_not_older_than_the_file_systems_clock_is_never_fingerprinted",
    },
    Guard {
        name: "a sandboxed agent writes only its own part of the run directory",
        edits: &[Edit {
            file: "crates/baton-engine/src/sandbox.rs",
            find: "vec![worktree.to_path_buf(), request.agent_dir()]",
            replace: "vec![worktree.to_path_buf(), run_dir.to_path_buf()]",
        }],
        test: "baton/e2e/sandbox::sandboxed_agent_cannot_read_the_token_the_database_other_worktrees_or_approve_another_task",
    },
    Guard {
        name: "a deploy that started runs to its end when its job is taken away",
        edits: &[Edit {
            file: EXECUTOR,
            find: "match timed(ctx, commands.run(&request, unstoppable)).await {",
            replace: "match timed(ctx, commands.run(&request, ctx.stop.clone())).await {",
        }],
        test: "baton-engine/deploy_takeover/a_deploy_started_by_an_instance_declared_dead_while_alive_runs_to_its_end",
    },
    Guard {
        name: "a deploy whose outcome is unknown freezes its repository",
        edits: &[Edit {
            file: EXECUTOR,
            find: "match crate::monitor::freeze_unknown_deploy(engine, ctx.task, &head, &instance).await {",
            replace: "match Ok::<bool, String>(true) {",
        }],
        test: "baton-engine/deploy_takeover/a_deploy_started_by_an_instance_declared_dead_while_alive_runs_to_its_end",
    },
    Guard {
        name: "a landed change's deploy waits while an unknown deploy's freeze is open",
        edits: &[Edit {
            file: EXECUTOR,
            find: "    if deploy_argv.is_some() && already_merged && taken_over.is_none() && moved_past.is_none() && !deploying {",
            replace: "    if false {",
        }],
        test: "baton-engine/deploy_takeover/a_deploy_merged_by_an_instance_declared_dead_is_not_run_again_after_a_failed_take_over",
    },
    Guard {
        name: "a person's retry of a landed change is refused while an unknown deploy's freeze is open",
        edits: &[Edit {
            file: "crates/baton-engine/src/engine.rs",
            find: "        if input == Input::Retry\n            && let Some(refusal) = self.retry_refusal(&task).await?",
            replace: "        if input == Input::Stop && input == Input::Retry\n            && let Some(refusal) = self.retry_refusal(&task).await?",
        }],
        test: "baton-engine/deploy_takeover/a_deploy_started_by_an_instance_declared_dead_while_alive_runs_to_its_end",
    },
    Guard {
        name: "a batch with a change that waits for a dependency is broken up",
        edits: &[Edit {
            file: "crates/baton-engine/src/queue.rs",
            find: "        if !frozen && dissolve_waiting_batches(engine, &entries, &waiting).await? {",
            replace: "        if !frozen && false && dissolve_waiting_batches(engine, &entries, &waiting).await? {",
        }],
        test: "a_batch_whose_change_waits_for_another_of_it_is_broken_up",
    },
    Guard {
        name: "a deploy job that stops short of the merge gives back the lease it took",
        edits: &[Edit { file: EXECUTOR, find: "    if !held {", replace: "    if true {" }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "a lease released on a read of its task goes only while the task is as read",
        edits: &[Edit {
            file: "crates/baton-store-sqlite/src/lib.rs",
            find: "             AND EXISTS (SELECT 1 FROM tasks WHERE id = $3 AND version = $4)\",",
            replace: "             AND $3 = $3 AND $4 = $4\",",
        }],
        test: "baton-store-sqlite/conformance/a_lease_is_released_only_while_its_holders_task_is_as_read",
    },
    Guard {
        name: "a job's own acquire of the merge lease takes it only while the job is its task's active one",
        edits: &[Edit {
            file: "crates/baton-store-sqlite/src/lib.rs",
            find: "        if !runs_job_in(&mut tx, task, job).await? {\n            return Ok(None);",
            replace: "        if !runs_job_in(&mut tx, task, job).await? && false {\n            return Ok(None);",
        }],
        test: "baton-store-sqlite/conformance/a_jobs_lease_is_taken_only_while_it_is_its_tasks_active_job",
    },
    Guard {
        name: "the merge queue's landing takes the lease only together with the entry's move to landing",
        edits: &[Edit {
            file: "crates/baton-store-sqlite/src/lib.rs",
            find: "        if !update_queue_entry_in(&mut tx, task, expect, change, now_ms).await? {\n            return Ok(None);",
            replace: "        if !update_queue_entry_in(&mut tx, task, expect, change, now_ms).await? {\n            tx.commit().await?;\n            return Ok(None);",
        }],
        test: "baton-store-sqlite/conformance/the_queue_lands_a_change_with_its_lease_or_not_at_all",
    },
    Guard {
        name: "the merge gate's own landing takes the lease only while its job is the task's active one",
        edits: &[Edit {
            file: "crates/baton-store-sqlite/src/lib.rs",
            find: "            && !runs_job_in(&mut tx, task, job).await?\n",
            replace: "            && !runs_job_in(&mut tx, task, job).await?\n            && false\n",
        }],
        test: "baton-store-sqlite/conformance/the_queue_lands_a_change_with_its_lease_or_not_at_all",
    },
    Guard {
        name: "a merge gate's landing job takes the merge lease only while it is its task's active job",
        edits: &[Edit {
            file: "crates/baton-engine/src/gates/merge.rs",
            find: "    match ctx.store.acquire_lease_for_job(&lease, ctx.task.id, ctx.job.id, ttl_ms, ctx.clock.now_ms()).await {",
            replace: "    match ctx.store.acquire_lease(&lease, &baton_store::task_holder(ctx.task.id), ttl_ms, ctx.clock.now_ms()).await.map(Some) {",
        }],
        test: "a_landing_job_ended_under_its_executor_takes_no_merge_lease",
    },
    Guard {
        name: "a deploy job takes the merge lease only while it is its task's active job",
        edits: &[Edit {
            file: EXECUTOR,
            find: "engine.store().acquire_lease_for_job(&lease, ctx.task.id, ctx.job.id, ttl_ms, now).await.transpose()",
            replace: "engine.store().acquire_lease(&lease, &task_holder(ctx.task.id), ttl_ms, now).await.map(Some).transpose()",
        }],
        test: "a_deploy_job_ended_under_its_executor_takes_no_merge_lease",
    },
    Guard {
        name: "a revert's dependency waits are withdrawn after an unfreeze too",
        edits: &[Edit {
            file: "crates/baton-engine/src/queue.rs",
            find: "                _ if crate::monitor::is_revert(engine, entry.task).await? => {",
            replace: "                _ if false && crate::monitor::is_revert(engine, entry.task).await? => {",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "the dependency backstop withdraws a revert's waits instead of blocking it",
        edits: &[Edit {
            file: "crates/baton-engine/src/dependencies.rs",
            find: "    if crate::monitor::is_revert(engine, task.id).await? {",
            replace: "    if false && crate::monitor::is_revert(engine, task.id).await? {",
        }],
        test: "baton-engine/degraded/the_dependency_backstop_withdraws_a_reverts_wait_instead_of_blocking_it",
    },
    Guard {
        name: "a STOP waits through a deploy step that waited before it looked",
        edits: &[Edit {
            file: "crates/baton-domain/src/decide.rs",
            find: "        let unsettled = landed || waits || matches!(outcome, JobOutcome::Infrastructure { .. });",
            replace: "        let unsettled = landed || (waits && false) || matches!(outcome, JobOutcome::Infrastructure { .. });",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "a landed change of a batch waits for no dependency",
        edits: &[Edit {
            file: "crates/baton-engine/src/queue.rs",
            find: "        crate::dependencies::withdraw_waits(engine, entry.task, &why).await?;",
            replace: "        let _ = &why;",
        }],
        test: "a_landed_change_of_a_batch_does_not_wait_for_a_healthy_dependency",
    },
    Guard {
        name: "no deploy runs before its merge is recorded on the timeline",
        edits: &[Edit {
            file: EXECUTOR,
            find: "    if let (Err(error), Some(_)) = (&recorded, &deploy_argv) {",
            replace: "    if let (Err(error), true) = (&recorded, false) {",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "a change landing on its own, or a revert in a frozen repository, waits for no dependency",
        edits: &[Edit {
            file: "crates/baton-engine/src/queue.rs",
            find: "            crate::dependencies::withdraw_waits(engine, entry.task, why).await?;",
            replace: "            let _ = why;",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "the reaper records no job's end while it cannot tell whether its group runs",
        edits: &[Edit {
            file: "crates/baton-engine/src/reaper.rs",
            find: "            Ok(group) => group,\n            Err(error) => {",
            replace: "            Ok(group) => group,\n            Err(_) if true => None,\n            Err(error) => {",
        }],
        test: "seeds_that_found_bugs_keep_the_invariants",
    },
    Guard {
        name: "the dependency backstop withdraws a shipping change's dead dependencies",
        edits: &[Edit {
            file: "crates/baton-engine/src/dependencies.rs",
            find: "    if engine.stop_context(task).await? != (false, false) {",
            replace: "    if engine.stop_context(task).await? != (false, false) && false {",
        }],
        test: "a_dependency_cancelled_while_its_batch_lands_does_not_hold_the_change_back",
    },
    Guard {
        name: "a parked change of a landing batch never leaves the merge queue",
        edits: &[Edit {
            file: "crates/baton-store/src/lib.rs",
            find: "    if parked {",
            replace: "    if parked && false {",
        }],
        test: "baton-store-sqlite/conformance/merge_queue_entries_commit_with_the_parking_and_leave_with_the_lease",
    },
    Guard {
        name: "a change waiting for a dependency stays off the merge queue's train",
        edits: &[Edit {
            file: "crates/baton-engine/src/queue.rs",
            find: "|| !waiting.contains(&e.task)",
            replace: "|| waiting.is_empty() || true",
        }],
        test: "a_change_waiting_for_a_dependency_does_not_hold_the_merge_queue",
    },
    Guard {
        name: "a reference lock left by a killed writer is taken over",
        edits: &[Edit {
            file: GIT,
            find: "open().or_else(|held| if remove_stale_lock(&lock) { open() } else { Err(held) })",
            replace: "open()",
        }],
        test: "baton-runner/clean_marks/batons_own_reference_written_in_place_is_what_git_reads_and_anything_unusual_is_left_to_git",
    },
    Guard {
        name: "clean removes the branch lock a killed commit left",
        edits: &[Edit {
            file: "crates/baton-runner/src/ports.rs",
            find: "                crate::git::remove_stale_lock(&crate::git::common_dir(dir).join(format!(\"{branch}.lock\")));",
            replace: "                let _ = branch;",
        }],
        test: "baton-runner/clean_marks/clean_removes_the_locks_a_killed_commit_left",
    },
];

/// Runs the pinning test; `true` when it passed.
fn test_passes(root: &Path, test: &str) -> Result<bool, String> {
    let (package, suite, name) = match test.split('/').collect::<Vec<_>>()[..] {
        [package, suite, name] => (package, suite, name),
        _ => ("baton-sim", "sim", test),
    };
    let status = Command::new("cargo")
        .args(["nextest", "run", "--no-fail-fast", "-p", package, "--test", suite, "-E"])
        .arg(format!("test(={name})"))
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("running cargo nextest: {e}"))?;
    Ok(status.success())
}

/// Applies `edits`, returning the original texts to restore.
fn apply(root: &Path, edits: &[Edit]) -> Result<Vec<(PathBuf, String)>, String> {
    let mut originals: Vec<(PathBuf, String)> = Vec::new();
    for edit in edits {
        let path = root.join(edit.file);
        let text = match originals.iter().find(|(p, _)| *p == path) {
            Some(_) => std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?,
            None => {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                originals.push((path.clone(), text.clone()));
                text
            }
        };
        if text.matches(edit.find).count() != 1 {
            restore(&originals);
            return Err(format!("{}: the guard's text is not found exactly once:\n{}", edit.file, edit.find));
        }
        std::fs::write(&path, text.replacen(edit.find, edit.replace, 1))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(originals)
}

fn restore(originals: &[(PathBuf, String)]) {
    for (path, text) in originals {
        if let Err(error) = std::fs::write(path, text) {
            eprintln!("xtask guards: RESTORING {} FAILED: {error}", path.display());
        }
    }
}

/// Runs every guard (or those whose name contains `only`); fails when any guard's test does not
/// fail without it, or does not pass with it.
pub fn run(root: &Path, only: Option<&str>) -> Result<(), String> {
    let mut bad = Vec::new();
    for guard in GUARDS.iter().filter(|g| only.is_none_or(|o| g.name.contains(o) || g.test.contains(o))) {
        eprintln!("xtask guards: {} — removing it …", guard.name);
        let originals = apply(root, guard.edits)?;
        let without = test_passes(root, guard.test);
        restore(&originals);
        let without = without?;
        let with = test_passes(root, guard.test)?;
        let verdict = match (without, with) {
            (false, true) => "ok: fails without the guard, passes with it",
            (true, _) => "NOT PINNED: the test passes without the guard",
            (false, false) => "BROKEN: the test fails even with the guard",
        };
        println!("{:<92} {:<60} {verdict}", guard.name, guard.test);
        if without || !with {
            bad.push(guard.name);
        }
    }
    if bad.is_empty() { Ok(()) } else { Err(format!("guards not proven: {}", bad.join("; "))) }
}
