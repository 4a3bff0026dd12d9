//! Incremental analysis against a real redis-server: an unchanged repository writes nothing; an edit, an
//! addition, a rename and a deletion each produce exactly the events they imply, including call edges from
//! other files into the changed symbols.

use std::collections::BTreeSet;

use analysis_worker::{
    analysis::{Analyzer, Changes},
    job::{CancelFlag, JobEnd, JobRunner, JobSpec},
    settings::AnalysisSettings,
    sync::Mode,
};
use codegraph_shared::{
    event::{decode_entry, CdcEvent},
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
    settings::RedisSettings,
    testing::RedisServer,
};

mod common;

use common::{moved, set, undone, ADD_CLI, RENAME_HELPER, START};

struct Harness {
    _server: RedisServer,
    runner: JobRunner,
    project: ProjectName,
    root: tempfile::TempDir,
    seen: usize,
    runs: u32,
    /// Watch-like: one analyzer kept between runs and told exactly which paths changed (as watch mode does);
    /// otherwise a fresh analyzer per run (as queue jobs do).
    watch_like: bool,
    kept: Option<Analyzer>,
    changed: BTreeSet<String>,
    last: Option<JobEnd>,
}

impl Harness {
    fn watch_like() -> Self {
        Self { watch_like: true, ..Self::new() }
    }

    fn new() -> Self {
        let server = RedisServer::start();
        let root = tempfile::tempdir().unwrap();
        let settings = AnalysisSettings { allowed_roots: root.path().display().to_string(), ..Default::default() };
        let runner = JobRunner {
            redis: RedisHandle::open(&server.url()).unwrap(),
            redis_settings: RedisSettings { url: server.url(), ..Default::default() },
            settings,
            show_bar: false,
            turns: Default::default(),
        };
        Self {
            _server: server,
            runner,
            project: ProjectName::parse("inc").unwrap(),
            root,
            seen: 0,
            runs: 0,
            watch_like: false,
            kept: None,
            changed: BTreeSet::new(),
            last: None,
        }
    }

    fn write(&mut self, path: &str, text: &str) {
        self.write_bytes(path, text.as_bytes());
    }

