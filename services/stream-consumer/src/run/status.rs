//! What the service reports: Prometheus metrics (`codegraph_consumer_*`) and the per-project state behind
//! `GET /status`.

use std::{
    collections::BTreeMap,
    sync::{Arc, LazyLock, Mutex},
};

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, HistogramVec, IntCounterVec, IntGaugeVec,
};
use serde::Serialize;

pub struct Metrics {
    /// Stream entries (change sets and single events) committed.
    pub applied: IntCounterVec,
    /// Changes of those entries (a single event is one).
    pub changes_applied: IntCounterVec,
    pub batches: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub sink_errors: IntCounterVec,
    pub lag_seconds: HistogramVec,
    pub batch_seconds: HistogramVec,
    pub owned_projects: IntGaugeVec,
    pub resync_required: IntGaugeVec,
    pub held_entries: IntGaugeVec,
    pub resyncs: IntCounterVec,
    pub refills: IntCounterVec,
    pub fenced: IntCounterVec,
}

/// The reasons of `codegraph_consumer_refills_total` (what `Worker::sink_lost_data` and a commit report).
pub const REFILL_REASONS: [&str; 5] = ["fresh", "missing", "behind", "lost_on_commit", "ahead_of_redis"];
/// The kinds of `codegraph_consumer_sink_errors_total`.
pub const SINK_ERROR_KINDS: [&str; 2] = ["unavailable", "rejected"];

impl Metrics {
    /// Creates every series of `sink` at 0 when its consumer starts: a labelled series is absent from /metrics
    /// until first used, so `rate()` would miss the first dead letter, fencing or refill, and a dashboard panel
    /// would find nothing until then.
    pub fn start_sink(&self, sink: &str) {
        for counter in
            [&self.applied, &self.changes_applied, &self.batches, &self.dead_letters, &self.resyncs, &self.fenced]
        {
            counter.with_label_values(&[sink]);
        }
        for gauge in [&self.owned_projects, &self.resync_required, &self.held_entries] {
            gauge.with_label_values(&[sink]);
        }
        for reason in REFILL_REASONS {
            self.refills.with_label_values(&[sink, reason]);
        }
        for kind in SINK_ERROR_KINDS {
            self.sink_errors.with_label_values(&[sink, kind]);
        }
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    // The name is older than change sets: it counts stream entries (one change set or one single event each).
    applied: register_int_counter_vec!(
        "codegraph_consumer_events_applied_total",
        "CDC stream entries (change sets and single events) committed to a sink",
        &["sink"]
    )
    .expect("register metric"),
    changes_applied: register_int_counter_vec!(
        "codegraph_consumer_changes_applied_total",
        "Changes committed to a sink (each change of a change set; a single-event entry is one)",
        &["sink"]
    )
    .expect("register metric"),
    batches: register_int_counter_vec!(
        "codegraph_consumer_batches_total",
        "Commits to a sink (each of whole change sets)",
        &["sink"]
    )
    .expect("register metric"),
    dead_letters: register_int_counter_vec!(
        "codegraph_consumer_dead_letters_total",
        "Stream entries (whole change sets or single events) moved to a dead-letter stream",
        &["sink"]
    )
    .expect("register metric"),
    sink_errors: register_int_counter_vec!(
        "codegraph_consumer_sink_errors_total",
        "Failed sink commits, by kind (unavailable, rejected)",
        &["sink", "kind"]
    )
    .expect("register metric"),
    lag_seconds: register_histogram_vec!(
        "codegraph_consumer_lag_seconds",
        "Time from XADD to the sink's commit, per stream entry",
        &["sink"],
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    )
    .expect("register metric"),
    batch_seconds: register_histogram_vec!(
        "codegraph_consumer_batch_seconds",
        "Time to commit one batch to a sink",
        &["sink"],
        vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]
    )
    .expect("register metric"),
    owned_projects: register_int_gauge_vec!(
        "codegraph_consumer_owned_projects",
        "Projects whose stream this process applies to a sink",
        &["sink"]
    )
    .expect("register metric"),
    resync_required: register_int_gauge_vec!(
        "codegraph_consumer_resync_required",
        "Projects whose next stream entries were trimmed before this sink applied them (a resync is due)",
        &["sink"]
    )
    .expect("register metric"),
    resyncs: register_int_counter_vec!(
        "codegraph_consumer_resyncs_total",
        "Projects rebuilt in a sink from a snapshot after their stream was trimmed past what the sink had",
        &["sink"]
    )
    .expect("register metric"),
    refills: register_int_counter_vec!(
        "codegraph_consumer_refills_total",
        "Projects rebuilt in a sink that lost data it had recorded, or that holds what Redis lost, by reason \
         (fresh: no record and the group never got anything; missing: no record; behind: a record behind what \
         the group acknowledged; lost_on_commit: found by a commit; ahead_of_redis: the stream no longer holds \
         the entry the sink recorded, after a failover)",
        &["sink", "reason"]
    )
    .expect("register metric"),
    held_entries: register_int_gauge_vec!(
        "codegraph_consumer_stream_held_entries",
        "Entries above the writers' length cap kept in the streams this sink's workers own, because a consumer \
         group still needs older ones (as the cap found them at its last check)",
        &["sink"]
    )
    .expect("register metric"),
    fenced: register_int_counter_vec!(
        "codegraph_consumer_fenced_total",
        "Workers stopped because the sink refused their lease generation (a newer owner had written)",
        &["sink"]
    )
    .expect("register metric"),
});

