//! Watch mode: file-system notifications on a folder, debounced (a batch is analysed once the folder has been
//! quiet for `debounce_ms`), each batch analysed incrementally with the parsed facts of the previous run kept
//! in memory, so only changed files are parsed again.

use std::{path::PathBuf, time::Duration};

use codegraph_shared::{project::ProjectName, shutdown::Shutdown};
use notify::{RecursiveMode, Watcher};

use crate::{
    analysis::Analyzer,
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
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            if event.paths.iter().any(|p| relevant(p)) && !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
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
        // Wait for a change, then for quiet.
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            got = rx.recv() => if got.is_none() { return Ok(()) },
        }
        loop {
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                _ = tokio::time::sleep(debounce) => break,
                got = rx.recv() => if got.is_none() { return Ok(()) },
            }
        }
    }
}
