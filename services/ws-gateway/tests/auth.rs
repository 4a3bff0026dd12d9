//! The gateway's read scope and browser-safe WebSocket auth, against a real gateway process: every WebSocket
//! endpoint and `GET /status` refuse no token and an unknown one (4401 / 401), a token without the read scope
//! (4403 / 403), and a foreign browser Origin (4403) even with a good token; a read token is accepted from the
//! `codegraph.bearer.<base64url>` subprotocol (the upgrade selects `codegraph.v1`, never the bearer one), from
//! `Authorization: Bearer` and from `?token=`; the probes stay open; and a gateway that would serve everyone on a
//! non-loopback address refuses to start.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::testing::{free_port, RedisServer};
use common::*;
use serde_json::json;

const READ: &str = "reader-token";
const WRITE: &str = "writer-token";
/// A token in both lists holds both scopes.
const BOTH: &str = "both-token";
const LEGACY: &str = "legacy-token";

/// `/ws/status` and the two event endpoints, each with what proves it serves (a first message).
const ENDPOINTS: [&str; 3] = ["/ws/events?project=p", "/ws/events/filtered", "/ws/status"];

async fn gateway(redis: &RedisServer, extra: &[(&str, &str)]) -> GatewayProcess {
    let mut env = vec![
        ("CODEGRAPH__AUTH__READ_TOKENS", "reader-token,both-token"),
        ("CODEGRAPH__AUTH__WRITE_TOKENS", "writer-token,both-token"),
        ("CODEGRAPH__GATEWAY__TOKENS", LEGACY),
        ("CODEGRAPH__GATEWAY__STATUS_INTERVAL_MS", "100"),
    ];
    env.extend_from_slice(extra);
    GatewayProcess::ready(&redis.url(), &env).await
}

fn bearer_protocols(token: &str) -> String {
    format!("codegraph.v1, codegraph.bearer.{}", data_encoding::BASE64URL_NOPAD.encode(token.as_bytes()))
}

fn with_token(path: &str, token: &str) -> String {
    format!("{path}{}token={token}", if path.contains('?') { '&' } else { '?' })
}

/// The close code a refused connection gets (the upgrade itself is accepted, to carry it).
async fn close_code(url: &str, headers: &[(&str, &str)]) -> (Option<u16>, String) {
    let mut ws = connect_with(url, headers).await.unwrap_or_else(|e| panic!("{url}: upgrade refused: {e}"));
    match next(&mut ws, Duration::from_secs(10)).await {
        Incoming::Closed(code, reason) => (code, reason),
        Incoming::Json(v) => panic!("{url}: expected a close, got {v}"),
    }
}

/// Proves the endpoint serves: `subscribed` on /ws/events, a subscription on /ws/events/filtered, a status push.
async fn serves(ws: &mut Ws, path: &str) {
    if path.starts_with("/ws/events/filtered") {
        send_json(ws, json!({"type": "subscribe", "filter": {"projects": ["p"]}})).await;
        wait_for_type(ws, "subscribed").await;
    } else if path.starts_with("/ws/events") {
        wait_for_type(ws, "subscribed").await;
    } else {
        wait_for_type(ws, "status").await;
    }
}

