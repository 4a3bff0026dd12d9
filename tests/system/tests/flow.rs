//! The whole system at once: an analysis job queued through graph-api is run by the analysis-worker, its
//! events reach a browser-like WebSocket client through ws-gateway in stream order (one frame per stream entry:
//! a change set for graph changes, a single event for job events), the stream-consumer makes FalkorDB equal to
//! the graph in Redis, and every service's `/metrics` is valid Prometheus text that moves. Once on a single Redis,
//! once on a Redis Cluster (3 primaries, 3 replicas: sharded Pub/Sub, the project's keys on one shard, the job
//! queue and registry on others).

use std::time::{Duration, Instant};

use codegraph_shared::{
    event::{decode_entry, decode_published, CdcEvent, EventType, STREAM_FIELD},
    testing::{start_falkordb, RedisCluster, RedisServer, TestRedis},
};
use futures_util::StreamExt;
use serde_json::{json, Value};
use system_tests::{fixture_repo, Service};
use tokio_tungstenite::tungstenite::Message;

/// Every `codegraph_*` series the Grafana dashboard queries.
fn dashboard_metric_names() -> std::collections::BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/codegraph.json");
    let text = std::fs::read_to_string(path).expect("the Grafana dashboard");
    text.match_indices("codegraph_")
        .map(|(at, _)| text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
        .collect()
}

/// The stream's entries, read over either topology.
fn xrange(redis: &TestRedis, key: &str) -> redis::streams::StreamRangeReply {
    let cmd = redis::cmd("XRANGE").arg(key).arg("-").arg("+").clone();
    match redis {
        TestRedis::Single(r) => cmd.query(&mut r.connection()).unwrap(),
        TestRedis::Cluster(c) => cmd.query(&mut c.cluster_connection()).unwrap(),
    }
}

#[tokio::test]
async fn analysis_flows_to_the_browser_and_into_falkordb() {
    flow(TestRedis::Single(RedisServer::start())).await;
}

#[tokio::test]
async fn analysis_flows_to_the_browser_and_into_falkordb_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 1);
    flow(TestRedis::Cluster(cluster)).await;
}

