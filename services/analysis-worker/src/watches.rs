//! Watching as a service feature: graph-api records a watch in Redis (`code_graph:{p}:watch`, indexed in
//! [`WATCHES_KEY`]); the analysis-workers share the watches out, one lease per watched project
//! (`code_graph:{p}:watch:owner`, with generations, see [`codegraph_shared::lease`]), so exactly one worker
//! follows a folder and another takes it over once the holder stops renewing (it died).
//!
//! Every tick a worker announces itself (with the roots it may analyse, which graph-api checks a request
//! against), renews its leases, stops the watches that were removed or moved, hands back what is beyond its fair
//! share and takes free watches up to it. A taken watch first catches up (an incremental run compares every
//! file's content hash with `code_graph:{p}:file_hashes`, so edits made while nobody watched are applied), then
//! follows notifications ([`crate::watch`]). What the holder reports goes to `code_graph:{p}:watch:status`,
//! written only under its generation, so a holder that lost the lease cannot overwrite its successor's report.

use std::{
    collections::{hash_map::DefaultHasher, HashMap},
    hash::{Hash, Hasher},
    path::PathBuf,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use codegraph_shared::{
    lease::Lease,
    names::{RedisNames, WATCHES_KEY, WATCH_ROOTS_KEY, WATCH_WORKERS_KEY},
    project::ProjectName,
    redis_handle::RedisConn,
    shutdown::Shutdown,
    stream::now_ms,
};
use redis::Script;
use serde_json::{json, Value};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    job::{JobEnd, JobRunner},
    status::WorkerStatus,
    watch::{self, WatchEvent},
};

/// KEYS: status hash, lease generation. ARGV: generation, then field/value pairs. Writes only while `generation`
/// is the lease's newest.
static REPORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
          return redis.call('HSET', KEYS[1], unpack(ARGV, 2))",
    )
});

struct Held {
    lease: Lease,
    path: String,
    stop: Shutdown,
    task: JoinHandle<()>,
    renewed: Instant,
}

/// Follows this worker's share of the watches until `shutdown`, then stops them and hands the leases back.
pub async fn run(runner: JobRunner, status: Arc<WorkerStatus>, shutdown: Shutdown) {
    let mut held: HashMap<ProjectName, Held> = HashMap::new();
    let mut conn = runner.redis.conn();
    let tick_every = Duration::from_millis(runner.settings.watch_tick_ms.max(10));
    loop {
        if let Err(e) = tick(&runner, &status, &mut conn, &mut held).await {
            warn!(error = %e, "watch round failed; retrying");
        }
        lose_expired(&runner, &status, &mut held);
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(tick_every) => {}
        }
    }
    for h in held.values() {
        h.stop.trigger();
    }
    for (project, h) in held.drain() {
        let _ = h.task.await;
        if let Err(e) = h.lease.release(&mut conn).await {
            warn!(%project, error = %e, "releasing a watch lease failed; it expires by itself");
        }
        status.remove_watch(project.as_str());
    }
    let consumer = &status.consumer;
    let _ = redis::cmd("ZREM").arg(WATCH_WORKERS_KEY).arg(consumer).query_async::<i64>(&mut conn).await;
    let _ = redis::cmd("HDEL").arg(WATCH_ROOTS_KEY).arg(consumer).query_async::<i64>(&mut conn).await;
}

/// The roots this worker may analyse as graph-api compares a requested path with them: as configured (made
/// absolute, `.` and `..` resolved) and canonical.
fn announced_roots(runner: &JobRunner) -> Vec<String> {
    let mut roots = Vec::new();
    for root in runner.settings.allowed_roots() {
        let written = std::path::absolute(&root).unwrap_or(root.clone());
        for r in [Some(written), root.canonicalize().ok()].into_iter().flatten() {
            let r = r.display().to_string();
            if !roots.contains(&r) {
                roots.push(r);
            }
        }
    }
    roots
}

