//! Shared by the SQL backends: the row decoders (one macro, expanded over each backend's row
//! type) and the stored columns of a task state, so every backend reads and writes the same
//! shapes.

use crate::StoreResult;
use baton_domain::TaskState;

/// Work-item numbers tried past a collision before giving up.
pub const WORK_ITEM_WALK_MAX: u32 = 10_000;

/// The stored columns of a task state: the JSON (without the active job), the hold kind
/// (`Hold::label`, '' for none) and when the hold ends by itself (`due_at_ms`).
pub struct StateColumns {
    pub json: String,
    pub hold: String,
    pub due_at_ms: Option<i64>,
}

pub fn state_columns(state: &TaskState) -> StoreResult<StateColumns> {
    let mut stored = state.clone();
    // The active job lives in its own column, written by the transition itself.
    stored.job = None;
    let due_at_ms = state.hold.due_at_ms();
    Ok(StateColumns { json: serde_json::to_string(&stored)?, hold: state.hold.label().to_string(), due_at_ms })
}

/// The stored hold of a task, read inside a transition that leaves the merge queue (the version
/// check that follows makes it the state the transition was decided on).
pub const HOLD_OF_TASK: &str = "SELECT hold FROM tasks WHERE id = $1";

/// A lease by name, read inside an acquire (under the acquirers' lock or the one writer).
pub const LEASE_BY_NAME: &str = "SELECT * FROM leases WHERE name = $1";

/// A holder's renewal of its own lease: `$2` is the new expiry.
pub const EXTEND_LEASE: &str = "UPDATE leases SET expires_at = $2 WHERE name = $1";

/// The next fencing token of a lease name. Tokens survive release, so a new holder always gets a
/// larger token than any earlier one.
pub const NEXT_LEASE_TOKEN: &str = "INSERT INTO lease_tokens (name, last_token) VALUES ($1, 1)
     ON CONFLICT (name) DO UPDATE SET last_token = lease_tokens.last_token + 1 RETURNING last_token";

/// A grant of a lease to a new holder (`$1` name, `$2` holder, `$3` token, `$4` acquired at,
/// `$5` expires at), over whatever expired row is there.
pub const GRANT_LEASE: &str =
    "INSERT INTO leases (name, holder, token, acquired_at, expires_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token,
       acquired_at = excluded.acquired_at, expires_at = excluded.expires_at";

/// A merge-queue entry's compare-and-set (`Store::queue_update`): `$4`…`$11` (state, base, head,
/// fails, reason, updated at, batch, split) applied only while the entry of task `$1` is in state
/// `$2` on base `$3` (either may be null: compared null-safely).
pub const UPDATE_QUEUE_ENTRY: &str =
    "UPDATE merge_queue SET state = $4, base = $5, head = $6, fails = $7, reason = $8, updated_at = $9,
         batch = $10, split = $11
     WHERE task_id = $1 AND state = $2 AND base IS NOT DISTINCT FROM $3";

/// [`UPDATE_QUEUE_ENTRY`] with its arguments bound, on either engine.
pub fn update_queue_entry<'a, DB>(
    task: crate::TaskId,
    expect: &crate::QueueExpect,
    change: &crate::QueueChange,
    now_ms: i64,
) -> sqlx::query::Query<'a, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<&'t str>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    sqlx::query(UPDATE_QUEUE_ENTRY)
        .bind(task.0)
        .bind(expect.state.as_str())
        .bind(expect.base.as_deref())
        .bind(change.state.as_str())
        .bind(change.base.as_deref())
        .bind(change.head.as_deref())
        .bind(i64::from(change.fails))
        .bind(change.reason.as_deref())
        .bind(now_ms)
        .bind(change.batch.map(|b| b.0))
        .bind(change.split.map(i64::from))
}

/// Whether a stored hold ([`HOLD_OF_TASK`]) is the merge queue's: the task was parked there.
pub fn parked_hold(hold: Option<&str>) -> bool {
    hold == Some(baton_domain::Hold::MergeQueue.label())
}

/// Columns of `usage_records`, in the order [`INSERT_USAGE_RECORD`] binds them.
pub const USAGE_RECORD_COLUMNS: &str = "source, category, model, input_tokens, output_tokens, cache_read_tokens, \
     cache_write_tokens, units, unit_kind, cost_usd, priced_by, idempotency_key, task_id, repo, at, principal";

