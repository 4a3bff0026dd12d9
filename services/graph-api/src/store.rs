//! Reads of the graph state that graph-api serves. The layout is the Function library's (see `functions.lua`);
//! reads never write, so they run as plain commands, pipelined.

use std::collections::{BTreeMap, HashSet};

use codegraph_shared::{
    graph::{Node, Relationship},
    names::RedisNames,
    stream::{newest_entry_cmd, newest_entry_id},
};
use redis::{aio::ConnectionManager, RedisError};
use serde::Serialize;

fn with_version<T: serde::de::DeserializeOwned>(
    json: &str,
    version: Option<u64>,
    set: impl FnOnce(&mut T, u64),
) -> Option<T> {
    let mut entity: T = serde_json::from_str(json).ok()?;
    set(&mut entity, version.unwrap_or(0));
    Some(entity)
}

fn node_from(json: &str, version: Option<u64>) -> Option<Node> {
    with_version(json, version, |n: &mut Node, v| n.version = Some(v))
}

fn rel_from(json: &str, version: Option<u64>) -> Option<Relationship> {
    with_version(json, version, |r: &mut Relationship, v| r.version = Some(v))
}

pub async fn get_node(conn: &mut ConnectionManager, names: &RedisNames, id: &str) -> Result<Option<Node>, RedisError> {
    let (json, version): (Option<String>, Option<u64>) =
        redis::pipe().hget(names.nodes(), id).hget(names.versions(), format!("n:{id}")).query_async(conn).await?;
    Ok(json.and_then(|j| node_from(&j, version)))
}

pub async fn get_relationship(
    conn: &mut ConnectionManager,
    names: &RedisNames,
    id: &str,
) -> Result<Option<Relationship>, RedisError> {
    let (json, version): (Option<String>, Option<u64>) = redis::pipe()
        .hget(names.relationships(), id)
        .hget(names.versions(), format!("r:{id}"))
        .query_async(conn)
        .await?;
    Ok(json.and_then(|j| rel_from(&j, version)))
}

/// Nodes by id (missing ones are skipped), with their versions.
pub async fn nodes_by_id(
    conn: &mut ConnectionManager,
    names: &RedisNames,
    ids: &[String],
) -> Result<Vec<Node>, RedisError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let version_fields: Vec<String> = ids.iter().map(|id| format!("n:{id}")).collect();
    let (jsons, versions): (Vec<Option<String>>, Vec<Option<u64>>) =
        redis::pipe().hmget(names.nodes(), ids).hmget(names.versions(), &version_fields).query_async(conn).await?;
    Ok(jsons.iter().zip(versions).filter_map(|(j, v)| j.as_deref().and_then(|j| node_from(j, v))).collect())
}

/// Relationships by id (missing ones are skipped), with their versions.
pub async fn relationships_by_id(
    conn: &mut ConnectionManager,
    names: &RedisNames,
    ids: &[String],
) -> Result<Vec<Relationship>, RedisError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let version_fields: Vec<String> = ids.iter().map(|id| format!("r:{id}")).collect();
    let (jsons, versions): (Vec<Option<String>>, Vec<Option<u64>>) = redis::pipe()
        .hmget(names.relationships(), ids)
        .hmget(names.versions(), &version_fields)
        .query_async(conn)
        .await?;
    Ok(jsons.iter().zip(versions).filter_map(|(j, v)| j.as_deref().and_then(|j| rel_from(j, v))).collect())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub nodes: u64,
    pub relationships: u64,
    pub node_kinds: BTreeMap<String, u64>,
    pub relationship_types: BTreeMap<String, u64>,
    /// ID of the newest event on the project's stream (null before the first).
    pub last_event_id: Option<String>,
}

pub async fn stats(conn: &mut ConnectionManager, names: &RedisNames) -> Result<Stats, RedisError> {
    // One MULTI, so the counts and the event id are of the same moment.
    let (nodes, relationships, node_kinds, relationship_types, last): (
        u64,
        u64,
        BTreeMap<String, u64>,
        BTreeMap<String, u64>,
        redis::Value,
    ) = redis::pipe()
        .atomic()
        .hlen(names.nodes())
        .hlen(names.relationships())
        .hgetall(names.node_kinds())
        .hgetall(names.relationship_types())
        .add_command(newest_entry_cmd(&names.cdc_stream()))
        .query_async(conn)
        .await?;
    Ok(Stats {
        nodes,
        relationships,
        node_kinds,
        relationship_types,
        last_event_id: newest_entry_id(last).map(|id| id.to_string()),
    })
}

/// One page of the graph: nodes in hash-scan order, with the relationships that leave them (so every
/// relationship appears once, on the page of its source node).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub nodes: Vec<Node>,
    pub relationships: Vec<Relationship>,
    /// Pass back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

