//! A file's or module's imports, both ways: what it imports (its outgoing `imports`: files or definitions of the
//! project, plus the imports the analysis found outside it), and who imports it or one of its members.

use std::collections::HashSet;

use codegraph_shared::{http::ApiError, names::RedisNames};
use redis::aio::ConnectionLike;
use serde::Serialize;

use super::{confidence, Bounds, Reader, Resolution, Resolved, Side, SymbolRef};

/// Deepest a member is looked for under the target (file → class → method).
const MEMBER_LEVELS: u32 = 3;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ImportEdge {
    /// The other end: what is imported (`imports`), or the importer (`imported_by`).
    pub node: SymbolRef,
    pub relationship_id: String,
    pub confidence: f64,
    /// `imported_by` only: the member of the target that is imported, absent when it is the target itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DependencyCounts {
    pub imports: usize,
    pub imported_by: usize,
    pub external_imports: usize,
}

/// `GET /dependencies`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Dependencies {
    pub project: String,
    pub target: SymbolRef,
    pub resolution: Resolution,
    /// Sorted by node id.
    pub imports: Vec<ImportEdge>,
    /// Sorted by node id, then `via`.
    pub imported_by: Vec<ImportEdge>,
    /// The target's `properties.external_imports`: imports that resolve to nothing in the project.
    pub external_imports: Vec<String>,
    pub counts: DependencyCounts,
    pub truncated: bool,
}

pub async fn dependencies<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    target: Resolved,
    limit: usize,
    bounds: Bounds,
) -> Result<Dependencies, ApiError> {
    let root = target.node.id.clone();
    let mut reader = Reader::new(conn, names, bounds.relationships);
    let members = reader.members(&root, MEMBER_LEVELS, bounds.max_limit).await?;
    let mut sets: Vec<(&str, Side)> = vec![(root.as_str(), Side::Outgoing), (root.as_str(), Side::Incoming)];
    sets.extend(members.iter().map(|m| (m.as_str(), Side::Incoming)));
    let mut ids: Vec<String> = reader.adjacent(&sets).await?.into_iter().flatten().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut rels = reader.relationships(&ids).await?;
    rels.retain(|r| r.rel_type == "imports");
    rels.sort_by(|a, b| a.id.cmp(&b.id));
    let inside: HashSet<&str> = members.iter().map(String::as_str).chain([root.as_str()]).collect();
    let mut imports = Vec::new();
    let mut imported_by = Vec::new();
    for r in &rels {
        if r.source == root {
            imports.push((r.target.clone(), r, None));
        }
        // An import from inside the target of its own member is neither way.
        if inside.contains(r.target.as_str()) && !inside.contains(r.source.as_str()) {
            let via = (r.target != root).then(|| r.target.clone());
            imported_by.push((r.source.clone(), r, via));
        }
    }
    let mut cut = false;
    for list in [&mut imports, &mut imported_by] {
        if list.len() > limit {
            list.truncate(limit);
            cut = true;
        }
    }
    let ends: Vec<String> = imports.iter().chain(&imported_by).map(|e| e.0.clone()).collect();
    let nodes = reader.nodes(&ends).await?;
    let edges = |list: Vec<(String, &codegraph_shared::graph::Relationship, Option<String>)>| {
        let mut out: Vec<ImportEdge> = list
            .into_iter()
            .filter_map(|(id, r, via)| {
                Some(ImportEdge {
                    node: SymbolRef::from(nodes.get(&id)?),
                    relationship_id: r.id.clone(),
                    confidence: confidence(r),
                    via,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.node.id, &a.via).cmp(&(&b.node.id, &b.via)));
        out
    };
    let (imports, imported_by) = (edges(imports), edges(imported_by));
    let external_imports: Vec<String> = match target.node.properties.get("external_imports") {
        Some(serde_json::Value::Array(list)) => list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    Ok(Dependencies {
        project: names.project().to_string(),
        target: SymbolRef::from(&target.node),
        resolution: target.resolution,
        counts: DependencyCounts {
            imports: imports.len(),
            imported_by: imported_by.len(),
            external_imports: external_imports.len(),
        },
        imports,
        imported_by,
        external_imports,
        truncated: cut || reader.truncated,
    })
}
