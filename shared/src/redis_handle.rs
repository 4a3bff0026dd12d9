//! A Redis handle that never blocks start-up: it connects on first use and reconnects by itself.
//!
//! A service starts (and answers `/health`) while Redis is down; requests then fail fast with an error that
//! [`crate::functions::is_unavailable`] recognises (→ 503), and succeed again once Redis is back.
//!
//! `rediss://` URLs speak TLS (rustls). The server's certificate is always verified, against the system's roots or,
//! when [`RedisTls::ca_file`] names one, against that private CA alone; only a URL ending in `#insecure` (the redis
//! crate's own switch) turns verification off, with a warning in the log. A refused handshake (wrong CA, wrong name) is an I/O error on
//! connect, so it is reported and retried like any outage, never a crash.

use std::{path::PathBuf, time::Duration};

use redis::{
    aio::ConnectionManager, aio::ConnectionManagerConfig, Client, ClientTlsConfig, ErrorKind, IntoConnectionInfo,
    RedisError, TlsCertificates,
};

/// Environment variables read by [`RedisHandle::open`] (the same names `settings::load` maps to `[redis]`).
const CA_FILE_ENV: &str = "CODEGRAPH__REDIS__CA_FILE";
const CERT_FILE_ENV: &str = "CODEGRAPH__REDIS__CERT_FILE";
const KEY_FILE_ENV: &str = "CODEGRAPH__REDIS__KEY_FILE";

/// TLS material for `rediss://` URLs (ignored for `redis://`): PEM files, read when the client is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// The private CA(s) that signed the server's certificate; they replace the system roots for this server.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (chain) and its key, for servers that require mutual TLS (`tls-auth-clients yes`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl RedisTls {
    /// From `CODEGRAPH__REDIS__CA_FILE`, `…__CERT_FILE`, `…__KEY_FILE` (unset or empty: none).
    pub fn from_env() -> Self {
        let path = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Self { ca_file: path(CA_FILE_ENV), cert_file: path(CERT_FILE_ENV), key_file: path(KEY_FILE_ENV) }
    }

    /// From settings fields, where an empty string means none.
    pub fn from_paths(ca_file: &str, cert_file: &str, key_file: &str) -> Self {
        let path = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
        Self { ca_file: path(ca_file), cert_file: path(cert_file), key_file: path(key_file) }
    }

    fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The files' contents, in the form the redis crate takes them. A missing file is a configuration error.
    fn certificates(&self) -> Result<TlsCertificates, RedisError> {
        let client_tls = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientTlsConfig { client_cert: read(cert)?, client_key: read(key)? }),
            _ => return Err(config_error("a client certificate needs both cert_file and key_file".into())),
        };
        Ok(TlsCertificates { client_tls, root_cert: self.ca_file.as_ref().map(read).transpose()? })
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path).map_err(|e| config_error(format!("redis TLS file {}: {e}", path.display())))
}

fn config_error(detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, "invalid Redis TLS configuration", detail))
}

/// A client for `url`: plain for `redis://`, TLS with `tls`'s files for `rediss://`. Fails for a malformed URL, a
/// TLS file that cannot be read or parsed, or TLS files given for a `redis://` URL (they would silently do nothing).
pub fn client(url: &str, tls: &RedisTls) -> Result<Client, RedisError> {
    let info = url.into_connection_info()?;
    let is_tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { insecure: true, .. }) {
        tracing::warn!(url = %redact(url), "the Redis URL says #insecure: the server's certificate is not verified");
    }
    match (is_tls, tls.is_empty()) {
        (_, true) => Client::open(info),
        (true, false) => Client::build_with_tls(info, tls.certificates()?),
        (false, false) => {
            Err(config_error(format!("TLS files are configured but {} is not a rediss:// URL", redact(url))))
        }
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…{}", &url[at..]),
        _ => url.to_owned(),
    }
}

#[derive(Clone)]
pub struct RedisHandle {
    client: Client,
    manager: ConnectionManager,
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHandle").field("addr", &self.client.get_connection_info().addr()).finish()
    }
}

impl RedisHandle {
    /// Prepares the handle without connecting, with the TLS files named by `CODEGRAPH__REDIS__CA_FILE` (and
    /// `…__CERT_FILE`/`…__KEY_FILE`) when the URL is `rediss://`. Fails only for a malformed URL or unreadable TLS
    /// files. Must run inside a Tokio runtime.
    pub fn open(url: &str) -> Result<Self, RedisError> {
        Self::open_with(url, &RedisTls::from_env())
    }

    /// [`open`](Self::open) with the `[redis]` settings (URL and TLS files from any configuration layer).
    pub fn from_settings(settings: &crate::settings::RedisSettings) -> Result<Self, RedisError> {
        Self::open_with(&settings.url, &settings.tls())
    }

    /// [`open`](Self::open) with explicit TLS files (the environment is not read).
    pub fn open_with(url: &str, tls: &RedisTls) -> Result<Self, RedisError> {
        let client = client(url, tls)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self { client, manager })
    }

    /// The shared multiplexed connection (cheap to clone; requests pipeline over one socket).
    pub fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// The client, for dedicated connections (Pub/Sub, blocking reads). It carries the TLS configuration.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A dedicated connection for blocking reads (`XREAD`/`XREADGROUP … BLOCK`), so they never delay the shared
    /// one. Its response timeout is the block time plus a margin: the default one is shorter than a block and
    /// would end every idle read with a time-out.
    pub async fn blocking_connection(&self, block: Duration) -> Result<redis::aio::MultiplexedConnection, RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(block + Duration::from_secs(5)));
        self.client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// `PING`: true when Redis answers.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_need_a_tls_url_and_exist() {
        let ca = RedisTls { ca_file: Some("/no/such/ca.pem".into()), ..Default::default() };
        let e = client("redis://127.0.0.1:6379", &ca).unwrap_err().to_string();
        assert!(e.contains("not a rediss:// URL"), "{e}");
        let e = client("rediss://127.0.0.1:6379", &ca).unwrap_err().to_string();
        assert!(e.contains("/no/such/ca.pem"), "{e}");
        let half = RedisTls { cert_file: Some("/c.pem".into()), ..Default::default() };
        assert!(client("rediss://127.0.0.1:6379", &half).unwrap_err().to_string().contains("both"));
        assert!(client("rediss://127.0.0.1:6379", &RedisTls::default()).is_ok());
        assert!(client("redis://127.0.0.1:6379", &RedisTls::default()).is_ok());
    }

    #[test]
    fn urls_in_messages_lose_their_password() {
        assert_eq!(redact("redis://:secret@h:1"), "redis://…@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
