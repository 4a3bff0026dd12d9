//! The gateway's own gaps: Pub/Sub drops what is published while the gateway's connection is down. After a
//! reconnect the gateway reads the stream from the last id it dispatched, so connected clients miss nothing.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use codegraph_shared::{event::StreamId, testing::RedisServer};
use common::*;

/// Writes steadily (retrying through outages) until told to stop.
fn steady_writer(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut w = Writer::new(&url, "p").await;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            w.upsert_retrying(&format!("n{}", n % 20), n).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

async fn clients(gw: &GatewayProcess, n: usize) -> Vec<Ws> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut ws = connect(&gw.ws("/ws/events?project=p&since=0")).await;
        wait_for_type(&mut ws, "subscribed").await;
        out.push(ws);
    }
    out
}

async fn assert_complete(clients: Vec<Ws>, redis_url: &str) {
    let stream = stream_ids(redis_url, "p").await;
    assert!(stream.len() > 100, "the writer wrote ({})", stream.len());
    for mut ws in clients {
        let got: Vec<StreamId> = read_events(&mut ws, stream.len()).await.iter().map(event_id).collect();
        assert_eq!(got, stream, "every event, once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pubsub_connection_costs_no_event() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let clients = clients(&gw, 5).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(redis.url(), stop.clone());
    let mut conn = redis.connection();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query(&mut conn).unwrap();
        assert_eq!(killed, 1, "the gateway holds one Pub/Sub connection");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_complete(clients, &redis.url()).await;
    let status = gw.status().await;
    assert!(status["redis"]["reconnects"].as_u64().unwrap() >= 3, "{status}");
    assert!(status["events"]["recovered_total"].as_u64().unwrap() > 0, "events came back from the stream: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_stream_costs_no_event() {
    let mut redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let clients = clients(&gw, 5).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(redis.url(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    gw.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_complete(clients, &redis.url()).await;
}