/// Stores a usage record unless its (source, idempotency key) is taken; returns its id when stored
/// (the same SQL on both backends: `$n` placeholders, `ON CONFLICT … DO NOTHING RETURNING`).
pub const INSERT_USAGE_RECORD: &str = "INSERT INTO usage_records (source, category, model, input_tokens, output_tokens, \
     cache_read_tokens, cache_write_tokens, units, unit_kind, cost_usd, priced_by, idempotency_key, task_id, repo, at, \
     principal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
     ON CONFLICT (source, idempotency_key) DO NOTHING RETURNING id";

/// The record stored first under a (source, idempotency key).
pub const USAGE_RECORD_BY_KEY: &str = "SELECT id, source, category, model, input_tokens, output_tokens, \
     cache_read_tokens, cache_write_tokens, units, unit_kind, cost_usd, priced_by, idempotency_key, task_id, repo, at, \
     principal FROM usage_records WHERE source = $1 AND idempotency_key = $2";

/// Spend of the tasks that reached done: (done tasks, their agent runs' cost, their linked records' cost).
pub const DONE_TASK_SPEND: &str = "SELECT (SELECT COUNT(*) FROM tasks WHERE stage = 'done') AS tasks, \
     (SELECT SUM(r.cost_usd) FROM agent_runs r JOIN tasks t ON t.id = r.task_id WHERE t.stage = 'done') AS agent, \
     (SELECT SUM(u.cost_usd) FROM usage_records u JOIN tasks t ON t.id = u.task_id WHERE t.stage = 'done') AS ingested";

