//! The Bolt client and the Memgraph sink against a real Bolt server: FalkorDB's Bolt port (`BOLT_PORT`), the one
//! that can be started here. Memgraph itself is not installed; see the README for running against it.

use std::{net::SocketAddr, time::Duration};

use codegraph_shared::testing::{wait_for_port, RedisServer, TestCa, TlsProxy};

use codegraph_shared::{
    event::{ChangeSet, EventType, StreamId},
    project::ProjectName,
};
use serde_json::json;

use super::{
    bolt::{BoltClient, BoltError, BoltTarget, QueryResult, Statement, Value},
    MemgraphSettings, MemgraphSink,
};
use crate::{
    sinks::{Plan, Sink},
    test_support::{
        apply_plan, assert_equals_redis, assert_fencing, change, dump_memgraph, falkordb_with_bolt, mixed_project,
        single, GraphDump,
    },
};

fn target(port: u16) -> BoltTarget {
    let mut t = BoltTarget::parse(&format!("bolt://127.0.0.1:{port}")).unwrap();
    t.io_timeout = Duration::from_secs(10);
    t
}

fn sink(port: u16, inline_parameters: bool) -> MemgraphSink {
    let settings = MemgraphSettings {
        url: format!("bolt://127.0.0.1:{port}"),
        query_timeout_ms: 20_000,
        inline_parameters,
        ..Default::default()
    };
    MemgraphSink::new(&settings).unwrap()
}

fn no_params() -> Value {
    Value::Map(Vec::new())
}

fn ev(seq: u64, t: EventType, id: &str, version: u64, data: serde_json::Value) -> ChangeSet {
    single(StreamId::new(100, seq), change(t, id, version, data))
}

#[tokio::test]
async fn the_client_handshakes_decodes_every_type_recovers_and_reconnects() {
    let (mut server, port) = falkordb_with_bolt();
    let client = BoltClient::new(target(port));
    let (version, name) = client.server().await.unwrap();
    assert_eq!((version.major, version.minor), (5, 4), "FalkorDB takes the first proposal; {name}");

    let every = "RETURN null AS n, true AS t, false AS f, 1 AS tiny, -100 AS i8, 1000 AS i16, 100000 AS i32, \
                 10000000000 AS i64, 2.5 AS fl, 'é ü 漢' AS s, [1, 'a', [true]] AS l, {k: {m: 1}} AS m";
    let r = client.run(every, no_params()).await.unwrap();
    assert_eq!(r.fields, ["n", "t", "f", "tiny", "i8", "i16", "i32", "i64", "fl", "s", "l", "m"]);
    let row: Vec<serde_json::Value> = r.records[0].iter().map(Value::to_json).collect();
    assert_eq!(
        serde_json::Value::Array(row),
        json!([null, true, false, 1, -100, 1000, 100000, 10000000000i64, 2.5, "é ü 漢", [1, "a", [true]], {"k": {"m": 1}}])
    );

    // Bound parameters (small and plain: FalkorDB pastes them into the query text).
    let params = Value::map([
        ("a", Value::Int(-3)),
        ("b", Value::Int(40_000)),
        ("c", Value::Int(5_000_000_000)),
        ("d", Value::from("plain text")),
        ("e", Value::List(vec![Value::Bool(true), Value::Null])),
    ]);
    let r = client.run("RETURN $a, $b, $c, $d, $e", params).await.unwrap();
    assert_eq!(
        r.records[0].iter().map(Value::to_json).collect::<Vec<_>>(),
        [json!(-3), json!(40_000), json!(5_000_000_000i64), json!("plain text"), json!([true, null])]
    );

    // Nodes come back as structures; a transaction commits.
    let tx = [
        Statement { query: "CREATE (:Probe {i: 1})".into(), params: no_params() },
        Statement { query: "CREATE (:Probe {i: 2})".into(), params: no_params() },
    ];
    client.transaction(&tx).await.unwrap();
    let r = client.run("MATCH (p:Probe) RETURN p ORDER BY p.i", no_params()).await.unwrap();
    assert_eq!(r.records.len(), 2);
    assert_eq!(r.records[1][0].to_json(), json!({"labels": ["Probe"], "properties": {"i": 2}}));

    // A failure is reported with the server's code and message; RESET leaves the session usable.
    let err = client.run("RETURN nonsense(", no_params()).await.unwrap_err();
    assert!(
        matches!(&err, BoltError::Failure { request, code, .. } if request == "RUN" && code.contains("SyntaxError")),
        "{err}"
    );
    assert!(!err.is_transient());
    let bad_tx = [
        Statement { query: "CREATE (:Probe {i: 3})".into(), params: no_params() },
        Statement { query: "MATCH (p:Probe) RETURN p.i + 'x' +".into(), params: no_params() },
    ];
    assert!(matches!(client.transaction(&bad_tx).await, Err(BoltError::Failure { .. })));
    assert_eq!(client.run("RETURN 7", no_params()).await.unwrap().records, [[Value::Int(7)]]);

    // The server goes away: a clear I/O error; it comes back: the next call reconnects by itself.
    server.stop();
    let err = client.run("RETURN 1", no_params()).await.unwrap_err();
    assert!(matches!(err, BoltError::Io(_)) && err.is_transient(), "{err}");
    server.restart();
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(10));
    // An open port is not yet a server that answers the handshake (a loaded machine may take seconds): the same
    // client is asked again until it has reconnected by itself, each failure on the way a transient one.
    assert_eq!(answered(&client, "RETURN 8").await.records, [[Value::Int(8)]]);
    client.close().await;
    // Reopens after GOODBYE (a new connection, so on a loaded machine it may meet the same transient failures).
    assert_eq!(answered(&client, "RETURN 9").await.records, [[Value::Int(9)]], "reopens after GOODBYE");
}

