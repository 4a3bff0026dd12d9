//! HTTP pieces every service shares: the one JSON error shape, `/health`, `/metrics`, and serving with a
//! graceful drain on shutdown.

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
        if crate::functions::is_unavailable(&e) {
            Self::unavailable(format!("redis unavailable: {e}"))
        } else {
            tracing::error!(error = %e, "redis error");
            Self::internal(format!("redis error: {e}"))
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
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.wait().await }).await
}
