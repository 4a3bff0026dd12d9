//! Job records do not pile up. A finished job's hash gets a time to live when the job ends ([`crate::job`]);
//! this sweep, run by every worker service now and then, keeps the job → project index
//! (`code_graph:job_projects`, written by graph-api when it queues a job) in step: an entry whose job hash is
//! gone is removed, and a finished job without a time to live (one that ended before TTLs existed, or whose
//! worker stopped between its last event and the `EXPIRE`) gets one. Queued and running jobs are left alone.
//! Sweeps by several workers at once are harmless: each step is idempotent.

use std::time::Duration;

use codegraph_shared::{
    names::{RedisNames, JOB_PROJECTS_KEY},
    project::ProjectName,
    shutdown::Shutdown,
};
use redis::{aio::ConnectionLike, Value};

use crate::job::JobRunner;

/// Index entries read per `HSCAN` step (and checked per pipeline).
const SWEEP_BATCH: usize = 500;
/// Longest pause between two sweeps; shorter TTLs sweep more often (a quarter of the TTL, at least a second).
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Index entries looked at.
    pub checked: usize,
    /// Index entries removed (their job hash had expired or was malformed).
    pub removed: usize,
    /// Finished job hashes that had no time to live and got one.
    pub expired: usize,
}

/// Statuses after which a job never changes again.
fn finished(status: Option<&str>) -> bool {
    // No status at all: a hash re-created by a late write (e.g. a cancel flag) after its job had expired.
    matches!(status, None | Some("completed" | "failed" | "cancelled"))
}

/// One pass over the index. `ttl`: the time to live of finished jobs (`None`: they are kept, and only entries
/// whose hash is gone are removed).
pub async fn sweep(conn: &mut impl ConnectionLike, ttl: Option<Duration>) -> redis::RedisResult<Swept> {
    let mut swept = Swept::default();
    let mut cursor = 0u64;
    loop {
        let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(JOB_PROJECTS_KEY)
            .arg(cursor)
            .arg("COUNT")
            .arg(SWEEP_BATCH)
            .query_async(conn)
            .await?;
        let entries: Vec<(&str, &str)> = flat.chunks_exact(2).map(|p| (p[0].as_str(), p[1].as_str())).collect();
        swept.checked += entries.len();
        let mut doomed: Vec<&str> = Vec::new();
        let mut known: Vec<(&str, String, ProjectName)> = Vec::new();
        for (job_id, project) in entries {
            match ProjectName::parse(project) {
                Ok(p) => known.push((job_id, RedisNames::new(&p).job(job_id), p)),
                Err(_) => doomed.push(job_id),
            }
        }
        if !known.is_empty() {
            known.sort_by(|a, b| a.2.as_str().cmp(b.2.as_str()));
            // One pipeline per project: on a Redis Cluster each project's job hashes live in its own slot.
            let mut replies: Vec<Value> = Vec::with_capacity(known.len() * 2);
            for group in known.chunk_by(|a, b| a.2 == b.2) {
                let mut looks = redis::pipe();
                for (_, key, _) in group {
                    looks.cmd("HGET").arg(key).arg("status").cmd("TTL").arg(key);
                }
                replies.extend(looks.query_async::<Vec<Value>>(conn).await?);
            }
            let mut expiring = 0;
            for ((job_id, key, _), reply) in known.iter().zip(replies.chunks_exact(2)) {
                let status: Option<String> = redis::from_redis_value_ref(&reply[0])?;
                let remaining: i64 = redis::from_redis_value_ref(&reply[1])?;
                // TTL: -2 the key does not exist, -1 it has no time to live.
                if remaining == -2 {
                    doomed.push(job_id);
                } else if let (-1, Some(ttl)) = (remaining, ttl) {
                    if finished(status.as_deref()) {
                        redis::cmd("EXPIRE").arg(key).arg(ttl.as_secs()).arg("NX").query_async::<()>(conn).await?;
                        expiring += 1;
                    }
                }
            }
            swept.expired += expiring;
        }
        if !doomed.is_empty() {
            // Job ids are never reused (graph-api makes a UUID per job), so a gone hash never comes back.
            let removed: i64 = redis::cmd("HDEL").arg(JOB_PROJECTS_KEY).arg(&doomed).query_async(conn).await?;
            swept.removed += removed as usize;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(swept);
        }
    }
}

/// Sweeps until `shutdown` fires: at start, then every quarter of the TTL (between 1 s and 10 min).
pub async fn run(runner: JobRunner, shutdown: Shutdown) {
    let ttl = runner.settings.job_ttl();
    let every = ttl.map_or(MAX_SWEEP_INTERVAL, |t| (t / 4).clamp(Duration::from_secs(1), MAX_SWEEP_INTERVAL));
    while !shutdown.is_triggered() {
        match sweep(&mut runner.redis.conn(), ttl).await {
            Ok(s) if s.removed > 0 || s.expired > 0 => {
                tracing::info!(checked = s.checked, removed = s.removed, expired = s.expired, "job records swept")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "job record sweep failed; next time"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
