//! Who may open a WebSocket: a valid token when tokens are configured (`?token=` or `Authorization: Bearer`),
//! an allowed `Origin` when origins are configured. A refusal becomes a 4401/4403 close frame, which a browser
//! can read (a refused HTTP upgrade shows it nothing but a failed connection).

use axum::http::{header, HeaderMap};

use crate::protocol::CloseReason;

#[derive(Debug, Clone, Default)]
pub struct Access {
    tokens: Vec<String>,
    origins: Vec<String>,
}

impl Access {
    pub fn new(tokens: Vec<String>, origins: Vec<String>) -> Self {
        Self { tokens, origins: origins.into_iter().map(|o| o.trim_end_matches('/').to_owned()).collect() }
    }

    pub fn check(&self, headers: &HeaderMap, query_token: Option<&str>) -> Result<(), (CloseReason, String)> {
        if !self.origins.is_empty() {
            if let Some(origin) = headers.get(header::ORIGIN) {
                let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
                if !self.origins.iter().any(|o| o == origin) {
                    return Err((CloseReason::ForbiddenOrigin, "origin not allowed".into()));
                }
            }
        }
        if self.tokens.is_empty() {
            return Ok(());
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        match bearer.or(query_token) {
            None => Err((CloseReason::Unauthorized, "a token is required (?token= or Authorization: Bearer)".into())),
            Some(t) if self.tokens.iter().any(|known| same(known.as_bytes(), t.as_bytes())) => Ok(()),
            Some(_) => Err((CloseReason::Unauthorized, "invalid token".into())),
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how much of a token matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn open_when_nothing_is_configured() {
        assert!(Access::default().check(&HeaderMap::new(), None).is_ok());
    }

    #[test]
    fn tokens_come_from_the_query_or_the_header() {
        let a = Access::new(vec!["s3cret".into()], vec![]);
        assert!(a.check(&HeaderMap::new(), Some("s3cret")).is_ok());
        assert!(a.check(&headers(&[(header::AUTHORIZATION, "Bearer s3cret")]), None).is_ok());
        for (h, q) in [
            (HeaderMap::new(), None),
            (HeaderMap::new(), Some("s3cre")),
            (headers(&[(header::AUTHORIZATION, "Bearer x")]), None),
        ] {
            assert_eq!(a.check(&h, q).unwrap_err().0, CloseReason::Unauthorized);
        }
    }

    #[test]
    fn origins_are_checked_when_sent() {
        let a = Access::new(vec![], vec!["http://127.0.0.1:8080/".into()]);
        assert!(a.check(&headers(&[(header::ORIGIN, "http://127.0.0.1:8080")]), None).is_ok());
        assert!(a.check(&HeaderMap::new(), None).is_ok());
        let refused = a.check(&headers(&[(header::ORIGIN, "http://evil.example")]), None);
        assert_eq!(refused.unwrap_err().0, CloseReason::ForbiddenOrigin);
    }
}
