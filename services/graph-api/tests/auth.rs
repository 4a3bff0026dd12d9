//! Who may do what, against the real graph-api binary and a real redis-server: every route refuses no token,
//! an unknown token and a token of the wrong scope (401/401/403) and changes nothing (the CDC stream, the jobs
//! stream, the graph and the job record are compared before and after); every route works with its scope; tokens
//! from files and the legacy `API__TOKENS`; the CSRF rule (415 for what a form can send, 403 for a foreign
//! `Origin`); the start-up rule on a public address; and the request limits (concurrency, timeout), each shown
//! by holding requests in Redis with `CLIENT PAUSE`.

mod common;

use std::time::{Duration, Instant};

use codegraph_shared::testing::{free_port, RedisServer};
use common::{assert_error, node, run_refused, GraphApi};
use reqwest::Method;
use serde_json::{json, Value};

const READ: &str = "reader-token";
const WRITE: &str = "writer-token";
const ADMIN: &str = "admin-token";

const SCOPED: &[(&str, &str)] = &[
    ("CODEGRAPH__AUTH__READ_TOKENS", READ),
    ("CODEGRAPH__AUTH__WRITE_TOKENS", WRITE),
    ("CODEGRAPH__AUTH__ADMIN_TOKENS", ADMIN),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    Read,
    Write,
    Admin,
}

struct Route {
    method: Method,
    path: String,
    needs: Needs,
    body: Option<Value>,
}

fn route(method: Method, path: &str, needs: Needs, body: Option<Value>) -> Route {
    Route { method, path: path.to_owned(), needs, body }
}

/// Every route of the API but `/health`, `/ready` and `/metrics`, in an order in which each succeeds given
/// [`seed`]'s graph and `job`: reads, then writes, the reset last.
fn every_route(job: &str) -> Vec<Route> {
    use Needs::*;
    let rel = "/api/graph/relationships/a%7Ccalls%7Cb";
    vec![
        route(Method::GET, "/api/graph/nodes/a", Read, None),
        route(Method::GET, rel, Read, None),
        route(Method::GET, "/api/graph/stats", Read, None),
        route(Method::GET, "/api/graph/nodes/search?q=a", Read, None),
        route(Method::GET, "/api/graph/nodes/a/neighbors", Read, None),
        route(Method::GET, "/api/graph/subgraph", Read, None),
        route(Method::GET, "/api/graph/snapshot", Read, None),
        route(Method::GET, "/api/graph/projects", Read, None),
        route(Method::GET, &format!("/api/graph/admin/jobs/{job}"), Read, None),
        route(Method::GET, "/openapi.json", Read, None),
        route(Method::POST, "/api/graph/nodes", Write, Some(node("c", "class"))),
        route(Method::PATCH, "/api/graph/nodes/a", Write, Some(json!({"properties": {"k": 1}}))),
        route(
            Method::POST,
            "/api/graph/relationships",
            Write,
            Some(json!({"type": "calls", "source": "c", "target": "b"})),
        ),
        route(Method::PATCH, rel, Write, Some(json!({"properties": {"w": 2}}))),
        route(Method::DELETE, rel, Write, None),
        route(
            Method::POST,
            "/api/graph/batch",
            Write,
            Some(json!({"operations": [{"op": "upsert_node", "node": node("d", "module")}]})),
        ),
        route(Method::POST, "/api/graph/admin/reanalyze", Write, Some(json!({"path": "/srv/other"}))),
        route(Method::POST, &format!("/api/graph/admin/jobs/{job}/cancel"), Write, Some(json!({}))),
        route(Method::DELETE, "/api/graph/nodes/a", Write, None),
        route(Method::POST, "/api/graph/admin/reset", Admin, Some(json!({}))),
    ]
}

/// Nodes `a`, `b`, relationship `a|calls|b` and a queued job; returns the job id.
async fn seed(api: &GraphApi) -> String {
    for n in [node("a", "function"), node("b", "function")] {
        assert_eq!(api.call(Method::POST, "/api/graph/nodes", Some(WRITE), Some(&n)).await.0, 201);
    }
    let rel = json!({"type": "calls", "source": "a", "target": "b"});
    assert_eq!(api.call(Method::POST, "/api/graph/relationships", Some(WRITE), Some(&rel)).await.0, 201);
    let (status, job) =
        api.call(Method::POST, "/api/graph/admin/reanalyze", Some(WRITE), Some(&json!({"path": "/srv/repo"}))).await;
    assert_eq!(status, 202, "{job}");
    job["job_id"].as_str().unwrap().to_owned()
}

