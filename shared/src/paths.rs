//! Paths as names: what graph-api and the analysis-worker compare against the allowed roots before (or without)
//! touching the file system.

use std::path::{Component, Path, PathBuf};

/// `path` with `.` and `..` resolved by name only (no file system access, symbolic links untouched); `..` above the
/// root stays at the root. The path is taken as it is: make it absolute first where that matters.
pub fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_resolved_by_name() {
        assert_eq!(lexically_normal(Path::new("/srv/repo/../other/./x")), PathBuf::from("/srv/other/x"));
        assert_eq!(lexically_normal(Path::new("/srv/../..")), PathBuf::from("/"));
        assert_eq!(lexically_normal(Path::new("/a/b/")), PathBuf::from("/a/b"));
    }
}
