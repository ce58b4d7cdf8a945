//! Secret masking: every value Baton knows to be secret is replaced by [`MASK`] before text leaves
//! for the database, a log, a run log or an API response. [`Redactor`] works on whole strings;
//! [`StreamRedactor`] on a byte stream cut at arbitrary points (a process's output through a pipe).

use std::borrow::Cow;

mod masking;

pub use masking::{MASK, Redactor, SECRET_BYTES_MIN, StreamRedactor};

impl Redactor {
    /// Masks every string inside a JSON value, in place; returns whether anything changed.
    pub fn redact_json(&self, value: &mut serde_json::Value) -> bool {
        if self.is_empty() {
            return false;
        }
        match value {
            serde_json::Value::String(text) => match self.redact(text) {
                Cow::Owned(masked) => {
                    *text = masked;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            serde_json::Value::Array(items) => {
                items.iter_mut().fold(false, |changed, item| self.redact_json(item) | changed)
            }
            serde_json::Value::Object(fields) => {
                fields.values_mut().fold(false, |changed, item| self.redact_json(item) | changed)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every occurrence is masked, longer secrets win over their substrings, short values are no secrets.
    #[test]
    fn redact_masks_every_occurrence_longest_first() {
        let r = Redactor::new(["sk-abcdef123", "sk-abcdef123456", "short", ""]);
        assert_eq!(r.secrets().len(), 2);
        assert_eq!(r.redact("a sk-abcdef123456 b sk-abcdef123 c"), "a [REDACTED] b [REDACTED] c");
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        assert_eq!(r.redact("short"), "short");
    }

    // Strings nested anywhere in JSON are masked.
    #[test]
    fn redact_json_reaches_nested_strings() {
        let r = Redactor::new(["secret-value-1"]);
        let mut value = serde_json::json!({"a": ["x secret-value-1 y", {"b": "secret-value-1"}], "n": 3});
        assert!(r.redact_json(&mut value));
        assert_eq!(value, serde_json::json!({"a": ["x [REDACTED] y", {"b": "[REDACTED]"}], "n": 3}));
    }

    // Whatever the cut points, the stream's output equals the whole-text redaction and never
    // contains the secret.
    #[test]
    fn stream_redaction_is_independent_of_chunking() {
        let r = Redactor::new(["TOKEN-0123456789", "abcabcabd"]);
        let text = "xx TOKEN-0123456789 TOKEN-01234 abcabcabcabd TOKEN-0123456789".as_bytes();
        let whole = r.redact(std::str::from_utf8(text).unwrap()).into_owned();
        for size in 1..text.len() {
            let mut stream = r.stream();
            let mut out = Vec::new();
            for chunk in text.chunks(size) {
                out.extend(stream.push(chunk));
            }
            out.extend(stream.finish());
            assert_eq!(String::from_utf8(out).unwrap(), whole, "chunk size {size}");
        }
        assert!(!whole.contains("TOKEN-0123456789"));
    }

    // A secret that extends a shorter one is waited for, not masked as the shorter one; secrets
    // that overlap are masked by the same rule whole or streamed.
    #[test]
    fn stream_waits_for_the_longer_secret() {
        let r = Redactor::new(["AAAAAAAAAA", "AAAAAAAA", "xxxxBBBBBBBB", "AAAAxxxx"]);
        for text in ["AAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA", "AAAAxxxxBBBBBBBB"] {
            let whole = r.redact(text).into_owned();
            for size in 1..=text.len() {
                let mut stream = r.stream();
                let mut out = Vec::new();
                for chunk in text.as_bytes().chunks(size) {
                    out.extend(stream.push(chunk));
                }
                out.extend(stream.finish());
                assert_eq!(String::from_utf8(out).unwrap(), whole, "{text} in chunks of {size}");
            }
        }
        assert_eq!(r.redact("AAAAAAAAAA"), "[REDACTED]");
    }

    // Text that cannot start a secret is passed on at once, not held back.
    #[test]
    fn stream_holds_back_only_a_possible_secret_prefix() {
        let mut stream = Redactor::new(["TOKEN-0123456789"]).stream();
        assert_eq!(stream.push(b"hello\n"), b"hello\n");
        assert_eq!(stream.push(b"and TOK"), b"and ");
        assert_eq!(stream.push(b"EN-9"), b"TOKEN-9");
        assert_eq!(stream.finish(), b"");
    }
}
