//! The dashboard's pages: board, task detail (and its log tail), usage, system. Each reads through
//! the `Store` and renders a template; none changes anything.

use super::render::{self, format_duration, markdown, page};
use super::{Viewer, viewer};
use crate::AppState;
use crate::api::events::latest_event_id;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_domain::pipeline::{CANCELLED, DONE};
use baton_domain::{Hold, Verdict};
use baton_store::{EventRecord, JobStatus, TaskFilter, TaskKey, TaskRecord};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Cards per column on the board; the rest are behind the column's own paged list.
pub const BOARD_CARDS_MAX: usize = 12;
/// Tasks per page in one stage's list.
pub const STAGE_PAGE_SIZE: usize = 100;
/// Held tasks listed in the board's "waiting for you" strip.
pub const HELD_MAX: usize = 20;
/// Timeline events shown on a task page (the newest).
pub const TIMELINE_SHOWN_MAX: usize = 200;
/// Bytes of an agent log shown as its tail.
pub const LOG_TAIL_BYTES: u64 = 16 * 1024;
/// Bytes of one artifact rendered; a longer one is cut with a note.
pub const ARTIFACT_BYTES_MAX: usize = 256 * 1024;
/// Artifacts rendered on one task page.
pub const ARTIFACTS_MAX: usize = 16;
/// Jobs listed on the system page per status.
pub const JOBS_LISTED_MAX: usize = 50;

#[derive(Debug, Serialize)]
struct Common {
    title: String,
    nav: &'static str,
    user: Option<String>,
    scope: Option<String>,
    csrf: Option<String>,
    can_act: bool,
    mode: &'static str,
    cursor: i64,
}

fn common(state: &AppState, viewer: &Viewer, title: String, nav: &'static str, cursor: i64) -> Common {
    Common {
        title,
        nav,
        user: viewer.name().map(str::to_string),
        scope: viewer.session.as_ref().map(|s| s.principal.scope.to_string()),
        csrf: viewer.session.as_ref().map(|s| s.csrf.clone()),
        can_act: viewer.can_act,
        mode: state.dashboard.mode.as_str(),
        cursor,
    }
}

#[derive(Debug, Serialize)]
struct Card {
    id: String,
    title: String,
    repo: String,
    stage: String,
    hold: &'static str,
    hold_detail: String,
    attempt: u32,
    updated: i64,
}

impl Card {
    fn of(task: &TaskRecord) -> Self {
        Card {
            id: task.work_item_id.clone(),
            title: task.title.clone(),
            repo: task.repo.clone(),
            stage: task.state.stage.clone(),
            hold: task.state.hold.label(),
            hold_detail: hold_detail(&task.state.hold),
            attempt: task.state.attempt,
            updated: task.updated_at_ms,
        }
    }
}

fn hold_detail(hold: &Hold) -> String {
    match hold {
        Hold::NeedsInput { questions } => questions.clone(),
        Hold::Blocked { reason } | Hold::PausedBudget { reason } => reason.clone(),
        Hold::PausedQuota { reason, resume_at_ms } => {
            format!("{reason} (resumes {})", render::format_time(*resume_at_ms))
        }
        Hold::AwaitingApproval => "the stage's result waits for approval".into(),
        Hold::AwaitingConfirm => "the deploy waits for confirmation".into(),
        Hold::MergeQueue => "in the merge queue: tested on top of the changes ahead, then landed".into(),
        Hold::Monitoring { until_ms, checks, failures, .. } => format!(
            "deployed; post-deploy monitor until {} ({checks} checks, {failures} failed in a row)",
            render::format_time(*until_ms)
        ),
        Hold::None => String::new(),
    }
}

