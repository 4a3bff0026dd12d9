//! Per-request span (a child of the caller's `traceparent`, when it sends one) and HTTP metrics.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use codegraph_shared::telemetry;
use tracing::Instrument;

use crate::state::AppState;

pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "other".into());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!("http_request", http.method = %method, http.route = %route, http.status = tracing::field::Empty);
    if let Some(tp) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
        telemetry::set_parent(&span, tp);
    }
    let start = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.record("http.status", status);
    let m = &state.metrics;
    m.http_duration.with_label_values(&[&method, &route]).observe(start.elapsed().as_secs_f64());
    m.http_requests.with_label_values(&[&method, &route, &status.to_string()]).inc();
    resp
}
