//! Read-only queries: stats, search, neighbours, paged subgraph, snapshot, projects.

use std::ops::RangeInclusive;

use axum::{extract::Path, extract::State, Json};
use codegraph_shared::{
    event::StreamId,
    graph::{Node, Relationship},
    http::ApiError,
    names::{RedisNames, PROJECTS_KEY},
    stream::last_generated_id,
};
use serde::{Deserialize, Serialize};

use crate::{
    extract::{Params, Project, ProjectParam},
    routes::{nodes::missing, ErrorBody},
    state::AppState,
    store::{self, Direction, Page, PageCursor, Stats},
};

/// Counts by node kind and relationship type, and the newest event's id.
#[utoipa::path(get, path = "/stats", tag = "queries", params(ProjectParam), responses((status = 200, body = Stats)))]
pub async fn stats(State(state): State<AppState>, project: Project) -> Result<Json<Stats>, ApiError> {
    Ok(Json(store::stats(&mut state.conn(), &RedisNames::new(&project.0)).await?))
}

/// Longest search text, in bytes.
pub const MAX_SEARCH_LEN: usize = 256;
/// Hops a neighbourhood may span.
pub const NEIGHBOR_DEPTH: RangeInclusive<u32> = 1..=5;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Text to find in node names (or ids), case-insensitive.
    pub q: String,
    /// Only nodes of this kind.
    pub kind: Option<String>,
    /// Most results (default 20).
    pub limit: Option<usize>,
    #[allow(dead_code)]
    project: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResult {
    pub nodes: Vec<Node>,
    /// True when the search stopped before it had looked at every node.
    pub truncated: bool,
}

