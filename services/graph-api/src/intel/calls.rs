//! Callers and callees of a symbol through `calls` relationships, direct and transitive, with the call sites the
//! analysis could not resolve listed apart.

use std::collections::{BTreeMap, HashSet};

use codegraph_shared::{graph::Node, http::ApiError, names::RedisNames};
use redis::aio::ConnectionLike;
use serde::Serialize;

use super::{confidence, Bounds, Reader, Resolution, Resolved, Side, SymbolRef};

/// Which way a call walk goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    /// Who calls the symbol (incoming `calls`).
    Callers,
    /// What the symbol calls (outgoing `calls`).
    Callees,
}

/// What a call walk is asked for (checked by the caller: depth 1..=5, confidence 0..=1, limit ≥ 1).
#[derive(Clone, Copy, Debug)]
pub struct CallQuery {
    pub direction: CallDirection,
    pub depth: u32,
    /// `calls` edges below this confidence are not followed.
    pub min_confidence: f64,
    /// Most `results`, and most `unresolved` entries.
    pub limit: usize,
    /// Callers only: also scan the project for possible callers (unresolved calls by the symbol's name).
    pub unresolved: bool,
}

/// One caller or callee.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CallEntry {
    pub node: SymbolRef,
    /// Calls between it and the symbol (1: direct).
    pub depth: u32,
    /// The `calls` relationship that reached it.
    pub relationship_id: String,
    /// That relationship's `confidence` (1.0 when it has none).
    pub confidence: f64,
    /// The node one step closer to the symbol: the callee it calls (callers), the caller that calls it (callees).
    pub via: String,
}

/// A call the analysis could not resolve to a node, by the text written at the call site.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UnresolvedCall {
    /// The node making the call.
    pub node: SymbolRef,
    /// The call as written (`helper`, `self.run`, `os.path.join`, `?.send`).
    pub call: String,
    /// The depth its callee would have had (callers: always 1).
    pub depth: u32,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CallCounts {
    pub results: usize,
    /// Results per depth (`"1"`, `"2"`, …).
    pub by_depth: BTreeMap<String, usize>,
    pub unresolved: usize,
}

/// `GET /callers` and `GET /callees`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CallGraph {
    pub project: String,
    pub symbol: SymbolRef,
    pub resolution: Resolution,
    pub direction: CallDirection,
    pub depth: u32,
    pub min_confidence: f64,
    /// Breadth first, each node once at its smallest depth, sorted by depth then id; never the symbol itself.
    pub results: Vec<CallEntry>,
    /// Callees: the unresolved calls of the symbol and of every callee above the last depth. Callers: possible
    /// callers, nodes with an unresolved call whose last `.`-segment is the symbol's name (with `unresolved=true`).
    pub unresolved: Vec<UnresolvedCall>,
    /// Whether `unresolved` was looked for (callers: only when asked, it scans the project's nodes).
    pub unresolved_searched: bool,
    pub counts: CallCounts,
    /// True when a bound cut the answer: `limit`, the relationship budget, or the possible-callers scan.
    pub truncated: bool,
}