async fn get_status(gw: &GatewayProcess, query: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().get(gw.http(&format!("/status{query}")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("GET /status");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_websocket_endpoint_needs_a_read_token() {
    let redis = RedisServer::start();
    let gw = gateway(&redis, &[]).await;
    for path in ENDPOINTS {
        let url = gw.ws(path);
        let (code, reason) = close_code(&url, &[]).await;
        assert_eq!(code, Some(4401), "{path} without a token: {reason}");
        assert!(reason.contains("codegraph.bearer."), "the reason says how to send one: {reason}");
        assert_eq!(close_code(&with_token(&url, "wrong"), &[]).await.0, Some(4401), "{path}: unknown token");
        assert_eq!(close_code(&url, &[("authorization", "Bearer wrong")]).await.0, Some(4401), "{path}");
        let bad_protocol = bearer_protocols("wrong");
        let (code, _) = close_code(&url, &[("sec-websocket-protocol", &bad_protocol)]).await;
        assert_eq!(code, Some(4401), "{path}: unknown token in the subprotocol");
        let (code, reason) = close_code(&with_token(&url, WRITE), &[]).await;
        assert_eq!(code, Some(4403), "{path}: a write-only token may not read: {reason}");
        assert!(reason.contains("read"), "{reason}");
        let write_protocol = bearer_protocols(WRITE);
        assert_eq!(close_code(&url, &[("sec-websocket-protocol", &write_protocol)]).await.0, Some(4403), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_works_from_the_subprotocol_the_header_and_the_query() {
    let redis = RedisServer::start();
    let gw = gateway(&redis, &[]).await;
    for path in ENDPOINTS {
        let url = gw.ws(path);
        for token in [READ, BOTH, LEGACY] {
            let offer = bearer_protocols(token);
            let (mut ws, resp) = connect_answered(&url, &[("sec-websocket-protocol", &offer)]).await.unwrap();
            let selected: Vec<_> = resp.headers().get_all("sec-websocket-protocol").iter().collect();
            assert_eq!(selected, ["codegraph.v1"], "{path}: codegraph.v1 is selected, the bearer never echoed");
            serves(&mut ws, path).await;
        }
        let (mut ws, resp) = connect_answered(&url, &[("authorization", &format!("Bearer {READ}"))]).await.unwrap();
        assert!(resp.headers().get("sec-websocket-protocol").is_none(), "nothing offered, nothing selected");
        serves(&mut ws, path).await;
        let mut ws = connect(&with_token(&url, READ)).await;
        serves(&mut ws, path).await;
    }
    // A refusal is upgraded with codegraph.v1 too, so a browser sees the 4401 rather than a failed socket.
    let offer = bearer_protocols("wrong");
    let (mut ws, resp) = connect_answered(&gw.ws(ENDPOINTS[0]), &[("sec-websocket-protocol", &offer)]).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "codegraph.v1");
    assert_eq!(wait_close(&mut ws).await, Some(4401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_status_needs_a_read_token_and_the_probes_stay_open() {
    let redis = RedisServer::start();
    let gw = gateway(&redis, &[]).await;
    let (code, body) = get_status(&gw, "", &[]).await;
    assert_eq!((code, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    assert_eq!(get_status(&gw, "?token=wrong", &[]).await.0, 401);
    assert_eq!(get_status(&gw, "", &[("authorization", "Bearer wrong")]).await.0, 401);
    let (code, body) = get_status(&gw, "", &[("authorization", &format!("Bearer {WRITE}"))]).await;
    assert_eq!((code, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (code, body) = get_status(&gw, "", &[("authorization", &format!("Bearer {READ}"))]).await;
    assert_eq!((code, body["service"].as_str()), (200, Some("ws-gateway")), "{body}");
    assert_eq!(get_status(&gw, &format!("?token={LEGACY}"), &[]).await.0, 200);
    for open in ["/health", "/ready", "/metrics"] {
        let status = reqwest::get(gw.http(open)).await.unwrap().status();
        assert_eq!(status.as_u16(), 200, "{open} is open (probes, Prometheus)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_browser_origin_is_refused_by_default_and_our_own_is_not() {
    let redis = RedisServer::start();
    let gw = gateway(&redis, &[]).await;
    let own = format!("http://127.0.0.1:{}", gw.port);
    let offer = bearer_protocols(READ);
    for path in ENDPOINTS {
        let url = gw.ws(path);
        // Another site, another port of our host (the Host header names our port), `null` (sandboxed frames).
        let other_port = format!("http://127.0.0.1:{}", gw.port.wrapping_add(1).max(1));
        for foreign in ["http://evil.example", "http://localhost.evil.example", other_port.as_str(), "null"] {
            let headers = [("origin", foreign), ("sec-websocket-protocol", offer.as_str())];
            let (code, reason) = close_code(&url, &headers).await;
            assert_eq!(code, Some(4403), "{path} from {foreign}: {reason}");
        }
        // The page's own origin (scheme and Host), and behind a proxy the forwarded host and scheme.
        let (mut ws, _) =
            connect_answered(&url, &[("origin", &own), ("sec-websocket-protocol", &offer)]).await.unwrap();
        serves(&mut ws, path).await;
        let proxied = [
            ("origin", "https://live.example"),
            ("x-forwarded-host", "live.example"),
            ("x-forwarded-proto", "https"),
            ("sec-websocket-protocol", offer.as_str()),
        ];
        let (mut ws, _) = connect_answered(&url, &proxied).await.unwrap();
        serves(&mut ws, path).await;
    }
    // Listed origins (the [auth] list and the legacy gateway one) are allowed; an open gateway checks origins too.
    let listed = gateway(
        &redis,
        &[
            ("CODEGRAPH__AUTH__ALLOWED_ORIGINS", "http://dash.example:8080"),
            ("CODEGRAPH__GATEWAY__ALLOWED_ORIGINS", "https://old.example"),
        ],
    )
    .await;
    for origin in ["http://dash.example:8080", "https://old.example"] {
        let headers = [("origin", origin), ("sec-websocket-protocol", offer.as_str())];
        let (mut ws, _) = connect_answered(&listed.ws(ENDPOINTS[0]), &headers).await.unwrap();
        serves(&mut ws, ENDPOINTS[0]).await;
    }
    let open = GatewayProcess::ready(&redis.url(), &[]).await;
    assert_eq!(close_code(&open.ws(ENDPOINTS[0]), &[("origin", "http://evil.example")]).await.0, Some(4403));
    let mut ws = connect(&open.ws(ENDPOINTS[0])).await;
    serves(&mut ws, ENDPOINTS[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_files_too() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("read-tokens");
    std::fs::write(&file, "from-a-secret\n").unwrap();
    let gw =
        GatewayProcess::ready(&redis.url(), &[("CODEGRAPH__AUTH__READ_TOKENS_FILE", file.to_str().unwrap())]).await;
    let mut ws = connect(&gw.ws("/ws/events?project=p&token=from-a-secret")).await;
    serves(&mut ws, ENDPOINTS[0]).await;
    assert_eq!(close_code(&gw.ws(ENDPOINTS[0]), &[]).await.0, Some(4401));
}

/// Runs the gateway binary to its exit (or for `wait` if it keeps running); returns its exit code and stderr.
fn run_gateway(redis_url: &str, env: &[(&str, &str)], wait: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ws-gateway"))
        .env("CODEGRAPH_CONFIG_DIR", "/nonexistent")
        .env("CODEGRAPH__REDIS__URL", redis_url)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ws-gateway");
    let deadline = Instant::now() + wait;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (code, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_gateway_refuses_to_start_on_a_non_loopback_address() {
    let redis = RedisServer::start();
    let everywhere = format!("0.0.0.0:{}", free_port());
    let (code, stderr) = run_gateway(&redis.url(), &[("CODEGRAPH__HTTP__ADDR", &everywhere)], Duration::from_secs(20));
    assert!(code.is_some_and(|c| c != 0), "exits with an error (code {code:?}): {stderr}");
    assert!(stderr.contains("CODEGRAPH__AUTH__ALLOW_OPEN=true") && stderr.contains(&everywhere), "{stderr}");

    // Open on purpose, or with a token: it starts (and serves until killed).
    let port = free_port();
    let addr = format!("0.0.0.0:{port}");
    for env in [[("CODEGRAPH__AUTH__ALLOW_OPEN", "true")], [("CODEGRAPH__AUTH__READ_TOKENS", READ)]] {
        let mut all = vec![("CODEGRAPH__HTTP__ADDR", addr.as_str())];
        all.extend_from_slice(&env);
        let mut gw = GatewayProcess::start_on(port, &redis.url(), &all);
        gw.wait_ready().await;
        gw.kill();
    }
    // A token file that is configured but missing refuses the start too: a secret that failed to mount must not
    // leave the gateway open.
    let env = [("CODEGRAPH__HTTP__ADDR", "127.0.0.1:0"), ("CODEGRAPH__AUTH__READ_TOKENS_FILE", "/nonexistent/tokens")];
    let (code, stderr) = run_gateway(&redis.url(), &env, Duration::from_secs(20));
    assert!(code.is_some_and(|c| c != 0) && stderr.contains("READ_TOKENS_FILE"), "{code:?}: {stderr}");
}
