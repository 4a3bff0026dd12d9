//! What the gateway knows about itself: counters, rates, the publish-to-send latency histogram, the state of its
//! Redis connection. `GET /status` and `/ws/status` show it as JSON; `/metrics` shows the same counters to
//! Prometheus (`codegraph_ws_*`).
//!
//! The unit is the stream entry (a change set or a single event): "events" received, recovered and sent count
//! entries, and a client gets at most one frame per entry; the changes those frames carry are counted apart
//! (`codegraph_ws_changes_sent_total`), since a filtered frame may carry only some of its entry's changes.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        LazyLock, Mutex,
    },
    time::Instant,
};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use serde_json::{json, Value};

use crate::{client::QueueReport, registry::Registry};

/// Upper bounds of the latency histogram, in milliseconds (the last bucket is everything above).
pub const LATENCY_BUCKETS_MS: [u64; 13] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

/// Clients listed one by one in the status (the ones with the fullest queues).
const LISTED_CLIENTS: usize = 20;

struct Metrics {
    received: IntCounter,
    recovered: IntCounter,
    sent: IntCounter,
    bytes: IntCounter,
    changes: IntCounter,
    cut: IntCounter,
    over_budget: IntCounter,
    held_bytes: IntGauge,
    budget_bytes: IntGauge,
    connections: IntGauge,
    redis_up: IntGauge,
    redis_reconnects: IntCounter,
    latency: Histogram,
}

fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    let _ = prometheus::register(Box::new(c.clone()));
    c
}

fn gauge(name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    let _ = prometheus::register(Box::new(g.clone()));
    g
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let buckets = LATENCY_BUCKETS_MS.iter().map(|ms| *ms as f64 / 1000.0).collect();
    let latency = Histogram::with_opts(
        HistogramOpts::new(
            "codegraph_ws_publish_to_send_seconds",
            "Time from the entry's XADD/PUBLISH (its stream id) to the write of its frame to a client socket",
        )
        .buckets(buckets),
    )
    .expect("valid histogram");
    let _ = prometheus::register(Box::new(latency.clone()));
    Metrics {
        received: counter(
            "codegraph_ws_events_received_total",
            "Stream entries (change sets or single events) received from Redis, live and recovered",
        ),
        recovered: counter(
            "codegraph_ws_events_recovered_total",
            "Stream entries the gateway read back from the stream after a Pub/Sub outage",
        ),
        sent: counter("codegraph_ws_frames_sent_total", "Frames of stream entries written to clients (one per entry)"),
        bytes: counter("codegraph_ws_bytes_sent_total", "Bytes of stream-entry frames written to clients"),
        changes: counter(
            "codegraph_ws_changes_sent_total",
            "Changes carried by the stream-entry frames written to clients (a single event is one)",
        ),
        cut: counter(
            "codegraph_ws_slow_clients_closed_total",
            "Clients closed with 4008 because their outbox was full",
        ),
        over_budget: counter(
            "codegraph_ws_budget_clients_closed_total",
            "Clients closed with 4008 because the bytes queued for all clients passed total_outbox_max_bytes (they held the most)",
        ),
        held_bytes: gauge(
            "codegraph_ws_outbox_bytes",
            "Bytes queued for all clients together (outboxes and frames being written), sampled every status interval",
        ),
        budget_bytes: gauge("codegraph_ws_outbox_budget_bytes", "The total outbox budget (total_outbox_max_bytes)"),
        connections: gauge("codegraph_ws_connections", "Open WebSocket connections"),
        redis_up: gauge("codegraph_ws_redis_pubsub_connected", "1 while the Pub/Sub connection to Redis is up"),
        redis_reconnects: counter("codegraph_ws_redis_reconnects_total", "Pub/Sub connections made after the first"),
        latency,
    }
});

/// The gateway's counters. One per process, shared by every task.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    received: AtomicU64,
    recovered: AtomicU64,
    sent: AtomicU64,
    bytes: AtomicU64,
    changes: AtomicU64,
    cut: AtomicU64,
    over_budget: AtomicU64,
    held_bytes: AtomicU64,
    budget_bytes: AtomicU64,
    accepted: AtomicU64,
    open: AtomicI64,
    redis_connected: AtomicBool,
    ever_connected: AtomicBool,
    redis_reconnects: AtomicU64,
    subscribed_projects: AtomicU64,
    draining: AtomicBool,
    latency: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    redis_error: Mutex<Option<String>>,
    rates: Mutex<Rates>,
}