#[derive(Debug, Serialize)]
struct Column {
    stage: String,
    total: usize,
    held: usize,
    cards: Vec<Card>,
    more: usize,
    /// Whether `total` and `more` are counts (without `?repo=`), or only what was read.
    counted: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct BoardQuery {
    /// Show one stage's tasks as a paged list.
    pub stage: Option<String>,
    /// The next page of that list: tasks older than this id (keyset paging).
    pub before: Option<i64>,
    /// Only this repository's tasks.
    pub repo: Option<String>,
}

#[derive(Debug, Serialize)]
struct StageList {
    stage: String,
    /// Tasks in the stage (with `?repo=`: unknown, shown as `None`).
    total: Option<u64>,
    cards: Vec<Card>,
    /// The `before` of the next (older) page, when this page is full.
    next_before: Option<i64>,
    /// Whether this is a later page (a link back to the newest).
    later: bool,
}

#[derive(Debug, Serialize)]
struct BoardPage {
    common: Common,
    columns: Vec<Column>,
    held: Vec<Card>,
    held_total: u64,
    list: Option<StageList>,
    total: u64,
    active: u64,
    repo: Option<String>,
}

/// Task counts by stage (total, held) and overall, from [`Store::task_counts`] (one aggregate
/// over an index): the board never loads every task to count them.
#[derive(Debug, Default)]
struct BoardCounts {
    by_stage: std::collections::BTreeMap<String, (u64, u64)>,
    /// Hold kinds with at least one live task.
    holds: std::collections::BTreeSet<String>,
    total: u64,
    active: u64,
    held: u64,
}

impl BoardCounts {
    fn of(counts: &[baton_store::TaskCount]) -> Self {
        let mut board = BoardCounts::default();
        for count in counts {
            let live = count.stage != DONE && count.stage != CANCELLED;
            let held = live && !count.hold.is_empty();
            let entry = board.by_stage.entry(count.stage.clone()).or_default();
            entry.0 += count.tasks;
            board.total += count.tasks;
            if live {
                board.active += count.tasks;
            }
            if held {
                entry.1 += count.tasks;
                board.held += count.tasks;
                board.holds.insert(count.hold.clone());
            }
        }
        board
    }
}

/// The board: per stage a count and its newest cards, the held tasks, and with `?stage=` one
/// stage's tasks a page at a time (keyset on the id: `?before=`). Every read is an index walk of
/// at most a page, so the board costs the same with a thousand tasks or a hundred thousand.
pub(crate) async fn board(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<BoardQuery>,
) -> Result<Response, ApiError> {
    let viewer = match viewer(&state, &headers, "/") {
        Ok(viewer) => viewer,
        Err(redirect) => return Ok(redirect.into_response()),
    };
    let store = state.engine.store();
    // The cursor is read before the tasks, so no change between the two is missed by the stream.
    let cursor = latest_event_id(store.as_ref()).await?;
    let counts = BoardCounts::of(&store.task_counts().await?);
    // Counts are per repository only without `?repo=`; with it, columns show what they hold.
    let counted = query.repo.is_none();
    let mut stages: Vec<String> = state
        .engine
        .stage_names(query.repo.as_deref())
        .into_iter()
        .map(str::to_string)
        .chain([DONE.into(), CANCELLED.into()])
        .collect();
    for stage in counts.by_stage.keys() {
        if !stages.contains(stage) {
            stages.push(stage.clone());
        }
    }
    let filter = |stage: Option<&str>, hold: Option<&str>| TaskFilter {
        active_only: hold.is_some(),
        repo: query.repo.clone(),
        stage: stage.map(str::to_string),
        hold: hold.map(str::to_string),
    };
    let mut columns = Vec::new();
    for stage in stages {
        let mut tasks = store.list_tasks_page(&filter(Some(&stage), None), None, BOARD_CARDS_MAX as u32 + 1).await?;
        let (total, held) = counts.by_stage.get(&stage).copied().unwrap_or_default();
        let more = if counted {
            (total as usize).saturating_sub(tasks.len().min(BOARD_CARDS_MAX))
        } else {
            usize::from(tasks.len() > BOARD_CARDS_MAX)
        };
        tasks.truncate(BOARD_CARDS_MAX);
        let total = if counted { total as usize } else { tasks.len() };
        let held = if counted { held as usize } else { tasks.iter().filter(|t| t.state.hold != Hold::None).count() };
        columns.push(Column { stage, total, held, cards: tasks.iter().map(Card::of).collect(), more, counted });
    }
    // Held tasks, newest first: the newest page of each hold kind that has any, merged.
    let mut held: Vec<TaskRecord> = Vec::new();
    for hold in &counts.holds {
        held.extend(store.list_tasks_page(&filter(None, Some(hold)), None, HELD_MAX as u32).await?);
    }
    held.sort_by_key(|t| std::cmp::Reverse(t.id.0));
    held.truncate(HELD_MAX);
    let held_total = if counted { counts.held } else { held.len() as u64 };
    let list = match &query.stage {
        Some(stage) => {
            let before = query.before.map(baton_domain::TaskId);
            let page = store.list_tasks_page(&filter(Some(stage), None), before, STAGE_PAGE_SIZE as u32).await?;
            let next_before = (page.len() == STAGE_PAGE_SIZE).then(|| page.last().map(|t| t.id.0)).flatten();
            let total = counted.then(|| counts.by_stage.get(stage).map_or(0, |c| c.0));
            Some(StageList {
                stage: stage.clone(),
                total,
                cards: page.iter().map(Card::of).collect(),
                next_before,
                later: before.is_some(),
            })
        }
        None => None,
    };
    let (total, active) = if counted {
        (counts.total, counts.active)
    } else {
        let shown: usize = columns.iter().map(|c| c.total).sum();
        (shown as u64, columns.iter().filter(|c| c.stage != DONE && c.stage != CANCELLED).map(|c| c.total as u64).sum())
    };
    let context = BoardPage {
        common: common(&state, &viewer, "Board".into(), "board", cursor),
        columns,
        held: held.iter().map(Card::of).collect(),
        held_total,
        list,
        total,
        active,
        repo: query.repo,
    };
    Ok(page("board.html", context))
}

#[derive(Debug, Serialize)]
struct TimelineRow {
    id: i64,
    at: i64,
    kind: String,
    stage: String,
    message: String,
}

#[derive(Debug, Serialize)]
struct VerdictRow {
    at: i64,
    stage: String,
    gate: String,
    verdict: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct RunRow {
    id: i64,
    stage: String,
    adapter: String,
    model: String,
    input_tokens: u64,
    output_tokens: u64,
    cache_tokens: u64,
    cost: Option<f64>,
    duration: String,
    exit: String,
    status: String,
}

#[derive(Debug, Serialize)]
struct Artifact {
    name: String,
    html: String,
}

#[derive(Debug, Serialize)]
struct Action {
    path: &'static str,
    label: &'static str,
    /// Asks for a text (the answer).
    text: bool,
    danger: bool,
}

#[derive(Debug, Serialize)]
struct TaskPage {
    common: Common,
    task: TaskView,
    stages: Vec<StageStep>,
    timeline: Vec<TimelineRow>,
    timeline_total: usize,
    verdicts: Vec<VerdictRow>,
    runs: Vec<RunRow>,
    totals: crate::api::tasks::RunTotals,
    artifacts: Vec<Artifact>,
    artifacts_note: String,
    log: Option<String>,
    running: bool,
    merged: Option<String>,
    changes: Option<String>,
    actions: Vec<Action>,
}

#[derive(Debug, Serialize)]
struct TaskView {
    id: i64,
    work_item_id: String,
    title: String,
    body: String,
    repo: String,
    branch: String,
    external_ref: Option<String>,
    stage: String,
    hold: &'static str,
    hold_detail: String,
    attempt: u32,
    rollbacks: u32,
    created: i64,
    updated: i64,
}

#[derive(Debug, Serialize)]
struct StageStep {
    name: String,
    state: &'static str,
}

pub(crate) async fn task(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let viewer = match viewer(&state, &headers, &format!("/tasks/{id}")) {
        Ok(viewer) => viewer,
        Err(redirect) => return Ok(redirect.into_response()),
    };
    let store = state.engine.store();
    let task = store
        .task(&TaskKey::parse(&id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} does not exist")))?;
    let events = store.events(Some(task.id), 0, crate::api::tasks::TIMELINE_EVENTS_MAX).await?;
    let cursor = events.last().map_or(0, |e| e.id);
    let runs = store.agent_runs(task.id).await?;
    let jobs = store.jobs_for_task(task.id).await?;
    let running = jobs.iter().any(|j| j.status == JobStatus::Running);
    let verdicts = events.iter().filter(|e| e.kind == "gate").filter_map(verdict_row).collect();
    let merged = events.iter().rev().find(|e| e.kind == "merged").map(|e| {
        let short =
            |key: &str| e.detail[key].as_str().map(|s| s.chars().take(10).collect::<String>()).unwrap_or_default();
        format!("{}..{}", short("base"), short("head"))
    });
    let (artifacts, artifacts_note) = artifacts(&state, &task).await;
    let log = match runs.last() {
        Some(run) if !run.log_path.is_empty() => tail(Path::new(&run.log_path), LOG_TAIL_BYTES).await,
        _ => None,
    };
    let totals = crate::api::tasks::RunTotals::of(&runs);
    let stages = stage_steps(&state, &task);
    let actions = if viewer.can_act { actions_for(&task) } else { Vec::new() };
    let timeline_total = events.len();
    let timeline = events
        .iter()
        .rev()
        .take(TIMELINE_SHOWN_MAX)
        .map(|e| TimelineRow {
            id: e.id,
            at: e.at_ms,
            kind: e.kind.clone(),
            stage: e.stage.clone(),
            message: e.message.clone(),
        })
        .collect();
    let runs = runs
        .iter()
        .map(|run| RunRow {
            id: run.id,
            stage: run.stage.clone(),
            adapter: run.adapter.clone(),
            model: run.model.clone().unwrap_or_else(|| "—".into()),
            input_tokens: run.input_tokens,
            output_tokens: run.output_tokens,
            cache_tokens: run.cache_read_tokens + run.cache_write_tokens,
            cost: run.cost_usd,
            duration: run.ended_at_ms.map_or_else(|| "running".into(), |end| format_duration(end - run.started_at_ms)),
            exit: run.exit_code.map_or_else(|| "—".into(), |code| code.to_string()),
            status: run.status.clone().unwrap_or_default(),
        })
        .collect();
    let changes = task_changes(&jobs);
    let view = TaskView {
        id: task.id.0,
        work_item_id: task.work_item_id.clone(),
        title: task.title.clone(),
        body: task.body.clone(),
        repo: task.repo.clone(),
        branch: task.branch.clone(),
        external_ref: task.external_ref.clone(),
        stage: task.state.stage.clone(),
        hold: task.state.hold.label(),
        hold_detail: hold_detail(&task.state.hold),
        attempt: task.state.attempt,
        rollbacks: task.state.rollbacks,
        created: task.created_at_ms,
        updated: task.updated_at_ms,
    };
    let context = TaskPage {
        common: common(&state, &viewer, format!("{} · {}", task.work_item_id, task.title), "board", cursor),
        task: view,
        stages,
        timeline,
        timeline_total,
        verdicts,
        runs,
        totals,
        artifacts,
        artifacts_note,
        log,
        running,
        merged,
        changes,
        actions,
    };
    Ok(page("task.html", context))
}

fn verdict_row(event: &EventRecord) -> Option<VerdictRow> {
    let verdict: baton_domain::GateVerdict = serde_json::from_value(event.detail.clone()).ok()?;
    let label = match verdict.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Defer => "defer",
        Verdict::Error => "error",
        Verdict::Queued => "queued",
    };
    Some(VerdictRow {
        at: event.at_ms,
        stage: event.stage.clone(),
        gate: verdict.gate,
        verdict: label.into(),
        reason: verdict.reason,
    })
}

/// What the task's jobs recorded about the change (a diff stat, when an executor reported one).
fn task_changes(jobs: &[baton_store::JobRecord]) -> Option<String> {
    jobs.iter().rev().filter_map(|j| j.result.as_ref()).find_map(|r| r.get("diff_stat")?.as_str().map(str::to_string))
}

fn stage_steps(state: &AppState, task: &TaskRecord) -> Vec<StageStep> {
    let names: Vec<&str> = state.engine.stage_names(Some(&task.repo)).into_iter().chain([DONE]).collect();
    let current = names.iter().position(|n| *n == task.state.stage);
    names
        .iter()
        .enumerate()
        .map(|(i, name)| StageStep {
            name: (*name).to_string(),
            state: match current {
                _ if task.state.stage == CANCELLED => "cancelled",
                Some(c) if i < c => "past",
                Some(c) if i == c => "current",
                _ => "future",
            },
        })
        .collect()
}

fn actions_for(task: &TaskRecord) -> Vec<Action> {
    if task.state.is_terminal() {
        return Vec::new();
    }
    let action = |path, label, text, danger| Action { path, label, text, danger };
    let mut actions = Vec::new();
    match task.state.hold {
        Hold::AwaitingApproval => actions.push(action("approve", "Approve", false, false)),
        Hold::NeedsInput { .. } => actions.push(action("answer", "Answer", true, false)),
        Hold::AwaitingConfirm => actions.push(action("confirm-deploy", "Confirm deploy", false, false)),
        Hold::Blocked { .. } => actions.push(action("retry", "Retry", false, false)),
        Hold::PausedBudget { .. } | Hold::PausedQuota { .. } => actions.push(action("resume", "Resume", false, false)),
        Hold::None | Hold::MergeQueue => {}
        // Deployed code is not stopped: the monitor window ends the task.
        Hold::Monitoring { .. } => return actions,
    }
    actions.push(action("stop", "Stop", false, true));
    actions
}

/// The task's artifacts (`docs/baton/<WORK-ID>/*.md` in its worktree), rendered; a note when
/// there are none to show.
async fn artifacts(state: &AppState, task: &TaskRecord) -> (Vec<Artifact>, String) {
    let worktrees = state.engine.settings().worktrees_dir();
    let Ok(worktree) = baton_engine::workspace::worktree_path(&worktrees, &task.repo, &task.work_item_id) else {
        return (Vec::new(), "no worktree path for this task".into());
    };
    let dir = worktree.join("docs").join("baton").join(&task.work_item_id);
    let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
        let note = if task.state.is_terminal() {
            format!("the worktree is gone; the artifacts are in the repository under docs/baton/{}/", task.work_item_id)
        } else if baton_engine::effects::parks_worktree(&task.state) {
            format!(
                "the worktree is parked while the task is paused; the artifacts are committed on branch {} under docs/baton/{}/",
                task.branch, task.work_item_id
            )
        } else {
            "no artifact written yet".into()
        };
        return (Vec::new(), note);
    };
    let mut names = Vec::new();
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && entry.file_type().await.is_ok_and(|t| t.is_file()) {
            names.push(name);
        }
    }
    names.sort();
    names.truncate(ARTIFACTS_MAX);
    let mut artifacts = Vec::new();
    for name in names {
        let Ok(bytes) = tokio::fs::read(dir.join(&name)).await else { continue };
        let cut = bytes.len() > ARTIFACT_BYTES_MAX;
        let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(ARTIFACT_BYTES_MAX)]).into_owned();
        if cut {
            text.push_str("\n\n*(cut: the artifact is longer than the dashboard shows)*\n");
        }
        artifacts.push(Artifact { name, html: markdown(&text) });
    }
    let note = if artifacts.is_empty() { "no artifact written yet".into() } else { String::new() };
    (artifacts, note)
}

