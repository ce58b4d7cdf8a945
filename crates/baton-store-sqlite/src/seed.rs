//! `SqliteStore::bench_seed`: a large, realistic backlog written with a few set-based statements
//! (`baton bench idle`, the store's criterion benches). Not for production data.

use super::SqliteStore;
use baton_domain::{Hold, TaskState};
use baton_store::StoreResult;
use baton_store::rows::state_columns;
use sqlx::Connection;

/// How long ago the newest seeded task last changed.
const SEED_LAST_CHANGE_AGO_MS: i64 = 15 * 60 * 1000;
/// Over how long the seeded tasks' changes are spread.
const SEED_SPAN_MS: i64 = 30 * 86_400_000;

/// Stages the seeded live tasks are spread over.
const STAGES: &[&str] = &["analysis", "architecture", "development", "review", "testing"];

/// What one task of every 20 is, by `id % 20`: mostly live, a quarter ended.
fn kind(slot: usize) -> (Option<&'static str>, Hold) {
    let reason = || "seeded".to_string();
    match slot {
        0..=3 => (Some("done"), Hold::None),
        4 => (Some("cancelled"), Hold::None),
        5..=11 => (None, Hold::None),
        12 | 13 | 19 => (None, Hold::AwaitingApproval),
        14 => (None, Hold::NeedsInput { questions: "which one?".into() }),
        15 => (None, Hold::Blocked { reason: reason() }),
        16 => (None, Hold::PausedBudget { reason: reason() }),
        17 => (None, Hold::PausedQuota { reason: reason(), resume_at_ms: 0 }),
        _ => (None, Hold::AwaitingConfirm),
    }
}

