//! The hand-off of a task (SPEC §11): what a person or the next agent needs once a task is done or
//! blocked — what changed, each gate with its proof, cost and tokens per stage and agent, the
//! human decisions, the open limitations stated honestly, and a ready-to-paste next prompt.
//!
//! [`build`] reads the task's record, timeline, jobs and agent runs from the store, its commits,
//! diff stat and artifacts from git (the merged commit of a done task, else its worktree or
//! branch), masks every secret the engine knows, and renders one [`Handoff`] as Markdown and as a
//! self-contained HTML page ([`render`]). [`write`] stores both under
//! `<data_dir>/handoffs/<WORK-ITEM>.{md,html}` (the outbox's `write_handoff` effect, written when a
//! task reaches done or blocked; rewriting the same document is harmless); [`read`] answers the CLI
//! and the HTTP routes: the stored document of an ended or blocked task, else one built now.

pub mod render;

use crate::EngineError;
use crate::engine::Engine;
use baton_domain::{GateVerdict, Hold, Verdict, pipeline};
use baton_store::{AgentRunRecord, EventRecord, JobRecord, TaskKey, TaskRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directory under the data dir holding the written hand-offs.
pub const HANDOFFS_DIR: &str = "handoffs";
/// Timeline events read for one hand-off.
const EVENTS_MAX: u32 = 10_000;
/// Commits listed at most.
const COMMITS_MAX: usize = 50;
/// Artifacts read at most, and bytes of each.
const ARTIFACTS_MAX: usize = 20;
const ARTIFACT_BYTES_MAX: usize = 64 * 1024;
/// Lines kept of one limitation section of an artifact, and characters of one line.
const SECTION_LINES_MAX: usize = 12;
const LINE_CHARS_MAX: usize = 300;
/// Headings of an artifact section that lists what is still open.
const OPEN_HEADINGS: &[&str] = &[
    "limitation",
    "finding",
    "issue",
    "risk",
    "known",
    "gap",
    "todo",
    "to do",
    "follow-up",
    "follow up",
    "caveat",
    "open",
];
/// Front-matter verdicts that leave nothing open.
const CLEAN_VERDICTS: &[&str] = &["approve", "approved", "pass", "passed", "ok", "green"];

/// A task's hand-off, rendered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handoff {
    pub work_item: String,
    pub markdown: String,
    pub html: String,
    /// Read from the stored files (`true`) or built on request.
    pub stored: bool,
}

