//! Which files of a directory are analysed: under an allowed root, not ignored by `.gitignore` (and friends),
//! of a known language, not huge. Binary files are recognised when read (see [`crate::analysis`]).

use std::path::{Path, PathBuf};

use crate::lang::Language;

/// Why a job may not read a path.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("path {0} does not exist or is not readable: {1}")]
    Missing(String, std::io::Error),
    #[error("path {0} is not a directory")]
    NotADirectory(String),
    #[error("path {path} is outside the allowed roots ({roots}); set CODEGRAPH__ANALYSIS__ALLOWED_ROOTS to allow it")]
    NotAllowed { path: String, roots: String },
}

/// The canonical form of `path` when it lies under one of `allowed` (canonicalised too). A path that is not
/// under a root even as written is refused before the file system is asked about it, so a job cannot learn
/// what exists outside the roots; the canonical check then catches symbolic links that lead out.
pub fn check_allowed(path: &Path, allowed: &[PathBuf]) -> Result<PathBuf, PathError> {
    let shown = path.display().to_string();
    let not_allowed = || {
        let roots = allowed.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ");
        let roots = if roots.is_empty() { "none configured".to_owned() } else { roots };
        PathError::NotAllowed { path: shown.clone(), roots }
    };
    let canonical_roots: Vec<PathBuf> = allowed.iter().filter_map(|r| r.canonicalize().ok()).collect();
    let written = lexical(path);
    let mut written_roots = allowed.iter().filter_map(|r| lexical(r)).chain(canonical_roots.iter().cloned());
    let inside_as_written = written.is_some_and(|p| written_roots.any(|root| p.starts_with(root)));
    if !inside_as_written {
        return Err(not_allowed());
    }
    let canonical = path.canonicalize().map_err(|e| PathError::Missing(shown.clone(), e))?;
    if !canonical_roots.iter().any(|root| canonical.starts_with(root)) {
        return Err(not_allowed());
    }
    if !canonical.is_dir() {
        return Err(PathError::NotADirectory(shown));
    }
    Ok(canonical)
}

/// `path` made absolute (against the working directory) with `.` and `..` resolved by name only, without
/// reading the file system; `None` when the working directory is unknown.
fn lexical(path: &Path) -> Option<PathBuf> {
    let absolute = if path.is_absolute() { path.to_owned() } else { std::env::current_dir().ok()?.join(path) };
    Some(codegraph_shared::paths::lexically_normal(&absolute))
}

/// A source file to analyse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundFile {
    /// Relative to the analysed root, `/`-separated.
    pub path: String,
    pub abs: PathBuf,
    pub language: Language,
    pub size: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Discovered {
    pub files: Vec<FoundFile>,
    /// Source files larger than the limit.
    pub huge: u64,
}

/// Walks `root` honouring `.gitignore`, `.ignore` and git's exclude files (also outside a git checkout) and
/// skipping hidden entries; returns the source files sorted by path.
pub fn discover(root: &Path, max_file_bytes: u64) -> Discovered {
    let mut out = Discovered::default();
    let walker = ignore::WalkBuilder::new(root).hidden(true).git_ignore(true).require_git(false).build();
    for entry in walker.flatten() {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Some(path) = relative(root, entry.path()) else { continue };
        let Some(language) = Language::of_path(&path) else { continue };
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if size > max_file_bytes {
            out.huge += 1;
            continue;
        }
        out.files.push(FoundFile { path, abs: entry.path().to_owned(), language, size });
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// `root/a/b.py` → `a/b.py`, `None` when not under root or not valid UTF-8.
pub fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let joined = parts?.join("/");
    (!joined.is_empty()).then_some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_hidden_and_size_limits_apply() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/gen")).unwrap();
        std::fs::create_dir_all(root.join(".hidden")).unwrap();
        std::fs::write(root.join(".gitignore"), "gen/\n").unwrap();
        std::fs::write(root.join("src/a.py"), "x = 1\n").unwrap();
        std::fs::write(root.join("src/gen/b.py"), "x = 1\n").unwrap();
        std::fs::write(root.join(".hidden/c.py"), "x = 1\n").unwrap();
        std::fs::write(root.join("src/big.py"), "x = 1\n".repeat(100)).unwrap();
        std::fs::write(root.join("README.md"), "# hi\n").unwrap();
        let d = discover(root, 100);
        let paths: Vec<_> = d.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["src/a.py"]);
        assert_eq!(d.huge, 1);
    }

    #[test]
    fn paths_outside_the_allowed_roots_are_refused() {
        let allowed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(allowed.path().join("repo")).unwrap();
        let roots = vec![allowed.path().to_owned()];
        assert!(check_allowed(&allowed.path().join("repo"), &roots).is_ok());
        let err = check_allowed(other.path(), &roots).unwrap_err();
        assert!(err.to_string().contains("outside the allowed roots"), "{err}");
        // `..` cannot climb out.
        let sneaky = allowed.path().join("repo/../..");
        assert!(matches!(check_allowed(&sneaky, &roots), Err(PathError::NotAllowed { .. })));
        assert!(matches!(check_allowed(&allowed.path().join("nope"), &roots), Err(PathError::Missing(..))));
        // Outside the roots, whether a path exists is not revealed.
        let absent = other.path().join("absent");
        assert!(matches!(check_allowed(&absent, &roots), Err(PathError::NotAllowed { .. })));
        // A symbolic link inside a root that leads out of it.
        std::os::unix::fs::symlink(other.path(), allowed.path().join("link")).unwrap();
        assert!(matches!(check_allowed(&allowed.path().join("link"), &roots), Err(PathError::NotAllowed { .. })));
    }

    #[test]
    fn no_roots_allow_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_allowed(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, PathError::NotAllowed { .. }), "{err}");
        assert!(err.to_string().contains("none configured"), "{err}");
        assert!(err.to_string().contains("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS"), "{err}");
    }
}