#[derive(Debug, Clone, Copy)]
struct Rates {
    at: Instant,
    received: u64,
    sent: u64,
    changes: u64,
    received_per_s: f64,
    sent_per_s: f64,
    changes_per_s: f64,
}

impl Default for Stats {
    fn default() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            received: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            held_bytes: AtomicU64::new(0),
            budget_bytes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            open: AtomicI64::new(0),
            redis_connected: AtomicBool::new(false),
            ever_connected: AtomicBool::new(false),
            redis_reconnects: AtomicU64::new(0),
            subscribed_projects: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            latency: Default::default(),
            redis_error: Mutex::new(None),
            rates: Mutex::new(Rates {
                at: now,
                received: 0,
                sent: 0,
                changes: 0,
                received_per_s: 0.0,
                sent_per_s: 0.0,
                changes_per_s: 0.0,
            }),
        }
    }
}

impl Stats {
    /// A stream entry came from Redis (`recovered`: read back from the stream after an outage).
    pub fn entry_received(&self, recovered: bool) {
        self.received.fetch_add(1, Ordering::Relaxed);
        METRICS.received.inc();
        if recovered {
            self.recovered.fetch_add(1, Ordering::Relaxed);
            METRICS.recovered.inc();
        }
    }

    /// Stream-entry frames written to one client, the changes they carry, and their publication times.
    pub fn frames_sent(&self, frames: u64, bytes: u64, changes: u64, published_ms: impl Iterator<Item = u64>) {
        self.sent.fetch_add(frames, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.changes.fetch_add(changes, Ordering::Relaxed);
        METRICS.sent.inc_by(frames);
        METRICS.bytes.inc_by(bytes);
        METRICS.changes.inc_by(changes);
        let now = codegraph_shared::stream::now_ms();
        for t in published_ms {
            let ms = now.saturating_sub(t);
            let bucket = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BUCKETS_MS.len());
            self.latency[bucket].fetch_add(1, Ordering::Relaxed);
            METRICS.latency.observe(ms as f64 / 1000.0);
        }
    }

    pub fn slow_client_cut(&self) {
        self.cut.fetch_add(1, Ordering::Relaxed);
        METRICS.cut.inc();
    }

    /// A client was closed with 4008 to bring the gateway back within its memory budget.
    pub fn over_budget_cut(&self) {
        self.over_budget.fetch_add(1, Ordering::Relaxed);
        METRICS.over_budget.inc();
    }

    /// The bytes queued for all clients, and the budget; called by the status ticker.
    pub fn set_budget(&self, held: usize, limit: usize) {
        self.held_bytes.store(held as u64, Ordering::Relaxed);
        self.budget_bytes.store(limit as u64, Ordering::Relaxed);
        METRICS.held_bytes.set(held.try_into().unwrap_or(i64::MAX));
        METRICS.budget_bytes.set(limit.try_into().unwrap_or(i64::MAX));
    }

