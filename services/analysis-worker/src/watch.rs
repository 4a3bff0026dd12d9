//! Watch mode: file-system notifications on a folder, debounced (a batch is analysed once the folder has been
//! quiet for `debounce_ms`), each batch analysed incrementally with the facts and entities of the previous run
//! kept in memory: only the paths the notifications named are stat'ed, read, hashed and parsed again, and only
//! the owners they affect are built again. Used by the `watch` command and by the service's watches
//! ([`crate::watches`]).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use codegraph_shared::{project::ProjectName, shutdown::Shutdown};
use notify::{RecursiveMode, Watcher};

use crate::{
    analysis::{Analyzer, Changes},
    discover::relative,
    job::{CancelFlag, JobEnd, JobRunner, JobSpec},
    lang::Language,
    sync::Mode,
};

/// Whether a changed path can matter: a source file, or an ignore file that changes which files count.
fn relevant(path: &std::path::Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == ".gitignore" || name == ".ignore" || Language::of_path(name).is_some() || path.extension().is_none()
}

/// What the analysis never reads, so that notifications about it need no run: hidden entries (`.git/`) and what the
/// folder's own `.gitignore` and `.ignore` exclude (`target/`, `node_modules/`: a build in a watched checkout would
/// otherwise start a run per batch of its output). Nested ignore files are left to discovery (a run that finds
/// nothing changed writes nothing).
struct Ignored {
    root: PathBuf,
    rules: ignore::gitignore::Gitignore,
}

impl Ignored {
    fn new(root: &Path) -> Self {
        let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
        for name in [".gitignore", ".ignore"] {
            let file = root.join(name);
            if file.is_file() {
                let _ = builder.add(file);
            }
        }
        let rules = builder.build().unwrap_or_else(|_| ignore::gitignore::Gitignore::empty());
        Self { root: root.to_owned(), rules }
    }

    fn covers(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else { return false };
        let mut parts = rel.components().peekable();
        while let Some(part) = parts.next() {
            let hidden = part.as_os_str().to_str().is_some_and(|n| n.starts_with('.'));
            // An ignore file itself counts, unless it lies inside a hidden folder.
            let last = parts.peek().is_none();
            if hidden && !(last && matches!(part.as_os_str().to_str(), Some(".gitignore" | ".ignore"))) {
                return true;
            }
        }
        self.rules.matched_path_or_any_parents(rel, path.is_dir()).is_ignore()
    }
}

/// What a watch tells its caller as it goes.
#[derive(Debug)]
pub enum WatchEvent<'a> {
    /// A run begins. The first one (`catching_up`) compares every file's content hash with what Redis recorded,
    /// so what changed while nobody watched is applied before any notification is followed.
    RunStarted {
        job_id: &'a str,
        catching_up: bool,
    },
    /// How many changed paths were noticed and wait for the next run (0 when a run takes them).
    Pending(usize),
    RunEnded {
        job_id: &'a str,
        end: &'a JobEnd,
    },
}

