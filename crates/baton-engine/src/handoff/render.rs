//! The hand-off rendered: Markdown, one self-contained HTML page (inline CSS; no script, no
//! external resource, every text escaped), and the ready-to-paste next prompt.

use super::{CostRow, Document};
use std::fmt::Write;

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix time in milliseconds.
pub fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{} {:02}:{:02}:{:02} UTC", baton_domain::pricing::utc_date(ms), secs / 3600, secs / 60 % 60, secs % 60)
}

fn money(cost: Option<f64>) -> String {
    cost.map_or_else(|| "not reported".into(), |usd| format!("${usd:.4}"))
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// Where the next task starts from: the merged commit on the default branch, or the task branch.
fn start_point(doc: &Document) -> String {
    match &doc.merged_head {
        Some(head) => format!("{} at commit {} (merged)", doc.default_branch, short(head)),
        None => format!("branch {}", doc.branch),
    }
}

/// The prompt for the next task: what was done, what is left, the limitations, where to start.
pub fn next_prompt(doc: &Document) -> String {
    let mut p = String::new();
    let _ = writeln!(p, "Continue from Baton task {} \"{}\" in repository `{}`.", doc.work_item, doc.title, doc.repo);
    if let Some(ticket) = &doc.ticket {
        let _ = writeln!(p, "Ticket: {ticket}.");
    }
    if let Some(pr) = &doc.pull_request {
        let _ = writeln!(p, "Pull request: {pr}.");
    }
    let _ = writeln!(p, "Outcome: {}.", doc.outcome);
    let _ = writeln!(p);
    let _ = writeln!(p, "What was done:");
    if doc.commits.is_empty() {
        let _ = writeln!(p, "- no commit recorded");
    }
    for commit in doc.commits.iter().take(10) {
        let _ = writeln!(p, "- {commit}");
    }
    if let Some(stat) = doc.diff_stat.as_deref().and_then(|s| s.lines().last()) {
        let _ = writeln!(p, "- {}", stat.trim());
    }
    let passed = doc.gates.iter().filter(|g| g.verdict == "pass").count();
    let _ = writeln!(p, "- gates: {passed} passed of {} verdicts", doc.gates.len());
    let _ = writeln!(p);
    let _ = writeln!(p, "What is left (open limitations):");
    if doc.limitations.is_empty() {
        let _ = writeln!(p, "- none recorded");
    }
    for limit in &doc.limitations {
        let _ = writeln!(p, "- {limit}");
    }
    if !doc.resolved.is_empty() {
        let _ = writeln!(p, "Overcome on the way (context): {}", doc.resolved.join("; "));
    }
    let _ = writeln!(p);
    if doc.merged_head.is_some() {
        let _ = writeln!(
            p,
            "Start from {} in `{}`. Address the open limitations above first, if any; keep the change small and \
             tested.",
            start_point(doc),
            doc.repo
        );
    } else {
        let _ = writeln!(
            p,
            "Start from {} in `{}` (stage {}). Fix the cause of the block above, then carry the task on \
             (`baton task retry {}`), or file a new task for what is left.",
            start_point(doc),
            doc.repo,
            doc.stage,
            doc.work_item
        );
    }
    p
}

/// The hand-off as Markdown.
pub fn markdown(doc: &Document) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# Hand-off: {} — {}\n", doc.work_item, md_inline(&doc.title));
    let _ = writeln!(m, "## Summary\n");
    let _ = writeln!(m, "- **Outcome:** {}", md_inline(&doc.outcome));
    let _ = writeln!(m, "- **Repository:** `{}`", doc.repo);
    let _ = writeln!(m, "- **Ticket:** {}", doc.ticket.as_deref().map_or_else(|| "none".into(), md_inline));
    let _ = writeln!(m, "- **Final stage:** {}", doc.stage);
    let _ = writeln!(m, "- **Branch:** `{}`", doc.branch);
    match &doc.merged_head {
        Some(head) => {
            let _ = writeln!(m, "- **Merged:** `{head}` on `{}`", doc.default_branch);
        }
        None => {
            let _ = writeln!(m, "- **Merged:** not merged");
        }
    }
    let _ = writeln!(m, "- **Created:** {}", utc_time(doc.created_at_ms));
    let _ = writeln!(m, "- **Hand-off written:** {}\n", utc_time(doc.generated_at_ms));

    let _ = writeln!(m, "## What changed\n");
    if let Some(pr) = &doc.pull_request {
        let _ = writeln!(m, "Pull request: <{}>\n", md_inline(pr));
    }
    let _ = writeln!(m, "Commits on `{}`:\n", doc.commits_on);
    if doc.commits.is_empty() {
        let _ = writeln!(m, "- none recorded");
    }
    for commit in &doc.commits {
        let _ = writeln!(m, "- {}", md_inline(commit));
    }
    let _ = writeln!(m);
    match &doc.diff_stat {
        Some(stat) => {
            let _ = writeln!(m, "```text\n{}\n```\n", fence_safe(stat));
        }
        None => {
            let _ = writeln!(m, "Diff stat: none recorded.\n");
        }
    }

    let _ = writeln!(m, "## Gates and their proof\n");
    if doc.gates.is_empty() {
        let _ = writeln!(m, "No gate verdict recorded.\n");
    } else {
        let _ = writeln!(m, "| When | Stage | Gate | Verdict | Proof |\n|---|---|---|---|---|");
        for g in &doc.gates {
            let proof = match &g.evidence {
                Some(evidence) => format!("{} (`{}`)", g.reason, short(evidence)),
                None => g.reason.clone(),
            };
            let _ = writeln!(
                m,
                "| {} | {} | {} | **{}** | {} |",
                utc_time(g.at_ms),
                g.stage,
                md_cell(&g.gate),
                g.verdict,
                md_cell(&proof)
            );
        }
        let _ = writeln!(m);
    }

    let _ = writeln!(m, "## Cost and tokens\n");
    if doc.costs.is_empty() {
        let _ = writeln!(m, "No agent run recorded.\n");
    } else {
        let _ = writeln!(
            m,
            "| Stage | Agent | Runs | Input tokens | Output tokens | Cache tokens | Cost |\n|---|---|---:|---:|---:|---:|---:|"
        );
        for row in doc.costs.iter().chain([&doc.totals]) {
            let _ = writeln!(m, "{}", cost_md(row));
        }
        let _ = writeln!(m);
    }

    let _ = writeln!(m, "## Human decisions\n");
    if doc.decisions.is_empty() {
        let _ = writeln!(m, "None recorded.\n");
    } else {
        for d in &doc.decisions {
            let _ = writeln!(
                m,
                "- {} — **{}** {} (stage {})",
                utc_time(d.at_ms),
                md_inline(&d.who),
                md_inline(&d.what),
                d.stage
            );
        }
        let _ = writeln!(m);
    }

    let _ = writeln!(m, "## Open limitations\n");
    if doc.limitations.is_empty() {
        let _ = writeln!(m, "None recorded: no failed gate, rollback or open finding in the artifacts.\n");
    } else {
        for limit in &doc.limitations {
            let _ = writeln!(m, "- {}", md_inline(limit));
        }
        let _ = writeln!(m);
    }
    if !doc.resolved.is_empty() {
        let _ = writeln!(m, "Met and overcome on the way:\n");
        for line in &doc.resolved {
            let _ = writeln!(m, "- {}", md_inline(line));
        }
        let _ = writeln!(m);
    }
    if !doc.artifacts.is_empty() {
        let _ = writeln!(
            m,
            "Artifacts read: {}.\n",
            doc.artifacts.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
        );
    }

    if !doc.proposals.is_empty() {
        let _ = writeln!(m, "## Retro proposals\n");
        let _ = writeln!(m, "Awaiting a human (`baton proposals`, `baton lessons`) unless decided:\n");
        for line in &doc.proposals {
            let _ = writeln!(m, "- {}", md_inline(line));
        }
        let _ = writeln!(m);
    }

    let _ = writeln!(m, "## Next prompt\n");
    let _ = writeln!(m, "```text\n{}```", fence_safe(&doc.next_prompt));
    m
}

