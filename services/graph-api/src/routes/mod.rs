//! The HTTP surface, composed per area. Each file is one resource; handlers are thin: extract, call the
//! Function library or the store, answer. The OpenAPI document is collected from the same handlers.

pub mod admin;
pub mod batch;
pub mod nodes;
pub mod ops;
pub mod queries;
pub mod relationships;

use axum::{extract::DefaultBodyLimit, middleware};
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{auth::require_token, observe::observe, state::AppState};

/// The JSON error shape every failure has.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_json`, `not_found`, `dangling_relationship`, `unavailable`.
    pub code: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Option<serde_json::Value>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Code Graph Live — graph-api", description = "Mutations and queries of the code graph. Every mutation and its CDC event happen in one atomic Redis Function call. Every route takes `?project=` (default `default`)."),
    tags(
        (name = "nodes"), (name = "relationships"), (name = "batch"), (name = "queries"), (name = "admin"), (name = "ops")
    ),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

/// The whole application: routes, OpenAPI document, auth on writes, limits, traces and metrics.
pub fn app(state: AppState) -> axum::Router {
    let writes = OpenApiRouter::new()
        .routes(routes!(nodes::create_node))
        .routes(routes!(nodes::patch_node, nodes::delete_node))
        .routes(routes!(relationships::create_relationship))
        .routes(routes!(relationships::patch_relationship, relationships::delete_relationship))
        .routes(routes!(batch::batch))
        .routes(routes!(admin::reanalyze))
        .routes(routes!(admin::cancel_job))
        .routes(routes!(admin::reset))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let reads = OpenApiRouter::new()
        .routes(routes!(nodes::get_node))
        .routes(routes!(relationships::get_relationship))
        .routes(routes!(queries::stats))
        .routes(routes!(queries::search))
        .routes(routes!(queries::neighbors))
        .routes(routes!(queries::subgraph))
        .routes(routes!(queries::snapshot))
        .routes(routes!(queries::projects))
        .routes(routes!(admin::get_job));
    let ops =
        OpenApiRouter::new().routes(routes!(ops::health)).routes(routes!(ops::ready)).routes(routes!(ops::metrics));

    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/graph", writes.merge(reads))
        .merge(ops)
        .split_for_parts();
    let api = std::sync::Arc::new(api);
    router
        .route("/openapi.json", axum::routing::get(move || ops::openapi(api.clone())))
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.settings.api.max_body_bytes))
        .fallback(ops::not_found)
        .with_state(state)
}
