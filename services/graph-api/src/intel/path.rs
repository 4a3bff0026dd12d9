//! The shortest directed dependency path from one symbol to another: breadth first along outgoing edges of the
//! chosen types (by default `calls`, `imports`, `inherits`, `implements`: "from depends on … depends on to").
//! Structural edges (`contains`, `defines`) are left out unless asked for: through them every node reaches
//! every other via the root directory, which says nothing about dependency.

use std::collections::HashMap;

use codegraph_shared::{graph::Relationship, http::ApiError, names::RedisNames};
use redis::aio::ConnectionLike;
use serde::Serialize;
use serde_json::json;

use super::{confidence, Bounds, Reader, Resolution, Resolved, Side, SymbolRef, DEPENDENCY_TYPES, STRUCTURE_TYPES};

/// A step of a path.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PathStep {
    pub id: String,
    #[serde(rename = "type")]
    pub rel_type: String,
    pub source: String,
    pub target: String,
    pub confidence: f64,
}

impl From<&Relationship> for PathStep {
    fn from(r: &Relationship) -> Self {
        Self {
            id: r.id.clone(),
            rel_type: r.rel_type.clone(),
            source: r.source.clone(),
            target: r.target.clone(),
            confidence: confidence(r),
        }
    }
}

/// `GET /path`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DependencyPath {
    pub project: String,
    pub from: SymbolRef,
    pub to: SymbolRef,
    pub from_resolution: Resolution,
    pub to_resolution: Resolution,
    pub types: Vec<String>,
    pub max_depth: u32,
    /// Relationships on the path (0 when `from` is `to`).
    pub length: usize,
    /// `from` first, `to` last.
    pub nodes: Vec<SymbolRef>,
    pub relationships: Vec<PathStep>,
    /// Nodes reached before the path was found.
    pub explored: usize,
}

/// The relationship types a path may follow: `types` as a comma list, default [`DEPENDENCY_TYPES`]; 400 for a
/// type that is neither a dependency nor a structural one.
pub fn parse_types(types: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(types) = types.filter(|t| !t.trim().is_empty()) else {
        return Ok(DEPENDENCY_TYPES.iter().map(|t| t.to_string()).collect());
    };
    let mut out: Vec<String> = Vec::new();
    for t in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !DEPENDENCY_TYPES.contains(&t) && !STRUCTURE_TYPES.contains(&t) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("types: {t:?} is not one of calls, imports, inherits, implements, contains, defines"),
            ));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

/// The shortest path from `from` to `to` of at most `max_depth` relationships of `types`; 404 `no_path` when
/// there is none within the bounds.
pub async fn shortest_path<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    from: Resolved,
    to: Resolved,
    types: Vec<String>,
    max_depth: u32,
    bounds: Bounds,
) -> Result<DependencyPath, ApiError> {
    let (start, goal) = (from.node.id.clone(), to.node.id.clone());
    let mut reader = Reader::new(conn, names, bounds.relationships);
    // Each reached node → the relationship that reached it first (breadth first: a shortest one).
    let mut reached: HashMap<String, Option<Relationship>> = HashMap::from([(start.clone(), None)]);
    let mut frontier = vec![start.clone()];
    let mut found = start == goal;
    for _ in 0..max_depth {
        if found || frontier.is_empty() {
            break;
        }
        let sets: Vec<(&str, Side)> = frontier.iter().map(|id| (id.as_str(), Side::Outgoing)).collect();
        let ids: Vec<String> = reader.adjacent(&sets).await?.into_iter().flatten().collect();
        let mut rels = reader.relationships(&ids).await?;
        rels.sort_by(|a, b| a.id.cmp(&b.id));
        let mut next = Vec::new();
        for r in rels {
            if !types.contains(&r.rel_type) || reached.contains_key(&r.target) {
                continue;
            }
            if reached.len() >= bounds.max_limit.max(1) * 2 {
                reader.truncated = true;
                break;
            }
            let target = r.target.clone();
            reached.insert(target.clone(), Some(r));
            if target == goal {
                found = true;
                break;
            }
            next.push(target);
        }
        frontier = next;
    }
    if !found {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "no_path",
            format!(
                "no path from {start:?} to {goal:?} of at most {max_depth} relationships of types {}{}",
                types.join(","),
                if reader.truncated { " within the bounds of one request (a longer search may find one)" } else { "" }
            ),
        )
        .with_details(json!({"explored": reached.len(), "max_depth": max_depth, "truncated": reader.truncated})));
    }
    let mut steps: Vec<PathStep> = Vec::new();
    let mut at = goal.clone();
    while let Some(Some(r)) = reached.get(&at) {
        steps.push(PathStep::from(r));
        at = r.source.clone();
    }
    steps.reverse();
    let mut ids = vec![start.clone()];
    ids.extend(steps.iter().map(|s| s.target.clone()));
    let nodes = reader.nodes(&ids).await?;
    // A node deleted since the walk read its relationship still appears, by id only.
    let nodes = ids
        .iter()
        .map(|id| {
            nodes.get(id).map(SymbolRef::from).unwrap_or_else(|| SymbolRef {
                id: id.clone(),
                kind: String::new(),
                name: String::new(),
                file: None,
                line_start: None,
                line_end: None,
            })
        })
        .collect();
    Ok(DependencyPath {
        project: names.project().to_string(),
        from: SymbolRef::from(&from.node),
        to: SymbolRef::from(&to.node),
        from_resolution: from.resolution,
        to_resolution: to.resolution,
        types,
        max_depth,
        length: steps.len(),
        nodes,
        relationships: steps,
        explored: reached.len(),
    })
}
