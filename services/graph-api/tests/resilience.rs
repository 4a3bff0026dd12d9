//! graph-api when Redis goes away and comes back, and several graph-api processes writing at once.

mod common;

use std::time::{Duration, Instant};

use codegraph_shared::testing::RedisServer;
use common::{assert_error, node, stream_events, GraphApi};
use serde_json::json;

#[tokio::test]
async fn redis_outage_gives_503_then_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    assert_eq!(api.post("/api/graph/nodes", node("before", "file")).await.0, 201);

    redis.stop();
    let down = api.get("/api/graph/stats").await;
    assert_error(&down, 503, "unavailable");
    assert_error(&api.post("/api/graph/nodes", node("during", "file")).await, 503, "unavailable");
    assert_eq!(api.get("/ready").await.0, 503);
    assert_eq!(api.get("/health").await.0, 200, "the process itself stays alive");

    redis.restart();
    let start = Instant::now();
    loop {
        let r = api.post("/api/graph/nodes", node("after", "file")).await;
        if r.0 == 201 {
            break;
        }
        assert_eq!(r.0, 503, "only 503 while reconnecting: {}", r.1);
        assert!(start.elapsed() < Duration::from_secs(15), "no recovery after Redis came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, stats) = api.get("/api/graph/stats").await;
    assert_eq!(stats["nodes"], 2, "the node written before the outage survived (AOF) and the new one was added");
}

#[tokio::test]
async fn concurrent_writers_in_several_processes_lose_nothing() {
    const PROCESSES: usize = 3;
    const WRITERS_PER_PROCESS: usize = 4;
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 50;
    let redis = RedisServer::start();
    let mut apis = Vec::new();
    for _ in 0..PROCESSES {
        apis.push(std::sync::Arc::new(GraphApi::start(&redis).await));
    }
    let mut tasks = Vec::new();
    for (p, api) in apis.iter().enumerate() {
        for w in 0..WRITERS_PER_PROCESS {
            let api = api.clone();
            tasks.push(tokio::spawn(async move {
                for b in 0..BATCHES {
                    // Shared nodes are upserted by everyone (same content: one event in all); own nodes are new.
                    let mut ops = vec![json!({"op": "upsert_node", "node": node("shared", "module")})];
                    for i in 0..PER_BATCH {
                        let id = format!("p{p}-w{w}-b{b}-{i}");
                        ops.push(json!({"op": "upsert_node", "node": node(&id, "function")}));
                        ops.push(json!({"op": "upsert_relationship", "relationship": {"type": "contains", "source": "shared", "target": id}}));
                    }
                    let (status, body) = api.post("/api/graph/batch?project=race", json!({"operations": ops})).await;
                    assert_eq!(status, 200, "{body}");
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let own = PROCESSES * WRITERS_PER_PROCESS * BATCHES * PER_BATCH;
    let (_, stats) = apis[0].get("/api/graph/stats?project=race").await;
    assert_eq!(stats["nodes"], own + 1);
    assert_eq!(stats["relationships"], own);
    let events = stream_events(&redis, "race");
    assert_eq!(events.len(), 2 * own + 1, "one change per change, none for unchanged upserts");
    assert!(events.windows(2).all(|w| (w[0].id, w[0].index) < (w[1].id, w[1].index)), "entries and indexes grow");
}
