//! Who may act (SPEC §16): principals, scoped API tokens stored only as digests, and the check a
//! human-gate decision must pass. Every input records its principal (`cli:<user>`,
//! `api:<token name>`), and the timeline shows it.

use crate::{Engine, EngineError};
use baton_store::{ApiTokenRecord, StoreError};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;

/// What a token may do: `read` ⊂ `act` ⊂ `admin`; `ingest` stands apart and may only report usage
/// (`POST /api/usage/ingest`), which `admin` may do too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read tasks, status and usage.
    Read,
    /// Also create tasks and act on them: approve, answer, confirm a deploy, stop, retry, resume.
    Act,
    /// Everything.
    Admin,
    /// Only report usage from an outside tool: a key safe to hand to scripts and other machines.
    Ingest,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "act" => Some(Scope::Act),
            "admin" => Some(Scope::Admin),
            "ingest" => Some(Scope::Ingest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Act => "act",
            Scope::Admin => "admin",
            Scope::Ingest => "ingest",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made an input, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `api:<token name>`, `cli:<user>`, later `telegram:<id>`, `tracker:<user>`.
    pub name: String,
    pub scope: Scope,
}

impl Principal {
    /// Whether this principal may do what `needed` allows.
    pub fn allows(&self, needed: Scope) -> bool {
        /// Place in the chain read ⊂ act ⊂ admin; `ingest` is outside it.
        fn rank(scope: Scope) -> Option<u8> {
            match scope {
                Scope::Read => Some(0),
                Scope::Act => Some(1),
                Scope::Admin => Some(2),
                Scope::Ingest => None,
            }
        }
        match (self.scope, needed) {
            (Scope::Admin, _) | (Scope::Ingest, Scope::Ingest) => true,
            (have, needed) => matches!((rank(have), rank(needed)), (Some(have), Some(needed)) if have >= needed),
        }
    }
}

/// Prefix of every token Baton issues (so a leaked one is recognisable in a scan).
pub const TOKEN_PREFIX: &str = "baton_";
/// Longest token name.
pub const TOKEN_NAME_BYTES_MAX: usize = 40;
/// Name of the principal of the token set in `server.api_token` (configuration, not the database).
pub const CONFIG_TOKEN_NAME: &str = "config";

/// The digest a token is stored and looked up by (hex SHA-256: tokens are 192 random bits, so a
/// fast digest is enough; nothing about the token can be recovered from the database).
pub fn token_digest(token: &str) -> String {
    digest_hex(&[token.as_bytes()])
}

/// Hex SHA-256 of `parts` joined by NUL bytes (tokens, idempotent requests).
pub fn digest_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0]);
        }
        hasher.update(part);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: the prefix and 48 hex digits from the kernel's random source.
pub fn new_token() -> Result<String, EngineError> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|error| EngineError::Invalid(format!("cannot read /dev/urandom for a new token: {error}")))?;
    Ok(format!("{TOKEN_PREFIX}{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// A token name: 1–40 of `[a-z0-9._-]`, so the principal `api:<name>` is plain in every timeline.
pub fn valid_token_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOKEN_NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess is right.
pub fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = presented.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        diff |= usize::from(byte ^ presented.get(i).copied().unwrap_or(0));
    }
    std::hint::black_box(diff) == 0
}

impl Engine {
    /// Creates a named token with `scope`; returns the token, which is shown once and never stored.
    pub async fn create_token(&self, name: &str, scope: Scope, by: &str) -> Result<String, EngineError> {
        if !valid_token_name(name) || name == CONFIG_TOKEN_NAME {
            return Err(EngineError::Invalid(format!(
                "`{name}` is not a usable token name: use 1 to {TOKEN_NAME_BYTES_MAX} of a-z, 0-9, `.`, `_`, `-` \
                 (`{CONFIG_TOKEN_NAME}` is reserved for server.api_token)"
            )));
        }
        let token = new_token()?;
        match self
            .store()
            .create_api_token(name, &token_digest(&token), scope.as_str(), by, self.clock().now_ms())
            .await
        {
            Ok(()) => Ok(token),
            Err(StoreError::Conflict(_)) => Err(EngineError::Invalid(format!(
                "a token named `{name}` exists (or existed: revoked names stay taken); choose another name"
            ))),
            Err(other) => Err(other.into()),
        }
    }

    /// The principal a presented token stands for: a live database token, or the configured one.
    pub async fn authenticate(&self, token: &str, configured: Option<&str>) -> Result<Option<Principal>, EngineError> {
        if let Some(expected) = configured.filter(|t| !t.trim().is_empty())
            && same_secret(token.as_bytes(), expected.as_bytes())
        {
            return Ok(Some(Principal { name: format!("api:{CONFIG_TOKEN_NAME}"), scope: Scope::Admin }));
        }
        let Some(record) = self.store().api_token_by_hash(&token_digest(token)).await? else {
            return Ok(None);
        };
        Ok(principal_of(&record))
    }
}

/// The principal of a stored token (none for an unknown scope written by a newer Baton).
pub fn principal_of(record: &ApiTokenRecord) -> Option<Principal> {
    Some(Principal { name: format!("api:{}", record.name), scope: Scope::parse(&record.scope)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Scopes nest: admin allows act and read, read allows only read.
    #[test]
    fn scopes_nest() {
        let reader = Principal { name: "api:ci".into(), scope: Scope::Read };
        let admin = Principal { name: "api:ops".into(), scope: Scope::Admin };
        assert!(reader.allows(Scope::Read) && !reader.allows(Scope::Act));
        assert!(admin.allows(Scope::Act) && admin.allows(Scope::Read));
        assert_eq!(Scope::parse("act"), Some(Scope::Act));
        // `ingest` may only ingest; admin may ingest too; read and act may not.
        let ingester = Principal { name: "api:tts".into(), scope: Scope::Ingest };
        assert!(ingester.allows(Scope::Ingest) && !ingester.allows(Scope::Read) && !ingester.allows(Scope::Act));
        assert!(admin.allows(Scope::Ingest) && !reader.allows(Scope::Ingest));
        let actor = Principal { name: "api:bot".into(), scope: Scope::Act };
        assert!(!actor.allows(Scope::Ingest) && actor.allows(Scope::Read));
        assert_eq!(Scope::parse("ingest"), Some(Scope::Ingest));
        assert_eq!(Scope::parse("write"), None);
    }

    // Digests are stable hex SHA-256 and new tokens are prefixed, long and distinct.
    #[test]
    fn tokens_are_random_and_digested() {
        assert_eq!(token_digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 48);
        assert_ne!(a, b);
        assert!(valid_token_name("ci-bot.1") && !valid_token_name("CI") && !valid_token_name(""));
    }

    // Equal secrets match; a prefix, an extension, a different byte or an empty guess do not.
    #[test]
    fn same_secret_only_when_equal() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cret!", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }
}