/// Runs `query` until it is answered, retrying transient failures for up to a minute.
async fn answered(client: &BoltClient, query: &str) -> QueryResult {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match client.run(query, no_params()).await {
            Ok(answer) => return answer,
            Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("no answer to {query} (reconnection failed): {e}"),
        }
    }
}

#[tokio::test]
async fn the_sink_applies_versions_kinds_deletes_and_records_the_id() {
    let (_server, port) = falkordb_with_bolt();
    let sink = sink(port, true);
    let p = ProjectName::parse("p").unwrap();
    assert_eq!(sink.open(&p, 1).await.unwrap(), None, "nothing applied yet");
    sink.reset(&p, 1).await.unwrap();
    let weird = "it's \\ \"quoted\"\nline é";
    let a1 = json!({"id": "a", "kind": "file", "name": weird, "properties": {"xs": [1.5, 2], "big": 5_000_000_000i64}});
    let b1 = json!({"id": "b", "kind": "class", "name": "b"});
    let r1 = json!({"id": "a|calls|b", "type": "calls", "source": "a", "target": "b", "properties": {"line": 3}});
    let batch = [
        ev(1, EventType::NodeAdded, "a", 1, a1.clone()),
        ev(2, EventType::NodeAdded, "b", 1, b1),
        ev(3, EventType::RelationshipAdded, "a|calls|b", 1, r1),
    ];
    apply_plan(&sink, &p, Plan::build(&batch, StreamId::new(100, 3)).unwrap()).await.unwrap();
    let dump = dump_memgraph(&sink, "p").await.unwrap();
    assert_eq!(dump.nodes["a"].0, vec!["Node", "file"]);
    assert_eq!(dump.nodes["a"].1["name"], json!(weird), "strings survive");
    assert_eq!(dump.nodes["a"].1["xs"], json!([1.5, 2]));
    assert_eq!(dump.nodes["a"].1["big"], json!(5_000_000_000i64));
    assert_eq!(dump.edges["a|calls|b"].0, "calls");
    assert_eq!(
        dump.edges["a|calls|b"].3,
        serde_json::Map::from_iter([
            ("id".to_owned(), json!("a|calls|b")),
            ("version".to_owned(), json!(1)),
            ("line".to_owned(), json!(3)),
        ])
    );

    // Another project in the same database is kept apart.
    let q = ProjectName::parse("q").unwrap();
    sink.reset(&q, 1).await.unwrap();
    let other = [ev(1, EventType::NodeAdded, "a", 9, json!({"id": "a", "kind": "module", "name": "other"}))];
    apply_plan(&sink, &q, Plan::build(&other, StreamId::new(5, 0)).unwrap()).await.unwrap();

    // A kind change moves the node to its new label and keeps its edge.
    let a2 = json!({"id": "a", "kind": "module", "name": "a2"});
    apply_plan(&sink, &p, Plan::build(&[ev(4, EventType::NodeUpdated, "a", 2, a2)], StreamId::new(100, 4)).unwrap())
        .await
        .unwrap();
    let dump = dump_memgraph(&sink, "p").await.unwrap();
    assert_eq!(dump.nodes["a"].0, vec!["Node", "module"]);
    assert_eq!(dump.edges.len(), 1);

    // An older version after a newer one changes nothing.
    apply_plan(&sink, &p, Plan::build(&[ev(1, EventType::NodeAdded, "a", 1, a1)], StreamId::new(100, 4)).unwrap())
        .await
        .unwrap();
    assert_eq!(dump_memgraph(&sink, "p").await.unwrap(), dump);

    // Deletes apply; the recorded ID is the plan's last, per project.
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
    let dump = dump_memgraph(&sink, "p").await.unwrap();
    assert_eq!(dump.nodes.keys().collect::<Vec<_>>(), vec!["a"]);
    assert!(dump.edges.is_empty());
    assert_eq!(sink.open(&p, 1).await.unwrap(), Some(StreamId::new(100, 6)));
    assert_eq!(sink.open(&q, 1).await.unwrap(), Some(StreamId::new(5, 0)));

    sink.reset(&p, 1).await.unwrap();
    assert_eq!(sink.open(&p, 1).await.unwrap(), Some(StreamId::ZERO), "a reset leaves an empty record");
    assert_eq!(dump_memgraph(&sink, "p").await.unwrap(), GraphDump::default());
    assert_eq!(dump_memgraph(&sink, "q").await.unwrap().nodes["a"].1["name"], json!("other"), "q untouched");
    assert!(sink.ping().await);
}

