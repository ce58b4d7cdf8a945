//! Untrusted text at the edges: the checks every title, body, answer and reference passes before it
//! is stored, and the escaping of terminal control and bidirectional characters on output.

use std::borrow::Cow;
use std::fmt;

/// Why a piece of input text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextProblem {
    Empty,
    /// Longer than the limit: (limit, unit).
    TooLong(usize, &'static str),
    /// A character that is not allowed there, with its position in characters.
    Forbidden {
        ch: char,
        at: usize,
    },
}

impl fmt::Display for TextProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextProblem::Empty => f.write_str("is empty"),
            TextProblem::TooLong(limit, unit) => write!(f, "is longer than {limit} {unit}"),
            TextProblem::Forbidden { ch, at } => {
                write!(f, "contains the control character U+{:04X} at character {at}; remove it", u32::from(*ch))
            }
        }
    }
}

/// Bidirectional formatting characters (embeddings, overrides, isolates, marks): they make text
/// display in a different order than it is stored ("Trojan Source").
pub fn is_bidi_control(ch: char) -> bool {
    matches!(ch, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters no single-line field may hold: C0 and C1 controls (NUL, ESC, BEL, …, tab and
/// newlines included), DEL, bidi controls, and the line/paragraph separators.
pub fn forbidden_in_line(ch: char) -> bool {
    ch.is_control() || is_bidi_control(ch) || matches!(ch, '\u{2028}' | '\u{2029}')
}

/// Characters no multi-line text may hold: every control except tab, newline, carriage return and
/// ESC. (ESC, for terminal logs pasted into a ticket, and bidi marks, which right-to-left prose
/// needs, are allowed in bodies and answers; they are escaped on every terminal output instead.)
pub fn forbidden_in_text(ch: char) -> bool {
    ch.is_control() && !matches!(ch, '\t' | '\n' | '\r' | '\u{1b}')
}

/// Checks a single-line field (title, reference): not blank, at most `max_chars` characters, no
/// control or bidi characters.
pub fn check_line(text: &str, max_chars: usize) -> Result<(), TextProblem> {
    if text.trim().is_empty() {
        return Err(TextProblem::Empty);
    }
    if let Some((at, ch)) = text.chars().enumerate().find(|(_, ch)| forbidden_in_line(*ch)) {
        return Err(TextProblem::Forbidden { ch, at });
    }
    if text.chars().count() > max_chars {
        return Err(TextProblem::TooLong(max_chars, "characters"));
    }
    Ok(())
}

/// Checks multi-line text (body, answer): at most `max_bytes` bytes, no NUL or other control
/// character but tab, line breaks and ESC. Empty is allowed; callers that need text check that.
pub fn check_text(text: &str, max_bytes: usize) -> Result<(), TextProblem> {
    if text.len() > max_bytes {
        return Err(TextProblem::TooLong(max_bytes, "bytes"));
    }
    if let Some((at, ch)) = text.chars().enumerate().find(|(_, ch)| forbidden_in_text(*ch)) {
        return Err(TextProblem::Forbidden { ch, at });
    }
    Ok(())
}

/// Makes text safe to print on a terminal: control characters (but newline and tab when
/// `multiline`) and bidi controls become visible escapes like `\u{1b}`, so stored text can never
/// move the cursor, ring the bell, set the window title or reorder a line.
pub fn terminal_safe(text: &str, multiline: bool) -> Cow<'_, str> {
    let unsafe_char = |ch: char| {
        (ch.is_control() && !(multiline && matches!(ch, '\n' | '\t')))
            || is_bidi_control(ch)
            || matches!(ch, '\u{2028}' | '\u{2029}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        if unsafe_char(ch) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(ch)));
        } else {
            out.push(ch);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Titles refuse NUL, ESC, BEL, newlines and bidi overrides, and count characters, not bytes.
    #[test]
    fn check_line_refuses_controls_and_bidi() {
        assert_eq!(check_line("Fix the login", 20), Ok(()));
        assert_eq!(check_line("  ", 20), Err(TextProblem::Empty));
        assert_eq!(check_line("a\0b", 20), Err(TextProblem::Forbidden { ch: '\0', at: 1 }));
        assert!(check_line("\u{1b}[2Jclear", 20).is_err());
        assert!(check_line("bell\u{7}", 20).is_err());
        assert!(check_line("two\nlines", 20).is_err());
        assert!(check_line("abc\u{202e}cba", 20).is_err());
        assert_eq!(check_line("éééé", 4), Ok(()));
        assert_eq!(check_line("ééééé", 4), Err(TextProblem::TooLong(4, "characters")));
    }

    // Bodies keep newlines and tabs but refuse NUL and are bounded in bytes.
    #[test]
    fn check_text_allows_lines_refuses_nul() {
        assert_eq!(check_text("line 1\n\tline 2\r\n", 100), Ok(()));
        assert_eq!(check_text("", 100), Ok(()));
        assert!(check_text("nul\0", 100).is_err());
        assert!(check_text("bell\u{7}", 100).is_err());
        assert_eq!(check_text("colored \u{1b}[31mlog\u{1b}[0m", 100), Ok(()));
        assert_eq!(check_text("12345", 4), Err(TextProblem::TooLong(4, "bytes")));
        assert!(TextProblem::Forbidden { ch: '\0', at: 3 }.to_string().contains("U+0000"));
    }

    // Escapes are visible and reversible to the eye; clean text is borrowed.
    #[test]
    fn terminal_safe_escapes_controls_and_bidi() {
        assert!(matches!(terminal_safe("plain text", false), Cow::Borrowed(_)));
        assert_eq!(terminal_safe("a\u{1b}]0;pwned\u{7}b", false), "a\\u{1b}]0;pwned\\u{7}b");
        assert_eq!(terminal_safe("x\u{202e}y", false), "x\\u{202e}y");
        assert_eq!(terminal_safe("l1\nl2\tz", true), "l1\nl2\tz");
        assert_eq!(terminal_safe("l1\nl2", false), "l1\\u{a}l2");
    }
}
