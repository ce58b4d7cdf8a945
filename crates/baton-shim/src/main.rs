//! The small supervisor Baton starts around every agent and repository command: the same contract
//! as `baton shim` (see `baton_runner::shim`), in a program of its own that starts in a fraction of
//! the time the whole `baton` binary takes to load.
//!
//! `baton-shim shim --exit-file FILE -- PROGRAM ARGS…` leads the process group Baton started it
//! in, writes `launch.json` (its pid, group and start time) next to `FILE` before the command
//! starts, runs the command in the same group with the secrets named in `BATON_SHIM_REDACT` masked
//! in its output (which goes to the shim's own stdout and stderr: the run's files), survives
//! SIGTERM, SIGINT and SIGHUP (the command, in the same group, receives them and ends), and records
//! how the command ended in `FILE` by temp file and rename. It exits with the command's code, or
//! 128 + the signal that ended it.
//!
//! It uses nothing but the standard library: `baton-runner`'s build script compiles this file with
//! `rustc` alone and embeds the program in the `baton` binary, which starts it from a sealed memory
//! file. The masking is `baton_domain`'s own source file, included here.

#![allow(clippy::disallowed_methods)] // This program exists to start one process.

#[allow(dead_code)]
#[path = "../../baton-domain/src/redact/masking.rs"]
mod masking;

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Environment variable carrying the secrets to mask, as a JSON array of strings; removed from the
/// command's environment.
const REDACT_ENV: &str = "BATON_SHIM_REDACT";
/// Name of the launch record, next to the exit file.
const LAUNCH_FILE: &str = "launch.json";
/// How long output is still copied after the command exited (a background process it left may
/// hold the pipes open forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// The argument Baton passes once to check that this program starts here at all.
const PROBE: &str = "--probe";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.len() == 1 && args[0] == PROBE {
        return ExitCode::SUCCESS;
    }
    let Some((exit_file, command)) = parse_args(&args) else {
        eprintln!("usage: baton-shim shim --exit-file FILE -- PROGRAM [ARGS…]");
        return ExitCode::from(2);
    };
    let code = run(&exit_file, command);
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX))
}

/// `shim --exit-file FILE -- PROGRAM ARGS…`, exactly as Baton passes them.
fn parse_args(args: &[OsString]) -> Option<(PathBuf, Command)> {
    let [shim, flag, exit_file, dashes, program, args @ ..] = args else {
        return None;
    };
    let shaped = shim == "shim" && flag == "--exit-file" && dashes == "--";
    (shaped && !exit_file.is_empty()).then(|| {
        let mut command = Command::new(program);
        command.args(args);
        (PathBuf::from(exit_file), command)
    })
}

fn run(exit_file: &Path, mut command: Command) -> i32 {
    sys::survive_stop_signals();
    let secrets = std::env::var(REDACT_ENV).ok().and_then(|json| parse_string_array(&json)).unwrap_or_default();
    let redactor = masking::Redactor::new(secrets);
    // Before the command starts: who this process group is, for a Baton that must adopt it.
    let pid = std::process::id();
    let stat = own_stat();
    let launch = format!(
        "{{\"pid\":{pid},\"pgid\":{},\"start_ticks\":{}}}",
        stat.map_or(pid, |(pgid, _)| pgid),
        json_number(stat.map(|(_, ticks)| ticks)),
    );
    write_atomically(&exit_file.with_file_name(LAUNCH_FILE), &launch);
    // The output goes through pipes even with nothing to mask: a write to the run's files that
    // fails (a full disk) drops that chunk here, and never fails the command's own write.
    let spawned = command.env_remove(REDACT_ENV).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            eprintln!("baton shim: cannot start `{}`: {error}", command.get_program().to_string_lossy());
            write_atomically(exit_file, &exit_json(Some(127), None));
            return 127;
        }
    };
    // Both streams are copied on this one thread, by `poll`: no thread to start for each (the
    // shim runs around every command, so what it costs is paid many times a ticket).
    let (out, err): (Box<dyn Write>, Box<dyn Write>) = (Box::new(std::io::stdout()), Box::new(std::io::stderr()));
    let outputs = [
        child.stdout.take().map(|pipe| Output::new(pipe_file(pipe), out, redactor.stream())),
        child.stderr.take().map(|pipe| Output::new(pipe_file(pipe), err, redactor.stream())),
    ];
    let status = copy_until_exit(&mut child, outputs);
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = (status.and_then(|s| s.code()), status.and_then(|s| s.signal()));
    write_atomically(exit_file, &exit_json(code, signal));
    code.unwrap_or_else(|| 128 + signal.unwrap_or(0))
}

