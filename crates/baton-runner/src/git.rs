//! `git` through argument vectors only: never a shell, never untrusted text in a command string.

// The runner is the one crate allowed to spawn processes.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    /// git ran and failed; `stderr` says why.
    #[error("git {args} failed in {dir}: {stderr}")]
    Failed { args: String, dir: String, stderr: String },
}

/// A git repository or worktree directory.
#[derive(Clone)]
pub struct Git {
    dir: PathBuf,
    /// Milliseconds spent inside git, summed, for overhead accounting.
    spent_ms: Option<Arc<AtomicU64>>,
    /// Extra environment of every call (a remote's credentials as `GIT_CONFIG_*`: never on the
    /// command line, never on disk).
    env: Vec<(String, String)>,
}

/// Settings applied to every invocation: no prompts, no background gc or maintenance (a commit
/// would otherwise start `git maintenance run --auto` after itself), no signing, a fixed identity.
const FIXED_CONFIG: &[&str] = &[
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "user.name=Baton",
    "-c",
    "user.email=baton@localhost",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "advice.mergeConflict=false",
];

impl std::fmt::Debug for Git {
    // The environment may hold a credential: only its names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Git").field("dir", &self.dir).field("env", &names).finish()
    }
}

impl Git {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Git { dir: dir.into(), spent_ms: None, env: Vec::new() }
    }

    /// Adds `env` to the environment of every call.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// Adds the time of every git call to `counter`.
    pub fn with_timer(mut self, counter: Arc<AtomicU64>) -> Self {
        self.spent_ms = Some(counter);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs git with `args`; returns trimmed stdout, or the failure with stderr.
    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let output = self.output(args, None).await?;
        Ok(String::from_utf8_lossy(&output).trim().to_string())
    }

    /// Runs git with `args` and `input` on its standard input; returns stdout as it is.
    pub async fn run_with_input(&self, args: &[&str], input: &[u8]) -> Result<Vec<u8>, GitError> {
        self.output(args, Some(input)).await
    }

    /// A git process for `args` in this directory, with Baton's fixed configuration and
    /// environment.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(git_program());
        command
            .args(FIXED_CONFIG)
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// The files directly in directory `relative` of commit `rev` whose names `keep` accepts, in
    /// git's (sorted) order, each with its text (`None` for what is not a readable blob), at most
    /// `max`; empty when the directory does not exist. One `cat-file --batch` process answers it
    /// all: the directory's tree first, then the files it names.
    pub async fn read_dir_at(
        &self,
        rev: &str,
        relative: &str,
        keep: impl Fn(&str) -> bool,
        max: usize,
    ) -> Result<Vec<(String, Option<String>)>, GitError> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let started = Instant::now();
        let io = |error: std::io::Error| GitError::Spawn(error);
        let mut child = self
            .command(&["cat-file", "--batch"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(io)?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(io(std::io::Error::other("cat-file --batch has no pipes")));
        };
        let mut stdout = BufReader::new(stdout);
        stdin.write_all(format!("{rev}:{relative}\n").as_bytes()).await.map_err(io)?;
        stdin.flush().await.map_err(io)?;
        let mut header = Vec::new();
        stdout.read_until(b'\n', &mut header).await.map_err(io)?;
        let header = String::from_utf8_lossy(&header).trim().to_string();
        let fields: Vec<&str> = header.split(' ').collect();
        let names = match fields.as_slice() {
            [id, "tree", size] if is_object_id(id) => {
                let size: usize =
                    size.parse().map_err(|_| io(std::io::Error::other(format!("bad header: {header}"))))?;
                let mut tree = vec![0; size + 1];
                stdout.read_exact(&mut tree).await.map_err(io)?;
                let names = tree_names(&tree[..size], id.len() / 2).into_iter();
                // A name that could break the batch's lines is not asked.
                names.filter(|n| !n.contains(['\n', '\r']) && keep(n)).take(max).collect()
            }
            // Missing, or not a directory: nothing in it.
            _ => Vec::new(),
        };
        let asked: String = names.iter().map(|name| format!("{rev}:{relative}/{name}\n")).collect();
        let written = stdin.write_all(asked.as_bytes()).await;
        drop(stdin);
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).await.map_err(io)?;
        written.map_err(io)?;
        let _ = child.wait().await;
        if let Some(counter) = &self.spent_ms {
            counter.fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        let texts = parse_batch(&rest, names.len());
        Ok(names.into_iter().zip(texts).collect())
    }

    async fn output(&self, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, GitError> {
        use tokio::io::AsyncWriteExt;
        // Whatever may write to the working tree makes Baton's knowledge that it is clean stale.
        if !args.first().is_some_and(|command| READ_ONLY.contains(command)) {
            clean_marks::forget(&self.dir);
        }
        let started = Instant::now();
        let mut command = self.command(args);
        let output = match input {
            None => command.stdin(std::process::Stdio::null()).output().await.map_err(GitError::Spawn)?,
            Some(input) => {
                let mut child = command
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(GitError::Spawn)?;
                if let Some(mut stdin) = child.stdin.take() {
                    // Written while git answers (wait_with_output reads both pipes): a large
                    // input cannot deadlock on a full pipe in either direction.
                    let input = input.to_vec();
                    let (written, output) = tokio::join!(
                        async move {
                            let written = stdin.write_all(&input).await;
                            drop(stdin);
                            written
                        },
                        child.wait_with_output()
                    );
                    let output = output.map_err(GitError::Spawn)?;
                    // git may stop reading once it has failed: its own error says more.
                    if output.status.success() {
                        written.map_err(GitError::Spawn)?;
                    }
                    output
                } else {
                    child.wait_with_output().await.map_err(GitError::Spawn)?
                }
            }
        };
        if let Some(counter) = &self.spent_ms {
            counter.fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        if output.status.success() {
            Ok(output.stdout)
        } else {
            let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if stderr.is_empty() {
                stderr = String::from_utf8_lossy(&output.stdout).trim().to_string();
            }
            Err(GitError::Failed { args: args.join(" "), dir: self.dir.display().to_string(), stderr })
        }
    }

    /// The commit id `rev` resolves to, or `None` when it does not exist. `HEAD` and branches
    /// are read from git's own files when they are plain files (no process); anything else, or a
    /// repository whose refs are not plain files, asks git.
    pub async fn rev(&self, rev: &str) -> Option<String> {
        match lookup_ref(&self.dir, rev) {
            Lookup::Found(id) if rev == "HEAD" || rev.starts_with("refs/heads/") => return Some(id),
            Lookup::Absent => return None,
            _ => {}
        }
        self.run(&["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).await.ok()
    }

    /// The branch checked out (`symbolic-ref --short HEAD`), read from the checkout's `HEAD` file
    /// when it is a plain file; `None` when HEAD is detached.
    pub async fn current_branch(&self) -> Option<String> {
        if let Some(head) = git_dir(&self.dir).and_then(|dir| std::fs::read_to_string(dir.join("HEAD")).ok()) {
            let head = head.trim();
            if let Some(branch) = head.strip_prefix("ref:").and_then(|r| r.trim().strip_prefix("refs/heads/")) {
                return Some(branch.to_string());
            }
            if is_object_id(head) {
                return None;
            }
        }
        self.run(&["symbolic-ref", "--short", "-q", "HEAD"]).await.ok()
    }

    /// Stages everything and commits with `message`; `Ok(false)` when there was nothing to commit.
    pub async fn commit_all(&self, message: &str) -> Result<bool, GitError> {
        // The index goes back to HEAD first: a sandboxed agent's `git add` wrote its blobs to the
        // run's private object directory, so an index naming them would not commit here.
        let _ = self.run(&["reset", "-q"]).await;
        self.commit_all_keeping_index(message).await
    }

    /// [`Git::commit_all`] on the index as it is: every object it names is in the repository.
    pub async fn commit_all_keeping_index(&self, message: &str) -> Result<bool, GitError> {
        self.run(&["add", "-A"]).await?;
        let committed = match self.run(&["commit", "-q", "-m", message]).await {
            Ok(_) => true,
            // `git commit` fails when nothing is staged; only then is "nothing to commit" the answer.
            Err(error) => match self.run(&["diff", "--cached", "--quiet"]).await {
                Ok(_) => false,
                Err(_) => return Err(error),
            },
        };
        // Everything was added and committed: the tree is what HEAD holds.
        self.mark_clean();
        Ok(committed)
    }

    /// Whether the worktree has no change git would report: nothing modified, staged or untracked
    /// (ignored files do not count).
    pub async fn is_clean(&self) -> Result<bool, GitError> {
        Ok(self.run(&["status", "--porcelain", "--untracked-files=all"]).await?.is_empty())
    }

    /// Marks this worktree clean at its current `HEAD` (after a commit of everything in it).
    pub fn mark_clean(&self) {
        if let Some(head) = read_ref(&self.dir, "HEAD") {
            clean_marks::mark(&self.dir, &head);
        }
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `descendant`.
    pub async fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        self.run(&["merge-base", "--is-ancestor", ancestor, descendant]).await.is_ok()
    }
}

/// The git commands Baton runs that never write to a working tree or its index (`status` may
/// refresh the index's cached file times, which changes no content; `merge-tree --write-tree`
/// and `commit-tree` only add objects).
const READ_ONLY: &[&str] = &[
    "status",
    "merge-tree",
    "commit-tree",
    "diff",
    "show",
    "log",
    "rev-parse",
    "rev-list",
    "ls-tree",
    "ls-files",
    "merge-base",
    "cat-file",
    "symbolic-ref",
    "for-each-ref",
];

/// Worktrees Baton's own commit left clean, so the next job in them need not ask `git status`.
///
/// A mark names the worktree's `HEAD` when Baton committed everything in it. It is forgotten
/// when anything may have written there since: a git command that is not read-only run in (or
/// above) the worktree, or any process Baton starts with its working directory in it (agents,
/// test gates, deploy commands — `process::spawn` calls [`clean_marks::started_in`]). It counts
/// only while `HEAD` is unchanged and for [`clean_marks::FRESH_FOR`]: a worktree left waiting
/// longer (for a human, a retry, a quota) is asked again, as is every worktree after a restart
/// (marks live in memory).
///
/// A repository command (a test gate, the merge gate's re-test) usually writes nothing tracked
/// or untracked. Before one starts, [`clean_marks::watch`] takes a fingerprint of the worktree's
/// files and of its index (every name, inode, size, mode and both file times); the mark then
/// survives the command, and the next check walks the files again: the same fingerprint means
/// nothing was written, so the worktree is still what Baton committed, with no `git status`.
/// Any difference (an ignored build output too) falls back to asking git. A file written in the
/// same clock tick as the fingerprint could change again without a new time (git's "racy"
/// entries): the fingerprint is only taken when every file time is older than a probe file just
/// created on the same file system.
pub mod clean_marks {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    use std::path::{Path, PathBuf};
    use std::sync::{LazyLock, Mutex};
    use std::time::{Duration, Instant};

    /// How long a mark is trusted.
    pub const FRESH_FOR: Duration = Duration::from_secs(60);

    /// The most entries a fingerprint walks; a larger worktree is asked `git status` as before. A
    /// command costs two walks (before and after), about 1.5 µs an entry each here, against one
    /// `git status`: about 2 ms to start git, then about 1 µs an entry. Past a thousand entries
    /// the walks cost more than they save.
    pub const MAX_ENTRIES: usize = 1024;

    /// What the worktree's files and index were when a command started there.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Fingerprint {
        entries: usize,
        hash: u64,
    }

    #[derive(Debug, Clone)]
    struct Mark {
        head: String,
        at: Instant,
        files: Option<Fingerprint>,
        /// A process started there since `files` was last found to hold.
        unverified: bool,
    }

    static MARKS: LazyLock<Mutex<HashMap<PathBuf, Mark>>> = LazyLock::new(Default::default);

    /// The worktree's real path (links resolved), or `dir` as given when it does not exist.
    fn key(dir: &Path) -> PathBuf {
        super::resolve(dir).unwrap_or_else(|| dir.to_path_buf())
    }

    /// The worktree at `dir` holds exactly the commit `head`.
    pub fn mark(dir: &Path, head: &str) {
        if let Ok(mut marks) = MARKS.lock() {
            let mark = Mark { head: head.to_string(), at: Instant::now(), files: None, unverified: false };
            marks.insert(key(dir), mark);
        }
    }

    /// Something may write in `dir`: forget the marks of worktrees at, inside or above it.
    pub fn forget(dir: &Path) {
        let Ok(mut marks) = MARKS.lock() else { return };
        if marks.is_empty() {
            return;
        }
        let dir = key(dir);
        marks.retain(|worktree, _| !(dir.starts_with(worktree) || worktree.starts_with(&dir)));
    }

    /// A process starts with its working directory at `dir`: forget the marks of worktrees at,
    /// inside or above it, except those [`watch`] fingerprinted, which are checked by a new walk
    /// before they are trusted again.
    pub fn started_in(dir: &Path) {
        let Ok(mut marks) = MARKS.lock() else { return };
        if marks.is_empty() {
            return;
        }
        let dir = key(dir);
        marks.retain(|worktree, mark| {
            if !(dir.starts_with(worktree) || worktree.starts_with(&dir)) {
                return true;
            }
            mark.unverified = true;
            mark.files.is_some()
        });
    }

    /// The fresh mark of `key` at `head`: its fingerprint and whether it awaits a check.
    fn fresh(key: &Path, head: &str) -> Option<(Instant, Option<Fingerprint>, bool)> {
        let marks = MARKS.lock().ok()?;
        let mark = marks.get(key).filter(|mark| mark.head == head && mark.at.elapsed() < FRESH_FOR)?;
        Some((mark.at, mark.files, mark.unverified))
    }

    /// Records the outcome of checking the mark made at `at`: still holding, or forgotten.
    fn checked(key: &Path, at: Instant, holds: bool) {
        if let Ok(mut marks) = MARKS.lock()
            && marks.get(key).is_some_and(|mark| mark.at == at)
        {
            if holds {
                if let Some(mark) = marks.get_mut(key) {
                    mark.unverified = false;
                }
            } else {
                marks.remove(key);
            }
        }
    }

    /// A repository command is about to start in `worktree`: when it is marked clean, keep the
    /// mark through the command with a fingerprint of its files (nothing is kept when the files
    /// are too many, too fresh to tell a later write apart, or unreadable). A fingerprint taken
    /// before an earlier command is checked first and kept when it still holds.
    pub fn watch(worktree: &Path) {
        let Some(head) = super::read_ref(worktree, "HEAD") else { return };
        let key = key(worktree);
        let Some((at, files, unverified)) = fresh(&key, &head) else { return };
        if let Some(before) = files {
            if unverified {
                checked(&key, at, fingerprint(worktree, None) == Some(before));
            }
            return;
        }
        let taken = file_system_now(worktree).and_then(|now| fingerprint(worktree, Some(now)));
        if let Some(taken) = taken
            && let Ok(mut marks) = MARKS.lock()
            && let Some(mark) = marks.get_mut(&key)
            && mark.at == at
            && !mark.unverified
        {
            mark.files = Some(taken);
        }
    }

    /// Whether `dir` is marked clean, freshly, at the `HEAD` it has now (and, when a command ran
    /// there since the mark, with the files it had before).
    pub fn is_clean(dir: &Path) -> bool {
        let Some(head) = super::read_ref(dir, "HEAD") else { return false };
        let key = key(dir);
        match fresh(&key, &head) {
            None => false,
            Some((_, None, _) | (_, Some(_), false)) => true,
            Some((at, Some(before), true)) => {
                let holds = fingerprint(dir, None) == Some(before);
                checked(&key, at, holds);
                holds
            }
        }
    }

    /// A file time as (seconds, nanoseconds).
    type Stamp = (i64, i64);

    /// The file system's own clock at `worktree`: the time of a file created now in the
    /// worktree's git directory (the same device as the worktree, else `None`).
    fn file_system_now(worktree: &Path) -> Option<Stamp> {
        let admin = super::git_dir(worktree)?;
        let probe = admin.join("baton-clock-probe");
        let _ = std::fs::remove_file(&probe);
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe).ok()?;
        let stat = nix::sys::stat::fstat(&file);
        drop(file);
        let _ = std::fs::remove_file(&probe);
        let stat = stat.ok()?;
        let root = nix::sys::stat::lstat(worktree).ok()?;
        (stat.st_dev == root.st_dev).then(|| newest(&stat))
    }

    /// The later of a file's modified and changed times.
    fn newest(stat: &nix::sys::stat::FileStat) -> Stamp {
        (stat.st_mtime, stat.st_mtime_nsec).max((stat.st_ctime, stat.st_ctime_nsec))
    }

    /// Every entry of `worktree` but its top-level `.git`, and its index: names, kinds, inodes,
    /// and for everything not a directory its size, mode and file times, each entry hashed with
    /// its directory's inode and the hashes summed (no order to sort). Walked through open
    /// directories (`openat`, `fstatat` relative to each, never following a link). `None` past
    /// [`MAX_ENTRIES`] or [`MAX_DEPTH`], on another device, on any read error, or (with
    /// `not_after`) when a file time is not older than `not_after`.
    fn fingerprint(worktree: &Path, not_after: Option<Stamp>) -> Option<Fingerprint> {
        let root = nix::fcntl::open(worktree, DIRECTORY, nix::sys::stat::Mode::empty()).ok()?;
        let device = nix::sys::stat::fstat(&root).ok()?.st_dev;
        let mut walk = Walk { device, not_after, entries: 0, sum: 0 };
        walk.directory(root, 0)?;
        // The index: staging or unstaging touches only it.
        let mut hasher = std::hash::DefaultHasher::new();
        let index = super::git_dir(worktree)?.join("index");
        match nix::sys::stat::lstat(&index) {
            Ok(stat) => stamp(&stat, not_after, &mut hasher)?,
            Err(nix::errno::Errno::ENOENT) => 0u8.hash(&mut hasher),
            Err(_) => return None,
        }
        Some(Fingerprint { entries: walk.entries, hash: walk.sum ^ hasher.finish() })
    }

    /// Directories are opened with these flags: never through a link.
    const DIRECTORY: nix::fcntl::OFlag = nix::fcntl::OFlag::O_RDONLY
        .union(nix::fcntl::OFlag::O_DIRECTORY)
        .union(nix::fcntl::OFlag::O_NOFOLLOW)
        .union(nix::fcntl::OFlag::O_CLOEXEC);

    /// The deepest directory a fingerprint walks into.
    pub const MAX_DEPTH: usize = 64;

    struct Walk {
        device: u64,
        not_after: Option<Stamp>,
        entries: usize,
        sum: u64,
    }

    impl Walk {
        fn directory(&mut self, fd: std::os::fd::OwnedFd, depth: usize) -> Option<()> {
            use nix::fcntl::AtFlags;
            use nix::sys::stat::{SFlag, fstatat};
            if depth > MAX_DEPTH {
                return None;
            }
            // One descriptor to list the directory, one to look entries up in it meanwhile.
            let lookup = fd.try_clone().ok()?;
            let inode = nix::sys::stat::fstat(&lookup).ok()?.st_ino;
            let mut listing = nix::dir::Dir::from_fd(fd).ok()?;
            for entry in listing.iter() {
                let entry = entry.ok()?;
                let name = entry.file_name();
                let bytes = name.to_bytes();
                if bytes == b"." || bytes == b".." || (depth == 0 && bytes == b".git") {
                    continue;
                }
                self.entries += 1;
                if self.entries > MAX_ENTRIES {
                    return None;
                }
                let stat = fstatat(&lookup, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
                if stat.st_dev != self.device {
                    return None;
                }
                let mut hasher = std::hash::DefaultHasher::new();
                (inode, bytes, stat.st_ino).hash(&mut hasher);
                if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
                    true.hash(&mut hasher);
                    let child = nix::fcntl::openat(&lookup, name, DIRECTORY, nix::sys::stat::Mode::empty()).ok()?;
                    self.directory(child, depth + 1)?;
                } else {
                    stamp(&stat, self.not_after, &mut hasher)?;
                }
                self.sum = self.sum.wrapping_add(hasher.finish());
            }
            Some(())
        }
    }

    /// A file's identity, mode, size and (modified, changed) times, hashed; `None` when a time is
    /// not older than `not_after`.
    fn stamp(stat: &nix::sys::stat::FileStat, not_after: Option<Stamp>, hasher: &mut impl Hasher) -> Option<()> {
        if not_after.is_some_and(|now| newest(stat) >= now) {
            return None;
        }
        let (modified, changed) = ((stat.st_mtime, stat.st_mtime_nsec), (stat.st_ctime, stat.st_ctime_nsec));
        (stat.st_ino, stat.st_mode, stat.st_size, modified, changed).hash(hasher);
        Some(())
    }
}

/// The entry names of a raw tree object (`<mode> <name>\\0<id>` each, the id `id_len` bytes).
fn tree_names(tree: &[u8], id_len: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = tree;
    while let Some(space) = rest.iter().position(|&b| b == b' ') {
        let after = &rest[space + 1..];
        let Some(nul) = after.iter().position(|&b| b == 0) else { break };
        names.push(String::from_utf8_lossy(&after[..nul]).into_owned());
        let Some(next) = after.get(nul + 1 + id_len..) else { break };
        rest = next;
    }
    names
}

/// The answers of `git cat-file --batch` to `count` names: each blob's text (lossy UTF-8), or
/// `None` for a name that is missing or not a blob; `None` for every answer past a malformed one.
pub fn parse_batch(output: &[u8], count: usize) -> Vec<Option<String>> {
    let mut answers = Vec::with_capacity(count);
    let mut rest = output;
    while answers.len() < count {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else { break };
        let header = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 1..];
        let fields: Vec<&str> = header.split(' ').collect();
        match fields.as_slice() {
            // `<object> <type> <size>`, then the content and a newline.
            [_, kind, size] if is_object_id(fields[0]) => {
                let Ok(size) = size.parse::<usize>() else { break };
                if rest.len() < size {
                    break;
                }
                let content = &rest[..size];
                answers.push((*kind == "blob").then(|| String::from_utf8_lossy(content).into_owned()));
                rest = rest.get(size + 1..).unwrap_or(&[]);
            }
            // `<name> missing`, `<name> ambiguous`, …: no content follows.
            _ => answers.push(None),
        }
    }
    answers.resize(count, None);
    answers
}

