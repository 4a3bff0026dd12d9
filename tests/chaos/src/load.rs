//! The steady load: mutations through graph-api's HTTP API at a fixed rate (node upserts, relationship upserts,
//! deletes of both, small batches), retried through outages the way a client of the API would (a retried upsert
//! that already landed is `unchanged` and emits nothing; a delete of what is gone is a 404). Each request is one
//! atomic call, so one stream entry: a single change, or several (a node deleted with its relationships, a batch).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use codegraph_shared::graph::Relationship;
use serde_json::{json, Value};

/// Node ids of the load: a small space, so upserts update, deletes hit and relationships find their ends.
const NODES: u64 = 60;
const REL_TYPES: [&str; 3] = ["calls", "imports", "contains"];

/// One request through graph-api, retried on connection errors and 5xx until `deadline`. Returns the final
/// status (a 4xx is an answer: the API refused and changed nothing).
pub async fn send_retrying(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
    deadline: Duration,
) -> Result<(u16, Value), String> {
    send_counting(http, method, url, body, deadline, &AtomicU64::new(0)).await
}

/// [`send_retrying`], counting the failed attempts (5xx answers and connection errors) in `failures`.
pub async fn send_counting(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
    deadline: Duration,
    failures: &AtomicU64,
) -> Result<(u16, Value), String> {
    let start = Instant::now();
    loop {
        let mut req = http.request(method.clone(), url).timeout(Duration::from_secs(5));
        if let Some(body) = body {
            req = req.json(body);
        }
        let last = match req.send().await {
            Ok(resp) if !resp.status().is_server_error() => {
                let status = resp.status().as_u16();
                return Ok((status, resp.json().await.unwrap_or(Value::Null)));
            }
            Ok(resp) => format!("HTTP {}", resp.status()),
            Err(e) => e.to_string(),
        };
        failures.fetch_add(1, Ordering::Relaxed);
        if start.elapsed() > deadline {
            return Err(format!("{method} {url} failing for {deadline:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Mutations at `rate` per second into `project` until stopped.
pub struct MutationLoad {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    /// Attempts answered 5xx or not answered (each retried).
    pub failures: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl MutationLoad {
    pub fn start(api: String, project: &str, rate: u64, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let (s, n, f) = (stop.clone(), sent.clone(), failures.clone());
        let project = project.to_owned();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let period = Duration::from_micros(1_000_000 / rate.max(1));
            let mut rng = seed.max(1);
            let mut next = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut serial = 0u64;
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                serial += 1;
                let node = |i: u64| format!("n{i}");
                let roll = next(100);
                let (method, path, body) = if roll < 50 {
                    let id = node(next(NODES));
                    let kind = ["file", "class", "function"][next(3) as usize];
                    let body = json!({"id": id, "kind": kind, "name": id, "properties": {"serial": serial}});
                    (reqwest::Method::POST, "/api/graph/nodes".to_owned(), Some(body))
                } else if roll < 80 {
                    let (s, t) = (node(next(NODES)), node(next(NODES)));
                    let rel_type = REL_TYPES[next(3) as usize];
                    let body = json!({"type": rel_type, "source": s, "target": t, "properties": {"serial": serial}});
                    (reqwest::Method::POST, "/api/graph/relationships".to_owned(), Some(body))
                } else if roll < 88 {
                    let rel_type = REL_TYPES[next(3) as usize];
                    let id = Relationship::derived_id(&node(next(NODES)), rel_type, &node(next(NODES)));
                    (reqwest::Method::DELETE, format!("/api/graph/relationships/{}", id.replace('|', "%7C")), None)
                } else if roll < 96 {
                    (reqwest::Method::DELETE, format!("/api/graph/nodes/{}", node(next(NODES))), None)
                } else {
                    // Two nodes, a relationship between them and the delete of another: one change set of up to
                    // four changes (far below graph-api's chunk, so the batch is one atomic call).
                    let (a, b) = (node(next(NODES)), node(next(NODES)));
                    let rel_type = REL_TYPES[next(3) as usize];
                    let gone = Relationship::derived_id(&node(next(NODES)), rel_type, &node(next(NODES)));
                    let upsert = |id: &str| {
                        json!({"op": "upsert_node",
                               "node": {"id": id, "kind": "function", "name": id, "properties": {"serial": serial}}})
                    };
                    let operations = json!([
                        upsert(&a),
                        upsert(&b),
                        {"op": "upsert_relationship",
                         "relationship": {"type": rel_type, "source": a, "target": b, "properties": {"serial": serial}}},
                        {"op": "delete_relationship", "id": gone},
                    ]);
                    (reqwest::Method::POST, "/api/graph/batch".to_owned(), Some(json!({"operations": operations})))
                };
                let sep = if path.contains('?') { '&' } else { '?' };
                let url = format!("{api}{path}{sep}project={project}");
                send_counting(&http, method, &url, body.as_ref(), Duration::from_secs(60), &f).await?;
                n.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        Self { stop, sent, failures, task }
    }

    /// Waits until `more` further requests went through (the load is flowing), or fails after `deadline`.
    pub async fn wait_more(&self, more: u64, deadline: Duration) -> Result<(), String> {
        let target = self.sent.load(Ordering::Relaxed) + more;
        let start = Instant::now();
        while self.sent.load(Ordering::Relaxed) < target {
            if start.elapsed() > deadline || self.task.is_finished() {
                return Err(format!("the mutation load stalled at {} requests", self.sent.load(Ordering::Relaxed)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the load after its current request; its error, if a request failed for good.
    pub async fn stop(self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.map_err(|e| e.to_string())??;
        Ok(self.sent.load(Ordering::Relaxed))
    }
}
