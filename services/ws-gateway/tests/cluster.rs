//! Three gateway processes behind the real load balancer (nginx with deploy/nginx/locations.conf, rendered by
//! deploy/nginx/render.sh), many clients, a steady stream of mutations. A gateway is killed (SIGKILL), another
//! restarted (SIGTERM drain), Redis is stopped and started: every client, resuming by its last seen id after
//! each of its reconnects, ends with the complete stream, with no gap and no duplicate.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::StreamId,
    testing::{Balancer, RedisServer},
};
use common::*;
use tokio::sync::watch;

/// What one client saw: the ids it kept (after dropping repeats by id) and how often it reconnected.
struct Seen {
    ids: Vec<StreamId>,
    duplicates: u64,
    reconnects: u64,
}

/// A client that resumes by its last seen id, as the dashboard does: on any close or error it reconnects (after a
/// short, per-client jitter) with `since=<last id>`, until it has the id `target` says is last.
fn resuming_client(
    url: String,
    index: u64,
    target: watch::Receiver<Option<StreamId>>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen { ids: Vec::new(), duplicates: 0, reconnects: 0 };
        let done = |seen: &Seen| {
            let t = *target.borrow();
            t.is_some() && seen.ids.last() >= t.as_ref()
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done(&seen) {
            assert!(Instant::now() < deadline, "client {index} never caught up ({} events)", seen.ids.len());
            let since = seen.ids.last().copied().unwrap_or(StreamId::ZERO);
            let mut ws = match connect_with(&format!("{url}&since={since}"), &[]).await {
                Ok(ws) => ws,
                Err(_) => {
                    seen.reconnects += 1;
                    tokio::time::sleep(Duration::from_millis(20 + index % 7 * 10)).await;
                    continue;
                }
            };
            loop {
                if done(&seen) {
                    break;
                }
                let Some(incoming) = try_next(&mut ws, Duration::from_millis(200)).await else { continue };
                match incoming {
                    Incoming::Json(v) if is_event(&v) => {
                        let id = event_id(&v);
                        if seen.ids.last().is_some_and(|last| id <= *last) {
                            seen.duplicates += 1;
                        } else {
                            seen.ids.push(id);
                        }
                    }
                    Incoming::Json(v) => {
                        assert_ne!(v["type"], "resync_required", "client {index}: {v}");
                    }
                    Incoming::Closed(code, _) => {
                        assert!(code.is_none_or(|c| !(4400..4500).contains(&c)), "client {index} refused: {code:?}");
                        break;
                    }
                }
            }
            if !done(&seen) {
                seen.reconnects += 1;
                tokio::time::sleep(Duration::from_millis(10 + index % 7 * 10)).await;
            }
        }
        seen
    })
}

/// Writes one event every ~2 ms until stopped, retrying through outages.
fn steady_writer(url: String, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut w = Writer::new(&url, "p").await;
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            w.upsert_retrying(&format!("n{}", n % 50), n).await;
            n += 1;
            written.store(n, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

async fn wait_written(written: &AtomicU64, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while written.load(Ordering::Relaxed) < at_least {
        assert!(Instant::now() < deadline, "the writer is stuck");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const CLIENTS: u64 = 40;

struct Cluster {
    redis: RedisServer,
    gateways: Vec<GatewayProcess>,
    lb: Balancer,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    writer: tokio::task::JoinHandle<()>,
    target: watch::Sender<Option<StreamId>>,
    clients: Vec<tokio::task::JoinHandle<Seen>>,
}

impl Cluster {
    async fn start() -> Self {
        let redis = RedisServer::start();
        let env =
            [("CODEGRAPH__GATEWAY__DRAIN_WINDOW_MS", "500"), ("CODEGRAPH__GATEWAY__REDIS_PING_INTERVAL_MS", "500")];
        let gateways: Vec<GatewayProcess> = (0..3).map(|_| GatewayProcess::start(&redis.url(), &env)).collect();
        for g in &gateways {
            g.wait_ready().await;
        }
        let lb = Balancer::start(&gateways.iter().map(|g| g.port).collect::<Vec<_>>());
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writer = steady_writer(redis.url(), stop.clone(), written.clone());
        let (target, rx) = watch::channel(None);
        let clients = (0..CLIENTS).map(|i| resuming_client(lb.ws("/ws/events?project=p"), i, rx.clone())).collect();
        Self { redis, gateways, lb, stop, written, writer, target, clients }
    }

    async fn written_more(&self, n: u64) {
        let now = self.written.load(Ordering::Relaxed);
        wait_written(&self.written, now + n).await;
    }

    /// Stops the writer and checks every client against the stream.
    async fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.await.unwrap();
        let stream = stream_ids(&self.redis.url(), "p").await;
        self.target.send_replace(stream.last().copied());
        let mut all = Vec::new();
        for (i, c) in self.clients.into_iter().enumerate() {
            let seen = c.await.unwrap();
            assert_eq!(seen.ids.len(), stream.len(), "client {i}: count");
            assert_eq!(seen.ids, stream, "client {i}: the complete sequence, in order");
            assert_eq!(seen.duplicates, 0, "client {i}: the gateway sent a duplicate");
            all.push(seen);
        }
        drop(self.lb);
        drop(self.gateways);
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_gateways_behind_the_balancer_loses_nothing() {
    let mut cluster = Cluster::start().await;
    cluster.written_more(150).await;
    cluster.gateways[0].kill();
    cluster.written_more(150).await;
    let g1 = &mut cluster.gateways[1];
    let (status, _) = tokio::task::block_in_place(|| g1.terminate(Duration::from_secs(15)));
    assert!(status.success());
    let port = g1.port;
    let url = cluster.redis.url();
    cluster.gateways[1] = GatewayProcess::start_on(port, &url, &[("CODEGRAPH__GATEWAY__DRAIN_WINDOW_MS", "500")]);
    cluster.gateways[1].wait_ready().await;
    cluster.written_more(150).await;
    let seen = cluster.finish().await;
    let reconnects: u64 = seen.iter().map(|s| s.reconnects).sum();
    assert!(reconnects >= CLIENTS / 3, "the kills moved clients ({reconnects} reconnects)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_behind_the_balancer_loses_nothing() {
    let mut cluster = Cluster::start().await;
    cluster.written_more(150).await;
    cluster.redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.redis.restart();
    cluster.written_more(150).await;
    cluster.redis.restart();
    cluster.written_more(150).await;
    cluster.finish().await;
}
