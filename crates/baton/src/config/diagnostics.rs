//! Turning errors into issues: TOML syntax errors (blanking each broken line to find the next),
//! serde errors key by key (setting each bad key aside to read the rest), serde's wording in
//! configuration terms, and "did you mean" suggestions for misspelt names.

use super::{ConfigIssue, Loader, join_key};
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Prefix of the section names that stand in for broken table headers while hunting syntax errors.
const SKIPPED_SECTION: &str = "__baton_skipped_line_";

/// Syntax errors reported before giving up on the rest of the file.
const SYNTAX_ERRORS_MAX: usize = 20;

/// Field errors reported for one section or entry.
const FIELD_ERRORS_MAX: usize = 32;

/// The outcome of deserializing one section or entry: the value, if it could be read once the
/// bad keys were set aside, and those bad keys (semantic checks skip them).
pub(super) struct Parsed<T> {
    pub(super) value: Option<T>,
    pub(super) bad: Vec<String>,
}

impl Loader<'_> {
    /// Parses the text; on a syntax error, reports it and blanks that line to look for more.
    pub(super) fn parse_document(&mut self, text: &str, file_name: &str) -> Table {
        let mut text = text.to_string();
        let mut found: Vec<(usize, usize, ConfigIssue)> = Vec::new();
        let mut table = Table::new();
        for attempt in 0..SYNTAX_ERRORS_MAX {
            let error = match text.parse::<Table>() {
                Ok(mut parsed) => {
                    parsed.retain(|key, _| !key.starts_with(SKIPPED_SECTION));
                    table = parsed;
                    break;
                }
                Err(error) => error,
            };
            let offset = error.span().map_or(text.len(), |span| span.start);
            let (line, column) = line_column(&text, offset);
            if found.iter().any(|(seen, _, _)| *seen == line) {
                // An error on a line already skipped is fallout of an unclosed array, table or
                // string; listing more would only add noise.
                break;
            }
            let line_text: String = text.lines().nth(line - 1).unwrap_or("").trim().chars().take(80).collect();
            let issue = ConfigIssue::new(
                format!("{file_name}:{line}:{column}"),
                format!("TOML syntax error at line {line}, column {column}: {}", error.message().trim()),
                if line_text.is_empty() {
                    format!("close the string, array or table that is still open at line {line}")
                } else {
                    format!(
                        "correct line {line} (`{line_text}`); strings need quotes, arrays use [a, b], tables [name]"
                    )
                },
            );
            found.push((line, column, issue));
            let next = skip_line(&text, line, attempt);
            if next == text {
                // The file cannot be parsed even with broken lines skipped; the syntax issues say why.
                break;
            }
            text = next;
        }
        // The parser does not always report the earliest error first; list them by position.
        found.sort_by_key(|(line, column, _)| (*line, *column));
        self.issues.extend(found.into_iter().map(|(_, _, issue)| issue));
        table
    }

    /// Deserializes one section or entry, reporting each bad key (up to a limit), not just the first.
    /// A bad value is replaced by a placeholder of a type the field accepts (or removed), so the
    /// rest of the entry can still be read and checked.
    pub(super) fn deserialize<T: DeserializeOwned>(&mut self, base: &str, mut table: Table) -> Parsed<T> {
        let mut bad: Vec<String> = Vec::new();
        for _ in 0..FIELD_ERRORS_MAX {
            let error = match try_table::<T>(&table) {
                Ok(value) => return Parsed { value: Some(value), bad },
                Err(error) => error,
            };
            let problem = SerdeProblem::from_error(&error);
            if let ProblemKind::Missing(field) = &problem.kind
                && problem.path.is_empty()
                && bad.contains(field)
            {
                // A required key set aside as bad: already reported.
                return Parsed { value: None, bad };
            }
            self.issues.push(problem.issue(base));
            let Some(key) = problem.culprit().filter(|key| table.contains_key(key)) else {
                return Parsed { value: None, bad };
            };
            let placeholder = match problem.kind {
                ProblemKind::UnknownField { .. } => None,
                _ => placeholder_for::<T>(&table, &key, &problem),
            };
            match placeholder {
                Some(value) => table.insert(key.clone(), value),
                None => table.remove(&key),
            };
            bad.push(key);
        }
        Parsed { value: None, bad }
    }
}

/// The table deserialized as `T`.
fn try_table<T: DeserializeOwned>(table: &Table) -> Result<T, toml::de::Error> {
    Value::Table(table.clone()).try_into::<T>()
}

/// A value for `key` that deserializes, so the other keys of the entry can be checked.
fn placeholder_for<T: DeserializeOwned>(table: &Table, key: &str, problem: &SerdeProblem) -> Option<Value> {
    let mut candidates = Vec::new();
    if let ProblemKind::UnknownVariant { expected, .. } = &problem.kind {
        candidates.extend(expected.first().map(|variant| Value::String(variant.clone())));
    }
    candidates.extend([
        Value::String(String::new()),
        Value::Integer(1),
        Value::Boolean(false),
        Value::Array(Vec::new()),
        Value::Table(Table::new()),
    ]);
    candidates.into_iter().find(|candidate| {
        let mut trial = table.clone();
        trial.insert(key.to_string(), candidate.clone());
        match try_table::<T>(&trial) {
            Ok(_) => true,
            Err(error) => SerdeProblem::from_error(&error).culprit().as_deref() != Some(key),
        }
    })
}