#[tokio::test]
async fn bound_parameters_reach_the_server_where_falkordb_can_bind_them() {
    // Plain, short values: what FalkorDB's Bolt binding survives. Memgraph binds any value this way.
    let (_server, port) = falkordb_with_bolt();
    let sink = sink(port, false);
    let p = ProjectName::parse("plain").unwrap();
    assert_eq!(sink.open(&p, 1).await.unwrap(), None);
    sink.reset(&p, 1).await.unwrap();
    let batch = [
        ev(1, EventType::NodeAdded, "a", 1, json!({"id": "a", "kind": "file", "name": "a"})),
        ev(2, EventType::NodeAdded, "b", 1, json!({"id": "b", "kind": "class", "name": "b"})),
        ev(
            3,
            EventType::RelationshipAdded,
            "a|calls|b",
            1,
            json!({"id": "a|calls|b", "type": "calls", "source": "a", "target": "b"}),
        ),
    ];
    apply_plan(&sink, &p, Plan::build(&batch, StreamId::new(100, 3)).unwrap()).await.unwrap();
    let dump = dump_memgraph(&sink, "plain").await.unwrap();
    assert_eq!((dump.nodes.len(), dump.edges.len()), (2, 1));
    assert_eq!(dump.nodes["b"].0, vec!["Node", "class"]);
    assert_eq!(sink.open(&p, 1).await.unwrap(), Some(StreamId::new(100, 3)));
}

#[tokio::test]
async fn the_sink_equals_redis_after_mixed_mutations() {
    let redis = RedisServer::start();
    let (_falkor, port) = falkordb_with_bolt();
    let sink = sink(port, true);
    let (p, names, sets) = mixed_project(&redis, "mixed").await;
    sink.reset(&p, 1).await.unwrap();
    // Batches of a few whole change sets so entities cross batch boundaries, then one big batch again
    // (statements of several hundred kilobytes, many Bolt chunks): nothing changes.
    for chunk in sets.chunks(3) {
        apply_plan(&sink, &p, Plan::build(chunk, chunk[chunk.len() - 1].id).unwrap()).await.unwrap();
    }
    let got = dump_memgraph(&sink, "mixed").await.unwrap();
    let want = assert_equals_redis(&got, &redis, &names);

    let last = sets[sets.len() - 1].id;
    apply_plan(&sink, &p, Plan::build(&sets, last).unwrap()).await.unwrap();
    assert!(dump_memgraph(&sink, "mixed").await.unwrap() == want, "applying everything again changes nothing");
    assert_eq!(sink.open(&p, 1).await.unwrap(), Some(last));
}