/// `path` with every link resolved (`canonicalize`'s answer), `None` when it does not exist.
/// Asked first of the kernel, as it names what it opens: one lookup of the whole path and a read
/// of `/proc/self/fd/N`, where `canonicalize` reads each prefix of the path as a link in turn, a
/// lookup of its own each (every git command and every process started in a worktree asks for
/// this). `canonicalize` answers when that cannot tell (no `/proc`, a path removed meanwhile).
pub(crate) fn resolve(path: &Path) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC;
    let opened = nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()).ok();
    let named = opened.and_then(|fd| std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok());
    // A path removed after the open is named with this suffix; an answer not absolute is no path.
    let named = named.filter(|p| p.is_absolute() && !p.as_os_str().as_encoded_bytes().ends_with(b" (deleted)"));
    named.or_else(|| std::fs::canonicalize(path).ok())
}

/// The `git` program: found on `PATH` once (every call would otherwise search it again, a failed
/// `execve` per directory before git's); plain `git` when it is not there, so the error names it.
fn git_program() -> &'static Path {
    static PROGRAM: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
        std::env::var_os("PATH")
            .and_then(|path| {
                // Only absolute directories: a relative one would be resolved in each call's own
                // working directory.
                std::env::split_paths(&path).filter(|dir| dir.is_absolute()).map(|dir| dir.join("git")).find(
                    |candidate| {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    },
                )
            })
            .unwrap_or_else(|| PathBuf::from("git"))
    });
    &PROGRAM
}

