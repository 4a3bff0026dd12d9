//! One trace across the services: the HTTP mutation in graph-api (with its Redis Function call), the
//! gateway's delivery of the event and the sink's commit all export spans under the caller's trace id.

use std::time::Duration;

use codegraph_shared::{
    event::{ChangeSet, STREAM_FIELD},
    testing::{start_falkordb, OtlpReceiver, RedisServer},
};
use futures_util::StreamExt;
use serde_json::json;
use system_tests::{fixture_repo, Service};

#[tokio::test]
async fn one_mutation_is_one_trace_across_graph_api_gateway_and_sink() {
    let redis = RedisServer::start();
    let falkor = start_falkordb(&[]);
    let otlp = OtlpReceiver::start().await;
    let url = redis.url();
    let telemetry =
        [("CODEGRAPH__TELEMETRY__OTLP_ENDPOINT", otlp.endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let api = Service::start("graph-api", &url, &telemetry).await;
    let gateway = Service::start("ws-gateway", &url, &telemetry).await;
    let falkor_url = falkor.url();
    let mut consumer_env = telemetry.to_vec();
    consumer_env.push(("CODEGRAPH__SINKS__FALKORDB__URL", falkor_url.as_str()));
    let _consumer = Service::start("stream-consumer", &url, &consumer_env).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(gateway.ws_url("/ws/events?project=traced")).await.unwrap();
    // The gateway says when its subscription is live; events published after that reach this client.
    let subscribed = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert!(subscribed.to_text().unwrap().contains(r#""type":"subscribed""#), "{subscribed}");
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let resp = reqwest::Client::new()
        .post(api.url("/api/graph/nodes?project=traced"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&json!({"id": "n1", "kind": "function", "name": "n1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let delivered = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    // The node's change set carries the trace once, for all its changes.
    let set = ChangeSet::from_json(delivered.to_text().unwrap()).unwrap();
    assert!(!set.single && set.traceparent().is_some_and(|tp| tp.contains(trace_id)), "{delivered}");

    otlp.wait_for(
        Duration::from_secs(20),
        "spans of graph-api, ws-gateway and stream-consumer in one trace",
        |spans| {
            ["graph-api", "ws-gateway", "stream-consumer"]
                .iter()
                .all(|service| spans.iter().any(|s| s.service == *service && s.trace_id == trace_id))
        },
    )
    .await;
}

#[tokio::test]
async fn an_analysis_job_continues_the_trace_of_the_request_that_queued_it() {
    let redis = RedisServer::start();
    let otlp = OtlpReceiver::start().await;
    let repo = fixture_repo();
    let root = repo.path().to_string_lossy().into_owned();
    let url = redis.url();
    let telemetry =
        [("CODEGRAPH__TELEMETRY__OTLP_ENDPOINT", otlp.endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let api = Service::start("graph-api", &url, &telemetry).await;
    let mut worker_env = telemetry.to_vec();
    worker_env.push(("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS", root.as_str()));
    let _worker = Service::start("analysis-worker", &url, &worker_env).await;

    let trace_id = "5b8efff798038103d269b633813fc60c";
    let resp = reqwest::Client::new()
        .post(api.url("/api/graph/admin/reanalyze?project=jobs"))
        .header("traceparent", format!("00-{trace_id}-eee19b7ec3c1b174-01"))
        .json(&json!({"path": root, "mode": "full"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    otlp.wait_for(Duration::from_secs(30), "the worker's job span in the request's trace", |spans| {
        spans.iter().any(|s| s.service == "analysis-worker" && s.name == "analysis_job" && s.trace_id == trace_id)
    })
    .await;
    // Every change set the job wrote carries the same trace, once for all its changes.
    let stream: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg("code_graph:{jobs}:cdc").arg("-").arg("+").query(&mut redis.connection()).unwrap();
    let sets: Vec<ChangeSet> = stream
        .ids
        .iter()
        .map(|e| ChangeSet::from_stream_entry(&e.id, &e.get::<String>(STREAM_FIELD).expect("an envelope")).unwrap())
        .filter(|set| !set.single)
        .collect();
    let changes: usize = sets.iter().map(|set| set.changes.len()).sum();
    assert!(changes > 3, "the job wrote {changes} graph changes in {} change sets", sets.len());
    for set in &sets {
        let traceparent = set.traceparent().unwrap_or_default();
        assert!(traceparent.contains(trace_id), "change set {} carries {traceparent:?}, not the job's trace", set.id);
    }
}