    pub fn connection_opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        METRICS.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        METRICS.connections.dec();
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed).max(0) as usize
    }

    pub fn redis_up(&self, up: bool, error: Option<String>) {
        self.redis_connected.store(up, Ordering::Relaxed);
        METRICS.redis_up.set(up as i64);
        if up && self.ever_connected.swap(true, Ordering::Relaxed) {
            self.redis_reconnects.fetch_add(1, Ordering::Relaxed);
            METRICS.redis_reconnects.inc();
        }
        // Redis's own words stay in this gateway's log (where the loss is logged with them): a reader of
        // `/status` learns that the connection was lost, not how Redis describes itself.
        if error.is_some() {
            *self.redis_error.lock().unwrap_or_else(|e| e.into_inner()) =
                Some("Pub/Sub connection to Redis lost; the reason is in this gateway's log".to_owned());
        }
    }

    pub fn redis_connected(&self) -> bool {
        self.redis_connected.load(Ordering::Relaxed)
    }

    pub fn set_subscribed_projects(&self, n: usize) {
        self.subscribed_projects.store(n as u64, Ordering::Relaxed);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Updates the per-second rates from the counters; called by the status ticker.
    pub fn sample_rates(&self) {
        let mut r = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let secs = now.duration_since(r.at).as_secs_f64();
        if secs < 0.05 {
            return;
        }
        let received = self.received.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        let changes = self.changes.load(Ordering::Relaxed);
        r.received_per_s = (received - r.received) as f64 / secs;
        r.sent_per_s = (sent - r.sent) as f64 / secs;
        r.changes_per_s = (changes - r.changes) as f64 / secs;
        *r = Rates { at: now, received, sent, changes, ..*r };
    }

    /// The status document of `GET /status` and `/ws/status`.
    pub fn status(&self, registry: &Registry) -> Value {
        let rates = *self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let mut reports: Vec<QueueReport> = registry.clients().iter().map(|c| c.report()).collect();
        let total_bytes: usize = reports.iter().map(|r| r.queued_bytes).sum();
        let max_lag = reports.iter().map(|r| r.lag_ms).max().unwrap_or(0);
        let max_bytes = reports.iter().map(|r| r.queued_bytes).max().unwrap_or(0);
        let by_endpoint = |e: crate::client::Endpoint| reports.iter().filter(|r| r.endpoint == e).count();
        let endpoints = json!({
            "events": by_endpoint(crate::client::Endpoint::Events),
            "filtered": by_endpoint(crate::client::Endpoint::Filtered),
            "status": by_endpoint(crate::client::Endpoint::Status),
        });
        let connected = reports.len();
        reports.sort_by(|a, b| b.queued_bytes.cmp(&a.queued_bytes).then(b.lag_ms.cmp(&a.lag_ms)));
        reports.truncate(LISTED_CLIENTS);
        let counts: Vec<u64> = self.latency.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        json!({
            "service": "ws-gateway",
            "uptime_s": self.started.elapsed().as_secs(),
            "draining": self.draining(),
            "clients": {
                "connected": connected,
                "by_endpoint": endpoints,
                "accepted_total": self.accepted.load(Ordering::Relaxed),
                "closed_too_slow_total": self.cut.load(Ordering::Relaxed),
                "closed_over_budget_total": self.over_budget.load(Ordering::Relaxed),
            },
            "events": {
                "received_per_s": round1(rates.received_per_s),
                "sent_per_s": round1(rates.sent_per_s),
                "changes_sent_per_s": round1(rates.changes_per_s),
                "received_total": self.received.load(Ordering::Relaxed),
                "recovered_total": self.recovered.load(Ordering::Relaxed),
                "sent_total": self.sent.load(Ordering::Relaxed),
                "changes_sent_total": self.changes.load(Ordering::Relaxed),
                "bytes_sent_total": self.bytes.load(Ordering::Relaxed),
            },
            "latency_ms": latency_json(&counts),
            "queues": {
                "total_bytes": total_bytes,
                "max_bytes": max_bytes,
                "max_lag_ms": max_lag,
                "budget": {
                    "held_bytes": self.held_bytes.load(Ordering::Relaxed),
                    "limit_bytes": self.budget_bytes.load(Ordering::Relaxed),
                },
                "fullest": reports,
            },
            "redis": {
                "connected": self.redis_connected(),
                "reconnects": self.redis_reconnects.load(Ordering::Relaxed),
                "subscribed_projects": self.subscribed_projects.load(Ordering::Relaxed),
                "last_error": *self.redis_error.lock().unwrap_or_else(|e| e.into_inner()),
            },
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Buckets (`le` in ms, count in that bucket), the total, and p50/p99 as bucket upper bounds.
fn latency_json(counts: &[u64]) -> Value {
    let total: u64 = counts.iter().sum();
    let quantile = |q: f64| -> Option<u64> {
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return LATENCY_BUCKETS_MS.get(i).copied().or(Some(u64::MAX));
            }
        }
        None
    };
    let buckets: Vec<Value> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"le": LATENCY_BUCKETS_MS.get(i).map(|b| json!(b)).unwrap_or(json!("+Inf")), "count": c}))
        .collect();
    json!({"count": total, "p50_le": quantile(0.5), "p99_le": quantile(0.99), "buckets": buckets})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_come_from_the_buckets() {
        let s = Stats::default();
        let now = codegraph_shared::stream::now_ms();
        s.frames_sent(100, 1000, 250, (0..100).map(|i| if i < 98 { now } else { now - 300 }));
        let v = s.status(&Registry::default());
        assert_eq!(v["latency_ms"]["count"], 100);
        assert_eq!(v["latency_ms"]["p50_le"], 1);
        assert_eq!(v["latency_ms"]["p99_le"], 500);
        assert_eq!(v["events"]["sent_total"], 100);
        assert_eq!(v["events"]["changes_sent_total"], 250);
    }
}
