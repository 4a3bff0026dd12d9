//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document, and the JSON 404.

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::Response, Json};
use codegraph_shared::{functions, http::ApiError};

use crate::{routes::ErrorBody, state::AppState};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200)))]
pub async fn health() -> Json<serde_json::Value> {
    codegraph_shared::http::health().await
}

/// Readiness: Redis answers and has this build's Function library (503 otherwise).
#[utoipa::path(get, path = "/ready", tag = "ops", responses((status = 200), (status = 503, body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut conn = state.conn();
    let version: i64 =
        redis::cmd("FCALL_RO").arg("cg_version").arg(0).query_async(&mut conn).await.map_err(ApiError::from)?;
    if version < functions::library_version() {
        return Err(ApiError::unavailable(format!(
            "redis has Function library version {version}, this build needs {}",
            functions::library_version()
        )));
    }
    Ok(Json(serde_json::json!({"status": "ready", "function_library": version})))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    codegraph_shared::http::metrics().await
}

pub async fn openapi(api: Arc<utoipa::openapi::OpenApi>) -> Json<utoipa::openapi::OpenApi> {
    Json((*api).clone())
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route; see /openapi.json")
}