impl SqliteStore {
    /// Adds `tasks` tasks after the existing ones, with 3 finished jobs, 6 timeline events, 2
    /// priced agent runs and 1 acknowledged outbox row each, and for a live task holding for
    /// nothing a queued job due only in `now_ms + 10 days` (so nothing runs). Quota pauses resume
    /// a day after `now_ms`; tasks last changed over the month before. Ids are contiguous; everything is one transaction of set-based
    /// inserts (seconds for 100 000 tasks).
    #[doc(hidden)]
    pub async fn bench_seed(&self, tasks: u32, now_ms: i64) -> StoreResult<()> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::raw_sql(
            "CREATE TEMP TABLE IF NOT EXISTS bench_kinds (k INTEGER PRIMARY KEY, stage TEXT, hold TEXT, state TEXT, due INTEGER, queued INTEGER);
             DELETE FROM bench_kinds;",
        )
        .execute(&mut *tx)
        .await?;
        let day_ms = 86_400_000;
        for slot in 0..20 {
            for (s, stage) in STAGES.iter().enumerate() {
                let (ended, mut hold) = kind(slot);
                if let Hold::PausedQuota { resume_at_ms, .. } = &mut hold {
                    *resume_at_ms = now_ms + day_ms;
                }
                let queued = ended.is_none() && hold == Hold::None;
                let state = TaskState { hold, ..TaskState::new(ended.unwrap_or(stage)) };
                let columns = state_columns(&state)?;
                sqlx::query(
                    "INSERT INTO bench_kinds (k, stage, hold, state, due, queued) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind((slot * STAGES.len() + s) as i64)
                .bind(&state.stage)
                .bind(columns.hold)
                .bind(columns.json)
                .bind(columns.due_at_ms)
                .bind(queued)
                .execute(&mut *tx)
                .await?;
            }
        }
        let first: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM tasks").fetch_one(&mut *tx).await?;
        let first_job: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM jobs").fetch_one(&mut *tx).await?;
        let stages = STAGES.len() as i64;
        // Tasks were last touched over the past month, newest a few minutes ago (as a real
        // backlog: nothing ended in the reconciler's recent window).
        let spacing_ms = (SEED_SPAN_MS / i64::from(tasks.max(1))).max(1);
        // `n.i` counts 0..tasks; task id = first + i; its kind is (id % 20, (id / 20) % stages).
        let numbers = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1)";
        let kind_of = format!("((($2 + n.i) % 20) * {stages} + (($2 + n.i) / 20) % {stages})");
        let statements = [
            format!(
                "{numbers} INSERT INTO tasks (id, repo, work_item_id, title, body, branch, stage, hold, state, current_job,
                   version, created_at, updated_at, due_at_ms)
                 SELECT $2 + n.i, 'repo' || (n.i % 4), 'BENCH-' || ($2 + n.i), 'Seeded task ' || ($2 + n.i),
                   'A seeded task body of a realistic length, a few sentences describing the ticket.',
                   'baton/bench-' || ($2 + n.i), k.stage, k.hold, k.state,
                   CASE WHEN k.queued THEN $3 + n.i * 4 + 3 END, 3, $5 - n.i * $6, $5 - n.i * $6, k.due
                 FROM n JOIN bench_kinds k ON k.k = {kind_of}"
            ),
            // Three finished jobs per task, and the queued one of a task holding for nothing.
            format!(
                "{numbers}, j(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM j WHERE x < 3)
                 INSERT INTO jobs (id, task_id, repo, stage, attempt, status, available_at, created_at, started_at, finished_at, result)
                 SELECT $3 + n.i * 4 + j.x, $2 + n.i, 'repo' || (n.i % 4), k.stage, 1,
                   CASE WHEN j.x = 3 THEN 'queued' ELSE 'done' END,
                   CASE WHEN j.x = 3 THEN $4 + 864000000 ELSE $5 - n.i * $6 END,
                   $5 - n.i * $6, CASE WHEN j.x = 3 THEN NULL ELSE $5 - n.i * $6 END, CASE WHEN j.x = 3 THEN NULL ELSE $5 - n.i * $6 END,
                   CASE WHEN j.x = 3 THEN NULL ELSE '{{\"outcome\":{{\"kind\":\"completed\",\"verdicts\":[]}}}}' END
                 FROM n JOIN bench_kinds k ON k.k = {kind_of} CROSS JOIN j WHERE j.x < 3 OR k.queued"
            ),
            format!(
                "{numbers}, e(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM e WHERE x < 5)
                 INSERT INTO events (task_id, at, kind, stage, message, detail)
                 SELECT $2 + n.i, $5 - n.i * $6 + e.x, CASE e.x WHEN 0 THEN 'created' WHEN 5 THEN 'advanced' ELSE 'progress' END,
                   'analysis', 'a seeded timeline event', '{{\"from\":\"analysis\",\"to\":\"architecture\"}}'
                 FROM n CROSS JOIN e"
            ),
            format!(
                "{numbers}, r(x) AS (SELECT 0 UNION ALL SELECT 1)
                 INSERT INTO agent_runs (job_id, task_id, stage, adapter, model, started_at, ended_at, exit_code, status,
                   input_tokens, output_tokens, cost_usd, log_path)
                 SELECT $3 + n.i * 4 + r.x, $2 + n.i, 'analysis', 'claude', 'claude-sonnet-4-5', $5 - n.i * $6, $5 - n.i * $6 + 1000, 0,
                   'done', 12000, 3000, 0.05, ''
                 FROM n CROSS JOIN r"
            ),
            format!(
                "{numbers} INSERT INTO outbox (task_id, kind, payload, created_at, available_at, attempts, done_at)
                 SELECT $2 + n.i, 'notify', '{{}}', $5 - n.i * $6, $5 - n.i * $6, 1, $5 - n.i * $6 FROM n"
            ),
        ];
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(i64::from(tasks))
                .bind(first)
                .bind(first_job)
                .bind(now_ms)
                .bind(now_ms - SEED_LAST_CHANGE_AGO_MS)
                .bind(spacing_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // No ANALYZE: a production database has no statistics either, and the plans must hold without.
        Ok(())
    }
}
