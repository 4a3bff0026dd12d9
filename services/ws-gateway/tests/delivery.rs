//! Live delivery: every mutation reaches `/ws/events` in stream order as the exact envelope; `/ws/events/filtered`
//! applies its filter (and a changed filter) to what it sends.

mod common;

use codegraph_shared::testing::RedisServer;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_arrives_in_order_as_the_envelope() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let mut a = connect(&gw.ws("/ws/events?project=alpha")).await;
    let mut b = connect(&gw.ws("/ws/events?project=alpha,beta")).await;
    assert_eq!(wait_for_type(&mut a, "subscribed").await["filter"]["projects"], json!(["alpha"]));
    wait_for_type(&mut b, "subscribed").await;

    let mut alpha = Writer::new(&redis.url(), "alpha").await;
    let mut beta = Writer::new(&redis.url(), "beta").await;
    let mut written = Vec::new();
    for i in 0..300u64 {
        written.push(alpha.upsert(&format!("n{}", i % 50), i).await.unwrap());
        if i.is_multiple_of(3) {
            beta.upsert("b", i).await.unwrap();
        }
    }
    alpha.delete_node("n0").await;

    let got = read_events(&mut a, 301).await;
    let ids: Vec<_> = got.iter().map(event_id).collect();
    assert_eq!(ids[..300], written[..], "every event, in stream order");
    assert_eq!(got[300]["type"], "node_deleted");
    assert_eq!(got[0]["type"], "node_added");
    assert_eq!(got[60]["type"], "node_updated");
    assert_eq!(got[0]["project"], "alpha");
    assert_eq!(got[0]["entity"], json!({"kind": "node", "id": "n0"}));
    assert_eq!(got[0]["data"]["properties"]["n"], 0);
    assert!(got[0]["ts"].as_str().unwrap().ends_with('Z'));

    // The envelope is byte for byte what the stream holds (with its id).
    let stream = stream_ids(&redis.url(), "alpha").await;
    assert_eq!(stream, ids);

    // Two projects on one connection: each in its own order, all of both.
    let both = read_events(&mut b, 301 + 100).await;
    let alpha_ids: Vec<_> = both.iter().filter(|e| e["project"] == "alpha").map(event_id).collect();
    let beta_ids: Vec<_> = both.iter().filter(|e| e["project"] == "beta").map(event_id).collect();
    assert_eq!(alpha_ids, ids);
    assert_eq!(beta_ids, stream_ids(&redis.url(), "beta").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_and_can_change() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let mut ws = connect(&gw.ws("/ws/events/filtered")).await;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "filter": {"projects": ["p"], "event_types": ["node_added"], "node_ids": ["keep"]}}),
    )
    .await;
    let ack = wait_for_type(&mut ws, "subscribed").await;
    assert_eq!(ack["filter"]["event_types"], json!(["node_added"]));

    let mut w = Writer::new(&redis.url(), "p").await;
    let mut other = Writer::new(&redis.url(), "q").await;
    w.upsert("drop", 1).await.unwrap(); // another node
    other.upsert("keep", 1).await.unwrap(); // another project
    let kept = w.upsert("keep", 1).await.unwrap(); // node_added of "keep": passes
    w.upsert("keep", 2).await.unwrap(); // node_updated: filtered out
    let first = read_events(&mut ws, 1).await;
    assert_eq!(event_id(&first[0]), kept);
    // A bad filter is refused and the old one stays.
    send_json(&mut ws, json!({"type": "subscribe", "filter": {"event_types": ["node_exploded"]}})).await;
    let err = next_json(&mut ws).await;
    assert_eq!((err["type"].as_str(), err["code"].as_str()), (Some("error"), Some("bad_filter")), "{err}");
    w.upsert("keep", 5).await.unwrap(); // still filtered out (an update)

    // Change the filter: now updates of any node of project q, and nothing of p.
    send_json(&mut ws, json!({"type": "subscribe", "filter": {"projects": ["q"], "event_types": ["node_updated"]}}))
        .await;
    wait_for_type(&mut ws, "subscribed").await;
    w.upsert("keep", 3).await.unwrap();
    let q_update = other.upsert("keep", 2).await.unwrap();
    other.upsert("fresh", 1).await.unwrap(); // node_added: filtered out
    let q_update2 = other.upsert("fresh", 2).await.unwrap();
    let next_two = read_events(&mut ws, 2).await;
    assert_eq!(next_two.iter().map(event_id).collect::<Vec<_>>(), [q_update, q_update2]);
    assert!(next_two.iter().all(|e| e["project"] == "q" && e["type"] == "node_updated"));

    // Entity kinds: job events only (analysis progress goes through `emit`).
    send_json(&mut ws, json!({"type": "subscribe", "filter": {"projects": ["q"], "entity_kinds": ["job"]}})).await;
    wait_for_type(&mut ws, "subscribed").await;
    other.upsert("fresh", 3).await.unwrap();
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let job = codegraph_shared::functions::GraphWriter::new(
        codegraph_shared::names::RedisNames::new(&project("q")),
        0,
        codegraph_shared::functions::PublishMode::Classic,
    )
    .emit(&mut conn, codegraph_shared::event::EventType::AnalysisProgress, "job", "j1", &json!({"done": 1}), None)
    .await
    .unwrap();
    let job_event = read_events(&mut ws, 1).await;
    assert_eq!(job_event[0]["id"], job.as_str());
    assert_eq!(job_event[0]["type"], "analysis_progress");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_resume_replays_through_the_filter() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let mut w = Writer::new(&redis.url(), "p").await;
    let start = w.upsert("a", 0).await.unwrap();
    let mut expected = Vec::new();
    for i in 1..=40u64 {
        let id = w.upsert(if i.is_multiple_of(2) { "a" } else { "b" }, i).await.unwrap();
        if i.is_multiple_of(2) {
            expected.push(id);
        }
    }
    let mut ws = connect(&gw.ws("/ws/events/filtered")).await;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "filter": {"projects": ["p"], "node_ids": ["a"]}, "since": {"p": start.to_string()}}),
    )
    .await;
    let got = read_events(&mut ws, expected.len()).await;
    assert_eq!(got.iter().map(event_id).collect::<Vec<_>>(), expected);
    let live = w.upsert("a", 99).await.unwrap();
    w.upsert("b", 99).await.unwrap();
    assert_eq!(event_id(&read_events(&mut ws, 1).await[0]), live);
}
