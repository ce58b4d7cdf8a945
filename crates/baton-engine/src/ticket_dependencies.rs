//! Dependencies a ticket declares in its own text (SPEC §6.4, §8): lines such as `Depends on #12`,
//! `Blocked by acme/app#3, #15` or `Depends on: DEMO-3` in an issue's or work item's body. The
//! parser is pure and bounded; [`sync`] turns what it found into the dependencies of the ticket's
//! task through the same engine path as `baton task depend` (cycles and cancelled tasks refused
//! the same way), withdraws those the ticket no longer names, and notes on the task's timeline
//! each reference it could not honour (refused, or a ticket Baton has no task for yet: that one is
//! tried again at the ticket's next update or poll). The tracker's own blocked-by relations
//! (Plane's) count as references too.

use crate::{Engine, EngineError};
use baton_domain::TaskId;
use baton_store::{DEPENDS_AT_CREATE, NewEvent, TaskKey, TaskRecord};

/// References read from one ticket at most; the rest are ignored.
pub const REFERENCES_MAX: usize = 20;

/// Timeline events written for a reference that could not be honoured, kept at most once per
/// message.
const NOTE_KIND: &str = "tracker_dependency";

/// Lines of a body read at most (a body is already bounded by `limits.body_bytes_max`).
const LINES_MAX: usize = 2_000;

/// One ticket another ticket waits for, as written in its body.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TicketRef {
    /// `#12` (same repository) or `owner/repo#12`.
    Issue { repo: Option<String>, number: u64 },
    /// `DEMO-3`: a Plane sequence id or a Baton work item id.
    Key(String),
}

impl std::fmt::Display for TicketRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TicketRef::Issue { repo: None, number } => write!(f, "#{number}"),
            TicketRef::Issue { repo: Some(repo), number } => write!(f, "{repo}#{number}"),
            TicketRef::Key(key) => f.write_str(key),
        }
    }
}

/// The phrases that open a dependency line, lower case.
const PHRASES: [&str; 4] = ["depends on", "depend on", "blocked by", "requires"];

