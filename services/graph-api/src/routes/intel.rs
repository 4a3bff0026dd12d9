//! Code-intelligence queries: callers, callees, impact, path, dependencies, context (`crate::intel`). A `symbol`
//! is a node id, or a name `/nodes/search` finds first (the answer's `resolution` says which, and what else the
//! name matched).

use std::ops::RangeInclusive;

use axum::{extract::State, Json};
use codegraph_shared::{http::ApiError, names::RedisNames};
use serde::Deserialize;

use crate::{
    extract::{Params, Project},
    intel::{
        self,
        calls::{CallDirection, CallGraph, CallQuery},
        context::SymbolContext,
        deps::Dependencies,
        impact::Impact,
        path::DependencyPath,
        Bounds, Resolved,
    },
    routes::ErrorBody,
    state::AppState,
};

/// Calls deep a `/callers` or `/callees` walk may go.
pub const CALL_DEPTH: RangeInclusive<u32> = 1..=5;
/// Levels of dependents `/impact` may go.
pub const IMPACT_DEPTH: RangeInclusive<u32> = 1..=10;
/// Relationships a `/path` may have.
pub const PATH_DEPTH: RangeInclusive<u32> = 1..=10;
/// The confidences `min_confidence` may ask for.
pub const CONFIDENCE: RangeInclusive<f64> = 0.0..=1.0;

fn bounds(state: &AppState) -> Bounds {
    let api = &state.settings.api;
    Bounds { relationships: api.neighbors_max_relationships, scan: api.search_scan_limit, max_limit: api.max_page_size }
}

/// The project (404 unless it exists) and the symbol named by `text`.
async fn symbol(state: &AppState, project: &Project, text: &str, as_path: bool) -> Result<Resolved, ApiError> {
    intel::require_project(&mut state.conn(), &project.0).await?;
    resolved(state, project, text, as_path).await
}