/// One of the command's output streams: the read end of its pipe, where its bytes go (the shim's
/// own stdout or stderr: the run's files), and the masking between them.
struct Output<R: Read, W: Write> {
    pipe: R,
    to: W,
    redactor: masking::StreamRedactor,
}

impl<R: Read, W: Write> Output<R, W> {
    fn new(pipe: R, to: W, redactor: masking::StreamRedactor) -> Self {
        Output { pipe, to, redactor }
    }

    /// Copies what one read returns; `false` at the end of the stream (or a read that failed).
    /// A failed write (a full disk) drops that chunk and keeps draining, so the command never
    /// blocks on a pipe nobody reads.
    fn copy_some(&mut self, buffer: &mut [u8]) -> bool {
        match self.pipe.read(buffer) {
            Ok(0) => false,
            Ok(n) => {
                let ready = self.redactor.push(&buffer[..n]);
                if !ready.is_empty() {
                    let _ = self.to.write_all(&ready).and_then(|_| self.to.flush());
                }
                true
            }
            Err(error) => error.kind() == ErrorKind::Interrupted,
        }
    }

    /// What the masking still holds back, written out at the end of the stream.
    fn finish(mut self) {
        let rest = self.redactor.finish();
        let _ = self.to.write_all(&rest).and_then(|_| self.to.flush());
    }
}

/// The read end of one of the command's pipes, as a file (both then have one type).
fn pipe_file(pipe: impl Into<std::os::fd::OwnedFd>) -> std::fs::File {
    std::fs::File::from(pipe.into())
}

/// How often the copying looks whether the command exited while its output is still open (a
/// background process it left may hold the pipes).
const EXIT_CHECK: Duration = Duration::from_millis(100);

