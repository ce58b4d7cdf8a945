//! Path safety: derived paths are built from sanitized components and must stay under their root.

use std::path::{Component, Path, PathBuf};

/// Joins `components` under `root`, refusing any component that is empty, absolute, `.`/`..`, or
/// contains a separator or NUL. Returns `None` when the result would leave `root`.
pub fn join_under(root: &Path, components: &[&str]) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for component in components {
        let bad = component.is_empty()
            || *component == "."
            || *component == ".."
            || component.contains('/')
            || component.contains('\\')
            || component.contains('\0');
        if bad {
            return None;
        }
        path.push(component);
    }
    let normal = path.components().all(|c| !matches!(c, Component::ParentDir | Component::CurDir));
    (normal && path.starts_with(root)).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Traversal and separators in any component are refused; clean components join under the root.
    #[test]
    fn join_under_refuses_traversal() {
        let root = Path::new("/data/worktrees");
        assert_eq!(join_under(root, &["demo", "DEMO-001"]), Some(PathBuf::from("/data/worktrees/demo/DEMO-001")));
        assert_eq!(join_under(root, &["..", "etc"]), None);
        assert_eq!(join_under(root, &["demo", "a/../../b"]), None);
        assert_eq!(join_under(root, &["/etc"]), None);
        assert_eq!(join_under(root, &[""]), None);
    }
}
