//! `/openapi.json` declares the limits the server enforces with the numbers of the constants that enforce them
//! (`routes/declared_limits.rs`), and the server answers at those numbers as the document says: accepted at the
//! limit, refused one past it.

mod common;

use codegraph_shared::{
    graph::{MAX_FILE_LEN, MAX_ID_LEN, MAX_LABEL_LEN, MAX_NAME_LEN},
    project::MAX_PROJECT_LEN,
    testing::RedisServer,
};
use common::{assert_error, GraphApi};
use graph_api::routes::{
    admin::{MAX_JOB_ID_LEN, MAX_PATH_LEN},
    intel::{CALL_DEPTH, IMPACT_DEPTH, PATH_DEPTH},
    queries::{MAX_SEARCH_LEN, NEIGHBOR_DEPTH},
};
use serde_json::{json, Value};

/// The schema of parameter `name` of `method path`.
fn parameter<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    let params = doc["paths"][path][method]["parameters"].as_array().unwrap_or_else(|| panic!("{method} {path}"));
    &params.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{method} {path} has no {name}"))["schema"]
}

#[track_caller]
fn assert_length(schema: &Value, min: usize, max: usize, what: &str) {
    assert_eq!(schema["maxLength"], json!(max), "{what}: {schema}");
    assert_eq!(schema.get("minLength").cloned().unwrap_or(json!(0)), json!(min), "{what}: {schema}");
}

#[tokio::test]
async fn the_document_declares_the_limits_with_the_constants_numbers() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    let schemas = &doc["components"]["schemas"];
    let field = |schema: &str, field: &str| schemas[schema]["properties"][field].clone();

    for (schema, name) in [
        ("Node", "id"),
        ("Relationship", "id"),
        ("Relationship", "source"),
        ("Relationship", "target"),
        ("RelationshipInput", "id"),
        ("RelationshipInput", "source"),
        ("RelationshipInput", "target"),
    ] {
        let s = field(schema, name);
        assert_length(&s, 1, MAX_ID_LEN, &format!("{schema}.{name}"));
        assert_eq!(s["pattern"], r"^[^\x00-\x1F\x7F-\x9F]*$", "{schema}.{name}: no control characters");
    }
    for (schema, name) in [
        ("Node", "kind"),
        ("NodePatch", "kind"),
        ("Relationship", "type"),
        ("RelationshipInput", "type"),
        ("RelationshipPatch", "type"),
    ] {
        let s = field(schema, name);
        assert_length(&s, 1, MAX_LABEL_LEN, &format!("{schema}.{name}"));
        assert_eq!(s["pattern"], "^[A-Za-z_][A-Za-z0-9_]*$", "{schema}.{name}");
    }
    for schema in ["Node", "NodePatch"] {
        assert_length(&field(schema, "name"), 0, MAX_NAME_LEN, schema);
        assert_length(&field(schema, "file"), 0, MAX_FILE_LEN, schema);
        for line in ["line_start", "line_end"] {
            assert_eq!(field(schema, line)["maximum"], json!(u32::MAX), "{schema}.{line}");
        }
    }
    for schema in ["ReanalyzeRequest", "WatchRequest"] {
        assert_length(&field(schema, "path"), 1, MAX_PATH_LEN, schema);
        assert!(field(schema, "path")["pattern"].as_str().is_some_and(|p| p.starts_with("^/")), "{schema}: absolute");
    }

    // Every parameter says what it may be: strings a length, a pattern or a list; integers a range. The
    // exceptions are filters the server compares and never refuses.
    let free = ["kind", "type"];
    let mut projects = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for p in operation["parameters"].as_array().into_iter().flatten() {
                let (name, s) = (p["name"].as_str().unwrap(), &p["schema"]);
                let what = format!("{method} {path} {name}: {s}");
                if name == "project" {
                    projects += 1;
                    assert_length(s, 1, MAX_PROJECT_LEN, &what);
                    assert_eq!(s["pattern"], "^[A-Za-z0-9._-]+$", "{what}");
                }
                match s["type"].as_str() {
                    Some("string") if !free.contains(&name) => {
                        assert!(["maxLength", "pattern", "enum"].iter().any(|k| s.get(k).is_some()), "{what}")
                    }
                    Some("integer") | Some("number") => assert!(s.get("maximum").is_some(), "{what}"),
                    _ => {}
                }
            }
        }
    }
    assert!(projects > 20, "the project parameter is on most operations ({projects})");

    for path in ["/api/graph/nodes/{id}", "/api/graph/relationships/{id}", "/api/graph/nodes/{id}/neighbors"] {
        assert_length(parameter(&doc, path, "get", "id"), 1, MAX_ID_LEN, path);
    }
    assert_length(parameter(&doc, "/api/graph/admin/jobs/{id}", "get", "id"), 1, MAX_JOB_ID_LEN, "job id");
    assert_length(parameter(&doc, "/api/graph/nodes/search", "get", "q"), 1, MAX_SEARCH_LEN, "q");
    assert_length(parameter(&doc, "/api/graph/callers", "get", "symbol"), 1, MAX_ID_LEN, "symbol");
    for (path, name, range) in [
        ("/api/graph/nodes/{id}/neighbors", "depth", NEIGHBOR_DEPTH),
        ("/api/graph/callers", "depth", CALL_DEPTH),
        ("/api/graph/callees", "depth", CALL_DEPTH),
        ("/api/graph/impact", "depth", IMPACT_DEPTH),
        ("/api/graph/path", "max_depth", PATH_DEPTH),
    ] {
        let s = parameter(&doc, path, "get", name);
        assert_eq!((&s["minimum"], &s["maximum"]), (&json!(range.start()), &json!(range.end())), "{path} {name}");
    }
    let direction = parameter(&doc, "/api/graph/nodes/{id}/neighbors", "get", "direction");
    assert_eq!(direction["enum"], json!(["out", "in", "both"]), "the direction is inline, not a dangling $ref");
    assert_eq!(
        field("BatchRequest", "operations")["maxItems"],
        json!(graph_api::settings::Settings::default().api.max_batch_operations)
    );
}