/// The git directory of a checkout: `.git` itself, or where a `.git` file (`gitdir: …`) points.
pub fn git_dir(repo: &Path) -> Option<PathBuf> {
    let dot_git = repo.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    Some(repo.join(target))
}

/// The common git directory of the git directory `own`: where a worktree's `commondir` file
/// points, or `own` itself (a repository's own git directory, or a bare repository).
pub fn common_dir(own: &Path) -> PathBuf {
    match std::fs::read_to_string(own.join("commondir")) {
        Ok(text) => own.join(text.trim()),
        Err(_) => own.to_path_buf(),
    }
}

/// Whether the repository whose common git directory is `common` keeps its references in the
/// reftable format, which only git reads.
fn reftable(common: &Path) -> bool {
    common.join("reftable").exists()
}

/// `HEAD` or a branch (`refs/heads/…`) of the checkout at `dir` resolved from git's files: a
/// worktree's own `HEAD`, then the loose ref, then `packed-refs`, in the common directory. `None`
/// when git must answer (another kind of name, a reftable repository, anything unexpected).
/// Git writes a loose ref by renaming a complete file into place and packs refs by writing
/// `packed-refs` before deleting the loose files, so reading loose-then-packed sees one of them.
pub fn read_ref(dir: &Path, name: &str) -> Option<String> {
    match lookup_ref(dir, name) {
        Lookup::Found(id) if name == "HEAD" || name.starts_with("refs/heads/") => Some(id),
        _ => None,
    }
}

