//! Code intelligence over the Redis graph: who calls a symbol and what it calls (`calls`), what depends on it
//! (`impact`), how one symbol reaches another (`path`), a file's imports both ways (`deps`), and a symbol with
//! its surroundings and source text (`context`).
//!
//! Every query walks the adjacency sets breadth first, one level per round trip: a level's sets are read in one
//! `MULTI` (with the generation check of `functions::read_at_generation`), the relationships they name in one
//! pipelined `HMGET`, and the nodes once at the end; never one round trip per node. Each walk is bounded in the
//! relationship ids it reads (`api.neighbors_max_relationships`) and in what it returns, and says `truncated`
//! when it stopped at a bound. The answers are exact for what the analysis resolved; what it could not resolve
//! (calls kept by name in `properties.unresolved_calls`) is reported apart, never mixed in.
//!
//! The walks are generic over the connection; resolving a symbol ([`resolve`]) reuses `store::search`.

pub mod calls;
pub mod context;
pub mod deps;
pub mod impact;
pub mod path;

use std::collections::HashMap;

use codegraph_shared::{
    functions::generation,
    graph::{Node, Relationship},
    http::ApiError,
    names::{Generation, RedisNames, PROJECTS_KEY},
    project::ProjectName,
    redis_handle::RedisConn,
};
use redis::{aio::ConnectionLike, RedisError};
use serde::Serialize;

use crate::store;

/// Fields per `HMGET`, so no single command is long.
const FIELDS_PER_READ: usize = 1000;
/// Fewest members asked of one adjacency set, however small the budget's share per set.
const MIN_SET_READ: usize = 64;
/// Other matches of an ambiguous name listed in [`Resolution::other_matches`].
const OTHER_MATCHES: usize = 10;

/// The relationship types a dependency follows: `a` depends on `b` when `a -[t]-> b` for one of these.
pub const DEPENDENCY_TYPES: [&str; 4] = ["calls", "imports", "inherits", "implements"];
/// The structural relationships: a container `contains` (directories) or `defines` (files, classes) its members.
pub const STRUCTURE_TYPES: [&str; 2] = ["contains", "defines"];

/// A node in an answer, without its properties.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SymbolRef {
    pub id: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_start: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_end: Option<u32>,
}

impl From<&Node> for SymbolRef {
    fn from(n: &Node) -> Self {
        Self {
            id: n.id.clone(),
            kind: n.kind.clone(),
            name: n.name.clone(),
            file: n.file.clone(),
            line_start: n.line_start,
            line_end: n.line_end,
        }
    }
}

/// How the text a client gave became a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResolvedBy {
    /// The text is a node id.
    Id,
    /// `file:<text>` is a node id (`/dependencies` only).
    Path,
    /// The first node `/nodes/search` finds for the text.
    Name,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Resolution {
    /// The text as given.
    pub query: String,
    pub by: ResolvedBy,
    /// Other nodes the name matched too (at most 10; empty unless `by` is `name`).
    pub other_matches: Vec<SymbolRef>,
}

/// A symbol found: the node and how.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub node: Node,
    pub resolution: Resolution,
}

/// What a walk may read, from the settings.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Relationship ids read from adjacency sets over a whole query (`api.neighbors_max_relationships`).
    pub relationships: usize,
    /// Nodes a name search looks at (`api.search_scan_limit`); also bounds the possible-callers scan.
    pub scan: usize,
    /// Largest `limit` a client may ask for (`api.max_page_size`).
    pub max_limit: usize,
}

/// 404 `unknown_project` unless the project has ever had a mutation or job.
pub async fn require_project<C: ConnectionLike + Send>(conn: &mut C, project: &ProjectName) -> Result<(), ApiError> {
    let known: bool = redis::cmd("SISMEMBER").arg(PROJECTS_KEY).arg(project.as_str()).query_async(conn).await?;
    if known {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_project",
            format!("no project {:?}: GET /api/graph/projects lists the projects that exist", project.as_str()),
        ))
    }
}

