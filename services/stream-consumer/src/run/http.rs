//! HTTP endpoints: `/health`, `/ready` (Redis and every sink answer), `/metrics`, `/status` (what each sink owns
//! and how far it got).

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use codegraph_shared::{http as shared_http, redis_handle::RedisHandle, shutdown::Shutdown};
use serde_json::json;

use crate::run::{app::ActiveSinks, status::StatusBoard};

#[derive(Clone)]
pub struct AppState {
    pub redis: RedisHandle,
    pub sinks: Arc<ActiveSinks>,
    pub board: StatusBoard,
    pub consumer: String,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(shared_http::health))
        .route("/ready", get(ready))
        .route("/metrics", get(shared_http::metrics))
        .route("/status", get(status))
        .with_state(state)
}

pub async fn serve(addr: &str, state: AppState, shutdown: Shutdown) -> std::io::Result<()> {
    shared_http::serve(addr, router(state), shutdown).await
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let redis = state.redis.check().await;
    let sinks = state.sinks.ping().await;
    let ok = redis.is_ok() && sinks.iter().all(|(_, up)| *up);
    let mut body = json!({
        "status": if ok { "ready" } else { "unavailable" },
        "redis": redis.is_ok(),
        "sinks": sinks.into_iter().map(|(n, up)| (n.to_owned(), json!(up))).collect::<serde_json::Map<_, _>>(),
    });
    if let Err(codegraph_shared::redis_handle::TopologyError::Misconfigured(why)) = redis {
        body["redis_error"] = json!(why);
    }
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"consumer": state.consumer, "sinks": state.board.snapshot()}))
}
