//! The total outbox budget: slow clients that do not read, each well within its own outbox limit, together pass
//! the gateway's budget; the ones holding the most are closed with 4008 (the close reason says why) instead of
//! the process holding ever more, and a client that keeps up is not touched.

mod common;

use std::time::{Duration, Instant};

use codegraph_shared::testing::RedisServer;
use common::*;
use serde_json::Value;

const BUDGET: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_past_the_total_budget_are_cut_with_4008_and_the_fast_one_stays() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(
        &redis.url(),
        &[
            // Each slow client could hold 64 MiB by itself: only the total budget can stop them.
            ("CODEGRAPH__GATEWAY__OUTBOX_MAX_BYTES", "67108864"),
            ("CODEGRAPH__GATEWAY__TOTAL_OUTBOX_MAX_BYTES", &BUDGET.to_string()),
        ],
    )
    .await;

    // Four clients that read nothing after their subscription.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut ws = connect(&gw.ws("/ws/events?project=p")).await;
        wait_for_type(&mut ws, "subscribed").await;
        slow.push(ws);
    }
    // One that reads everything until the "wake" node.
    let mut fast = connect(&gw.ws("/ws/events?project=p")).await;
    wait_for_type(&mut fast, "subscribed").await;
    let fast = tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            match next(&mut fast, Duration::from_secs(30)).await {
                Incoming::Json(v) if is_event(&v) => {
                    n += 1;
                    if only_change(&v)["entity"]["id"] == "wake" {
                        return n;
                    }
                }
                Incoming::Json(_) => {}
                Incoming::Closed(code, reason) => panic!("the fast client was closed: {code:?} {reason}"),
            }
        }
    });

    // 16 KiB entries until the gateway has cut every slow client for the budget (or 60 s pass); the bytes it
    // holds for its clients never pass the budget by more than one round of frames.
    let mut w = Writer::new(&redis.url(), "p").await;
    let pad = Value::String("x".repeat(16 * 1024));
    let start = Instant::now();
    let mut written = 0u64;
    let mut most_held = 0u64;
    loop {
        w.upsert_with(&format!("n{}", written % 10), written, &[("pad", pad.clone())]).await.unwrap();
        written += 1;
        if written.is_multiple_of(10) {
            let status = gw.status().await;
            most_held = most_held.max(status["queues"]["budget"]["held_bytes"].as_u64().unwrap());
            assert_eq!(status["queues"]["budget"]["limit_bytes"], BUDGET);
            if status["clients"]["closed_over_budget_total"] == 4 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "the slow clients were not all cut: {status}");
        }
    }
    assert!(most_held <= BUDGET + 5 * 17 * 1024, "held {most_held} bytes against a budget of {BUDGET}");
    assert!(most_held > BUDGET / 2, "the budget was really under pressure ({most_held} bytes held)");

    // Each slow client reads what reached it, then a 4008 close that names the budget.
    for mut ws in slow {
        let (code, reason) = loop {
            match next(&mut ws, Duration::from_secs(20)).await {
                Incoming::Json(_) => {}
                Incoming::Closed(code, reason) => break (code, reason),
            }
        };
        assert_eq!(code, Some(4008), "{reason}");
        assert!(reason.contains("memory budget"), "the close reason says why: {reason}");
    }

    // The fast client was never cut and got every entry.
    w.upsert("wake", 0).await.unwrap();
    assert_eq!(fast.await.unwrap(), stream_ids(&redis.url(), "p").await.len());
    let status = gw.status().await;
    assert_eq!(status["clients"]["closed_too_slow_total"], 0, "no client reached its own outbox limit");
    let metrics = reqwest::get(gw.http("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("codegraph_ws_budget_clients_closed_total 4"), "{metrics}");
}