fn cost_md(row: &CostRow) -> String {
    let bold = row.stage == "total";
    let cell = |text: String| if bold { format!("**{text}**") } else { text };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} |",
        cell(row.stage.clone()),
        md_cell(&row.agent),
        row.runs,
        row.input_tokens,
        row.output_tokens,
        row.cache_tokens,
        cell(money(row.cost_usd))
    )
}

/// Text on one Markdown line: no line breaks.
fn md_inline(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// Text in a Markdown table cell: one line, no column separator.
fn md_cell(text: &str) -> String {
    md_inline(text).replace('|', "\\|")
}

/// Text inside a fenced block: a line of backticks would close the fence early.
fn fence_safe(text: &str) -> String {
    text.replace("```", "`\u{200b}``")
}

/// HTML-escaped text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const CSS: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}\
table{border-collapse:collapse;width:100%;display:block;overflow-x:auto}th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}\
td.n{text-align:right}tr.total td{font-weight:600}.pass{color:#1a7f37}.fail,.error{color:#cf222e}\
pre{background:#f6f8fa;padding:.8rem;overflow-x:auto;white-space:pre-wrap}code{background:#f6f8fa}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}";

/// The hand-off as one self-contained HTML page.
pub fn html(doc: &Document) -> String {
    let e = escape;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Hand-off {} — {}</title><style>{CSS}</style></head><body>\n",
        e(&doc.work_item),
        e(&doc.title)
    );
    let _ = writeln!(h, "<h1>Hand-off: {} — {}</h1>", e(&doc.work_item), e(&doc.title));
    let _ = writeln!(h, "<section id=\"summary\"><h2>Summary</h2><dl>");
    let merged = doc.merged_head.as_ref().map_or_else(
        || "not merged".to_string(),
        |head| format!("<code>{}</code> on <code>{}</code>", e(head), e(&doc.default_branch)),
    );
    for (term, value) in [
        ("Outcome", e(&doc.outcome)),
        ("Repository", format!("<code>{}</code>", e(&doc.repo))),
        ("Ticket", doc.ticket.as_deref().map_or_else(|| "none".into(), e)),
        ("Final stage", e(&doc.stage)),
        ("Branch", format!("<code>{}</code>", e(&doc.branch))),
        ("Merged", merged),
        ("Created", utc_time(doc.created_at_ms)),
        ("Hand-off written", utc_time(doc.generated_at_ms)),
    ] {
        let _ = writeln!(h, "<dt>{term}</dt><dd>{value}</dd>");
    }
    let _ = writeln!(h, "</dl></section>");

    let _ = writeln!(
        h,
        "<section id=\"changes\"><h2>What changed</h2>{}<p>Commits on <code>{}</code>:</p><ul>",
        doc.pull_request
            .as_deref()
            .map_or_else(String::new, |pr| format!("<p>Pull request: <code class=\"link\">{}</code></p>", e(pr))),
        e(&doc.commits_on)
    );
    if doc.commits.is_empty() {
        let _ = writeln!(h, "<li>none recorded</li>");
    }
    for commit in &doc.commits {
        let _ = writeln!(h, "<li><code>{}</code></li>", e(commit));
    }
    let _ = writeln!(h, "</ul>");
    match &doc.diff_stat {
        Some(stat) => {
            let _ = writeln!(h, "<pre>{}</pre>", e(stat));
        }
        None => {
            let _ = writeln!(h, "<p>Diff stat: none recorded.</p>");
        }
    }
    let _ = writeln!(h, "</section>");

    let _ = writeln!(h, "<section id=\"gates\"><h2>Gates and their proof</h2>");
    if doc.gates.is_empty() {
        let _ = writeln!(h, "<p>No gate verdict recorded.</p>");
    } else {
        let _ = writeln!(h, "<table><tr><th>When</th><th>Stage</th><th>Gate</th><th>Verdict</th><th>Proof</th></tr>");
        for g in &doc.gates {
            let evidence =
                g.evidence.as_deref().map(|ev| format!(" <code>{}</code>", e(short(ev)))).unwrap_or_default();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}{evidence}</td></tr>",
                utc_time(g.at_ms),
                e(&g.stage),
                e(&g.gate),
                e(&g.verdict),
                e(&g.verdict),
                e(&g.reason)
            );
        }
        let _ = writeln!(h, "</table>");
    }
    let _ = writeln!(h, "</section>");

    let _ = writeln!(h, "<section id=\"costs\"><h2>Cost and tokens</h2>");
    if doc.costs.is_empty() {
        let _ = writeln!(h, "<p>No agent run recorded.</p>");
    } else {
        let _ = writeln!(
            h,
            "<table><tr><th>Stage</th><th>Agent</th><th>Runs</th><th>Input tokens</th><th>Output tokens</th>\
             <th>Cache tokens</th><th>Cost</th></tr>"
        );
        for row in doc.costs.iter().chain([&doc.totals]) {
            let class = if row.stage == "total" { " class=\"total\"" } else { "" };
            let _ = writeln!(
                h,
                "<tr{class}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                e(&row.stage),
                e(&row.agent),
                row.runs,
                row.input_tokens,
                row.output_tokens,
                row.cache_tokens,
                e(&money(row.cost_usd))
            );
        }
        let _ = writeln!(h, "</table>");
    }
    let _ = writeln!(h, "</section>");

    let _ = writeln!(h, "<section id=\"decisions\"><h2>Human decisions</h2>");
    if doc.decisions.is_empty() {
        let _ = writeln!(h, "<p>None recorded.</p>");
    } else {
        let _ = writeln!(h, "<table><tr><th>When</th><th>Who</th><th>What</th><th>Stage</th></tr>");
        for d in &doc.decisions {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                utc_time(d.at_ms),
                e(&d.who),
                e(&d.what),
                e(&d.stage)
            );
        }
        let _ = writeln!(h, "</table>");
    }
    let _ = writeln!(h, "</section>");

    let _ = writeln!(h, "<section id=\"limitations\"><h2>Open limitations</h2>");
    if doc.limitations.is_empty() {
        let _ = writeln!(h, "<p>None recorded: no failed gate, rollback or open finding in the artifacts.</p>");
    } else {
        let _ = writeln!(h, "<ul>");
        for limit in &doc.limitations {
            let _ = writeln!(h, "<li>{}</li>", e(limit));
        }
        let _ = writeln!(h, "</ul>");
    }
    if !doc.resolved.is_empty() {
        let _ = writeln!(h, "<p>Met and overcome on the way:</p><ul>");
        for line in &doc.resolved {
            let _ = writeln!(h, "<li>{}</li>", e(line));
        }
        let _ = writeln!(h, "</ul>");
    }
    if !doc.artifacts.is_empty() {
        let names: Vec<String> = doc.artifacts.iter().map(|a| format!("<code>{}</code>", e(a))).collect();
        let _ = writeln!(h, "<p>Artifacts read: {}.</p>", names.join(", "));
    }
    let _ = writeln!(h, "</section>");

    if !doc.proposals.is_empty() {
        let _ = writeln!(h, "<section id=\"retro\"><h2>Retro proposals</h2><ul>");
        for line in &doc.proposals {
            let _ = writeln!(h, "<li>{}</li>", e(line));
        }
        let _ = writeln!(h, "</ul></section>");
    }

    let _ = writeln!(h, "<section id=\"next-prompt\"><h2>Next prompt</h2><pre>{}</pre></section>", e(&doc.next_prompt));
    let _ = writeln!(h, "</body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(86_399_000), "1970-01-01 23:59:59 UTC");
    }

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(escape("<script src=\"x\">&'"), "&lt;script src=&quot;x&quot;&gt;&amp;&#39;");
    }
}
