//! End to end through graph-api's HTTP API: every mutation made with `POST /api/graph/…` reaches `/ws/events`,
//! in order, with the event id graph-api reported. Needs target/<profile>/graph-api (`cargo build --workspace
//! --bins`, as `make test` does first).

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::testing::{free_port, wait_for_port, RedisServer};
use common::*;
use serde_json::{json, Value};

struct GraphApi {
    port: u16,
    child: Child,
}

impl GraphApi {
    async fn start(redis_url: &str) -> Self {
        let binary = workspace_binary("graph-api")
            .expect("target/<profile>/graph-api is missing: build it with `cargo build --workspace --bins`");
        let port = free_port();
        let child = Command::new(binary)
            .env("CODEGRAPH_CONFIG_DIR", "/nonexistent")
            .env("CODEGRAPH__REDIS__URL", redis_url)
            .env("CODEGRAPH__HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start graph-api");
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(20));
        let api = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !reqwest::get(api.url("/ready")).await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "graph-api not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new().post(self.url(path)).json(&body).send().await.expect("POST");
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
        r.json().await.expect("JSON reply")
    }
}

impl Drop for GraphApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `event_id` in a reply, in order.
fn event_ids(reply: &Value, out: &mut Vec<String>) {
    match reply {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("event_id", Value::String(id)) => out.push(id.clone()),
                    _ => event_ids(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| event_ids(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_made_through_graph_api_arrive_in_order() {
    let redis = RedisServer::start();
    let gw = GatewayProcess::ready(&redis.url(), &[]).await;
    let api = GraphApi::start(&redis.url()).await;
    let mut ws = connect(&gw.ws("/ws/events?project=web")).await;
    wait_for_type(&mut ws, "subscribed").await;

    let mut reported = Vec::new();
    for i in 0..30 {
        let node = json!({"id": format!("py:app.py:f{i}"), "kind": "function", "name": format!("f{i}")});
        event_ids(&api.post("/api/graph/nodes?project=web", node).await, &mut reported);
    }
    let batch = json!({"operations": [
        {"op": "upsert_node", "node": {"id": "py:app.py", "kind": "file", "name": "app.py"}},
        {"op": "upsert_relationship", "relationship":
            {"id": "contains:app:f0", "type": "contains", "source": "py:app.py", "target": "py:app.py:f0"}},
    ]});
    event_ids(&api.post("/api/graph/batch?project=web", batch).await, &mut reported);
    assert_eq!(reported.len(), 32, "graph-api reported an event per mutation");

    let got = read_events(&mut ws, reported.len()).await;
    let ids: Vec<String> = got.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, reported, "every mutation, in the order graph-api applied them");
    assert_eq!(got[0]["type"], "node_added");
    assert_eq!(got[0]["entity"]["id"], "py:app.py:f0");
    assert_eq!(got[31]["type"], "relationship_added");
    assert!(got.iter().all(|e| e["project"] == "web"));
}