pub async fn page(
    conn: &mut ConnectionManager,
    names: &RedisNames,
    cursor: u64,
    limit: usize,
    kind: Option<&str>,
) -> Result<(Vec<Node>, Vec<Relationship>, u64), RedisError> {
    let (next, flat): (u64, Vec<String>) =
        redis::cmd("HSCAN").arg(names.nodes()).arg(cursor).arg("COUNT").arg(limit).query_async(conn).await?;
    let ids: Vec<String> = flat.chunks_exact(2).map(|kv| kv[0].clone()).collect();
    let mut nodes = nodes_by_id(conn, names, &ids).await?;
    if let Some(kind) = kind {
        nodes.retain(|n| n.kind == kind);
    }
    let mut pipe = redis::pipe();
    for n in &nodes {
        pipe.smembers(names.outgoing(&n.id));
    }
    let out: Vec<Vec<String>> = if nodes.is_empty() { Vec::new() } else { pipe.query_async(conn).await? };
    let rel_ids: Vec<String> = out.into_iter().flatten().collect();
    let mut relationships = relationships_by_id(conn, names, &rel_ids).await?;
    relationships.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((nodes, relationships, next))
}

/// Direction of a traversal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Out,
    In,
    #[default]
    Both,
}

/// Breadth-first neighbourhood of `root` up to `depth` hops, at most `max_nodes` nodes.
pub async fn neighbors(
    conn: &mut ConnectionManager,
    names: &RedisNames,
    root: &str,
    direction: Direction,
    rel_type: Option<&str>,
    depth: u32,
    max_nodes: usize,
) -> Result<(Vec<Node>, Vec<Relationship>, bool), RedisError> {
    let mut seen_nodes: HashSet<String> = HashSet::from([root.to_owned()]);
    let mut seen_rels: HashSet<String> = HashSet::new();
    let mut frontier = vec![root.to_owned()];
    let mut node_ids = Vec::new();
    let mut rels = Vec::new();
    let mut truncated = false;
    for _ in 0..depth {
        if frontier.is_empty() {
            break;
        }
        let mut pipe = redis::pipe();
        for id in &frontier {
            if direction != Direction::In {
                pipe.smembers(names.outgoing(id));
            }
            if direction != Direction::Out {
                pipe.smembers(names.incoming(id));
            }
        }
        let sets: Vec<Vec<String>> = pipe.query_async(conn).await?;
        let new_rel_ids: Vec<String> = sets.into_iter().flatten().filter(|r| seen_rels.insert(r.clone())).collect();
        let found = relationships_by_id(conn, names, &new_rel_ids).await?;
        let mut next = Vec::new();
        for r in found {
            if rel_type.is_some_and(|t| t != r.rel_type) {
                continue;
            }
            for end in [&r.source, &r.target] {
                if !seen_nodes.contains(end) {
                    if seen_nodes.len() > max_nodes {
                        truncated = true;
                        continue;
                    }
                    seen_nodes.insert(end.clone());
                    next.push(end.clone());
                }
            }
            rels.push(r);
        }
        node_ids.extend(next.iter().cloned());
        frontier = next;
    }
    let nodes = nodes_by_id(conn, names, &node_ids).await?;
    Ok((nodes, rels, truncated))
}

/// Nodes whose name or id contains `q` (case-insensitive), optionally of one kind. Exact name matches first,
/// then prefix matches, then the rest. Looks at no more than `scan_limit` nodes.
pub async fn search(
    conn: &mut ConnectionManager,
    names: &RedisNames,
    q: &str,
    kind: Option<&str>,
    limit: usize,
    scan_limit: usize,
) -> Result<(Vec<Node>, bool), RedisError> {
    let needle = q.to_lowercase();
    let mut cursor = 0u64;
    let mut scanned = 0usize;
    let mut hits: Vec<(u8, String, String)> = Vec::new();
    loop {
        let (next, flat): (u64, Vec<String>) =
            redis::cmd("HSCAN").arg(names.nodes()).arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        for kv in flat.chunks_exact(2) {
            scanned += 1;
            let Ok(node) = serde_json::from_str::<Node>(&kv[1]) else { continue };
            if kind.is_some_and(|k| k != node.kind) {
                continue;
            }
            let name = node.name.to_lowercase();
            let rank = if name == needle {
                0
            } else if name.starts_with(&needle) {
                1
            } else if name.contains(&needle) || node.id.to_lowercase().contains(&needle) {
                2
            } else {
                continue;
            };
            hits.push((rank, name, node.id));
        }
        cursor = next;
        // Enough exact matches end the scan early; otherwise keep looking for better-ranked ones.
        let exact = hits.iter().filter(|h| h.0 == 0).count();
        if cursor == 0 || exact >= limit || scanned >= scan_limit {
            break;
        }
    }
    let truncated = cursor != 0;
    hits.sort();
    hits.dedup_by(|a, b| a.2 == b.2);
    hits.truncate(limit);
    let ids: Vec<String> = hits.into_iter().map(|h| h.2).collect();
    Ok((nodes_by_id(conn, names, &ids).await?, truncated))
}
