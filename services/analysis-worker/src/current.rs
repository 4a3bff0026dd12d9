//! Reads what the graph in Redis holds now, by owner (see [`crate::desired`]): one file's nodes are its file
//! node and everything reachable from it through `defines` edges within the file; its edges are the edges
//! leaving those nodes plus the `contains` edge from its directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use codegraph_shared::{
    functions::read_at_generation,
    graph::{Node, Relationship},
    names::RedisNames,
};
use redis::aio::ConnectionLike;

use crate::desired::{dir_id, dir_owner, file_id, file_owner, Owned, Owner};

/// Whether an edge type belongs to its target's owner (structure) rather than its source's.
pub fn is_structural(rel_type: &str) -> bool {
    rel_type == "contains" || rel_type == "defines"
}

/// The owner of a node as stored.
pub fn node_owner(n: &Node) -> Owner {
    match (&n.file, n.kind.as_str()) {
        (Some(f), _) => file_owner(f),
        (None, "directory") => dir_owner(n.id.strip_prefix("dir:").unwrap_or(&n.id)),
        _ => format!("x:{}", n.id),
    }
}

async fn hmget<C: ConnectionLike + Send, T: serde::de::DeserializeOwned>(
    conn: &mut C,
    key: &str,
    ids: &[String],
) -> redis::RedisResult<Vec<Option<T>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<Option<String>> = redis::cmd("HMGET").arg(key).arg(ids).query_async(conn).await?;
    Ok(raw.into_iter().map(|r| r.and_then(|s| serde_json::from_str(&s).ok())).collect())
}

/// Which adjacency set of a node.
#[derive(Clone, Copy)]
enum Adjacent {
    Outgoing,
    Incoming,
}

/// The relationship ids of each node's adjacency set, read in the graph's current generation (a reset starts a
/// new one) in one `MULTI`.
async fn members<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    side: Adjacent,
    node_ids: &[String],
) -> redis::RedisResult<Vec<Vec<String>>> {
    if node_ids.is_empty() {
        return Ok(Vec::new());
    }
    let (_, sets) = read_at_generation(conn, names, |pipe, generation| {
        for id in node_ids {
            pipe.smembers(match side {
                Adjacent::Outgoing => names.outgoing(generation, id),
                Adjacent::Incoming => names.incoming(generation, id),
            });
        }
    })
    .await?;
    Ok(sets)
}

/// The current entities of `owners` (owners with nothing in Redis come back empty).
pub async fn read_owned<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    owners: &BTreeSet<Owner>,
) -> redis::RedisResult<BTreeMap<Owner, Owned>> {
    let mut out: BTreeMap<Owner, Owned> = owners.iter().map(|o| (o.clone(), Owned::default())).collect();
    // Roots: file and directory nodes, with the structural edge that leads to them.
    let roots: Vec<(Owner, String)> = owners
        .iter()
        .filter_map(|o| match o.split_once(':') {
            Some(("f", p)) => Some((o.clone(), file_id(p))),
            Some(("d", p)) => Some((o.clone(), dir_id(p))),
            _ => None,
        })
        .collect();
    let root_ids: Vec<String> = roots.iter().map(|(_, id)| id.clone()).collect();
    let incoming = members(conn, names, Adjacent::Incoming, &root_ids).await?;
    let in_ids: Vec<String> = incoming.into_iter().flatten().collect();
    let in_rels: Vec<Option<Relationship>> = hmget(conn, &names.relationships(), &in_ids).await?;
    for r in in_rels.into_iter().flatten() {
        if r.rel_type == "contains" {
            if let Some((owner, _)) = roots.iter().find(|(_, id)| *id == r.target) {
                out.get_mut(owner).expect("owner").rels.insert(r.id.clone(), r);
            }
        }
    }
    // Walk down from the roots, level by level, keeping nodes of the owner's file.
    let mut frontier: Vec<(Owner, String)> = roots;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    while !frontier.is_empty() {
        let ids: Vec<String> = frontier.iter().map(|(_, id)| id.clone()).collect();
        let nodes: Vec<Option<Node>> = hmget(conn, &names.nodes(), &ids).await?;
        let mut kept = Vec::new();
        for ((owner, id), node) in frontier.into_iter().zip(nodes) {
            let Some(node) = node else { continue };
            if node_owner(&node) != owner || !seen.insert(id.clone()) {
                continue;
            }
            out.get_mut(&owner).expect("owner").nodes.insert(id.clone(), node);
            kept.push((owner, id));
        }
        let kept_ids: Vec<String> = kept.iter().map(|(_, id)| id.clone()).collect();
        let outgoing = members(conn, names, Adjacent::Outgoing, &kept_ids).await?;
        let rel_ids: Vec<(Owner, String)> = kept
            .iter()
            .zip(outgoing)
            .flat_map(|((owner, _), rels)| rels.into_iter().map(move |r| (owner.clone(), r)))
            .collect();
        let rels: Vec<Option<Relationship>> =
            hmget(conn, &names.relationships(), &rel_ids.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>()).await?;
        frontier = Vec::new();
        for ((owner, _), rel) in rel_ids.into_iter().zip(rels) {
            let Some(rel) = rel else { continue };
            if is_structural(&rel.rel_type) {
                // A directory's children belong to themselves; a file's definitions to the file.
                if owner.starts_with("f:") && !seen.contains(&rel.target) {
                    frontier.push((owner.clone(), rel.target.clone()));
                    out.get_mut(&owner).expect("owner").rels.insert(rel.id.clone(), rel);
                }
            } else {
                out.get_mut(&owner).expect("owner").rels.insert(rel.id.clone(), rel);
            }
        }
    }
    // A `defines` edge to a node of another file is not this owner's.
    for owned in out.values_mut() {
        let nodes = &owned.nodes;
        owned.rels.retain(|_, r| !is_structural(&r.rel_type) || nodes.contains_key(&r.target));
    }
    Ok(out)
}

