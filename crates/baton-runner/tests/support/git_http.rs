//! A real git remote for tests: bare repositories under a root served over HTTP on 127.0.0.1 by
//! `git http-backend` (CGI) behind a tiny bridge that requires HTTP basic auth whose password is
//! the expected token. The server can be stopped (the port refuses connections) and started again
//! on the same port.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct GitHttp {
    root: PathBuf,
    port: u16,
    token: Option<String>,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Requests answered 401 (missing or wrong credentials).
    pub refused: Arc<AtomicUsize>,
}

impl GitHttp {
    /// Serves the bare repositories under `root`; with `token`, every request must carry basic
    /// auth whose password is `token`.
    pub fn start(root: &Path, token: Option<&str>) -> GitHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut server = GitHttp {
            root: root.to_path_buf(),
            port,
            token: token.map(str::to_string),
            running: Arc::new(AtomicBool::new(false)),
            thread: None,
            refused: Arc::new(AtomicUsize::new(0)),
        };
        server.serve(listener);
        server
    }

    /// The URL of the repository `name` (a directory under the root).
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// Stops listening: connections are refused until [`GitHttp::restart`].
    pub fn stop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        self.running.store(true, Ordering::SeqCst);
        let (running, root, token, refused) =
            (self.running.clone(), self.root.clone(), self.token.clone(), self.refused.clone());
        self.thread = Some(std::thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (root, token, refused) = (root.clone(), token.clone(), refused.clone());
                        std::thread::spawn(move || {
                            let _ = handle(stream, &root, token.as_deref(), &refused);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn handle(stream: TcpStream, root: &Path, token: Option<&str>, refused: &AtomicUsize) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut out = stream;
    if let Some(token) = token {
        let password = get("authorization")
            .and_then(|v| v.strip_prefix("Basic ").map(decode_base64))
            .and_then(|pair| pair.split_once(':').map(|(_, p)| p.to_string()));
        if password.as_deref() != Some(token) {
            refused.fetch_add(1, Ordering::SeqCst);
            out.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
    }
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "baton-test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(value) = get(header) {
            cgi.env(var, value);
        }
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output()?;
    let _ = writer.join();
    let raw = output.stdout;
    let split = find(&raw, b"\r\n\r\n").map(|i| (i, 4)).or_else(|| find(&raw, b"\n\n").map(|i| (i, 2)));
    let (head, rest) = match split {
        Some((i, n)) => (String::from_utf8_lossy(&raw[..i]).to_string(), &raw[i + n..]),
        None => (String::new(), &raw[..]),
    };
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    for header in head.lines() {
        match header.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => status = value.trim().to_string(),
            Some(_) => response.extend_from_slice(format!("{}\r\n", header.trim_end()).as_bytes()),
            None => {}
        }
    }
    out.write_all(format!("HTTP/1.1 {status}\r\n").as_bytes())?;
    out.write_all(&response)?;
    out.write_all(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", rest.len()).as_bytes())?;
    out.write_all(rest)?;
    out.flush()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn decode_base64(text: &str) -> String {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for sextet in text.bytes().filter_map(value) {
        bits = (bits << 6) | u32::from(sextet);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Runs git in `dir` as a person would (not Baton), failing the test when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Person", "-c", "user.email=person@localhost", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Git in `dir`: its output, or `None` when it failed.
pub fn try_git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git runs");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A bare repository `<root>/<name>` whose `main` has one commit (a README), with every ref
/// update logged (so tests can see that `main` only ever moved forward).
pub fn seed_bare(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let bare = root.join(name);
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    git(&bare, &["config", "core.logAllRefUpdates", "always"]);
    let work = root.join(format!("{name}-seed"));
    git(root, &["clone", "-q", bare.to_str().unwrap(), work.to_str().unwrap()]);
    git(&work, &["checkout", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "seed\n").unwrap();
    for (path, content) in files {
        let file = work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "seed"]);
    git(&work, &["push", "-q", "origin", "main"]);
    std::fs::remove_dir_all(&work).unwrap();
    bare
}

/// The values `refs/heads/<branch>` of the bare repository took since its reflog started, oldest
/// first: the value before the first logged update, then each update's new value. Each logged
/// update must start from the value the previous one left (no update went unlogged).
pub fn ref_history(bare: &Path, branch: &str) -> Vec<String> {
    let log = std::fs::read_to_string(bare.join("logs/refs/heads").join(branch)).unwrap_or_default();
    let mut history: Vec<String> = Vec::new();
    for line in log.lines() {
        let mut fields = line.split_whitespace();
        let (old, new) = (fields.next().unwrap().to_string(), fields.next().unwrap().to_string());
        match history.last() {
            Some(last) => assert_eq!(*last, old, "an update of {branch} went unlogged"),
            None if old.bytes().all(|b| b == b'0') => {}
            None => history.push(old),
        }
        history.push(new);
    }
    history
}