/// The `SELECT … FROM usage_records` of `Store::usage_record_totals`, with the backend's
/// expression for a UTC day of `r.at` and its cast of a sum of integers.
pub fn usage_totals_sql(day: &str, int: &str) -> String {
    format!(
        "SELECT r.source, r.category, r.model, r.unit_kind, r.repo, \
           CASE WHEN t.id IS NULL THEN NULL ELSE t.repo || '/' || t.work_item_id END AS task, {day} AS day, \
           COUNT(*) AS records, SUM(r.input_tokens){int} AS input_tokens, SUM(r.output_tokens){int} AS output_tokens, \
           SUM(r.cache_read_tokens){int} AS cache_read_tokens, SUM(r.cache_write_tokens){int} AS cache_write_tokens, \
           SUM(r.units) AS units, SUM(r.cost_usd) AS cost_usd, \
           SUM(CASE WHEN r.cost_usd IS NULL THEN 0.0 ELSE r.units END) AS priced_units, \
           SUM(CASE WHEN r.cost_usd IS NULL THEN 1 ELSE 0 END){int} AS unpriced_records \
         FROM usage_records r LEFT JOIN tasks t ON t.id = r.task_id GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )
}

/// The ingested half of `Store::spend_usd`: records with a repository, filtered as the agent
/// runs are (task, repository, since), placeholders numbered by `placeholder`.
pub fn ingested_spend_sql(filter: &crate::SpendFilter, mut placeholder: impl FnMut() -> String) -> String {
    let mut terms = vec!["repo IS NOT NULL".to_string()];
    if filter.task.is_some() {
        terms.push(format!("task_id = {}", placeholder()));
    }
    if filter.repo.is_some() {
        terms.push(format!("repo = {}", placeholder()));
    }
    if filter.since_ms.is_some() {
        terms.push(format!("at >= {}", placeholder()));
    }
    format!("SELECT SUM(cost_usd) FROM usage_records WHERE {}", terms.join(" AND "))
}

/// Defines the `*_from_row` decoders for a backend's row type (`SqliteRow`, `PgRow`): every
/// integer column is read as `i64`, JSON columns as text. The backend must import `sqlx::Row`.
#[doc(hidden)]
#[macro_export]
macro_rules! row_decoders {
    ($row:ty) => {
        fn opt_u32(row: &$row, column: &str) -> $crate::StoreResult<Option<u32>> {
            let value: Option<i64> = row.try_get(column)?;
            Ok(value.map(|v| v as u32))
        }

        fn json_column(row: &$row, column: &str) -> $crate::StoreResult<::serde_json::Value> {
            let text: String = row.try_get(column)?;
            Ok(::serde_json::from_str(&text)?)
        }

        fn delivery_from_row(row: &$row) -> $crate::StoreResult<$crate::DeliveryRecord> {
            Ok($crate::DeliveryRecord {
                id: row.try_get("id")?,
                source: row.try_get("source")?,
                delivery_id: row.try_get("delivery_id")?,
                event: row.try_get("event")?,
                received_at_ms: row.try_get("received_at")?,
                payload: row.try_get("payload")?,
                processed_at_ms: row.try_get("processed_at")?,
                parsed: row.try_get("parsed")?,
                error: row.try_get("error")?,
            })
        }

        fn token_from_row(row: &$row) -> $crate::StoreResult<$crate::ApiTokenRecord> {
            Ok($crate::ApiTokenRecord {
                name: row.try_get("name")?,
                scope: row.try_get("scope")?,
                created_by: row.try_get("created_by")?,
                created_at_ms: row.try_get("created_at")?,
                revoked_at_ms: row.try_get("revoked_at")?,
            })
        }

        fn task_from_row(row: &$row) -> $crate::StoreResult<$crate::TaskRecord> {
            let state_text: String = row.try_get("state")?;
            let mut state: ::baton_domain::TaskState = ::serde_json::from_str(&state_text)?;
            state.job = row.try_get::<Option<i64>, _>("current_job")?.map(JobId);
            Ok($crate::TaskRecord {
                id: ::baton_domain::TaskId(row.try_get("id")?),
                repo: row.try_get("repo")?,
                work_item_id: row.try_get("work_item_id")?,
                title: row.try_get("title")?,
                body: row.try_get("body")?,
                branch: row.try_get("branch")?,
                external_ref: row.try_get("external_ref")?,
                state,
                version: row.try_get("version")?,
                created_at_ms: row.try_get("created_at")?,
                updated_at_ms: row.try_get("updated_at")?,
            })
        }

        fn job_from_row(row: &$row) -> $crate::StoreResult<$crate::JobRecord> {
            let status: String = row.try_get("status")?;
            let result: Option<String> = row.try_get("result")?;
            Ok($crate::JobRecord {
                id: ::baton_domain::JobId(row.try_get("id")?),
                task_id: ::baton_domain::TaskId(row.try_get("task_id")?),
                repo: row.try_get("repo")?,
                stage: row.try_get("stage")?,
                attempt: row.try_get::<i64, _>("attempt")? as u32,
                status: $crate::JobStatus::parse(&status)
                    .ok_or_else(|| $crate::StoreError::Corrupt(format!("job status `{status}`")))?,
                available_at_ms: row.try_get("available_at")?,
                rank: row.try_get("rank")?,
                owner: row.try_get("owner")?,
                pid: opt_u32(row, "pid")?,
                pgid: opt_u32(row, "pgid")?,
                proc_start: row.try_get::<Option<i64>, _>("proc_start")?.map(|t| t as u64),
                created_at_ms: row.try_get("created_at")?,
                started_at_ms: row.try_get("started_at")?,
                finished_at_ms: row.try_get("finished_at")?,
                result: result.map(|r| ::serde_json::from_str(&r)).transpose()?,
            })
        }

        fn event_from_row(row: &$row) -> $crate::StoreResult<$crate::EventRecord> {
            Ok($crate::EventRecord {
                id: row.try_get("id")?,
                task_id: ::baton_domain::TaskId(row.try_get("task_id")?),
                at_ms: row.try_get("at")?,
                kind: row.try_get("kind")?,
                stage: row.try_get("stage")?,
                message: row.try_get("message")?,
                detail: json_column(row, "detail")?,
            })
        }

        fn agent_run_from_row(row: &$row) -> $crate::StoreResult<$crate::AgentRunRecord> {
            let u = |c: &str| -> $crate::StoreResult<u64> { Ok(row.try_get::<i64, _>(c)? as u64) };
            Ok($crate::AgentRunRecord {
                id: row.try_get("id")?,
                job_id: ::baton_domain::JobId(row.try_get("job_id")?),
                task_id: ::baton_domain::TaskId(row.try_get("task_id")?),
                stage: row.try_get("stage")?,
                adapter: row.try_get("adapter")?,
                model: row.try_get("model")?,
                pid: opt_u32(row, "pid")?,
                started_at_ms: row.try_get("started_at")?,
                ended_at_ms: row.try_get("ended_at")?,
                exit_code: row.try_get::<Option<i64>, _>("exit_code")?.map(|c| c as i32),
                status: row.try_get("status")?,
                error: row.try_get("error")?,
                session_id: row.try_get("session_id")?,
                turns: opt_u32(row, "turns")?,
                input_tokens: u("input_tokens")?,
                output_tokens: u("output_tokens")?,
                cache_read_tokens: u("cache_read_tokens")?,
                cache_write_tokens: u("cache_write_tokens")?,
                reasoning_tokens: u("reasoning_tokens")?,
                cost_usd: row.try_get("cost_usd")?,
                log_path: row.try_get("log_path")?,
            })
        }

        fn effect_from_row(row: &$row) -> $crate::StoreResult<$crate::EffectRecord> {
            Ok($crate::EffectRecord {
                id: row.try_get("id")?,
                task_id: ::baton_domain::TaskId(row.try_get("task_id")?),
                kind: row.try_get("kind")?,
                payload: json_column(row, "payload")?,
                created_at_ms: row.try_get("created_at")?,
                available_at_ms: row.try_get("available_at")?,
                attempts: row.try_get::<i64, _>("attempts")? as u32,
                last_error: row.try_get("last_error")?,
                done_at_ms: row.try_get("done_at")?,
            })
        }

        fn queue_from_row(row: &$row) -> $crate::StoreResult<$crate::QueueEntry> {
            let state: String = row.try_get("state")?;
            Ok($crate::QueueEntry {
                task: ::baton_domain::TaskId(row.try_get("task_id")?),
                work_item_id: row.try_get("work_item_id")?,
                repo: row.try_get("repo")?,
                priority: row.try_get("priority")?,
                entered_at_ms: row.try_get("entered_at")?,
                state: $crate::QueueState::parse(&state)
                    .ok_or_else(|| $crate::StoreError::Corrupt(format!("unknown merge queue state `{state}`")))?,
                base: row.try_get("base")?,
                head: row.try_get("head")?,
                fails: row.try_get::<i64, _>("fails")?.clamp(0, i64::from(u32::MAX)) as u32,
                reason: row.try_get("reason")?,
                updated_at_ms: row.try_get("updated_at")?,
                batch: row.try_get::<Option<i64>, _>("batch")?.map(TaskId),
                split: row.try_get::<Option<i64>, _>("split")?.map(|s| s.clamp(1, i64::from(u32::MAX)) as u32),
            })
        }

        fn usage_record_from_row(row: &$row) -> $crate::StoreResult<$crate::UsageRecord> {
            let u = |c: &str| -> $crate::StoreResult<u64> { Ok(row.try_get::<i64, _>(c)?.max(0) as u64) };
            Ok($crate::UsageRecord {
                id: row.try_get("id")?,
                record: $crate::NewUsageRecord {
                    source: row.try_get("source")?,
                    category: row.try_get("category")?,
                    model: row.try_get("model")?,
                    input_tokens: u("input_tokens")?,
                    output_tokens: u("output_tokens")?,
                    cache_read_tokens: u("cache_read_tokens")?,
                    cache_write_tokens: u("cache_write_tokens")?,
                    units: row.try_get("units")?,
                    unit_kind: row.try_get("unit_kind")?,
                    cost_usd: row.try_get("cost_usd")?,
                    priced_by: row.try_get("priced_by")?,
                    idempotency_key: row.try_get("idempotency_key")?,
                    task: row.try_get::<Option<i64>, _>("task_id")?.map(::baton_domain::TaskId),
                    repo: row.try_get("repo")?,
                    at_ms: row.try_get("at")?,
                    principal: row.try_get("principal")?,
                },
            })
        }

        fn usage_totals_from_row(row: &$row) -> $crate::StoreResult<$crate::UsageRecordTotals> {
            let u = |c: &str| -> $crate::StoreResult<u64> {
                Ok(row.try_get::<Option<i64>, _>(c)?.unwrap_or(0).max(0) as u64)
            };
            Ok($crate::UsageRecordTotals {
                source: row.try_get("source")?,
                category: row.try_get("category")?,
                model: row.try_get("model")?,
                unit_kind: row.try_get("unit_kind")?,
                repo: row.try_get("repo")?,
                task: row.try_get("task")?,
                day: row.try_get("day")?,
                records: u("records")?,
                input_tokens: u("input_tokens")?,
                output_tokens: u("output_tokens")?,
                cache_read_tokens: u("cache_read_tokens")?,
                cache_write_tokens: u("cache_write_tokens")?,
                units: row.try_get::<Option<f64>, _>("units")?.unwrap_or(0.0),
                cost_usd: row.try_get::<Option<f64>, _>("cost_usd")?.unwrap_or(0.0),
                priced_units: row.try_get::<Option<f64>, _>("priced_units")?.unwrap_or(0.0),
                unpriced_records: u("unpriced_records")?,
            })
        }

        fn dependency_from_row(row: &$row) -> $crate::StoreResult<$crate::DependencyRecord> {
            Ok($crate::DependencyRecord {
                task_id: ::baton_domain::TaskId(row.try_get("task_id")?),
                depends_on: ::baton_domain::TaskId(row.try_get("depends_on")?),
                depends_on_work_item: row.try_get("depends_on_work_item")?,
                depends_on_stage: row.try_get("depends_on_stage")?,
                created_at_ms: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
            })
        }

        fn freeze_row(row: &$row) -> $crate::StoreResult<$crate::RepoFreeze> {
            let task = |column: &str| -> $crate::StoreResult<Option<::baton_domain::TaskId>> {
                Ok(row.try_get::<Option<i64>, _>(column)?.map(::baton_domain::TaskId))
            };
            Ok($crate::RepoFreeze {
                id: row.try_get("id")?,
                repo: row.try_get("repo")?,
                task: task("task_id")?,
                incident: task("incident_task_id")?,
                revert: task("revert_task_id")?,
                frozen_by: row.try_get("frozen_by")?,
                reason: row.try_get("reason")?,
                frozen_at_ms: row.try_get("frozen_at")?,
                unfrozen_by: row.try_get("unfrozen_by")?,
                unfrozen_at_ms: row.try_get("unfrozen_at")?,
            })
        }

        fn coverage_row(row: &$row) -> $crate::StoreResult<$crate::CoverageBaseline> {
            Ok($crate::CoverageBaseline {
                repo: row.try_get("repo")?,
                pct: row.try_get("pct")?,
                updated_at_ms: row.try_get("updated_at")?,
                set_by: row.try_get("set_by")?,
                reason: row.try_get("reason")?,
            })
        }

        fn lesson_row(row: &$row) -> $crate::StoreResult<$crate::LessonRecord> {
            let tags: String = row.try_get("tags")?;
            Ok($crate::LessonRecord {
                id: row.try_get("id")?,
                slug: row.try_get("slug")?,
                title: row.try_get("title")?,
                body: row.try_get("body")?,
                source: row.try_get("source")?,
                repo: row.try_get("repo")?,
                stage: row.try_get("stage")?,
                tags: $crate::lesson_tags_parse(&tags)?,
                task: row.try_get("task")?,
                created_at_ms: row.try_get("created_at")?,
                updated_at_ms: row.try_get("updated_at")?,
                hits: row.try_get("hits")?,
                last_hit_at_ms: row.try_get("last_hit_at")?,
                status: row.try_get("status")?,
            })
        }

        fn proposal_row(row: &$row) -> $crate::StoreResult<$crate::TaskProposalRecord> {
            Ok($crate::TaskProposalRecord {
                id: row.try_get("id")?,
                from_task: ::baton_domain::TaskId(row.try_get("from_task_id")?),
                repo: row.try_get("repo")?,
                title: row.try_get("title")?,
                body: row.try_get("body")?,
                status: row.try_get("status")?,
                created_at_ms: row.try_get("created_at")?,
                decided_at_ms: row.try_get("decided_at")?,
                decided_by: row.try_get("decided_by")?,
                created_task: row.try_get::<Option<i64>, _>("created_task_id")?.map(::baton_domain::TaskId),
            })
        }

        fn lease_from_row(row: &$row) -> $crate::StoreResult<$crate::LeaseRecord> {
            Ok($crate::LeaseRecord {
                name: row.try_get("name")?,
                holder: row.try_get("holder")?,
                token: row.try_get("token")?,
                acquired_at_ms: row.try_get("acquired_at")?,
                expires_at_ms: row.try_get("expires_at")?,
            })
        }
    };
}
