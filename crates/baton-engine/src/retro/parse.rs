//! The retro's artifact, read as untrusted text: Markdown holding one fenced ```json block with
//! `{"lessons": [{"title", "body", "stage"?, "tags"?}], "next_tasks": [{"title", "body"}]}`.
//! Titles are one line of at most [`TITLE_CHARS_MAX`] characters, bodies at most
//! [`BODY_BYTES_MAX`] bytes, neither with control characters; an item that breaks a rule is
//! dropped with a reason, and so is every item past the cap. A block that is missing, is not JSON
//! or has the wrong shape is refused whole.

use baton_domain::text;
use serde_json::Value;

/// The most characters of a proposal's title.
pub const TITLE_CHARS_MAX: usize = 200;
/// The most bytes of a proposal's body.
pub const BODY_BYTES_MAX: usize = 4096;
/// The most tags of a proposed lesson, and characters of each.
const TAGS_MAX: usize = 8;
const TAG_CHARS_MAX: usize = 40;
/// The most bytes of the JSON block read at all.
const BLOCK_BYTES_MAX: usize = 256 * 1024;

/// A lesson the retro proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedLesson {
    pub title: String,
    pub body: String,
    pub stage: Option<String>,
    pub tags: Vec<String>,
}

/// A next task the retro proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedTask {
    pub title: String,
    pub body: String,
}

/// What a retro artifact proposes, and why any item was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proposals {
    pub lessons: Vec<ProposedLesson>,
    pub next_tasks: Vec<ProposedTask>,
    pub dropped: Vec<String>,
}

/// Reads the proposals of `artifact`, keeping at most `max` of each kind.
pub fn parse(artifact: &str, max: usize) -> Result<Proposals, String> {
    let block = json_block(artifact).ok_or("no fenced ```json block in the artifact")?;
    if block.len() > BLOCK_BYTES_MAX {
        return Err(format!("the ```json block is longer than {BLOCK_BYTES_MAX} bytes"));
    }
    let value: Value = serde_json::from_str(block).map_err(|e| format!("the ```json block is not JSON: {e}"))?;
    let object = value.as_object().ok_or("the ```json block is not an object with `lessons` and `next_tasks`")?;
    let list = |key: &str| -> Result<Vec<Value>, String> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(_) => Err(format!("`{key}` is not a list")),
        }
    };
    let mut out = Proposals::default();
    for (i, item) in list("lessons")?.iter().enumerate() {
        match lesson(item) {
            Ok(_) if out.lessons.len() >= max => out.dropped.push(format!("lessons[{i}] dropped: more than {max}")),
            Ok(lesson) => out.lessons.push(lesson),
            Err(why) => out.dropped.push(format!("lessons[{i}] dropped: {why}")),
        }
    }
    for (i, item) in list("next_tasks")?.iter().enumerate() {
        match (field(item, "title", true), field(item, "body", false)) {
            (Ok(_), Ok(_)) if out.next_tasks.len() >= max => {
                out.dropped.push(format!("next_tasks[{i}] dropped: more than {max}"))
            }
            (Ok(title), Ok(body)) => out.next_tasks.push(ProposedTask { title, body }),
            (Err(why), _) | (_, Err(why)) => out.dropped.push(format!("next_tasks[{i}] dropped: {why}")),
        }
    }
    Ok(out)
}

/// The text of the first fenced block whose info string is `json`.
fn json_block(markdown: &str) -> Option<&str> {
    let mut start = None;
    let mut offset = 0;
    for line in markdown.split_inclusive('\n') {
        let trimmed = line.trim();
        match start {
            None if trimmed.starts_with("```")
                && trimmed.trim_start_matches('`').trim().eq_ignore_ascii_case("json") =>
            {
                start = Some(offset + line.len());
            }
            Some(from) if trimmed.starts_with("```") => return Some(&markdown[from..offset]),
            _ => {}
        }
        offset += line.len();
    }
    None
}

fn lesson(item: &Value) -> Result<ProposedLesson, String> {
    let title = field(item, "title", true)?;
    let body = field(item, "body", false)?;
    let stage = match item.get("stage") {
        None | Some(Value::Null) => None,
        Some(Value::String(stage)) if stage.trim().is_empty() => None,
        Some(Value::String(stage)) => {
            text::check_line(stage, TAG_CHARS_MAX).map_err(|p| format!("`stage` {p}"))?;
            Some(stage.trim().to_string())
        }
        Some(_) => return Err("`stage` is not a string".into()),
    };
    let tags = match item.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tags)) => {
            let mut kept = Vec::new();
            for tag in tags.iter().take(TAGS_MAX) {
                let tag = tag.as_str().ok_or("a tag is not a string")?;
                text::check_line(tag, TAG_CHARS_MAX).map_err(|p| format!("tag `{}` {p}", tag.escape_debug()))?;
                kept.push(tag.trim().to_string());
            }
            kept
        }
        Some(_) => return Err("`tags` is not a list".into()),
    };
    Ok(ProposedLesson { title, body, stage, tags })
}

