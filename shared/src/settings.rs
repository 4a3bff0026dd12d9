//! Configuration, layered: built-in defaults → optional file `config/<service>.toml` → environment variables
//! `CODEGRAPH__SECTION__KEY` (e.g. `CODEGRAPH__REDIS__URL`). Every setting has a default that works on one machine.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::functions::PublishMode;

/// Prefix of every environment variable that configures a service.
pub const ENV_PREFIX: &str = "CODEGRAPH";

/// Loads the settings of `service`. `S::default()` supplies every default, so a missing file and an empty
/// environment give a working configuration. `CODEGRAPH_CONFIG_DIR` moves the folder of the optional file.
pub fn load<S: Serialize + DeserializeOwned + Default>(service: &str) -> Result<S, config::ConfigError> {
    let dir = std::env::var("CODEGRAPH_CONFIG_DIR").unwrap_or_else(|_| "config".to_owned());
    config::Config::builder()
        .add_source(config::Config::try_from(&S::default())?)
        .add_source(config::File::with_name(&format!("{dir}/{service}")).required(false))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX).prefix_separator("__").separator("__").try_parsing(true),
        )
        .build()?
        .try_deserialize()
}

/// `[redis]`: where Redis is and how events are written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    /// `redis://…` or `rediss://…` (TLS, the server's certificate verified; `#insecure` at the end turns that off).
    pub url: String,
    /// PEM file of the private CA that signed the server's certificate (`rediss://` only; replaces the system roots
    /// for Redis). Empty: the system's roots.
    pub ca_file: String,
    /// PEM client certificate and key, for a Redis that requires mutual TLS. Empty: none.
    pub cert_file: String,
    pub key_file: String,
    /// Safety cap on each CDC stream's length; 0: none. The regular trimming is the stream-consumer's (below what
    /// every group has acknowledged and outside the retention). The cap bounds memory when no consumer runs; like
    /// that trimming it never drops what a consumer group still needs, so a group that lags (or a sink left with
    /// its group) holds the stream above the cap, which is recorded in `code_graph:{p}:cdc:held` and logged by
    /// Redis. Enforced once per 100–1,000 appends (a tenth of the cap), so the stream may exceed it by that.
    pub stream_max_len: u64,
    /// `classic` (PUBLISH) or `sharded` (SPUBLISH, a Redis Cluster's sharded channels). Unset: `classic` on a
    /// single Redis, `sharded` on a cluster.
    pub publish: Option<PublishMode>,
    /// Seed nodes of a Redis Cluster, comma-separated URLs (`redis://` or `rediss://`, with credentials). When set,
    /// the services use the cluster and `url` is ignored. Empty: a single Redis at `url`.
    pub cluster_nodes: String,
    /// When above 0, a mutation is answered 2xx only once this many replicas have it (`WAIT` after the Function
    /// call), so a failover cannot lose an acknowledged mutation; otherwise the request fails with 503 (the
    /// mutation may still be applied and replicated later: a retry is safe, versions and no-op detection make it
    /// idempotent). 0: Redis's asynchronous replication, the default.
    pub min_replicas_ack: u32,
    /// How long a mutation waits for `min_replicas_ack` replicas, in ms.
    pub min_replicas_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            stream_max_len: 5_000_000,
            publish: None,
            cluster_nodes: String::new(),
            min_replicas_ack: 0,
            min_replicas_timeout_ms: 1_000,
        }
    }
}

impl RedisSettings {
    /// The cluster's seed URLs (empty: a single Redis).
    pub fn cluster_seeds(&self) -> Vec<String> {
        self.cluster_nodes.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    /// The publish command in effect: the configured one, else `sharded` on a cluster and `classic` on one Redis.
    pub fn publish_mode(&self) -> PublishMode {
        self.publish.unwrap_or(if self.cluster_seeds().is_empty() {
            PublishMode::Classic
        } else {
            PublishMode::Sharded
        })
    }

    /// The TLS files, for `rediss://` URLs.
    pub fn tls(&self) -> crate::redis_handle::RedisTls {
        crate::redis_handle::RedisTls::from_paths(&self.ca_file, &self.cert_file, &self.key_file)
    }
}

/// `[http]`: the address a service listens on (health, readiness, metrics and its API).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    pub addr: String,
}

impl HttpSettings {
    pub fn with_addr(addr: &str) -> Self {
        Self { addr: addr.to_owned() }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self::with_addr("127.0.0.1:8000")
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[telemetry]`: logs and traces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `graph_api=debug,info`; `RUST_LOG` wins when set.
    pub log_level: String,
    /// OTLP/HTTP endpoint base, e.g. `http://127.0.0.1:4318` or `https://otel.example:4318` (rustls, the system's
    /// roots plus `otlp_ca_file`); empty: traces are not exported (and cost nothing).
    pub otlp_endpoint: String,
    /// PEM file of a private CA for an `https://` OTLP endpoint, trusted besides the system's roots. Empty: none.
    pub otlp_ca_file: String,
    /// Fraction of root traces sampled when exporting (children follow their parent).
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_level: "info".into(),
            otlp_endpoint: String::new(),
            otlp_ca_file: String::new(),
            sample_ratio: 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Demo {
        redis: RedisSettings,
        http: HttpSettings,
    }

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let s: Demo = load("no-such-service-for-test").unwrap();
        assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(s.http.addr, "127.0.0.1:8000");
        assert_eq!(s.redis.publish_mode(), PublishMode::Classic);
        assert!(s.redis.cluster_seeds().is_empty());
    }

    #[test]
    fn a_cluster_publishes_sharded_unless_told_otherwise() {
        let mut r = RedisSettings { cluster_nodes: " redis://a:1, rediss://u:p@b:2 ,".into(), ..Default::default() };
        assert_eq!(r.cluster_seeds(), ["redis://a:1", "rediss://u:p@b:2"]);
        assert_eq!(r.publish_mode(), PublishMode::Sharded);
        r.publish = Some(PublishMode::Classic);
        assert_eq!(r.publish_mode(), PublishMode::Classic);
    }
}
