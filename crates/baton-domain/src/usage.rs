//! Usage categories (SPEC §9), mapped at read time: every agent run and every ingested usage record
//! has a default category, and `[usage.categories]` renames or merges categories when usage is
//! read, so changing the configuration relabels history without rewriting a row.
//!
//! The rule, in order (the first key present wins):
//! 1. the specific key: `agent:<stage>` for an agent run, `source:<source>` for an ingested record;
//! 2. the wildcard: `agent:*` or `source:*`;
//! 3. the default category's own name (`review`, `audio`), which renames that category wherever it
//!    comes from;
//! 4. otherwise the default category itself: an agent run's stage, an ingested record's `category`.

use std::collections::BTreeMap;

/// What a usage row is, for the category map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageOrigin<'a> {
    /// An agent run of a stage (its default category is the stage).
    Agent { stage: &'a str },
    /// A record from `POST /api/usage/ingest` (its default category is the one it carries).
    Ingested { source: &'a str, category: &'a str },
}

/// `[usage.categories]`: key → category (see the module docs for the keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryMap {
    rules: BTreeMap<String, String>,
}

/// Why a `[usage.categories]` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryProblem {
    pub key: String,
    pub problem: String,
}

impl CategoryMap {
    /// Checks every entry: a key is `agent:<stage>`, `agent:*`, `source:<name>`, `source:*` or a
    /// bare category name; no key or category is empty or longer than 100 characters.
    pub fn new(rules: BTreeMap<String, String>) -> Result<CategoryMap, CategoryProblem> {
        const CHARS_MAX: usize = 100;
        for (key, category) in &rules {
            let refuse = |problem: &str| Err(CategoryProblem { key: key.clone(), problem: problem.to_owned() });
            let rest = key.strip_prefix("agent:").or_else(|| key.strip_prefix("source:"));
            if key.trim().is_empty() || rest.is_some_and(|r| r.trim().is_empty()) {
                return refuse(
                    "names nothing: use `agent:<stage>`, `agent:*`, `source:<name>`, `source:*` or a category",
                );
            }
            if key.chars().count() > CHARS_MAX || category.chars().count() > CHARS_MAX {
                return refuse("is longer than 100 characters");
            }
            if category.trim().is_empty() {
                return refuse("maps to an empty category; give a name such as \"engineering\"");
            }
        }
        Ok(CategoryMap { rules })
    }

    /// The category `origin` is shown under.
    pub fn category(&self, origin: UsageOrigin<'_>) -> String {
        let (specific, wildcard, default) = match origin {
            UsageOrigin::Agent { stage } => (format!("agent:{stage}"), "agent:*", stage),
            UsageOrigin::Ingested { source, category } => (format!("source:{source}"), "source:*", category),
        };
        [specific.as_str(), wildcard, default]
            .iter()
            .find_map(|key| self.rules.get(*key))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> CategoryMap {
        CategoryMap::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap()
    }

    // Specific keys beat wildcards, wildcards beat renames, and unmapped rows keep their default.
    #[test]
    fn specific_then_wildcard_then_rename_then_default() {
        let m = map(&[
            ("agent:review", "quality"),
            ("agent:*", "engineering"),
            ("source:transcriber", "audio"),
            ("tts", "audio"),
        ]);
        assert_eq!(m.category(UsageOrigin::Agent { stage: "review" }), "quality");
        assert_eq!(m.category(UsageOrigin::Agent { stage: "development" }), "engineering");
        assert_eq!(m.category(UsageOrigin::Ingested { source: "transcriber", category: "speech" }), "audio");
        assert_eq!(m.category(UsageOrigin::Ingested { source: "narrator", category: "tts" }), "audio");
        assert_eq!(m.category(UsageOrigin::Ingested { source: "crm", category: "leads" }), "leads");
        assert_eq!(CategoryMap::default().category(UsageOrigin::Agent { stage: "testing" }), "testing");
    }

    // Keys that name nothing and empty categories are refused with the key named.
    #[test]
    fn bad_entries_are_refused() {
        let bad = |k: &str, v: &str| CategoryMap::new([(k.to_string(), v.to_string())].into()).unwrap_err().key;
        assert_eq!(bad("agent:", "x"), "agent:");
        assert_eq!(bad("source: ", "x"), "source: ");
        assert_eq!(bad("review", " "), "review");
    }
}
