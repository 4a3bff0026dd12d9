//! Who may call which route, and what a browser may make it do. Every API route needs a bearer token holding
//! the route's scope once any token is configured (`[auth]`, or the legacy `api.tokens` that holds every scope);
//! with none configured the API is open, which `main` allows only on a loopback address or with
//! `auth.allow_open`. State-changing routes also refuse what a foreign web page could send without the user's
//! intent (CSRF): a POST must be `application/json` (a form or `text/plain` cannot be), and a browser `Origin`
//! must be the request's own or listed in `auth.allowed_origins`.

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use codegraph_shared::{
    auth::{bearer_token, origin_allowed, Denial, Scope},
    http::ApiError,
};

use crate::state::AppState;

/// Largest body a bodyless route reads to see that it is empty or `{}`.
const MAX_EMPTY_BODY_BYTES: usize = 1024;

/// Refuses a request whose token does not hold `scope`: 401 with no or an unknown token, 403 `forbidden` with a
/// token lacking the scope. Runs before anything else of the route.
pub async fn require_scope(State((state, scope)): State<(AppState, Scope)>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    match state.tokens.authorize(presented, scope) {
        Ok(()) => next.run(req).await,
        Err(denial @ (Denial::MissingToken | Denial::UnknownToken)) => {
            state.metrics.refused("unauthorized");
            let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", denial.message()).into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
        Err(denial @ Denial::MissingScope(_)) => {
            state.metrics.refused("forbidden");
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", denial.message()).into_response()
        }
    }
}

/// What a state-changing route accepts as its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyRule {
    /// A JSON document (its handler validates it).
    Json,
    /// Nothing, or `{}`, still sent as `application/json` (`reset`, job `cancel`): a bodyless POST is what a
    /// plain HTML form can send from any site.
    EmptyJson,
}

/// The CSRF rule of state-changing routes: a foreign browser `Origin` → 403 `forbidden_origin`; a POST that is
/// not `application/json` → 415 `unsupported_media_type`; a bodyless route given a body other than `{}` → 422.
/// Runs after [`require_scope`] and before the handler, so a refused request changes nothing.
pub async fn guard_state_change(
    State((state, rule)): State<(AppState, BodyRule)>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if is_state_changing(req.method()) {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let (host, scheme) = request_origin(req.headers());
            if !origin_allowed(origin, host, scheme, &state.allowed_origins) {
                state.metrics.refused("forbidden_origin");
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_origin",
                    format!(
                        "a request from origin {origin:?} may not change state here: only the API's own origin and \
                         CODEGRAPH__AUTH__ALLOWED_ORIGINS may"
                    ),
                ));
            }
        }
    }
    if req.method() != Method::POST {
        return Ok(next.run(req).await);
    }
    if !is_json(req.headers()) {
        state.metrics.refused("unsupported_media_type");
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            match rule {
                BodyRule::Json => "send the body as JSON with `Content-Type: application/json`",
                BodyRule::EmptyJson => "send `Content-Type: application/json` with an empty body or `{}`",
            },
        ));
    }
    match rule {
        BodyRule::Json => Ok(next.run(req).await),
        BodyRule::EmptyJson => {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, MAX_EMPTY_BODY_BYTES).await.map_err(|_| {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "this route takes no body")
            })?;
            if !is_empty_json(&bytes) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    "this route takes no body: send none or `{}`",
                ));
            }
            Ok(next.run(Request::from_parts(parts, Body::from(bytes))).await)
        }
    }
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// The host and scheme the client sent the request to: a proxy's `X-Forwarded-Host`/`-Proto` when present
/// (a foreign page cannot set them: they are not CORS-safelisted), else `Host` over plain HTTP.
fn request_origin(headers: &HeaderMap) -> (Option<&str>, &str) {
    let text =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or(v).trim());
    let host = text("x-forwarded-host").or_else(|| text(header::HOST.as_str()));
    let scheme = text("x-forwarded-proto").unwrap_or("http");
    (host, scheme)
}

/// `application/json` (any parameters, such as `charset`) or a `+json` type.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn is_empty_json(bytes: &Bytes) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes).is_ok_and(|m| m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[("content-type", "Application/JSON; charset=utf-8")])));
        assert!(is_json(&headers(&[("content-type", "application/merge-patch+json")])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&headers(&[("content-type", "application/x-www-form-urlencoded")])));
        assert!(!is_json(&headers(&[("content-type", "multipart/form-data; boundary=x")])));
        assert!(!is_json(&headers(&[])));
    }

    #[test]
    fn empty_bodies() {
        for ok in ["", "  \n", "{}", " { } "] {
            assert!(is_empty_json(&Bytes::from(ok)), "{ok:?}");
        }
        for bad in ["{\"a\":1}", "[]", "null", "x", "{"] {
            assert!(!is_empty_json(&Bytes::from(bad)), "{bad:?}");
        }
    }

    #[test]
    fn a_proxy_names_the_origin_the_client_used() {
        assert_eq!(request_origin(&headers(&[("host", "api:8000")])), (Some("api:8000"), "http"));
        let proxied =
            headers(&[("host", "graph-api"), ("x-forwarded-host", "cg.example"), ("x-forwarded-proto", "https")]);
        assert_eq!(request_origin(&proxied), (Some("cg.example"), "https"));
    }
}
