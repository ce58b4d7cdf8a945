//! The coverage gate's pure half (SPEC §5.1): reading a line-coverage percentage out of what a
//! coverage tool printed or wrote, and judging it against the absolute floor and the repository's
//! baseline. No IO: the engine runs the command, reads the file it names and stores the baseline.

use serde::{Deserialize, Serialize};

/// How a measured coverage is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageMode {
    /// At least `coverage_min`.
    Absolute,
    /// At least the baseline minus the epsilon (absolute only while there is no baseline).
    Baseline,
    /// Both of the above.
    #[default]
    Both,
}

impl CoverageMode {
    pub fn name(self) -> &'static str {
        match self {
            CoverageMode::Absolute => "absolute",
            CoverageMode::Baseline => "baseline",
            CoverageMode::Both => "both",
        }
    }
}

/// The rule a measurement is judged by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoverageRule {
    pub mode: CoverageMode,
    /// The absolute floor in percent (0 = no floor).
    pub min_pct: f64,
    /// Points below the baseline still accepted (against flapping).
    pub epsilon_pct: f64,
}

/// A judged measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageJudgement {
    pub pass: bool,
    /// One sentence naming the measured value and what it was held against.
    pub reason: String,
}

/// Judges `measured_pct` by `rule`, against `baseline_pct` when the repository has one. Without a
/// baseline (bootstrap) only the absolute floor applies, whatever the mode.
pub fn judge(measured_pct: f64, baseline_pct: Option<f64>, rule: &CoverageRule) -> CoverageJudgement {
    let absolute_ok = measured_pct >= rule.min_pct;
    let absolute = format!("floor {:.2}%", rule.min_pct);
    let check_absolute = matches!(rule.mode, CoverageMode::Absolute | CoverageMode::Both) || baseline_pct.is_none();
    let mut failures = Vec::new();
    let mut held = Vec::new();
    if check_absolute {
        held.push(absolute.clone());
        if !absolute_ok {
            failures.push(format!("below the {absolute}"));
        }
    }
    if let Some(baseline) = baseline_pct
        && matches!(rule.mode, CoverageMode::Baseline | CoverageMode::Both)
    {
        let line = format!("baseline {baseline:.2}% (epsilon {:.2})", rule.epsilon_pct);
        if measured_pct < baseline - rule.epsilon_pct {
            failures.push(format!("below the {line}"));
        }
        held.push(line);
    }
    let bootstrap = if baseline_pct.is_none() { "; no baseline yet" } else { "" };
    if failures.is_empty() {
        CoverageJudgement {
            pass: true,
            reason: format!("line coverage {measured_pct:.2}% meets the {}{bootstrap}", held.join(" and the ")),
        }
    } else {
        CoverageJudgement {
            pass: false,
            reason: format!("line coverage {measured_pct:.2}% is {}{bootstrap}", failures.join(" and ")),
        }
    }
}

/// Reads a line-coverage percentage from a coverage tool's output or report file: coverage.py /
/// pytest-cov JSON (`totals.percent_covered`), cargo-llvm-cov JSON (`data[0].totals.lines.percent`),
/// an lcov tracefile (`LF:`/`LH:` summed), a `TOTAL` row of a text summary (pytest-cov's last
/// percentage; cargo-llvm-cov's third, the lines column), or a plain number (`87.5` or `87.5%`)
/// on the last line.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the coverage command printed nothing".into());
    }
    if trimmed.starts_with('{') {
        return from_json(trimmed);
    }
    if let Some(pct) = from_lcov(trimmed)? {
        return Ok(pct);
    }
    if let Some(pct) = from_total_row(trimmed) {
        return checked(pct);
    }
    let last = trimmed.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    match number(last) {
        Some(pct) => checked(pct),
        None => Err(format!(
            "no coverage percentage found: expected a number, a `TOTAL … NN%` row, coverage JSON or lcov; last line was `{}`",
            last.chars().take(120).collect::<String>()
        )),
    }
}

fn checked(pct: f64) -> Result<f64, String> {
    if pct.is_finite() && (0.0..=100.0).contains(&pct) {
        Ok(pct)
    } else {
        Err(format!("coverage percentage {pct} is not between 0 and 100"))
    }
}

