//! graph-api's configuration (`config/graph-api.toml`, `CODEGRAPH__…`), with defaults that work on one machine.

use codegraph_shared::settings::{HttpSettings, RedisSettings, TelemetrySettings};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub api: ApiSettings,
}

/// `[api]`: authentication and the limits every request is held to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// Bearer tokens accepted for mutations and admin routes, comma-separated. Empty: open (for local use).
    pub tokens: String,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most operations in one `POST /batch`.
    pub max_batch_operations: usize,
    /// Operations per atomic Function call within a batch.
    pub chunk_size: usize,
    /// Largest page of `subgraph`, `snapshot` and `search`.
    pub max_page_size: usize,
    /// Most nodes a search looks at before it answers with what it found.
    pub search_scan_limit: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            tokens: String::new(),
            max_body_bytes: 32 * 1024 * 1024,
            max_batch_operations: 50_000,
            chunk_size: 1000,
            max_page_size: 5_000,
            search_scan_limit: 500_000,
        }
    }
}

impl ApiSettings {
    pub fn token_list(&self) -> Vec<String> {
        self.tokens.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
    }
}
