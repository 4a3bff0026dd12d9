//! `/api/graph/admin/watch` against the real binary and a real redis-server. A live analysis-worker is stood for
//! by what it writes (its heartbeat in `code_graph:watch:workers` and its roots in `code_graph:watch:roots`), as
//! the worker's own tests check the other half (services/analysis-worker/tests/watches.rs). A watch is recorded,
//! read back, moved and stopped; a path that is relative, outside the roots, missing or not a folder, an unknown
//! watch, and a request with no worker alive are refused with a clear 4xx and change nothing.

use codegraph_shared::{
    names::{WATCHES_KEY, WATCH_ROOTS_KEY, WATCH_WORKERS_KEY},
    testing::RedisServer,
};
use common::{assert_error, GraphApi};
use reqwest::Method;
use serde_json::{json, Value};

mod common;

const WATCH: &str = "/api/graph/admin/watch?project=demo";

/// A fresh folder under the system's temporary one, removed at the end.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("graph-api-watch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir.canonicalize().unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Announces a live worker that may analyse `root`, as the analysis-worker does every tick.
fn announce_worker(redis: &RedisServer, name: &str, root: &std::path::Path) {
    let mut conn = redis.connection();
    let until = codegraph_shared::stream::now_ms() + 600_000;
    let _: () = redis::cmd("ZADD").arg(WATCH_WORKERS_KEY).arg(until).arg(name).query(&mut conn).unwrap();
    let roots = json!([root.display().to_string()]).to_string();
    let _: () = redis::cmd("HSET").arg(WATCH_ROOTS_KEY).arg(name).arg(roots).query(&mut conn).unwrap();
}

/// Every watch key of project `demo` and the index, to show a refusal changed nothing.
fn watch_keys(redis: &RedisServer) -> (Vec<String>, std::collections::HashMap<String, String>) {
    let mut conn = redis.connection();
    let index: Vec<String> = redis::cmd("SMEMBERS").arg(WATCHES_KEY).query(&mut conn).unwrap();
    let watch = redis::cmd("HGETALL").arg("code_graph:{demo}:watch").query(&mut conn).unwrap();
    (index, watch)
}

#[tokio::test]
async fn a_watch_is_recorded_read_moved_and_stopped() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let dir = TempDir::new();
    let root = dir.0.clone();
    std::fs::create_dir_all(root.join("repo/src")).unwrap();
    std::fs::create_dir_all(root.join("other")).unwrap();
    announce_worker(&redis, "worker-1", &root);

    let (status, off) = api.get(WATCH).await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["watching"], false);
    assert_eq!(off["state"], "off");
    assert_eq!(off["path"], Value::Null);

    // `.` and `..` are resolved by name; no worker holds the watch yet.
    let asked = format!("{}/repo/src/..", root.display());
    let (status, on) = api.post(WATCH, json!({"path": asked})).await;
    assert_eq!(status, 200, "{on}");
    assert_eq!(on["project"], "demo");
    assert_eq!(on["watching"], true);
    assert_eq!(on["path"], root.join("repo").display().to_string());
    assert_eq!(on["state"], "waiting");
    assert_eq!(on["holder"], Value::Null);
    assert!(on["requested_ms"].as_u64().is_some(), "{on}");
    let (index, watch) = watch_keys(&redis);
    assert_eq!(index, ["demo"]);
    assert_eq!(watch["path"], root.join("repo").display().to_string());

    // A holder's report (as the worker writes it, under the lease's generation) shows through.
    let mut conn = redis.connection();
    let _: () = redis::cmd("SET").arg("code_graph:{demo}:watch:owner").arg("worker-1").query(&mut conn).unwrap();
    let _: () = redis::cmd("SET").arg("code_graph:{demo}:watch:owner:generation").arg(4).query(&mut conn).unwrap();
    let run = json!({"job_id": "watch-1-2", "outcome": "completed", "changed_files": 1, "duration_ms": 9, "finished_ms": 5, "error": null});
    let _: () = redis::cmd("HSET")
        .arg("code_graph:{demo}:watch:status")
        .arg(&[
            ("worker", "worker-1"),
            ("generation", "4"),
            ("since_ms", "3"),
            ("path", &root.join("repo").display().to_string()),
            ("state", "watching"),
            ("pending", "2"),
            ("last_change_ms", "5"),
            ("last_change_files", r#"["src/a.py"]"#),
            ("last_run", &run.to_string()),
            ("error", ""),
        ])
        .query(&mut conn)
        .unwrap();
    let (_, held) = api.get(WATCH).await;
    assert_eq!(held["state"], "watching", "{held}");
    assert_eq!(held["holder"], json!({"worker": "worker-1", "generation": 4, "since_ms": 3}));
    assert_eq!(held["pending_changes"], 2);
    assert_eq!(held["last_change_ms"], 5);
    assert_eq!(held["last_change_files"], json!(["src/a.py"]));
    assert_eq!(held["last_run"], run);
    assert_eq!(held["error"], Value::Null);

    // Moved to another folder: until the holder reports on it, the watch waits.
    let (status, moved) = api.post(WATCH, json!({"path": root.join("other")})).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["path"], root.join("other").display().to_string());
    assert_eq!(moved["state"], "waiting");

    let (status, stopped) = api.send(Method::DELETE, WATCH, Value::Null).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["watching"], false);
    assert_eq!(stopped["state"], "off");
    assert_eq!(watch_keys(&redis), (vec![], Default::default()));
    assert_error(&api.send(Method::DELETE, WATCH, Value::Null).await, 404, "not_watched");
}