/// The numbers the document gives are the server's: one past each is refused, each itself is not.
#[tokio::test]
async fn the_server_refuses_one_past_each_declared_limit() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let node = |id: &str, kind: &str| json!({"id": id, "kind": kind, "name": "n"});

    let longest_id = "i".repeat(MAX_ID_LEN);
    assert_eq!(api.post("/api/graph/nodes", node(&longest_id, "function")).await.0, 201);
    assert_error(
        &api.post("/api/graph/nodes", node(&"i".repeat(MAX_ID_LEN + 1), "function")).await,
        422,
        "invalid_entity",
    );
    assert_error(&api.post("/api/graph/nodes", node("tab\tid", "function")).await, 422, "invalid_entity");
    assert_eq!(api.post("/api/graph/nodes", node("k", &"k".repeat(MAX_LABEL_LEN))).await.0, 201);
    assert_error(
        &api.post("/api/graph/nodes", node("k2", &"k".repeat(MAX_LABEL_LEN + 1))).await,
        422,
        "invalid_entity",
    );

    let project = |name: &str| format!("/api/graph/stats?project={name}");
    assert_eq!(api.get(&project(&"p".repeat(MAX_PROJECT_LEN))).await.0, 200);
    assert_eq!(api.get(&project(&"p".repeat(MAX_PROJECT_LEN + 1))).await.0, 400);

    let search = |q: &str| format!("/api/graph/nodes/search?q={q}");
    assert_eq!(api.get(&search(&"q".repeat(MAX_SEARCH_LEN))).await.0, 200);
    assert_error(&api.get(&search(&"q".repeat(MAX_SEARCH_LEN + 1))).await, 400, "invalid_query");

    let depth = |d: u32| format!("/api/graph/nodes/{longest_id}/neighbors?depth={d}");
    assert_eq!(api.get(&depth(*NEIGHBOR_DEPTH.end())).await.0, 200);
    assert_error(&api.get(&depth(NEIGHBOR_DEPTH.end() + 1)).await, 400, "invalid_query");
    assert_error(&api.get(&depth(NEIGHBOR_DEPTH.start() - 1)).await, 400, "invalid_query");

    let impact = |d: u32| format!("/api/graph/impact?symbol=k&depth={d}");
    assert_eq!(api.get(&impact(*IMPACT_DEPTH.end())).await.0, 200);
    assert_error(&api.get(&impact(IMPACT_DEPTH.end() + 1)).await, 400, "invalid_query");
    let symbol = |s: &str| format!("/api/graph/callers?symbol={s}");
    assert_eq!(api.get(&symbol(&longest_id)).await.0, 200);
    assert_error(&api.get(&symbol(&"i".repeat(MAX_ID_LEN + 1))).await, 400, "invalid_query");

    let reanalyze = |path: String| api.post("/api/graph/admin/reanalyze", json!({ "path": path }));
    assert_eq!(reanalyze(format!("/{}", "a".repeat(MAX_PATH_LEN - 1))).await.0, 202);
    assert_error(&reanalyze(format!("/{}", "a".repeat(MAX_PATH_LEN))).await, 422, "invalid_path");
    assert_error(&reanalyze("relative".into()).await, 422, "invalid_path");

    // One past the largest u32 is refused where the document gives the u32's largest as the maximum.
    let lines = |n: u64| json!({"id": "l", "kind": "function", "name": "l", "line_start": n, "line_end": n});
    assert_eq!(api.post("/api/graph/nodes", lines(u64::from(u32::MAX))).await.0, 201);
    assert_error(&api.post("/api/graph/nodes", lines(u64::from(u32::MAX) + 1)).await, 422, "invalid_body");
}
