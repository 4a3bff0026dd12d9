//! For tests and the benchmark: graphs as comparable data (what Redis holds, what FalkorDB or a Bolt server holds)
//! and a reproducible mix of mutations. A private FalkorDB comes from [`codegraph_shared::testing::start_falkordb`].

use std::collections::{BTreeMap, HashMap, HashSet};

pub use codegraph_shared::testing::{falkordb_paths, start_falkordb};
use codegraph_shared::testing::{free_port, wait_for_port, RedisServer};
use codegraph_shared::{
    event::{Change, ChangeSet, EntityRef, EventType, StreamId},
    functions::{Expect, GraphWriter, Mutation, PublishMode},
    graph::{Node, Relationship},
    names::RedisNames,
    project::ProjectName,
};
use serde_json::{Map, Value};

use crate::sinks::{
    falkordb::{query::NODE_LABEL, FalkorClient},
    mapping::{edge_props, node_props, props_json},
    memgraph::MemgraphSink,
    AnySink, Plan, Sink, SinkError, Writer,
};

/// FalkorDB with its Bolt port open (on every interface: FalkorDB does not take a bind address for it); the
/// server and the Bolt port. It keeps no append-only file: a write over Bolt with AOF on aborts FalkorDB 4.16
/// (Redis asserts `server.also_propagate.numops == 0` in blocked.c).
pub fn falkordb_with_bolt() -> (RedisServer, u16) {
    let port = free_port();
    let server = start_falkordb(&["BOLT_PORT", &port.to_string(), "--appendonly", "no"]);
    wait_for_port(std::net::SocketAddr::from(([127, 0, 0, 1], port)), std::time::Duration::from_secs(10));
    (server, port)
}

/// A graph as comparable data: node id → (sorted labels, properties), edge id → (type, source, target, properties).
#[derive(Debug, Default, PartialEq)]
pub struct GraphDump {
    pub nodes: BTreeMap<String, (Vec<String>, Map<String, Value>)>,
    pub edges: BTreeMap<String, (String, String, String, Map<String, Value>)>,
}

