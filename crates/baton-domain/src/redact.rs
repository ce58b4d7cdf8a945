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

    /// `text` with every secret masked; borrowed when nothing matched.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|secret| text.contains(secret.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        Cow::Owned(out)
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
/// It holds back only the shortest tail that could still grow into a secret, so output is never
/// delayed by more than one secret's length.
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
        let masked = mask_bytes(&self.pending, &self.secrets);
        let hold = self.held_tail(&masked);
        let ready = masked.len() - hold;
        self.pending = masked[ready..].to_vec();
        masked[..ready].to_vec()
    }

    /// Ends the stream: returns what was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `text` that is a proper prefix of some secret.
    fn held_tail(&self, text: &[u8]) -> usize {
        let longest = self.secrets.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
        (1..=longest.min(text.len()))
            .rev()
            .find(|&n| {
                let tail = &text[text.len() - n..];
                self.secrets.iter().any(|secret| secret.len() > n && secret.starts_with(tail))
            })
            .unwrap_or(0)
    }
}

/// Replaces every occurrence of any secret (longest first at each position) with [`MASK`].
fn mask_bytes(text: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if let Some(secret) = secrets.iter().find(|secret| text[i..].starts_with(secret)) {
            out.extend_from_slice(MASK.as_bytes());
            i += secret.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
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