/// What git's files say of a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// It names this object.
    Found(String),
    /// It does not exist: neither a loose file nor a `packed-refs` line.
    Absent,
    /// Only git can tell (another kind of name, a reftable repository, a symbolic ref, an
    /// unreadable file).
    Unknown,
}

/// `HEAD` or a full reference name (`refs/…`) of the checkout at `dir`, from git's files: a
/// worktree's own `HEAD`, then the loose ref, then `packed-refs`, in the common directory.
/// Git writes a loose ref by renaming a complete file into place and packs refs by writing
/// `packed-refs` before deleting the loose files, so reading loose-then-packed sees an existing
/// ref in one of them: absent from both, it does not exist (unless created at that very moment,
/// a race git's own answer would have too).
pub fn lookup_ref(dir: &Path, name: &str) -> Lookup {
    let Some(own) = git_dir(dir) else { return Lookup::Unknown };
    let common = common_dir(&own);
    if reftable(&common) {
        return Lookup::Unknown;
    }
    let name = if name == "HEAD" {
        let Ok(head) = std::fs::read_to_string(own.join("HEAD")) else { return Lookup::Unknown };
        let head = head.trim();
        match head.strip_prefix("ref:") {
            Some(target) => target.trim().to_string(),
            None if is_object_id(head) => return Lookup::Found(head.to_string()),
            None => return Lookup::Unknown,
        }
    } else {
        name.to_string()
    };
    let Some(rest) = name.strip_prefix("refs/") else { return Lookup::Unknown };
    if rest.split('/').any(|part| part.is_empty() || part.starts_with('.')) || !rest.contains('/') {
        return Lookup::Unknown;
    }
    match std::fs::read_to_string(common.join(&name)) {
        Ok(text) => {
            let id = text.trim();
            return if is_object_id(id) { Lookup::Found(id.to_string()) } else { Lookup::Unknown };
        }
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Lookup::Unknown,
        Err(_) => {}
    }
    let packed = match std::fs::read_to_string(common.join("packed-refs")) {
        Ok(packed) => packed,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(_) => return Lookup::Unknown,
    };
    let found = packed.lines().find_map(|line| {
        let (id, refname) = line.split_once(' ')?;
        (refname.trim() == name).then_some(id)
    });
    match found {
        Some(id) if is_object_id(id) => Lookup::Found(id.to_string()),
        Some(_) => Lookup::Unknown,
        None => Lookup::Absent,
    }
}