/// A node id, else (with `as_path`) `file:<text>`, else the first node the search finds for the text (exact name,
/// then prefix, then substring), with up to 10 other matches named. 400 for empty or overlong text, 404
/// `unknown_symbol` when nothing matches.
pub async fn resolve(
    conn: &mut RedisConn,
    names: &RedisNames,
    text: &str,
    as_path: bool,
    scan_limit: usize,
) -> Result<Resolved, ApiError> {
    if text.is_empty() || text.len() > codegraph_shared::graph::MAX_ID_LEN {
        return Err(ApiError::bad_request("invalid_query", "a symbol must be 1 to 512 bytes: a node id or a name"));
    }
    let found = |node: Node, by| Resolved {
        node,
        resolution: Resolution { query: text.to_owned(), by, other_matches: Vec::new() },
    };
    if let Some(node) = store::get_node(conn, names, text).await? {
        return Ok(found(node, ResolvedBy::Id));
    }
    if as_path {
        if let Some(node) = store::get_node(conn, names, &format!("file:{text}")).await? {
            return Ok(found(node, ResolvedBy::Path));
        }
    }
    let (mut nodes, _) = store::search(conn, names, text, None, OTHER_MATCHES + 1, scan_limit).await?;
    if nodes.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_symbol",
            format!("no node with id {text:?} and none whose name matches it in project {}", names.project()),
        ));
    }
    let node = nodes.remove(0);
    let mut resolved = found(node, ResolvedBy::Name);
    resolved.resolution.other_matches = nodes.iter().map(SymbolRef::from).collect();
    Ok(resolved)
}

/// 400 `invalid_query` unless `value` is within `range` (the parameter named `name`).
pub fn check_range(name: &str, value: u32, range: std::ops::RangeInclusive<u32>) -> Result<u32, ApiError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be {} to {}, not {value}", range.start(), range.end()),
        ))
    }
}

/// `limit` (or `default`) held to 1..=`max`.
pub fn clamp_limit(limit: Option<usize>, default: usize, max: usize) -> usize {
    limit.unwrap_or(default).clamp(1, max.max(1))
}

/// A relationship's `confidence` property; one without counts as certain (a client asserted it).
pub fn confidence(r: &Relationship) -> f64 {
    r.properties.get("confidence").and_then(serde_json::Value::as_f64).unwrap_or(1.0)
}

/// Which adjacency set of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Outgoing,
    Incoming,
}

/// Reads one project's graph for one query: the adjacency sets at one generation, relationships and nodes by id,
/// within a budget of relationship ids.
pub struct Reader<'c, C> {
    conn: &'c mut C,
    names: &'c RedisNames,
    generation: Option<Generation>,
    /// Relationship ids still allowed to be read from adjacency sets.
    budget: usize,
    /// True once a read left something out for the budget.
    pub truncated: bool,
}

impl<'c, C: ConnectionLike + Send> Reader<'c, C> {
    pub fn new(conn: &'c mut C, names: &'c RedisNames, budget: usize) -> Self {
        Self { conn, names, generation: None, budget, truncated: false }
    }

    pub fn conn(&mut self) -> &mut C {
        self.conn
    }

    pub fn names(&self) -> &RedisNames {
        self.names
    }