/// Everything a hand-off says, before rendering (secrets already masked).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    pub work_item: String,
    pub title: String,
    pub repo: String,
    pub ticket: Option<String>,
    pub branch: String,
    pub default_branch: String,
    pub stage: String,
    /// One line: done, blocked with its reason, or the stage it is in.
    pub outcome: String,
    pub generated_at_ms: i64,
    pub created_at_ms: i64,
    /// The commit the task merged (done tasks), and the base it was merged onto.
    pub merged_head: Option<String>,
    pub merged_base: Option<String>,
    /// The task's pull request on a hosted forge (the page the `ci_green` gate last linked).
    #[serde(default)]
    pub pull_request: Option<String>,
    pub diff_stat: Option<String>,
    pub commits: Vec<String>,
    /// Where `commits` are: on the default branch (merged) or on the task branch.
    pub commits_on: String,
    pub gates: Vec<GateRow>,
    pub costs: Vec<CostRow>,
    pub totals: CostRow,
    pub decisions: Vec<DecisionRow>,
    pub limitations: Vec<String>,
    /// Failures met and overcome on the way (a failed gate that passed later, a rollback).
    pub resolved: Vec<String>,
    pub artifacts: Vec<String>,
    /// What the task's retro proposed (lessons and next tasks), each with its status.
    #[serde(default)]
    pub proposals: Vec<String>,
    pub next_prompt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateRow {
    pub at_ms: i64,
    pub stage: String,
    pub gate: String,
    pub verdict: String,
    pub reason: String,
    pub evidence: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CostRow {
    pub stage: String,
    /// `adapter` or `adapter / model`.
    pub agent: String,
    pub runs: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_tokens: u64,
    /// `None` when no run reported a cost.
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionRow {
    pub at_ms: i64,
    pub who: String,
    pub what: String,
    pub stage: String,
}

/// Whether a task in this state gets its hand-off written: done, or blocked for a human.
pub fn is_handoff_state(state: &baton_domain::TaskState) -> bool {
    state.stage == pipeline::DONE || matches!(state.hold, Hold::Blocked { .. })
}

/// The Markdown and HTML files of `work_item`'s hand-off under `data_dir`.
pub fn paths(data_dir: &Path, work_item: &str) -> Result<(PathBuf, PathBuf), EngineError> {
    let id = baton_domain::WorkItemId::parse(work_item)
        .ok_or_else(|| EngineError::Invalid(format!("work-item id `{work_item}` is not PREFIX-NNN")))?;
    let dir = data_dir.join(HANDOFFS_DIR);
    Ok((dir.join(format!("{}.md", id.as_str())), dir.join(format!("{}.html", id.as_str()))))
}

/// Builds `task`'s hand-off now.
pub async fn build(engine: &Engine, task: &TaskRecord) -> Result<Handoff, EngineError> {
    let mut document = gather(engine, task).await?;
    // Artifacts and git output never went through the redacting store: mask the whole document.
    let mut value = serde_json::to_value(&document).map_err(|e| EngineError::Invalid(e.to_string()))?;
    if engine.redactor().redact_json(&mut value) {
        document = serde_json::from_value(value).map_err(|e| EngineError::Invalid(e.to_string()))?;
    }
    let markdown = engine.redactor().redact(&render::markdown(&document)).into_owned();
    let html = engine.redactor().redact(&render::html(&document)).into_owned();
    Ok(Handoff { work_item: task.work_item_id.clone(), markdown, html, stored: false })
}

/// Builds the hand-off of task `task_id` and writes both files (owner-only), each replaced whole.
/// Idempotent: the outbox may carry it out again.
pub async fn write(engine: &Engine, task_id: baton_domain::TaskId) -> Result<(), String> {
    let Some(task) = engine.store().task(&TaskKey::Id(task_id)).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let handoff = build(engine, &task).await.map_err(|e| format!("hand-off of {}: {e}", task.work_item_id))?;
    let (md, html) = paths(&engine.settings().data_dir, &task.work_item_id).map_err(|e| e.to_string())?;
    for (path, text) in [(md, handoff.markdown), (html, handoff.html)] {
        write_private(&path, text.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `task`'s hand-off for a reader: the stored one of a done or blocked task, else built now (a
/// task still in progress, or one whose files are missing or empty).
pub async fn read(engine: &Engine, task: &TaskRecord) -> Result<Handoff, EngineError> {
    if is_handoff_state(&task.state) {
        let (md, html) = paths(&engine.settings().data_dir, &task.work_item_id)?;
        if let (Ok(markdown), Ok(html)) = (std::fs::read_to_string(&md), std::fs::read_to_string(&html))
            && !markdown.is_empty()
            && !html.is_empty()
        {
            // Stored before a secret was added to the configuration, they are masked again.
            let redactor = engine.redactor();
            return Ok(Handoff {
                work_item: task.work_item_id.clone(),
                markdown: redactor.redact(&markdown).into_owned(),
                html: redactor.redact(&html).into_owned(),
                stored: true,
            });
        }
    }
    build(engine, task).await
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
    file.write_all(bytes)?;
    // No fsync: it would hold an engine thread for a journal commit per file. Readers see the old
    // file or the new one (the rename); a file a power loss left empty is rebuilt on reading.
    std::fs::rename(&partial, path)
}

async fn gather(engine: &Engine, task: &TaskRecord) -> Result<Document, EngineError> {
    let store = engine.store();
    let events = store.events(Some(task.id), 0, EVENTS_MAX).await?;
    let jobs = store.jobs_for_task(task.id).await?;
    let runs = store.agent_runs(task.id).await?;
    let repo = engine.settings().repo(&task.repo);
    let default_branch = repo.map_or_else(|| "main".to_string(), |r| r.default_branch.clone());
    let merged = events.iter().rev().find(|e| e.kind == "merged");
    let merged_head = merged.and_then(|e| e.detail["head"].as_str()).filter(|h| is_commit_id(h)).map(str::to_string);
    let merged_base = merged.and_then(|e| e.detail["base"].as_str()).filter(|b| is_commit_id(b)).map(str::to_string);
    // A task at a stage after shipping (its retro) reads its change from the merged commit too.
    let done = task.state.stage == pipeline::DONE
        || engine.pipeline_for(&task.repo).stage(&task.state.stage).is_some_and(|s| s.after_ship);

    let (mut diff_stat, mut commits, mut commits_on) = (None, Vec::new(), task.branch.clone());
    if let Some(repo) = repo.filter(|r| engine.vcs().exists(&r.path)) {
        let vcs = engine.vcs();
        if let Some(head) = merged_head.as_deref().filter(|_| done) {
            let base = merged_base.clone().unwrap_or_else(|| format!("{head}^"));
            diff_stat = vcs.diff_stat_between(&repo.path, &base, head).await.map(indent_stat);
            commits = vcs.commits_between(&repo.path, &base, head, COMMITS_MAX).await;
            commits_on = default_branch.clone();
        } else if is_branch_name(&task.branch) {
            let base = repo.default_ref();
            diff_stat = vcs.diff_stat_between(&repo.path, &base, &task.branch).await.map(indent_stat);
            commits = vcs.commits_between(&repo.path, &base, &task.branch, COMMITS_MAX).await;
        }
    }
    // Without git (the repository moved), what the last job recorded.
    if diff_stat.is_none() {
        diff_stat = last_diff_stat(&jobs);
    }

    let gates: Vec<GateRow> = events.iter().filter(|e| e.kind == "gate").filter_map(gate_row).collect();
    let pull_request = events
        .iter()
        .rev()
        .filter(|e| e.kind == "gate")
        .find_map(|e| e.detail["link"].as_str())
        .filter(|link| link.starts_with("https://") || link.starts_with("http://"))
        .map(str::to_string);
    let (costs, totals) = cost_rows(&runs);
    let decisions = events.iter().filter_map(decision_row).collect();
    let (artifacts, artifact_limits) = read_artifacts(engine, task, merged_head.as_deref().filter(|_| done)).await;
    let (mut limitations, resolved) = limitations(task, &events, &gates);
    limitations.extend(artifact_limits);
    let outcome = outcome(task);
    let mut document = Document {
        work_item: task.work_item_id.clone(),
        title: task.title.clone(),
        repo: task.repo.clone(),
        ticket: task.external_ref.clone(),
        branch: task.branch.clone(),
        default_branch,
        stage: task.state.stage.clone(),
        outcome,
        generated_at_ms: engine.clock().now_ms(),
        created_at_ms: task.created_at_ms,
        merged_head,
        merged_base,
        pull_request,
        diff_stat,
        commits,
        commits_on,
        gates,
        costs,
        totals,
        decisions,
        limitations,
        resolved,
        artifacts,
        proposals: retro_proposals(engine, task).await,
        next_prompt: String::new(),
    };
    document.next_prompt = render::next_prompt(&document);
    Ok(document)
}

/// One line per lesson and next task the task's retro proposed, with what became of it.
async fn retro_proposals(engine: &Engine, task: &TaskRecord) -> Vec<String> {
    let mut lines = Vec::new();
    let filter = baton_store::LessonFilter { repo: Some(task.repo.clone()), ..Default::default() };
    if let Ok(lessons) = engine.store().lessons(&filter).await {
        for lesson in lessons.iter().rev() {
            if lesson.source == "agent" && lesson.task.as_deref() == Some(task.work_item_id.as_str()) {
                lines.push(format!("lesson {} ({}): {}", lesson.id, lesson.status, lesson.title));
            }
        }
    }
    let filter = baton_store::ProposalFilter { from_task: Some(task.id), ..Default::default() };
    if let Ok(proposals) = engine.store().task_proposals(&filter).await {
        for proposal in proposals {
            lines.push(format!("next task proposal {} ({}): {}", proposal.id, proposal.status, proposal.title));
        }
    }
    lines
}

/// A full or abbreviated commit id (hex): safe to hand to git as an argument.
fn is_commit_id(text: &str) -> bool {
    (4..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A branch name Baton made (`baton/<work-item>-<slug>`): safe to hand to git as an argument.
fn is_branch_name(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('-')
        && !text.contains("..")
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
}

/// Git's stat lines start with a space; the first one lost it to the output's trimming.
fn indent_stat(stat: String) -> String {
    if stat.contains('\n') && !stat.starts_with(' ') { format!(" {stat}") } else { stat }
}

fn last_diff_stat(jobs: &[JobRecord]) -> Option<String> {
    jobs.iter().rev().filter_map(|j| j.result.as_ref()).find_map(|r| r.get("diff_stat")?.as_str().map(str::to_string))
}

fn outcome(task: &TaskRecord) -> String {
    match (&task.state.stage[..], &task.state.hold) {
        (pipeline::DONE, _) => "done: merged and deployed".into(),
        (pipeline::CANCELLED, _) => "cancelled".into(),
        (stage, Hold::Blocked { reason }) => format!("blocked in {stage}: {}", first_line(reason)),
        (stage, Hold::None) => format!("in progress: {stage}"),
        (stage, hold) => format!("in progress: {stage} ({})", hold.label()),
    }
}

fn gate_row(event: &EventRecord) -> Option<GateRow> {
    let verdict: GateVerdict = serde_json::from_value(event.detail.clone()).ok()?;
    Some(GateRow {
        at_ms: event.at_ms,
        stage: event.stage.clone(),
        gate: verdict.gate,
        verdict: verdict_label(verdict.verdict).into(),
        reason: clip(first_line(&verdict.reason)),
        evidence: verdict.evidence,
    })
}

fn verdict_label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Defer => "defer",
        Verdict::Error => "error",
        Verdict::Queued => "queued",
    }
}

/// Agent runs grouped by stage and agent, in the order the stages first ran; and the totals.
fn cost_rows(runs: &[AgentRunRecord]) -> (Vec<CostRow>, CostRow) {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut rows: BTreeMap<(String, String), CostRow> = BTreeMap::new();
    let mut totals = CostRow { stage: "total".into(), agent: String::new(), ..CostRow::default() };
    for run in runs {
        let agent = match run.model.as_deref() {
            Some(model) if !model.is_empty() => format!("{} / {model}", run.adapter),
            _ => run.adapter.clone(),
        };
        let key = (run.stage.clone(), agent.clone());
        if !rows.contains_key(&key) {
            order.push(key.clone());
        }
        let row = rows.entry(key).or_insert_with(|| CostRow { stage: run.stage.clone(), agent, ..CostRow::default() });
        for row in [row, &mut totals] {
            row.runs += 1;
            row.input_tokens += run.input_tokens;
            row.output_tokens += run.output_tokens;
            row.cache_tokens += run.cache_read_tokens + run.cache_write_tokens;
            if let Some(cost) = run.cost_usd {
                row.cost_usd = Some(row.cost_usd.unwrap_or(0.0) + cost);
            }
        }
    }
    (order.into_iter().filter_map(|key| rows.remove(&key)).collect(), totals)
}

/// A human input on the timeline: who, what, when.
fn decision_row(event: &EventRecord) -> Option<DecisionRow> {
    let what = match event.kind.as_str() {
        "approved" => "approved".to_string(),
        "deploy_confirmed" => "confirmed the deploy".to_string(),
        "answered" => {
            let text = event.detail["event"]["text"].as_str().unwrap_or_default();
            format!("answered: {}", clip(first_line(text)))
        }
        "retry" => "asked for a retry".to_string(),
        "resume" => "resumed the task".to_string(),
        "stop" => "stopped the task".to_string(),
        _ => return None,
    };
    let who = event.detail["event"]["by"].as_str()?.to_string();
    Some(DecisionRow { at_ms: event.at_ms, who, what, stage: event.stage.clone() })
}

/// What is still open according to the engine — the block, failed gates that never passed later,
/// the last failure — and what was overcome on the way (failed gates that passed later, rollbacks).
fn limitations(task: &TaskRecord, events: &[EventRecord], gates: &[GateRow]) -> (Vec<String>, Vec<String>) {
    let (mut open, mut resolved) = (Vec::new(), Vec::new());
    if let Hold::Blocked { reason } = &task.state.hold {
        open.push(format!("Blocked in {}: {}", task.state.stage, clip(first_line(reason))));
    }
    for (i, gate) in gates.iter().enumerate().filter(|(_, g)| g.verdict == "fail" || g.verdict == "error") {
        let line = format!("Gate `{}` {} in {}: {}", gate.gate, gate.verdict, gate.stage, gate.reason);
        let passed_later =
            gates[i + 1..].iter().any(|g| g.gate == gate.gate && g.stage == gate.stage && g.verdict == "pass");
        if passed_later { resolved.push(line) } else { open.push(line) }
    }
    let ended_well = task.state.stage == pipeline::DONE;
    for event in events.iter().filter(|e| e.message.contains("rolled back to")) {
        let line = format!("Rolled back: {}", clip(first_line(&event.message)));
        if ended_well { resolved.push(line) } else { open.push(line) }
    }
    if !ended_well
        && let Some(failure) = task.state.failure.as_deref().filter(|f| !f.is_empty())
        && !matches!(&task.state.hold, Hold::Blocked { reason } if reason == failure)
    {
        open.push(format!("Last failure: {}", clip(first_line(failure))));
    }
    (open, resolved)
}

/// The task's artifacts (`docs/baton/<WORK-ITEM>/*.md`): their names, and what their front matter
/// and headings leave open. Read from the merged commit of a done task, else from the worktree,
/// else from the task branch.
async fn read_artifacts(engine: &Engine, task: &TaskRecord, merged_head: Option<&str>) -> (Vec<String>, Vec<String>) {
    let Some(repo) = engine.settings().repo(&task.repo) else {
        return (Vec::new(), Vec::new());
    };
    let vcs = engine.vcs();
    let relative = format!("docs/baton/{}", task.work_item_id);
    let worktree = crate::workspace::worktree_path(&engine.settings().worktrees_dir(), &repo.name, &task.work_item_id)
        .ok()
        .filter(|w| vcs.exists(w) && merged_head.is_none());
    let rev = merged_head.map(str::to_string).or_else(|| is_branch_name(&task.branch).then(|| task.branch.clone()));
    let found: Vec<(String, Option<String>)> = match (&worktree, &rev) {
        (Some(worktree), _) => {
            let names = vcs.list_dir(worktree, &relative).await;
            let mut found = Vec::new();
            for name in names.into_iter().filter(|n| n.ends_with(".md")).take(ARTIFACTS_MAX) {
                let text = vcs.read_file(worktree, &format!("{relative}/{name}")).await;
                found.push((name, text));
            }
            found
        }
        // The commit's directory and its documents, read in one go.
        (None, Some(rev)) => vcs.texts_at(&repo.path, rev, &relative, ".md", ARTIFACTS_MAX).await,
        (None, None) => Vec::new(),
    };
    let names: Vec<String> = found.iter().map(|(name, _)| name.clone()).collect();
    let mut open = Vec::new();
    for (name, text) in found {
        let Some(mut text) = text else { continue };
        if text.len() > ARTIFACT_BYTES_MAX {
            let mut cut = ARTIFACT_BYTES_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        open.extend(artifact_limitations(&name, &text));
    }
    (names, open)
}

/// What one artifact leaves open: a front-matter verdict that is not a clean pass, and the lines
/// of sections headed like limitations, findings, risks or known issues.
pub fn artifact_limitations(name: &str, text: &str) -> Vec<String> {
    let mut open = Vec::new();
    let mut body = text;
    if let Some(rest) = text.strip_prefix("---\n")
        && let Some(end) = rest.find("\n---")
    {
        for line in rest[..end].lines() {
            if let Some((key, value)) = line.split_once(':')
                && key.trim() == "verdict"
            {
                let value = value.trim().trim_matches('"');
                if !CLEAN_VERDICTS.contains(&value.to_ascii_lowercase().as_str()) {
                    open.push(format!("{name}: verdict `{}`", clip(value)));
                }
            }
        }
        body = rest[end + 4..].trim_start_matches('-');
    }
    let mut section: Option<(usize, String, Vec<String>)> = None;
    let flush = |section: &mut Option<(usize, String, Vec<String>)>, open: &mut Vec<String>| {
        if let Some((_, heading, lines)) = section.take() {
            let items: Vec<String> = lines.into_iter().filter(|l| !is_none_line(l)).collect();
            if !items.is_empty() {
                open.push(format!("{name} — {heading}: {}", items.join("; ")));
            }
        }
    };
    for line in body.lines() {
        let trimmed = line.trim();
        let level = trimmed.bytes().take_while(|b| *b == b'#').count();
        if level > 0 && trimmed.as_bytes().get(level) == Some(&b' ') {
            if section.as_ref().is_some_and(|(l, _, _)| level > *l) {
                continue;
            }
            flush(&mut section, &mut open);
            let heading = trimmed[level..].trim().to_string();
            let lower = heading.to_ascii_lowercase();
            if OPEN_HEADINGS.iter().any(|h| lower.contains(h)) {
                section = Some((level, clip(&heading), Vec::new()));
            }
            continue;
        }
        if let Some((_, _, lines)) = section.as_mut()
            && !trimmed.is_empty()
            && lines.len() < SECTION_LINES_MAX
        {
            let item = trimmed.trim_start_matches(['-', '*', '+']).trim();
            if !item.is_empty() {
                lines.push(clip(item));
            }
        }
    }
    flush(&mut section, &mut open);
    open
}

/// A line saying there is nothing (`None.`, `n/a`, `- none`).
fn is_none_line(line: &str) -> bool {
    let lower = line.trim().trim_end_matches('.').to_ascii_lowercase();
    matches!(lower.as_str(), "none" | "n/a" | "na" | "nothing" | "no" | "-" | "none known" | "none found")
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
}

/// At most [`LINE_CHARS_MAX`] characters.
fn clip(text: &str) -> String {
    if text.chars().count() <= LINE_CHARS_MAX {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(LINE_CHARS_MAX).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_sections_that_list_open_work_become_limitations() {
        let text = "---\nverdict: request_changes\n---\n# Review\n\nFine.\n\n## Findings\n\n- no input check\n- slow loop\n\n## Summary\nok\n\n## Known limitations\nNone.\n";
        let open = artifact_limitations("04-review.md", text);
        assert_eq!(
            open,
            ["04-review.md: verdict `request_changes`", "04-review.md — Findings: no input check; slow loop"]
        );
    }

    #[test]
    fn a_clean_artifact_leaves_nothing_open() {
        assert!(artifact_limitations("05-test-report.md", "---\nverdict: pass\n---\nOK\n").is_empty());
    }
}
