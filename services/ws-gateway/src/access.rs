//! Who may open a WebSocket or read `GET /status`: when any token is configured, one holding the `read` scope
//! (`[auth]` lists and files, and the legacy `gateway.tokens`, which grant read); and a browser `Origin` that is
//! the request's own or listed (`auth.allowed_origins`, the legacy `gateway.allowed_origins`). The Origin check is
//! always on: it is what stops a page on another site from opening the live channel with the user's browser
//! (cross-site WebSocket hijacking). A request without `Origin` is not from a browser and is not checked.
//!
//! A token comes as `Authorization: Bearer <token>`, as the subprotocol `codegraph.bearer.<base64url of the
//! token, no padding>` offered beside `codegraph.v1` (what browsers can send: they cannot set headers on a
//! WebSocket, and a URL ends up in logs and history), or as `?token=` (non-browser clients). The upgrade answers
//! `codegraph.v1` and never echoes the bearer protocol. A refused WebSocket is still upgraded and then closed with
//! 4401 (no or an unknown token) or 4403 (a token without the read scope, or a foreign origin), which a browser
//! can read; a refused HTTP upgrade shows it nothing but a failed connection.

use axum::http::{header, HeaderMap, StatusCode};
use codegraph_shared::{
    auth::{
        bearer_token, origin_allowed, split_tokens, AuthConfigError, AuthSettings, Denial, Scope, Scopes, TokenSet,
    },
    http::ApiError,
};

use crate::{protocol::CloseReason, settings::GatewaySettings};

/// The subprotocol of the gateway's WebSocket; selected whenever a client offers it.
pub const PROTOCOL: &str = "codegraph.v1";
/// Prefix of the subprotocol that carries a bearer token.
pub const BEARER_PROTOCOL_PREFIX: &str = "codegraph.bearer.";

#[derive(Debug, Clone, Default)]
pub struct Access {
    tokens: TokenSet,
    origins: Vec<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Token(Denial),
    /// A browser page of another origin, not listed.
    ForeignOrigin(String),
}

impl Refusal {
    /// The close frame of a refused WebSocket.
    pub fn close(&self) -> (CloseReason, String) {
        match self {
            Refusal::Token(d @ (Denial::MissingToken | Denial::UnknownToken)) => (CloseReason::Unauthorized, text(*d)),
            Refusal::Token(d @ Denial::MissingScope(_)) => (CloseReason::Forbidden, d.message()),
            Refusal::ForeignOrigin(_) => (CloseReason::ForbiddenOrigin, "origin not allowed".into()),
        }
    }

    /// The HTTP error of a refused plain request (`GET /status`).
    pub fn http(&self) -> ApiError {
        match self {
            Refusal::Token(d @ (Denial::MissingToken | Denial::UnknownToken)) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", text(*d))
            }
            Refusal::Token(d @ Denial::MissingScope(_)) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", d.message())
            }
            Refusal::ForeignOrigin(o) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", format!("origin {o:?} is not allowed"))
            }
        }
    }
}

/// The gateway's wording: it names every way a token may come.
fn text(denial: Denial) -> String {
    match denial {
        Denial::MissingToken => format!(
            "a token with the read scope is required (subprotocol {BEARER_PROTOCOL_PREFIX}<base64url>, \
             Authorization: Bearer or ?token=)"
        ),
        other => other.message(),
    }
}

impl Access {
    pub fn new(tokens: TokenSet, origins: Vec<String>) -> Self {
        Self { tokens, origins }
    }

    /// The `[auth]` tokens and origins, plus the legacy `[gateway]` ones (its tokens grant read).
    pub fn from_settings(auth: &AuthSettings, gateway: &GatewaySettings) -> Result<Self, AuthConfigError> {
        let mut tokens = auth.token_set()?;
        tokens.grant_all(split_tokens(&gateway.tokens), Scopes::of(Scope::Read));
        let mut origins = auth.allowed_origin_list();
        origins.extend(split_tokens(&gateway.allowed_origins).map(str::to_owned));
        Ok(Self::new(tokens, origins))
    }

    /// No token configured: anyone may read (the Origin check still applies).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Checks a WebSocket upgrade or a `GET /status`: the Origin first, then a token with the read scope.
    pub fn check(&self, headers: &HeaderMap, query_token: Option<&str>) -> Result<(), Refusal> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let (host, scheme) = request_origin(headers);
            if !origin_allowed(origin, host, scheme, &self.origins) {
                return Err(Refusal::ForeignOrigin(origin.chars().take(100).collect()));
            }
        }
        let presented = header_token(headers);
        let from_protocol = if presented.is_none() { protocol_token(headers) } else { None };
        let presented = presented.or(from_protocol.as_deref()).or(query_token);
        self.tokens.authorize(presented, Scope::Read).map_err(Refusal::Token)
    }
}

/// The host and scheme the client addressed: behind a proxy, its `X-Forwarded-Host`/`-Proto` (first value);
/// else the `Host` header over plain HTTP (the gateway itself never terminates TLS). A browser cannot set these
/// headers on a WebSocket, so a foreign page cannot make its origin look like ours.
fn request_origin(headers: &HeaderMap) -> (Option<&str>, &str) {
    let first =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or(v).trim());
    let host = first("x-forwarded-host").or_else(|| first(header::HOST.as_str()));
    (host, first("x-forwarded-proto").unwrap_or("http"))
}

fn header_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token)
}

