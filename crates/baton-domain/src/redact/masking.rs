//! The masking itself, on nothing but the standard library: [`Redactor`] over whole strings and
//! [`StreamRedactor`] over a byte stream. Baton's embedded shim is built from this same file.

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