/// Copies both output streams until each ends, then returns how the command ended. Once the
/// command has exited, the streams still open are copied for [`DRAIN_AFTER_EXIT`] more at most.
fn copy_until_exit(
    child: &mut std::process::Child,
    mut outputs: [Option<Output<std::fs::File, Box<dyn Write>>>; 2],
) -> Option<std::process::ExitStatus> {
    use std::os::fd::AsRawFd;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut status = None;
    let mut deadline: Option<Instant> = None;
    let mut last_check = Instant::now();
    while outputs.iter().any(Option::is_some) {
        let now = Instant::now();
        if status.is_none() && now.duration_since(last_check) >= EXIT_CHECK {
            last_check = now;
            if let Ok(Some(ended)) = child.try_wait() {
                status = Some(ended);
                deadline = Some(now + DRAIN_AFTER_EXIT);
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let wait = deadline.map_or(EXIT_CHECK, |d| d.saturating_duration_since(now).min(EXIT_CHECK));
        let fds: Vec<i32> = outputs.iter().flatten().map(|o| o.pipe.as_raw_fd()).collect();
        let ready = sys::readable(&fds, wait);
        let mut ready = ready.into_iter();
        for slot in outputs.iter_mut().filter(|o| o.is_some()) {
            if ready.next() != Some(true) {
                continue;
            }
            if slot.as_mut().is_some_and(|output| !output.copy_some(&mut buffer))
                && let Some(ended) = slot.take()
            {
                ended.finish();
            }
        }
    }
    for output in outputs.into_iter().flatten() {
        output.finish();
    }
    match status {
        Some(status) => Some(status),
        None => child.wait().ok(),
    }
}

/// This process's group and start time (clock ticks since boot) from `/proc/self/stat`.
fn own_stat() -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last `)`.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // Field 3 (state) is fields[0]: the group is field 5, the start time field 22.
    Some((fields.get(2)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

fn json_number(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// The exit record, as `baton_runner::shim::ExitRecord` reads it.
fn exit_json(code: Option<i32>, signal: Option<i32>) -> String {
    format!("{{\"code\":{},\"signal\":{}}}", json_number(code), json_number(signal))
}

/// Writes `text` by temp file and rename, so a reader never sees half of it.
fn write_atomically(path: &Path, text: &str) {
    let temp = path.with_extension("json.tmp");
    if let Err(error) = std::fs::write(&temp, text).and_then(|_| std::fs::rename(&temp, path)) {
        eprintln!("baton shim: cannot write {}: {error}", path.display());
    }
}

/// Parses a JSON array of strings (what Baton puts in [`REDACT_ENV`]); `None` for anything else.
fn parse_string_array(text: &str) -> Option<Vec<String>> {
    let mut chars = text.trim().chars().peekable();
    let mut items = Vec::new();
    let skip_blank = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
    };
    if chars.next()? != '[' {
        return None;
    }
    skip_blank(&mut chars);
    if chars.next_if_eq(&']').is_some() {
        return chars.next().is_none().then_some(items);
    }
    loop {
        skip_blank(&mut chars);
        if chars.next()? != '"' {
            return None;
        }
        items.push(parse_string_body(&mut chars)?);
        skip_blank(&mut chars);
        match chars.next()? {
            ',' => continue,
            ']' => return chars.next().is_none().then_some(items),
            _ => return None,
        }
    }
}

/// The rest of a JSON string after its opening quote, escapes decoded.
fn parse_string_body(chars: &mut impl Iterator<Item = char>) -> Option<String> {
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let high = hex4(chars)?;
                    let code = if (0xD800..0xDC00).contains(&high) {
                        if chars.next()? != '\\' || chars.next()? != 'u' {
                            return None;
                        }
                        let low = hex4(chars)?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return None;
                        }
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        high
                    };
                    out.push(char::from_u32(code)?);
                }
                _ => return None,
            },
            c if (c as u32) < 0x20 => return None,
            c => out.push(c),
        }
    }
}

fn hex4(chars: &mut impl Iterator<Item = char>) -> Option<u32> {
    (0..4).try_fold(0, |acc, _| Some(acc * 16 + chars.next()?.to_digit(16)?))
}

/// What std cannot do: keep running through a stop signal, and wait on two pipes at once.
#[allow(unsafe_code)]
mod sys {
    use std::ffi::{c_int, c_short, c_ulong};

    const SIGHUP: c_int = 1;
    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;

    unsafe extern "C" {
        fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    }

    extern "C" fn carry_on(_: c_int) {}

    #[repr(C)]
    struct PollFd {
        fd: c_int,
        events: c_short,
        revents: c_short,
    }

    const POLLIN: c_short = 0x1;

    unsafe extern "C" {
        fn poll(fds: *mut PollFd, nfds: c_ulong, timeout: c_int) -> c_int;
    }

