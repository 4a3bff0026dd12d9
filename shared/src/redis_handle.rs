//! A Redis handle that never blocks start-up: it connects on first use and reconnects by itself.
//!
//! A service starts (and answers `/health`) while Redis is down; requests then fail fast with an error that
//! [`crate::functions::is_unavailable`] recognises (→ 503), and succeed again once Redis is back.
//!
//! `rediss://` URLs speak TLS (rustls). The server's certificate is always verified, against the system's roots or,
//! when [`RedisTls::ca_file`] names one, against that private CA alone; only a URL ending in `#insecure` (the redis
//! crate's own switch) turns verification off, with a warning in the log. A refused handshake (wrong CA, wrong name) is an I/O error on
//! connect, so it is reported and retried like any outage, never a crash.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
    Client, ClientTlsConfig, ErrorKind, IntoConnectionInfo, PushInfo, RedisError, RedisFuture, TlsCertificates, Value,
};

use crate::functions::PublishMode;

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

/// Where the services' Redis is: one server, or a Redis Cluster reached through seed nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

// One per service, cloned rarely: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Inner {
    Single {
        client: Client,
        manager: ConnectionManager,
    },
    /// `conn` speaks RESP2 like a single Redis handle, so replies parse the same on both topologies; Pub/Sub
    /// connections (RESP3, for pushes) and blocking readers are made from `seeds` when needed.
    Cluster {
        conn: ClusterConnection,
        seeds: Arc<Seeds>,
    },
}

/// The cluster's seed URLs and the nodes seen since, so a new connection (Pub/Sub, a blocking reader) can start
/// from any live node, not only from seeds that may have died since.
struct Seeds {
    configured: Vec<String>,
    tls: RedisTls,
    /// `host:port` of every node the last `CLUSTER SLOTS` named.
    seen: Mutex<Vec<(String, u16)>>,
}

impl Seeds {
    /// The configured seeds, then every node seen (as URLs with the first seed's scheme and credentials).
    fn urls(&self) -> Vec<String> {
        let mut urls = self.configured.clone();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (host, port) in seen {
            let url = with_authority(&self.configured[0], &format!("{host}:{port}"));
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        urls
    }

    fn client(&self, protocol: Option<redis::ProtocolVersion>) -> Result<ClusterClient, RedisError> {
        cluster_client(&self.urls(), &self.tls, protocol)
    }
}

/// `url` with its `host:port` replaced (scheme, credentials, path and fragment kept).
fn with_authority(url: &str, authority: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    format!("{scheme}://{userinfo}{authority}{}", &rest[end..])
}

/// The services' Redis: a single server (`redis.url`) or a cluster (`redis.cluster_nodes`), behind one handle.
///
/// On a cluster every command is routed by its key to the node that owns the key's slot (the redis crate's own
/// `cluster-async`, which follows `MOVED`/`ASK` and failovers); every key of a project carries the hash tag
/// `{project}`, so a project's keys, stream and channel live on one node and a Function call touches one slot.
#[derive(Clone)]
pub struct RedisHandle {
    inner: Inner,
    publish: PublishMode,
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Single { client, .. } => {
                f.debug_struct("RedisHandle").field("addr", &client.get_connection_info().addr()).finish()
            }
            Inner::Cluster { .. } => f.debug_struct("RedisHandle").field("topology", &"cluster").finish(),
        }
    }
}

