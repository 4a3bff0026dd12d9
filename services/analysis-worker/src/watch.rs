//! Watch mode: file-system notifications on a folder, debounced (a batch is analysed once the folder has been
//! quiet for `debounce_ms`), each batch analysed incrementally with the facts and entities of the previous run
//! kept in memory: only the paths the notifications named are stat'ed, read, hashed and parsed again, and only
//! the owners they affect are built again.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

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

/// Analyses `path` once, then again after every debounced batch of changes, until `shutdown`.
pub async fn watch(
    runner: JobRunner,
    project: ProjectName,
    path: PathBuf,
    shutdown: Shutdown,
    mut on_end: impl FnMut(&JobEnd),
) -> anyhow::Result<()> {
    // The watcher reports paths under the folder as it was given: canonical, like the job's root.
    let path = path.canonicalize()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Changes>();
    let root = path.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let changes = match res {
            Ok(event) if event.need_rescan() => Changes::Unknown,
            Ok(event) if event.kind.is_access() || !event.paths.iter().any(|p| relevant(p)) => return,
            Ok(event) => {
                let paths = event.paths.iter().filter(|p| relevant(p)).map(|p| relative(&root, p));
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
        let (a, end) = runner.run(&spec, analyzer, CancelFlag::default()).await;
        analyzer = a;
        on_end(&end);
        // Wait for a change, then for quiet; the analyzer learns every path that changed meanwhile.
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            got = rx.recv() => match got {
                Some(changes) => analyzer.note_changes(changes),
                None => return Ok(()),
            },
        }
        loop {
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                _ = tokio::time::sleep(debounce) => break,
                got = rx.recv() => match got {
                    Some(changes) => analyzer.note_changes(changes),
                    None => return Ok(()),
                },
            }
        }
    }
}