/// The symbol named by `text` in a project known to exist.
async fn resolved(state: &AppState, project: &Project, text: &str, as_path: bool) -> Result<Resolved, ApiError> {
    let names = RedisNames::new(&project.0);
    intel::resolve(&mut state.conn(), &names, text, as_path, state.settings.api.search_scan_limit).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallParams {
    /// A node id, or a name (the first node `/nodes/search` finds).
    pub symbol: String,
    /// Calls deep, 1 (default: direct only) to 5.
    pub depth: Option<u32>,
    /// Follow only `calls` relationships of at least this confidence, 0 (default) to 1; one without a
    /// `confidence` counts as 1.
    pub min_confidence: Option<f64>,
    /// Most results (default 500).
    pub limit: Option<usize>,
    /// Callers only: also list possible callers, nodes whose unresolved calls name the symbol (scans the
    /// project's nodes, up to `api.search_scan_limit`). Default false.
    pub unresolved: Option<bool>,
    #[allow(dead_code)]
    project: Option<String>,
}

async fn call_graph(
    state: AppState,
    project: Project,
    p: CallParams,
    direction: CallDirection,
) -> Result<Json<CallGraph>, ApiError> {
    let depth = intel::check_range("depth", p.depth.unwrap_or(1), CALL_DEPTH)?;
    let min_confidence = p.min_confidence.unwrap_or(0.0);
    if !CONFIDENCE.contains(&min_confidence) {
        let (low, high) = CONFIDENCE.into_inner();
        return Err(ApiError::bad_request("invalid_query", format!("min_confidence must be {low} to {high}")));
    }
    let limit = intel::clamp_limit(p.limit, 500, state.settings.api.max_page_size);
    let resolved = symbol(&state, &project, &p.symbol, false).await?;
    let query = CallQuery { direction, depth, min_confidence, limit, unresolved: p.unresolved.unwrap_or(false) };
    let names = RedisNames::new(&project.0);
    Ok(Json(intel::calls::calls(&mut state.conn(), &names, resolved, query, bounds(&state)).await?))
}

/// Who calls a symbol, directly and transitively, through `calls` relationships; with `unresolved=true`, also the
/// possible callers the analysis could not resolve (listed apart).
#[utoipa::path(get, path = "/callers", tag = "intel", params(CallParams),
    responses((status = 200, body = CallGraph), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn callers(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<CallParams>,
) -> Result<Json<CallGraph>, ApiError> {
    call_graph(state, project, p, CallDirection::Callers).await
}

/// What a symbol calls, directly and transitively, through `calls` relationships; the calls the analysis could
/// not resolve are listed apart (`unresolved`).
#[utoipa::path(get, path = "/callees", tag = "intel", params(CallParams),
    responses((status = 200, body = CallGraph), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn callees(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<CallParams>,
) -> Result<Json<CallGraph>, ApiError> {
    call_graph(state, project, p, CallDirection::Callees).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImpactParams {
    /// A node id, or a name.
    pub symbol: String,
    /// Levels of dependents, 1 to 10 (default 3).
    pub depth: Option<u32>,
    /// Most dependents (default 1000).
    pub limit: Option<usize>,
    #[allow(dead_code)]
    project: Option<String>,
}

/// Everything that transitively depends on a symbol or its members (incoming `calls`, `imports`, `inherits`,
/// `implements`), grouped by depth, with counts per depth, kind and type.
#[utoipa::path(get, path = "/impact", tag = "intel", params(ImpactParams),
    responses((status = 200, body = Impact), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn impact(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<ImpactParams>,
) -> Result<Json<Impact>, ApiError> {
    let depth = intel::check_range("depth", p.depth.unwrap_or(3), IMPACT_DEPTH)?;
    let limit = intel::clamp_limit(p.limit, 1000, state.settings.api.max_page_size);
    let resolved = symbol(&state, &project, &p.symbol, false).await?;
    let names = RedisNames::new(&project.0);
    Ok(Json(intel::impact::impact(&mut state.conn(), &names, resolved, depth, limit, bounds(&state)).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathParams {
    /// Where the path starts: a node id, or a name.
    pub from: String,
    /// Where it ends: a node id, or a name.
    pub to: String,
    /// Most relationships on the path, 1 to 10 (default 6).
    pub max_depth: Option<u32>,
    /// Relationship types to follow, comma-separated (default `calls,imports,inherits,implements`; `contains`
    /// and `defines` allowed).
    pub types: Option<String>,
    #[allow(dead_code)]
    project: Option<String>,
}

/// The shortest directed dependency path from one symbol to another; 404 `no_path` when there is none.
#[utoipa::path(get, path = "/path", tag = "intel", params(PathParams),
    responses((status = 200, body = DependencyPath), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn path(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<PathParams>,
) -> Result<Json<DependencyPath>, ApiError> {
    let max_depth = intel::check_range("max_depth", p.max_depth.unwrap_or(6), PATH_DEPTH)?;
    let types = intel::path::parse_types(p.types.as_deref())?;
    let from = symbol(&state, &project, &p.from, false).await?;
    let to = resolved(&state, &project, &p.to, false).await?;
    let names = RedisNames::new(&project.0);
    let mut conn = state.conn();
    let path = intel::path::shortest_path(&mut conn, &names, from, to, types, max_depth, bounds(&state));
    Ok(Json(path.await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DependencyParams {
    /// A file or module: a node id, a path (`src/app.py`, for `file:src/app.py`), or a name.
    pub target: String,
    /// Most entries in each list (default 500).
    pub limit: Option<usize>,
    #[allow(dead_code)]
    project: Option<String>,
}

/// A file's or module's imports both ways: what it imports, and who imports it or one of its members.
#[utoipa::path(get, path = "/dependencies", tag = "intel", params(DependencyParams),
    responses((status = 200, body = Dependencies), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn dependencies(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<DependencyParams>,
) -> Result<Json<Dependencies>, ApiError> {
    let limit = intel::clamp_limit(p.limit, 500, state.settings.api.max_page_size);
    let resolved = symbol(&state, &project, &p.target, true).await?;
    let names = RedisNames::new(&project.0);
    Ok(Json(intel::deps::dependencies(&mut state.conn(), &names, resolved, limit, bounds(&state)).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContextParams {
    /// A node id, or a name.
    pub symbol: String,
    /// Include the source text of the symbol's lines when the analysed folder is readable (default true).
    pub source: Option<bool>,
    /// Most members listed (default 200).
    pub members_limit: Option<usize>,
    #[allow(dead_code)]
    project: Option<String>,
}

/// A symbol with its container chain, members, file and lines, and the source text of those lines (read only
/// from inside the project's analysed folder, when graph-api can read it).
#[utoipa::path(get, path = "/context", tag = "intel", params(ContextParams),
    responses((status = 200, body = SymbolContext), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn context(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<ContextParams>,
) -> Result<Json<SymbolContext>, ApiError> {
    let members_limit = intel::clamp_limit(p.members_limit, 200, state.settings.api.max_page_size);
    let resolved = symbol(&state, &project, &p.symbol, false).await?;
    let names = RedisNames::new(&project.0);
    let source = p.source.unwrap_or(true);
    let mut conn = state.conn();
    let answer = intel::context::context(&mut conn, &names, resolved, source, members_limit, bounds(&state));
    Ok(Json(answer.await?))
}
