//! Fuzz harness: `baton.toml` and its `BATON_*` environment overrides, through the same loader as
//! `baton serve` and `baton config check`. Every problem must come back as a `ConfigIssue`.
//!
//! Input: the file's text, then optionally a NUL byte and `NAME=value` lines for the environment.

use std::path::{Path, PathBuf};

/// A directory the configuration's relative paths resolve against: a git repository `project`
/// (with a `main` branch), a `script.toml` and a `prompts/` directory, so valid files load fully.
#[derive(Debug)]
pub struct ConfigHarness {
    dir: tempfile::TempDir,
}

impl Default for ConfigHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigHarness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the config harness");
        let root = dir.path();
        for (path, text) in [
            ("project/.git/HEAD", "ref: refs/heads/main\n"),
            ("project/.git/refs/heads/main", "0000000000000000000000000000000000000000\n"),
            ("script.toml", "[[task]]\nmatch = \"*\"\n"),
            ("prompts/developer.md", "{{ task.title }}\n"),
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("fixture paths have a parent")).expect("fixture directory");
            std::fs::write(path, text).expect("fixture file");
        }
        ConfigHarness { dir }
    }

    pub fn base_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Loads `data` as `<base_dir>/baton.toml`; an error list is fine, a panic is not.
    pub fn run(&self, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let (file, env_text) = text.split_once('\0').unwrap_or((&text, ""));
        let mut env: Vec<(String, String)> = env_text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        env.push(("HOME".into(), self.base_dir().display().to_string()));
        match baton::config::load_str(file, &env, self.base_dir(), PathBuf::from("baton")) {
            Ok(config) => drop(format!("{config:?}")),
            Err(issues) => {
                assert!(!issues.is_empty(), "the loader failed without saying why");
                drop(issues.iter().map(ToString::to_string).collect::<Vec<_>>());
            }
        }
    }
}
