//! graph-api's configuration (`config/graph-api.toml`, `CODEGRAPH__…`), with defaults that work on one machine.

use codegraph_shared::{
    auth::AuthSettings,
    redis_handle::RedisTls,
    settings::{HttpSettings, RedisSettings, TelemetrySettings},
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub api: ApiSettings,
    /// `[auth]`: tokens per scope, the start-up rule, allowed browser origins (shared with ws-gateway).
    pub auth: AuthSettings,
    /// `[falkordb]`: the graph database that `POST /query` reads (the stream-consumer's FalkorDB sink).
    pub falkordb: FalkorDbSettings,
}

/// `[api]`: authentication and the limits every request is held to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// Legacy bearer tokens, comma-separated: each grants every scope (read, write, admin). Scoped tokens are in
    /// `[auth]`. No token anywhere: the API is open (allowed on a loopback address, or with `auth.allow_open`).
    pub tokens: String,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most operations in one `POST /batch`.
    pub max_batch_operations: usize,
    /// Operations per atomic Function call within a batch.
    pub chunk_size: usize,
    /// Largest page of `subgraph`, `snapshot` and `search`.
    pub max_page_size: usize,
    /// Most nodes a search looks at before it answers with what it found (`truncated: true` when it stopped
    /// early). 20,000 costs Redis about 37 ms of CPU in steps of ~2 ms on a 100,000-node project (BENCHMARKS.md).
    pub search_scan_limit: usize,
    /// Most relationship ids one `neighbors` request reads from adjacency sets, over all its hops: beyond it the
    /// answer says `truncated: true`. 10,000 is a few ms of Redis time.
    pub neighbors_max_relationships: usize,
    /// Most requests of the API (not `/health`, `/ready`, `/metrics`) in flight at once; one more is refused at
    /// once with 503 `overloaded` and `Retry-After: 1`. 0: no limit.
    pub max_concurrent_requests: usize,
    /// Longest time an API request may take before it is answered with 503 `timeout`, in milliseconds. A write
    /// cut off by it may still have been applied (its Function call is atomic and runs to its end in Redis). 0: none.
    pub request_timeout_ms: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            tokens: String::new(),
            max_body_bytes: 32 * 1024 * 1024,
            max_batch_operations: 50_000,
            chunk_size: 1000,
            max_page_size: 5_000,
            search_scan_limit: 20_000,
            neighbors_max_relationships: 10_000,
            max_concurrent_requests: 256,
            request_timeout_ms: 30_000,
        }
    }
}

/// `[falkordb]`: where the stream-consumer's FalkorDB sink keeps the projects' graphs, and the bounds of the
/// read-only Cypher route (`cypher`). The URL, TLS files and graph prefix must name what the consumer's
/// `[sinks.falkordb]` does.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct FalkorDbSettings {
    /// `redis://host:port` of FalkorDB, or `rediss://` for TLS (certificate verified). Empty: the route answers
    /// 503. The default is the port `scripts/stack.sh` gives FalkorDB next to a Redis on 6379.
    pub url: String,
    /// PEM file of the private CA of FalkorDB's certificate (`rediss://` only).
    pub ca_file: String,
    /// PEM client certificate and key, for a FalkorDB that requires mutual TLS. Empty: none.
    pub cert_file: String,
    pub key_file: String,
    /// The graph of project `p` is `<graph_prefix><p>` (the consumer's `sinks.falkordb.graph_prefix`).
    pub graph_prefix: String,
    /// Longest time FalkorDB may run one statement (its `TIMEOUT`), in milliseconds; a request may ask for less.
    pub query_timeout_ms: u64,
    /// Most rows an answer holds (`truncated: true` beyond); a request may ask for fewer.
    pub max_rows: usize,
    /// Longest wait for the sink to apply a request's `min_id`, in milliseconds.
    pub max_wait_ms: u64,
    /// Largest statement, in bytes.
    pub max_statement_bytes: usize,
}

impl Default for FalkorDbSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6380".into(),
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            graph_prefix: "codegraph_".into(),
            query_timeout_ms: 1_000,
            max_rows: 1_000,
            max_wait_ms: 5_000,
            max_statement_bytes: 64 * 1024,
        }
    }
}

impl FalkorDbSettings {
    pub fn tls(&self) -> RedisTls {
        RedisTls::from_paths(&self.ca_file, &self.cert_file, &self.key_file)
    }
}