/// The tickets `body` says it waits for, in order, each once, at most [`REFERENCES_MAX`]. A
/// dependency line starts (after list markers and emphasis) with `Depends on` or `Blocked by`
/// (any case, an optional `:`), followed by references separated by commas, spaces or `and`; the
/// list ends at the first word that is not a reference. Fenced code blocks and `>` quotes are
/// skipped: a quoted or pasted line declares nothing.
pub fn parse_dependencies(body: &str) -> Vec<TicketRef> {
    let mut found: Vec<TicketRef> = Vec::new();
    let mut fence: Option<&str> = None;
    for line in body.lines().take(LINES_MAX) {
        let trimmed = line.trim_start();
        if let Some(open) = fence {
            if trimmed.starts_with(open) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        if trimmed.starts_with('>') {
            continue;
        }
        let Some(rest) = after_phrase(trimmed) else { continue };
        for word in rest.split(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
            let word = word.trim_matches(|c: char| matches!(c, '*' | '_' | '`' | '.' | ')' | '('));
            if word.is_empty() || word.eq_ignore_ascii_case("and") || word == "&" {
                continue;
            }
            let Some(reference) = parse_reference(word) else { break };
            if !found.contains(&reference) {
                found.push(reference);
            }
            if found.len() >= REFERENCES_MAX {
                return found;
            }
        }
    }
    found
}

/// What follows a dependency phrase at the start of `line` (list markers, checkboxes and
/// emphasis skipped), or `None` when the line is not a dependency line.
fn after_phrase(line: &str) -> Option<&str> {
    let mut rest = line;
    loop {
        let before = rest;
        rest = rest.trim_start();
        for marker in ["- [ ]", "- [x]", "* [ ]", "* [x]", "- ", "* ", "+ ", "**", "__", "*", "_"] {
            if let Some(after) = rest.strip_prefix(marker) {
                rest = after;
            }
        }
        if rest == before {
            break;
        }
    }
    let lower: String = rest.chars().take(12).collect::<String>().to_ascii_lowercase();
    let phrase = PHRASES.iter().find(|p| lower.starts_with(*p))?;
    let rest = &rest[phrase.len()..];
    // `Depends on` must end there: `Depends onto` is not a dependency line.
    if rest.chars().next().is_some_and(|c| c.is_alphanumeric()) {
        return None;
    }
    let rest = rest.trim_start_matches(['*', '_']).trim_start();
    Some(rest.strip_prefix(':').unwrap_or(rest).trim_start_matches(['*', '_']))
}

/// One reference: `#12`, `owner/repo#12`, or a key `DEMO-3` (letters first, then letters or
/// digits, a dash, digits).
fn parse_reference(word: &str) -> Option<TicketRef> {
    if let Some((repo, number)) = word.rsplit_once('#') {
        let number: u64 = number.parse().ok().filter(|n| *n > 0)?;
        if repo.is_empty() {
            return Some(TicketRef::Issue { repo: None, number });
        }
        let (owner, name) = repo.split_once('/')?;
        let part = |s: &str| {
            !s.is_empty() && s.len() <= 100 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        return (part(owner) && part(name)).then(|| TicketRef::Issue { repo: Some(repo.to_string()), number });
    }
    let (prefix, number) = word.rsplit_once('-')?;
    let key_ok = prefix.len() <= 32
        && prefix.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !number.is_empty()
        && number.len() <= 12
        && number.chars().all(|c| c.is_ascii_digit());
    key_ok.then(|| TicketRef::Key(word.to_string()))
}

/// Where a ticket lives, to resolve the references in its body.
#[derive(Debug, Clone)]
pub struct TicketPlace<'a> {
    /// `github`, `gitea` or `plane`.
    pub source: &'a str,
    /// The forge repository (`owner/name`) or the Plane project id.
    pub forge_repo: &'a str,
}

/// What a reference resolved to.
enum Resolved {
    Task(Box<TaskRecord>),
    /// No Baton task for it yet: the reference waits for that ticket to be taken.
    Pending(String),
}

impl TicketPlace<'_> {
    /// The principal recorded on the dependencies the ticket declares.
    pub fn principal(&self) -> String {
        format!("tracker:{}", self.source)
    }

    async fn resolve(&self, engine: &Engine, reference: &TicketRef) -> Result<Resolved, EngineError> {
        let external = match reference {
            TicketRef::Issue { .. } if self.source == "plane" => {
                return Ok(Resolved::Pending(format!(
                    "{reference}: a Plane work item names another by its key (`PROJ-12`) or its Baton work item id"
                )));
            }
            TicketRef::Issue { repo, number } => {
                format!("{}:{}#{number}", self.source, repo.as_deref().unwrap_or(self.forge_repo))
            }
            TicketRef::Key(key) => {
                if let Some(task) = engine.store().task(&TaskKey::WorkItem(key.clone())).await? {
                    return Ok(Resolved::Task(Box::new(task)));
                }
                let upper = key.to_ascii_uppercase();
                if upper != *key
                    && let Some(task) = engine.store().task(&TaskKey::WorkItem(upper)).await?
                {
                    return Ok(Resolved::Task(Box::new(task)));
                }
                // A tracker that cannot answer now (down, rate limited) leaves the reference
                // pending: the ticket's next event or poll asks again.
                match engine.tracker().ticket_by_key(key).await {
                    Ok(Some(external)) => external,
                    Ok(None) => {
                        return Ok(Resolved::Pending(format!(
                            "{reference}: no Baton task and no ticket has that key yet"
                        )));
                    }
                    Err(error) => {
                        tracing::warn!("looking up the ticket {reference} failed: {error}");
                        return Ok(Resolved::Pending(format!("{reference}: the tracker could not be asked for it")));
                    }
                }
            }
        };
        Ok(match engine.store().task_by_external_ref(&external).await? {
            Some(task) => Resolved::Task(Box::new(task)),
            None => Resolved::Pending(format!("{reference}: Baton has no task for {external} yet")),
        })
    }
}

/// What a ticket's dependencies resolved to.
#[derive(Debug, Default)]
pub struct TicketDependencies {
    /// The tasks it waits for, each once.
    pub tasks: Vec<TaskRecord>,
    /// A timeline note for each reference that has no task yet (tried again at the ticket's next
    /// update or poll).
    pub notes: Vec<String>,
    /// Every source was read: the body and, when the tracker has them, the ticket's relations. A
    /// sync withdraws nothing after a partial read (a tracker that could not be asked is not a
    /// ticket that dropped its relations).
    pub complete: bool,
}

