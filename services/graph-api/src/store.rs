//! Reads of the graph state that graph-api serves. The layout is the Function library's (see `functions.lua`);
//! reads never write, so they run as plain commands, pipelined. Adjacency sets are read at the graph's current
//! generation (`functions::read_at_generation`). Every read is bounded in the work it does before doing it
//! (the `[api]` bounds of `settings.rs`), not only in what it
//! returns.

use std::collections::{BTreeMap, HashSet};

use codegraph_shared::redis_handle::RedisConn;
use codegraph_shared::{
    functions::read_at_generation,
    graph::{Node, Relationship},
    names::{Generation, RedisNames},
    stream::{newest_entry_cmd, newest_entry_id},
};
use redis::RedisError;
use serde::Serialize;

/// Fields per `HMGET`: a long list is read in several commands of a pipeline, so no single command is long.
const FIELDS_PER_READ: usize = 1000;

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

pub async fn get_node(conn: &mut RedisConn, names: &RedisNames, id: &str) -> Result<Option<Node>, RedisError> {
    let (json, version): (Option<String>, Option<u64>) =
        redis::pipe().hget(names.nodes(), id).hget(names.versions(), format!("n:{id}")).query_async(conn).await?;
    Ok(json.and_then(|j| node_from(&j, version)))
}

pub async fn get_relationship(
    conn: &mut RedisConn,
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
pub async fn nodes_by_id(conn: &mut RedisConn, names: &RedisNames, ids: &[String]) -> Result<Vec<Node>, RedisError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (jsons, versions) = with_versions(conn, &names.nodes(), &names.versions(), "n:", ids).await?;
    Ok(jsons.iter().zip(versions).filter_map(|(j, v)| j.as_deref().and_then(|j| node_from(j, v))).collect())
}

/// Relationships by id (missing ones are skipped), with their versions.
pub async fn relationships_by_id(
    conn: &mut RedisConn,
    names: &RedisNames,
    ids: &[String],
) -> Result<Vec<Relationship>, RedisError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (jsons, versions) = with_versions(conn, &names.relationships(), &names.versions(), "r:", ids).await?;
    Ok(jsons.iter().zip(versions).filter_map(|(j, v)| j.as_deref().and_then(|j| rel_from(j, v))).collect())
}

/// The JSON of `ids` in `hash` and their versions (`<tag><id>` in `versions`), [`FIELDS_PER_READ`] per command.
async fn with_versions(
    conn: &mut RedisConn,
    hash: &str,
    versions: &str,
    tag: &str,
    ids: &[String],
) -> Result<(Vec<Option<String>>, Vec<Option<u64>>), RedisError> {
    let mut pipe = redis::pipe();
    for part in ids.chunks(FIELDS_PER_READ) {
        let fields: Vec<String> = part.iter().map(|id| format!("{tag}{id}")).collect();
        pipe.hmget(hash, part).hmget(versions, fields);
    }
    // Replies alternate: a part's JSON, then its versions.
    let replies: Vec<Vec<Option<String>>> = pipe.query_async(conn).await?;
    let (mut jsons, mut found) = (Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len()));
    for pair in replies.chunks_exact(2) {
        jsons.extend(pair[0].iter().cloned());
        found.extend(pair[1].iter().map(|v| v.as_deref().and_then(|v| v.parse().ok())));
    }
    Ok((jsons, found))
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

pub async fn stats(conn: &mut RedisConn, names: &RedisNames) -> Result<Stats, RedisError> {
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

/// One page of the graph: first every node, page by page in hash-scan order, then every relationship the same
/// way, so a page's work is bounded by its `limit` however many relationships a node has (and every
/// relationship comes after both its ends).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub nodes: Vec<Node>,
    pub relationships: Vec<Relationship>,
    /// Pass back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Where a walk over the graph's pages is: in the nodes hash, then in the relationships hash, by `HSCAN` cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageCursor {
    Nodes(u64),
    Relationships(u64),
}

