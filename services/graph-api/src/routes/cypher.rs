//! `POST /api/graph/query`: one read-only Cypher statement on the project's FalkorDB graph ([`crate::cypher`]).
//!
//! A read (the `read` scope) sent as a POST, because a statement and its parameters do not fit a query string.
//! It still goes through the CSRF guard of state-changing routes (`application/json` only, a browser `Origin`
//! must be the API's own or allowed): it changes nothing, but a foreign page could otherwise make a browser spend
//! FalkorDB's time with a form post; JSON makes it a CORS-preflighted request that no foreign page may send.

use axum::{extract::State, Json};
use codegraph_shared::http::ApiError;

use crate::{
    cypher::{self, CypherAnswer, CypherRequest},
    extract::{Body, Project, ProjectParam},
    routes::ErrorBody,
    state::AppState,
};

/// Run a read-only Cypher statement on the project's FalkorDB graph (the stream-consumer's sink), with a
/// timeout and a row cap. The answer says how fresh the graph was: the stream ID the sink had applied and the
/// project's last one. With `min_id` (e.g. a mutation's `event_id`) it first waits, bounded, until the sink has
/// applied that ID.
#[utoipa::path(post, path = "/query", tag = "queries", params(ProjectParam), request_body = CypherRequest,
    responses(
        (status = 200, body = CypherAnswer),
        (status = 400, description = "An empty, too long or malformed statement (`invalid_cypher`), one that writes (`read_only`), bad parameters (`invalid_params`), a malformed or unknown `min_id` (`invalid_stream_id`, `invalid_min_id`), malformed JSON (`invalid_json`).", body = ErrorBody),
        (status = 404, description = "Unknown project.", body = ErrorBody),
        (status = 422, description = "Fields of the wrong type or unknown (`invalid_body`).", body = ErrorBody),
        (status = 503, description = "FalkorDB unreachable or not configured (`unavailable`), or the sink has not created the project's graph yet (`no_graph`).", body = ErrorBody),
        (status = 504, description = "The statement ran past its timeout (`query_timeout`), or the sink did not apply `min_id` in time (`sink_behind`).", body = ErrorBody),
    ))]
pub async fn query(
    State(state): State<AppState>,
    project: Project,
    Body(request): Body<CypherRequest>,
) -> Result<Json<CypherAnswer>, ApiError> {
    Ok(Json(cypher::run(&state, &project.0, request).await?))
}
