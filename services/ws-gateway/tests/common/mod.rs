//! Test harness of the ws-gateway integration tests: real gateway processes, real redis-server, real WebSocket
//! clients, mutations written through the shared `GraphWriter` (the Function library, as graph-api does: one
//! change set per call), and entries of the form written before change sets put straight into the stream.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::StreamId,
    functions::{GraphWriter, Mutation, PublishMode},
    graph::{Node, Relationship},
    names::RedisNames,
    project::ProjectName,
    redis_handle::{RedisConn, RedisHandle},
    testing::{free_port, wait_for_port},
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::CloseFrame, Message},
    MaybeTlsStream, WebSocketStream,
};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The helpers' `redis_url` names a single Redis, or — with this prefix and the seeds after it — a Redis Cluster.
pub const CLUSTER: &str = "cluster:";

/// The `redis_url` of the helpers for a cluster.
pub fn cluster_target(seeds: &str) -> String {
    format!("{CLUSTER}{seeds}")
}

/// A connection to the Redis `redis_url` names (see [`CLUSTER`]).
pub fn redis_conn(redis_url: &str) -> RedisConn {
    let handle = match redis_url.strip_prefix(CLUSTER) {
        Some(seeds) => {
            let seeds: Vec<String> = seeds.split(',').map(str::to_owned).collect();
            RedisHandle::open_cluster(&seeds, &Default::default())
        }
        None => RedisHandle::open(redis_url),
    };
    handle.expect("a Redis handle").conn()
}

/// A ws-gateway process. Killed (SIGKILL) when dropped.
pub struct GatewayProcess {
    pub port: u16,
    child: Option<Child>,
    redis_url: String,
    env: Vec<(String, String)>,
}

impl GatewayProcess {
    /// Starts a gateway on a free port and waits until it is ready (Pub/Sub connected).
    pub fn start(redis_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(free_port(), redis_url, env)
    }

    /// Starts a gateway and waits until it is ready.
    pub async fn ready(redis_url: &str, env: &[(&str, &str)]) -> Self {
        let g = Self::start(redis_url, env);
        g.wait_ready().await;
        g
    }

