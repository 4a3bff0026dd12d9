//! The worker's settings: `[redis]`, `[http]` (default `127.0.0.1:8003`), `[telemetry]` and `[analysis]`,
//! from defaults → `config/analysis-worker.toml` → `CODEGRAPH__SECTION__KEY`.

use std::path::PathBuf;

use codegraph_shared::settings::{HttpSettings, RedisSettings, TelemetrySettings};
use serde::{Deserialize, Serialize};

pub const SERVICE: &str = "analysis-worker";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub analysis: AnalysisSettings,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            redis: RedisSettings::default(),
            http: HttpSettings::with_addr("127.0.0.1:8003"),
            telemetry: TelemetrySettings::default(),
            analysis: AnalysisSettings::default(),
        }
    }
}

/// `[analysis]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalysisSettings {
    /// Comma-separated folders a job may analyse (and anything under them); empty: the working directory.
    pub allowed_roots: String,
    /// Source files larger than this are skipped (and counted).
    pub max_file_bytes: u64,
    /// Parser threads.
    pub threads: usize,
    /// A job pending this long on a worker that stopped renewing it is taken over by another worker.
    pub claim_idle_ms: u64,
    /// Watch mode: quiet time after the last file event before a batch is analysed.
    pub debounce_ms: u64,
    /// Shortest interval between two `analysis_progress` events.
    pub progress_interval_ms: u64,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        Self {
            allowed_roots: String::new(),
            max_file_bytes: 1024 * 1024,
            threads: 2,
            claim_idle_ms: 30_000,
            debounce_ms: 50,
            progress_interval_ms: 100,
        }
    }
}

impl AnalysisSettings {
    pub fn allowed_roots(&self) -> Vec<PathBuf> {
        let roots: Vec<PathBuf> =
            self.allowed_roots.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect();
        if roots.is_empty() {
            std::env::current_dir().into_iter().collect()
        } else {
            roots
        }
    }
}
