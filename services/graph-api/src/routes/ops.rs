//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document, and the JSON 404.

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::Response, Json};
use codegraph_shared::http::ApiError;

use crate::{routes::ErrorBody, state::AppState};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200)))]
pub async fn health() -> Json<serde_json::Value> {
    codegraph_shared::http::health().await
}

/// Readiness: Redis answers, is the topology the settings name, and has this build's Function library (on every
/// primary of a cluster); 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "ops", responses((status = 200), (status = 503, body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let version = state.redis.readiness().await?;
    Ok(Json(serde_json::json!({"status": "ready", "function_library": version})))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    codegraph_shared::http::metrics().await
}

/// The OpenAPI document, with the limits `declared_limits` wrote into it.
pub async fn openapi(api: Arc<serde_json::Value>) -> Json<serde_json::Value> {
    Json((*api).clone())
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route; see /openapi.json")
}