/// A connection of a [`RedisHandle`]: cheap to clone, requests pipeline over it, and it reconnects by itself.
#[derive(Clone)]
pub enum RedisConn {
    /// The shared connection to a single Redis.
    Single(ConnectionManager),
    /// A dedicated connection to a single Redis (blocking reads).
    Dedicated(MultiplexedConnection),
    /// A cluster connection: one multiplexed connection per node, commands routed by slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Dedicated(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Dedicated(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => match pipeline.is_transaction() {
                true => Box::pin(transaction_on_cluster(c, pipeline, offset, count)),
                false => c.req_packed_commands(pipeline, offset, count),
            },
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Dedicated(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A `MULTI`…`EXEC` on a cluster. After a failover the crate's slot map may still name the old primary; a
/// transaction sent there is aborted with `MOVED` inside, which (unlike a plain command's `MOVED`) the crate does
/// not follow. So: run it again at the node the `MOVED` names, and make the crate refresh its slot map (a plain
/// read of a key of that slot, which gets the `MOVED` the crate does follow).
async fn transaction_on_cluster(
    conn: &mut ClusterConnection,
    pipeline: &redis::Pipeline,
    offset: usize,
    count: usize,
) -> Result<Vec<Value>, RedisError> {
    let e = match conn.req_packed_commands(pipeline, offset, count).await {
        Err(e) => e,
        ok => return ok,
    };
    let Some((slot, host, port)) = moved_inside(&e) else { return Err(e) };
    let owner = SingleNodeRoutingInfo::ByAddress { host: host.clone(), port };
    let probe = redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(1).clone();
    if let Ok(reply) = conn.route_command(probe, RoutingInfo::SingleNode(owner.clone())).await {
        if let Ok(Some(key)) = redis::from_redis_value::<Vec<Vec<u8>>>(reply).map(|keys| keys.into_iter().next()) {
            let _ = redis::cmd("EXISTS").arg(key).query_async::<Value>(conn).await;
        }
    }
    tracing::debug!(slot, %host, port, "a transaction met MOVED: sent again to the slot's new owner");
    conn.route_pipeline(pipeline.clone(), offset, count, owner).await
}

/// The slot and new owner of a `MOVED` error inside an aborted transaction (`… Moved: 865 10.0.0.2:7001 …`).
fn moved_inside(e: &RedisError) -> Option<(u16, String, u16)> {
    let text = e.to_string();
    let rest = &text[text.find("Moved: ")? + "Moved: ".len()..];
    let mut words = rest.split(|c: char| c.is_whitespace() || c == ')' || c == ',');
    let slot = words.next()?.parse().ok()?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    Some((slot, host.to_owned(), port.parse().ok()?))
}

impl RedisConn {
    /// Loads the Function library where it is missing or older: on the server, or on every primary of a cluster
    /// (each checked by its own version, so a newer library is never replaced by this build's older one).
    pub async fn ensure_library(&mut self) -> Result<(), RedisError> {
        let Self::Cluster(conn) = self else { return crate::functions::ensure_loaded(self).await };
        for (host, port) in cluster_primaries(conn).await? {
            let mut node = NodeConn { conn: conn.clone(), host, port };
            crate::functions::ensure_loaded(&mut node).await?;
        }
        Ok(())
    }
}

/// One node of a cluster, addressed through the cluster connection (for per-node administration).
#[derive(Clone)]
struct NodeConn {
    conn: ClusterConnection,
    host: String,
    port: u16,
}

impl ConnectionLike for NodeConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        let route =
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: self.host.clone(), port: self.port });
        Box::pin(self.conn.route_command(cmd.clone(), route))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let route = SingleNodeRoutingInfo::ByAddress { host: self.host.clone(), port: self.port };
        Box::pin(self.conn.route_pipeline(pipeline.clone(), offset, count, route))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The primaries of the cluster (host, port), from `CLUSTER SLOTS`.
async fn cluster_primaries(conn: &mut ClusterConnection) -> Result<Vec<(String, u16)>, RedisError> {
    slot_owners(conn, false).await
}

/// Every node serving slots, primaries and replicas (host, port), from `CLUSTER SLOTS`.
async fn cluster_nodes(conn: &mut ClusterConnection) -> Result<Vec<(String, u16)>, RedisError> {
    slot_owners(conn, true).await
}

async fn slot_owners(conn: &mut ClusterConnection, replicas: bool) -> Result<Vec<(String, u16)>, RedisError> {
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut out: Vec<(String, u16)> = Vec::new();
    for range in slots {
        let Value::Array(parts) = range else { continue };
        let nodes = parts.iter().skip(2).take(if replicas { usize::MAX } else { 1 });
        for node in nodes {
            let Value::Array(node) = node else { continue };
            let host: Option<String> = node.first().and_then(|v| redis::from_redis_value_ref(v).ok());
            let port: Option<u16> = node.get(1).and_then(|v| redis::from_redis_value_ref(v).ok());
            if let (Some(host), Some(port)) = (host, port) {
                if !out.contains(&(host.clone(), port)) {
                    out.push((host, port));
                }
            }
        }
    }
    Ok(out)
}