/// The callers or callees of `symbol`, `query.depth` calls deep.
pub async fn calls<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    symbol: Resolved,
    query: CallQuery,
    bounds: Bounds,
) -> Result<CallGraph, ApiError> {
    let root = symbol.node.id.clone();
    let callers = query.direction == CallDirection::Callers;
    let side = if callers { Side::Incoming } else { Side::Outgoing };
    let mut reader = Reader::new(conn, names, bounds.relationships);
    let mut seen: HashSet<String> = HashSet::from([root.clone()]);
    let mut found: Vec<(String, u32, String, f64, String)> = Vec::new();
    let mut frontier = vec![root.clone()];
    let mut cut = false;
    'walk: for depth in 1..=query.depth {
        if frontier.is_empty() {
            break;
        }
        let sets: Vec<(&str, Side)> = frontier.iter().map(|id| (id.as_str(), side)).collect();
        let ids: Vec<String> = reader.adjacent(&sets).await?.into_iter().flatten().collect();
        let mut rels = reader.relationships(&ids).await?;
        rels.sort_by(|a, b| a.id.cmp(&b.id));
        let mut next = Vec::new();
        for r in rels {
            let c = confidence(&r);
            if r.rel_type != "calls" || c < query.min_confidence {
                continue;
            }
            let (other, via) = if callers { (r.source, r.target) } else { (r.target, r.source) };
            if seen.contains(&other) {
                continue;
            }
            if found.len() >= query.limit {
                cut = true;
                break 'walk;
            }
            seen.insert(other.clone());
            next.push(other.clone());
            found.push((other, depth, r.id, c, via));
        }
        frontier = next;
    }
    let ids: Vec<String> = found.iter().map(|f| f.0.clone()).collect();
    let nodes = reader.nodes(&ids).await?;
    let mut results: Vec<CallEntry> = found
        .into_iter()
        .filter_map(|(id, depth, relationship_id, confidence, via)| {
            let node = SymbolRef::from(nodes.get(&id)?);
            Some(CallEntry { node, depth, relationship_id, confidence, via })
        })
        .collect();
    results.sort_by(|a, b| (a.depth, &a.node.id).cmp(&(b.depth, &b.node.id)));

    let (unresolved, searched) = if callers {
        if query.unresolved {
            let (possible, scan_cut) =
                possible_callers(reader.conn(), names, &symbol.node, query.limit, bounds.scan).await?;
            cut |= scan_cut;
            (possible, true)
        } else {
            (Vec::new(), false)
        }
    } else {
        // The symbol's own unresolved calls, then those of each callee whose calls the walk would have followed.
        let mut out = unresolved_of(&symbol.node, 1);
        for e in results.iter().filter(|e| e.depth < query.depth) {
            if let Some(n) = nodes.get(&e.node.id) {
                out.extend(unresolved_of(n, e.depth + 1));
            }
        }
        if out.len() > query.limit {
            out.truncate(query.limit);
            cut = true;
        }
        (out, true)
    };

    let mut by_depth = BTreeMap::new();
    for e in &results {
        *by_depth.entry(e.depth.to_string()).or_default() += 1;
    }
    let counts = CallCounts { results: results.len(), by_depth, unresolved: unresolved.len() };
    Ok(CallGraph {
        project: names.project().to_string(),
        symbol: SymbolRef::from(&symbol.node),
        resolution: symbol.resolution,
        direction: query.direction,
        depth: query.depth,
        min_confidence: query.min_confidence,
        results,
        unresolved,
        unresolved_searched: searched,
        counts,
        truncated: cut || reader.truncated,
    })
}

/// The `unresolved_calls` of a node, each at `depth`.
fn unresolved_of(node: &Node, depth: u32) -> Vec<UnresolvedCall> {
    let Some(serde_json::Value::Array(calls)) = node.properties.get("unresolved_calls") else { return Vec::new() };
    calls
        .iter()
        .filter_map(|c| c.as_str())
        .map(|call| UnresolvedCall { node: SymbolRef::from(node), call: call.to_owned(), depth })
        .collect()
}

/// Whether an unresolved call as written may name a symbol called `name`: the whole text or its last
/// `.`-segment is the name (`helper`, `self.helper`, `util.helper`, `?.helper`).
pub fn may_call(call: &str, name: &str) -> bool {
    call == name || call.rsplit_once('.').is_some_and(|(_, last)| last == name)
}

/// Nodes of the project whose unresolved calls may name `symbol`: one `HSCAN` pass over the nodes, at most
/// `scan_limit` of them; true when it stopped before the end (or at `most` entries).
async fn possible_callers<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    symbol: &Node,
    most: usize,
    scan_limit: usize,
) -> Result<(Vec<UnresolvedCall>, bool), ApiError> {
    let name = symbol.name.as_str();
    // A cheap test on the stored JSON before decoding it; names that JSON escapes are decoded every time.
    let plain = !name.contains(['"', '\\']) && !name.chars().any(char::is_control);
    let mut out = Vec::new();
    let (mut cursor, mut scanned) = (0u64, 0usize);
    loop {
        let (next, flat): (u64, Vec<String>) =
            redis::cmd("HSCAN").arg(names.nodes()).arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        for kv in flat.chunks_exact(2) {
            scanned += 1;
            let json = &kv[1];
            if !json.contains("\"unresolved_calls\"") || (plain && !json.contains(name)) {
                continue;
            }
            let Ok(node) = serde_json::from_str::<Node>(json) else { continue };
            if node.id == symbol.id {
                continue;
            }
            out.extend(unresolved_of(&node, 1).into_iter().filter(|u| may_call(&u.call, name)));
        }
        cursor = next;
        if cursor == 0 || scanned >= scan_limit || out.len() > most {
            break;
        }
    }
    let mut cut = cursor != 0;
    out.sort_by(|a, b| (&a.node.id, &a.call).cmp(&(&b.node.id, &b.call)));
    if out.len() > most {
        out.truncate(most);
        cut = true;
    }
    Ok((out, cut))
}

#[cfg(test)]
mod tests {
    use super::may_call;

    #[test]
    fn a_call_names_a_symbol_by_its_last_segment() {
        assert!(may_call("helper", "helper"));
        assert!(may_call("self.helper", "helper"));
        assert!(may_call("a.b.helper", "helper"));
        assert!(may_call("?.helper", "helper"));
        assert!(!may_call("helpers", "helper"));
        assert!(!may_call("helper.run", "helper"));
    }
}
