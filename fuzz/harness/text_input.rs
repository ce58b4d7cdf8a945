//! Fuzz harness: the checks on untrusted input text (titles, refs, bodies, answers) and the
//! terminal escaping of stored text on output.

use baton_domain::text::{check_line, check_text, forbidden_in_line, is_bidi_control, terminal_safe};

/// Any text: the checks never panic; accepted titles hold no control or bidi character; escaped
/// output holds no control character but newline and tab and no bidi control.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if check_line(&text, 200).is_ok() {
        assert!(!text.chars().any(forbidden_in_line), "a title with a forbidden character was accepted");
        assert!(text.chars().count() <= 200);
    }
    if check_text(&text, 4096).is_ok() {
        assert!(!text.contains('\0') && text.len() <= 4096);
    }
    for multiline in [false, true] {
        let safe = terminal_safe(&text, multiline);
        assert!(
            !safe.chars().any(|c| (c.is_control() && !(multiline && matches!(c, '\n' | '\t'))) || is_bidi_control(c)),
            "an unsafe character reached the terminal"
        );
    }
}
