//! The worker's settings: `[redis]`, `[http]` (default `127.0.0.1:8003`), `[telemetry]` and `[analysis]`,
//! from defaults → `config/analysis-worker.toml` → `CODEGRAPH__SECTION__KEY`. Safe by default: no folder may be
//! analysed until `CODEGRAPH__ANALYSIS__ALLOWED_ROOTS` names it, and finished job records expire
//! (`CODEGRAPH__ANALYSIS__JOB_TTL_SECS`). Watched folders are leased per project (`watch_lease_ms`,
//! `watch_tick_ms`).

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
    /// Comma-separated folders a queued job may analyse (and anything under them). Empty (the default): none,
    /// so every queued job is refused until the deployment names its roots; the `analyze` and `watch` commands
    /// also allow the folder given with `--path` (see [`AnalysisSettings::grant`]).
    pub allowed_roots: String,
    /// Folders allowed on top of `allowed_roots` because the user named them on the command line (`--path`):
    /// they already have them. Never read from configuration.
    #[serde(skip)]
    pub granted_roots: Vec<PathBuf>,
    /// Seconds a finished job's record (its hash, and then its entry in the job → project index) is kept.
    /// Queued and running jobs never expire. 0: keep finished jobs forever.
    pub job_ttl_secs: u64,
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
    /// A watched project's lease lasts this long unless renewed: when its worker dies, another takes the watch
    /// over after at most this time.
    pub watch_lease_ms: u64,
    /// How often the worker renews its watch leases, looks for new, moved or stopped watches and announces
    /// itself (must be well below `watch_lease_ms`).
    pub watch_tick_ms: u64,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        Self {
            allowed_roots: String::new(),
            granted_roots: Vec::new(),
            job_ttl_secs: DEFAULT_JOB_TTL_SECS,
            max_file_bytes: 1024 * 1024,
            threads: 2,
            claim_idle_ms: 30_000,
            debounce_ms: 50,
            progress_interval_ms: 100,
            watch_lease_ms: 5_000,
            watch_tick_ms: 1_000,
        }
    }
}

/// Three days: long enough to look a job up after a weekend, short enough that job records do not pile up.
pub const DEFAULT_JOB_TTL_SECS: u64 = 3 * 24 * 3600;

impl AnalysisSettings {
    /// The configured roots and the granted ones; empty when nothing is allowed.
    pub fn allowed_roots(&self) -> Vec<PathBuf> {
        self.allowed_roots
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .chain(self.granted_roots.iter().cloned())
            .collect()
    }

    /// Allows `path` (and what is under it) besides the configured roots: a folder named on the command line.
    pub fn grant(&mut self, path: PathBuf) {
        self.granted_roots.push(path);
    }

    /// How long a finished job's record is kept; `None`: forever.
    pub fn job_ttl(&self) -> Option<std::time::Duration> {
        (self.job_ttl_secs > 0).then(|| std::time::Duration::from_secs(self.job_ttl_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_allowed_unless_configured_or_granted() {
        let mut settings = AnalysisSettings::default();
        assert!(settings.allowed_roots().is_empty(), "the default must allow no folder at all");
        settings.grant(PathBuf::from("/srv/checkout"));
        assert_eq!(settings.allowed_roots(), [PathBuf::from("/srv/checkout")]);
        let configured = AnalysisSettings { allowed_roots: " /repos , /more,".into(), ..Default::default() };
        assert_eq!(configured.allowed_roots(), [PathBuf::from("/repos"), PathBuf::from("/more")]);
    }

    #[test]
    fn finished_jobs_expire_after_a_few_days_by_default() {
        let settings = AnalysisSettings::default();
        assert_eq!(settings.job_ttl(), Some(std::time::Duration::from_secs(3 * 24 * 3600)));
        assert_eq!(AnalysisSettings { job_ttl_secs: 0, ..Default::default() }.job_ttl(), None);
    }
}