/// What a Pub/Sub subscription receives on a cluster connection: the pushes of every node.
pub type PushReceiver = tokio::sync::mpsc::UnboundedReceiver<PushInfo>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

impl RedisHandle {
    /// Prepares the handle without connecting, with the TLS files named by `CODEGRAPH__REDIS__CA_FILE` (and
    /// `…__CERT_FILE`/`…__KEY_FILE`) when the URL is `rediss://`. Fails only for a malformed URL or unreadable TLS
    /// files. Must run inside a Tokio runtime.
    pub fn open(url: &str) -> Result<Self, RedisError> {
        Self::open_with(url, &RedisTls::from_env())
    }

    /// The handle the `[redis]` settings describe: a cluster when `cluster_nodes` lists seeds, else `url`; TLS files
    /// from any configuration layer; the publish command (`publish`, or its default for the topology).
    pub fn from_settings(settings: &crate::settings::RedisSettings) -> Result<Self, RedisError> {
        let seeds = settings.cluster_seeds();
        let handle = if seeds.is_empty() {
            Self::open_with(&settings.url, &settings.tls())?
        } else {
            Self::open_cluster(&seeds, &settings.tls())?
        };
        let handle = Self { publish: settings.publish_mode(), ..handle };
        tokio::spawn(report_misconfiguration(handle.clone()));
        Ok(handle)
    }

