//! The job queue: reads `code_graph:jobs` in the consumer group `analysis-workers`, one job at a time. A job
//! stays pending until it ends (acknowledged then); while it runs the worker renews its claim, so a job whose
//! worker died goes idle and another worker takes it over (`XAUTOCLAIM`). Cancel requests arrive on
//! [`JOBS_CANCEL_CHANNEL`] and in the job hash (see [`crate::job`]).

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use codegraph_shared::{
    names::{RedisNames, JOBS_CANCEL_CHANNEL, JOBS_GROUP, JOBS_STREAM},
    project::ProjectName,
    pubsub::{Incoming, Subscription},
    shutdown::Shutdown,
    stream::{autoclaim_reply, read_reply, RawEntry},
};
use redis::Value;
use tracing::Instrument;

use crate::{
    analysis::Analyzer,
    job::{CancelFlag, JobRunner, JobSpec},
    status::WorkerStatus,
    sync::Mode,
};

/// How long one blocking read waits for a job, so shutdown is noticed promptly.
const READ_BLOCK_MS: u64 = 1000;

/// One entry of the jobs stream: its ID (as acknowledged) and its fields.
#[derive(Clone, Debug)]
struct Entry {
    id: String,
    fields: HashMap<String, String>,
}

impl From<RawEntry> for Entry {
    fn from(raw: RawEntry) -> Self {
        Entry { id: raw.id.to_string(), fields: raw.fields.unwrap_or_default().into_iter().collect() }
    }
}

/// The analyzer of the last job, kept for a next job on the same project and folder: files whose content did
/// not change are not parsed again, and their entities not built again (they are still read and hashed: no
/// watcher vouches for them). One project's facts at most stay in memory.
#[derive(Default)]
struct Warm {
    key: Option<(ProjectName, PathBuf)>,
    analyzer: Analyzer,
}

impl Warm {
    /// The kept analyzer when it was made for `key`, otherwise a new one (and the old facts are dropped).
    fn take(&mut self, key: &(ProjectName, PathBuf)) -> Analyzer {
        let kept = std::mem::take(self);
        if kept.key.as_ref() == Some(key) {
            kept.analyzer
        } else {
            Analyzer::new()
        }
    }
}