/// The last `bytes` of a file, from a line start when one is near; `None` when unreadable.
async fn tail(path: &Path, bytes: u64) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await.ok()?;
    let len = file.metadata().await.ok()?.len();
    let start = len.saturating_sub(bytes);
    file.seek(std::io::SeekFrom::Start(start)).await.ok()?;
    let mut buffer = Vec::with_capacity((len - start) as usize);
    file.take(bytes).read_to_end(&mut buffer).await.ok()?;
    let text = String::from_utf8_lossy(&buffer).into_owned();
    Some(match (start > 0, text.find('\n')) {
        (true, Some(newline)) => text[newline + 1..].to_string(),
        _ => text,
    })
}

/// `GET /tasks/{id}/log`: the newest agent run's log tail as plain text (the task page polls it).
pub(crate) async fn log_tail(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    if let Err(redirect) = viewer(&state, &headers, &format!("/tasks/{id}")) {
        return Ok(redirect.into_response());
    }
    let store = state.engine.store();
    let task = store
        .task(&TaskKey::parse(&id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} does not exist")))?;
    let runs = store.agent_runs(task.id).await?;
    let text = match runs.last() {
        Some(run) => tail(Path::new(&run.log_path), LOG_TAIL_BYTES).await.unwrap_or_default(),
        None => String::new(),
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        text,
    )
        .into_response())
}

