//! A fresh project is written as its graph is built, file by file (`analysis_worker::fresh`), not built whole and
//! compared first: against a real redis-server, the same files analysed both ways give the same graph and the
//! same graph events (grouped differently into change sets), every relationship after both its ends, progress
//! that never goes back, and a second run that writes nothing.

use std::collections::{BTreeMap, HashSet};

use analysis_worker::{
    analysis::Analyzer,
    job::{CancelFlag, JobEnd, JobRunner, JobSpec, Summary},
    settings::AnalysisSettings,
    sync::Mode,
};
use codegraph_shared::{
    event::{decode_entry, CdcEvent, EventType},
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
    settings::RedisSettings,
    testing::RedisServer,
};

/// 200 Python files in 4 packages (more than one group of files and many calls of 1,000 operations), each
/// importing and calling into the previous one; one function's id is too long for the graph, so it and the call
/// into it are left out.
fn project(root: &std::path::Path) {
    let long = "x".repeat(600);
    for i in 0..200 {
        let dir = root.join(format!("pkg{}", i % 4));
        std::fs::create_dir_all(&dir).unwrap();
        let prev = (i + 199) % 200;
        let mut text = format!("from pkg{}.m{prev} import f0, C\n\n", prev % 4);
        text.push_str("class D(C):\n    def run(self):\n        return self.step()\n    def step(self):\n        return f0(1)\n\n");
        text.push_str("class C:\n    pass\n\n");
        for f in 0..4 {
            text.push_str(&format!("def f{f}(x):\n    return f{}(x)\n\n", (f + 1) % 4));
        }
        if i == 7 {
            text.push_str(&format!("def {long}():\n    pass\n\ndef caller():\n    {long}()\n"));
        }
        std::fs::write(dir.join(format!("m{i}.py")), text).unwrap();
    }
}

fn runner(server: &RedisServer, root: &std::path::Path) -> JobRunner {
    JobRunner {
        redis: RedisHandle::open(&server.url()).unwrap(),
        redis_settings: RedisSettings { url: server.url(), ..Default::default() },
        settings: AnalysisSettings {
            allowed_roots: root.display().to_string(),
            progress_interval_ms: 10,
            ..Default::default()
        },
        show_bar: false,
        turns: Default::default(),
    }
}

async fn run(runner: &JobRunner, project: &str, root: &std::path::Path, analyzer: Analyzer) -> (Analyzer, Summary) {
    let spec = JobSpec {
        job_id: format!("{project}-job"),
        project: ProjectName::parse(project).unwrap(),
        path: root.to_owned(),
        mode: Mode::Incremental,
    };
    match runner.run(&spec, analyzer, CancelFlag::default()).await {
        (a, JobEnd::Completed(s)) => (a, *s),
        (_, other) => panic!("{other:?}"),
    }
}

fn names(project: &str) -> RedisNames {
    RedisNames::new(&ProjectName::parse(project).unwrap())
}

fn events(conn: &mut redis::Connection, project: &str) -> Vec<CdcEvent> {
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(names(project).cdc_stream()).arg("-").arg("+").query(conn).unwrap();
    reply.ids.iter().flat_map(|e| decode_entry(&e.id, &e.get::<String>("e").unwrap()).unwrap()).collect()
}

/// Every graph change as `type id version data`, sorted.
fn changes(events: &[CdcEvent]) -> Vec<String> {
    let mut out: Vec<String> = events
        .iter()
        .filter(|e| e.entity.kind != "job")
        .map(|e| format!("{} {} {} {}", e.event_type.as_str(), e.entity.id, e.version, e.data))
        .collect();
    out.sort();
    out
}

fn stored(conn: &mut redis::Connection, key: String) -> BTreeMap<String, String> {
    redis::cmd("HGETALL").arg(key).query(conn).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_project_written_file_by_file_gets_the_graph_and_events_of_a_whole_build() {
    let server = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    project(root.path());
    let runner = runner(&server, root.path());
    let (analyzer, streamed) = run(&runner, "streamed", root.path(), Analyzer::new()).await;
    let (_, whole) = run(&runner, "whole", root.path(), Analyzer::new().always_building()).await;
    let mut conn = server.connection();

    let (a, b) = (names("streamed"), names("whole"));
    assert_eq!(stored(&mut conn, a.nodes()), stored(&mut conn, b.nodes()));
    assert_eq!(stored(&mut conn, a.relationships()), stored(&mut conn, b.relationships()));
    assert_eq!(stored(&mut conn, a.file_hashes()), stored(&mut conn, b.file_hashes()));
    let nodes = stored(&mut conn, a.nodes());
    assert!(nodes.contains_key("py:pkg3/m7.py:caller") && nodes.len() > 1500, "{}", nodes.len());
    assert!(!nodes.keys().any(|id| id.len() > 512));
    let (got, want) = (events(&mut conn, "streamed"), events(&mut conn, "whole"));
    assert_eq!(changes(&got), changes(&want));
    assert_eq!((streamed.nodes, streamed.relationships), (whole.nodes, whole.relationships));
    assert_eq!((streamed.mutations, streamed.events), (whole.mutations, whole.events));
    assert_eq!((streamed.changed_files, &streamed.changed_sample), (whole.changed_files, &whole.changed_sample));

    // Written file by file: a file's definitions before the next file's node (a whole build writes every file
    // node first); each relationship after both its ends; many change sets.
    let order: Vec<&str> = got.iter().filter(|e| e.entity.kind == "node").map(|e| e.entity.id.as_str()).collect();
    let at = |id: &str| order.iter().position(|n| *n == id).unwrap();
    assert!(at("py:pkg0/m0.py:f0") < at("file:pkg0/m12.py"));
    let mut seen: HashSet<&str> = HashSet::new();
    for e in got.iter().filter(|e| e.entity.kind != "job") {
        match e.event_type {
            EventType::NodeAdded => {
                seen.insert(&e.entity.id);
            }
            EventType::RelationshipAdded => {
                let (s, t) = (e.data["source"].as_str().unwrap(), e.data["target"].as_str().unwrap());
                assert!(seen.contains(s) && seen.contains(t), "{} before its ends", e.entity.id);
            }
            other => panic!("a fresh project changed by {}", other.as_str()),
        }
    }
    let sets: HashSet<(u64, u64)> =
        got.iter().filter(|e| e.entity.kind != "job").map(|e| (e.id.ms, e.id.seq)).collect();
    assert!(sets.len() >= 4, "{} change sets", sets.len());

    // Progress never goes back; the job ends at 100 %.
    let mut last = 0.0;
    for p in got.iter().filter(|e| e.event_type == EventType::AnalysisProgress) {
        let percent = p.data["percent"].as_f64().unwrap();
        assert!(percent >= last, "progress went back: {last} → {percent}");
        last = percent;
    }

    // Nothing changed: the next run, with the analyzer kept (watch mode) or a new one (a queued job), writes nothing.
    let (_, again) = run(&runner, "streamed", root.path(), analyzer).await;
    assert_eq!((again.mutations, again.events), (0, 0));
    let (_, again) = run(&runner, "streamed", root.path(), Analyzer::new()).await;
    assert_eq!((again.mutations, again.events), (0, 0));
    assert_eq!(changes(&events(&mut conn, "streamed")), changes(&got));
}