    pub fn start_on(port: u16, redis_url: &str, env: &[(&str, &str)]) -> Self {
        let mut g = Self {
            port,
            child: None,
            redis_url: redis_url.to_owned(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        g.spawn();
        g
    }

    fn spawn(&mut self) {
        let log = if std::env::var_os("WS_TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
        let child = Command::new(env!("CARGO_BIN_EXE_ws-gateway"))
            .env("CODEGRAPH_CONFIG_DIR", "/nonexistent")
            .env("CODEGRAPH__REDIS__URL", self.redis_url.strip_prefix(CLUSTER).map_or(self.redis_url.as_str(), |_| ""))
            .env("CODEGRAPH__REDIS__CLUSTER_NODES", self.redis_url.strip_prefix(CLUSTER).unwrap_or(""))
            .env("CODEGRAPH__HTTP__ADDR", format!("127.0.0.1:{}", self.port))
            .env("RUST_LOG", std::env::var("WS_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ws-gateway");
        self.child = Some(child);
        wait_for_port(self.addr(), Duration::from_secs(20));
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(self.http("/ready")).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "gateway on {} not ready", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn status(&self) -> Value {
        reqwest::get(self.http("/status")).await.expect("GET /status").json().await.expect("status JSON")
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit (drain); returns the exit status and how long it took.
    pub fn terminate(&mut self, deadline: Duration) -> (std::process::ExitStatus, Duration) {
        let mut c = self.child.take().expect("running");
        let start = Instant::now();
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return (status, start.elapsed());
            }
            if start.elapsed() > deadline {
                let _ = c.kill();
                panic!("gateway did not exit within {deadline:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the process again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn project(name: &str) -> ProjectName {
    ProjectName::parse(name).unwrap()
}

/// Writes mutations through the Function library, one change set per call. Reconnects after a failure.
pub struct Writer {
    url: String,
    conn: Option<RedisConn>,
    writer: GraphWriter,
}

impl Writer {
    pub async fn new(redis_url: &str, project_name: &str) -> Self {
        Self::with_max_len(redis_url, project_name, 0).await
    }

    pub async fn with_max_len(redis_url: &str, project_name: &str, max_len: u64) -> Self {
        let publish = if redis_url.starts_with(CLUSTER) { PublishMode::Sharded } else { PublishMode::Classic };
        let writer = GraphWriter::new(RedisNames::new(&project(project_name)), max_len, publish);
        Self { url: redis_url.to_owned(), conn: None, writer }
    }

    async fn conn(&mut self) -> Result<&mut RedisConn, String> {
        if self.conn.is_none() {
            let mut conn = redis_conn(&self.url);
            // Connected now (the handle connects on first use), so a dead Redis fails here, fast.
            tokio::time::timeout(Duration::from_secs(1), redis::cmd("PING").query_async::<()>(&mut conn))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    async fn mutate(&mut self, op: Mutation) -> Result<StreamId, String> {
        self.mutate_all(&[op]).await
    }

    /// Applies `ops` in one call: one change set (its changes in the order of `ops`, a node delete's cascade
    /// before the node). Returns the entry's id.
    pub async fn mutate_all(&mut self, ops: &[Mutation]) -> Result<StreamId, String> {
        let writer = self.writer.clone();
        let conn = self.conn().await?;
        match writer.mutate(conn, ops, None).await {
            Ok(out) => {
                let id = out.iter().find_map(|o| o.event_id.as_deref()).ok_or("no event")?;
                id.parse().map_err(|_| "bad id".to_owned())
            }
            Err(e) => {
                self.conn = None;
                Err(e.to_string())
            }
        }
    }

    /// Upserts node `id` with a property `n` (a new value each call, so each call is one event).
    pub async fn upsert(&mut self, id: &str, n: u64) -> Result<StreamId, String> {
        self.upsert_with(id, n, &[]).await
    }

    pub async fn upsert_with(&mut self, id: &str, n: u64, extra: &[(&str, Value)]) -> Result<StreamId, String> {
        let mut props = BTreeMap::from([("n".to_owned(), Value::from(n))]);
        for (k, v) in extra {
            props.insert(k.to_string(), v.clone());
        }
        self.mutate(Mutation::UpsertNode(node(id, props), Default::default())).await
    }

    /// Retries until Redis takes the write (for outage tests). `None` when a retry found the write already
    /// applied (the reply of the first attempt was lost with the connection): its event is in the stream.
    pub async fn upsert_retrying(&mut self, id: &str, n: u64) -> Option<StreamId> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.upsert(id, n).await {
                Ok(id) => return Some(id),
                Err(e) if e == "no event" => return None,
                Err(e) => {
                    assert!(Instant::now() < deadline, "writes failing for 30 s: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    pub async fn delete_node(&mut self, id: &str) -> StreamId {
        self.mutate(Mutation::DeleteNode(id.into(), Default::default())).await.unwrap()
    }
}

/// A node upsert of `id` with a property `n`.
pub fn upsert_node(id: &str, n: u64) -> Mutation {
    Mutation::UpsertNode(node(id, BTreeMap::from([("n".to_owned(), Value::from(n))])), Default::default())
}

/// A relationship upsert `id`: `source` calls `target`.
pub fn upsert_relationship(id: &str, source: &str, target: &str) -> Mutation {
    let r = Relationship {
        id: id.to_owned(),
        rel_type: "calls".into(),
        source: source.to_owned(),
        target: target.to_owned(),
        properties: BTreeMap::new(),
        version: None,
    };
    Mutation::UpsertRelationship(r, Default::default())
}

fn node(id: &str, properties: BTreeMap<String, Value>) -> Node {
    Node {
        id: id.to_owned(),
        kind: "function".into(),
        name: id.to_owned(),
        file: None,
        line_start: None,
        line_end: None,
        properties,
        version: None,
    }
}

/// Appends an entry of the form written before change sets (one graph change, `node_added` of `node`) straight
/// to the project's stream, as an older Function library did; nothing is published. Returns its id.
pub async fn append_old_form(redis_url: &str, project_name: &str, node: &str) -> StreamId {
    let mut conn = redis_conn(redis_url);
    let key = RedisNames::new(&project(project_name)).cdc_stream();
    let body = serde_json::json!({
        "project": project_name,
        "type": "node_added",
        "entity": {"kind": "node", "id": node},
        "version": 1,
        "data": {"id": node, "kind": "function", "name": node, "properties": {}},
        "ts": "2026-11-28T00:00:00.000Z",
    });
    let id: String = redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg(codegraph_shared::event::STREAM_FIELD)
        .arg(body.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    id.parse().unwrap()
}

/// Every id of a project's stream, in order.
pub async fn stream_ids(redis_url: &str, project_name: &str) -> Vec<StreamId> {
    let mut conn = redis_conn(redis_url);
    let key = RedisNames::new(&project(project_name)).cdc_stream();
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    reply.ids.iter().map(|e| e.id.parse().unwrap()).collect()
}

pub async fn connect(url: &str) -> Ws {
    connect_with(url, &[]).await.unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Ws, String> {
    connect_answered(url, headers).await.map(|(ws, _)| ws)
}

/// Connects with extra request headers; returns the socket and the upgrade response (its headers: the selected
/// subprotocol).
pub async fn connect_answered(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, tokio_tungstenite::tungstenite::handshake::client::Response), String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    for (k, v) in headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(v).unwrap(),
        );
    }
    tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(req))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())
}

/// What a client read next.
#[derive(Debug)]
pub enum Incoming {
    Json(Value),
    Closed(Option<u16>, String),
}

/// The next text frame as JSON, or the close; panics after `timeout`.
pub async fn next(ws: &mut Ws, timeout: Duration) -> Incoming {
    try_next(ws, timeout).await.expect("nothing received in time")
}

/// The next text frame as JSON, or the close; `None` when nothing came within `timeout`.
pub async fn try_next(ws: &mut Ws, timeout: Duration) -> Option<Incoming> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next()).await.ok()?;
        return Some(match msg {
            Some(Ok(Message::Text(t))) => Incoming::Json(serde_json::from_str(t.as_str()).expect("JSON text")),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = close_parts(frame);
                Incoming::Closed(code, reason)
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => Incoming::Closed(None, e.to_string()),
            None => Incoming::Closed(None, "ended".into()),
        });
    }
}

fn close_parts(frame: Option<CloseFrame>) -> (Option<u16>, String) {
    match frame {
        Some(f) => (Some(f.code.into()), f.reason.to_string()),
        None => (None, String::new()),
    }
}

pub async fn next_json(ws: &mut Ws) -> Value {
    match next(ws, Duration::from_secs(10)).await {
        Incoming::Json(v) => v,
        Incoming::Closed(code, reason) => panic!("closed ({code:?}, {reason}) while waiting for a message"),
    }
}

/// Reads until a message of `type` arrives, returning it (events and other messages before it are skipped).
pub async fn wait_for_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Reads until the connection closes; returns the close code.
pub async fn wait_close(ws: &mut Ws) -> Option<u16> {
    loop {
        if let Incoming::Closed(code, _) = next(ws, Duration::from_secs(15)).await {
            return code;
        }
    }
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// True for the frame of a stream entry (an id and a change set's changes or a single event's entity), false for
/// control messages.
pub fn is_event(v: &Value) -> bool {
    v.get("id").is_some() && (v.get("entity").is_some() || v.get("changes").is_some())
}

/// The changes a frame carries, each with its `index` in the entry: a single event is one change (index 0); a
/// change set's changes carry `index` when the gateway filtered the set, else their position is their index.
pub fn changes(v: &Value) -> Vec<Value> {
    if v["type"] != "change_set" {
        let mut single = v.clone();
        single["index"] = 0.into();
        return vec![single];
    }
    let list = v["changes"].as_array().expect("a change set has changes");
    let filtered = list.iter().any(|c| c.get("index").is_some());
    assert!(!filtered || list.iter().all(|c| c["index"].is_u64()), "every kept change has an index: {v}");
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            if !filtered {
                c["index"] = i.into();
            }
            c
        })
        .collect()
}

/// The only change of a frame that carries one (a one-operation call, a single event).
pub fn only_change(v: &Value) -> Value {
    let mut all = changes(v);
    assert_eq!(all.len(), 1, "one change expected: {v}");
    all.remove(0)
}

pub fn event_id(v: &Value) -> StreamId {
    v["id"].as_str().expect("event id").parse().expect("stream id")
}

/// Reads `n` events (skipping control messages), panicking on a close.
pub async fn read_events(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = next_json(ws).await;
        if is_event(&v) {
            out.push(v);
        }
    }
    out
}

/// The path of a sibling workspace binary (target/<profile>/<name>), if it was built.
pub fn workspace_binary(name: &str) -> Option<PathBuf> {
    let me = PathBuf::from(env!("CARGO_BIN_EXE_ws-gateway"));
    let path = me.parent()?.join(name);
    path.exists().then_some(path)
}
