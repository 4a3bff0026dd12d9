//! Resume: a client that comes back with `since` (an entry id; or sends `resume`) gets every entry after it exactly
//! once, as one frame each, and continues live; a position the stream no longer holds gets `resync_required` and
//! 4009, never a silent gap. Streams hold change sets and, from before change sets, per-entity entries: both are
//! replayed.

mod common;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use codegraph_shared::{
    event::StreamId,
    testing::{RedisCluster, RedisServer},
};
use common::*;
use serde_json::json;

/// Writes a change set of one to four changes every millisecond or so until told to stop; returns how many
/// changes it wrote.
fn steady_writer(url: String, project: &'static str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut w = Writer::new(&url, project).await;
        let (mut n, mut changes) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let ops: Vec<_> = (0..=n % 4).map(|k| upsert_node(&format!("n{}-{k}", n % 5), n)).collect();
            w.mutate_all(&ops).await.unwrap();
            changes += ops.len() as u64;
            n += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        changes
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_mid_stream_of_change_sets_delivers_each_entry_once() {
    let redis = RedisServer::start();
    reconnecting_mid_stream(redis.url()).await;
}

/// The same on a Redis Cluster: the project's stream and sharded channel live on one of three shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_mid_stream_of_change_sets_delivers_each_entry_once_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 1);
    reconnecting_mid_stream(cluster_target(&cluster.seeds())).await;
}