async fn tick(
    runner: &JobRunner,
    status: &Arc<WorkerStatus>,
    conn: &mut RedisConn,
    held: &mut HashMap<ProjectName, Held>,
) -> Result<(), redis::RedisError> {
    let consumer = status.consumer.as_str();
    let lease_ms = runner.settings.watch_lease_ms.max(1);
    let now = now_ms();
    // Each key by a command of its own: on a Redis Cluster they live in different slots.
    redis::cmd("ZADD").arg(WATCH_WORKERS_KEY).arg(now + lease_ms).arg(consumer).query_async::<i64>(conn).await?;
    redis::cmd("ZREMRANGEBYSCORE").arg(WATCH_WORKERS_KEY).arg("-inf").arg(now).query_async::<i64>(conn).await?;
    let live: Vec<String> = redis::cmd("ZRANGE").arg(WATCH_WORKERS_KEY).arg(0).arg(-1).query_async(conn).await?;
    let roots = serde_json::to_string(&announced_roots(runner)).unwrap_or_else(|_| "[]".into());
    redis::cmd("HSET").arg(WATCH_ROOTS_KEY).arg(consumer).arg(roots).query_async::<i64>(conn).await?;
    let announced: Vec<String> = redis::cmd("HKEYS").arg(WATCH_ROOTS_KEY).query_async(conn).await?;
    let gone: Vec<&String> = announced.iter().filter(|c| !live.contains(c)).collect();
    if !gone.is_empty() {
        redis::cmd("HDEL").arg(WATCH_ROOTS_KEY).arg(gone).query_async::<i64>(conn).await?;
    }

    // Renew; let go of the watches whose lease was lost.
    let mut lost = Vec::new();
    for (project, h) in held.iter_mut() {
        if h.lease.renew(conn).await? {
            h.renewed = Instant::now();
        } else {
            warn!(%project, "watch lease lost; stopping the watch");
            lost.push(project.clone());
        }
    }
    for project in lost {
        if let Some(h) = held.remove(&project) {
            h.stop.trigger();
            status.remove_watch(project.as_str());
        }
    }

    // Watches removed or moved to another folder.
    let members: Vec<String> = redis::cmd("SMEMBERS").arg(WATCHES_KEY).query_async(conn).await?;
    let mut watched: Vec<ProjectName> = members.iter().filter_map(|n| ProjectName::parse(n).ok()).collect();
    let projects: Vec<ProjectName> = held.keys().cloned().collect();
    for project in projects {
        let names = RedisNames::new(&project);
        let path: Option<String> = redis::cmd("HGET").arg(names.watch()).arg("path").query_async(conn).await?;
        let h = &held[&project];
        if path.as_deref() == Some(h.path.as_str()) && watched.contains(&project) {
            continue;
        }
        info!(%project, "watch removed or moved; stopping it");
        let h = held.remove(&project).expect("present");
        status.remove_watch(project.as_str());
        let status_key = path.is_none().then(|| names.watch_status());
        hand_back(h, conn.clone(), status_key);
    }

    // Hand back what is beyond the share, then take free watches up to it, each worker preferring its own order.
    let share = watched.len().div_ceil(live.len().max(1));
    while held.len() > share {
        let Some(project) = held.keys().max_by_key(|p| affinity(consumer, p)).cloned() else { break };
        let h = held.remove(&project).expect("present");
        info!(%project, share, "handing a watch to another worker");
        status.remove_watch(project.as_str());
        hand_back(h, conn.clone(), None);
    }
    watched.retain(|p| !held.contains_key(p));
    watched.sort_by_key(|p| affinity(consumer, p));
    for project in watched {
        if held.len() >= share {
            break;
        }
        let names = RedisNames::new(&project);
        let Some(path) = redis::cmd("HGET").arg(names.watch()).arg("path").query_async::<Option<String>>(conn).await?
        else {
            continue;
        };
        let mut lease = Lease::new(names.watch_owner(), names.watch_owner_generation(), consumer.to_owned(), lease_ms);
        if !lease.take(conn).await? {
            continue;
        }
        info!(%project, path, generation = lease.generation, "took a watch");
        let stop = Shutdown::new();
        let follower = Follower {
            runner: runner.clone(),
            status: status.clone(),
            project: project.clone(),
            path: path.clone(),
            generation: lease.generation,
        };
        let task = tokio::spawn(follower.run(stop.clone()));
        held.insert(project, Held { lease, path, stop, task, renewed: Instant::now() });
    }
    Ok(())
}

/// Stops a watch and, once its run in hand ended, removes its report (`status_key`: the watch was removed) and
/// gives its lease up, without holding up the other leases' renewal. Taking the watch again meanwhile is safe: a
/// take begins a new generation, which the old one's report and release no longer match.
fn hand_back(h: Held, mut conn: RedisConn, status_key: Option<String>) {
    h.stop.trigger();
    tokio::spawn(async move {
        let _ = h.task.await;
        if let Some(key) = status_key {
            let _ = redis::cmd("DEL").arg(key).query_async::<i64>(&mut conn).await;
        }
        if let Err(e) = h.lease.release(&mut conn).await {
            warn!(error = %e, "releasing a watch lease failed; it expires by itself");
        }
    });
}

/// Stops the watches whose lease may have expired because Redis could not be reached to renew it.
fn lose_expired(runner: &JobRunner, status: &WorkerStatus, held: &mut HashMap<ProjectName, Held>) {
    let limit = Duration::from_millis(runner.settings.watch_lease_ms.saturating_sub(runner.settings.watch_tick_ms));
    held.retain(|project, h| {
        if h.renewed.elapsed() < limit {
            return true;
        }
        warn!(%project, "watch lease not renewed in time; stopping the watch");
        h.stop.trigger();
        status.remove_watch(project.as_str());
        false
    });
}

/// A per-(worker, project) rank: each worker walks the watches in its own order.
fn affinity(consumer: &str, project: &ProjectName) -> u64 {
    let mut h = DefaultHasher::new();
    (consumer, project.as_str()).hash(&mut h);
    h.finish()
}