fn number(token: &str) -> Option<f64> {
    token.trim().trim_end_matches('%').trim().parse::<f64>().ok()
}

fn from_json(text: &str) -> Result<f64, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("the coverage report is not valid JSON: {error}"))?;
    let pct = value
        .pointer("/totals/percent_covered")
        .or_else(|| value.pointer("/data/0/totals/lines/percent"))
        .and_then(serde_json::Value::as_f64)
        .ok_or("the coverage JSON has neither `totals.percent_covered` (coverage.py) nor `data[0].totals.lines.percent` (cargo-llvm-cov)")?;
    checked(pct)
}

/// `Ok(None)`: not an lcov tracefile.
fn from_lcov(text: &str) -> Result<Option<f64>, String> {
    let (mut found, mut hit) = (0u64, 0u64);
    let mut seen = false;
    for line in text.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("LF:") {
            found += n.trim().parse::<u64>().map_err(|_| format!("bad lcov line `{line}`"))?;
            seen = true;
        } else if let Some(n) = line.strip_prefix("LH:") {
            hit += n.trim().parse::<u64>().map_err(|_| format!("bad lcov line `{line}`"))?;
            seen = true;
        }
    }
    if !seen {
        return Ok(None);
    }
    if found == 0 {
        return Err("the lcov tracefile counts no instrumented lines (every LF is 0)".into());
    }
    checked(hit as f64 * 100.0 / found as f64).map(Some)
}

fn from_total_row(text: &str) -> Option<f64> {
    let row = text.lines().rev().map(str::trim).find(|l| l.starts_with("TOTAL"))?;
    let percents: Vec<f64> = row.split_whitespace().filter(|t| t.ends_with('%')).filter_map(number).collect();
    match percents.len() {
        0 => None,
        // cargo-llvm-cov (llvm-cov report): regions, functions, lines[, branches].
        n if n >= 3 => Some(percents[2]),
        _ => percents.last().copied(),
    }
}