    /// Waits up to `wait` for any of `fds` to be readable (data, its end, or an error: each of
    /// which a read then tells); one answer for each fd. An interrupted wait answers none ready.
    pub fn readable(fds: &[c_int], wait: std::time::Duration) -> Vec<bool> {
        let mut polled: Vec<PollFd> = fds.iter().map(|&fd| PollFd { fd, events: POLLIN, revents: 0 }).collect();
        let timeout = c_int::try_from(wait.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: `polled` is a live, exclusively borrowed array of `polled.len()` `struct pollfd`s
        // (the same layout: int, short, short), which `poll` only reads and writes within.
        let n = unsafe { poll(polled.as_mut_ptr(), polled.len() as c_ulong, timeout) };
        polled.iter().map(|p| n > 0 && p.revents != 0).collect()
    }

    /// Installs a handler that does nothing for SIGTERM, SIGINT and SIGHUP: the shim lives on to
    /// record the command's end, and the command (whose handlers exec resets) still receives them
    /// from the group's signal. glibc's `signal` keeps the handler and restarts interrupted calls.
    pub fn survive_stop_signals() {
        for signum in [SIGHUP, SIGINT, SIGTERM] {
            // SAFETY: `carry_on` touches no state, so it is async-signal-safe; the signal numbers
            // are Linux's, and replacing these handlers affects no other code in this program.
            unsafe {
                signal(signum, carry_on);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The secrets Baton sends (serde_json's encoding) come back exactly, escapes and all.
    #[test]
    fn string_arrays_as_serde_json_writes_them_parse_back() {
        let cases: Vec<Vec<String>> = vec![
            vec![],
            vec!["sk-plain-secret".into()],
            vec!["quote\"back\\slash/".into(), "tab\tnew\nline\r\u{1}\u{1f}".into()],
            vec!["ключ-секрет-😀-𝄞".into(), "  spaced  ".into()],
        ];
        for case in cases {
            let json = serde_json::to_string(&case).unwrap();
            assert_eq!(parse_string_array(&json), Some(case.clone()), "{json}");
            let pretty = serde_json::to_string_pretty(&case).unwrap();
            assert_eq!(parse_string_array(&pretty), Some(case), "{pretty}");
        }
        assert_eq!(parse_string_array(r#"["\ud83d\ude00"]"#), Some(vec!["😀".to_string()]));
    }

    // Anything that is not an array of strings is refused rather than half-read.
    #[test]
    fn malformed_arrays_are_refused() {
        for bad in ["", "[", "[\"a\"", "[\"a\",]", "[1]", "{\"a\":1}", "[\"a\"] x", "[\"\\x\"]", "[\"\\ud800\"]"] {
            assert_eq!(parse_string_array(bad), None, "{bad:?}");
        }
    }

    // Only the exact shape Baton launches is accepted.
    #[test]
    fn arguments_must_have_the_launch_shape() {
        let os = |items: &[&str]| items.iter().map(OsString::from).collect::<Vec<_>>();
        let (file, command) = parse_args(&os(&["shim", "--exit-file", "/r/exit.json", "--", "sh", "-c", "x"])).unwrap();
        assert_eq!(file, PathBuf::from("/r/exit.json"));
        assert_eq!(command.get_program(), "sh");
        assert_eq!(command.get_args().collect::<Vec<_>>(), ["-c", "x"]);
        assert!(parse_args(&os(&["shim", "--exit-file", "/r/exit.json", "--"])).is_none());
        assert!(parse_args(&os(&["shim", "--exit", "/r/exit.json", "--", "sh"])).is_none());
        assert!(parse_args(&os(&["shim", "--exit-file", "", "--", "sh"])).is_none());
    }

    // This process's own stat parses: its group is its real one and the start time is stable.
    #[test]
    fn own_stat_reads_the_group_and_start_time() {
        let (pgid, ticks) = own_stat().unwrap();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        assert_eq!(pgid.to_string(), fields[2]);
        assert_eq!(own_stat().unwrap().1, ticks);
    }

    // A chunked stream is masked as a whole, and what follows is copied as it is.
    #[test]
    fn copying_masks_secrets_across_reads() {
        struct Chunks(Vec<Vec<u8>>);
        impl Read for Chunks {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Ok(0);
                }
                let chunk = self.0.remove(0);
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
        }
        let redactor = masking::Redactor::new(["sk-secret-value"]);
        let input = Chunks(vec![b"key=sk-se".to_vec(), b"cret-va".to_vec(), b"lue done\n".to_vec()]);
        let mut out = Vec::new();
        let mut output = Output::new(input, &mut out, redactor.stream());
        let mut buffer = vec![0u8; 64];
        while output.copy_some(&mut buffer) {}
        output.finish();
        assert_eq!(String::from_utf8(out).unwrap(), "key=[REDACTED] done\n");
    }

    #[test]
    fn records_are_the_json_baton_reads() {
        assert_eq!(exit_json(Some(3), None), r#"{"code":3,"signal":null}"#);
        assert_eq!(exit_json(None, Some(9)), r#"{"code":null,"signal":9}"#);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        write_atomically(&path, &exit_json(Some(0), None));
        let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value, serde_json::json!({ "code": 0, "signal": null }));
        assert!(!dir.path().join("exit.json.tmp").exists());
    }
}
