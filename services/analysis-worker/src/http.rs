//! The worker's HTTP surface: `/health`, `/ready` (Redis answers and the Function library is loaded),
//! `/metrics` and `/status` (the running job and counts).

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use codegraph_shared::{
    http::{health, metrics, ApiError},
    redis_handle::RedisHandle,
};
use serde_json::{json, Value};

use crate::status::WorkerStatus;

#[derive(Clone)]
pub struct AppState {
    pub redis: RedisHandle,
    pub status: Arc<WorkerStatus>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
}

async fn ready(State(s): State<AppState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    s.redis.conn().ensure_library().await?;
    s.redis.check().await?;
    Ok((StatusCode::OK, Json(json!({"status": "ready"}))))
}

async fn status(State(s): State<AppState>) -> Json<Value> {
    Json(s.status.snapshot())
}
