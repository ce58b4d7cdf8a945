//! The `Host`/`Origin` allowlist: Baton answers only requests addressed to a name it is known by.
//!
//! A web page on another site can make a browser talk to `127.0.0.1:8377` by DNS rebinding (its own
//! name first resolves to the page's server, then to 127.0.0.1): the browser then treats Baton as
//! that site and lets the page read every answer. The browser still sends the page's name in
//! `Host`, so refusing unknown hosts stops the attack. A cross-site request from a browser also
//! carries `Origin`; one naming a site that is neither this server nor an allowed host is refused.
//!
//! Allowed by default: `localhost`, `127.0.0.1` and `[::1]` on any port, and the listen address
//! (unless it is `0.0.0.0`/`[::]`, which names no host); `server.allowed_hosts` adds names
//! (`name` for any port, `name:port` for one port, `*` for any host, which turns the check off).

use crate::ApiError;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The configuration key named in every refusal.
pub const CONFIG_KEY: &str = "server.allowed_hosts";

/// Header values quoted in messages are cut to this many characters.
const QUOTE_CHARS_MAX: usize = 80;

/// One allowed host: a lowercase name or IP literal (IPv6 in brackets), and optionally one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses `name`, `name:port`, `1.2.3.4`, `[::1]` or `[::1]:8377`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = split_authority(text.trim())
            .ok_or_else(|| format!("`{}` is not a host name or IP address, optionally with :port", quote(text)))?;
        Ok(HostPattern { host, port })
    }

    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && (self.port.is_none() || self.port == port)
    }
}

/// The hosts this server answers for.
#[derive(Debug, Clone)]
pub struct HostAllowlist {
    patterns: Vec<HostPattern>,
    any: bool,
}

impl HostAllowlist {
    /// The loopback names, the listen address (when it names one host) and `configured`.
    /// `*` among `configured` allows every host. An entry that does not parse is an error.
    pub fn new(listen: Option<SocketAddr>, configured: &[String]) -> Result<Self, String> {
        let mut patterns: Vec<HostPattern> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|name| HostPattern { host: (*name).to_string(), port: None })
            .collect();
        if let Some(listen) = listen
            && !listen.ip().is_unspecified()
        {
            let host = match listen.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            };
            patterns.push(HostPattern { host, port: Some(listen.port()) });
        }
        let mut any = false;
        for entry in configured {
            if entry.trim() == "*" {
                any = true;
            } else {
                patterns.push(HostPattern::parse(entry)?);
            }
        }
        Ok(HostAllowlist { patterns, any })
    }

    /// Whether `authority` (`host[:port]`, as in a `Host` header) names an allowed host.
    pub fn allows(&self, authority: &str) -> bool {
        if self.any {
            return true;
        }
        match split_authority(authority) {
            Some((host, port)) => self.patterns.iter().any(|p| p.matches(&host, port)),
            None => false,
        }
    }

    /// The verdict on one request's headers: `Ok` or the refusal to send.
    pub fn check(
        &self,
        host: Option<&[u8]>,
        target_authority: Option<&str>,
        origin: Option<&[u8]>,
    ) -> Result<(), ApiError> {
        let host = match host {
            Some(bytes) => std::str::from_utf8(bytes).map_err(|_| {
                ApiError::HostNotAllowed("the Host header is not text; send the server's name, e.g. localhost:8377".into())
            })?,
            None => target_authority.ok_or_else(|| {
                ApiError::HostNotAllowed(format!(
                    "the request has no Host header; send the name you reach Baton by (allowed names are set in {CONFIG_KEY})"
                ))
            })?,
        };
        for authority in std::iter::once(host).chain(target_authority) {
            if !self.allows(authority) {
                return Err(ApiError::HostNotAllowed(format!(
                    "the Host header `{}` names a host this server does not answer for (a DNS-rebinding web page \
                     sends exactly this); if you reach Baton by that name, add it to {CONFIG_KEY}",
                    quote(authority)
                )));
            }
        }
        let Some(origin) = origin else { return Ok(()) };
        let refused = |what: &str| {
            ApiError::OriginNotAllowed(format!(
                "the Origin header `{}` {what}; cross-site browser requests are refused (if that site is yours, \
                 add its host to {CONFIG_KEY})",
                quote(&String::from_utf8_lossy(origin))
            ))
        };
        let origin = std::str::from_utf8(origin).map_err(|_| refused("is not text"))?;
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .ok_or_else(|| refused("is not an http(s) site"))?;
        if authority.eq_ignore_ascii_case(host) || self.allows(authority) {
            Ok(())
        } else {
            Err(refused("names a site that is not an allowed host"))
        }
    }
}