#[tokio::test]
async fn a_stale_generation_and_a_backward_record_are_refused() {
    let (_server, port) = falkordb_with_bolt();
    let sink = crate::sinks::AnySink::Memgraph(sink(port, true));
    assert_fencing(&sink, &ProjectName::parse("fenced").unwrap()).await;
}

/// A sink over `url`, trusting `ca` when given.
fn sink_at(url: String, ca: Option<&TestCa>) -> MemgraphSink {
    let ca_file = ca.map(|c| c.ca_file().to_string_lossy().into_owned()).unwrap_or_default();
    let settings =
        MemgraphSettings { url, ca_file, query_timeout_ms: 20_000, inline_parameters: true, ..Default::default() };
    MemgraphSink::new(&settings).unwrap()
}

/// `bolt+s://` through a TLS-terminating nginx in front of FalkorDB's Bolt port (no TLS Bolt server can be
/// installed here): change sets apply through TLS and the graph equals Redis's.
#[tokio::test]
async fn over_bolt_s_the_sink_applies_change_sets_and_equals_redis() {
    let (ca, redis) = (TestCa::new(), RedisServer::start());
    let (_falkor, bolt_port) = falkordb_with_bolt();
    let proxy = TlsProxy::start(&ca, bolt_port);
    let sink = sink_at(format!("bolt+s://127.0.0.1:{}", proxy.port), Some(&ca));
    let (p, names, sets) = mixed_project(&redis, "tls").await;
    sink.reset(&p, 1).await.unwrap();
    for chunk in sets.chunks(5) {
        apply_plan(&sink, &p, Plan::build(chunk, chunk[chunk.len() - 1].id).unwrap()).await.unwrap();
    }
    assert_equals_redis(&dump_memgraph(&sink, "tls").await.unwrap(), &redis, &names);
    assert_eq!(sink.open(&p, 1).await.unwrap(), Some(sets[sets.len() - 1].id));
    // The certificate's DNS name works too, with the neo4j+s:// spelling.
    assert!(sink_at(format!("neo4j+s://localhost:{}", proxy.port), Some(&ca)).ping().await);
}

#[tokio::test]
async fn a_wrong_ca_unverified_and_plain_connections_behave_as_their_scheme_says() {
    let (ca, stranger) = (TestCa::new(), TestCa::new());
    let (_falkor, bolt_port) = falkordb_with_bolt();
    let proxy = TlsProxy::start(&ca, bolt_port);
    let client = |url: String, ca: Option<&TestCa>| {
        let ca_file = ca.map(|c| c.ca_file().to_string_lossy().into_owned()).unwrap_or_default();
        BoltClient::new(MemgraphSettings { url, ca_file, ..Default::default() }.target().unwrap())
    };
    let tls_url = format!("bolt+s://127.0.0.1:{}", proxy.port);

    // A certificate from a CA we do not trust (nor do the system's roots): refused, with the reason, retryable.
    for refused in [client(tls_url.clone(), Some(&stranger)), client(tls_url.clone(), None)] {
        let err = refused.run("CREATE (:Intruder)", no_params()).await.unwrap_err();
        assert!(matches!(&err, BoltError::Io(m) if m.contains("invalid peer certificate: UnknownIssuer")), "{err}");
        assert!(err.is_transient(), "retried like an unreachable server");
    }
    // Plain Bolt to the TLS port, and TLS to the plain Bolt port: clean I/O errors, no hang.
    let err = client(format!("bolt://127.0.0.1:{}", proxy.port), None).run("RETURN 1", no_params()).await.unwrap_err();
    assert!(matches!(err, BoltError::Io(_)), "{err}");
    let err = client(format!("bolt+s://127.0.0.1:{bolt_port}"), Some(&ca)).run("RETURN 1", no_params()).await;
    assert!(matches!(err, Err(BoltError::Io(ref m)) if m.contains("TLS handshake")), "{err:?}");

    // bolt+ssc:// encrypts without verifying: any certificate is accepted.
    let unverified = client(format!("bolt+ssc://127.0.0.1:{}", proxy.port), None);
    assert_eq!(unverified.run("RETURN 5", no_params()).await.unwrap().records, [[Value::Int(5)]]);
    // Nothing was written through the refused connections.
    let trusted = client(tls_url, Some(&ca));
    let r = trusted.run("MATCH (n:Intruder) RETURN count(n)", no_params()).await.unwrap();
    assert_eq!(r.records, [[Value::Int(0)]]);
}