#[tokio::test]
async fn bad_watch_requests_are_refused_and_change_nothing() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let dir = TempDir::new();
    let root = dir.0.clone();
    let allowed = root.join("allowed");
    std::fs::create_dir_all(allowed.join("repo")).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    std::fs::write(allowed.join("file.txt"), "x").unwrap();
    std::os::unix::fs::symlink(root.join("outside"), allowed.join("link-out")).unwrap();

    // No worker alive: nobody could check the path or watch it.
    assert_error(&api.post(WATCH, json!({"path": allowed.join("repo")})).await, 409, "no_worker");
    assert_eq!(watch_keys(&redis), (vec![], Default::default()));

    announce_worker(&redis, "worker-1", &allowed);
    // An existing watch, which no refusal may disturb.
    assert_eq!(api.post(WATCH, json!({"path": allowed.join("repo")})).await.0, 200);
    let before = watch_keys(&redis);

    let cases: Vec<(Value, &str)> = vec![
        (json!({"path": "relative/repo"}), "absolute"),
        (json!({"path": ""}), "1 to 4096"),
        (json!({"path": root.join("outside")}), "outside the allowed roots"),
        (json!({"path": format!("{}/../outside", allowed.display())}), "outside the allowed roots"),
        (json!({"path": allowed.join("link-out")}), "outside the allowed roots"),
        (json!({"path": allowed.join("missing")}), "does not exist"),
        (json!({"path": allowed.join("file.txt")}), "not a directory"),
    ];
    for (body, says) in cases {
        let resp = api.post(WATCH, body.clone()).await;
        assert_error(&resp, 422, "invalid_path");
        let message = resp.1["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
        assert_eq!(watch_keys(&redis), before, "{body} changed the watch");
    }
    let resp = api.post(WATCH, json!({"path": root.join("outside")})).await;
    assert!(resp.1["error"]["message"].as_str().unwrap().contains(&allowed.display().to_string()), "names the roots");
    assert_error(&api.post(WATCH, json!({"path": "/x", "mode": "full"})).await, 422, "invalid_body");
    assert_error(
        &api.post("/api/graph/admin/watch?project=no/slash", json!({"path": "/x"})).await,
        400,
        "invalid_project",
    );
    assert_error(
        &api.send(Method::DELETE, "/api/graph/admin/watch?project=unknown", Value::Null).await,
        404,
        "not_watched",
    );
    assert_eq!(watch_keys(&redis), before);

    // A foreign page may not start a watch (the CSRF guard of every state-changing route).
    let r = api
        .http
        .post(api.url(WATCH))
        .header("origin", "https://evil.example")
        .json(&json!({"path": allowed.join("repo")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}