/// The common git directory of the repository at `dir` when Baton may write or delete its own
/// reference `name` there as a loose file: a name under `refs/baton/` made of plain parts, in a
/// repository that keeps loose references (not `reftable`). `None` where git must do it.
fn own_ref_store(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain_part = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && !part.ends_with(".lock")
            && !part.contains("..")
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let rest = name.strip_prefix("refs/baton/")?;
    if !rest.split('/').all(plain_part) {
        return None;
    }
    let common = common_dir(&git_dir(dir)?);
    (!reftable(&common) && common.join("refs").is_dir()).then_some(common)
}

/// Sets Baton's own reference `name` (under `refs/baton/`) of the repository at `dir` to the
/// object `id` as git writes a loose reference: `<name>.lock` created exclusively in the common
/// directory, the id written there, the lock renamed into place (a loose reference takes
/// precedence over `packed-refs`; `git pack-refs` takes the same lock before it removes one). No
/// `git` process for it. Baton's references keep no reflog, as git keeps none for names outside
/// branches, remotes and notes by default. `false`, with nothing written, wherever `git
/// update-ref` must do it instead: a reftable repository, a name with anything but plain parts,
/// the lock held, a file in the way. A lock older than [`STALE_LOCK_AFTER`] was left by a writer
/// killed while it held it (Baton's names are each one task's, written by one job at a time), and
/// is taken over.
pub fn write_own_ref(dir: &Path, name: &str, id: &str) -> bool {
    use std::io::Write;
    if !is_object_id(id) {
        return false;
    }
    let Some(common) = own_ref_store(dir, name) else { return false };
    let path = common.join(name);
    let Some(parent) = path.parent() else { return false };
    if std::fs::create_dir_all(parent).is_err() {
        return false;
    }
    let lock = common.join(format!("{name}.lock"));
    let open = || std::fs::OpenOptions::new().write(true).create_new(true).open(&lock);
    let Ok(mut file) = open().or_else(|held| if remove_stale_lock(&lock) { open() } else { Err(held) }) else {
        return false;
    };
    let written = file.write_all(format!("{id}\n").as_bytes()).is_ok();
    drop(file);
    if written && std::fs::rename(&lock, &path).is_ok() {
        return true;
    }
    let _ = std::fs::remove_file(&lock);
    false
}