impl PageCursor {
    /// `<n>` (nodes; the only form before relationships had pages of their own) or `r<n>`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.strip_prefix('r') {
            Some(r) => r.parse().ok().map(Self::Relationships),
            None => s.parse().ok().map(Self::Nodes),
        }
    }
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nodes(c) => write!(f, "{c}"),
            Self::Relationships(c) => write!(f, "r{c}"),
        }
    }
}

/// One `HSCAN` step of about `limit` entries of `hash`: the next cursor and the entries.
async fn scan_step(
    conn: &mut RedisConn,
    hash: &str,
    cursor: u64,
    limit: usize,
) -> Result<(u64, Vec<(String, String)>), RedisError> {
    let (next, flat): (u64, Vec<String>) =
        redis::cmd("HSCAN").arg(hash).arg(cursor).arg("COUNT").arg(limit).query_async(conn).await?;
    let mut entries = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        entries.push((k, v));
    }
    Ok((next, entries))
}

/// The versions of `ids` (`<tag><id>`), [`FIELDS_PER_READ`] per command.
async fn versions_of(
    conn: &mut RedisConn,
    names: &RedisNames,
    tag: &str,
    ids: impl Iterator<Item = &String>,
) -> Result<Vec<Option<u64>>, RedisError> {
    let fields: Vec<String> = ids.map(|id| format!("{tag}{id}")).collect();
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for part in fields.chunks(FIELDS_PER_READ) {
        pipe.hmget(names.versions(), part);
    }
    let parts: Vec<Vec<Option<u64>>> = pipe.query_async(conn).await?;
    Ok(parts.into_iter().flatten().collect())
}

