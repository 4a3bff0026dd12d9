//! The stream-consumer's configuration: `config/stream-consumer.toml` and `CODEGRAPH__…` variables on top of the
//! defaults here (e.g. `CODEGRAPH__SINKS__FALKORDB__URL=redis://127.0.0.1:6380`). A sink without a URL is off.

use std::time::Duration;

use codegraph_shared::settings::{HttpSettings, RedisSettings, TelemetrySettings};
use serde::{Deserialize, Serialize};

use crate::sinks::SinksSettings;

pub const SERVICE: &str = "stream-consumer";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub consumer: ConsumerSettings,
    pub sinks: SinksSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            redis: RedisSettings::default(),
            http: HttpSettings::with_addr("127.0.0.1:8002"),
            telemetry: TelemetrySettings::default(),
            consumer: ConsumerSettings::default(),
            sinks: SinksSettings::default(),
        }
    }
}

/// `[consumer]`: how the streams are read, shared out, retried and trimmed. Times in milliseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerSettings {
    /// Consumer name in every group; empty: the host (pod) name. Must be stable across restarts of one process
    /// slot, so a restarted process finds its own pending entries, and unique among live processes.
    pub name: String,
    /// Most entries read at once, and most changes applied in one sink commit: a commit holds whole change sets
    /// only, and a set larger than this is a commit of its own.
    pub batch_size: usize,
    /// How long one read waits for new entries before the loop checks its lease and shutdown again.
    pub block_ms: u64,
    /// Time-to-live of a project's ownership lease; renewed every `tick_ms`.
    pub lease_ms: u64,
    /// Period of discovery, lease renewal, heartbeat and re-balancing.
    pub tick_ms: u64,
    /// Entries pending at another consumer for longer than this are claimed (XAUTOCLAIM). Must exceed the
    /// slowest batch, so an entry still being applied by a live consumer is never taken from it.
    pub claim_idle_ms: u64,
    /// Deliveries after which a failing entry (a whole change set) goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// Period of the stream trimming; 0: never trim.
    pub trim_interval_ms: u64,
    /// Entries younger than this are kept even when every group has acknowledged them (replay window).
    pub retention_ms: u64,
    /// When the stream was trimmed past entries the sink never got: rebuild the project from a snapshot (read
    /// from Redis) and continue after it. Off: stay in `resync_required`, applying nothing, until a
    /// `stream-consumer replay` records an ID past the trimmed entries.
    pub resync_from_snapshot: bool,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            name: String::new(),
            batch_size: 1000,
            block_ms: 1000,
            lease_ms: 10_000,
            tick_ms: 1000,
            claim_idle_ms: 30_000,
            max_deliveries: 5,
            trim_interval_ms: 60_000,
            retention_ms: 24 * 3600 * 1000,
            resync_from_snapshot: true,
        }
    }
}

impl ConsumerSettings {
    /// The configured name, else the host name (`$HOSTNAME`, `/etc/hostname`), else `stream-consumer`.
    pub fn consumer_name(&self) -> String {
        let from_env = std::env::var("HOSTNAME").ok();
        let from_file = || std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        [Some(self.name.clone()), from_env, from_file()]
            .into_iter()
            .flatten()
            .map(|s| s.trim().to_owned())
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| SERVICE.to_owned())
    }

    pub fn block(&self) -> Duration {
        Duration::from_millis(self.block_ms)
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_8002_with_every_sink_off() {
        let s: Settings = codegraph_shared::settings::load("no-such-service-for-test").unwrap();
        assert_eq!(s.http.addr, "127.0.0.1:8002");
        assert!(s.sinks.falkordb.url.is_empty());
        assert!(s.sinks.memgraph.url.is_empty());
        assert!(s.consumer.claim_idle_ms > s.consumer.block_ms);
    }

    #[test]
    fn a_configured_name_wins_over_the_host_name() {
        let c = ConsumerSettings { name: " worker-1 ".into(), ..Default::default() };
        assert_eq!(c.consumer_name(), "worker-1");
        assert!(!ConsumerSettings::default().consumer_name().is_empty());
    }
}
