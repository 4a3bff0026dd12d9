//! The HTTP surface: the three WebSocket endpoints, `GET /status`, `/health`, `/ready`, `/metrics`.
//! Handlers only read the request; sessions do the work. The WebSockets and `/status` need a read token when
//! tokens are configured (`access.rs`); `/health`, `/ready` and `/metrics` are open (probes, Prometheus).

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{ws::WebSocketUpgrade, Query, State},
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use codegraph_shared::{event::StreamId, http::ApiError};

use crate::{
    access::PROTOCOL,
    client::Endpoint,
    filter::parse_projects,
    gateway::Gateway,
    protocol::CloseReason,
    session::{self, Opening},
};

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/ws/events", get(events))
        .route("/ws/events/filtered", get(filtered))
        .route("/ws/status", get(status_ws))
        .route("/status", get(status))
        .route("/health", get(codegraph_shared::http::health))
        .route("/ready", get(ready))
        .route("/metrics", get(codegraph_shared::http::metrics))
        .with_state(gw)
}

type Params = Query<HashMap<String, String>>;

/// `/ws/events?project=a,b&since=<id>`
async fn events(
    State(gw): State<Arc<Gateway>>,
    Query(q): Params,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let opening = admit(&gw, &headers, &q).and_then(|()| events_opening(&q));
    upgrade(gw, ws, opening)
}

/// `/ws/events/filtered`, then `{"type":"subscribe","filter":{…}}`.
async fn filtered(
    State(gw): State<Arc<Gateway>>,
    Query(q): Params,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let opening = admit(&gw, &headers, &q).map(|()| serve(Endpoint::Filtered));
    upgrade(gw, ws, opening)
}

/// `/ws/status`: the status, pushed every few seconds.
async fn status_ws(
    State(gw): State<Arc<Gateway>>,
    Query(q): Params,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let opening = admit(&gw, &headers, &q).map(|()| serve(Endpoint::Status));
    upgrade(gw, ws, opening)
}

/// An endpoint whose subscription (if any) comes later, by message.
fn serve(endpoint: Endpoint) -> Opening {
    Opening::Serve { endpoint, projects: Vec::new(), since: None }
}

async fn status(State(gw): State<Arc<Gateway>>, Query(q): Params, headers: HeaderMap) -> Response {
    match gw.access.check(&headers, q.get("token").map(String::as_str)) {
        Ok(()) => Json(gw.status()).into_response(),
        Err(refusal) => {
            let unauthorized = refusal.close().0 == CloseReason::Unauthorized;
            let mut resp = refusal.http().into_response();
            if unauthorized {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

/// Ready while the Pub/Sub connection to Redis is up, Redis is the topology the settings name, and the gateway is
/// not draining.
async fn ready(State(gw): State<Arc<Gateway>>) -> Result<Json<serde_json::Value>, ApiError> {
    if gw.stats.draining() {
        return Err(ApiError::unavailable("draining"));
    }
    if !gw.stats.redis_connected() {
        return Err(ApiError::unavailable("no Pub/Sub connection to Redis"));
    }
    gw.replayer.redis.check().await?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

fn admit(gw: &Gateway, headers: &HeaderMap, q: &HashMap<String, String>) -> Result<(), Opening> {
    gw.access.check(headers, q.get("token").map(String::as_str)).map_err(|refusal| {
        let (reason, text) = refusal.close();
        Opening::Refuse(reason, text)
    })
}

fn events_opening(q: &HashMap<String, String>) -> Result<Opening, Opening> {
    let bad = |text: String| Opening::Refuse(CloseReason::BadRequest, text);
    let projects =
        parse_projects(q.get("project").map(String::as_str).unwrap_or("default").split(',')).map_err(|e| bad(e.0))?;
    let since = match q.get("since") {
        None => None,
        Some(s) => Some(s.parse::<StreamId>().map_err(|e| bad(e.to_string()))?),
    };
    Ok(Opening::Serve { endpoint: Endpoint::Events, projects, since })
}

/// Upgrades within the connection limit; a refusal is still upgraded, to carry its close code to the client.
fn upgrade(gw: Arc<Gateway>, ws: WebSocketUpgrade, opening: Result<Opening, Opening>) -> Response {
    if gw.shutdown.is_triggered() {
        return ApiError::unavailable("draining: connect to another replica").into_response();
    }
    let Ok(permit) = gw.connections.clone().try_acquire_owned() else {
        return ApiError::unavailable(format!("connection limit ({}) reached", gw.settings.max_connections))
            .into_response();
    };
    let opening = opening.unwrap_or_else(|refusal| refusal);
    let limit = gw.settings.max_message_bytes;
    // tungstenite's own cap is a backstop well above ours, so an oversized message is read whole and answered
    // with a clean 4413 rather than a reset connection.
    // `codegraph.v1` is selected whenever it is offered (browsers sending a token offer it beside the bearer
    // protocol, which is never echoed back: a browser fails a socket whose selected protocol it did not offer).
    ws.protocols([PROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(limit.saturating_mul(4).max(1024))
        .max_frame_size(limit.saturating_mul(4).max(1024))
        .on_upgrade(move |socket| session::run(socket, gw, opening, permit))
}

/// Small per-connection buffers: most connections are idle, and a busy one refills its buffer many times a
/// second anyway.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;
