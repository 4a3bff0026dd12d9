//! The limits every API request is held to (not `/health`, `/ready`, `/metrics`, so probes and scrapes still
//! answer under load): at most `api.max_concurrent_requests` in flight — one more is refused at once with 503
//! `overloaded` and `Retry-After: 1` rather than queued, so an overload shows at the client and in
//! `codegraph_api_requests_refused_total{reason="overloaded"}` instead of as latency — and at most
//! `api.request_timeout_ms` per request (503 `timeout`). Responses are whole JSON documents (no streaming), so
//! the permit and the timeout cover all of a request's work.

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use codegraph_shared::http::ApiError;
use prometheus::IntGauge;
use tokio::sync::OwnedSemaphorePermit;

use crate::state::AppState;

/// A request's place under the concurrency limit, counted in `codegraph_api_requests_in_flight` while held
/// (released when the request ends, however it ends).
struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: IntGauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, gauge: IntGauge) -> Self {
        gauge.inc();
        Self { _permit: permit, gauge }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

pub async fn limit_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let _slot = match &state.in_flight {
        Some(slots) => match slots.clone().try_acquire_owned() {
            Ok(permit) => Some(Slot::new(permit, state.metrics.requests_in_flight.clone())),
            Err(_) => {
                state.metrics.refused("overloaded");
                let e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many requests in flight; retry shortly",
                );
                return ApiError { retry_after: Some(1), ..e }.into_response();
            }
        },
        None => None,
    };
    let Some(deadline) = state.request_timeout else {
        return next.run(req).await;
    };
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            state.metrics.refused("timeout");
            let e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request took longer than {} ms and was stopped; a write may still have been applied",
                    deadline.as_millis()
                ),
            );
            ApiError { retry_after: Some(1), ..e }.into_response()
        }
    }
}
