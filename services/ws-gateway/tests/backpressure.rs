//! Backpressure: a client that does not read is closed with 4008 once its outbox is full, without slowing the
//! clients that keep up; it then resumes from its last id and gets the rest.

mod common;

use std::time::{Duration, Instant};

use codegraph_shared::{event::StreamId, stream::now_ms, testing::RedisServer};
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_with_4008_and_the_fast_ones_stay_fast() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[("CODEGRAPH__GATEWAY__OUTBOX_MAX_BYTES", "262144")]).await;

    // The slow client connects and then reads nothing.
    let mut slow = connect(&gw.ws("/ws/events?project=p&since=0")).await;
    // Fast clients read everything up to the final "wake" event, noting each event's publish-to-receive latency
    // (ms resolution).
    let mut fast = Vec::new();
    for _ in 0..3 {
        let mut ws = connect(&gw.ws("/ws/events?project=p&since=0")).await;
        fast.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut latencies = Vec::new();
            loop {
                match next(&mut ws, Duration::from_secs(30)).await {
                    Incoming::Json(v) if is_event(&v) => {
                        let id = event_id(&v);
                        latencies.push(now_ms().saturating_sub(id.ms));
                        ids.push(id);
                        if only_change(&v)["entity"]["id"] == "wake" {
                            return (ids, latencies);
                        }
                    }
                    Incoming::Json(_) => {}
                    Incoming::Closed(code, reason) => panic!("fast client closed: {code:?} {reason}"),
                }
            }
        }));
    }

    // 16 KiB events, ~200 a second, until the gateway reports the slow client cut (or 30 s pass).
    let mut w = Writer::new(&redis.url(), "p").await;
    let pad = Value::String("x".repeat(16 * 1024));
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        w.upsert_with(&format!("n{}", n % 10), n, &[("pad", pad.clone())]).await.unwrap();
        n += 1;
        if n.is_multiple_of(20) {
            let status = gw.status().await;
            if status["clients"]["closed_too_slow_total"] == 1 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the slow client was never cut: {status}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A little more traffic after the cut, for the fast clients.
    for i in 0..50 {
        w.upsert_with(&format!("n{}", i % 10), n + i, &[("pad", pad.clone())]).await.unwrap();
    }

    // The slow client reads what reached it, in order, then the 4008 close.
    let mut got: Vec<StreamId> = Vec::new();
    let code = loop {
        match next(&mut slow, Duration::from_secs(15)).await {
            Incoming::Json(v) if is_event(&v) => got.push(event_id(&v)),
            Incoming::Json(_) => {}
            Incoming::Closed(code, _) => break code,
        }
    };
    assert_eq!(code, Some(4008), "cut as too slow after {} events", got.len());
    let stream = stream_ids(&redis.url(), "p").await;
    assert!(!got.is_empty() && got.len() < stream.len(), "{} of {}", got.len(), stream.len());
    assert_eq!(got, stream[..got.len()], "what it got is a gap-free prefix");

    // The fast clients got everything, quickly.
    w.upsert("wake", 0).await.unwrap();
    let stream = stream_ids(&redis.url(), "p").await;
    for f in fast {
        let (ids, mut latencies) = f.await.unwrap();
        assert_eq!(ids, stream, "a fast client got every event");
        latencies.sort_unstable();
        let p99 = latencies[latencies.len() * 99 / 100];
        assert!(p99 <= 500, "fast clients' p99 publish-to-receive latency {p99} ms while a client was slow");
    }

    // The cut client resumes from its last id and gets the rest.
    let mut again = connect(&gw.ws(&format!("/ws/events?project=p&since={}", got.last().unwrap()))).await;
    let rest: Vec<StreamId> = read_events(&mut again, stream.len() - got.len()).await.iter().map(event_id).collect();
    assert_eq!(rest, stream[got.len()..]);
}
