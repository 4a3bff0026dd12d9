//! What breaks if a symbol changes: everything that transitively depends on it through `calls`, `imports`,
//! `inherits` and `implements` (their incoming edges), grouped by depth.
//!
//! The walk starts from the symbol and its members (`defines` descendants): a file's definitions, a class's
//! methods. So code that imports `f` from file `a`, or calls a method of class `C`, is in the impact of `a` or
//! `C`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use codegraph_shared::{http::ApiError, names::RedisNames};
use redis::aio::ConnectionLike;
use serde::Serialize;

use super::{Bounds, Reader, Resolution, Resolved, Side, SymbolRef, DEPENDENCY_TYPES};

/// Deepest a member is looked for under the symbol (file → class → method → nested function).
const MEMBER_LEVELS: u32 = 4;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Dependent {
    pub node: SymbolRef,
    /// The relationship by which it depends on `via`.
    pub relationship_id: String,
    /// `calls`, `imports`, `inherits` or `implements`.
    #[serde(rename = "type")]
    pub rel_type: String,
    /// The node (one level closer to the symbol, or a seed) it depends on.
    pub via: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ImpactLevel {
    pub depth: u32,
    /// Sorted by id.
    pub nodes: Vec<Dependent>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ImpactCounts {
    pub total: usize,
    pub by_depth: BTreeMap<String, usize>,
    pub by_kind: BTreeMap<String, usize>,
    pub by_type: BTreeMap<String, usize>,
}

/// `GET /impact`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Impact {
    pub project: String,
    pub symbol: SymbolRef,
    pub resolution: Resolution,
    pub depth: u32,
    pub limit: usize,
    /// The symbol and its members the walk started from (they are not listed as dependents).
    pub seeds: usize,
    /// One entry per depth that found something, depth 1 first.
    pub levels: Vec<ImpactLevel>,
    /// The files of every dependent, sorted.
    pub files: Vec<String>,
    pub counts: ImpactCounts,
    /// True when `limit` dependents or the relationship budget cut the walk.
    pub truncated: bool,
}

pub async fn impact<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    symbol: Resolved,
    depth: u32,
    limit: usize,
    bounds: Bounds,
) -> Result<Impact, ApiError> {
    let root = symbol.node.id.clone();
    let mut reader = Reader::new(conn, names, bounds.relationships);
    let mut frontier = vec![root.clone()];
    frontier.extend(reader.members(&root, MEMBER_LEVELS, bounds.max_limit).await?);
    let seeds = frontier.len();
    let mut seen: HashSet<String> = frontier.iter().cloned().collect();
    let mut found: Vec<(u32, String, String, String, String)> = Vec::new();
    let mut cut = false;
    'walk: for level in 1..=depth {
        if frontier.is_empty() {
            break;
        }
        let sets: Vec<(&str, Side)> = frontier.iter().map(|id| (id.as_str(), Side::Incoming)).collect();
        let ids: Vec<String> = reader.adjacent(&sets).await?.into_iter().flatten().collect();
        let mut rels = reader.relationships(&ids).await?;
        rels.sort_by(|a, b| a.id.cmp(&b.id));
        let mut next = Vec::new();
        for r in rels {
            if !DEPENDENCY_TYPES.contains(&r.rel_type.as_str()) || seen.contains(&r.source) {
                continue;
            }
            if found.len() >= limit {
                cut = true;
                break 'walk;
            }
            seen.insert(r.source.clone());
            next.push(r.source.clone());
            found.push((level, r.source, r.id, r.rel_type, r.target));
        }
        frontier = next;
    }
    let ids: Vec<String> = found.iter().map(|f| f.1.clone()).collect();
    let nodes = reader.nodes(&ids).await?;
    let mut levels: BTreeMap<u32, Vec<Dependent>> = BTreeMap::new();
    let (mut by_kind, mut by_type) = (BTreeMap::new(), BTreeMap::new());
    let mut files = BTreeSet::new();
    for (level, id, relationship_id, rel_type, via) in found {
        let Some(node) = nodes.get(&id) else { continue };
        *by_kind.entry(node.kind.clone()).or_default() += 1;
        *by_type.entry(rel_type.clone()).or_default() += 1;
        if let Some(f) = &node.file {
            files.insert(f.clone());
        }
        levels.entry(level).or_default().push(Dependent {
            node: SymbolRef::from(node),
            relationship_id,
            rel_type,
            via,
        });
    }
    let levels: Vec<ImpactLevel> = levels
        .into_iter()
        .map(|(depth, mut nodes)| {
            nodes.sort_by(|a, b| a.node.id.cmp(&b.node.id));
            ImpactLevel { depth, nodes }
        })
        .collect();
    let by_depth = levels.iter().map(|l| (l.depth.to_string(), l.nodes.len())).collect();
    let total = levels.iter().map(|l| l.nodes.len()).sum();
    Ok(Impact {
        project: names.project().to_string(),
        symbol: SymbolRef::from(&symbol.node),
        resolution: symbol.resolution,
        depth,
        limit,
        seeds,
        levels,
        files: files.into_iter().collect(),
        counts: ImpactCounts { total, by_depth, by_kind, by_type },
        truncated: cut || reader.truncated,
    })
}