/// Deletes Baton's own reference `name` (under `refs/baton/`) in the repository of `dir` in place,
/// as git would: the loose file removed (a missing one is already deleted). `false` when git must
/// do it: a name that is not a plain one of Baton's, a `reftable` repository, a reference that is
/// also packed (removing the loose file would bring the packed value back), or a failed removal.
pub fn delete_own_ref(dir: &Path, name: &str) -> bool {
    let Some(common) = own_ref_store(dir, name) else { return false };
    match std::fs::read_to_string(common.join("packed-refs")) {
        Ok(packed) if packed.lines().any(|line| line.strip_suffix(name).is_some_and(|id| id.ends_with(' '))) => {
            return false;
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return false,
    }
    match std::fs::remove_file(common.join(name)) {
        Ok(()) => true,
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
    }
}

/// How old a lock file of git's must be before Baton takes it as left behind by a process killed
/// while it held it: a reference or index update holds its lock for well under a second.
pub const STALE_LOCK_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Removes the lock file `lock` when it is older than [`STALE_LOCK_AFTER`]; whether it did. Only
/// for locks of what belongs to one task (its worktree's index, its branch, Baton's own references
/// for it), which one job at a time writes.
pub fn remove_stale_lock(lock: &Path) -> bool {
    let age = std::fs::symlink_metadata(lock).ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
    age.is_some_and(|age| age > STALE_LOCK_AFTER) && std::fs::remove_file(lock).is_ok()
}

/// A full SHA-1 or SHA-256 object id in lowercase hex.
pub(crate) fn is_object_id(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether the branch exists as a loose ref or in packed-refs (in the common dir of a worktree).
pub fn has_branch(git_dir: &Path, branch: &str) -> bool {
    let common = common_dir(git_dir);
    // The reftable format cannot be read without git; trust the configuration then.
    if reftable(&common) {
        return true;
    }
    if common.join("refs").join("heads").join(branch).is_file() {
        return true;
    }
    let wanted = format!("refs/heads/{branch}");
    std::fs::read_to_string(common.join("packed-refs")).is_ok_and(|packed| {
        packed.lines().any(|line| line.split_once(' ').is_some_and(|(_, name)| name.trim() == wanted))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::resolve;

    #[test]
    fn resolve_answers_as_canonicalize_does_through_links_and_for_missing_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir_all(real.join("inner")).unwrap();
        std::fs::write(real.join("inner/file.txt"), "x").unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        std::os::unix::fs::symlink("real/inner", tmp.path().join("relative-link")).unwrap();
        for path in [
            real.clone(),
            tmp.path().join("link"),
            tmp.path().join("link/inner"),
            tmp.path().join("link/inner/file.txt"),
            tmp.path().join("relative-link"),
            tmp.path().join("link/inner/../inner/./file.txt"),
        ] {
            let expected = std::fs::canonicalize(&path).unwrap();
            assert_eq!(resolve(&path), Some(expected), "{}", path.display());
        }
        assert_eq!(resolve(&tmp.path().join("link/missing")), None);
        assert_eq!(resolve(&tmp.path().join("dangling")), None);
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), tmp.path().join("dangling")).unwrap();
        assert_eq!(resolve(&tmp.path().join("dangling")), None);
    }
}
