//! Secret masking: every value Baton knows to be secret is replaced by [`MASK`] before text leaves
//! for the database, a log, a run log or an API response. [`Redactor`] works on whole strings;
//! [`StreamRedactor`] on a byte stream cut at arbitrary points (a process's output through a pipe).

use std::borrow::Cow;

/// What a secret is replaced with.
pub const MASK: &str = "[REDACTED]";
/// Values shorter than this are not treated as secrets: masking `1` or `true` would mangle every
/// text while protecting nothing.
pub const SECRET_BYTES_MIN: usize = 8;

/// The set of secret values to mask, longest first (so a secret containing another is masked whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Builds a redactor from candidate values; short, blank and duplicate values are dropped.
    pub fn new<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut secrets: Vec<String> = values
            .into_iter()
            .map(Into::into)
            .map(|value| value.trim().to_string())
            .filter(|value| value.len() >= SECRET_BYTES_MIN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self { secrets }
    }

    /// A redactor with these values added.
    pub fn with<I, S>(&self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(self.secrets.iter().cloned().chain(values.into_iter().map(Into::into)))
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The secret values (for handing to a process that redacts its own output stream).
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// `text` with every secret masked; borrowed when nothing matched. Scans left to right and
    /// masks the longest secret starting at each position (the same rule as [`StreamRedactor`],
    /// so a stream and the whole text always mask alike).
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|secret| text.contains(secret.as_str())) {
            return Cow::Borrowed(text);
        }
        let secrets: Vec<&[u8]> = self.secrets.iter().map(|s| s.as_bytes()).collect();
        let (masked, _) = mask(text.as_bytes(), &secrets, true);
        // Secrets are whole UTF-8 strings, so every match starts and ends on a char boundary.
        Cow::Owned(String::from_utf8(masked).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

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

    /// A stream redactor over the same secrets.
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor { secrets: self.secrets.iter().map(|s| s.as_bytes().to_vec()).collect(), pending: Vec::new() }
    }
}

/// Masks secrets in a byte stream that arrives in chunks cut anywhere, even inside a secret.
/// It holds back only from the first position where a secret might start but the bytes to decide
/// have not arrived, so output is never delayed by more than one secret's length.
#[derive(Debug, Clone, Default)]
pub struct StreamRedactor {
    secrets: Vec<Vec<u8>>,
    pending: Vec<u8>,
}

impl StreamRedactor {
    /// Feeds `chunk`; returns the bytes that are safe to write now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        let secrets: Vec<&[u8]> = self.secrets.iter().map(Vec::as_slice).collect();
        let (ready, used) = mask(&self.pending, &secrets, false);
        self.pending.drain(..used);
        ready
    }

    /// Ends the stream: returns what was held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let secrets: Vec<&[u8]> = self.secrets.iter().map(Vec::as_slice).collect();
        let (rest, _) = mask(&self.pending, &secrets, true);
        self.pending.clear();
        rest
    }
}

/// Masks `text` left to right, at each position the longest secret that starts there (`secrets`
/// are sorted longest first). Unless `at_end`, stops where a secret might start but `text` ends
/// before that can be decided. Returns the output and how many input bytes it consumed.
fn mask(text: &[u8], secrets: &[&[u8]], at_end: bool) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < text.len() {
        let rest = &text[i..];
        for secret in secrets {
            if rest.len() >= secret.len() {
                if rest.starts_with(secret) {
                    out.extend_from_slice(MASK.as_bytes());
                    i += secret.len();
                    continue 'scan;
                }
            } else if !at_end && secret.starts_with(rest) {
                break 'scan;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    (out, i)
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
