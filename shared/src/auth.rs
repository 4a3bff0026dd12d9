//! Who may do what, for every HTTP and WebSocket service: the `[auth]` settings (tokens per scope, from the
//! environment or from files such as Kubernetes/Docker secrets), the [`TokenSet`] that maps a presented bearer
//! token to its [`Scopes`] without revealing by timing which token (or how much of one) matched, the start-up rule
//! that refuses to serve an open service on a non-loopback address ([`require_bind_safety`]), and the browser
//! `Origin` check of state-changing requests ([`origin_allowed`]).
//!
//! Scopes do not imply one another: a token holds the scopes of every list it appears in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `[auth]` of graph-api and ws-gateway (`CODEGRAPH__AUTH__…`). Lists are comma-separated; a `_FILE` names a
/// file of tokens, one per line or comma-separated (blank lines ignored, each token trimmed).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    pub read_tokens: String,
    pub write_tokens: String,
    pub admin_tokens: String,
    pub read_tokens_file: String,
    pub write_tokens_file: String,
    pub admin_tokens_file: String,
    /// The deployment is open on purpose: serve without tokens even on a non-loopback address.
    pub allow_open: bool,
    /// Browser origins (`scheme://host[:port]`) allowed besides the request's own origin, comma-separated.
    pub allowed_origins: String,
}

/// A start-up error in the `[auth]` settings: the service must not start with fewer tokens than configured.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("cannot read the token file {path:?} named by {setting}: {source}")]
    UnreadableFile { setting: &'static str, path: String, source: std::io::Error },
    #[error("the token file {path:?} named by {setting} holds no token")]
    EmptyFile { setting: &'static str, path: String },
}

impl AuthSettings {
    /// Every configured token with its scopes: the lists and the files. A configured file that is missing,
    /// unreadable or empty is an error (a secret that failed to mount must not leave the service open).
    pub fn token_set(&self) -> Result<TokenSet, AuthConfigError> {
        let mut set = TokenSet::default();
        for (scope, list, file, setting) in [
            (Scope::Read, &self.read_tokens, &self.read_tokens_file, "CODEGRAPH__AUTH__READ_TOKENS_FILE"),
            (Scope::Write, &self.write_tokens, &self.write_tokens_file, "CODEGRAPH__AUTH__WRITE_TOKENS_FILE"),
            (Scope::Admin, &self.admin_tokens, &self.admin_tokens_file, "CODEGRAPH__AUTH__ADMIN_TOKENS_FILE"),
        ] {
            set.grant_all(split_tokens(list), Scopes::of(scope));
            let path = file.trim();
            if !path.is_empty() {
                let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::UnreadableFile {
                    setting,
                    path: path.to_owned(),
                    source,
                })?;
                if split_tokens(&text).next().is_none() {
                    return Err(AuthConfigError::EmptyFile { setting, path: path.to_owned() });
                }
                set.grant_all(split_tokens(&text), Scopes::of(scope));
            }
        }
        Ok(set)
    }

    /// The listed origins, trimmed, without empty entries.
    pub fn allowed_origin_list(&self) -> Vec<String> {
        split_tokens(&self.allowed_origins).map(str::to_owned).collect()
    }
}

/// The tokens of a comma- or newline-separated text, trimmed, without empty ones.
pub fn split_tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', '\n', '\r']).map(str::trim).filter(|t| !t.is_empty())
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Queries, snapshots, job status, the live channel.
    Read,
    /// Mutations of the graph, analyses and job cancels.
    Write,
    /// Destructive project-wide operations (`reset`).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Admin => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes (a token's grant).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);
    pub const ALL: Scopes = Scopes(7);

    pub fn of(scope: Scope) -> Self {
        Scopes(scope.bit())
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }
}

/// Why a request is refused. `MissingToken` and `UnknownToken` are 401 (WebSocket 4401), `MissingScope` is 403
/// (4403).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    MissingToken,
    UnknownToken,
    MissingScope(Scope),
}

impl Denial {
    /// The client-facing reason (never names a token).
    pub fn message(self) -> String {
        match self {
            Denial::MissingToken => "this route needs a token: `Authorization: Bearer <token>`".to_owned(),
            Denial::UnknownToken => "invalid bearer token".to_owned(),
            Denial::MissingScope(scope) => format!("this token lacks the `{scope}` scope"),
        }
    }
}

/// The configured tokens and their scopes. Empty: the service is open (every check passes).
#[derive(Clone, Default)]
pub struct TokenSet {
    grants: Vec<(Vec<u8>, Scopes)>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a token.
        f.debug_struct("TokenSet").field("tokens", &self.grants.len()).finish()
    }
}