/// Analyses `path` once, then again after every debounced batch of changes, until `shutdown`. The watcher is in
/// place before the first run, so a change made during it is not missed.
pub async fn watch(
    runner: JobRunner,
    project: ProjectName,
    path: PathBuf,
    shutdown: Shutdown,
    mut on: impl FnMut(WatchEvent),
) -> anyhow::Result<()> {
    // The watcher reports paths under the folder as it was given: canonical, like the job's root.
    let path = path.canonicalize()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Changes>();
    let root = path.clone();
    let mut ignored = Ignored::new(&root);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // The folder's own ignore rules changed: follow them from now on (the run that follows walks it all).
        if let Ok(event) = &res {
            let rules = |p: &PathBuf| p.file_name().is_some_and(|n| n == ".gitignore" || n == ".ignore");
            if event.paths.iter().any(|p| p.parent() == Some(root.as_path()) && rules(p)) {
                ignored = Ignored::new(&root);
            }
        }
        let counts = |p: &PathBuf| relevant(p) && !ignored.covers(p);
        let changes = match res {
            Ok(event) if event.need_rescan() => Changes::Unknown,
            Ok(event) if event.kind.is_access() || !event.paths.iter().any(counts) => return,
            Ok(event) => {
                let paths = event.paths.iter().filter(|p| counts(p)).map(|p| relative(&root, p));
                match paths.collect::<Option<BTreeSet<String>>>() {
                    Some(paths) => Changes::Paths(paths),
                    None => Changes::Unknown,
                }
            }
            Err(_) => Changes::Unknown,
        };
        let _ = tx.send(changes);
    })?;
    watcher.watch(&path, RecursiveMode::Recursive)?;
    let debounce = Duration::from_millis(runner.settings.debounce_ms.max(1));
    let mut analyzer = Analyzer::new();
    let session = uuid::Uuid::new_v4().simple().to_string();
    let mut run = 0u64;
    loop {
        run += 1;
        let spec = JobSpec {
            job_id: format!("watch-{}-{run}", &session[..8]),
            project: project.clone(),
            path: path.clone(),
            mode: Mode::Incremental,
        };
        on(WatchEvent::RunStarted { job_id: &spec.job_id, catching_up: run == 1 });
        // A stop cancels the run in hand (between files and chunks): a watch that was removed, moved or whose
        // lease was lost writes no more than a chunk after it.
        let cancel = CancelFlag::default();
        let on_stop = tokio::spawn({
            let (cancel, shutdown) = (cancel.clone(), shutdown.clone());
            async move {
                shutdown.wait().await;
                cancel.cancel();
            }
        });
        let (a, end) = runner.run(&spec, analyzer, cancel).await;
        on_stop.abort();
        analyzer = a;
        on(WatchEvent::RunEnded { job_id: &spec.job_id, end: &end });
        // Wait for a change, then for quiet; the analyzer learns every path that changed meanwhile.
        let mut pending = Pending::default();
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            got = rx.recv() => match got {
                Some(changes) => pending.note(changes, &mut analyzer, &mut on),
                None => return Ok(()),
            },
        }
        loop {
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                _ = tokio::time::sleep(debounce) => break,
                got = rx.recv() => match got {
                    Some(changes) => pending.note(changes, &mut analyzer, &mut on),
                    None => return Ok(()),
                },
            }
        }
        on(WatchEvent::Pending(0));
    }
}

/// The changed paths noticed since the last run, counted for [`WatchEvent::Pending`].
#[derive(Default)]
struct Pending {
    paths: BTreeSet<String>,
    unknown: bool,
}

impl Pending {
    fn note(&mut self, changes: Changes, analyzer: &mut Analyzer, on: &mut impl FnMut(WatchEvent)) {
        let before = self.count();
        match &changes {
            Changes::Paths(paths) => self.paths.extend(paths.iter().cloned()),
            Changes::Unknown => self.unknown = true,
        }
        analyzer.note_changes(changes);
        if self.count() != before {
            on(WatchEvent::Pending(self.count()));
        }
    }

    /// Paths known to have changed; a lost track counts as one more.
    fn count(&self) -> usize {
        self.paths.len() + usize::from(self.unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_about_what_discovery_skips_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join(".gitignore"), "target/\nnode_modules\n*.log\n").unwrap();
        std::fs::create_dir_all(root.join("target/debug")).unwrap();
        let ignored = Ignored::new(&root);
        for skipped in [
            "target/debug/build.rs",
            "target/debug",
            "web/node_modules/x/index.js",
            "a.log",
            ".git/HEAD",
            ".hidden/.gitignore",
        ] {
            assert!(ignored.covers(&root.join(skipped)), "{skipped} should be skipped");
        }
        for kept in ["src/main.rs", "targets.py", ".gitignore", "sub/.ignore", "lib/app.py"] {
            assert!(!ignored.covers(&root.join(kept)), "{kept} should count");
        }
        assert!(!ignored.covers(Path::new("/elsewhere/target/x.rs")), "outside the root nothing is judged");
    }
}
