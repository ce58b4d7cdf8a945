//! Fuzz harness: secret masking of a process's output stream cut at arbitrary points (what
//! `baton shim` does to every run log). The input chooses the secrets, the text and the cuts.

use baton_domain::Redactor;

/// Input: `secret 1\nsecret 2\n\0text` (lossily decoded), the bytes after the text's end are cut
/// points. Checks that chunked masking equals whole-text masking and that no secret survives.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once('\0').unwrap_or(("fuzz-secret-value", &text));
    let redactor = Redactor::new(head.lines().map(str::to_string));
    let whole = redactor.redact(body).into_owned();
    // A secret no longer appears, unless the mask text itself helps spell it.
    for secret in redactor.secrets() {
        let spelled_by_mask = whole.match_indices(secret.as_str()).all(|(at, _)| {
            let (from, to) = (at.saturating_sub(16), (at + secret.len() + 16).min(whole.len()));
            whole.get(from..to).is_none_or(|around| around.contains("[REDACTED]"))
        });
        assert!(spelled_by_mask, "a secret survived masking");
    }
    let bytes = body.as_bytes();
    let cut = 1 + data.len() % 7;
    let mut stream = redactor.stream();
    let mut out = Vec::new();
    for chunk in bytes.chunks(cut) {
        out.extend(stream.push(chunk));
    }
    out.extend(stream.finish());
    assert_eq!(String::from_utf8_lossy(&out), whole, "chunked masking differs from whole-text masking");
}
