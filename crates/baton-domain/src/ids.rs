//! Newtype ids and the sanitizers that turn untrusted ticket text into safe names.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Database id of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub i64);

/// Database id of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A work-item id `PREFIX-NNN`, unique per repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkItemId(String);

impl WorkItemId {
    /// Builds the id for `number` under `prefix` (`ORCH`, 7 → `ORCH-007`).
    pub fn new(prefix: &str, number: u32) -> Self {
        Self(format!("{prefix}-{number:03}"))
    }

    /// Parses and validates an id: an upper-case ASCII prefix, a dash, digits.
    pub fn parse(text: &str) -> Option<Self> {
        let (prefix, number) = text.split_once('-')?;
        if valid_prefix(prefix) && !number.is_empty() && number.len() <= 9 && number.bytes().all(|b| b.is_ascii_digit())
        {
            Some(Self(text.to_string()))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A work-item prefix is 1–10 characters, an upper-case letter then upper-case letters or digits.
pub fn valid_prefix(prefix: &str) -> bool {
    let mut bytes = prefix.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_uppercase())
        && prefix.len() <= 10
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A repository name usable as a path component: `[a-z0-9._-]`, not starting with a dot, 1–64 bytes.
pub fn valid_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// Turns arbitrary title text into a slug of `[a-z0-9-]`, at most `max_len` bytes, never empty.
pub fn slug(title: &str, max_len: usize) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
            if out.len() >= max_len {
                break;
            }
        } else {
            dash = true;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() { "task".to_string() } else { trimmed.to_string() }
}

/// The task branch `baton/<work-item-id>-<slug>`; made only of `[A-Za-z0-9/-]`.
pub fn branch_name(work_item: &WorkItemId, title: &str) -> String {
    format!("baton/{}-{}", work_item, slug(title, 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hostile title yields a branch with only safe characters and no traversal.
    #[test]
    fn hostile_title_yields_safe_branch() {
        let id = WorkItemId::new("DEMO", 4);
        let branch = branch_name(&id, "../../etc/passwd; rm -rf ~");
        assert_eq!(branch, "baton/DEMO-004-etc-passwd-rm-rf");
        assert!(!branch.contains(".."));
    }

    // Work-item ids are validated strictly: no lowercase, no path characters.
    #[test]
    fn work_item_parse_rejects_junk() {
        assert!(WorkItemId::parse("ORCH-012").is_some());
        assert!(WorkItemId::parse("orch-012").is_none());
        assert!(WorkItemId::parse("ORCH-../1").is_none());
        assert!(WorkItemId::parse("ORCH").is_none());
    }

    // An empty or symbol-only title still yields a usable slug.
    #[test]
    fn slug_never_empty() {
        assert_eq!(slug("!!!", 40), "task");
        assert_eq!(slug("Add  a   Multiply function", 12), "add-a-multip");
    }
}
