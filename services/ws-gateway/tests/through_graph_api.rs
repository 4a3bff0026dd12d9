//! End to end through graph-api's HTTP API: every mutation made with `POST /api/graph/…` reaches `/ws/events`,
//! in order, as the change of the entry id and index graph-api reported (one frame per call). Needs target/<profile>/graph-api (`cargo build --workspace
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

/// Every change a reply names (`event_id` and `change_index`, 0 when absent), in order.
fn event_ids(reply: &Value, out: &mut Vec<(String, u64)>) {
    match reply {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("event_id") {
                out.push((id.clone(), map.get("change_index").and_then(Value::as_u64).unwrap_or(0)));
            }
            map.iter().filter(|(k, _)| *k != "event_id").for_each(|(_, v)| event_ids(v, out));
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
    assert_eq!(reported.len(), 32, "graph-api reported a change per mutation");

    // 30 calls of one change and a batch of two: 31 frames.
    let got = read_events(&mut ws, 31).await;
    let delivered: Vec<(String, u64)> = got
        .iter()
        .flat_map(|f| {
            changes(f).into_iter().map(|c| (f["id"].as_str().unwrap().to_owned(), c["index"].as_u64().unwrap()))
        })
        .collect();
    assert_eq!(delivered, reported, "every mutation, in the order graph-api applied them");
    assert_eq!(only_change(&got[0])["type"], "node_added");
    assert_eq!(only_change(&got[0])["entity"]["id"], "py:app.py:f0");
    assert_eq!(changes(&got[30])[1]["type"], "relationship_added");
    assert!(got.iter().all(|e| e["project"] == "web"));
}
