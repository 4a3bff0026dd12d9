//! `/mcp`: the MCP Streamable HTTP transport inside graph-api's router, held to the REST API's rules: a token with
//! the `read` scope once any token is configured (`reanalyze` asks for `write` itself), the request limits, and a
//! browser `Origin` that is the API's own or allowed — on every method, as the MCP specification asks (its GET
//! stream included). While the service is open on a loopback address (no token, no `allow_open`), the `Host`
//! must be a loopback name too, so a DNS-rebound page cannot reach it.

use std::sync::{Arc, LazyLock};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use codegraph_shared::{
    auth::{origin_allowed, Scope},
    http::ApiError,
};
use rmcp::transport::{
    streamable_http_server::session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use tokio_util::sync::CancellationToken;

use super::{
    server::{Access, CodeGraphMcp},
    sessions::RedisSessionStore,
};
use crate::{auth::require_scope, limits::limit_requests, state::AppState};

/// Ends every MCP session and its open streams (graph-api's shutdown: an SSE stream would otherwise hold the
/// graceful shutdown open until its client left).
static SESSIONS: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);

/// Closes the MCP sessions of this process; call once the service is shutting down.
pub fn close_http_sessions() {
    SESSIONS.cancel();
}

/// The `/mcp` route, to merge into graph-api's router.
pub fn router(state: &AppState) -> axum::Router<AppState> {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(SESSIONS.child_token())
        .with_max_request_body_bytes(state.settings.api.max_body_bytes);
    // Any replica serves any session (the `initialize` parameters are in Redis).
    config.session_store = Some(Arc::new(RedisSessionStore::new(state.redis.clone())));
    if !state.tokens.is_empty() || state.settings.auth.allow_open {
        // A token (or an open deployment behind its own proxy) decides access, whatever the Host says.
        config = config.disable_allowed_hosts();
    }
    let server_state = state.clone();
    let service: StreamableHttpService<CodeGraphMcp, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(CodeGraphMcp::new(server_state.clone(), Access::PerRequest)),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn_with_state(state.clone(), check_json_rpc))
        .layer(middleware::from_fn_with_state(state.clone(), guard_origin))
        .layer(middleware::from_fn_with_state((state.clone(), Scope::Read), require_scope))
        .layer(middleware::from_fn_with_state(state.clone(), limit_requests))
}

/// Refuses a browser `Origin` that is neither the request's own nor in `auth.allowed_origins` (403
/// `forbidden_origin`), whatever the method.
async fn guard_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let (host, scheme) = request_origin(req.headers());
        if !origin_allowed(origin, host, scheme, &state.allowed_origins) {
            state.metrics.refused("forbidden_origin");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "a request from origin {origin:?} may not use /mcp: only the API's own origin and \
                     CODEGRAPH__AUTH__ALLOWED_ORIGINS may"
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Answers a POST body that is not JSON-RPC with the JSON-RPC error the specification names, as a 400: `-32700`
/// (parse error) for malformed JSON, `-32600` (invalid request) for JSON that is not a JSON-RPC 2.0 message or
/// batch. (rmcp answers both with a plain-text 415.) Anything that is JSON-RPC goes on to rmcp unchanged.
async fn check_json_rpc(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.settings.api.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the message is too large")
                .into_response()
        }
    };
    let refusal = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Err(e) => Some((-32700, format!("Parse error: {e}"))),
        Ok(serde_json::Value::Array(items)) if !items.is_empty() && items.iter().all(is_json_rpc) => None,
        Ok(message) if is_json_rpc(&message) => None,
        Ok(_) => Some((
            -32600,
            "Invalid Request: expected a JSON-RPC 2.0 message: {\"jsonrpc\": \"2.0\", \"method\": <string>, ...} or a \
             response"
                .to_owned(),
        )),
    };
    match refusal {
        None => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Some((code, message)) => {
            state.metrics.refused("invalid_json_rpc");
            let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
    }
}

/// A request or notification (`method` a string), or a response (`result` or `error` with an `id`).
fn is_json_rpc(message: &serde_json::Value) -> bool {
    let Some(object) = message.as_object() else { return false };
    if object.get("jsonrpc").and_then(|v| v.as_str()) != Some("2.0") {
        return false;
    }
    match object.get("method") {
        Some(method) => method.is_string(),
        None => object.contains_key("id") && (object.contains_key("result") || object.contains_key("error")),
    }
}

/// The host and scheme the client addressed, as `auth::guard_state_change` reads them: a proxy's
/// `X-Forwarded-Host`/`-Proto` when present, else `Host` over plain HTTP.
fn request_origin(headers: &HeaderMap) -> (Option<&str>, &str) {
    let text =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or(v).trim());
    let host = text("x-forwarded-host").or_else(|| text(header::HOST.as_str()));
    let scheme = text("x-forwarded-proto").unwrap_or("http");
    (host, scheme)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::is_json_rpc;

    #[test]
    fn json_rpc_messages_and_the_rest() {
        assert!(is_json_rpc(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})));
        assert!(is_json_rpc(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})));
        assert!(is_json_rpc(&json!({"jsonrpc": "2.0", "id": 1, "result": {}})));
        assert!(is_json_rpc(&json!({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "x"}})));
        assert!(!is_json_rpc(&json!({"id": 1, "method": "tools/list"})));
        assert!(!is_json_rpc(&json!({"jsonrpc": "2.0", "id": 1, "method": 7})));
        assert!(!is_json_rpc(&json!({"jsonrpc": "2.0", "id": 1})));
        assert!(!is_json_rpc(&json!("hello")));
    }
}
