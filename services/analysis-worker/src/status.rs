//! What the worker is doing, for `/status`, `/metrics` and the cancel listener: the running job (with its
//! cancel flag), counts of finished jobs and the watches it holds.

use std::sync::{LazyLock, Mutex};

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, Histogram, IntCounter, IntCounterVec,
};
use serde_json::{json, Value};

use crate::job::{CancelFlag, JobEnd, JobSpec};

static JOBS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("codegraph_analysis_jobs_total", "Analysis jobs finished, by outcome", &["outcome"])
        .expect("register codegraph_analysis_jobs_total")
});
static FILES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("codegraph_analysis_files_total", "Files analysed by completed jobs")
        .expect("register codegraph_analysis_files_total")
});
static DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "codegraph_analysis_job_duration_seconds",
        "Duration of completed analysis jobs",
        vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]
    )
    .expect("register codegraph_analysis_job_duration_seconds")
});

struct Running {
    spec: JobSpec,
    cancel: CancelFlag,
    since: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    running: Option<Running>,
    completed: u64,
    failed: u64,
    cancelled: u64,
    last: Option<Value>,
    /// The watches this worker holds, by project.
    watches: std::collections::BTreeMap<String, Value>,
}

/// Shared by the job loop, the cancel listener and the HTTP handlers.
pub struct WorkerStatus {
    pub consumer: String,
    inner: Mutex<Inner>,
}

impl WorkerStatus {
    pub fn new(consumer: String) -> Self {
        LazyLock::force(&JOBS);
        LazyLock::force(&FILES);
        LazyLock::force(&DURATION);
        Self { consumer, inner: Mutex::new(Inner::default()) }
    }

    pub fn start(&self, spec: &JobSpec, cancel: &CancelFlag) {
        self.inner.lock().expect("status lock").running =
            Some(Running { spec: spec.clone(), cancel: cancel.clone(), since: std::time::Instant::now() });
    }

    /// Cancels the running job if it has this id; true when it did.
    pub fn cancel(&self, job_id: &str) -> bool {
        let inner = self.inner.lock().expect("status lock");
        match &inner.running {
            Some(r) if r.spec.job_id == job_id => {
                r.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    pub fn finish(&self, spec: &JobSpec, end: &JobEnd) {
        let mut inner = self.inner.lock().expect("status lock");
        inner.running = None;
        let (outcome, detail) = match end {
            JobEnd::Completed(s) => {
                inner.completed += 1;
                FILES.inc_by(s.report.files);
                DURATION.observe(s.duration.as_secs_f64());
                ("completed", json!({"files": s.report.files, "nodes": s.nodes, "relationships": s.relationships}))
            }
            JobEnd::Cancelled => {
                inner.cancelled += 1;
                ("cancelled", Value::Null)
            }
            JobEnd::Failed(e) => {
                inner.failed += 1;
                ("failed", json!(e))
            }
        };
        JOBS.with_label_values(&[outcome]).inc();
        inner.last =
            Some(json!({"job_id": spec.job_id, "project": spec.project, "outcome": outcome, "detail": detail}));
    }

    /// Records (or replaces) what this worker reports of a watch it holds.
    pub fn set_watch(&self, project: &str, view: Value) {
        self.inner.lock().expect("status lock").watches.insert(project.to_owned(), view);
    }

    /// Forgets a watch this worker no longer holds.
    pub fn remove_watch(&self, project: &str) {
        self.inner.lock().expect("status lock").watches.remove(project);
    }

    pub fn snapshot(&self) -> Value {
        let inner = self.inner.lock().expect("status lock");
        let running = inner.running.as_ref().map(|r| {
            json!({
                "job_id": r.spec.job_id,
                "project": r.spec.project,
                "path": r.spec.path.display().to_string(),
                "mode": r.spec.mode.as_str(),
                "running_ms": r.since.elapsed().as_millis() as u64,
            })
        });
        json!({
            "consumer": self.consumer,
            "running": running,
            "completed": inner.completed,
            "failed": inner.failed,
            "cancelled": inner.cancelled,
            "last": inner.last,
            "watches": inner.watches.values().collect::<Vec<_>>(),
        })
    }
}