/// One held watch: follows the folder and reports.
#[derive(Clone)]
struct Follower {
    runner: JobRunner,
    status: Arc<WorkerStatus>,
    project: ProjectName,
    path: String,
    generation: u64,
}

/// A change of what the holder reports: fields of the status hash (an empty value reads as none).
type Fields = Vec<(&'static str, String)>;

impl Follower {
    /// Watches until `stop`; when the folder cannot be watched (gone, not allowed), says why and tries again
    /// after a lease's time.
    async fn run(self, stop: Shutdown) {
        let (tx, rx) = mpsc::unbounded_channel::<Fields>();
        let reporter = tokio::spawn(self.clone().report(rx));
        let since = now_ms().to_string();
        let _ = tx.send(vec![
            ("worker", self.status.consumer.clone()),
            ("generation", self.generation.to_string()),
            ("since_ms", since),
            ("path", self.path.clone()),
            ("state", "catching_up".into()),
            ("pending", "0".into()),
            ("error", String::new()),
        ]);
        let retry = Duration::from_millis(self.runner.settings.watch_lease_ms.max(100));
        while !stop.is_triggered() {
            let events = tx.clone();
            let result = watch::watch(
                self.runner.clone(),
                self.project.clone(),
                PathBuf::from(&self.path),
                stop.clone(),
                move |event| {
                    let _ = events.send(fields_of(event));
                },
            )
            .await;
            if let Err(e) = result {
                warn!(project = %self.project, path = self.path, error = %e, "cannot watch the folder; retrying");
                let _ =
                    tx.send(vec![("state", "failed".into()), ("error", format!("cannot watch {}: {e}", self.path))]);
                tokio::select! {
                    _ = stop.wait() => {}
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        }
        drop(tx);
        let _ = reporter.await;
    }

    /// Writes each change to the status hash (under the generation) and to this worker's `/status`.
    async fn report(self, mut rx: mpsc::UnboundedReceiver<Fields>) {
        let names = RedisNames::new(&self.project);
        let mut conn = self.runner.redis.conn();
        let mut view = serde_json::Map::new();
        view.insert("project".into(), json!(self.project.as_str()));
        view.insert("generation".into(), json!(self.generation));
        while let Some(mut fields) = rx.recv().await {
            // Coalesce what queued up meanwhile (a burst of notifications): the latest value of each field.
            while let Ok(more) = rx.try_recv() {
                fields.extend(more);
            }
            let mut latest: Vec<(&'static str, String)> = Vec::new();
            for (k, v) in fields {
                latest.retain(|(k2, _)| *k2 != k);
                latest.push((k, v));
            }
            for (k, v) in &latest {
                let value = match *k {
                    "generation" | "since_ms" | "pending" | "last_change_ms" => {
                        v.parse::<u64>().map(Value::from).unwrap_or(Value::Null)
                    }
                    "last_change_files" | "last_run" => serde_json::from_str(v).unwrap_or(Value::Null),
                    _ if v.is_empty() => Value::Null,
                    _ => json!(v),
                };
                view.insert((*k).to_owned(), value);
            }
            self.status.set_watch(self.project.as_str(), Value::Object(view.clone()));
            let mut script = REPORT.key(names.watch_status());
            script.key(names.watch_owner_generation()).arg(self.generation);
            for (k, v) in &latest {
                script.arg(*k).arg(v);
            }
            match script.invoke_async::<i64>(&mut conn).await {
                Ok(_) => {}
                Err(e) => warn!(project = %self.project, error = %e, "could not record the watch status"),
            }
        }
    }
}

/// The status fields a watch event changes.
fn fields_of(event: WatchEvent) -> Fields {
    match event {
        WatchEvent::RunStarted { catching_up, .. } => {
            vec![("state", if catching_up { "catching_up" } else { "watching" }.into()), ("pending", "0".into())]
        }
        WatchEvent::Pending(n) => vec![("pending", n.to_string())],
        WatchEvent::RunEnded { job_id, end } => {
            let finished = now_ms();
            let (outcome, changed, duration, error) = match end {
                JobEnd::Completed(s) => ("completed", s.changed_files, s.duration.as_millis() as u64, None),
                JobEnd::Cancelled => ("cancelled", 0, 0, None),
                JobEnd::Failed(e) => ("failed", 0, 0, Some(e.clone())),
            };
            let run = json!({
                "job_id": job_id,
                "outcome": outcome,
                "changed_files": changed,
                "duration_ms": duration,
                "finished_ms": finished,
                "error": error,
            });
            let mut fields = vec![("last_run", run.to_string())];
            match end {
                JobEnd::Completed(s) => {
                    fields.push(("state", "watching".into()));
                    fields.push(("error", String::new()));
                    if s.changed_files > 0 {
                        fields.push(("last_change_ms", finished.to_string()));
                        fields.push(("last_change_files", json!(s.changed_sample).to_string()));
                    }
                }
                JobEnd::Failed(e) => {
                    fields.push(("state", "failed".into()));
                    fields.push(("error", e.clone()));
                }
                JobEnd::Cancelled => {}
            }
            fields
        }
    }
}