async fn flow(redis: TestRedis) {
    let falkor = start_falkordb(&[]);
    let repo = fixture_repo();
    let root = repo.path().to_string_lossy().into_owned();
    let url = redis.url();
    let seeds = redis.seeds();
    let cluster = ("CODEGRAPH__REDIS__CLUSTER_NODES", seeds.as_str());
    let api = Service::start("graph-api", &url, &[cluster]).await;
    let gateway = Service::start("ws-gateway", &url, &[cluster]).await;
    let consumer =
        Service::start("stream-consumer", &url, &[cluster, ("CODEGRAPH__SINKS__FALKORDB__URL", falkor.url().as_str())])
            .await;
    let worker =
        Service::start("analysis-worker", &url, &[cluster, ("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS", root.as_str())])
            .await;

    // `since=0-0`: everything the project's stream will ever hold, replayed then live, with no gap at the seam.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(gateway.ws_url("/ws/events?project=demo&since=0-0")).await.unwrap();
    let http = reqwest::Client::new();
    let first = http
        .post(api.url("/api/graph/nodes?project=demo"))
        .json(&json!({"id": "marker", "kind": "file", "name": "marker"}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let job: Value = http
        .post(api.url("/api/graph/admin/reanalyze?project=demo"))
        .json(&json!({"path": root, "mode": "full"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = job["job_id"].as_str().expect("a job id").to_owned();

    // Every frame up to the job's completion, as the browser sees them.
    let mut frames: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg =
            tokio::time::timeout(left, ws.next()).await.expect("analysis_completed within 60 s").unwrap().unwrap();
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        if v.get("id").is_none() {
            continue;
        }
        let done = v["type"] == "analysis_completed" || v["type"] == "analysis_failed";
        frames.push(v);
        if done {
            break;
        }
    }
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "analysis_completed", "{last}");
    assert_eq!(last["data"]["job_id"], job_id.as_str());
    let events: Vec<CdcEvent> =
        frames.iter().flat_map(|f| decode_published(&f.to_string()).unwrap_or_else(|e| panic!("{e}: {f}"))).collect();
    let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
    assert!(
        [EventType::AnalysisStarted, EventType::NodeAdded, EventType::RelationshipAdded]
            .iter()
            .all(|t| types.contains(t)),
        "{types:?}"
    );
    // A stream written by this build holds graph changes in change sets only; job events stay single.
    for frame in &frames {
        let t = frame["type"].as_str().unwrap_or_default();
        assert!(
            !t.starts_with("node_") && !t.starts_with("relationship_"),
            "a graph change outside a change set: {frame}"
        );
    }

    // The browser saw exactly the stream, in order: one frame per entry, every change of each entry.
    let stream = xrange(&redis, "code_graph:{demo}:cdc");
    let stream_ids: Vec<&str> = stream.ids.iter().map(|e| e.id.as_str()).collect();
    let seen_ids: Vec<&str> = frames.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(seen_ids, stream_ids, "the WebSocket client got one frame per entry of the stream, once, in order");
    let stream_events: Vec<CdcEvent> = stream
        .ids
        .iter()
        .flat_map(|e| decode_entry(&e.id, &e.get::<String>(STREAM_FIELD).expect("an envelope")).unwrap())
        .collect();
    let key = |e: &CdcEvent| (e.id, e.index, e.event_type, e.entity.id.clone(), e.version);
    assert_eq!(
        events.iter().map(key).collect::<Vec<_>>(),
        stream_events.iter().map(key).collect::<Vec<_>>(),
        "the WebSocket client got every change of the stream, once, in order"
    );

    // FalkorDB catches up with Redis.
    let stats: Value = http.get(api.url("/api/graph/stats?project=demo")).send().await.unwrap().json().await.unwrap();
    let nodes = stats["nodes"].as_u64().unwrap();
    let rels = stats["relationships"].as_u64().unwrap();
    assert!(nodes > 5 && rels > 5, "{stats}");
    let count = |q: &str| -> u64 {
        let reply: redis::Value = redis::cmd("GRAPH.QUERY")
            .arg("codegraph_demo")
            .arg(q)
            .query(&mut falkor.connection())
            .unwrap_or(redis::Value::Nil);
        // Reply: [header, [[count]], stats]
        if let redis::Value::Array(parts) = reply {
            if let Some(redis::Value::Array(rows)) = parts.get(1) {
                if let Some(redis::Value::Array(row)) = rows.first() {
                    if let Some(redis::Value::Int(n)) = row.first() {
                        return *n as u64;
                    }
                }
            }
        }
        0
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count("MATCH (n:Node) RETURN count(n)") != nodes || count("MATCH ()-[r]->() RETURN count(r)") != rels {
        assert!(Instant::now() < deadline, "FalkorDB did not converge on {nodes} nodes and {rels} relationships");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every service exposes valid metrics, and they moved with the flow.
    let all: Vec<system_tests::Metrics> =
        vec![api.metrics().await, gateway.metrics().await, consumer.metrics().await, worker.metrics().await];
    for name in dashboard_metric_names() {
        assert!(all.iter().any(|m| m.has(&name)), "the Grafana dashboard reads {name}, which no service exports");
    }
    let m = api.metrics().await;
    assert!(m.sum("codegraph_events_published_total") >= 1.0);
    assert!(m.has("codegraph_http_request_duration_seconds_bucket"));
    let m = gateway.metrics().await;
    // The client resumed from 0-0: events written before the gateway's room subscribed reached it through its own
    // catch-up read of the stream, which neither Pub/Sub counter sees; the analysis itself arrived live. Every
    // entry went out as a frame.
    assert!(m.sum("codegraph_ws_events_received_total") >= 1.0, "{:?}", m.samples);
    assert!(m.sum("codegraph_ws_frames_sent_total") >= frames.len() as f64);
    let m = consumer.metrics().await;
    // Every entry the client saw was applied, and every change in it.
    assert!(m.sum("codegraph_consumer_events_applied_total") >= frames.len() as f64, "{:?}", m.samples);
    assert!(m.sum("codegraph_consumer_changes_applied_total") >= events.len() as f64, "{:?}", m.samples);
    assert!(m.has("codegraph_consumer_lag_seconds_bucket"));
    let m = worker.metrics().await;
    assert!(m.sum("codegraph_analysis_files_total") >= 3.0, "{:?}", m.samples);
}