/// What any write would change: the CDC and jobs streams' lengths, the graph and the job record (read with the
/// read token, or with a token holding every scope when `token` says so).
async fn footprint(api: &GraphApi, redis: &RedisServer, job: &str, token: &str) -> Value {
    let mut conn = redis.connection();
    let xlen = |key: &str, conn: &mut redis::Connection| -> u64 { redis::cmd("XLEN").arg(key).query(conn).unwrap() };
    let cdc = xlen("code_graph:{default}:cdc", &mut conn);
    let jobs = xlen(codegraph_shared::names::JOBS_STREAM, &mut conn);
    let get = |path: String| async move { api.call(Method::GET, &path, Some(token), None).await };
    json!({
        "cdc": cdc,
        "jobs": jobs,
        "stats": get("/api/graph/stats".into()).await.1,
        "a": get("/api/graph/nodes/a".into()).await.1,
        "rel": get("/api/graph/relationships/a%7Ccalls%7Cb".into()).await.1,
        "job": get(format!("/api/graph/admin/jobs/{job}")).await.1,
    })
}

#[tokio::test]
async fn every_route_refuses_a_missing_unknown_or_unscoped_token_and_changes_nothing() {
    let redis = RedisServer::start();
    let api = GraphApi::start_with(&redis, SCOPED).await;
    let job = seed(&api).await;
    let before = footprint(&api, &redis, &job, READ).await;
    assert_eq!(before["stats"]["nodes"], 2, "{before}");

    for r in every_route(&job) {
        let what = format!("{} {}", r.method, r.path);
        let body = r.body.as_ref();
        let none = api.call(r.method.clone(), &r.path, None, body).await;
        assert_error(&none, 401, "unauthorized");
        let unknown = api.call(r.method.clone(), &r.path, Some("not-a-token"), body).await;
        assert_error(&unknown, 401, "unauthorized");
        // Scopes do not imply one another: admin does not read or write, write does not reset.
        let wrong: &[&str] = match r.needs {
            Needs::Read => &[WRITE, ADMIN],
            Needs::Write => &[READ, ADMIN],
            Needs::Admin => &[READ, WRITE],
        };
        for token in wrong {
            let refused = api.call(r.method.clone(), &r.path, Some(token), body).await;
            assert_eq!(refused.0, 403, "{what} with {token}: {}", refused.1);
            assert_error(&refused, 403, "forbidden");
        }
    }
    assert_eq!(footprint(&api, &redis, &job, READ).await, before, "a refused request changed something");
}

#[tokio::test]
async fn every_route_works_with_its_scope() {
    let redis = RedisServer::start();
    let api = GraphApi::start_with(&redis, SCOPED).await;
    let job = seed(&api).await;
    for r in every_route(&job) {
        let token = match r.needs {
            Needs::Read => READ,
            Needs::Write => WRITE,
            Needs::Admin => ADMIN,
        };
        let (status, body) = api.call(r.method.clone(), &r.path, Some(token), r.body.as_ref()).await;
        assert!((200..300).contains(&status), "{} {} with its scope: {status} {body}", r.method, r.path);
    }
    let (_, stats) = api.call(Method::GET, "/api/graph/stats", Some(READ), None).await;
    assert_eq!(stats["nodes"], 0, "the reset went through: {stats}");
    // Open routes stay open.
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(api.call(Method::GET, path, None, None).await.0, 200, "{path}");
    }
}

