//! Bad input gets a clear answer and changes nothing: garbage and unknown messages get an `error` message,
//! protocol violations a 44xx close, and the connection (or the gateway) keeps working for everyone else.

mod common;

use codegraph_shared::testing::RedisServer;
use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn refused_with(url: &str, headers: &[(&str, &str)]) -> (Option<u16>, String) {
    let mut ws = connect_with(url, headers).await.expect("the upgrade is accepted, to carry the close code");
    match next(&mut ws, std::time::Duration::from_secs(10)).await {
        Incoming::Closed(code, reason) => (code, reason),
        Incoming::Json(v) => panic!("expected a close, got {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unknown_messages_get_errors_and_the_feed_goes_on() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let mut ws = connect(&gw.ws("/ws/events?project=p")).await;
    wait_for_type(&mut ws, "subscribed").await;
    for (text, code) in [
        ("{not json", "invalid_json"),
        ("\u{0}\u{1}garbage", "invalid_json"),
        ("[1,2,3]", "invalid_message"),
        (r#"{"kind":"ping"}"#, "invalid_message"),
        (r#"{"type":"shout"}"#, "unknown_type"),
        (r#"{"type":"resume","since":{"p":"yesterday"}}"#, "invalid_since"),
        (r#"{"type":"resume","since":{"p":"-1"}}"#, "invalid_since"),
        (r#"{"type":"resume","since":{"other":"1-0"}}"#, "not_subscribed"),
        (r#"{"type":"resume","since":{"a b":"1-0"}}"#, "invalid_since"),
        (r#"{"type":"resume","since":"1-0"}"#, "invalid_since"),
        (r#"{"type":"subscribe","filter":{}}"#, "unsupported"),
    ] {
        ws.send(Message::text(text)).await.unwrap();
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{text}: {reply}");
        assert_eq!(reply["code"], code, "{text}: {reply}");
    }
    send_json(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));
    let id = Writer::new(&redis.url(), "p").await.upsert("a", 1).await.unwrap();
    assert_eq!(event_id(&read_events(&mut ws, 1).await[0]), id, "still subscribed after the errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_with_44xx() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[("CODEGRAPH__GATEWAY__MAX_MESSAGE_BYTES", "1024")]).await;

    // Bad query: unknown since, bad project names.
    for q in ["since=abc", "since=1-2-3", "since=", "project=a%20b", "project=", "project=ok,no{pe}"] {
        let (code, reason) = refused_with(&gw.ws(&format!("/ws/events?{q}")), &[]).await;
        assert_eq!(code, Some(4400), "{q}: {reason}");
        assert!(!reason.is_empty());
    }

    // Oversized message: 4413.
    let mut ws = connect(&gw.ws("/ws/events?project=p")).await;
    ws.send(Message::text(format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000)))).await.unwrap();
    assert_eq!(wait_close(&mut ws).await, Some(4413));

    // Binary frames: 4400.
    let mut ws = connect(&gw.ws("/ws/events?project=p")).await;
    ws.send(Message::binary(vec![0u8, 159, 146, 150])).await.unwrap();
    assert_eq!(wait_close(&mut ws).await, Some(4400));

    // Endless garbage: after 20 errors, 4400.
    let mut ws = connect(&gw.ws("/ws/events/filtered")).await;
    for _ in 0..25 {
        if ws.send(Message::text("garbage")).await.is_err() {
            break;
        }
    }
    assert_eq!(wait_close(&mut ws).await, Some(4400));

    // The gateway still serves everyone else.
    let mut ws = connect(&gw.ws("/ws/events?project=p")).await;
    wait_for_type(&mut ws, "subscribed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_are_refused_and_the_old_filter_stays() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let mut ws = connect(&gw.ws("/ws/events/filtered")).await;
    send_json(&mut ws, json!({"type": "subscribe", "filter": {"projects": ["p"], "entity_kinds": ["node"]}})).await;
    wait_for_type(&mut ws, "subscribed").await;
    for filter in [
        json!({"projects": []}),
        json!({"projects": ["bad name"]}),
        json!({"projects": "p"}),
        json!({"event_types": ["node_exploded"]}),
        json!({"event_types": "node_added"}),
        json!({"entity_kinds": [""]}),
        json!({"node_ids": [42]}),
        json!({"colour": "blue"}),
        json!("everything"),
    ] {
        send_json(&mut ws, json!({"type": "subscribe", "filter": filter})).await;
        let reply = next_json(&mut ws).await;
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("bad_filter")), "{filter}");
    }
    send_json(&mut ws, json!({"type": "subscribe", "filter": {"projects": ["p"]}, "since": {"q": "1-0"}})).await;
    assert_eq!(next_json(&mut ws).await["code"], "not_subscribed");
    send_json(&mut ws, json!({"type": "subscribe", "filter": {"projects": ["p"]}, "since": {"p": "x"}})).await;
    assert_eq!(next_json(&mut ws).await["code"], "invalid_since");
    let id = Writer::new(&redis.url(), "p").await.upsert("a", 1).await.unwrap();
    assert_eq!(event_id(&read_events(&mut ws, 1).await[0]), id, "the old filter still applies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_origins_and_the_connection_limit() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(
        &redis.url(),
        &[
            ("CODEGRAPH__GATEWAY__TOKENS", "alpha-token,beta-token"),
            ("CODEGRAPH__GATEWAY__ALLOWED_ORIGINS", "http://127.0.0.1:8080"),
            ("CODEGRAPH__GATEWAY__MAX_CONNECTIONS", "3"),
        ],
    )
    .await;
    let base = gw.ws("/ws/events?project=p");
    assert_eq!(refused_with(&base, &[]).await.0, Some(4401), "no token");
    assert_eq!(refused_with(&format!("{base}&token=wrong"), &[]).await.0, Some(4401));
    assert_eq!(refused_with(&format!("{base}&token=alpha-toke"), &[]).await.0, Some(4401));
    assert_eq!(refused_with(&base, &[("authorization", "Bearer nope")]).await.0, Some(4401));
    assert_eq!(refused_with(&base, &[("authorization", "Basic alpha-token")]).await.0, Some(4401));
    assert_eq!(refused_with(&gw.ws("/ws/status?token=x"), &[]).await.0, Some(4401));
    assert_eq!(refused_with(&gw.ws("/ws/events/filtered"), &[]).await.0, Some(4401));
    let evil = [("origin", "http://evil.example")];
    assert_eq!(refused_with(&format!("{base}&token=alpha-token"), &evil).await.0, Some(4403));

    let mut by_query = connect(&format!("{base}&token=beta-token")).await;
    wait_for_type(&mut by_query, "subscribed").await;
    let mut by_header =
        connect_with(&base, &[("authorization", "Bearer alpha-token"), ("origin", "http://127.0.0.1:8080")])
            .await
            .unwrap();
    wait_for_type(&mut by_header, "subscribed").await;
    let mut third = connect(&format!("{base}&token=beta-token")).await;
    wait_for_type(&mut third, "subscribed").await;
    // A fourth connection is over the limit: refused before the upgrade.
    let err = connect_with(&format!("{base}&token=beta-token"), &[]).await.unwrap_err();
    assert!(err.contains("503"), "{err}");
    drop(third);
    // The slot comes back once the session has ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match connect_with(&format!("{base}&token=beta-token"), &[]).await {
            Ok(_) => break,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "slot never freed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}
