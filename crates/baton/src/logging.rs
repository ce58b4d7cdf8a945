//! The log side of redaction: every line `tracing` writes to stderr passes through the engine's
//! redactor (set once the configuration is loaded), so a secret in an error message or a failure
//! never reaches the serve log.

use baton_domain::Redactor;
use std::io::Write;
use std::sync::OnceLock;

static REDACTOR: OnceLock<Redactor> = OnceLock::new();

/// Sets the secrets masked in every later log line (first call wins: one engine per process).
pub fn set_redactor(redactor: Redactor) {
    let _ = REDACTOR.set(redactor);
}

/// A `tracing` writer to stderr that masks the known secrets.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

impl Write for RedactingStderr {
    // `tracing`'s formatter hands over each event as one buffer, so a secret is never split.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut stderr = std::io::stderr().lock();
        match (REDACTOR.get(), std::str::from_utf8(buf)) {
            (Some(redactor), Ok(text)) if !redactor.is_empty() => {
                stderr.write_all(redactor.redact(text).as_bytes())?;
            }
            _ => stderr.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
