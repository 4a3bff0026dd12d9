//! HTTP pieces every service shares: the one JSON error shape, `/health`, `/metrics`, and serving with a
//! graceful drain on shutdown. A Redis error's own text (which may describe the server: its configuration,
//! scripts, keys, addresses) is logged, never sent: the client gets a generic message and an `error_id`, the id
//! of the log line (the trace id when traces are recorded).

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json, Router,
};

use crate::shutdown::Shutdown;

/// Every failure a service reports over HTTP: `{"error": {"code", "message"}}` with a status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds a client should wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u32>,
    /// Extra facts for the client (e.g. what part of a batch was applied before a refusal).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, details: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Redis (or another backend) is unreachable: 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message) }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        let error_id = error_id();
        let details = serde_json::json!({ "error_id": error_id });
        if crate::functions::is_unavailable(&e) {
            tracing::warn!(error = %e, error_id, "redis unavailable");
            Self::unavailable(format!("redis is unavailable; retry later (error id {error_id})")).with_details(details)
        } else {
            tracing::error!(error = %e, error_id, "redis error");
            Self::internal(format!("internal error; the details are in the service log (error id {error_id})"))
                .with_details(details)
        }
    }
}

/// An id that ties what a client is told to what the service logged: the current trace id when traces are
/// recorded (so the trace is one search away), else 16 random hex digits.
pub fn error_id() -> String {
    if let Some(tp) = crate::telemetry::current_traceparent() {
        if let Some(trace_id) = tp.split('-').nth(1) {
            return trace_id.to_owned();
        }
    }
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // RandomState is seeded from the OS; hashing a counter gives a fresh unpredictable value per call.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

impl From<crate::redis_handle::TopologyError> for ApiError {
    fn from(e: crate::redis_handle::TopologyError) -> Self {
        match e {
            crate::redis_handle::TopologyError::Unavailable(e) => e.into(),
            crate::redis_handle::TopologyError::Misconfigured(why) => Self::unavailable(why),
        }
    }
}

impl From<crate::functions::MutationError> for ApiError {
    fn from(e: crate::functions::MutationError) -> Self {
        use crate::functions::MutationError as M;
        match e {
            M::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            M::NotFound(m) => Self::not_found(m),
            M::Dangling(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "dangling_relationship", m),
            // Only when writers kept adding relationships to a node through every detach round of its delete.
            M::Redis(e) if e.code() == Some("CASCADE") => Self::new(
                StatusCode::CONFLICT,
                "cascade_too_large",
                "relationships kept being added to a deleted node while its relationships were deleted; retry",
            ),
            M::Redis(e) => e.into(),
        }
    }
}

impl From<crate::graph::InvalidEntity> for ApiError {
    fn from(e: crate::graph::InvalidEntity) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_entity", e.to_string())
    }
}

impl From<crate::project::InvalidProjectName> for ApiError {
    fn from(e: crate::project::InvalidProjectName) -> Self {
        Self::bad_request("invalid_project", e.to_string())
    }
}

impl From<crate::event::InvalidStreamId> for ApiError {
    fn from(e: crate::event::InvalidStreamId) -> Self {
        Self::bad_request("invalid_stream_id", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let body = serde_json::json!({ "error": error });
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// `GET /health`: the process is alive (says nothing about Redis; that is `/ready`).
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /metrics`: every metric of the default Prometheus registry, in the text exposition format.
pub async fn metrics() -> Response {
    let families = prometheus::gather();
    match prometheus::TextEncoder::new().encode_to_string(&families) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => ApiError::internal(format!("encode metrics: {e}")).into_response(),
    }
}

/// Binds `addr` and serves `router` until `shutdown` fires, then lets in-flight requests finish.
pub async fn serve(addr: &str, router: Router, shutdown: Shutdown) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, router, shutdown).await
}

/// As [`serve`], on a listener the caller bound (tests bind port 0 and read the address).
pub async fn serve_on(listener: tokio::net::TcpListener, router: Router, shutdown: Shutdown) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(without_nagle(listener), router).with_graceful_shutdown(async move { shutdown.wait().await }).await
}

/// `listener` with TCP_NODELAY on every accepted connection: a response, a server-sent event or a WebSocket
/// frame is sent as soon as it is written. Without it (axum leaves Nagle's algorithm on) a write that follows one
/// the client has not acknowledged yet waits for that acknowledgement, which a client may delay by up to 40 ms.
pub fn without_nagle(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    })
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use super::*;
    use crate::testing::RedisServer;

    /// Collects what the log subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_redis_error_text_is_logged_and_never_sent() {
        let redis = RedisServer::start();
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        // A server-side error whose text stands for what a client must not see.
        let secret = "ERR secret-server-detail-7f3a requirepass=hunter2";
        let err: redis::RedisError = redis::cmd("EVAL")
            .arg(format!("return redis.error_reply('{secret}')"))
            .arg(0)
            .query_async::<()>(&mut conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("secret-server-detail-7f3a"), "the test needs Redis' text: {err}");

        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let api_error = tracing::subscriber::with_default(subscriber, || ApiError::from(err));
        let (status, body) = body_of(api_error).await;

        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let text = body.to_string();
        assert!(!text.contains("secret-server-detail-7f3a") && !text.contains("hunter2"), "leaked: {text}");
        let error_id = body["error"]["details"]["error_id"].as_str().expect("an error id").to_owned();
        assert_eq!(error_id.len(), 16, "{error_id}");
        assert!(body["error"]["message"].as_str().unwrap().contains(&error_id), "{text}");
        let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("secret-server-detail-7f3a") && logged.contains(&error_id), "log: {logged}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_503_without_its_address() {
        let port = crate::testing::free_port();
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let err = client.get_multiplexed_async_connection().await.unwrap_err();
        let (status, body) = body_of(ApiError::from(err)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable");
        let text = body.to_string();
        assert!(!text.contains(&format!("127.0.0.1:{port}")) && !text.contains("refused"), "{text}");
        assert!(body["error"]["details"]["error_id"].is_string(), "{body}");
    }

    #[test]
    fn error_ids_differ() {
        assert_ne!(error_id(), error_id());
    }
}