#[tokio::test]
async fn the_openapi_document_declares_the_bearer_scheme_and_each_routes_scope() {
    let redis = RedisServer::start();
    let api = GraphApi::start_with(&redis, SCOPED).await;
    let (status, doc) = api.call(Method::GET, "/openapi.json", Some(READ), None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer", "{}", doc["components"]);
    for r in every_route("{id}") {
        if r.path == "/openapi.json" {
            continue;
        }
        let path = r.path.trim_start_matches("/api/graph").split('?').next().unwrap().replace("a%7Ccalls%7Cb", "{id}");
        let path = format!("/api/graph{}", path.replace("/nodes/a", "/nodes/{id}"));
        let op = &doc["paths"][&path][r.method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{} {path} missing", r.method);
        let scope = format!("{:?}", r.needs).to_ascii_lowercase();
        assert_eq!(op["security"], json!([{"bearer": [scope]}]), "{} {path}", r.method);
        for status in ["401", "403", "503"] {
            assert!(op["responses"][status].is_object(), "{} {path} lacks {status}", r.method);
        }
        if r.method == Method::POST {
            assert!(op["responses"]["415"].is_object(), "{} {path} lacks 415", r.method);
        }
    }
    assert!(doc["paths"]["/health"]["get"]["security"].is_null(), "/health is open");
    // The bodyless POSTs say what they take, so a client generated from the document sends `{}` as JSON.
    for path in ["/api/graph/admin/reset", "/api/graph/admin/jobs/{id}/cancel"] {
        let body = &doc["paths"][path]["post"]["requestBody"];
        assert_eq!(body["required"], true, "{path}: {body}");
        assert_eq!(body["content"]["application/json"]["schema"]["maxProperties"], 0, "{path}: {body}");
    }
}

#[tokio::test]
async fn tokens_come_from_files_and_a_missing_file_stops_the_start() {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("graph-api-auth-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("write-tokens");
    std::fs::write(&file, "  from-file \n\nsecond-file-token,third\n").unwrap();
    let path = file.display().to_string();
    let api = GraphApi::start_with(
        &redis,
        &[("CODEGRAPH__AUTH__WRITE_TOKENS_FILE", &path), ("CODEGRAPH__AUTH__READ_TOKENS", READ)],
    )
    .await;
    for (i, token) in ["from-file", "second-file-token", "third"].into_iter().enumerate() {
        let n = node(&format!("f{i}"), "file");
        assert_eq!(api.call(Method::POST, "/api/graph/nodes", Some(token), Some(&n)).await.0, 201, "{token}");
    }
    assert_error(&api.call(Method::GET, "/api/graph/stats", Some("from-file"), None).await, 403, "forbidden");
    drop(api);

    let missing = dir.join("absent").display().to_string();
    let (status, said) = run_refused(
        &redis,
        &[
            ("CODEGRAPH__AUTH__ADMIN_TOKENS_FILE", &missing),
            ("CODEGRAPH__HTTP__ADDR", &format!("127.0.0.1:{}", free_port())),
        ],
    );
    assert!(!status.success(), "{status}: {said}");
    assert!(said.contains("CODEGRAPH__AUTH__ADMIN_TOKENS_FILE") && said.contains(&missing), "{said}");
    assert!(!said.contains("panicked"), "a clear refusal, not a panic: {said}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_legacy_api_token_holds_every_scope() {
    let redis = RedisServer::start();
    let api = GraphApi::start_with(
        &redis,
        &[("CODEGRAPH__API__TOKENS", "old-a, old-b"), ("CODEGRAPH__AUTH__READ_TOKENS", READ)],
    )
    .await;
    assert_eq!(api.call(Method::POST, "/api/graph/nodes", Some("old-b"), Some(&node("a", "file"))).await.0, 201);
    assert_eq!(api.call(Method::GET, "/api/graph/nodes/a", Some("old-a"), None).await.0, 200);
    assert_eq!(api.call(Method::GET, "/openapi.json", Some("old-a"), None).await.0, 200);
    assert_error(
        &api.call(Method::POST, "/api/graph/admin/reset", Some(READ), Some(&json!({}))).await,
        403,
        "forbidden",
    );
    assert_eq!(api.call(Method::POST, "/api/graph/admin/reset", Some("old-a"), Some(&json!({}))).await.0, 200);
}

/// A request as a browser page would send it: a token, a content type, an `Origin`.
async fn browser(
    api: &GraphApi,
    method: Method,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    origin: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = api.http.request(method, api.url(path)).bearer_auth(token).body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn what_a_foreign_page_can_send_changes_nothing() {
    let redis = RedisServer::start();
    let mut env = SCOPED.to_vec();
    env.push(("CODEGRAPH__AUTH__ALLOWED_ORIGINS", "https://dash.example, http://localhost:5173"));
    let api = GraphApi::start_with(&redis, &env).await;
    let job = seed(&api).await;
    let before = footprint(&api, &redis, &job, READ).await;
    let node_c = node("c", "class").to_string();
    let cancel = format!("/api/graph/admin/jobs/{job}/cancel");
    let form = "application/x-www-form-urlencoded";

    // What an HTML form (or a "simple" fetch) can send: a form, text/plain, multipart, or no type at all.
    for (method, path, token, ct, body) in [
        (Method::POST, "/api/graph/nodes", WRITE, Some(form), "id=c&kind=class"),
        (Method::POST, "/api/graph/nodes", WRITE, Some("text/plain"), node_c.as_str()),
        (Method::POST, "/api/graph/nodes", WRITE, None, node_c.as_str()),
        (Method::POST, "/api/graph/batch", WRITE, Some("text/plain"), r#"{"operations":[]}"#),
        (Method::POST, "/api/graph/admin/reanalyze", WRITE, Some(form), "path=/srv/x"),
        (Method::POST, "/api/graph/admin/reset", ADMIN, None, ""),
        (Method::POST, "/api/graph/admin/reset", ADMIN, Some(form), ""),
        (Method::POST, "/api/graph/admin/reset", ADMIN, Some("text/plain"), "{}"),
        (Method::POST, "/api/graph/admin/reset", ADMIN, Some("multipart/form-data; boundary=x"), ""),
        (Method::POST, &cancel, WRITE, None, ""),
        (Method::POST, &cancel, WRITE, Some("text/plain"), "{}"),
    ] {
        let resp = browser(&api, method.clone(), path, token, ct, None, body).await;
        assert_eq!(resp.0, 415, "{method} {path} as {ct:?}: {}", resp.1);
        assert_error(&resp, 415, "unsupported_media_type");
    }
    // A bodyless route takes nothing but `{}`.
    let json = Some("application/json");
    let bodied = browser(&api, Method::POST, "/api/graph/admin/reset", ADMIN, json, None, r#"{"project":"x"}"#).await;
    assert_error(&bodied, 422, "invalid_body");

    // A foreign Origin may not change state, whatever the method, even with a valid token and JSON.
    let rel = "/api/graph/relationships/a%7Ccalls%7Cb";
    for (method, path, token, body) in [
        (Method::POST, "/api/graph/nodes", WRITE, node_c.as_str()),
        (Method::PATCH, "/api/graph/nodes/a", WRITE, r#"{"properties":{"k":1}}"#),
        (Method::DELETE, "/api/graph/nodes/a", WRITE, ""),
        (Method::DELETE, rel, WRITE, ""),
        (Method::POST, "/api/graph/admin/reset", ADMIN, "{}"),
        (Method::POST, &cancel, WRITE, ""),
    ] {
        for origin in ["http://evil.example", "null", "https://dash.example.evil", "http://127.0.0.1:1"] {
            let resp = browser(&api, method.clone(), path, token, json, Some(origin), body).await;
            assert_eq!(resp.0, 403, "{method} {path} from {origin}: {}", resp.1);
            assert_error(&resp, 403, "forbidden_origin");
        }
    }
    assert_eq!(footprint(&api, &redis, &job, READ).await, before, "a refused request changed something");

    // Reads are not state-changing: any Origin may read (with a token).
    let read = browser(&api, Method::GET, "/api/graph/stats", READ, None, Some("http://evil.example"), "").await;
    assert_eq!(read.0, 200, "{}", read.1);
    // The page served with the API (its own origin) and the listed ones may write.
    let own = browser(&api, Method::POST, "/api/graph/nodes", WRITE, json, Some(&api.base), &node_c).await;
    assert_eq!(own.0, 201, "same origin: {}", own.1);
    let patch = r#"{"properties":{"k":2}}"#;
    let listed =
        browser(&api, Method::PATCH, "/api/graph/nodes/a", WRITE, json, Some("https://dash.example"), patch).await;
    assert_eq!(listed.0, 200, "listed origin: {}", listed.1);
    let charset = Some("application/json; charset=utf-8");
    assert_eq!(browser(&api, Method::POST, &cancel, WRITE, charset, Some(&api.base), "").await.0, 202, "empty cancel");
    let reset = browser(&api, Method::POST, "/api/graph/admin/reset", ADMIN, json, None, "").await;
    assert_eq!(reset.0, 200, "an empty JSON reset: {}", reset.1);
}

#[tokio::test]
async fn an_open_api_refuses_to_start_on_a_public_address_unless_open_on_purpose() {
    let redis = RedisServer::start();
    for host in ["0.0.0.0", "[::]"] {
        let addr = format!("{host}:{}", free_port());
        let (status, said) = run_refused(&redis, &[("CODEGRAPH__HTTP__ADDR", &addr)]);
        assert!(!status.success(), "{addr}: {status}");
        assert!(said.contains("CODEGRAPH__AUTH__ALLOW_OPEN=true") && said.contains(&addr), "{addr}: {said}");
        assert!(!said.contains("panicked"), "a clear refusal, not a panic: {said}");
    }
    let open = GraphApi::start_bound(&redis, "0.0.0.0", &[("CODEGRAPH__AUTH__ALLOW_OPEN", "true")]).await;
    assert_eq!(open.call(Method::GET, "/api/graph/stats", None, None).await.0, 200, "open on purpose");
    drop(open);
    let guarded = GraphApi::start_bound(&redis, "0.0.0.0", &[("CODEGRAPH__AUTH__READ_TOKENS", READ)]).await;
    assert_error(&guarded.call(Method::GET, "/api/graph/stats", None, None).await, 401, "unauthorized");
}

/// Holds every Redis command (graph-api's too) for `ms`: requests that need Redis stay in flight until then.
fn pause_redis(redis: &RedisServer, ms: u64) {
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(ms).arg("ALL").query(&mut redis.connection()).unwrap();
}

/// A value of graph-api's `/metrics` (0 when absent).
async fn metric(api: &GraphApi, line_start: &str) -> f64 {
    let text = api.http.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn beyond_the_concurrency_limit_a_request_is_refused_at_once_and_probes_still_answer() {
    let redis = RedisServer::start();
    let api =
        std::sync::Arc::new(GraphApi::start_with(&redis, &[("CODEGRAPH__API__MAX_CONCURRENT_REQUESTS", "2")]).await);
    // Long enough for a slow machine to get two requests in flight and ask a third; CLIENT UNPAUSE would wait
    // for the pause itself, so the held requests end when it expires.
    pause_redis(&redis, 5000);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.get("/api/graph/stats").await })
        })
        .collect();
    let start = Instant::now();
    while metric(&api, "codegraph_api_requests_in_flight ").await < 2.0 {
        assert!(start.elapsed() < Duration::from_secs(4), "the two requests never got in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let r = api.http.get(api.url("/api/graph/projects")).timeout(Duration::from_secs(1)).send().await;
    let r = r.expect("the third request must be answered at once, not held");
    assert!(asked.elapsed() < Duration::from_millis(500), "refused at once: {:?}", asked.elapsed());
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert_eq!(api.get("/health").await.0, 200, "/health is outside the limit");
    assert!(metric(&api, r#"codegraph_api_requests_refused_total{reason="overloaded"}"#).await >= 1.0);

    for h in held {
        let (status, body) = h.await.unwrap();
        assert_eq!(status, 200, "a held request completes once Redis answers: {body}");
    }
    assert_eq!(api.get("/api/graph/stats").await.0, 200, "the slots are free again");
    assert_eq!(metric(&api, "codegraph_api_requests_in_flight ").await, 0.0);
}

#[tokio::test]
async fn a_request_past_its_timeout_is_answered_with_a_503() {
    let redis = RedisServer::start();
    let api = GraphApi::start_with(&redis, &[("CODEGRAPH__API__REQUEST_TIMEOUT_MS", "300")]).await;
    pause_redis(&redis, 4000);
    let asked = Instant::now();
    let (status, body) = api.get("/api/graph/stats").await;
    let took = asked.elapsed();
    assert_eq!((status, &body["error"]["code"]), (503, &json!("timeout")), "{body}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(3000), "answered after {took:?}");
    assert!(metric(&api, r#"codegraph_api_requests_refused_total{reason="timeout"}"#).await >= 1.0);
    // Once Redis answers again, so does the API.
    let start = Instant::now();
    while api.get("/api/graph/stats").await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "the API did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