/// The token of a `codegraph.bearer.<base64url>` subprotocol, if one is offered and decodes to UTF-8 text.
/// Padding is tolerated, though clients should not send it (`=` is not allowed in a subprotocol name).
fn protocol_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL_PREFIX))
        .and_then(|encoded| data_encoding::BASE64URL_NOPAD.decode(encoded.trim_end_matches('=').as_bytes()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap())).collect()
    }

    fn access(read: &str, write: &str, legacy: &str, origins: &str) -> Access {
        let auth = AuthSettings {
            read_tokens: read.into(),
            write_tokens: write.into(),
            allowed_origins: origins.into(),
            ..Default::default()
        };
        let gateway = GatewaySettings { tokens: legacy.into(), ..Default::default() };
        Access::from_settings(&auth, &gateway).unwrap()
    }

    fn bearer_protocol(token: &str) -> String {
        format!("{PROTOCOL}, {BEARER_PROTOCOL_PREFIX}{}", data_encoding::BASE64URL_NOPAD.encode(token.as_bytes()))
    }

    fn code(r: Result<(), Refusal>) -> u16 {
        r.map_or_else(|e| e.close().0.code(), |()| 0)
    }

    #[test]
    fn open_when_nothing_is_configured() {
        assert!(Access::default().is_open());
        assert!(Access::default().check(&HeaderMap::new(), None).is_ok());
    }

    #[test]
    fn a_read_token_comes_from_the_header_the_subprotocol_or_the_query() {
        let a = access("r", "w", "legacy", "");
        assert_eq!(code(a.check(&HeaderMap::new(), Some("r"))), 0);
        assert_eq!(code(a.check(&headers(&[(header::AUTHORIZATION, "Bearer r")]), None)), 0);
        assert_eq!(code(a.check(&headers(&[(header::SEC_WEBSOCKET_PROTOCOL, &bearer_protocol("r"))]), None)), 0);
        assert_eq!(code(a.check(&HeaderMap::new(), Some("legacy"))), 0, "the legacy gateway tokens grant read");
        assert_eq!(code(a.check(&HeaderMap::new(), None)), 4401);
        assert_eq!(code(a.check(&HeaderMap::new(), Some("x"))), 4401);
        assert_eq!(code(a.check(&headers(&[(header::SEC_WEBSOCKET_PROTOCOL, &bearer_protocol("x"))]), None)), 4401);
        assert_eq!(code(a.check(&headers(&[(header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL)]), None)), 4401);
        assert_eq!(code(a.check(&HeaderMap::new(), Some("w"))), 4403, "a write-only token may not read");
        let refusal = a.check(&HeaderMap::new(), Some("w")).unwrap_err();
        assert_eq!(refusal.http().status, StatusCode::FORBIDDEN);
        assert_eq!(a.check(&HeaderMap::new(), None).unwrap_err().http().status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_subprotocol_carries_any_token_and_garbage_is_no_token() {
        let token = "Grüße+/= 🔑";
        let a = access(token, "", "", "");
        assert_eq!(code(a.check(&headers(&[(header::SEC_WEBSOCKET_PROTOCOL, &bearer_protocol(token))]), None)), 0);
        // Padded, and the offers split over two headers: still read.
        let mut h = HeaderMap::new();
        h.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(PROTOCOL));
        let padded = format!("{BEARER_PROTOCOL_PREFIX}{}", data_encoding::BASE64URL.encode(token.as_bytes()));
        h.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(&padded).unwrap());
        assert_eq!(code(a.check(&h, None)), 0);
        for bad in ["codegraph.bearer.", "codegraph.bearer.!!!", "codegraph.bearer./w"] {
            assert_eq!(code(a.check(&headers(&[(header::SEC_WEBSOCKET_PROTOCOL, bad)]), None)), 4401, "{bad}");
        }
    }

    #[test]
    fn a_browser_origin_must_be_our_own_or_listed() {
        let a = access("", "", "", "http://dash.example:8080");
        let own = [(header::ORIGIN, "http://gw.local:8001"), (header::HOST, "gw.local:8001")];
        assert_eq!(code(a.check(&headers(&own), None)), 0);
        let listed = [(header::ORIGIN, "http://dash.example:8080/"), (header::HOST, "gw.local:8001")];
        assert_eq!(code(a.check(&headers(&listed), None)), 0);
        let foreign = [(header::ORIGIN, "http://evil.example"), (header::HOST, "gw.local:8001")];
        assert_eq!(code(a.check(&headers(&foreign), None)), 4403);
        assert_eq!(a.check(&headers(&foreign), None).unwrap_err().http().code, "forbidden_origin");
        assert_eq!(code(a.check(&headers(&[(header::HOST, "gw.local:8001")]), None)), 0, "no Origin: not a browser");
        // Behind a proxy the addressed host and scheme are the forwarded ones.
        let proxied = headers(&[
            (header::ORIGIN, "https://live.example"),
            (header::HOST, "ws-gateway:8001"),
            (header::HeaderName::from_static("x-forwarded-host"), "live.example"),
            (header::HeaderName::from_static("x-forwarded-proto"), "https"),
        ]);
        assert_eq!(code(a.check(&proxied, None)), 0);
    }

    #[test]
    fn the_origin_is_checked_before_the_token() {
        let a = access("r", "", "", "");
        let h = headers(&[
            (header::ORIGIN, "http://evil.example"),
            (header::HOST, "gw:1"),
            (header::AUTHORIZATION, "Bearer r"),
        ]);
        assert_eq!(code(a.check(&h, None)), 4403);
    }
}
