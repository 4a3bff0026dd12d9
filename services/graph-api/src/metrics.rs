//! graph-api's Prometheus metrics (served by `GET /metrics` from the default registry).

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge, HistogramVec,
    IntCounter, IntCounterVec, IntGauge,
};
use std::sync::OnceLock;

#[derive(Clone)]
pub struct Metrics {
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub events_published: IntCounter,
    pub change_sets_published: IntCounter,
    pub operations: IntCounterVec,
    /// Requests answered with a refusal before their handler ran (or when it ran too long), by reason.
    pub requests_refused: IntCounterVec,
    /// API requests holding a slot of `api.max_concurrent_requests` now.
    pub requests_in_flight: IntGauge,
}

/// Every reason a request is refused for (`codegraph_api_requests_refused_total{reason}`): each series exists at 0
/// from the start, so `rate()` sees the first refusal and a dashboard finds every series.
pub const REFUSAL_REASONS: [&str; 7] = [
    "unauthorized",
    "forbidden",
    "forbidden_origin",
    "unsupported_media_type",
    "overloaded",
    "timeout",
    "invalid_json_rpc",
];

impl Metrics {
    /// Registers the metrics once per process (tests may build several states).
    pub fn register() -> Self {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS
            .get_or_init(|| Metrics {
                http_requests: register_int_counter_vec!(
                    "codegraph_http_requests_total",
                    "HTTP requests by method, route and status",
                    &["method", "route", "status"]
                )
                .expect("register codegraph_http_requests_total"),
                http_duration: register_histogram_vec!(
                    "codegraph_http_request_duration_seconds",
                    "HTTP request latency by method and route",
                    &["method", "route"],
                    vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
                )
                .expect("register codegraph_http_request_duration_seconds"),
                events_published: register_int_counter!(
                    "codegraph_events_published_total",
                    "CDC changes written to the streams (and published) by this process: the changes of its change sets \
                     (a cascade's too) and its single events"
                )
                .expect("register codegraph_events_published_total"),
                change_sets_published: register_int_counter!(
                    "codegraph_change_sets_published_total",
                    "Change sets (stream entries of graph mutations) written and published by this process"
                )
                .expect("register codegraph_change_sets_published_total"),
                operations: register_int_counter_vec!(
                    "codegraph_graph_operations_total",
                    "Graph operations applied, by outcome",
                    &["status"]
                )
                .expect("register codegraph_graph_operations_total"),
                requests_refused: register_int_counter_vec!(
                    "codegraph_api_requests_refused_total",
                    "API requests refused, by reason: unauthorized (no or unknown token), forbidden (token lacks the \
                     scope), forbidden_origin, unsupported_media_type, overloaded (concurrency limit), timeout, \
                     invalid_json_rpc (MCP)",
                    &["reason"]
                )
                .map(|refused| {
                    for reason in REFUSAL_REASONS {
                        refused.with_label_values(&[reason]);
                    }
                    refused
                })
                .expect("register codegraph_api_requests_refused_total"),
                requests_in_flight: register_int_gauge!(
                    "codegraph_api_requests_in_flight",
                    "API requests in flight (those the concurrency limit counts)"
                )
                .expect("register codegraph_api_requests_in_flight"),
            })
            .clone()
    }

    /// Counts a refusal; `reason` is the error code the client got.
    pub fn refused(&self, reason: &str) {
        debug_assert!(REFUSAL_REASONS.contains(&reason), "{reason} is not in REFUSAL_REASONS");
        self.requests_refused.with_label_values(&[reason]).inc();
    }

    /// Counts a call's outcomes: one counter update per status, not per operation (batches are large).
    pub fn record_outcomes(&self, outcomes: &[codegraph_shared::functions::Outcome]) {
        use codegraph_shared::functions::Status;
        let mut by_status = [0u64; 5];
        let mut events = 0u64;
        for o in outcomes {
            by_status[o.status as usize] += 1;
            events += u64::from(o.event_id.is_some()) + u64::from(o.cascaded);
        }
        // One call, one change set: its outcomes that changed something all name the same entry.
        if outcomes.iter().any(|o| o.event_id.is_some()) {
            self.change_sets_published.inc();
        }
        for status in [Status::Created, Status::Updated, Status::Unchanged, Status::Deleted, Status::NotFound] {
            let n = by_status[status as usize];
            if n > 0 {
                self.operations.with_label_values(&[status.as_str()]).inc_by(n);
            }
        }
        self.events_published.inc_by(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_reason_is_exported_at_zero_from_the_start() {
        Metrics::register();
        let text = prometheus::TextEncoder::new().encode_to_string(&prometheus::gather()).unwrap();
        for reason in REFUSAL_REASONS {
            let series = format!("codegraph_api_requests_refused_total{{reason=\"{reason}\"}}");
            assert!(text.lines().any(|l| l.starts_with(&series)), "{series} missing from:\n{text}");
        }
    }
}
