//! `analysis-worker watch` as a process on a temporary folder against a real redis-server: after the first
//! analysis, an edit saved the way editors do (write aside, rename over), a new file and a deletion each lead
//! to exactly the graph events they imply, in one batch each, within a deadline.

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::{decode_entry, CdcEvent, EventType},
    names::RedisNames,
    project::ProjectName,
    testing::RedisServer,
};
use common::{set, undone, ADD_CLI, RENAME_HELPER, START};

mod common;

/// How long one batch may take from the change on disk to its `analysis_completed` (generous: shared machine).
const BATCH_DEADLINE: Duration = Duration::from_secs(20);

struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Follows the project's CDC stream from where it was last read.
struct Stream {
    conn: redis::Connection,
    key: String,
    last: String,
}

impl Stream {
    /// The events up to and including the next `analysis_completed`, waiting at most [`BATCH_DEADLINE`].
    fn next_batch(&mut self, watcher: &mut Watcher) -> Vec<CdcEvent> {
        let start = Instant::now();
        let mut batch = Vec::new();
        loop {
            let left = BATCH_DEADLINE.saturating_sub(start.elapsed());
            assert!(!left.is_zero(), "no analysis_completed within {BATCH_DEADLINE:?}; got {}", show(&batch));
            assert!(watcher.0.try_wait().unwrap().is_none(), "the watcher exited");
            let reply: redis::streams::StreamReadReply = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(100)
                .arg("BLOCK")
                .arg(left.as_millis().min(500) as u64)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(&self.last)
                .query(&mut self.conn)
                .unwrap();
            for entry in reply.keys.iter().flat_map(|k| &k.ids) {
                self.last = entry.id.clone();
                let events = decode_entry(&entry.id, &entry.get::<String>("e").unwrap()).unwrap();
                let done = events.iter().any(|e| e.event_type == EventType::AnalysisCompleted);
                batch.extend(events);
                if done {
                    return batch;
                }
            }
        }
    }
}

fn show(events: &[CdcEvent]) -> String {
    events.iter().map(|e| format!("{} {}", e.event_type.as_str(), e.entity.id)).collect::<Vec<_>>().join(", ")
}

/// The graph events of a batch as `type id` lines (each entity at most once).
fn graph_events(batch: &[CdcEvent]) -> BTreeSet<String> {
    let graph: Vec<String> = batch
        .iter()
        .filter(|e| e.entity.kind != "job")
        .map(|e| format!("{} {}", e.event_type.as_str(), e.entity.id))
        .collect();
    let set: BTreeSet<String> = graph.iter().cloned().collect();
    assert_eq!(set.len(), graph.len(), "an entity changed twice in one batch: {graph:?}");
    set
}

/// Saves like an editor: the new text goes to a file the worker ignores, then replaces the old one at once.
fn save(root: &Path, path: &str, text: &str) {
    let target = root.join(path);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let aside = root.join(format!("{path}.swp"));
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(aside, target).unwrap();
}

#[test]
fn watch_mode_turns_each_saved_change_into_exactly_its_events() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    for (path, text) in START {
        save(&root, path, text);
    }
    let child = Command::new(env!("CARGO_BIN_EXE_analysis-worker"))
        .args(["watch", "--project", "w", "--path"])
        .arg(&root)
        .env("CODEGRAPH__REDIS__URL", server.url())
        // No allowed roots: the folder named by --path is allowed because its user named it.
        .env_remove("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS")
        .env("CODEGRAPH__ANALYSIS__DEBOUNCE_MS", "50")
        .env("CODEGRAPH_CONFIG_DIR", root.join("no-config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start analysis-worker watch");
    let mut watcher = Watcher(child);
    let key = RedisNames::new(&ProjectName::parse("w").unwrap()).cdc_stream();
    let mut stream = Stream { conn: server.connection(), key, last: "0-0".into() };

    let first = graph_events(&stream.next_batch(&mut watcher));
    assert!(first.contains("node_added py:lib/util.py:helper"), "{first:?}");
    assert!(first.contains("relationship_added py:app.py:main|calls|py:lib/util.py:helper"), "{first:?}");

    for step in [RENAME_HELPER, ADD_CLI] {
        save(&root, step.path, step.text);
        assert_eq!(graph_events(&stream.next_batch(&mut watcher)), set(step.events), "after writing {}", step.path);
    }

    // Deleting it takes all of that away again.
    std::fs::remove_file(root.join(ADD_CLI.path)).unwrap();
    assert_eq!(graph_events(&stream.next_batch(&mut watcher)), undone(ADD_CLI.events));
}