#[derive(Debug, Serialize)]
struct UsageTable {
    title: &'static str,
    rows: Vec<UsageBar>,
}

#[derive(Debug, Serialize)]
struct UsageBar {
    key: String,
    /// Agent runs and ingested records in the group.
    runs: u64,
    records: u64,
    tokens: u64,
    units: f64,
    cost: f64,
    unpriced: u64,
    /// The bar's length, 0–100, relative to the table's largest cost (or tokens, unpriced).
    width: f64,
}

#[derive(Debug, Serialize)]
struct UsagePage {
    common: Common,
    tables: Vec<UsageTable>,
    total_cost: f64,
    total_runs: u64,
    total_records: u64,
    merged: u64,
    per_merged: Option<f64>,
    economics: baton_engine::usage_report::UnitEconomics,
    pricing_version: String,
}

/// Spend by category first (agent runs map to their stage's category, ingested records carry
/// theirs), then by model, stage, repository, source and day: agent runs and ingested usage
/// together, with the unit economics (per merged task, per stage, per unit).
pub(crate) async fn usage(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    use baton_engine::usage_report::UsageBy;
    let viewer = match viewer(&state, &headers, "/usage") {
        Ok(viewer) => viewer,
        Err(redirect) => return Ok(redirect.into_response()),
    };
    let cursor = latest_event_id(state.engine.store().as_ref()).await?;
    let report = state.engine.usage_report(UsageBy::Category).await?;
    let mut tables = vec![UsageTable { title: "By category", rows: bars(&report.rows) }];
    let groups = [
        ("By model", UsageBy::Model),
        ("By stage", UsageBy::Stage),
        ("By repository", UsageBy::Repo),
        ("By source", UsageBy::Source),
        ("By day", UsageBy::Day),
    ];
    for (title, by) in groups {
        let rows = state.engine.usage_report(by).await?.rows;
        tables.push(UsageTable { title, rows: bars(&rows) });
    }
    let context = UsagePage {
        common: common(&state, &viewer, "Usage".into(), "usage", cursor),
        total_cost: report.total_cost_usd,
        total_runs: report.rows.iter().map(|r| r.runs).sum(),
        total_records: report.rows.iter().map(|r| r.records).sum(),
        merged: report.unit_economics.per_merged_task.done_tasks,
        per_merged: report.unit_economics.per_merged_task.usd_per_task,
        economics: report.unit_economics,
        pricing_version: report.pricing_version,
        tables,
    };
    Ok(page("usage.html", context))
}