impl TokenSet {
    /// Adds `scopes` to `token` (a token in several lists holds each list's scope).
    pub fn grant(&mut self, token: &str, scopes: Scopes) {
        let token = token.trim();
        if token.is_empty() {
            return;
        }
        match self.grants.iter_mut().find(|(t, _)| t.as_slice() == token.as_bytes()) {
            Some((_, held)) => *held = held.union(scopes),
            None => self.grants.push((token.as_bytes().to_vec(), scopes)),
        }
    }

    /// [`grant`](Self::grant) for each token (e.g. the legacy `CODEGRAPH__API__TOKENS`, with [`Scopes::ALL`]).
    pub fn grant_all<'a>(&mut self, tokens: impl IntoIterator<Item = &'a str>, scopes: Scopes) {
        for token in tokens {
            self.grant(token, scopes);
        }
    }

    /// No token configured: the service is open.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// How many distinct tokens are configured.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// The scopes of `presented`, or `None` for an unknown token. Compares with every configured token, each
    /// comparison in time that depends only on the lengths, so neither which token matched nor a common prefix
    /// shows in the timing.
    pub fn scopes_of(&self, presented: &str) -> Option<Scopes> {
        let presented = presented.as_bytes();
        let mut granted = 0u8;
        let mut matched = 0u8;
        for (token, scopes) in &self.grants {
            let equal = constant_time_eq(token, presented);
            // Branch-free: mask is 0xFF when equal, else 0.
            let mask = 0u8.wrapping_sub(equal as u8);
            granted |= scopes.0 & mask;
            matched |= equal as u8;
        }
        (matched == 1).then_some(Scopes(granted))
    }

    /// May a request presenting `presented` (the bearer token, if any) use a route that needs `needed`?
    /// Always yes when no token is configured.
    pub fn authorize(&self, presented: Option<&str>, needed: Scope) -> Result<(), Denial> {
        if self.is_empty() {
            return Ok(());
        }
        let presented = presented.ok_or(Denial::MissingToken)?;
        let scopes = self.scopes_of(presented).ok_or(Denial::UnknownToken)?;
        if scopes.contains(needed) {
            Ok(())
        } else {
            Err(Denial::MissingScope(needed))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive), if it is one.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Equality whose time depends on the lengths only, not on where the bytes first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The start-up rule: a service listening on `addr` with no token configured may only start when `addr` is a
/// loopback address (`127.0.0.0/8`, `::1`, `localhost`) or `allow_open` says the deployment is open on purpose.
/// `0.0.0.0`, `::` and every other host name count as reachable from outside. The error says what to set.
pub fn require_bind_safety(addr: &str, tokens_configured: bool, allow_open: bool) -> Result<(), String> {
    if tokens_configured || allow_open || is_loopback(addr) {
        return Ok(());
    }
    Err(format!(
        "refusing to start: listening on {addr:?}, which is not a loopback address, with no token configured would \
         let anyone read and change the graph. Set tokens (CODEGRAPH__AUTH__READ_TOKENS, \
         CODEGRAPH__AUTH__WRITE_TOKENS, CODEGRAPH__AUTH__ADMIN_TOKENS or their _FILE forms), or set \
         CODEGRAPH__AUTH__ALLOW_OPEN=true if this deployment is open on purpose"
    ))
}

/// Whether the host of a `host:port` listen address is loopback-only.
fn is_loopback(addr: &str) -> bool {
    let addr = addr.trim();
    if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
        return sock.ip().is_loopback();
    }
    let host = match addr.rsplit_once(':') {
        // `[::1]:80` is handled above; a bare IPv6 address (no port) has several colons.
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether a browser request with `Origin: origin`, sent to `host_header` (the `Host` header, or a proxy's
/// `X-Forwarded-Host`) over `scheme` (`http`/`https` as the service or its proxy saw it), may change state: yes
/// when `allowed` lists it (compared without case, trailing slash or default port; `null`, the origin of
/// sandboxed frames and `file:` pages, only when listed), or when it is the request's own origin: the same host,
/// and
/// - the same port, except that a `Host` without a port matches any port: a proxy that forwards `$host` (nginx)
///   drops the port the browser used, so only the host name can be compared (a page on another port of the same
///   host is trusted as the host is);
/// - the same scheme, except that an `https` origin is accepted over `http`: a proxy that ended TLS forwards the
///   request as plain HTTP. The reverse (an `http` page writing to an `https` service) is refused.
pub fn origin_allowed(origin: &str, host_header: Option<&str>, scheme: &str, allowed: &[String]) -> bool {
    let normalized = normalize_origin(origin);
    if allowed.iter().any(|a| normalize_origin(a) == normalized) {
        return true;
    }
    let Some(host) = host_header.map(str::trim).filter(|h| !h.is_empty()) else {
        return false;
    };
    let Some((origin_scheme, origin_authority)) = normalized.split_once("://") else {
        return false;
    };
    let seen_scheme = scheme.trim().to_ascii_lowercase();
    let scheme_matches = origin_scheme == seen_scheme || (origin_scheme == "https" && seen_scheme == "http");
    let default_port = match origin_scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let (origin_host, origin_port) = split_authority(origin_authority);
    let host = host.to_ascii_lowercase();
    let (request_host, request_port) = split_authority(&host);
    let port_matches = match request_port {
        None => true,
        Some(port) => port == origin_port.unwrap_or(default_port),
    };
    scheme_matches && !origin_host.is_empty() && origin_host == request_host && port_matches
}

/// `host[:port]` (`[v6]:port` too) into the host and the port, if any.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    let port_at = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => i,
        _ => return (authority, None),
    };
    let (host, port) = (&authority[..port_at], &authority[port_at + 1..]);
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || (host.contains(':') && !host.starts_with('[')) {
        return (authority, None);
    }
    (host, Some(port))
}

/// `scheme://host[:port]`, lowercase, no trailing slash, no default port.
fn normalize_origin(origin: &str) -> String {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if let Some(rest) = o.strip_prefix("http://") {
        if let Some(host) = rest.strip_suffix(":80") {
            return format!("http://{host}");
        }
    } else if let Some(rest) = o.strip_prefix("https://") {
        if let Some(host) = rest.strip_suffix(":443") {
            return format!("https://{host}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings::default()
    }

    #[test]
    fn lists_grant_their_scopes_and_a_token_in_several_lists_holds_each() {
        let s = AuthSettings {
            read_tokens: " r1, both ,".into(),
            write_tokens: "w1,both".into(),
            admin_tokens: "a1".into(),
            ..settings()
        };
        let set = s.token_set().unwrap();
        assert_eq!(set.len(), 4);
        assert_eq!(set.scopes_of("r1"), Some(Scopes::of(Scope::Read)));
        assert_eq!(set.scopes_of("both"), Some(Scopes::of(Scope::Read).union(Scopes::of(Scope::Write))));
        assert_eq!(set.scopes_of("a1"), Some(Scopes::of(Scope::Admin)));
        assert_eq!(set.scopes_of("nope"), None);
        assert_eq!(set.scopes_of(""), None);
        assert_eq!(set.scopes_of("r"), None, "a prefix is not the token");
        assert_eq!(set.scopes_of("r1x"), None, "nor is a longer one");
    }

    #[test]
    fn authorize_distinguishes_missing_unknown_and_lacking_scope() {
        let mut set = TokenSet::default();
        set.grant("reader", Scopes::of(Scope::Read));
        set.grant_all(["root"], Scopes::ALL);
        assert_eq!(set.authorize(None, Scope::Read), Err(Denial::MissingToken));
        assert_eq!(set.authorize(Some("x"), Scope::Read), Err(Denial::UnknownToken));
        assert_eq!(set.authorize(Some("reader"), Scope::Write), Err(Denial::MissingScope(Scope::Write)));
        assert_eq!(set.authorize(Some("reader"), Scope::Read), Ok(()));
        for scope in Scope::ALL {
            assert_eq!(set.authorize(Some("root"), scope), Ok(()));
        }
        assert_eq!(TokenSet::default().authorize(None, Scope::Admin), Ok(()), "no token configured: open");
        assert!(!format!("{set:?}").contains("reader"), "Debug never shows a token");
    }

    #[test]
    fn tokens_come_from_files_one_per_line_or_comma_separated() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "  f1  \n\nf2,f3\r\n").unwrap();
        let s = AuthSettings {
            write_tokens_file: file.path().display().to_string(),
            read_tokens: "f1".into(),
            ..settings()
        };
        let set = s.token_set().unwrap();
        assert_eq!(set.scopes_of("f1"), Some(Scopes::of(Scope::Read).union(Scopes::of(Scope::Write))));
        assert_eq!(set.scopes_of("f2"), Some(Scopes::of(Scope::Write)));
        assert_eq!(set.scopes_of("f3"), Some(Scopes::of(Scope::Write)));
    }

    #[test]
    fn a_missing_or_empty_token_file_is_a_start_up_error_naming_the_setting() {
        let s = AuthSettings { admin_tokens_file: "/nonexistent/codegraph/tokens".into(), ..settings() };
        let e = s.token_set().unwrap_err().to_string();
        assert!(e.contains("CODEGRAPH__AUTH__ADMIN_TOKENS_FILE") && e.contains("/nonexistent/codegraph/tokens"), "{e}");

        let empty = tempfile::NamedTempFile::new().unwrap();
        let s = AuthSettings { read_tokens_file: empty.path().display().to_string(), ..settings() };
        let e = s.token_set().unwrap_err().to_string();
        assert!(e.contains("CODEGRAPH__AUTH__READ_TOKENS_FILE") && e.contains("no token"), "{e}");
    }

    #[test]
    fn nothing_configured_is_an_open_set() {
        assert!(settings().token_set().unwrap().is_empty());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn compares_in_full() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn an_open_service_starts_only_on_loopback() {
        for addr in ["127.0.0.1:8000", "127.0.0.2:1", "[::1]:8000", "localhost:8000", "LOCALHOST:1", "::1", "localhost"]
        {
            assert_eq!(require_bind_safety(addr, false, false), Ok(()), "{addr}");
        }
        for addr in ["0.0.0.0:8000", "[::]:8000", "10.0.0.5:80", "example.com:8000", "graph-api:8000", "::"] {
            let e = require_bind_safety(addr, false, false).unwrap_err();
            assert!(e.contains("CODEGRAPH__AUTH__ALLOW_OPEN=true") && e.contains("READ_TOKENS"), "{addr}: {e}");
            assert!(e.contains(addr), "names the address: {e}");
            assert_eq!(require_bind_safety(addr, true, false), Ok(()), "tokens configured: {addr}");
            assert_eq!(require_bind_safety(addr, false, true), Ok(()), "open on purpose: {addr}");
        }
    }

    #[test]
    fn the_own_origin_is_allowed_others_only_when_listed() {
        let listed = vec!["https://dash.example.com".to_owned(), "http://localhost:5173/".to_owned()];
        assert!(origin_allowed("http://api.local:8000", Some("api.local:8000"), "http", &[]));
        assert!(origin_allowed("HTTP://API.local:8000/", Some("api.local:8000"), "http", &[]));
        assert!(origin_allowed("https://api.example.com", Some("api.example.com:443"), "https", &[]));
        assert!(origin_allowed("http://api.example.com:80", Some("api.example.com"), "http", &[]));
        assert!(origin_allowed("http://[::1]:8000", Some("[::1]:8000"), "http", &[]));
        assert!(!origin_allowed("http://[::1]:8001", Some("[::1]:8000"), "http", &[]));
        assert!(!origin_allowed("http://api.local:8000", Some("api.local:8000"), "https", &[]), "http page to https");
        assert!(!origin_allowed("http://evil.example", Some("api.local:8000"), "http", &listed));
        assert!(!origin_allowed("http://api.local.evil:8000", Some("api.local:8000"), "http", &listed));
        assert!(!origin_allowed("http://api.local:8001", Some("api.local:8000"), "http", &[]), "port differs");
        assert!(!origin_allowed("http://api.local:8000", None, "http", &[]), "no Host: nothing to compare");
        assert!(!origin_allowed("ftp://api.local", Some("api.local"), "http", &[]));
        assert!(origin_allowed("https://dash.example.com", Some("api.local"), "http", &listed));
        assert!(origin_allowed("http://localhost:5173", Some("api.local"), "http", &listed));
        assert!(!origin_allowed("null", Some("api.local"), "http", &listed));
        assert!(origin_allowed("null", Some("api.local"), "http", &["null".to_owned()]));
    }

    #[test]
    fn behind_a_proxy_the_host_name_and_an_ended_tls_still_make_the_own_origin() {
        // nginx's `proxy_set_header Host $host` drops the port the browser used.
        assert!(origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1"), "http", &[]));
        assert!(!origin_allowed("http://evil.example:8080", Some("127.0.0.1"), "http", &[]));
        // An Ingress ended TLS: the request reaches the service as http.
        assert!(origin_allowed("https://cg.example.com", Some("cg.example.com"), "http", &[]));
        assert!(!origin_allowed("https://evil.example.com", Some("cg.example.com"), "http", &[]));
    }
}