/// What serde said was wrong, and where.
struct SerdeProblem {
    kind: ProblemKind,
    /// Keys below the section leading to the problem (from toml's "in `a.b`" note).
    path: Vec<String>,
    message: String,
}

enum ProblemKind {
    UnknownField { field: String, expected: Vec<String> },
    Missing(String),
    UnknownVariant { expected: Vec<String>, given: String },
    Other { expected: Option<String> },
}

impl SerdeProblem {
    fn from_error(error: &toml::de::Error) -> Self {
        let message = error.message().trim().to_string();
        // toml appends "in `a.b`" to the display of errors raised below the top level.
        let rendered = error.to_string();
        let path = rendered
            .lines()
            .rev()
            .find_map(|line| line.trim().strip_prefix("in `")?.strip_suffix('`').map(str::to_string))
            .map(|p| p.split('.').map(str::to_string).collect())
            .unwrap_or_default();
        let ticks = backticked(&message);
        let expected_ticks = message.split_once("expected").map(|(_, rest)| backticked(rest)).unwrap_or_default();
        let kind = if message.starts_with("unknown field") {
            ProblemKind::UnknownField { field: ticks.first().cloned().unwrap_or_default(), expected: expected_ticks }
        } else if message.starts_with("missing field") {
            ProblemKind::Missing(ticks.first().cloned().unwrap_or_default())
        } else if message.starts_with("unknown variant") {
            ProblemKind::UnknownVariant { given: ticks.first().cloned().unwrap_or_default(), expected: expected_ticks }
        } else {
            let expected = message.rsplit_once(", expected ").map(|(_, e)| friendly_type(e));
            ProblemKind::Other { expected }
        };
        SerdeProblem { kind, path, message }
    }

    /// The key of the section or entry to set aside so the rest can be checked.
    fn culprit(&self) -> Option<String> {
        match (&self.kind, self.path.first()) {
            (_, Some(first)) => Some(first.clone()),
            (ProblemKind::UnknownField { field, .. }, None) => Some(field.clone()),
            _ => None,
        }
    }

    fn issue(&self, base: &str) -> ConfigIssue {
        let at = self.path.iter().fold(base.to_string(), |acc, part| join_key(&acc, part));
        match &self.kind {
            ProblemKind::UnknownField { field, expected } => {
                let known: Vec<&str> = expected.iter().map(String::as_str).collect();
                ConfigIssue::new(
                    join_key(&at, field),
                    format!("unknown key `{field}`"),
                    suggest_fix(field, &known, "the keys allowed here are"),
                )
            }
            ProblemKind::Missing(field) => ConfigIssue::new(
                join_key(&at, field),
                format!("the required key `{field}` is missing"),
                format!("add `{field} = …` to {at}"),
            ),
            ProblemKind::UnknownVariant { given, expected } => {
                let known: Vec<&str> = expected.iter().map(String::as_str).collect();
                ConfigIssue::new(
                    at,
                    format!("`{given}` is not one of the accepted values"),
                    suggest_fix(given, &known, "use one of"),
                )
            }
            ProblemKind::Other { expected } => {
                let fix = match expected {
                    Some(expected) => format!("give `{at}` {expected}"),
                    None => format!("correct the value of `{at}`"),
                };
                ConfigIssue::new(at, self.message.clone(), fix)
            }
        }
    }
}

/// Serde's type words in configuration terms.
fn friendly_type(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "a sequence" => "a list, e.g. [\"a\", \"b\"]".to_string(),
        "a boolean" => "true or false".to_string(),
        other if other.starts_with("struct ") || other.contains("enum ") => "a table".to_string(),
        other => other.to_string(),
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The text with line `line` (1-based) neutralized: a broken table header becomes a placeholder
/// section (so the keys under it do not land in the previous table), anything else a blank line.
fn skip_line(text: &str, line: usize, attempt: usize) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    if let Some(target) = lines.get_mut(line - 1) {
        *target =
            if target.trim_start().starts_with('[') { format!("[{SKIPPED_SECTION}{attempt}]") } else { String::new() };
    }
    lines.join("\n")
}

/// How a value's type is named in messages.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// The `name` in each backtick pair of `text`.
fn backticked(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// "did you mean `x`?" when a known name is close, else the list of known names.
pub(super) fn suggest_fix(given: &str, known: &[&str], list_intro: &str) -> String {
    let closest = known
        .iter()
        .map(|k| (edit_distance(given, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    match closest {
        Some(name) => format!("did you mean `{name}`? ({list_intro}: {})", known.join(", ")),
        None if known.is_empty() => format!("remove `{given}`"),
        None => format!("remove or rename `{given}`; {list_intro}: {}", known.join(", ")),
    }
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}
