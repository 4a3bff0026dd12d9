//! Live delivery: every mutation call reaches `/ws/events` as one frame, in stream order, the exact envelope;
//! `/ws/events/filtered` applies its filter (and a changed filter) per change: a set partly filtered keeps the
//! matching changes with their indexes, a set filtered to nothing is not sent.

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

    // One call of three changes: one frame.
    let set = alpha
        .mutate_all(&[upsert_node("s1", 1), upsert_node("s2", 1), upsert_relationship("s1-s2", "s1", "s2")])
        .await
        .unwrap();

    let got = read_events(&mut a, 302).await;
    let ids: Vec<_> = got.iter().map(event_id).collect();
    assert_eq!(ids[..300], written[..], "every entry, in stream order");
    assert!(got.iter().all(|f| f["type"] == "change_set"), "graph changes come as change sets");
    assert_eq!(only_change(&got[300])["type"], "node_deleted");
    assert_eq!(only_change(&got[0])["type"], "node_added");
    assert_eq!(only_change(&got[60])["type"], "node_updated");
    assert_eq!(got[0]["project"], "alpha");
    assert_eq!(only_change(&got[0])["entity"], json!({"kind": "node", "id": "n0"}));
    assert_eq!(only_change(&got[0])["data"]["properties"]["n"], 0);
    assert!(got[0]["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(event_id(&got[301]), set);
    let kinds: Vec<_> = changes(&got[301]).iter().map(|c| (c["index"].clone(), c["type"].clone())).collect();
    assert_eq!(
        kinds,
        [(json!(0), json!("node_added")), (json!(1), json!("node_added")), (json!(2), json!("relationship_added"))]
    );
    assert!(got[301]["changes"][0].get("index").is_none(), "an unfiltered set is sent as published");

    // The envelope is byte for byte what the stream holds (with its id).
    let stream = stream_ids(&redis.url(), "alpha").await;
    assert_eq!(stream, ids);
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let key = codegraph_shared::names::RedisNames::new(&project("alpha")).cdc_stream();
    let entry: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(key).arg(set.to_string()).arg(set.to_string()).query_async(&mut conn).await.unwrap();
    let body: String = entry.ids[0].get(codegraph_shared::event::STREAM_FIELD).unwrap();
    let stored: serde_json::Value =
        serde_json::from_str(&codegraph_shared::event::splice_id(&set.to_string(), &body).unwrap()).unwrap();
    assert_eq!(stored, got[301]);

    // Two projects on one connection: each in its own order, all of both.
    let both = read_events(&mut b, 302 + 100).await;
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
    assert!(next_two.iter().all(|e| e["project"] == "q" && only_change(e)["type"] == "node_updated"));

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
    assert_eq!(job_event[0]["type"], "analysis_progress", "a single event goes out in its own form");
    assert_eq!(job_event[0]["entity"]["id"], "j1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_filtered_set_keeps_its_matching_changes_with_their_indexes() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let mut ws = connect(&gw.ws("/ws/events/filtered")).await;
    send_json(&mut ws, json!({"type": "subscribe", "filter": {"projects": ["p"], "node_ids": ["b"]}})).await;
    wait_for_type(&mut ws, "subscribed").await;
    let mut w = Writer::new(&redis.url(), "p").await;
    let set = w
        .mutate_all(&[
            upsert_node("a", 1),
            upsert_node("b", 1),
            upsert_node("c", 1),
            upsert_relationship("a-c", "a", "c"),
            upsert_relationship("c-b", "c", "b"),
        ])
        .await
        .unwrap();
    let frame = read_events(&mut ws, 1).await.remove(0);
    assert_eq!(event_id(&frame), set);
    assert_eq!((frame["project"].as_str(), frame["type"].as_str()), (Some("p"), Some("change_set")));
    assert!(frame["ts"].as_str().unwrap().ends_with('Z'));
    let kept: Vec<_> = frame["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["index"].as_u64().unwrap(), c["entity"]["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(kept, [(1, "b".to_owned()), (4, "c-b".to_owned())], "node b and the relationship to it, in order");
    assert_eq!(frame["changes"][1]["data"]["target"], "b");

    // A type filter over a set: only the relationship changes of the next call, by their positions.
    send_json(
        &mut ws,
        json!({"type": "subscribe", "filter": {"projects": ["p"], "event_types": ["relationship_added"]}}),
    )
    .await;
    wait_for_type(&mut ws, "subscribed").await;
    let set =
        w.mutate_all(&[upsert_node("d", 1), upsert_relationship("d-a", "d", "a"), upsert_node("e", 1)]).await.unwrap();
    let frame = read_events(&mut ws, 1).await.remove(0);
    assert_eq!(event_id(&frame), set);
    let kept: Vec<_> = changes(&frame).iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(kept, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_filtered_to_nothing_is_not_sent_and_the_next_match_is() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let mut ws = connect(&gw.ws("/ws/events/filtered")).await;
    send_json(&mut ws, json!({"type": "subscribe", "filter": {"projects": ["p"], "node_ids": ["wanted"]}})).await;
    wait_for_type(&mut ws, "subscribed").await;
    let mut w = Writer::new(&redis.url(), "p").await;
    w.mutate_all(&[upsert_node("x", 1), upsert_node("y", 1), upsert_relationship("x-y", "x", "y")]).await.unwrap();
    let matching = w.mutate_all(&[upsert_node("wanted", 1), upsert_node("z", 1)]).await.unwrap();
    // The first frame to arrive is the matching set's: nothing was sent for the one before it.
    let frame = read_events(&mut ws, 1).await.remove(0);
    assert_eq!(event_id(&frame), matching);
    let kept: Vec<_> = changes(&frame).iter().map(|c| (c["index"].clone(), c["entity"]["id"].clone())).collect();
    assert_eq!(kept, [(json!(0), json!("wanted"))]);
    // And nothing else is queued behind it.
    send_json(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));
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
