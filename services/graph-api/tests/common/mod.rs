//! Starts the real graph-api binary against a real redis-server, and talks to it over HTTP.

#![allow(dead_code)]

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::testing::{free_port, RedisServer};
use serde_json::Value;

pub struct GraphApi {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
}

impl GraphApi {
    pub async fn start(redis: &RedisServer) -> Self {
        Self::start_with(redis, &[]).await
    }

    /// Starts the binary with extra `CODEGRAPH__…` settings and waits until it is ready.
    /// A port another process took between the choice and the bind makes the binary exit: it is started again on
    /// another port.
    pub async fn start_with(redis: &RedisServer, env: &[(&str, &str)]) -> Self {
        Self::start_bound(redis, "127.0.0.1", env).await
    }

    /// As [`start_with`](Self::start_with), listening on `host` (e.g. `0.0.0.0`); reached over 127.0.0.1.
    pub async fn start_bound(redis: &RedisServer, host: &str, env: &[(&str, &str)]) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(env!("CARGO_BIN_EXE_graph-api"))
                .env("CODEGRAPH__REDIS__URL", redis.url())
                .env("CODEGRAPH__HTTP__ADDR", format!("{host}:{port}"))
                .env("CODEGRAPH__TELEMETRY__LOG_LEVEL", "error")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start graph-api");
            let mut api = Self { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
            if api.wait_ready(Duration::from_secs(20)).await {
                return api;
            }
        }
        panic!("graph-api did not start on any of 5 ports");
    }

    /// Waits until this process answers `/ready`; false when it exited first (panics after `deadline`).
    pub async fn wait_ready(&mut self, deadline: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.child.try_wait().expect("poll graph-api").is_some() {
                return false;
            }
            if let Ok(r) = self.http.get(self.url("/ready")).send().await {
                // Ours only if it is still running (a process that lost the port exits).
                if r.status().is_success() && self.child.try_wait().expect("poll graph-api").is_none() {
                    return true;
                }
            }
            assert!(start.elapsed() < deadline, "graph-api not ready after {deadline:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        decode(r).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.request(method, self.url(path)).json(&body).send().await.expect("request");
        decode(r).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// A request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        decode(req.send().await.expect("request")).await
    }

    pub async fn raw(&self, method: reqwest::Method, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        decode(r).await
    }
}

/// Runs the graph-api binary with `env` where it must refuse to start: its exit status and what it wrote to
/// stderr (panics if it is still running after 20 s).
pub fn run_refused(redis: &RedisServer, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_graph-api"))
        .env("CODEGRAPH__REDIS__URL", redis.url())
        .env("CODEGRAPH__TELEMETRY__LOG_LEVEL", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start graph-api");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll graph-api") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("graph-api kept running; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    (status, text)
}

async fn decode(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

impl Drop for GraphApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every change on a project's CDC stream, as events with their entry ids and indexes (both entry forms).
pub fn stream_events(redis: &RedisServer, project: &str) -> Vec<codegraph_shared::event::CdcEvent> {
    let mut conn = redis.connection();
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(format!("code_graph:{{{project}}}:cdc")).arg("-").arg("+").query(&mut conn).unwrap();
    reply
        .ids
        .iter()
        .flat_map(|e| {
            let body: String = e.get(codegraph_shared::event::STREAM_FIELD).unwrap();
            codegraph_shared::event::decode_entry(&e.id, &body).unwrap()
        })
        .collect()
}

pub fn node(id: &str, kind: &str) -> Value {
    serde_json::json!({"id": id, "kind": kind, "name": id, "file": "src/x.py", "line_start": 1, "line_end": 2})
}

/// Asserts an error response: status and code, and the JSON shape.
#[track_caller]
pub fn assert_error(resp: &(u16, Value), status: u16, code: &str) {
    assert_eq!(resp.0, status, "status of {}", resp.1);
    assert_eq!(resp.1["error"]["code"], code, "{}", resp.1);
    assert!(resp.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", resp.1);
}