async fn reconnecting_mid_stream(redis_url: String) {
    let gw = GatewayProcess::ready(&redis_url, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(redis_url.clone(), "p", stop.clone());

    let mut seen: Vec<StreamId> = Vec::new();
    let mut changes_seen = 0;
    // Three sessions: each reads a while, disconnects, writes go on, the next resumes from the last id seen.
    for round in 0..3 {
        let url = match seen.last() {
            None => gw.ws("/ws/events?project=p&since=0-0"),
            Some(last) => gw.ws(&format!("/ws/events?project=p&since={last}")),
        };
        let mut ws = connect(&url).await;
        for frame in read_events(&mut ws, 150).await {
            seen.push(event_id(&frame));
            changes_seen += changes(&frame).len() as u64;
        }
        drop(ws);
        // Let mutations pile up while nobody listens.
        tokio::time::sleep(Duration::from_millis(50 * (round + 1))).await;
    }
    stop.store(true, Ordering::Relaxed);
    let changes_written = writer.await.unwrap();
    // The last session picks up the rest after the writes stopped.
    let stream = stream_ids(&redis_url, "p").await;
    let mut ws = connect(&gw.ws(&format!("/ws/events?project=p&since={}", seen.last().unwrap()))).await;
    let rest = stream.len() - seen.len();
    for frame in read_events(&mut ws, rest).await {
        seen.push(event_id(&frame));
        changes_seen += changes(&frame).len() as u64;
    }
    assert_eq!(seen, stream, "every entry once, in order, across three reconnects");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
    assert_eq!(changes_seen, changes_written, "every change of every set");
    assert!(changes_written > stream.len() as u64, "the sets held several changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_form_entry_in_the_stream_is_delivered_on_catch_up() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let mut w = Writer::new(&redis.url(), "p").await;
    let before = w.mutate_all(&[upsert_node("a", 1), upsert_node("b", 1)]).await.unwrap();
    let old = append_old_form(&redis.url(), "p", "legacy").await;
    let after =
        w.mutate_all(&[upsert_node("legacy", 2), upsert_relationship("a-legacy", "a", "legacy")]).await.unwrap();

    let mut ws = connect(&gw.ws("/ws/events?project=p&since=0")).await;
    let got = read_events(&mut ws, 3).await;
    assert_eq!(got.iter().map(event_id).collect::<Vec<_>>(), [before, old, after]);
    assert_eq!(got[1]["type"], "node_added", "the old entry goes out in its own form");
    assert_eq!(got[1]["entity"]["id"], "legacy");
    assert_eq!((got[0]["type"].as_str(), got[2]["type"].as_str()), (Some("change_set"), Some("change_set")));

    // Through a filter, the old entry is a set of one: sent whole when it matches, like the matching changes.
    let mut ws = connect(&gw.ws("/ws/events/filtered")).await;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "filter": {"projects": ["p"], "node_ids": ["legacy"]}, "since": {"p": "0"}}),
    )
    .await;
    let got = read_events(&mut ws, 2).await;
    assert_eq!(got.iter().map(event_id).collect::<Vec<_>>(), [old, after]);
    assert_eq!((got[0]["type"].as_str(), got[0].get("index")), (Some("node_added"), None));
    assert_eq!(got[1]["changes"].as_array().unwrap().len(), 2, "both changes of the last set touch the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seam_between_replay_and_live_has_no_gap_or_duplicate() {
    let redis = RedisServer::start();
    // A small replay page and outbox make the replay take many rounds while live events pour in.
    let gw = GatewayProcess::ready(
        &redis.url(),
        &[("CODEGRAPH__GATEWAY__REPLAY_PAGE", "7"), ("CODEGRAPH__GATEWAY__OUTBOX_MAX_BYTES", "4096")],
    )
    .await;
    let mut w = Writer::new(&redis.url(), "p").await;
    for i in 0..500 {
        let ops: Vec<_> = (0..=i % 3).map(|k| upsert_node(&format!("n{}-{k}", i % 20), i)).collect();
        w.mutate_all(&ops).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(redis.url(), "p", stop.clone());
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(connect(&gw.ws("/ws/events?project=p&since=0")).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let stream = stream_ids(&redis.url(), "p").await;
    for mut ws in clients {
        let got: Vec<StreamId> = read_events(&mut ws, stream.len()).await.iter().map(event_id).collect();
        assert_eq!(got, stream);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_message_replays_on_an_open_connection() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let mut w = Writer::new(&redis.url(), "p").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(w.upsert("a", i).await.unwrap());
    }
    let mut ws = connect(&gw.ws("/ws/events?project=p")).await;
    wait_for_type(&mut ws, "subscribed").await;
    send_json(&mut ws, json!({"type": "resume", "since": {"p": ids[4].to_string()}})).await;
    let got: Vec<StreamId> = read_events(&mut ws, 5).await.iter().map(event_id).collect();
    assert_eq!(got, ids[5..]);
    let live = w.upsert("a", 100).await.unwrap();
    assert_eq!(event_id(&read_events(&mut ws, 1).await[0]), live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_the_stream_no_longer_holds_means_resync() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    // MAXLEN ~ 10: Redis trims whole nodes of 100 entries, so after 1,000 events the first ones are gone.
    let mut w = Writer::with_max_len(&redis.url(), "p", 10).await;
    let first = w.upsert("a", 0).await.unwrap();
    for i in 1..1000 {
        w.upsert("a", i).await.unwrap();
    }
    let stream = stream_ids(&redis.url(), "p").await;
    assert!(stream[0] > first.successor(), "the stream was trimmed");

    let mut ws = connect(&gw.ws(&format!("/ws/events?project=p&since={first}"))).await;
    let msg = wait_for_type(&mut ws, "resync_required").await;
    assert_eq!(msg["project"], "p");
    assert_eq!(msg["since"], first.to_string());
    assert_eq!(msg["oldest"], stream[0].to_string());
    assert_eq!(wait_close(&mut ws).await, Some(4009));

    // A retained position is fine on the same stream.
    let mut ws = connect(&gw.ws(&format!("/ws/events?project=p&since={}", stream[stream.len() - 3]))).await;
    let got: Vec<StreamId> = read_events(&mut ws, 2).await.iter().map(event_id).collect();
    assert_eq!(got, stream[stream.len() - 2..]);

    // An id from the future (another stream's, e.g. before Redis lost its data) is not silently accepted.
    let future = StreamId::new(stream.last().unwrap().ms + 3_600_000, 0);
    let mut ws = connect(&gw.ws(&format!("/ws/events?project=p&since={future}"))).await;
    let msg = wait_for_type(&mut ws, "resync_required").await;
    assert_eq!(msg["oldest"], serde_json::Value::Null);
    assert_eq!(wait_close(&mut ws).await, Some(4009));
}