impl GraphDump {
    /// Node count per label (without the `Node` label every node has).
    pub fn label_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for (labels, _) in self.nodes.values() {
            for l in labels.iter().filter(|l| *l != NODE_LABEL) {
                *counts.entry(l.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// A short description of how `self` differs from `want` (first few differences), for failure messages.
    pub fn diff(&self, want: &GraphDump) -> String {
        let mut out = Vec::new();
        for (id, w) in &want.nodes {
            match self.nodes.get(id) {
                None => out.push(format!("node {id} missing")),
                Some(g) if g != w => out.push(format!("node {id}: got {g:?}, want {w:?}")),
                _ => {}
            }
        }
        out.extend(self.nodes.keys().filter(|k| !want.nodes.contains_key(*k)).map(|k| format!("node {k} extra")));
        for (id, w) in &want.edges {
            match self.edges.get(id) {
                None => out.push(format!("edge {id} missing")),
                Some(g) if g != w => out.push(format!("edge {id}: got {g:?}, want {w:?}")),
                _ => {}
            }
        }
        out.extend(self.edges.keys().filter(|k| !want.edges.contains_key(*k)).map(|k| format!("edge {k} extra")));
        let total = out.len();
        out.truncate(5);
        format!("{total} differences: {}", out.join("; "))
    }

    pub fn type_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for (t, ..) in self.edges.values() {
            *counts.entry(t.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// What the sink should hold for the project's graph in Redis (the mapping applied to the Redis hashes).
pub fn expected_from_redis(conn: &mut redis::Connection, names: &RedisNames) -> GraphDump {
    let nodes: HashMap<String, String> = redis::cmd("HGETALL").arg(names.nodes()).query(conn).expect("nodes");
    let rels: HashMap<String, String> = redis::cmd("HGETALL").arg(names.relationships()).query(conn).expect("rels");
    let versions: HashMap<String, u64> = redis::cmd("HGETALL").arg(names.versions()).query(conn).expect("versions");
    let mut dump = GraphDump::default();
    for (id, json) in nodes {
        let node: Node = serde_json::from_str(&json).expect("a stored node");
        let v = versions[&format!("n:{id}")];
        let mut labels = vec![NODE_LABEL.to_owned(), node.kind.clone()];
        labels.sort();
        dump.nodes.insert(id, (labels, props_json(&node_props(&node, v))));
    }
    for (id, json) in rels {
        let rel: Relationship = serde_json::from_str(&json).expect("a stored relationship");
        let v = versions[&format!("r:{id}")];
        let props = props_json(&edge_props(&rel, v));
        dump.edges.insert(id, (rel.rel_type, rel.source, rel.target, props));
    }
    dump
}

/// What a FalkorDB graph holds.
pub async fn dump_falkordb(client: &FalkorClient, graph: &str) -> Result<GraphDump, SinkError> {
    let mut dump = GraphDump::default();
    for row in client.read(graph, "MATCH (n:Node) RETURN n.id, labels(n), properties(n)").await? {
        let [id, labels, props] = <[Value; 3]>::try_from(row).map_err(|r| SinkError::Rejected(format!("{r:?}")))?;
        let mut labels: Vec<String> =
            labels.as_array().into_iter().flatten().filter_map(|l| l.as_str().map(str::to_owned)).collect();
        labels.sort();
        dump.nodes.insert(text(&id), (labels, props.as_object().cloned().unwrap_or_default()));
    }
    let edges = "MATCH (a:Node)-[e]->(b:Node) RETURN e.id, type(e), a.id, b.id, properties(e)";
    for row in client.read(graph, edges).await? {
        let [id, t, a, b, props] = <[Value; 5]>::try_from(row).map_err(|r| SinkError::Rejected(format!("{r:?}")))?;
        dump.edges.insert(text(&id), (text(&t), text(&a), text(&b), props.as_object().cloned().unwrap_or_default()));
    }
    Ok(dump)
}

/// What a Bolt server holds for a project (fed by the Memgraph sink): the same shape as [`dump_falkordb`], with
/// each node's `project` property checked and left out.
pub async fn dump_memgraph(sink: &MemgraphSink, project: &str) -> Result<GraphDump, SinkError> {
    let p = serde_json::json!({"project": project});
    let mut dump = GraphDump::default();
    let nodes = "MATCH (n:Node {project: $project}) RETURN n.id, labels(n), properties(n)";
    for row in sink.read(nodes, p.clone()).await? {
        let [id, labels, props] = <[Value; 3]>::try_from(row).map_err(|r| SinkError::Rejected(format!("{r:?}")))?;
        let mut labels: Vec<String> =
            labels.as_array().into_iter().flatten().filter_map(|l| l.as_str().map(str::to_owned)).collect();
        labels.sort();
        let mut props = props.as_object().cloned().unwrap_or_default();
        if props.remove("project") != Some(Value::String(project.to_owned())) {
            return Err(SinkError::Rejected(format!("node {id} lacks project {project:?}")));
        }
        dump.nodes.insert(text(&id), (labels, props));
    }
    let edges = "MATCH (a:Node {project: $project})-[e]->(b:Node) RETURN e.id, type(e), a.id, b.id, properties(e)";
    for row in sink.read(edges, p).await? {
        let [id, t, a, b, props] = <[Value; 5]>::try_from(row).map_err(|r| SinkError::Rejected(format!("{r:?}")))?;
        dump.edges.insert(text(&id), (text(&t), text(&a), text(&b), props.as_object().cloned().unwrap_or_default()));
    }
    Ok(dump)
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

/// A change of type `t` to entity `id` (of kind `node`, `relationship` or `job`, after the type).
pub fn change(t: EventType, id: &str, version: u64, data: Value) -> Change {
    let kind = match t.as_str() {
        n if n.starts_with("node") => "node",
        r if r.starts_with("relationship") => "relationship",
        "graph_reset" => "project",
        _ => "job",
    };
    Change { index: None, event_type: t, entity: EntityRef { kind: kind.into(), id: id.into() }, version, data }
}

/// The change set of stream entry `id` (project `p`).
pub fn change_set(id: StreamId, changes: Vec<Change>) -> ChangeSet {
    ChangeSet { id, project: "p".into(), ts: String::new(), trace: None, changes, single: false }
}

/// A single-event entry `id` (a job event, `graph_reset`, or a graph change as streams before change sets held
/// them).
pub fn single(id: StreamId, change: Change) -> ChangeSet {
    ChangeSet { single: true, ..change_set(id, vec![change]) }
}

/// The entries of a project's CDC stream, in order, read as change sets.
pub async fn read_stream<C: redis::aio::ConnectionLike + Send>(conn: &mut C, names: &RedisNames) -> Vec<ChangeSet> {
    let entries: redis::Value =
        redis::cmd("XRANGE").arg(names.cdc_stream()).arg("-").arg("+").query_async(conn).await.unwrap();
    let redis::Value::Array(entries) = entries else { panic!("XRANGE answered {entries:?}") };
    entries
        .into_iter()
        .filter_map(codegraph_shared::stream::parse_entry::<codegraph_shared::stream::Entry>)
        .map(|e| ChangeSet::from_stream_entry(&e.id.to_string(), &e.body.unwrap()).unwrap())
        .collect()
}

/// A project `name` given [`mixed_mutations`] (seed 7, 40 rounds of 25 operations) through the Function library,
/// and its CDC stream read back as change sets (one per round that changed something), in order.
pub async fn mixed_project(redis: &RedisServer, name: &str) -> (ProjectName, RedisNames, Vec<ChangeSet>) {
    let project = ProjectName::parse(name).unwrap();
    let names = RedisNames::new(&project);
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let writer = GraphWriter::new(names.clone(), 0, PublishMode::Classic);
    let written = mixed_mutations(&mut conn, &writer, 7, 40, 25).await;
    assert!(written > 500, "{written} changes");
    let sets = read_stream(&mut conn, &names).await;
    assert_eq!(sets.iter().map(|s| s.changes.len()).sum::<usize>(), written);
    (project, names, sets)
}

/// Asserts that a sink's graph equals the project's graph in Redis (a meaningful one): counts by label and by
/// type, and every node and edge with every property. Returns what Redis holds.
pub fn assert_equals_redis(got: &GraphDump, redis: &RedisServer, names: &RedisNames) -> GraphDump {
    let want = expected_from_redis(&mut redis.connection(), names);
    assert!(want.nodes.len() > 50 && want.edges.len() > 20, "{} nodes {} edges", want.nodes.len(), want.edges.len());
    let kinds: BTreeMap<String, u64> =
        redis::cmd("HGETALL").arg(names.node_kinds()).query(&mut redis.connection()).unwrap();
    let types: BTreeMap<String, u64> =
        redis::cmd("HGETALL").arg(names.relationship_types()).query(&mut redis.connection()).unwrap();
    assert_eq!(got.label_counts(), kinds, "counts by label");
    assert_eq!(got.type_counts(), types, "counts by type");
    assert!(*got == want, "{}", got.diff(&want));
    want
}

/// Applies a reproducible mix of mutations to a project through the Function library: nodes of several kinds
/// created, updated (properties and kind), deleted (with their relationships); relationships created, updated
/// and deleted; each round is one call, so one change set. Returns how many changes it produced.
pub async fn mixed_mutations<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    writer: &GraphWriter,
    seed: u64,
    rounds: usize,
    ops_per_round: usize,
) -> usize {
    const KINDS: [&str; 4] = ["file", "module", "class", "function"];
    const TYPES: [&str; 3] = ["contains", "calls", "imports"];
    let mut rng = seed.max(1);
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut alive: Vec<String> = Vec::new();
    let mut rels: Vec<(String, String, String, String)> = Vec::new();
    let mut changes = 0;
    let mut serial = 0;
    for _ in 0..rounds {
        let mut ops = Vec::new();
        let mut deleted: HashSet<String> = HashSet::new();
        for _ in 0..ops_per_round {
            serial += 1;
            let roll = next(100);
            if roll < 45 || alive.len() < 4 {
                let id = if alive.is_empty() || next(3) > 0 {
                    format!("n{serial}")
                } else {
                    alive[next(alive.len())].clone()
                };
                if deleted.contains(&id) {
                    continue;
                }
                let node: Node = serde_json::from_value(serde_json::json!({
                    "id": id, "kind": KINDS[next(KINDS.len())], "name": format!("name '{serial}' \"q\" \\ é"),
                    "file": format!("src/f{}.py", next(20)), "line_start": next(100) + 1,
                    "properties": {"size": next(1000), "ratio": 0.25, "tags": ["a", "b"], "meta": {"k": serial},
                                   "flag": next(2) == 0, "name": "shadowed"}
                }))
                .expect("a node");
                if !alive.contains(&id) {
                    alive.push(id);
                }
                ops.push(Mutation::UpsertNode(node, Expect::Any));
            } else if roll < 75 {
                let (s, t) = (alive[next(alive.len())].clone(), alive[next(alive.len())].clone());
                if deleted.contains(&s) || deleted.contains(&t) {
                    continue;
                }
                let rel_type = TYPES[next(TYPES.len())];
                let id = Relationship::derived_id(&s, rel_type, &t);
                let rel: Relationship = serde_json::from_value(serde_json::json!({
                    "id": id, "type": rel_type, "source": s, "target": t, "properties": {"line": next(500)}
                }))
                .expect("a relationship");
                rels.push((id, rel_type.to_owned(), s, t));
                ops.push(Mutation::UpsertRelationship(rel, Expect::Any));
            } else if roll < 88 && !rels.is_empty() {
                let (id, ..) = rels.swap_remove(next(rels.len()));
                ops.push(Mutation::DeleteRelationship(id, Expect::Any));
            } else {
                let id = alive.swap_remove(next(alive.len()));
                rels.retain(|(_, _, s, t)| *s != id && *t != id);
                deleted.insert(id.clone());
                ops.push(Mutation::DeleteNode(id, Expect::Any));
            }
        }
        let outcomes = writer.mutate(conn, &ops, None).await.expect("mutations apply");
        changes += outcomes.iter().map(|o| usize::from(o.event_id.is_some()) + o.cascaded as usize).sum::<usize>();
    }
    changes
}

/// Applies `plan` as the writer of `generation` that knows the sink's current record (read by opening it).
pub async fn apply_plan<S: Sink>(sink: &S, project: &ProjectName, plan: Plan) -> Result<(), SinkError> {
    let recorded = sink.open(project, 1).await?.unwrap_or(StreamId::ZERO);
    sink.apply(project, Writer { generation: 1, recorded }, &plan).await
}

/// What a registered sink holds for a project.
pub async fn dump_sink(sink: &AnySink, project: &ProjectName) -> GraphDump {
    match sink {
        AnySink::FalkorDb(s) => dump_falkordb(s.client(), &s.graph(project)).await.unwrap(),
        AnySink::Memgraph(s) => dump_memgraph(s, project.as_str()).await.unwrap(),
    }
}

/// The fencing rules, against a sink with no record of `project`: a stale generation is refused and writes
/// nothing (apply, open, reset), and the recorded ID never goes backwards, not even for the current owner; a
/// record behind what the writer knows is reported as lost data.
pub async fn assert_fencing(sink: &AnySink, project: &ProjectName) {
    let node = |seq: u64, id: &str, version: u64, t: EventType| {
        let data = serde_json::json!({"id": id, "kind": "file", "name": id});
        single(StreamId::new(10, seq), change(t, id, version, data))
    };
    let plan = |sets: &[ChangeSet]| Plan::build(sets, sets[sets.len() - 1].id).unwrap();
    let ids = |dump: GraphDump| dump.nodes.into_keys().collect::<Vec<_>>();

    assert_eq!(sink.open(project, 5).await.unwrap(), None);
    let first = Writer { generation: 5, recorded: StreamId::ZERO };
    let lost = sink.apply(project, first, &plan(&[node(1, "x", 1, EventType::NodeAdded)])).await;
    assert!(matches!(lost, Err(SinkError::Lost(_))), "no record: nothing is written: {lost:?}");
    assert!(dump_sink(sink, project).await.nodes.is_empty());
    sink.reset(project, 5).await.unwrap();
    let old = Writer { generation: 5, recorded: StreamId::ZERO };
    sink.apply(project, old, &plan(&[node(1, "a", 1, EventType::NodeAdded)])).await.unwrap();

    // A newer owner opens the sink: the old one's writes are refused, and leave nothing behind.
    assert_eq!(sink.open(project, 6).await.unwrap(), Some(StreamId::new(10, 1)));
    let old = Writer { generation: 5, recorded: StreamId::new(10, 1) };
    let stale = sink.apply(project, old, &plan(&[node(2, "b", 1, EventType::NodeAdded)])).await;
    assert!(matches!(stale, Err(SinkError::Fenced(_))), "{stale:?}");
    assert!(matches!(sink.open(project, 5).await, Err(SinkError::Fenced(_))));
    assert!(matches!(sink.reset(project, 5).await, Err(SinkError::Fenced(_))));
    assert_eq!(ids(dump_sink(sink, project).await), vec!["a"]);

    // The new owner deletes `a`; a plan ending before the record is refused even from it: `a` stays deleted.
    let new = Writer { generation: 6, recorded: StreamId::new(10, 1) };
    sink.apply(project, new, &plan(&[node(3, "a", 2, EventType::NodeDeleted)])).await.unwrap();
    let backwards = sink.apply(project, new, &plan(&[node(2, "a", 3, EventType::NodeAdded)])).await;
    assert!(matches!(backwards, Err(SinkError::Fenced(_))), "{backwards:?}");
    assert!(dump_sink(sink, project).await.nodes.is_empty(), "the deleted node stays deleted");
    assert_eq!(sink.open(project, 6).await.unwrap(), Some(StreamId::new(10, 3)), "the record did not move back");

    // A record behind what the writer knows it wrote: the sink lost data.
    let ahead = Writer { generation: 6, recorded: StreamId::new(10, 4) };
    let behind = sink.apply(project, ahead, &plan(&[node(5, "c", 1, EventType::NodeAdded)])).await;
    assert!(matches!(behind, Err(SinkError::Lost(_))), "{behind:?}");
    assert!(dump_sink(sink, project).await.nodes.is_empty());
}