/// The report artifact's text: front matter a gate or a person can read, then one line of prose.
pub fn report(status: &str, measured_pct: Option<f64>, baseline_pct: Option<f64>, reason: &str) -> String {
    let pct = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "null".into());
    format!(
        "---\ncoverage_status: {status}\ncoverage_pct: {}\nbaseline_pct: {}\n---\n\n# Coverage\n\n{reason}\n",
        pct(measured_pct),
        pct(baseline_pct)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(mode: CoverageMode, min_pct: f64) -> CoverageRule {
        CoverageRule { mode, min_pct, epsilon_pct: 0.1 }
    }

    #[test]
    fn plain_number_with_or_without_percent_sign() {
        // A script that prints only the figure is the simplest coverage command.
        assert_eq!(parse_percent("87.5\n"), Ok(87.5));
        assert_eq!(parse_percent("running...\n  91%  \n"), Ok(91.0));
    }

    #[test]
    fn pytest_cov_text_total_row() {
        // pytest-cov's terminal report: the TOTAL row's only percentage (with branches, its last).
        let text = "Name                 Stmts   Miss  Cover\n----------------------------------------\nmathkit/__init__.py      4      0   100%\nmathkit/ops.py          20      3    85%\n----------------------------------------\nTOTAL                   24      3    88%\n";
        assert_eq!(parse_percent(text), Ok(88.0));
        let branches = "Name    Stmts   Miss Branch BrPart  Cover\nTOTAL     120     10     30      4  89.33%\n";
        assert_eq!(parse_percent(branches), Ok(89.33));
    }

    #[test]
    fn cargo_llvm_cov_summary_takes_the_lines_column() {
        // llvm-cov report: regions, functions, lines, branches; the third percentage is lines.
        let text = "Filename   Regions  Missed Regions  Cover  Functions  Missed Functions  Executed  Lines  Missed Lines  Cover  Branches  Missed Branches  Cover\n------\nsrc/lib.rs      40               4  90.00%         10                 1    90.00%    200            25  87.50%         0                0      -\n------\nTOTAL           40               4  90.00%         10                 1    90.00%    200            25  87.50%         0                0      -\n";
        assert_eq!(parse_percent(text), Ok(87.5));
    }

    #[test]
    fn coverage_py_json_totals() {
        // `coverage json` / `pytest --cov-report=json`.
        let text = r#"{"meta": {"version": "7.4.0", "format": 2}, "files": {}, "totals": {"covered_lines": 90, "num_statements": 100, "percent_covered": 90.0, "percent_covered_display": "90", "missing_lines": 10, "excluded_lines": 0}}"#;
        assert_eq!(parse_percent(text), Ok(90.0));
    }

    #[test]
    fn cargo_llvm_cov_json_export() {
        // `cargo llvm-cov --json --summary-only`: llvm-cov export's shape.
        let text = r#"{"data":[{"files":[],"totals":{"branches":{"count":0,"covered":0,"notcovered":0,"percent":0},"functions":{"count":10,"covered":9,"percent":90},"lines":{"count":200,"covered":151,"percent":75.5},"regions":{"count":40,"covered":36,"notcovered":4,"percent":90}}}],"type":"llvm.coverage.json.export","version":"2.0.1"}"#;
        assert_eq!(parse_percent(text), Ok(75.5));
    }

    #[test]
    fn lcov_sums_every_file() {
        // Two records: 30 of 40 lines and 10 of 10 → 40 of 50 = 80%.
        let text = "TN:\nSF:src/a.rs\nDA:1,1\nLF:40\nLH:30\nend_of_record\nSF:src/b.rs\nLF:10\nLH:10\nend_of_record\n";
        assert_eq!(parse_percent(text), Ok(80.0));
        assert!(parse_percent("SF:x\nLF:0\nLH:0\nend_of_record\n").is_err());
    }

    #[test]
    fn nonsense_is_an_error_naming_what_was_expected() {
        // Tool failure must be visible, never read as 0%.
        let error = parse_percent("error: no tests ran\n").expect_err("no figure");
        assert!(error.contains("no coverage percentage found") && error.contains("no tests ran"), "{error}");
        assert!(parse_percent("").is_err());
        assert!(parse_percent("140").is_err());
        assert!(parse_percent(r#"{"totals": {}}"#).is_err());
    }

    #[test]
    fn bootstrap_without_a_baseline_checks_only_the_floor() {
        // The first merge of a repository has nothing to compare with but the floor.
        assert!(judge(10.0, None, &rule(CoverageMode::Baseline, 0.0)).pass);
        let low = judge(10.0, None, &rule(CoverageMode::Baseline, 50.0));
        assert!(!low.pass && low.reason.contains("floor 50.00%") && low.reason.contains("no baseline yet"));
    }

    #[test]
    fn baseline_with_epsilon() {
        // Within epsilon of the baseline passes; further below fails, naming both figures.
        let r = rule(CoverageMode::Baseline, 0.0);
        assert!(judge(79.95, Some(80.0), &r).pass);
        let fail = judge(79.0, Some(80.0), &r);
        assert!(!fail.pass);
        assert_eq!(fail.reason, "line coverage 79.00% is below the baseline 80.00% (epsilon 0.10)");
    }

    #[test]
    fn modes_pick_the_checks() {
        // absolute ignores the baseline, baseline ignores the floor, both needs both.
        assert!(judge(60.0, Some(90.0), &rule(CoverageMode::Absolute, 50.0)).pass);
        assert!(judge(60.0, Some(50.0), &rule(CoverageMode::Baseline, 70.0)).pass);
        assert!(!judge(60.0, Some(50.0), &rule(CoverageMode::Both, 70.0)).pass);
        assert!(!judge(60.0, Some(90.0), &rule(CoverageMode::Both, 50.0)).pass);
        assert!(judge(95.0, Some(90.0), &rule(CoverageMode::Both, 50.0)).pass);
    }

    #[test]
    fn report_front_matter() {
        // The artifact's front matter is what readers of the report parse.
        let text = report("pass", Some(81.0), None, "ok");
        assert!(text.starts_with("---\ncoverage_status: pass\ncoverage_pct: 81.00\nbaseline_pct: null\n---\n"));
    }
}