    /// [`open`](Self::open) with explicit TLS files (the environment is not read).
    pub fn open_with(url: &str, tls: &RedisTls) -> Result<Self, RedisError> {
        let client = client(url, tls)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self { inner: Inner::Single { client, manager }, publish: PublishMode::Classic })
    }

    /// A cluster handle from seed node URLs (`redis://` or `rediss://`, with credentials), without connecting:
    /// the connection is made in the background and on use, so a service starts while the cluster is down.
    pub fn open_cluster(seeds: &[String], tls: &RedisTls) -> Result<Self, RedisError> {
        let client = cluster_client(seeds, tls, None)?;
        let conn = client.get_pending_async_connection_with_config(cluster_config(RESPONSE_TIMEOUT));
        let seeds = Arc::new(Seeds { configured: seeds.to_vec(), tls: tls.clone(), seen: Mutex::new(Vec::new()) });
        let handle = Self { inner: Inner::Cluster { conn, seeds }, publish: PublishMode::Sharded };
        tokio::spawn(follow_nodes(handle.clone()));
        Ok(handle)
    }

    pub fn topology(&self) -> Topology {
        match self.inner {
            Inner::Single { .. } => Topology::Single,
            Inner::Cluster { .. } => Topology::Cluster,
        }
    }

    /// The command events are published with: `PUBLISH`, or `SPUBLISH` (sharded channels, the cluster default).
    pub fn publish_mode(&self) -> PublishMode {
        self.publish
    }

    /// The shared connection (cheap to clone; requests pipeline over it).
    pub fn conn(&self) -> RedisConn {
        match &self.inner {
            Inner::Single { manager, .. } => RedisConn::Single(manager.clone()),
            Inner::Cluster { conn, .. } => RedisConn::Cluster(conn.clone()),
        }
    }

    /// The single-Redis client, for dedicated connections (Pub/Sub); `None` on a cluster.
    pub fn single_client(&self) -> Option<&Client> {
        match &self.inner {
            Inner::Single { client, .. } => Some(client),
            Inner::Cluster { .. } => None,
        }
    }

    /// A dedicated connection for blocking reads (`XREAD`/`XREADGROUP … BLOCK`), so they never delay the shared
    /// one. Its response timeout is the block time plus a margin: the default one is shorter than a block and
    /// would end every idle read with a time-out. On a cluster it routes each read to the node of its stream.
    pub async fn blocking_connection(&self, block: Duration) -> Result<RedisConn, RedisError> {
        let timeout = block + Duration::from_secs(5);
        match &self.inner {
            Inner::Single { client, .. } => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(timeout));
                Ok(RedisConn::Dedicated(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            Inner::Cluster { seeds, .. } => {
                let client = seeds.client(None)?;
                Ok(RedisConn::Cluster(client.get_async_connection_with_config(cluster_config(timeout)).await?))
            }
        }
    }

    /// A cluster connection for Pub/Sub (RESP3): messages and the library's `Disconnection` pushes arrive on the
    /// receiver; the crate re-subscribes after reconnects and slot moves (messages in between are not replayed).
    /// `None` on a single Redis (use [`Self::single_client`]'s `get_async_pubsub`).
    pub async fn cluster_pubsub(&self) -> Option<Result<(ClusterConnection, PushReceiver), RedisError>> {
        let Inner::Cluster { seeds, .. } = &self.inner else { return None };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let config = cluster_config(RESPONSE_TIMEOUT).set_push_sender(tx);
        let client = match seeds.client(Some(redis::ProtocolVersion::RESP3)) {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        Some(client.get_async_connection_with_config(config).await.map(|c| (c, rx)))
    }

    /// `PING`: true when Redis answers.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }

    /// Whether Redis is reachable *and* is what the settings say: a cluster with every slot served for a cluster
    /// handle; a server without cluster mode for a single handle (a cluster node behind `redis.url` would answer
    /// every other key with `MOVED`); `SPUBLISH` only on a cluster. The error says what is wrong.
    pub async fn check(&self) -> Result<(), TopologyError> {
        let mut conn = self.conn();
        match &self.inner {
            Inner::Single { .. } => {
                let info: String = redis::cmd("INFO").arg("cluster").query_async(&mut conn).await?;
                if info.contains("cluster_enabled:1") {
                    return Err(TopologyError::Misconfigured(
                        "redis.url points at a Redis Cluster node: list the cluster's nodes in \
                         CODEGRAPH__REDIS__CLUSTER_NODES instead"
                            .into(),
                    ));
                }
                if self.publish == PublishMode::Sharded {
                    return Err(TopologyError::Misconfigured(
                        "redis.publish = sharded needs a Redis Cluster, but redis.url is a single Redis: use \
                         classic, or set CODEGRAPH__REDIS__CLUSTER_NODES"
                            .into(),
                    ));
                }
                Ok(())
            }
            Inner::Cluster { .. } => {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await?;
                let field = |name: &str| {
                    info.lines().find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')).unwrap_or("").to_owned()
                };
                if field("cluster_state") != "ok" || field("cluster_slots_ok") != "16384" {
                    return Err(TopologyError::Misconfigured(format!(
                        "the Redis Cluster does not serve every slot (cluster_state {}, {} of 16384 slots ok)",
                        field("cluster_state"),
                        field("cluster_slots_ok"),
                    )));
                }
                Ok(())
            }
        }
    }
}

impl RedisHandle {
    /// Readiness: [`Self::check`], then this build's Function library (or a newer one) on the server, or on every
    /// primary of a cluster. Returns the lowest library version found.
    pub async fn readiness(&self) -> Result<i64, TopologyError> {
        self.check().await?;
        let mut conn = self.conn();
        let versions = match &mut conn {
            RedisConn::Cluster(c) => {
                let mut versions = Vec::new();
                for (host, port) in cluster_primaries(c).await? {
                    versions.push(library_version_of(&mut NodeConn { conn: c.clone(), host, port }).await?);
                }
                versions
            }
            other => vec![library_version_of(other).await?],
        };
        let lowest = versions.into_iter().min().unwrap_or(0);
        if lowest < crate::functions::library_version() {
            return Err(TopologyError::Misconfigured(format!(
                "redis has Function library version {lowest}, this build needs {}",
                crate::functions::library_version()
            )));
        }
        Ok(lowest)
    }
}

/// Logs, once Redis first answers, an error when it is not what the settings say (the service keeps running and
/// answers `/ready` with the reason: an operator fixes the settings; no crash loop).
async fn report_misconfiguration(handle: RedisHandle) {
    let mut wait = Duration::from_millis(200);
    loop {
        match handle.check().await {
            Ok(()) => return,
            Err(TopologyError::Misconfigured(why)) => {
                tracing::error!(problem = %why, "Redis is not what the settings describe; not ready until fixed");
                return;
            }
            Err(TopologyError::Unavailable(_)) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Keeps the cluster's node list (for new connections) current while the handle lives: every few seconds the
/// nodes `CLUSTER SLOTS` names (primaries and replicas), through the shared connection, which follows failovers.
async fn follow_nodes(handle: RedisHandle) {
    let weak = match &handle.inner {
        Inner::Cluster { seeds, .. } => Arc::downgrade(seeds),
        Inner::Single { .. } => return,
    };
    let mut conn = handle.conn();
    drop(handle);
    loop {
        if let RedisConn::Cluster(c) = &mut conn {
            if let Ok(nodes) = cluster_nodes(c).await {
                let Some(seeds) = weak.upgrade() else { return };
                *seeds.seen.lock().unwrap_or_else(|p| p.into_inner()) = nodes;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        if weak.strong_count() == 0 {
            return;
        }
    }
}

/// `cg_version` of the library on one server; 0 when it has none.
async fn library_version_of<C: ConnectionLike + Send>(conn: &mut C) -> Result<i64, RedisError> {
    match redis::cmd("FCALL_RO").arg("cg_version").arg(0).query_async(conn).await {
        Err(e) if e.to_string().to_lowercase().contains("function not found") => Ok(0),
        other => other,
    }
}

/// Why [`RedisHandle::check`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Redis could not be asked (down, refused, timed out): retry later.
    #[error("redis unavailable: {0}")]
    Unavailable(#[from] RedisError),
    /// Redis answers but is not what the configuration says: an operator must fix the settings or the cluster.
    #[error("{0}")]
    Misconfigured(String),
}

fn cluster_config(response_timeout: Duration) -> ClusterConfig {
    ClusterConfig::new().set_connection_timeout(CONNECT_TIMEOUT).set_response_timeout(response_timeout)
}

/// A cluster client for `seeds`. Every seed must be `redis://` or `rediss://` alike (the crate takes TLS and the
/// credentials from the first); TLS files apply to `rediss://` seeds only, as for a single Redis.
fn cluster_client(
    seeds: &[String],
    tls: &RedisTls,
    protocol: Option<redis::ProtocolVersion>,
) -> Result<ClusterClient, RedisError> {
    let mut infos = Vec::with_capacity(seeds.len());
    for seed in seeds {
        let info = seed.as_str().into_connection_info().map_err(|e| {
            config_error(format!("CODEGRAPH__REDIS__CLUSTER_NODES: {} is not a Redis URL: {e}", redact(seed)))
        })?;
        infos.push(info);
    }
    let is_tls = infos.iter().map(|i| matches!(i.addr(), redis::ConnectionAddr::TcpTls { .. })).collect::<Vec<_>>();
    if is_tls.iter().any(|t| *t != is_tls[0]) {
        return Err(config_error("CODEGRAPH__REDIS__CLUSTER_NODES mixes redis:// and rediss:// seeds".into()));
    }
    let mut builder = ClusterClientBuilder::new(infos)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500);
    if let Some(p) = protocol {
        builder = builder.use_protocol(p);
    }
    match (is_tls[0], tls.is_empty()) {
        (_, true) => {}
        (true, false) => builder = builder.certs(tls.certificates()?),
        (false, false) => {
            return Err(config_error("TLS files are configured but the cluster seeds are not rediss:// URLs".into()))
        }
    }
    builder.build()
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
    fn a_moved_inside_an_aborted_transaction_names_the_new_owner() {
        let e = RedisError::from((
            ErrorKind::Server(redis::ServerErrorKind::ExecAbort),
            "Transaction aborted",
            "[(Index 0, error: Moved: 865 127.0.0.1:7101), (Index 1, error: Moved: 865 127.0.0.1:7101)]".to_owned(),
        ));
        assert_eq!(moved_inside(&e), Some((865, "127.0.0.1".to_owned(), 7101)));
        assert_eq!(moved_inside(&RedisError::from((ErrorKind::Io, "down"))), None);
    }

    #[test]
    fn discovered_nodes_keep_the_seed_scheme_and_credentials() {
        assert_eq!(with_authority("redis://u:p@a:1/0#insecure", "b:2"), "redis://u:p@b:2/0#insecure");
        assert_eq!(with_authority("rediss://a:1", "10.0.0.2:7000"), "rediss://10.0.0.2:7000");
        assert_eq!(with_authority("redis://:secret@a", "b:2"), "redis://:secret@b:2");
    }

    #[test]
    fn urls_in_messages_lose_their_password() {
        assert_eq!(redact("redis://:secret@h:1"), "redis://…@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
