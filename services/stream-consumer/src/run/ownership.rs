//! Sharing the projects of one sink between the processes that run it.
//!
//! Every tick each process: records a heartbeat in `code_graph:cdc:consumers:<sink>` (sorted set, score = time)
//! and counts the live processes; renews the leases of the projects it owns, stopping the worker of any lease it
//! lost; reads `code_graph:projects` (so new projects are picked up without a restart); takes free leases until it
//! owns its fair share (projects ÷ live processes, rounded up) and hands back the projects it has beyond that
//! share, each after its worker finished the batch in hand. A process that dies stops renewing; its leases expire
//! and the others take its projects, first claiming the entries it left pending (see [`crate::run::worker`]).

use std::{
    collections::{hash_map::DefaultHasher, HashMap},
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use codegraph_shared::redis_handle::RedisConn;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use codegraph_shared::{
    names::{sink_consumers, RedisNames, PROJECTS_KEY},
    project::ProjectName,
    shutdown::Shutdown,
    stream::now_ms,
};

use crate::{
    run::{
        lease::{self, Lease},
        status::METRICS,
        worker::{self, SinkContext},
    },
    sinks::Sink,
};

struct Owned {
    lease: Lease,
    stop: Shutdown,
    task: JoinHandle<()>,
    renewed: Instant,
}

/// Runs the sink's share of the projects until `shutdown`, then stops the workers and hands the leases back.
pub async fn run_sink<S: Sink>(ctx: Arc<SinkContext<S>>, shutdown: Shutdown) {
    let sink = ctx.sink.name();
    let mut owned: HashMap<ProjectName, Owned> = HashMap::new();
    let mut conn = ctx.redis.conn();
    let heartbeat_key = sink_consumers(sink);
    METRICS.start_sink(sink);
    info!(sink, consumer = %ctx.consumer, "sink consumer started");
    loop {
        if let Err(e) = tick(&ctx, &mut conn, &heartbeat_key, &mut owned).await {
            warn!(sink, error = %e, "ownership round failed; retrying");
        }
        lose_expired(&ctx, &mut owned);
        METRICS.owned_projects.with_label_values(&[sink]).set(owned.len() as i64);
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(ctx.settings.tick()) => {}
        }
    }
    for (_, o) in owned.iter() {
        o.stop.trigger();
    }
    for (project, o) in owned.drain() {
        let _ = o.task.await;
        if let Err(e) = o.lease.release(&mut conn).await {
            warn!(sink, %project, error = %e, "releasing the lease failed; it expires by itself");
        }
        ctx.board.remove(sink, project.as_str());
    }
    let _ = redis::cmd("ZREM").arg(&heartbeat_key).arg(&ctx.consumer).query_async::<i64>(&mut conn).await;
    METRICS.owned_projects.with_label_values(&[sink]).set(0);
    info!(sink, "sink consumer stopped");
}

async fn tick<S: Sink>(
    ctx: &Arc<SinkContext<S>>,
    conn: &mut RedisConn,
    heartbeat_key: &str,
    owned: &mut HashMap<ProjectName, Owned>,
) -> Result<(), redis::RedisError> {
    let sink = ctx.sink.name();
    let now = now_ms();
    let (_, _, live): (i64, i64, u64) = redis::pipe()
        .cmd("ZADD")
        .arg(heartbeat_key)
        .arg(now)
        .arg(&ctx.consumer)
        .cmd("ZREMRANGEBYSCORE")
        .arg(heartbeat_key)
        .arg("-inf")
        .arg(now.saturating_sub(ctx.settings.lease_ms))
        .cmd("ZCARD")
        .arg(heartbeat_key)
        .query_async(conn)
        .await?;

    // Renew, and forget workers that ended.
    let mut lost = Vec::new();
    for (project, o) in owned.iter_mut() {
        if o.task.is_finished() {
            lost.push(project.clone());
        } else if o.lease.renew(conn).await? {
            o.renewed = Instant::now();
        } else {
            warn!(sink, %project, "lease lost; stopping the project's worker");
            lost.push(project.clone());
        }
    }
    for project in lost {
        if let Some(o) = owned.remove(&project) {
            o.stop.trigger();
            ctx.board.remove(sink, project.as_str());
        }
    }

    let names: Vec<String> = redis::cmd("SMEMBERS").arg(PROJECTS_KEY).query_async(conn).await?;
    let mut projects: Vec<ProjectName> = names.iter().filter_map(|n| ProjectName::parse(n).ok()).collect();
    let share = projects.len().div_ceil(live.max(1) as usize);

    // Hand back what is beyond the share (the most recently sorted first, so the choice is stable).
    while owned.len() > share {
        let Some(project) = owned.keys().max_by_key(|p| affinity(&ctx.consumer, p)).cloned() else { break };
        let o = owned.remove(&project).expect("present");
        info!(sink, %project, share, "handing the project to another process");
        ctx.board.remove(sink, project.as_str());
        o.stop.trigger();
        let mut conn = conn.clone();
        tokio::spawn(async move {
            let _ = o.task.await;
            let _ = o.lease.release(&mut conn).await;
        });
    }

    // Take free projects up to the share, each process preferring a different order so they do not collide.
    projects.retain(|p| !owned.contains_key(p));
    projects.sort_by_key(|p| affinity(&ctx.consumer, p));
    for project in projects {
        if owned.len() >= share {
            break;
        }
        let mut lease = lease::for_sink(&RedisNames::new(&project), sink, ctx.consumer.clone(), ctx.settings.lease_ms);
        if !lease.take(conn).await? {
            continue;
        }
        info!(sink, %project, generation = lease.generation, "took the project");
        let stop = Shutdown::new();
        let task = tokio::spawn(worker::run(ctx.clone(), project.clone(), lease.generation, stop.clone()));
        owned.insert(project, Owned { lease, stop, task, renewed: Instant::now() });
    }
    Ok(())
}

/// Stops the workers whose lease may have expired because Redis could not be reached to renew it.
fn lose_expired<S: Sink>(ctx: &SinkContext<S>, owned: &mut HashMap<ProjectName, Owned>) {
    let limit = Duration::from_millis(ctx.settings.lease_ms.saturating_sub(ctx.settings.tick_ms));
    owned.retain(|project, o| {
        if o.renewed.elapsed() < limit {
            return true;
        }
        warn!(sink = ctx.sink.name(), %project, "lease not renewed in time; stopping the project's worker");
        o.stop.trigger();
        ctx.board.remove(ctx.sink.name(), project.as_str());
        false
    });
}

/// A per-(process, project) rank: each process walks the projects in its own order.
fn affinity(consumer: &str, project: &ProjectName) -> u64 {
    let mut h = DefaultHasher::new();
    (consumer, project.as_str()).hash(&mut h);
    h.finish()
}
