//! Dashboard login sessions: a server-side map from a random session id (the `HttpOnly`,
//! `SameSite=Strict` cookie) to the principal that logged in with an API token, its CSRF token and
//! its expiry. The map is bounded: at the cap, the session closest to expiry is dropped first.

use baton_engine::Principal;
use baton_engine::access::{new_token, same_secret};
use std::collections::HashMap;
use std::sync::Mutex;

/// The session cookie's name.
pub const COOKIE: &str = "baton_session";
/// How long a session lives after login.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;
/// Most sessions kept at once; the oldest goes first past this.
pub const SESSIONS_MAX: usize = 1024;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// Sent back with every action (hidden field or `X-CSRF-Token`), compared in constant time.
    pub csrf: String,
    pub expires_at_ms: i64,
}

/// The server-side session map.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session for `principal`; returns its id (the cookie value) and the session.
    pub fn create(&self, principal: Principal, now_ms: i64) -> Result<(String, Session), String> {
        let id = new_token().map_err(|e| e.to_string())?;
        let csrf = new_token().map_err(|e| e.to_string())?;
        let session = Session { principal, csrf, expires_at_ms: now_ms + SESSION_TTL_MS };
        let mut map = self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.retain(|_, s| s.expires_at_ms > now_ms);
        while map.len() >= SESSIONS_MAX {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires_at_ms).map(|(id, _)| id.clone()) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session behind a cookie value; an expired one is removed.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match map.get(id) {
            Some(session) if session.expires_at_ms > now_ms => Some(session.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session (logout).
    pub fn remove(&self, id: &str) {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(id);
    }

    /// Sessions held now (tests and diagnostics).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a presented CSRF token matches the session's, without an early exit.
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    !presented.is_empty() && same_secret(presented.as_bytes(), session.csrf.as_bytes())
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_engine::Scope;

    fn principal() -> Principal {
        Principal { name: "api:t".into(), scope: Scope::Act }
    }

    // A session is found until it expires, and never after.
    #[test]
    fn sessions_expire() {
        let sessions = Sessions::default();
        let (id, _) = sessions.create(principal(), 1000).unwrap();
        assert!(sessions.get(&id, 1000 + SESSION_TTL_MS - 1).is_some());
        assert!(sessions.get(&id, 1000 + SESSION_TTL_MS).is_none());
        assert!(sessions.is_empty());
    }

    // The map never holds more than its cap.
    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        for i in 0..(SESSIONS_MAX as i64 + 5) {
            sessions.create(principal(), i).unwrap();
        }
        assert_eq!(sessions.len(), SESSIONS_MAX);
    }

    // CSRF tokens compare equal only when identical, and an empty one never matches.
    #[test]
    fn csrf_compare() {
        let sessions = Sessions::default();
        let (_, session) = sessions.create(principal(), 0).unwrap();
        assert!(csrf_matches(&session, &session.csrf.clone()));
        assert!(!csrf_matches(&session, ""));
        assert!(!csrf_matches(&session, &session.csrf[..session.csrf.len() - 1]));
    }

    // Cookies are found by exact name.
    #[test]
    fn cookie_lookup() {
        assert_eq!(cookie("a=1; baton_session=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie("baton_session_x=1", COOKIE), None);
    }
}