    fn write_bytes(&mut self, path: &str, bytes: &[u8]) {
        self.changed.insert(path.to_owned());
        let p = self.root.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    fn remove(&mut self, path: &str) {
        self.changed.insert(path.to_owned());
        std::fs::remove_file(self.root.path().join(path)).unwrap();
    }

    fn rename(&mut self, from: &str, to: &str) {
        let target = self.root.path().join(to);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::rename(self.root.path().join(from), target).unwrap();
        // What a watcher reports: both paths, and the folder that appeared.
        self.changed.extend([from.to_owned(), to.to_owned(), to.rsplit_once('/').unwrap().0.to_owned()]);
    }

    /// Runs an incremental analysis and returns the graph events it produced, as `type id` lines.
    async fn run(&mut self) -> BTreeSet<String> {
        self.runs += 1;
        let spec = JobSpec {
            job_id: format!("t{}", self.runs),
            project: self.project.clone(),
            path: self.root.path().to_owned(),
            mode: Mode::Incremental,
        };
        let changed = std::mem::take(&mut self.changed);
        let analyzer = match self.kept.take() {
            Some(mut a) => {
                a.note_changes(Changes::Paths(changed));
                a
            }
            None => Analyzer::new(),
        };
        let (analyzer, end) = self.runner.run(&spec, analyzer, CancelFlag::default()).await;
        if self.watch_like {
            self.kept = Some(analyzer);
        }
        assert!(matches!(end, JobEnd::Completed(_)), "{end:?}");
        self.last = Some(end);
        let events = self.events().await;
        let new: BTreeSet<String> = events[self.seen..]
            .iter()
            .filter(|e| e.entity.kind != "job")
            .map(|e| format!("{} {}", e.event_type.as_str(), e.entity.id))
            .collect();
        let count = events[self.seen..].iter().filter(|e| e.entity.kind != "job").count();
        assert_eq!(count, new.len(), "an entity changed twice in one run");
        // An edit's whole delta is one atomic call: one change set, so one frame for a browser.
        let sets: BTreeSet<String> =
            events[self.seen..].iter().filter(|e| e.entity.kind != "job").map(|e| e.id.to_string()).collect();
        assert!(sets.len() <= 1, "one run wrote {} change sets: {sets:?}", sets.len());
        self.seen = events.len();
        new
    }

    async fn events(&self) -> Vec<CdcEvent> {
        let mut conn = self.runner.redis.conn();
        let stream = RedisNames::new(&self.project).cdc_stream();
        let entries: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(&mut conn).await.unwrap();
        entries
            .ids
            .iter()
            .flat_map(|e| {
                let body: String = e.get("e").unwrap();
                decode_entry(&e.id, &body).unwrap()
            })
            .collect()
    }

    /// Every relationship's ends exist (the graph is consistent).
    async fn assert_consistent(&self) {
        let mut conn = self.runner.redis.conn();
        let names = RedisNames::new(&self.project);
        let nodes: Vec<String> = redis::cmd("HKEYS").arg(names.nodes()).query_async(&mut conn).await.unwrap();
        let nodes: BTreeSet<String> = nodes.into_iter().collect();
        let rels: Vec<String> = redis::cmd("HVALS").arg(names.relationships()).query_async(&mut conn).await.unwrap();
        for r in rels {
            let r: serde_json::Value = serde_json::from_str(&r).unwrap();
            assert!(nodes.contains(r["source"].as_str().unwrap()), "{r}");
            assert!(nodes.contains(r["target"].as_str().unwrap()), "{r}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_additions_renames_and_deletions_produce_exact_deltas() {
    edits_additions_renames_and_deletions(Harness::new()).await;
}

/// The same, with the facts and entities of earlier runs kept and only the changed paths read (watch mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_deltas_when_only_the_changed_paths_are_read() {
    edits_additions_renames_and_deletions(Harness::watch_like()).await;
}

async fn edits_additions_renames_and_deletions(mut h: Harness) {
    for (path, text) in START {
        h.write(path, text);
    }
    let first = h.run().await;
    assert!(first.contains("node_added py:lib/util.py:helper"));
    assert!(first.contains("relationship_added py:app.py:main|calls|py:lib/util.py:helper"));
    h.assert_consistent().await;

    // Unchanged: nothing at all.
    assert_eq!(h.run().await, BTreeSet::new());

    // Edit: rename helper → assist inside util.py (see common::RENAME_HELPER).
    h.write(RENAME_HELPER.path, RENAME_HELPER.text);
    assert_eq!(h.run().await, set(RENAME_HELPER.events));
    h.assert_consistent().await;

    // Edit the caller to use the new name: its edges come back, pointing at the new symbol.
    h.write("app.py", "from lib.util import assist\n\ndef main():\n    assist(1)\n");
    assert_eq!(
        h.run().await,
        set(&[
            "node_updated py:app.py:main",
            "node_updated file:app.py",
            "relationship_added py:app.py:main|calls|py:lib/util.py:assist",
            "relationship_added file:app.py|imports|py:lib/util.py:assist",
        ])
    );

    // Add a file in a new folder that calls into util.
    h.write(ADD_CLI.path, ADD_CLI.text);
    assert_eq!(h.run().await, set(ADD_CLI.events));

    // Rename the file (same content): everything moves to the new ids, the old folder goes.
    h.rename("tools/cli.py", "bin/cli.py");
    let mut expected = moved(ADD_CLI.events, "tools", "bin");
    expected.extend(undone(ADD_CLI.events));
    assert_eq!(h.run().await, expected);

    // Delete util.py: its nodes go, and so do the edges other files had into it (they become unresolved).
    h.remove("lib/util.py");
    let deleted = h.run().await;
    assert_eq!(
        deleted,
        set(&[
            "node_deleted dir:lib",
            "node_deleted file:lib/util.py",
            "node_deleted py:lib/util.py:assist",
            "node_deleted py:lib/util.py:other",
            "relationship_deleted dir:.|contains|dir:lib",
            "relationship_deleted dir:lib|contains|file:lib/util.py",
            "relationship_deleted file:lib/util.py|defines|py:lib/util.py:assist",
            "relationship_deleted file:lib/util.py|defines|py:lib/util.py:other",
            "relationship_deleted py:app.py:main|calls|py:lib/util.py:assist",
            "relationship_deleted file:app.py|imports|py:lib/util.py:assist",
            "relationship_deleted py:bin/cli.py:run|calls|py:lib/util.py:other",
            "relationship_deleted file:bin/cli.py|imports|py:lib/util.py:other",
            "node_updated py:app.py:main",
            "node_updated py:bin/cli.py:run",
            "node_updated file:app.py",
            "node_updated file:bin/cli.py",
        ])
    );
    h.assert_consistent().await;
    assert_eq!(h.run().await, BTreeSet::new());
}

/// A file that stops parsing (here: no longer UTF-8) is counted and reported, and its graph stays as it was —
/// with a fresh analyzer (nothing known of the file: Redis is left alone) and with a kept one (its previous
/// facts stand in, so calls into it stay resolved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_fails_to_parse_keeps_its_previous_graph() {
    for mut h in [Harness::new(), Harness::watch_like()] {
        h.write("lib/util.py", "def helper(x):\n    return x\n");
        h.write("app.py", "from lib.util import helper\n\ndef main():\n    helper(1)\n");
        assert!(h.run().await.contains("node_added py:lib/util.py:helper"));
        h.write_bytes("lib/util.py", b"def helper(x):\n    return '\xff\xfe'\n\ndef more():\n    pass\n");
        assert_eq!(h.run().await, BTreeSet::new(), "watch-like: {}", h.watch_like);
        let Some(JobEnd::Completed(s)) = &h.last else { unreachable!() };
        assert_eq!(s.report.failed.len(), 1);
        assert_eq!(s.report.failed[0].0, "lib/util.py");
        assert!(s.report.failed[0].1.contains("UTF-8"), "{:?}", s.report.failed);
        assert_eq!(s.report.kept_previous, u64::from(h.watch_like));
        // The job's end event says so too.
        let done = h.events().await.into_iter().rev().find(|e| e.event_type.as_str() == "analysis_completed").unwrap();
        assert_eq!(done.data["errors"], 1, "{:?}", done.data);
        assert_eq!(done.data["failed_files"][0]["file"], "lib/util.py");
        h.assert_consistent().await;
        // Fixed again: the new content is analysed.
        h.write("lib/util.py", "def helper(x):\n    return x\n\ndef more():\n    pass\n");
        assert_eq!(
            h.run().await,
            set(&[
                "node_added py:lib/util.py:more",
                "node_updated file:lib/util.py",
                "relationship_added file:lib/util.py|defines|py:lib/util.py:more",
            ])
        );
    }
}

/// `impl Trait for Type` in a third file: the `implements` edge leaves the type, so it belongs with the type's
/// file, which an edit of the impl's file must bring into the comparison (added, then removed again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impl_in_another_file_adds_and_removes_the_types_edge() {
    let mut h = Harness::watch_like();
    h.write("src/lib.rs", "pub mod shapes;\npub mod area;\npub mod show;\n");
    h.write("src/shapes.rs", "pub struct Circle { pub r: u32 }\n");
    h.write("src/area.rs", "pub trait Area {\n    fn area(&self) -> u32;\n}\n");
    h.write("src/show.rs", "use crate::area::Area;\nuse crate::shapes::Circle;\n");
    h.run().await;
    h.write(
        "src/show.rs",
        "use crate::area::Area;\nuse crate::shapes::Circle;\n\nimpl Area for Circle {\n    fn area(&self) -> u32 { self.r }\n}\n",
    );
    assert_eq!(
        h.run().await,
        set(&[
            "node_added rs:src/show.rs:Circle.area",
            "node_updated file:src/show.rs",
            "relationship_added file:src/show.rs|defines|rs:src/show.rs:Circle.area",
            "relationship_added rs:src/shapes.rs:Circle|implements|rs:src/area.rs:Area",
        ])
    );
    h.assert_consistent().await;
    h.write("src/show.rs", "use crate::area::Area;\nuse crate::shapes::Circle;\n");
    assert_eq!(
        h.run().await,
        set(&[
            "node_deleted rs:src/show.rs:Circle.area",
            "node_updated file:src/show.rs",
            "relationship_deleted file:src/show.rs|defines|rs:src/show.rs:Circle.area",
            "relationship_deleted rs:src/shapes.rs:Circle|implements|rs:src/area.rs:Area",
        ])
    );
    h.assert_consistent().await;
}