/// The tasks `refs` (parsed from the ticket's text) name, and the tickets the ticket `external`
/// is blocked by in the tracker's own relations (Plane's `blocked_by`), that have a task.
pub async fn resolve_all(
    engine: &Engine,
    place: &TicketPlace<'_>,
    refs: &[TicketRef],
    external: Option<&str>,
) -> Result<TicketDependencies, EngineError> {
    let mut found = TicketDependencies { complete: true, ..TicketDependencies::default() };
    let pending = |why: String| {
        format!(
            "dependency {why}; it does not hold this task until that ticket is taken, and is tried again at this \
             ticket's next update or poll"
        )
    };
    for reference in refs {
        match place.resolve(engine, reference).await? {
            Resolved::Task(task) if !found.tasks.iter().any(|t| t.id == task.id) => found.tasks.push(*task),
            Resolved::Task(_) => {}
            Resolved::Pending(why) => found.notes.push(pending(why)),
        }
    }
    let Some(external) = external else {
        return Ok(found);
    };
    match engine.tracker().blocked_by(external).await {
        Ok(blockers) => {
            for blocker in blockers {
                match engine.store().task_by_external_ref(&blocker).await? {
                    Some(task) if !found.tasks.iter().any(|t| t.id == task.id) => found.tasks.push(task),
                    Some(_) => {}
                    None => found
                        .notes
                        .push(pending(format!("{blocker} (a blocked-by relation): Baton has no task for it yet"))),
                }
            }
        }
        Err(error) => {
            tracing::warn!("reading the relations of {external} failed: {error}");
            found.complete = false;
        }
    }
    Ok(found)
}

/// What a sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    pub declared: Vec<String>,
    pub withdrawn: Vec<String>,
    /// Notes for references not honoured (refused or pending).
    pub notes: Vec<String>,
}

/// Makes the live `task`'s ticket-declared dependencies what `body` and the tracker's blocked-by
/// relations of its ticket say (a failed relations read withdraws nothing): each resolved reference
/// is declared by `tracker:<source>` through [`Engine::declare_dependency`] — a refusal (cycle,
/// cancelled, past the merge gate) becomes a timeline note, never an error —, and a dependency the
/// ticket declared earlier (at creation or by a sync) that the body no longer names is withdrawn.
/// Dependencies declared by a person (`baton task depend`) are left alone.
pub async fn sync(
    engine: &Engine,
    place: &TicketPlace<'_>,
    task: &TaskRecord,
    body: &str,
) -> Result<Synced, EngineError> {
    let refs = parse_dependencies(body);
    let TicketDependencies { tasks: wanted, mut notes, complete } =
        resolve_all(engine, place, &refs, task.external_ref.as_deref()).await?;
    let principal = place.principal();
    let current = engine.store().dependencies(task.id).await?;
    let ours = |by: &str| by == principal || by == DEPENDS_AT_CREATE;
    let mut synced = Synced::default();
    let key = TaskKey::Id(task.id);
    for on in wanted.iter().filter(|w| w.id != task.id) {
        if current.iter().any(|c| c.depends_on == on.id) {
            continue;
        }
        match engine.declare_dependency(&key, &TaskKey::Id(on.id), &principal).await {
            Ok(declared) if declared.created => synced.declared.push(on.work_item_id.clone()),
            Ok(_) => {}
            Err(EngineError::Refused(why) | EngineError::Invalid(why)) => {
                notes.push(format!("dependency on {} refused: {why}", on.work_item_id));
            }
            Err(other) => return Err(other),
        }
    }
    if wanted.iter().any(|w| w.id == task.id) {
        notes.push(format!("{} names its own ticket as a dependency; ignored", task.work_item_id));
    }
    let kept: Vec<TaskId> = wanted.iter().map(|w| w.id).collect();
    for old in current.iter().filter(|c| complete && ours(&c.created_by) && !kept.contains(&c.depends_on)) {
        if engine.withdraw_dependency(&key, &TaskKey::Id(old.depends_on)).await? {
            synced.withdrawn.push(old.depends_on_work_item.clone());
        }
    }
    for note in &notes {
        note_once(engine, task, note).await?;
    }
    for (what, list) in [("declared", &synced.declared), ("withdrawn", &synced.withdrawn)] {
        if !list.is_empty() {
            let message = format!("dependencies {what} by the ticket: {}", list.join(", "));
            append_note(engine, task, &message, &place.principal()).await?;
        }
    }
    synced.notes = notes;
    Ok(synced)
}

