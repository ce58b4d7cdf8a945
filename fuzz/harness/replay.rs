//! Replays the committed inputs of a fuzz target through its harness on stable Rust: the
//! hand-written `seeds/<target>/` and the fuzzer-grown `corpus/<target>/`, every file in name
//! order, each panic caught and reported with the file that caused it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The directories holding a target's committed inputs, under the `fuzz/` directory.
pub const INPUT_DIRS: &[&str] = &["seeds", "corpus"];

/// Runs every committed input of `target` (under `fuzz_dir`) through `harness`; panics naming each
/// input that panicked. Returns how many inputs were replayed; finding none is an error.
pub fn replay(fuzz_dir: &Path, target: &str, harness: impl Fn(&[u8])) -> usize {
    let mut files: Vec<PathBuf> = INPUT_DIRS
        .iter()
        .filter_map(|dir| std::fs::read_dir(fuzz_dir.join(dir).join(target)).ok())
        .flat_map(|entries| entries.filter_map(Result::ok).map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs for fuzz target {target} under {}", fuzz_dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| harness(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {message}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{target}: {} input(s) panicked:\n{}", failures.len(), failures.join("\n"));
    files.len()
}