/// A string field of a proposal: a `title` is one bounded line, a `body` bounded text; both
/// non-empty.
fn field(item: &Value, key: &str, line: bool) -> Result<String, String> {
    let Some(value) = item.get(key) else {
        return Err(format!("no `{key}`"));
    };
    let text = value.as_str().ok_or_else(|| format!("`{key}` is not a string"))?.trim();
    let checked = if line {
        text::check_line(text, TITLE_CHARS_MAX)
    } else if text.is_empty() {
        Err(text::TextProblem::Empty)
    } else {
        text::check_text(text, BODY_BYTES_MAX)
    };
    checked.map_err(|p| format!("`{key}` {p}"))?;
    Ok(text.to_string())
}

/// Lower-case letters, digits and dashes, at most 60 characters: a title made safe for a slug.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 60 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // A well-formed artifact yields its lessons and next tasks, trimmed, the optional fields read.
    #[test]
    fn a_good_artifact_yields_its_proposals() {
        let artifact = "# Retro\n\nWhat went well.\n\n```json\n{\"lessons\": [{\"title\": \" Pin versions \", \"body\": \"The build broke.\", \"stage\": \"development\", \"tags\": [\"deps\"]}],\n \"next_tasks\": [{\"title\": \"Add a cache\", \"body\": \"Lookups repeat.\"}]}\n```\n";
        let parsed = parse(artifact, 5).unwrap();
        assert_eq!(
            parsed.lessons,
            vec![ProposedLesson {
                title: "Pin versions".into(),
                body: "The build broke.".into(),
                stage: Some("development".into()),
                tags: vec!["deps".into()],
            }]
        );
        assert_eq!(
            parsed.next_tasks,
            vec![ProposedTask { title: "Add a cache".into(), body: "Lookups repeat.".into() }]
        );
        assert!(parsed.dropped.is_empty());
    }

    // No block, broken JSON or a wrong shape refuse the whole artifact with a reason.
    #[test]
    fn a_malformed_artifact_is_refused_with_a_reason() {
        assert!(parse("# Retro\nno block", 5).unwrap_err().contains("no fenced"));
        assert!(parse("```json\n{\"lessons\": [\n```\n", 5).unwrap_err().contains("not JSON"));
        assert!(parse("```json\n[1, 2]\n```\n", 5).unwrap_err().contains("not an object"));
        assert!(parse("```json\n{\"lessons\": 3}\n```\n", 5).unwrap_err().contains("`lessons` is not a list"));
    }

    // Items past the cap, with a bad title or body, are dropped one by one with their reason.
    #[test]
    fn bad_or_surplus_items_are_dropped_with_a_reason() {
        let long = "x".repeat(TITLE_CHARS_MAX + 1);
        let tasks: Vec<String> = (0..4).map(|i| format!("{{\"title\": \"t{i}\", \"body\": \"b\"}}")).collect();
        let artifact = format!(
            "```json\n{{\"lessons\": [{{\"title\": \"{long}\", \"body\": \"b\"}}, {{\"title\": \"a\\u001b[2J\", \"body\": \"b\"}}, {{\"title\": \"ok\"}}], \"next_tasks\": [{}]}}\n```",
            tasks.join(",")
        );
        let parsed = parse(&artifact, 2).unwrap();
        assert!(parsed.lessons.is_empty());
        assert_eq!(parsed.next_tasks.len(), 2);
        assert_eq!(parsed.dropped.len(), 5, "{:?}", parsed.dropped);
        assert!(parsed.dropped[0].contains("longer than 200"), "{:?}", parsed.dropped);
        assert!(parsed.dropped[1].contains("control character"), "{:?}", parsed.dropped);
        assert!(parsed.dropped[2].contains("no `body`"), "{:?}", parsed.dropped);
        assert!(parsed.dropped[3].contains("more than 2"), "{:?}", parsed.dropped);
    }

    #[test]
    fn slugs_are_safe_and_short() {
        assert_eq!(slug("Pin: the Versions!"), "pin-the-versions");
        assert!(slug(&"ab ".repeat(100)).len() <= 60);
    }
}
