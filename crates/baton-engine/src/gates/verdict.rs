//! The `verdict` gate: reads `key:` from the artifact's YAML-style front matter.

use super::GateContext;
use super::artifact::artifact_relative_path;
use baton_domain::{GateVerdict, Verdict};

/// Characters of the artifact body carried into a failure reason (the next prompt shows them).
const BODY_EXCERPT_CHARS_MAX: usize = 1_500;

/// Splits `---\nkey: value\n---\nbody` into (front-matter pairs, body); `None` without front matter.
pub fn front_matter(text: &str) -> Option<(Vec<(String, String)>, String)> {
    let text = text.trim_start_matches('\u{feff}');
    let rest = text.strip_prefix("---")?.trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n'))?;
    let mut pairs = Vec::new();
    let mut consumed = 0;
    for line in rest.split_inclusive('\n') {
        consumed += line.len();
        let trimmed = line.trim();
        if trimmed == "---" {
            return Some((pairs, rest[consumed..].to_string()));
        }
        let content = trimmed.split(" #").next().unwrap_or("").trim();
        if let Some((key, value)) = content.split_once(':') {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
            pairs.push((key.trim().to_string(), value));
        }
    }
    None
}

pub async fn check(ctx: &GateContext<'_>, key: &str, pass: &[String]) -> GateVerdict {
    let Some(name) = ctx.stage.artifact.as_deref() else {
        return GateVerdict::new("verdict", Verdict::Error, "the stage names no artifact file");
    };
    let relative = artifact_relative_path(&ctx.task.work_item_id, name);
    let Some(text) = ctx.vcs.read_file(ctx.worktree, &relative).await else {
        return GateVerdict::new("verdict", Verdict::Fail, format!("{relative} is missing"));
    };
    let Some((pairs, body)) = front_matter(&text) else {
        return GateVerdict::new("verdict", Verdict::Fail, format!("{relative} has no front matter with `{key}:`"));
    };
    match pairs.iter().find(|(k, _)| k == key) {
        Some((_, value)) if pass.iter().any(|p| p.eq_ignore_ascii_case(value)) => {
            GateVerdict::new("verdict", Verdict::Pass, format!("{key}: {value}"))
        }
        Some((_, value)) => {
            let excerpt: String = body.trim().chars().take(BODY_EXCERPT_CHARS_MAX).collect();
            GateVerdict::new("verdict", Verdict::Fail, format!("{key}: {value} — {excerpt}"))
        }
        None => GateVerdict::new("verdict", Verdict::Fail, format!("{relative} front matter has no `{key}:`")),
    }
}

#[cfg(test)]
mod tests {
    use super::front_matter;

    // Front matter is read with comments and quotes stripped; the body follows.
    #[test]
    fn parses_front_matter() {
        let (pairs, body) = front_matter("---\nverdict: \"approve\" # ok\nother: x\n---\nBody\n").unwrap();
        assert_eq!(pairs[0], ("verdict".to_string(), "approve".to_string()));
        assert_eq!(body.trim(), "Body");
    }

    // Text without an opening or closing fence has no front matter.
    #[test]
    fn rejects_missing_fences() {
        assert!(front_matter("verdict: approve\n").is_none());
        assert!(front_matter("---\nverdict: approve\n").is_none());
    }
}
