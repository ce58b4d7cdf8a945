//! The multi-instance test's fleet: three `baton serve` processes on one database, each with its
//! own data directory, started, SIGKILLed, restarted, frozen and thawed by the test; and a small
//! HTTP/1.1 client that talks to one instance's API with the configured token.

use crate::support::{Env, Server};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// The token every instance accepts (`server.api_token` of the test's config).
const TOKEN: &str = "test-token";
/// How long one API call may take before the test calls the instance unresponsive.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// One `baton serve` instance: its id, its process while it runs, and where it listens.
pub struct Instance {
    pub name: &'static str,
    server: Option<Server>,
    /// How many times it was started (its log is `serve-<name>-<starts - 1>.log`).
    pub starts: u32,
    addr: Option<String>,
    pub frozen: bool,
    /// The machine it says it runs on (`server.host`); `None`: this machine's host name.
    pub host: Option<&'static str>,
}

impl Instance {
    pub fn new(name: &'static str) -> Instance {
        Instance { name, server: None, starts: 0, addr: None, frozen: false, host: None }
    }

    /// An instance that says it runs on machine `host`, as if on another machine than the others.
    pub fn on_machine(name: &'static str, host: &'static str) -> Instance {
        Instance { host: Some(host), ..Instance::new(name) }
    }

    fn log(&self, env: &Env) -> PathBuf {
        env.root.join(format!("serve-{}-{}.log", self.name, self.starts.saturating_sub(1)))
    }

    /// Starts `baton serve` with this instance's id and data directory.
    pub fn start(&mut self, env: &Env) {
        assert!(self.server.is_none(), "instance {} is already running", self.name);
        let log = std::fs::File::create(env.root.join(format!("serve-{}-{}.log", self.name, self.starts))).unwrap();
        let mut command = env.command();
        if let Some(host) = self.host {
            command.env("BATON_SERVER__HOST", host);
        }
        let child = command
            .arg("serve")
            .env("BATON_LOG", "info")
            .env("BATON_DATA_DIR", env.root.join(format!("data-{}", self.name)))
            .env("BATON_SERVER__INSTANCE_ID", self.name)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("baton serve starts");
        self.server = Some(Server { child });
        self.starts += 1;
        self.addr = None;
        self.frozen = false;
    }

    /// SIGKILL: the instance stops heartbeating; the processes it started live on.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill9();
        }
        self.addr = None;
        self.frozen = false;
    }

    pub fn freeze(&mut self) {
        self.signal(Signal::SIGSTOP);
        self.frozen = true;
    }

    pub fn thaw(&mut self) {
        self.signal(Signal::SIGCONT);
        self.frozen = false;
    }

    fn signal(&self, signal: Signal) {
        let server = self.server.as_ref().unwrap_or_else(|| panic!("instance {} is not running", self.name));
        kill(Pid::from_raw(server.child.id() as i32), signal).unwrap();
    }

    pub fn is_up(&self) -> bool {
        self.server.is_some()
    }

    /// Running, not frozen: it may be chosen for an API call or a kill.
    pub fn is_running(&self) -> bool {
        self.is_up() && !self.frozen
    }

    /// The API address once the running instance has said where it listens.
    pub fn address(&mut self, env: &Env) -> Option<String> {
        if !self.is_running() {
            return None;
        }
        if self.addr.is_none() {
            let text = std::fs::read_to_string(self.log(env)).unwrap_or_default();
            self.addr = text
                .split("listening on http://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string);
        }
        self.addr.clone()
    }
}

/// A reply of the API: status code and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request to `addr` with the bearer token; `Err` when the connection failed.
pub fn call(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, String> {
    let socket: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&socket, CALL_TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(CALL_TIMEOUT)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("{method} {path} to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("{method} {path} to {addr}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{method} {path} to {addr}: no headers: {}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let rest = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status: {head}"))?;
    let chunked = head.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Ok(Reply { status, body: String::from_utf8_lossy(&body).to_string() })
}

/// The body of a chunked reply (sizes count bytes).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16).unwrap_or(0);
        let after = &rest[end + 2..];
        if size == 0 || after.len() < size {
            break;
        }
        body.extend_from_slice(&after[..size]);
        rest = after[size..].strip_prefix(b"\r\n").unwrap_or(&after[size..]);
    }
    body
}