/// One page from `cursor`: about `limit` nodes (of `kind`, when given), or about `limit` relationships (leaving
/// nodes of `kind`); the cursor of the next page, `None` after the last.
pub async fn page(
    conn: &mut RedisConn,
    names: &RedisNames,
    cursor: PageCursor,
    limit: usize,
    kind: Option<&str>,
) -> Result<(Vec<Node>, Vec<Relationship>, Option<PageCursor>), RedisError> {
    match cursor {
        PageCursor::Nodes(at) => {
            let (next, entries) = scan_step(conn, &names.nodes(), at, limit).await?;
            let versions = versions_of(conn, names, "n:", entries.iter().map(|(id, _)| id)).await?;
            let mut nodes: Vec<Node> =
                entries.iter().zip(versions).filter_map(|((_, json), v)| node_from(json, v)).collect();
            if let Some(kind) = kind {
                nodes.retain(|n| n.kind == kind);
            }
            let next = if next == 0 { PageCursor::Relationships(0) } else { PageCursor::Nodes(next) };
            Ok((nodes, Vec::new(), Some(next)))
        }
        PageCursor::Relationships(at) => {
            let (next, entries) = scan_step(conn, &names.relationships(), at, limit).await?;
            let versions = versions_of(conn, names, "r:", entries.iter().map(|(id, _)| id)).await?;
            let mut rels: Vec<Relationship> =
                entries.iter().zip(versions).filter_map(|((_, json), v)| rel_from(json, v)).collect();
            if let Some(kind) = kind {
                let sources: Vec<String> =
                    rels.iter().map(|r| r.source.clone()).collect::<HashSet<_>>().into_iter().collect();
                let of_kind: HashSet<String> = nodes_by_id(conn, names, &sources)
                    .await?
                    .into_iter()
                    .filter(|n| n.kind == kind)
                    .map(|n| n.id)
                    .collect();
                rels.retain(|r| of_kind.contains(&r.source));
            }
            rels.sort_by(|a, b| a.id.cmp(&b.id));
            Ok((Vec::new(), rels, (next != 0).then_some(PageCursor::Relationships(next))))
        }
    }
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

/// One adjacency set a traversal reads: whose, which side, and how much of it.
struct SetRead {
    node: usize,
    outgoing: bool,
    /// `None`: all of it (it fits the budget); `Some(n)`: one `SSCAN` step of about `n` members.
    part: Option<usize>,
}

impl SetRead {
    fn key(&self, names: &RedisNames, generation: Generation, frontier: &[String]) -> String {
        let id = &frontier[self.node];
        if self.outgoing {
            names.outgoing(generation, id)
        } else {
            names.incoming(generation, id)
        }
    }
}

/// The relationship ids around `frontier` (one hop in `direction`), at most `budget` of them, read at the current
/// generation: the sizes first, then whole sets while they fit, one `SSCAN` step of the first that does not.
/// Returns the ids and whether some were left unread.
async fn adjacent_ids(
    conn: &mut RedisConn,
    names: &RedisNames,
    frontier: &[String],
    direction: Direction,
    budget: usize,
) -> Result<(Vec<String>, bool), RedisError> {
    let sides: Vec<(usize, bool)> = (0..frontier.len())
        .flat_map(|node| {
            [
                (direction != Direction::In).then_some((node, true)),
                (direction != Direction::Out).then_some((node, false)),
            ]
        })
        .flatten()
        .collect();
    let (_, sizes): (Generation, Vec<usize>) = read_at_generation(conn, names, |pipe, generation| {
        for &(node, outgoing) in &sides {
            pipe.scard(SetRead { node, outgoing, part: None }.key(names, generation, frontier));
        }
    })
    .await?;
    let (mut left, mut truncated, mut reads) = (budget, false, Vec::new());
    for (&(node, outgoing), size) in sides.iter().zip(sizes) {
        if size == 0 {
            continue;
        }
        if left == 0 {
            truncated = true;
            break;
        }
        let part = (size > left).then_some(left);
        truncated |= part.is_some();
        left -= size.min(left);
        reads.push(SetRead { node, outgoing, part });
    }
    if reads.is_empty() {
        return Ok((Vec::new(), truncated));
    }
    let (_, replies): (Generation, Vec<redis::Value>) = read_at_generation(conn, names, |pipe, generation| {
        for read in &reads {
            let key = read.key(names, generation, frontier);
            match read.part {
                None => pipe.smembers(key),
                Some(n) => pipe.cmd("SSCAN").arg(key).arg(0).arg("COUNT").arg(n),
            };
        }
    })
    .await?;
    let mut ids = Vec::new();
    for (read, reply) in reads.iter().zip(replies) {
        let members: Vec<String> = match read.part {
            None => redis::from_redis_value(reply)?,
            Some(_) => redis::from_redis_value::<(u64, Vec<String>)>(reply)?.1,
        };
        ids.extend(members);
    }
    // A set may have grown since its size was read, and SSCAN may return a few more than asked.
    if ids.len() > budget {
        ids.truncate(budget);
        truncated = true;
    }
    Ok((ids, truncated))
}

/// Breadth-first neighbourhood of `root` up to `depth` hops, at most `max_nodes` nodes, reading at most
/// `max_relationships` relationship ids from adjacency sets (over all hops); `true` when it stopped at a bound.
#[allow(clippy::too_many_arguments)]
pub async fn neighbors(
    conn: &mut RedisConn,
    names: &RedisNames,
    root: &str,
    direction: Direction,
    rel_type: Option<&str>,
    depth: u32,
    max_nodes: usize,
    max_relationships: usize,
) -> Result<(Vec<Node>, Vec<Relationship>, bool), RedisError> {
    let mut seen_nodes: HashSet<String> = HashSet::from([root.to_owned()]);
    let mut seen_rels: HashSet<String> = HashSet::new();
    let mut frontier = vec![root.to_owned()];
    let mut node_ids = Vec::new();
    let mut rels = Vec::new();
    let mut truncated = false;
    let mut examined = 0;
    for _ in 0..depth {
        if frontier.is_empty() {
            break;
        }
        if examined >= max_relationships {
            truncated = true;
            break;
        }
        let (ids, cut) = adjacent_ids(conn, names, &frontier, direction, max_relationships - examined).await?;
        examined += ids.len();
        truncated |= cut;
        let new_rel_ids: Vec<String> = ids.into_iter().filter(|r| seen_rels.insert(r.clone())).collect();
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
    conn: &mut RedisConn,
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