    /// The relationship ids of each `(node, side)` set, in the order asked, read in one `MULTI` at the current
    /// generation (again, when a reset switched it between). A set larger than its share of the budget gives
    /// only that many members (a random part: `SRANDMEMBER`), and the reader is marked truncated.
    pub async fn adjacent(&mut self, sets: &[(&str, Side)]) -> Result<Vec<Vec<String>>, ApiError> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        if self.budget == 0 {
            self.truncated = true;
            return Ok(vec![Vec::new(); sets.len()]);
        }
        let share = (self.budget / sets.len()).max(MIN_SET_READ);
        let mut at = match self.generation {
            Some(g) => g,
            None => generation(self.conn, self.names).await?,
        };
        let replies = loop {
            let mut pipe = redis::pipe();
            pipe.atomic().get(self.names.generation());
            for (id, side) in sets {
                let key = match side {
                    Side::Outgoing => self.names.outgoing(at, id),
                    Side::Incoming => self.names.incoming(at, id),
                };
                pipe.scard(&key).cmd("SRANDMEMBER").arg(&key).arg(share);
            }
            let reply: Vec<redis::Value> = pipe.query_async(self.conn).await?;
            let mut replies = reply.into_iter();
            let now: Option<u64> =
                redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil)).map_err(RedisError::from)?;
            let now = Generation(now.unwrap_or(0));
            if now == at {
                break replies.collect::<Vec<_>>();
            }
            at = now;
        };
        self.generation = Some(at);
        let mut out = Vec::with_capacity(sets.len());
        for pair in replies.chunks_exact(2) {
            let size: usize = redis::from_redis_value(pair[0].clone()).map_err(RedisError::from)?;
            let mut members: Vec<String> = redis::from_redis_value(pair[1].clone()).map_err(RedisError::from)?;
            if size > members.len() {
                self.truncated = true;
            }
            if members.len() > self.budget {
                members.truncate(self.budget);
                self.truncated = true;
            }
            self.budget -= members.len();
            members.sort_unstable();
            out.push(members);
        }
        Ok(out)
    }

    /// Relationships by id (missing ones are skipped), in the order of `ids`.
    pub async fn relationships(&mut self, ids: &[String]) -> Result<Vec<Relationship>, ApiError> {
        let hash = self.names.relationships();
        Ok(self.read_json(&hash, ids).await?.into_iter().flatten().collect())
    }

    /// Nodes by id (missing ones are skipped), without versions.
    pub async fn nodes(&mut self, ids: &[String]) -> Result<HashMap<String, Node>, ApiError> {
        let hash = self.names.nodes();
        let found: Vec<Option<Node>> = self.read_json(&hash, ids).await?;
        Ok(found.into_iter().flatten().map(|n| (n.id.clone(), n)).collect())
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &mut self,
        hash: &str,
        ids: &[String],
    ) -> Result<Vec<Option<T>>, ApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for part in ids.chunks(FIELDS_PER_READ) {
            // HMGET with one field answers a plain value in some clients' eyes: always ask as a command.
            pipe.cmd("HMGET").arg(hash).arg(part);
        }
        let parts: Vec<Vec<Option<String>>> = pipe.query_async(self.conn).await?;
        Ok(parts.into_iter().flatten().map(|j| j.and_then(|j| serde_json::from_str(&j).ok())).collect())
    }

    /// The `defines` descendants of `root` (a file's or a class's definitions, their methods…), breadth first,
    /// at most `most` and `levels` deep; `root` excluded.
    pub async fn members(&mut self, root: &str, levels: u32, most: usize) -> Result<Vec<String>, ApiError> {
        let mut seen = std::collections::HashSet::from([root.to_owned()]);
        let mut found = Vec::new();
        let mut frontier = vec![root.to_owned()];
        for _ in 0..levels {
            if frontier.is_empty() {
                break;
            }
            let sets: Vec<(&str, Side)> = frontier.iter().map(|id| (id.as_str(), Side::Outgoing)).collect();
            let ids: Vec<String> = self.adjacent(&sets).await?.into_iter().flatten().collect();
            let mut next = Vec::new();
            for r in self.relationships(&ids).await? {
                if r.rel_type == "defines" && seen.insert(r.target.clone()) {
                    if found.len() >= most {
                        self.truncated = true;
                        break;
                    }
                    found.push(r.target.clone());
                    next.push(r.target);
                }
            }
            frontier = next;
        }
        Ok(found)
    }
}