/// Runs jobs until `shutdown` fires (the running job is finished first).
pub async fn run(runner: JobRunner, status: Arc<WorkerStatus>, shutdown: Shutdown) {
    tokio::spawn(listen_for_cancels(runner.clone(), status.clone(), shutdown.clone()));
    let claim_idle = Duration::from_millis(runner.settings.claim_idle_ms.max(100));
    let mut warm = Warm::default();
    while !shutdown.is_triggered() {
        match next_job(&runner, &status.consumer, claim_idle, &shutdown).await {
            Ok(Some(entry)) => handle(&runner, &status, entry, claim_idle, &mut warm).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "job queue unavailable; retrying");
                tokio::select! {
                    _ = shutdown.wait() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn ensure_group(conn: &mut impl redis::aio::ConnectionLike) -> redis::RedisResult<()> {
    let r: redis::RedisResult<String> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(JOBS_STREAM)
        .arg(JOBS_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
        _ => Ok(()),
    }
}

/// A job abandoned by a dead worker first, else a new one (waiting up to a second).
async fn next_job(
    runner: &JobRunner,
    consumer: &str,
    claim_idle: Duration,
    shutdown: &Shutdown,
) -> redis::RedisResult<Option<Entry>> {
    let mut conn = runner.redis.conn();
    ensure_group(&mut conn).await?;
    let claimed: Value = redis::cmd("XAUTOCLAIM")
        .arg(JOBS_STREAM)
        .arg(JOBS_GROUP)
        .arg(consumer)
        .arg(claim_idle.as_millis() as u64)
        .arg("0-0")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await?;
    if let Some(entry) = autoclaim_reply::<Entry>(claimed).1.into_iter().next() {
        tracing::info!(id = entry.id, "took over a job whose worker stopped");
        return Ok(Some(entry));
    }
    // A blocking read gets its own connection, so it never delays the shared one.
    let mut blocking = runner.redis.blocking_connection(Duration::from_millis(READ_BLOCK_MS)).await?;
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(JOBS_GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(1)
        .arg("BLOCK")
        .arg(READ_BLOCK_MS)
        .arg("STREAMS")
        .arg(JOBS_STREAM)
        .arg(">");
    let read = cmd.query_async::<Value>(&mut blocking);
    let reply = tokio::select! {
        r = read => r?,
        _ = shutdown.wait() => return Ok(None),
    };
    Ok(read_reply::<Entry>(reply).into_iter().next())
}

async fn ack(runner: &JobRunner, id: &str) {
    let mut conn = runner.redis.conn();
    let r: redis::RedisResult<i64> =
        redis::cmd("XACK").arg(JOBS_STREAM).arg(JOBS_GROUP).arg(id).query_async(&mut conn).await;
    if let Err(e) = r {
        tracing::warn!(error = %e, id, "could not acknowledge a job");
    }
}

async fn handle(runner: &JobRunner, status: &Arc<WorkerStatus>, entry: Entry, claim_idle: Duration, warm: &mut Warm) {
    let field = |k: &str| entry.fields.get(k).cloned().unwrap_or_default();
    let job_id = field("job_id");
    let Ok(project) = ProjectName::parse(&field("project")) else {
        tracing::warn!(id = entry.id, "job without a valid project: dropped");
        return ack(runner, &entry.id).await;
    };
    let Some(mode) = Mode::parse(&field("mode")) else {
        tracing::warn!(id = entry.id, mode = field("mode"), "job with an unknown mode: dropped");
        return ack(runner, &entry.id).await;
    };
    if job_id.is_empty() {
        return ack(runner, &entry.id).await;
    }
    let spec = JobSpec { job_id: job_id.clone(), project: project.clone(), path: PathBuf::from(field("path")), mode };
    // A job that already ended (its worker died before acknowledging) is only acknowledged.
    let mut conn = runner.redis.conn();
    let job_key = RedisNames::new(&project).job(&job_id);
    let state: HashMap<String, String> =
        redis::cmd("HGETALL").arg(&job_key).query_async(&mut conn).await.unwrap_or_default();
    if matches!(state.get("status").map(String::as_str), Some("completed" | "failed" | "cancelled")) {
        return ack(runner, &entry.id).await;
    }
    if let Err(e) = conn.ensure_library().await {
        tracing::warn!(error = %e, "could not load the Function library");
    }
    let cancel = CancelFlag::default();
    if state.get("cancel_requested").map(String::as_str) == Some("1") {
        cancel.cancel();
    }
    status.start(&spec, &cancel);
    tracing::info!(job_id, project = %project, path = %spec.path.display(), mode = mode.as_str(), "job started");
    let renew = tokio::spawn(renew_claim(runner.clone(), status.consumer.clone(), entry.id.clone(), claim_idle));
    let key = (project.clone(), spec.path.clone());
    // The job continues the trace of the request that queued it (graph-api puts its traceparent in the entry).
    let span = tracing::info_span!("analysis_job", job_id = %job_id, project = %project, mode = spec.mode.as_str());
    let traceparent = field("traceparent");
    if !traceparent.is_empty() {
        codegraph_shared::telemetry::set_parent(&span, &traceparent);
    }
    let (analyzer, end) = runner.run(&spec, warm.take(&key), cancel).instrument(span).await;
    *warm = Warm { key: Some(key), analyzer };
    renew.abort();
    tracing::info!(job_id, outcome = ?end_name(&end), "job ended");
    status.finish(&spec, &end);
    ack(runner, &entry.id).await;
}

fn end_name(end: &crate::job::JobEnd) -> &'static str {
    match end {
        crate::job::JobEnd::Completed(_) => "completed",
        crate::job::JobEnd::Cancelled => "cancelled",
        crate::job::JobEnd::Failed(_) => "failed",
    }
}

/// Keeps the job's pending entry fresh (idle time reset) while this worker runs it.
async fn renew_claim(runner: JobRunner, consumer: String, id: String, claim_idle: Duration) {
    loop {
        tokio::time::sleep(claim_idle / 3).await;
        let mut conn = runner.redis.conn();
        let r: redis::RedisResult<Value> = redis::cmd("XCLAIM")
            .arg(JOBS_STREAM)
            .arg(JOBS_GROUP)
            .arg(&consumer)
            .arg(0)
            .arg(&id)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not renew the job claim");
        }
    }
}

/// Subscribes to the cancel channel and cancels the running job when its id arrives.
async fn listen_for_cancels(runner: JobRunner, status: Arc<WorkerStatus>, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        match Subscription::connect(&runner.redis, false).await {
            Ok(mut sub) => {
                if let Err(e) = sub.subscribe(&[JOBS_CANCEL_CHANNEL.to_owned()]).await {
                    tracing::warn!(error = %e, "cancel channel subscription failed");
                } else {
                    loop {
                        tokio::select! {
                            _ = shutdown.wait() => return,
                            m = sub.next() => match m {
                                Incoming::Message { payload, .. } => {
                                    let job_id = String::from_utf8_lossy(&payload);
                                    if status.cancel(job_id.trim()) {
                                        tracing::info!(job_id = %job_id.trim(), "cancel requested");
                                    }
                                }
                                Incoming::Lost(_) => break,
                                Incoming::Unsubscribed(_) | Incoming::Other => {}
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cancel channel unavailable"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
