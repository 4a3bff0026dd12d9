//! Lifecycle: health, readiness that follows Redis, the status document and its push endpoint, metrics,
//! protocol keep-alive that drops silent clients, and the graceful drain on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use codegraph_shared::testing::RedisServer;
use common::*;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_status_and_metrics() {
    let mut redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[("CODEGRAPH__GATEWAY__STATUS_INTERVAL_MS", "200")]).await;
    let health: serde_json::Value = reqwest::get(gw.http("/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");

    let mut ws = connect(&gw.ws("/ws/events?project=p")).await;
    wait_for_type(&mut ws, "subscribed").await;
    let mut w = Writer::new(&redis.url(), "p").await;
    for i in 0..20 {
        w.upsert("a", i).await.unwrap();
    }
    w.mutate_all(&[upsert_node("b", 1), upsert_node("c", 1), upsert_relationship("b-c", "b", "c")]).await.unwrap();
    read_events(&mut ws, 21).await;
    // The counters move once the frames are written; wait for them, then check frames and changes apart.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = gw.status().await["events"].clone();
        if events["changes_sent_total"] == 23 {
            assert_eq!(events["sent_total"], 21, "one frame per entry: {events}");
            assert_eq!(events["received_total"], 21, "{events}");
            break;
        }
        assert!(Instant::now() < deadline, "changes never counted: {events}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut status_ws = connect(&gw.ws("/ws/status")).await;
    let pushed = wait_for_type(&mut status_ws, "status").await;
    let s = &pushed["status"];
    assert_eq!(s["clients"]["connected"], 2, "{s}");
    assert_eq!(s["clients"]["by_endpoint"]["events"], 1);
    assert_eq!(s["redis"]["connected"], true);
    assert_eq!(s["redis"]["subscribed_projects"], 1);
    assert!(s["events"]["sent_total"].as_u64().unwrap() >= 20);
    assert!(s["latency_ms"]["count"].as_u64().unwrap() >= 20);
    assert!(s["queues"]["fullest"].is_array());
    // Pushed again a moment later.
    wait_for_type(&mut status_ws, "status").await;

    let status = gw.status().await;
    assert_eq!(status["service"], "ws-gateway");
    assert!(status["events"]["received_total"].as_u64().unwrap() >= 20);

    let metrics = reqwest::get(gw.http("/metrics")).await.unwrap().text().await.unwrap();
    for name in [
        "codegraph_ws_frames_sent_total 21",
        "codegraph_ws_changes_sent_total 23",
        "codegraph_ws_events_received_total 21",
        "codegraph_ws_connections",
        "codegraph_ws_publish_to_send_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // Readiness follows the Pub/Sub connection.
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = reqwest::get(gw.http("/ready")).await.unwrap();
        if r.status() == 503 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unavailable");
            break;
        }
        assert!(Instant::now() < deadline, "still ready with Redis down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reqwest::get(gw.http("/health")).await.unwrap().status(), 200);
    redis.restart();
    gw.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_answering_pings_are_dropped() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(
        &redis.url(),
        &[("CODEGRAPH__GATEWAY__PING_INTERVAL_MS", "300"), ("CODEGRAPH__GATEWAY__PONG_TIMEOUT_MS", "1000")],
    )
    .await;
    // This client reads (and so answers pings, which tungstenite does as it reads).
    let mut alive = connect(&gw.ws("/ws/events?project=p")).await;
    // This one never reads again after the handshake: it answers no ping.
    let _silent = connect(&gw.ws("/ws/events?project=p")).await;
    let reader = tokio::spawn(async move {
        let read = async {
            loop {
                match alive.next().await {
                    Some(Ok(_)) => continue,
                    other => return format!("{other:?}"),
                }
            }
        };
        if let Ok(end) = tokio::time::timeout(Duration::from_millis(2500), read).await {
            panic!("the answering client was dropped: {end}");
        }
        alive
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = gw.status().await;
        if status["clients"]["connected"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the silent client was never dropped: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _alive = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
    assert_eq!(gw.status().await["clients"]["connected"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_with_1012_spread_over_the_window() {
    let redis = RedisServer::start();
    let mut gw = GatewayProcess::ready(&redis.url(), &[("CODEGRAPH__GATEWAY__DRAIN_WINDOW_MS", "1500")]).await;
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let mut ws = connect(&gw.ws("/ws/events?project=p")).await;
        wait_for_type(&mut ws, "subscribed").await;
        tasks.push(tokio::spawn(async move {
            let code = wait_close(&mut ws).await;
            (code, Instant::now())
        }));
    }
    let start = Instant::now();
    let (status, took) = tokio::task::spawn_blocking(move || {
        let r = gw.terminate(Duration::from_secs(15));
        drop(gw);
        r
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");
    let mut times = Vec::new();
    for t in tasks {
        let (code, at) = t.await.unwrap();
        assert_eq!(code, Some(1012));
        times.push(at.duration_since(start));
    }
    times.sort();
    let spread = times[times.len() - 1] - times[0];
    assert!(spread >= Duration::from_millis(900), "closes spread over {spread:?}, not the 1.5 s window");
    assert!(took < Duration::from_secs(8), "exit took {took:?}");
}