/// What one project's worker is doing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProjectStatus {
    /// `starting`, `waiting_for_previous_owner`, `running`, `sink_unavailable`, `retrying_poison_event`,
    /// `resync_required` (entries were trimmed before the sink got them; nothing is applied until a snapshot is
    /// loaded), `resyncing` (loading it), `refilling` (the sink lost data; rebuilding the project), `fenced` (a
    /// newer owner wrote to the sink; the worker stopped).
    pub state: &'static str,
    pub resync_required: bool,
    /// Rebuilds from a snapshot since this process took the project.
    pub resyncs: u64,
    /// Refills of a sink that lost data, since this process took the project.
    pub refills: u64,
    pub last_applied: Option<String>,
    /// Stream entries committed (change sets and single events).
    pub applied: u64,
    /// Their changes.
    pub changes_applied: u64,
    /// Entries moved to the dead letters.
    pub dead_letters: u64,
    pub last_error: Option<String>,
}

/// The status of every sink and owned project, shared by the workers and the HTTP handler.
#[derive(Clone, Default)]
pub struct StatusBoard {
    inner: Arc<Mutex<BTreeMap<String, BTreeMap<String, ProjectStatus>>>>,
}

impl StatusBoard {
    pub fn update(&self, sink: &str, project: &str, f: impl FnOnce(&mut ProjectStatus)) {
        let mut all = self.inner.lock().expect("status lock");
        f(all.entry(sink.to_owned()).or_default().entry(project.to_owned()).or_default());
    }

    pub fn remove(&self, sink: &str, project: &str) {
        if let Some(projects) = self.inner.lock().expect("status lock").get_mut(sink) {
            projects.remove(project);
        }
    }

    /// Declares a sink (so it shows even while it owns nothing).
    pub fn add_sink(&self, sink: &str) {
        self.inner.lock().expect("status lock").entry(sink.to_owned()).or_default();
    }

    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<String, ProjectStatus>> {
        self.inner.lock().expect("status lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_sink_exports_every_series_at_zero() {
        METRICS.start_sink("started-sink");
        let text = prometheus::TextEncoder::new().encode_to_string(&prometheus::gather()).unwrap();
        let series =
            |name: &str| text.lines().filter(|l| l.starts_with(name) && l.contains("\"started-sink\"")).count();
        for name in [
            "codegraph_consumer_dead_letters_total",
            "codegraph_consumer_resyncs_total",
            "codegraph_consumer_fenced_total",
            "codegraph_consumer_resync_required",
            "codegraph_consumer_stream_held_entries",
        ] {
            assert_eq!(series(&format!("{name}{{")), 1, "{name} in:\n{text}");
        }
        assert_eq!(series("codegraph_consumer_refills_total{"), REFILL_REASONS.len());
        assert_eq!(series("codegraph_consumer_sink_errors_total{"), SINK_ERROR_KINDS.len());
    }
}