/// The owners of the sources of edges that enter `nodes` from outside `owned` (callers in other files).
pub async fn outside_referrers<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    current: &BTreeMap<Owner, Owned>,
) -> redis::RedisResult<BTreeSet<Owner>> {
    let node_ids: Vec<String> = current.values().flat_map(|o| o.nodes.keys().cloned()).collect();
    let known: BTreeSet<&String> = current.values().flat_map(|o| o.rels.keys()).collect();
    let incoming = members(conn, names, Adjacent::Incoming, &node_ids).await?;
    let rel_ids: Vec<String> = incoming.into_iter().flatten().filter(|r| !known.contains(r)).collect();
    let rels: Vec<Option<Relationship>> = hmget(conn, &names.relationships(), &rel_ids).await?;
    let sources: Vec<String> =
        rels.into_iter().flatten().filter(|r| !is_structural(&r.rel_type)).map(|r| r.source).collect();
    let sources: Vec<String> = sources.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    let nodes: Vec<Option<Node>> = hmget(conn, &names.nodes(), &sources).await?;
    Ok(nodes.into_iter().flatten().map(|n| node_owner(&n)).collect())
}

/// Every field and value of a hash, read in `HSCAN` steps of about 1,000 (an `HGETALL` of a 100,000-node graph would
/// hold Redis for tens of milliseconds). A field changed meanwhile may come in its older or newer state.
async fn scan_hash<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> redis::RedisResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut cursor = 0u64;
    loop {
        let (next, flat): (u64, Vec<String>) =
            redis::cmd("HSCAN").arg(key).arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        let mut flat = flat.into_iter();
        while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
            out.insert(k, v);
        }
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// The whole graph of the project, by owner (for a full analysis).
pub async fn read_all<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
) -> redis::RedisResult<BTreeMap<Owner, Owned>> {
    let nodes = scan_hash(conn, &names.nodes()).await?;
    let rels = scan_hash(conn, &names.relationships()).await?;
    let mut out: BTreeMap<Owner, Owned> = BTreeMap::new();
    let mut owner_of: HashMap<String, Owner> = HashMap::with_capacity(nodes.len());
    for (id, json) in nodes {
        let Ok(n) = serde_json::from_str::<Node>(&json) else { continue };
        let owner = node_owner(&n);
        owner_of.insert(id.clone(), owner.clone());
        out.entry(owner).or_default().nodes.insert(id, n);
    }
    for (id, json) in rels {
        let Ok(r) = serde_json::from_str::<Relationship>(&json) else { continue };
        let by = if is_structural(&r.rel_type) { &r.target } else { &r.source };
        let owner = owner_of.get(by).cloned().unwrap_or_else(|| format!("x:{by}"));
        out.entry(owner).or_default().rels.insert(id, r);
    }
    Ok(out)
}