fn bars(rows: &[baton_engine::usage_report::UsageLine]) -> Vec<UsageBar> {
    let tokens = |r: &baton_engine::usage_report::UsageLine| {
        r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens
    };
    let max_cost = rows.iter().map(|r| r.cost_usd).fold(0.0, f64::max);
    let max_tokens = rows.iter().map(tokens).max().unwrap_or(0);
    rows.iter()
        .map(|row| {
            let width = if max_cost > 0.0 {
                row.cost_usd / max_cost * 100.0
            } else if max_tokens > 0 {
                tokens(row) as f64 / max_tokens as f64 * 100.0
            } else {
                0.0
            };
            UsageBar {
                key: row.key.clone(),
                runs: row.runs,
                records: row.records,
                tokens: tokens(row),
                units: row.units,
                cost: row.cost_usd,
                unpriced: row.unpriced,
                width: (width * 10.0).round() / 10.0,
            }
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct JobRow {
    id: i64,
    task: i64,
    repo: String,
    stage: String,
    attempt: u32,
    since: i64,
}

#[derive(Debug, Serialize)]
struct SystemPage {
    common: Common,
    status: crate::api::status::StatusReport,
    health: Vec<baton_store::HealthCheck>,
    queued: Vec<JobRow>,
    running: Vec<JobRow>,
}

pub(crate) async fn system(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let viewer = match viewer(&state, &headers, "/system") {
        Ok(viewer) => viewer,
        Err(redirect) => return Ok(redirect.into_response()),
    };
    let store = state.engine.store();
    let cursor = latest_event_id(store.as_ref()).await?;
    let axum::Json(status) = crate::api::status::status(State(state.clone())).await?;
    let health = state.engine.check_store().await;
    let rows = |jobs: Vec<baton_store::JobRecord>| -> Vec<JobRow> {
        jobs.into_iter()
            .take(JOBS_LISTED_MAX)
            .map(|j| JobRow {
                id: j.id.0,
                task: j.task_id.0,
                repo: j.repo,
                stage: j.stage,
                attempt: j.attempt,
                since: j.started_at_ms.unwrap_or(j.available_at_ms),
            })
            .collect()
    };
    let queued = rows(store.jobs_with_status(JobStatus::Queued).await?);
    let running = rows(store.jobs_with_status(JobStatus::Running).await?);
    let context = SystemPage {
        common: common(&state, &viewer, "Queue and health".into(), "system", cursor),
        status,
        health,
        queued,
        running,
    };
    Ok(page("system.html", context))
}
