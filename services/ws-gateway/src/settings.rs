//! The gateway's settings: the shared `[redis]`, `[http]`, `[telemetry]`, `[auth]` sections and its own `[gateway]`
//! limits. Every value has a default that works on one machine; `CODEGRAPH__<SECTION>__<KEY>` overrides it.

use std::time::Duration;

use codegraph_shared::{
    auth::AuthSettings,
    settings::{HttpSettings, RedisSettings, TelemetrySettings},
};
use serde::{Deserialize, Serialize};

/// Default listen address of the gateway (docs/DESIGN.md, "Configuration and ports").
pub const DEFAULT_ADDR: &str = "127.0.0.1:8001";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    /// Tokens with the read scope, allowed browser origins, `allow_open` (see `access.rs`).
    pub auth: AuthSettings,
    pub gateway: GatewaySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            redis: RedisSettings::default(),
            http: HttpSettings::with_addr(DEFAULT_ADDR),
            telemetry: TelemetrySettings::default(),
            auth: AuthSettings::default(),
            gateway: GatewaySettings::default(),
        }
    }
}

/// `[gateway]`: keep-alive, limits, access and drain.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewaySettings {
    /// Protocol-level ping to every client this often.
    pub ping_interval_ms: u64,
    /// A client that has sent nothing (not even a pong) for `ping_interval_ms + pong_timeout_ms` is dropped; a
    /// write that cannot complete within that time drops the client too.
    pub pong_timeout_ms: u64,
    /// Bytes of events that may wait for one client; more and the client is closed with 4008.
    pub outbox_max_bytes: usize,
    /// Bytes that may wait for all clients together (outboxes and frames being written); when a push passes it,
    /// the clients holding the most are closed with 4008 until the total is back under 15/16 of it.
    pub total_outbox_max_bytes: usize,
    /// Open WebSocket connections per process; more are refused with HTTP 503.
    pub max_connections: usize,
    /// Largest message a client may send, in bytes; larger ones close the connection with 4413.
    pub max_message_bytes: usize,
    /// Legacy: tokens that grant the read scope, separated by commas (beside `[auth]`'s lists).
    pub tokens: String,
    /// Legacy: browser origins allowed besides the request's own, beside `auth.allowed_origins`.
    pub allowed_origins: String,
    /// `/ws/status` pushes the status this often.
    pub status_interval_ms: u64,
    /// On SIGTERM, clients are closed with 1012 spread evenly over this window.
    pub drain_window_ms: u64,
    /// Stream entries read per XRANGE when a client resumes or the gateway recovers.
    pub replay_page: usize,
    /// The Pub/Sub connection is pinged this often; no answer within the same time counts as a lost connection.
    pub redis_ping_interval_ms: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            ping_interval_ms: 30_000,
            pong_timeout_ms: 10_000,
            outbox_max_bytes: 1024 * 1024,
            total_outbox_max_bytes: 512 * 1024 * 1024,
            max_connections: 20_000,
            max_message_bytes: 64 * 1024,
            tokens: String::new(),
            allowed_origins: String::new(),
            status_interval_ms: 2_000,
            drain_window_ms: 5_000,
            replay_page: 500,
            redis_ping_interval_ms: 5_000,
        }
    }
}

impl GatewaySettings {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms.max(10))
    }

    pub fn pong_timeout(&self) -> Duration {
        Duration::from_millis(self.pong_timeout_ms.max(10))
    }

    pub fn status_interval(&self) -> Duration {
        Duration::from_millis(self.status_interval_ms.max(10))
    }

    pub fn drain_window(&self) -> Duration {
        Duration::from_millis(self.drain_window_ms)
    }

    pub fn redis_ping_interval(&self) -> Duration {
        Duration::from_millis(self.redis_ping_interval_ms.max(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_listens_on_8001_by_default() {
        assert_eq!(Settings::default().http.addr, DEFAULT_ADDR);
    }
}