/// Events of one task read at most when looking for an earlier identical note.
const NOTES_SCANNED_MAX: u32 = 2_000;

/// Appends `message` to the task's timeline unless an identical note is already there (a ticket
/// polled every few seconds repeats its refusals).
pub async fn note_once(engine: &Engine, task: &TaskRecord, message: &str) -> Result<(), EngineError> {
    let mut after = 0;
    let mut scanned = 0;
    loop {
        let page = engine.store().events(Some(task.id), after, 200).await?;
        if page.iter().any(|e| e.kind == NOTE_KIND && e.message == message) {
            return Ok(());
        }
        scanned += page.len() as u32;
        match page.last() {
            Some(last) if page.len() == 200 && scanned < NOTES_SCANNED_MAX => after = last.id,
            _ => break,
        }
    }
    tracing::info!(task = %task.work_item_id, "{message}");
    append_note(engine, task, message, "tracker").await
}

async fn append_note(engine: &Engine, task: &TaskRecord, message: &str, by: &str) -> Result<(), EngineError> {
    engine
        .store()
        .append_event(NewEvent {
            task: task.id,
            at_ms: engine.clock().now_ms(),
            kind: NOTE_KIND.into(),
            stage: task.state.stage.clone(),
            message: message.to_string(),
            detail: serde_json::json!({ "by": by }),
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(number: u64) -> TicketRef {
        TicketRef::Issue { repo: None, number }
    }

    // The documented spellings, in any case, with or without a colon, list markers or emphasis.
    #[test]
    fn dependency_lines_are_read_in_their_usual_spellings() {
        let body = "Fixes the login.\n\nDepends on #12\nBLOCKED BY #15, #16 and acme/lib#3\n\
                    - **Depends on:** DEMO-3\n* blocked by: app-7; #12\n";
        assert_eq!(
            parse_dependencies(body),
            vec![
                issue(12),
                issue(15),
                issue(16),
                TicketRef::Issue { repo: Some("acme/lib".into()), number: 3 },
                TicketRef::Key("DEMO-3".into()),
                TicketRef::Key("app-7".into()),
            ]
        );
    }

    // Only lines that start with the phrase count, and a list ends at the first non-reference.
    #[test]
    fn prose_mentions_and_trailing_words_are_not_dependencies() {
        let body = "This depends on #4 being merged.\nDepends on #5 for the schema, #6\nDepends onto #7\n\
                    See #8. Related to #9.\nDepends on nothing\nDepends on #0 and #-1\n";
        assert_eq!(parse_dependencies(body), vec![issue(5)]);
    }

    // Code blocks and quotes declare nothing.
    #[test]
    fn code_blocks_and_quotes_are_skipped() {
        let body = "```\nDepends on #1\n```\n> Depends on #2\n~~~text\nBlocked by #3\n~~~\nDepends on #4\n";
        assert_eq!(parse_dependencies(body), vec![issue(4)]);
    }

    // A ticket names at most REFERENCES_MAX tickets; repeats count once.
    #[test]
    fn references_are_bounded_and_deduplicated() {
        let list: Vec<String> = (1..=50).map(|n| format!("#{n}")).collect();
        let body = format!("Depends on #1, #1, {}\n", list.join(", "));
        let found = parse_dependencies(&body);
        assert_eq!(found.len(), REFERENCES_MAX);
        assert_eq!(found[0], issue(1));
        assert_eq!(found[1], issue(2));
        let huge = "Depends on #1\n".repeat(100_000);
        assert_eq!(parse_dependencies(&huge), vec![issue(1)]);
    }

    // Malformed references are not guessed at.
    #[test]
    fn malformed_references_end_the_list() {
        assert_eq!(parse_dependencies("Depends on owner#3"), vec![]);
        assert_eq!(parse_dependencies("Depends on a/b/c#3"), vec![]);
        assert_eq!(parse_dependencies("Depends on 12"), vec![]);
        assert_eq!(parse_dependencies("Depends on -3"), vec![]);
        assert_eq!(parse_dependencies("Depends on #12x"), vec![]);
        assert_eq!(parse_dependencies("Depends on (#12)"), vec![issue(12)]);
        assert_eq!(parse_dependencies("Requires #2."), vec![issue(2)]);
        assert_eq!(TicketRef::Issue { repo: Some("a/b".into()), number: 2 }.to_string(), "a/b#2");
    }
}