/// Find nodes by name: exact matches first, then prefixes, then substrings.
#[utoipa::path(get, path = "/nodes/search", tag = "queries", params(SearchParams),
    responses((status = 200, body = SearchResult), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<SearchParams>,
) -> Result<Json<SearchResult>, ApiError> {
    if p.q.is_empty() || p.q.len() > MAX_SEARCH_LEN {
        return Err(ApiError::bad_request("invalid_query", format!("q must be 1 to {MAX_SEARCH_LEN} bytes")));
    }
    let limit = p.limit.unwrap_or(20).clamp(1, state.settings.api.max_page_size);
    let names = RedisNames::new(&project.0);
    let scan_limit = state.settings.api.search_scan_limit;
    let (nodes, truncated) =
        store::search(&mut state.conn(), &names, &p.q, p.kind.as_deref(), limit, scan_limit).await?;
    Ok(Json(SearchResult { nodes, truncated }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NeighborParams {
    /// out, in or both (default).
    #[param(inline)]
    pub direction: Option<Direction>,
    /// Only relationships of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub rel_type: Option<String>,
    /// Hops, 1 (default) to 5.
    pub depth: Option<u32>,
    /// Most nodes returned (default 500).
    pub limit: Option<usize>,
    #[allow(dead_code)]
    project: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Neighborhood {
    pub root: Node,
    pub nodes: Vec<Node>,
    pub relationships: Vec<Relationship>,
    /// True when the walk stopped at a bound: `limit` nodes, or the most relationships one request reads
    /// (`api.neighbors_max_relationships`, 10,000 by default).
    pub truncated: bool,
}

/// The nodes around one node, breadth first.
#[utoipa::path(get, path = "/nodes/{id}/neighbors", tag = "queries", params(("id" = String, Path), NeighborParams),
    responses((status = 200, body = Neighborhood), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn neighbors(
    State(state): State<AppState>,
    project: Project,
    Path(id): Path<String>,
    Params(p): Params<NeighborParams>,
) -> Result<Json<Neighborhood>, ApiError> {
    let depth = p.depth.unwrap_or(1);
    if !NEIGHBOR_DEPTH.contains(&depth) {
        let (low, high) = NEIGHBOR_DEPTH.into_inner();
        return Err(ApiError::bad_request("invalid_query", format!("depth must be {low} to {high}")));
    }
    let names = RedisNames::new(&project.0);
    let mut conn = state.conn();
    let root = store::get_node(&mut conn, &names, &id).await?.ok_or_else(|| missing("node", &id, &project))?;
    let limit = p.limit.unwrap_or(500).clamp(1, state.settings.api.max_page_size);
    let (nodes, relationships, truncated) = store::neighbors(
        &mut conn,
        &names,
        &id,
        p.direction.unwrap_or_default(),
        p.rel_type.as_deref(),
        depth,
        limit,
        state.settings.api.neighbors_max_relationships,
    )
    .await?;
    Ok(Json(Neighborhood { root, nodes, relationships, truncated }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// From the previous page's `next_cursor`; absent for the first page.
    pub cursor: Option<String>,
    /// Nodes per page (default 1000).
    pub limit: Option<usize>,
    /// Only nodes of this kind (subgraph only).
    pub kind: Option<String>,
    #[allow(dead_code)]
    project: Option<String>,
}

fn page_limit(state: &AppState, p: &PageParams) -> usize {
    p.limit.unwrap_or(1000).clamp(1, state.settings.api.max_page_size)
}

fn scan_cursor(s: &str) -> Result<PageCursor, ApiError> {
    PageCursor::parse(s)
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", format!("cursor {s:?} is not one this API gave out")))
}

/// The graph page by page (never all of it in one response): every node first, then every relationship, each
/// page about `limit` of one or the other (a page may be empty and still have a `next_cursor`). With `kind`, the
/// nodes of that kind and the relationships leaving them. An entity changed while paging may appear twice or
/// reflect its newer state; clients upsert by id.
#[utoipa::path(get, path = "/subgraph", tag = "queries", params(PageParams),
    responses((status = 200, body = Page), (status = 400, body = ErrorBody)))]
pub async fn subgraph(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<PageParams>,
) -> Result<Json<Page>, ApiError> {
    let cursor = p.cursor.as_deref().map(scan_cursor).transpose()?.unwrap_or(PageCursor::Nodes(0));
    let names = RedisNames::new(&project.0);
    let (nodes, relationships, next) =
        store::page(&mut state.conn(), &names, cursor, page_limit(&state, &p), p.kind.as_deref()).await?;
    Ok(Json(Page { nodes, relationships, next_cursor: next.map(|c| c.to_string()) }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SnapshotPage {
    /// Resume the project's stream after this ID once every page is read: applying those events with version
    /// checks (skip an event whose version is not newer than the entity's) converges on the live state.
    pub since: String,
    pub nodes: Vec<Node>,
    pub relationships: Vec<Relationship>,
    pub next_cursor: Option<String>,
}

/// The state page by page, plus the stream ID it is consistent with. The ID is taken before the first page is
/// read, so every change made while paging is also in the stream after it.
#[utoipa::path(get, path = "/snapshot", tag = "queries", params(PageParams),
    responses((status = 200, body = SnapshotPage), (status = 400, body = ErrorBody)))]
pub async fn snapshot(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<PageParams>,
) -> Result<Json<SnapshotPage>, ApiError> {
    let names = RedisNames::new(&project.0);
    let mut conn = state.conn();
    // Cursor format: `<since>.<scan cursor>`.
    let (since, cursor) = match p.cursor.as_deref() {
        // The newest ID the stream ever had (`0-0` before the first): where a reader of this snapshot resumes.
        None => (last_generated_id(&mut conn, &names.cdc_stream()).await?.to_string(), PageCursor::Nodes(0)),
        Some(c) => {
            let invalid =
                || ApiError::bad_request("invalid_cursor", format!("cursor {c:?} is not one this API gave out"));
            let (since, scan) = c.split_once('.').ok_or_else(invalid)?;
            let since = since.parse::<StreamId>().map_err(|_| invalid())?;
            (since.to_string(), scan_cursor(scan)?)
        }
    };
    let (nodes, relationships, next) = store::page(&mut conn, &names, cursor, page_limit(&state, &p), None).await?;
    let next_cursor = next.map(|next| format!("{since}.{next}"));
    Ok(Json(SnapshotPage { since, nodes, relationships, next_cursor }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Projects {
    pub projects: Vec<String>,
}

/// Every project that has had a mutation.
#[utoipa::path(get, path = "/projects", tag = "queries", responses((status = 200, body = Projects)))]
pub async fn projects(State(state): State<AppState>) -> Result<Json<Projects>, ApiError> {
    let mut projects: Vec<String> = redis::cmd("SMEMBERS").arg(PROJECTS_KEY).query_async(&mut state.conn()).await?;
    projects.sort();
    Ok(Json(Projects { projects }))
}
