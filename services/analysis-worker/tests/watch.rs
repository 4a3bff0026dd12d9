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
    event::{CdcEvent, EventType},
    names::RedisNames,
    project::ProjectName,
    testing::RedisServer,
};

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
                let e = CdcEvent::from_stream_entry(&entry.id, &entry.get::<String>("e").unwrap()).unwrap();
                let done = e.event_type == EventType::AnalysisCompleted;
                batch.push(e);
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

fn set(lines: &[&str]) -> BTreeSet<String> {
    lines.iter().map(|s| s.to_string()).collect()
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
    save(&root, "lib/util.py", "def helper(x):\n    return x\n\ndef other():\n    pass\n");
    save(&root, "app.py", "from lib.util import helper\n\ndef main():\n    helper(1)\n");
    let child = Command::new(env!("CARGO_BIN_EXE_analysis-worker"))
        .args(["watch", "--project", "w", "--path"])
        .arg(&root)
        .env("CODEGRAPH__REDIS__URL", server.url())
        .env("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS", root.display().to_string())
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

    // An edit in one file: its symbols change, and the call from the other file loses its edge.
    save(&root, "lib/util.py", "def assist(x):\n    return x\n\ndef other():\n    pass\n");
    assert_eq!(
        graph_events(&stream.next_batch(&mut watcher)),
        set(&[
            "node_added py:lib/util.py:assist",
            "node_deleted py:lib/util.py:helper",
            "node_updated py:app.py:main",
            "node_updated file:app.py",
            "relationship_added file:lib/util.py|defines|py:lib/util.py:assist",
            "relationship_deleted file:lib/util.py|defines|py:lib/util.py:helper",
            "relationship_deleted py:app.py:main|calls|py:lib/util.py:helper",
            "relationship_deleted file:app.py|imports|py:lib/util.py:helper",
        ])
    );

    // A new file in a new folder that calls into util.
    save(&root, "tools/cli.py", "from lib.util import other\n\ndef run():\n    other()\n");
    assert_eq!(
        graph_events(&stream.next_batch(&mut watcher)),
        set(&[
            "node_added dir:tools",
            "node_added file:tools/cli.py",
            "node_added py:tools/cli.py:run",
            "relationship_added dir:.|contains|dir:tools",
            "relationship_added dir:tools|contains|file:tools/cli.py",
            "relationship_added file:tools/cli.py|defines|py:tools/cli.py:run",
            "relationship_added file:tools/cli.py|imports|py:lib/util.py:other",
            "relationship_added py:tools/cli.py:run|calls|py:lib/util.py:other",
        ])
    );

    // Deleting it takes all of that away again.
    std::fs::remove_file(root.join("tools/cli.py")).unwrap();
    assert_eq!(
        graph_events(&stream.next_batch(&mut watcher)),
        set(&[
            "node_deleted dir:tools",
            "node_deleted file:tools/cli.py",
            "node_deleted py:tools/cli.py:run",
            "relationship_deleted dir:.|contains|dir:tools",
            "relationship_deleted dir:tools|contains|file:tools/cli.py",
            "relationship_deleted file:tools/cli.py|defines|py:tools/cli.py:run",
            "relationship_deleted file:tools/cli.py|imports|py:lib/util.py:other",
            "relationship_deleted py:tools/cli.py:run|calls|py:lib/util.py:other",
        ])
    );
}