/// The middleware: refuses a request whose `Host` or `Origin` is not allowed, before any route.
pub async fn guard(State(allowlist): State<Arc<HostAllowlist>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    for (name, key) in [("Host", header::HOST), ("Origin", header::ORIGIN)] {
        if headers.get_all(&key).iter().nth(1).is_some() {
            let refusal = ApiError::HostNotAllowed(format!("the request has more than one {name} header; send one"));
            return refusal.into_response();
        }
    }
    let host = headers.get(header::HOST).map(|v| v.as_bytes());
    let origin = headers.get(header::ORIGIN).map(|v| v.as_bytes());
    let target = request.uri().authority().map(|a| a.as_str());
    match allowlist.check(host, target, origin) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!("refused a request: {refusal}");
            refusal.into_response()
        }
    }
}

/// Splits `host[:port]` into a lowercase host (IPv6 kept in brackets, a trailing dot dropped) and
/// its port; `None` when it is not one host name or IP literal.
fn split_authority(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let label_ok = |label: &str| {
            !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if host.is_empty() || !host.split('.').all(label_ok) {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// A header value fit for a message: printable ASCII only, cut short.
fn quote(text: &str) -> String {
    let mut out: String =
        text.chars().take(QUOTE_CHARS_MAX).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    if text.chars().count() > QUOTE_CHARS_MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_list() -> HostAllowlist {
        HostAllowlist::new(Some("127.0.0.1:8377".parse().expect("an address")), &[]).expect("the defaults parse")
    }

    // Loopback names on any port, a trailing dot and upper case are allowed by default.
    #[test]
    fn loopback_names_are_allowed_by_default() {
        let list = default_list();
        for host in
            ["localhost", "localhost:8377", "LOCALHOST:1", "localhost.:8377", "127.0.0.1:9", "[::1]:8377", "[::1]"]
        {
            assert!(list.allows(host), "{host}");
        }
    }

    // Another name, a bare IPv6 address, junk and a userinfo trick are refused.
    #[test]
    fn other_hosts_and_junk_are_refused() {
        let list = default_list();
        for host in [
            "evil.example",
            "evil.example:8377",
            "::1",
            "localhost@evil",
            "localhost:99999",
            "",
            ":8377",
            "a b",
            "[::1]x",
        ] {
            assert!(!list.allows(host), "{host}");
        }
    }

    // The listen address is allowed on its own port; `0.0.0.0` adds nothing; `*` allows all.
    #[test]
    fn listen_address_and_configured_entries() {
        let list = HostAllowlist::new(
            Some("10.1.2.3:8377".parse().expect("an address")),
            &["baton.lan".into(), "ci:9000".into()],
        )
        .expect("entries parse");
        assert!(list.allows("10.1.2.3:8377"));
        assert!(!list.allows("10.1.2.3:80"));
        assert!(list.allows("baton.lan:443") && list.allows("baton.lan"));
        assert!(list.allows("ci:9000") && !list.allows("ci:9001"));
        let open = HostAllowlist::new(Some("0.0.0.0:8377".parse().expect("an address")), &[]).expect("defaults");
        assert!(!open.allows("0.0.0.0:8377"));
        let any = HostAllowlist::new(None, &["*".into()]).expect("a star");
        assert!(any.allows("anything.example"));
        assert!(HostAllowlist::new(None, &["http://x".into()]).is_err());
    }

    // A refused Host names the header value and the config key; Origin must be this server or allowed.
    #[test]
    fn check_names_header_and_key() {
        let list = default_list();
        let error = list.check(Some(b"rebind.example:8377"), None, None).expect_err("refused");
        assert_eq!(error.status(), axum::http::StatusCode::MISDIRECTED_REQUEST);
        let message = error.to_string();
        assert!(message.contains("Host header `rebind.example:8377`") && message.contains(CONFIG_KEY), "{message}");
        assert!(list.check(Some(b"localhost:8377"), None, Some(b"http://localhost:8377")).is_ok());
        let error = list.check(Some(b"localhost:8377"), None, Some(b"https://evil.example")).expect_err("refused");
        assert_eq!(error.status(), axum::http::StatusCode::FORBIDDEN);
        assert!(error.to_string().contains("Origin header `https://evil.example`"), "{error}");
        assert!(list.check(Some(b"localhost:8377"), None, Some(b"null")).is_err());
        assert!(list.check(None, None, None).is_err());
        assert!(list.check(Some(b"localhost"), Some("evil.example"), None).is_err());
    }
}
