//! graph-api over HTTP against a real redis-server: every route, success and failure, and the events each
//! mutation leaves on the stream and the channel.

mod common;

use codegraph_shared::{event::EventType, testing::RedisServer};
use common::{assert_error, node, stream_events, GraphApi};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn node_lifecycle_writes_state_and_ordered_events() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let mut live = redis::Client::open(redis.url()).unwrap().get_async_pubsub().await.unwrap();
    live.subscribe("code_graph:{default}:events").await.unwrap();

    let created = api.post("/api/graph/nodes", node("py:a.py:f", "function")).await;
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(created.1["status"], "created");
    assert_eq!(created.1["version"], 1);
    assert_error(&api.post("/api/graph/nodes", node("py:a.py:f", "function")).await, 409, "conflict");

    let got = api.get("/api/graph/nodes/py:a.py:f").await;
    assert_eq!((got.0, &got.1["name"], &got.1["version"]), (200, &json!("py:a.py:f"), &json!(1)));

    let patched = api
        .send(Method::PATCH, "/api/graph/nodes/py:a.py:f", json!({"name": "g", "properties": {"async": true, "x": 1}}))
        .await;
    assert_eq!((patched.0, &patched.1["version"]), (200, &json!(2)), "{}", patched.1);
    let patched = api.send(Method::PATCH, "/api/graph/nodes/py:a.py:f", json!({"properties": {"x": null}})).await;
    assert_eq!(patched.1["version"], 3);
    let got = api.get("/api/graph/nodes/py:a.py:f").await;
    assert_eq!(got.1["properties"], json!({"async": true}));
    assert_eq!(got.1["name"], "g");

    let deleted = api.send(Method::DELETE, "/api/graph/nodes/py:a.py:f", Value::Null).await;
    assert_eq!((deleted.0, &deleted.1["status"], &deleted.1["version"]), (200, &json!("deleted"), &json!(4)));
    assert_error(&api.get("/api/graph/nodes/py:a.py:f").await, 404, "not_found");
    assert_error(&api.send(Method::DELETE, "/api/graph/nodes/py:a.py:f", Value::Null).await, 404, "not_found");
    assert_error(&api.send(Method::PATCH, "/api/graph/nodes/nope", json!({"name": "x"})).await, 404, "not_found");

    let events = stream_events(&redis, "default");
    let summary: Vec<(EventType, u64)> = events.iter().map(|e| (e.event_type, e.version)).collect();
    assert_eq!(
        summary,
        [
            (EventType::NodeAdded, 1),
            (EventType::NodeUpdated, 2),
            (EventType::NodeUpdated, 3),
            (EventType::NodeDeleted, 4)
        ]
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert!(events.iter().all(|e| e.project == "default" && e.entity.kind == "node" && e.entity.id == "py:a.py:f"));
    assert_eq!(events[1].data["name"], "g");

    // Each single mutation is one change set of one change, published as such.
    let mut messages = live.on_message();
    for expected in &events {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), messages.next()).await.unwrap().unwrap();
        let payload: String = msg.get_payload().unwrap();
        assert_eq!(codegraph_shared::event::decode_published(&payload).unwrap(), std::slice::from_ref(expected));
    }
}

#[tokio::test]
async fn relationships_need_both_ends_and_go_with_their_nodes() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    api.post("/api/graph/nodes", node("a", "function")).await;

    let dangling = api.post("/api/graph/relationships", json!({"type": "calls", "source": "a", "target": "b"})).await;
    assert_error(&dangling, 422, "dangling_relationship");
    assert_eq!(stream_events(&redis, "default").len(), 1, "a refused relationship leaves no event");

    api.post("/api/graph/nodes", node("b", "function")).await;
    let made = api.post("/api/graph/relationships", json!({"type": "calls", "source": "a", "target": "b"})).await;
    assert_eq!(made.0, 201, "{}", made.1);
    assert_eq!(made.1["id"], "a|calls|b");
    let got = api.get("/api/graph/relationships/a%7Ccalls%7Cb").await;
    assert_eq!((got.0, &got.1["source"], &got.1["target"]), (200, &json!("a"), &json!("b")), "{}", got.1);
    let patched = api
        .send(Method::PATCH, "/api/graph/relationships/a%7Ccalls%7Cb", json!({"properties": {"confidence": 0.9}}))
        .await;
    assert_eq!(patched.1["version"], 2, "{}", patched.1);
    assert_error(
        &api.send(Method::PATCH, "/api/graph/relationships/a%7Ccalls%7Cb", json!({"source": "b"})).await,
        422,
        "invalid_body",
    );

    let deleted = api.send(Method::DELETE, "/api/graph/nodes/b", Value::Null).await;
    assert_eq!(deleted.1["cascaded"], 1, "{}", deleted.1);
    let types: Vec<EventType> = stream_events(&redis, "default").iter().map(|e| e.event_type).collect();
    assert_eq!(
        &types[types.len() - 2..],
        [EventType::RelationshipDeleted, EventType::NodeDeleted],
        "each relationship gets its own event, before its node's"
    );
    assert_error(&api.get("/api/graph/relationships/a%7Ccalls%7Cb").await, 404, "not_found");
    assert_error(&api.send(Method::DELETE, "/api/graph/relationships/zz", Value::Null).await, 404, "not_found");
}

#[tokio::test]
async fn batch_applies_in_order_and_skips_unchanged_upserts() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let ops = json!({"operations": [
        {"op": "upsert_node", "node": node("m", "module")},
        {"op": "upsert_node", "node": node("c", "class")},
        {"op": "upsert_relationship", "relationship": {"id": "m-c", "type": "defines", "source": "m", "target": "c"}},
        {"op": "upsert_node", "node": node("tmp", "function")},
        {"op": "delete_node", "id": "tmp"},
        {"op": "delete_relationship", "id": "never-was"}
    ]});
    let (status, body) = api.post("/api/graph/batch?project=demo", ops.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], 6);
    assert_eq!(body["events"], 5);
    assert_eq!(body["change_sets"].as_array().unwrap().len(), 1, "one chunk, one change set: {body}");
    assert_eq!(body["change_sets"][0], body["last_event_id"]);
    assert_eq!(
        (&body["results"][2]["event_id"], &body["results"][2]["change_index"]),
        (&body["change_sets"][0], &json!(2))
    );
    assert_eq!(body["counts"], json!({"created": 4, "deleted": 1, "not_found": 1}));
    assert_eq!(body["results"][2]["id"], "m-c");
    assert_eq!(body["results"][5]["status"], "not_found");

    // The same batch again: the upserts change nothing and produce no events; tmp is created and deleted again.
    let (_, again) = api.post("/api/graph/batch?project=demo", ops).await;
    assert_eq!(again["counts"]["unchanged"], 3, "{again}");
    assert_eq!(again["events"], 2);
    let events = stream_events(&redis, "demo");
    assert_eq!(events.len(), 7);
    assert_eq!(events.last().unwrap().version, 4, "tmp: added, deleted, added, deleted");
    assert!(stream_events(&redis, "default").is_empty(), "events stay in their project");

    // A chunk that is refused leaves nothing of itself behind.
    let refused = api
        .post(
            "/api/graph/batch?project=demo",
            json!({"operations": [
                {"op": "upsert_node", "node": node("new", "function")},
                {"op": "upsert_relationship", "relationship": {"type": "calls", "source": "new", "target": "ghost"}}
            ]}),
        )
        .await;
    assert_error(&refused, 422, "dangling_relationship");
    assert_error(&api.get("/api/graph/nodes/new?project=demo").await, 404, "not_found");
    assert_eq!(stream_events(&redis, "demo").len(), 7);
}

#[tokio::test]
async fn a_batch_larger_than_one_call_is_several_change_sets_in_order() {
    let redis = RedisServer::start();
    let api = GraphApi::start_with(&redis, &[("CODEGRAPH__API__CHUNK_SIZE", "3")]).await;
    api.post("/api/graph/nodes?project=demo", node("n1", "function")).await;
    let before = stream_events(&redis, "demo").len();
    // n1 is already as upserted: it changes nothing and is in no set; the chunk of n4..n6 is its own set.
    let ops: Vec<Value> =
        (1..=7).map(|i| json!({"op": "upsert_node", "node": node(&format!("n{i}"), "function")})).collect();
    let (status, body) = api.post("/api/graph/batch?project=demo", json!({"operations": ops})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["chunks"], &body["events"]), (&json!(3), &json!(6)), "{body}");
    let sets: Vec<String> = serde_json::from_value(body["change_sets"].clone()).unwrap();
    assert_eq!(sets.len(), 3, "{body}");
    assert_eq!(body["results"][0]["status"], "unchanged");
    assert!(body["results"][0].get("event_id").is_none(), "{body}");

    let events = &stream_events(&redis, "demo")[before..];
    let got: Vec<(String, u32, &str)> =
        events.iter().map(|e| (e.id.to_string(), e.index, e.entity.id.as_str())).collect();
    let want: Vec<(String, u32, &str)> = vec![
        (sets[0].clone(), 0, "n2"),
        (sets[0].clone(), 1, "n3"),
        (sets[1].clone(), 0, "n4"),
        (sets[1].clone(), 1, "n5"),
        (sets[1].clone(), 2, "n6"),
        (sets[2].clone(), 0, "n7"),
    ];
    assert_eq!(got, want, "each chunk its own entry; together the batch's changes, in order");
    for (i, r) in body["results"].as_array().unwrap().iter().enumerate().skip(1) {
        let e = &events[i - 1];
        assert_eq!(
            (r["event_id"].as_str(), r["change_index"].as_u64()),
            (Some(e.id.to_string().as_str()), Some(u64::from(e.index)))
        );
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let redis = RedisServer::start();
    let api = GraphApi::start_with(
        &redis,
        &[("CODEGRAPH__API__MAX_BATCH_OPERATIONS", "10"), ("CODEGRAPH__API__MAX_BODY_BYTES", "20000")],
    )
    .await;
    let post = |body: &'static [u8]| api.raw(Method::POST, "/api/graph/nodes", "application/json", body.to_vec());

    assert_error(&post(b"{not json").await, 400, "invalid_json");
    assert_error(&post(br#"{"id": 5, "kind": "function", "name": "x"}"#).await, 422, "invalid_body");
    assert_error(&post(br#"{"id": "a", "kind": "function"}"#).await, 422, "invalid_body");
    assert_error(&post(br#"{"id": "a", "kind": "function", "name": "a", "colour": 1}"#).await, 422, "invalid_body");
    // A struct's fields as an array (serde's derive takes them so) are not an object.
    assert_error(&post(br#"["a", "function", "a"]"#).await, 422, "invalid_body");
    assert_error(&post(b"null").await, 422, "invalid_body");
    let patch =
        api.raw(Method::PATCH, "/api/graph/relationships/r", "application/json", b"[null, null]".to_vec()).await;
    assert_error(&patch, 422, "invalid_body");
    assert_error(&post(br#"{"id": "a", "kind": "not a kind", "name": "a"}"#).await, 422, "invalid_entity");
    assert_error(&post(br#"{"id": "", "kind": "file", "name": "a"}"#).await, 422, "invalid_entity");
    assert_error(
        &api.raw(Method::POST, "/api/graph/nodes", "text/plain", br#"{"id":"a","kind":"file","name":"a"}"#.to_vec())
            .await,
        415,
        "unsupported_media_type",
    );
    assert_error(&api.post("/api/graph/nodes?project=bad%20name", node("a", "file")).await, 400, "invalid_project");
    assert_error(&api.get("/api/graph/stats?project=").await, 400, "invalid_project");
    assert_error(&api.get(&format!("/api/graph/stats?project={}", "x".repeat(65))).await, 400, "invalid_project");

    let unknown_op = api.post("/api/graph/batch", json!({"operations": [{"op": "explode", "id": "a"}]})).await;
    assert_error(&unknown_op, 422, "invalid_body");
    assert!(unknown_op.1["error"]["message"].as_str().unwrap().contains("explode"), "{}", unknown_op.1);
    let many: Vec<Value> = (0..11).map(|i| json!({"op": "delete_node", "id": format!("n{i}")})).collect();
    assert_error(&api.post("/api/graph/batch", json!({"operations": many})).await, 413, "batch_too_large");
    let huge = json!({"id": "a", "kind": "file", "name": "x".repeat(30_000)});
    assert_error(&api.post("/api/graph/nodes", huge).await, 413, "payload_too_large");
    let bad_entity_late = json!({"operations": [
        {"op": "upsert_node", "node": node("ok", "file")},
        {"op": "upsert_node", "node": {"id": "bad", "kind": "9lives", "name": "b"}}
    ]});
    let refused = api.post("/api/graph/batch", bad_entity_late).await;
    assert_error(&refused, 422, "invalid_entity");
    assert!(refused.1["error"]["message"].as_str().unwrap().starts_with("operation 1"), "{}", refused.1);

    assert_error(&api.get("/api/graph/nodes/search?q=").await, 400, "invalid_query");
    assert_error(&api.get("/api/graph/nodes/search").await, 400, "invalid_query");
    assert_error(&api.get("/api/graph/subgraph?cursor=abc").await, 400, "invalid_cursor");
    assert_error(&api.get("/api/graph/snapshot?cursor=x.2").await, 400, "invalid_cursor");
    assert_error(&api.get("/api/graph/subgraph?limit=-1").await, 400, "invalid_query");
    assert_error(&api.get("/api/graph/nowhere").await, 404, "no_route");

    assert!(stream_events(&redis, "default").is_empty(), "no bad request wrote an event");
    let (_, stats) = api.get("/api/graph/stats").await;
    assert_eq!((stats["nodes"].as_u64(), stats["relationships"].as_u64()), (Some(0), Some(0)), "{stats}");
}

#[tokio::test]
async fn queries_stats_search_neighbors_pages_and_snapshot() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let mut ops = vec![json!({"op": "upsert_node", "node": node("root", "module")})];
    for i in 0..250 {
        let kind = if i % 2 == 0 { "function" } else { "class" };
        ops.push(
            json!({"op": "upsert_node", "node": {"id": format!("n{i}"), "kind": kind, "name": format!("item_{i}")}}),
        );
        ops.push(json!({"op": "upsert_relationship", "relationship": {"type": "contains", "source": "root", "target": format!("n{i}")}}));
        if i > 0 {
            ops.push(json!({"op": "upsert_relationship", "relationship": {"type": "calls", "source": format!("n{}", i - 1), "target": format!("n{i}")}}));
        }
    }
    let (status, body) = api.post("/api/graph/batch", json!({"operations": ops})).await;
    assert_eq!(status, 200, "{body}");

    let (_, stats) = api.get("/api/graph/stats").await;
    assert_eq!(stats["nodes"], 251);
    assert_eq!(stats["relationships"], 499);
    assert_eq!(stats["node_kinds"], json!({"class": 125, "function": 125, "module": 1}));
    assert_eq!(stats["relationship_types"], json!({"calls": 249, "contains": 250}));
    assert_eq!(stats["last_event_id"], body["last_event_id"]);

    let (_, found) = api.get("/api/graph/nodes/search?q=ITEM_12&limit=5").await;
    let names: Vec<&str> = found["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names[0], "item_12", "the exact match ranks first: {names:?}");
    assert_eq!(names.len(), 5);
    assert!(names.iter().all(|n| n.starts_with("item_12")));
    let (_, classes) = api.get("/api/graph/nodes/search?q=item_1&kind=class&limit=100").await;
    assert!(classes["nodes"].as_array().unwrap().iter().all(|n| n["kind"] == "class"));

    let (_, hood) = api.get("/api/graph/nodes/n5/neighbors?direction=out&type=calls&depth=2").await;
    let ids: Vec<&str> = hood["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["n6", "n7"], "{hood}");
    let (_, both) = api.get("/api/graph/nodes/n5/neighbors").await;
    assert_eq!(both["nodes"].as_array().unwrap().len(), 3, "root, n4 and n6: {both}");
    assert_error(&api.get("/api/graph/nodes/nope/neighbors").await, 404, "not_found");
    assert_error(&api.get("/api/graph/nodes/n5/neighbors?depth=9").await, 400, "invalid_query");

    // Paging covers every node and relationship exactly once.
    let (mut node_ids, mut rel_ids) = (std::collections::BTreeSet::new(), Vec::new());
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/graph/subgraph?limit=40&cursor={c}"),
            None => "/api/graph/subgraph?limit=40".into(),
        };
        let (status, page) = api.get(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for n in page["nodes"].as_array().unwrap() {
            node_ids.insert(n["id"].as_str().unwrap().to_owned());
        }
        rel_ids.extend(page["relationships"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(pages > 3, "the graph came in pages");
    assert_eq!(node_ids.len(), 251);
    let unique: std::collections::BTreeSet<_> = rel_ids.iter().collect();
    assert_eq!((rel_ids.len(), unique.len()), (499, 499));

    // Snapshot: `since` is the stream position it is consistent with, the same on every page.
    let (_, first) = api.get("/api/graph/snapshot?limit=100").await;
    assert_eq!(first["since"], body["last_event_id"]);
    let next = first["next_cursor"].as_str().unwrap();
    api.post("/api/graph/nodes", node("late", "file")).await;
    let (_, second) = api.get(&format!("/api/graph/snapshot?limit=100&cursor={next}")).await;
    assert_eq!(second["since"], first["since"]);

    let (_, projects) = api.get("/api/graph/projects").await;
    assert_eq!(projects["projects"], json!(["default"]));
}

#[tokio::test]
async fn jobs_are_queued_looked_up_and_cancelled() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let mut cancels = redis::Client::open(redis.url()).unwrap().get_async_pubsub().await.unwrap();
    cancels.subscribe(codegraph_shared::names::JOBS_CANCEL_CHANNEL).await.unwrap();

    let (status, job) =
        api.post("/api/graph/admin/reanalyze?project=demo", json!({"path": "/srv/repo", "mode": "full"})).await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let mut conn = redis.connection();
    let entries: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(codegraph_shared::names::JOBS_STREAM).arg("-").arg("+").query(&mut conn).unwrap();
    assert_eq!(entries.ids.len(), 1);
    let entry = &entries.ids[0];
    assert_eq!(entry.get::<String>("job_id").unwrap(), job_id);
    assert_eq!(entry.get::<String>("mode").unwrap(), "full");
    assert_eq!(entry.get::<String>("project").unwrap(), "demo");

    let (_, view) = api.get(&format!("/api/graph/admin/jobs/{job_id}")).await;
    assert_eq!((view["status"].as_str(), view["path"].as_str()), (Some("queued"), Some("/srv/repo")), "{view}");
    let (status, cancelled) = api.post(&format!("/api/graph/admin/jobs/{job_id}/cancel"), json!({})).await;
    assert_eq!((status, &cancelled["cancel_requested"]), (202, &json!(true)), "{cancelled}");
    let msg =
        tokio::time::timeout(std::time::Duration::from_secs(5), cancels.on_message().next()).await.unwrap().unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), job_id);

    let _: () = redis::cmd("HSET")
        .arg(format!("code_graph:{{demo}}:job:{job_id}"))
        .arg("status")
        .arg("completed")
        .query(&mut conn)
        .unwrap();
    assert_error(&api.post(&format!("/api/graph/admin/jobs/{job_id}/cancel"), json!({})).await, 409, "job_finished");
    assert_error(&api.get("/api/graph/admin/jobs/unknown").await, 404, "not_found");
    assert_error(&api.post("/api/graph/admin/reanalyze", json!({"path": "relative/dir"})).await, 422, "invalid_path");
    assert_error(
        &api.post("/api/graph/admin/reanalyze", json!({"path": "/x", "mode": "sideways"})).await,
        422,
        "invalid_body",
    );
}

#[tokio::test]
async fn a_project_s_jobs_are_listed_newest_first_whoever_ran_them() {
    use codegraph_shared::{
        functions::{GraphWriter, PublishMode},
        names::RedisNames,
        project::ProjectName,
    };
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let mut queued = Vec::new();
    for (project, path) in [("demo", "/srv/one"), ("demo", "/srv/two"), ("other", "/srv/else")] {
        let (status, job) =
            api.post(&format!("/api/graph/admin/reanalyze?project={project}"), json!({"path": path})).await;
        assert_eq!(status, 202, "{job}");
        queued.push(job["job_id"].as_str().unwrap().to_owned());
    }
    // A job the worker runs on its own (command line, watch run) is known from its first event.
    let names = RedisNames::new(&ProjectName::parse("demo").unwrap());
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let writer = GraphWriter::new(names.clone(), 10_000, PublishMode::Classic);
    let started = json!({"job_id": "cli-1", "path": "/srv/cli"});
    writer.emit(&mut conn, EventType::AnalysisStarted, "job", "cli-1", &started, None).await.unwrap();

    let (status, list) = api.get("/api/graph/admin/jobs?project=demo").await;
    assert_eq!(status, 200, "{list}");
    let jobs = list["jobs"].as_array().unwrap();
    let mut ids: Vec<&str> = jobs.iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    let created: Vec<&str> = jobs.iter().map(|j| j["created_at"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first: {list}");
    let cli = jobs.iter().find(|j| j["job_id"] == "cli-1").expect("the worker's own job is listed");
    assert_eq!((&cli["status"], &cli["project"]), (&json!("running"), &json!("demo")), "{cli}");
    ids.sort_unstable();
    let mut expected = vec![queued[0].as_str(), queued[1].as_str(), "cli-1"];
    expected.sort_unstable();
    assert_eq!(ids, expected, "only this project's jobs: {list}");
    let (_, one) = api.get("/api/graph/admin/jobs?project=demo&limit=1").await;
    assert_eq!(one["jobs"].as_array().unwrap().len(), 1, "{one}");
    let (_, other) = api.get("/api/graph/admin/jobs?project=other").await;
    assert_eq!(other["jobs"][0]["job_id"], json!(queued[2]), "{other}");

    // A job whose record expired leaves the listing and the index.
    let _: () = redis::cmd("DEL").arg(names.job(&queued[0])).query_async(&mut conn).await.unwrap();
    let (_, list) = api.get("/api/graph/admin/jobs?project=demo").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2, "{list}");
    let score: Option<f64> =
        redis::cmd("ZSCORE").arg(names.recent_jobs()).arg(&queued[0]).query_async(&mut conn).await.unwrap();
    assert_eq!(score, None);
    assert_error(&api.get("/api/graph/admin/jobs?project=demo&limit=many").await, 400, "invalid_query");
    assert_error(&api.get("/api/graph/admin/jobs?project=bad%20name").await, 400, "invalid_project");
}

#[tokio::test]
async fn reset_removes_the_graph_with_one_event() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    api.post("/api/graph/nodes", node("a", "file")).await;
    let (status, body) = api.post("/api/graph/admin/reset", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, stats) = api.get("/api/graph/stats").await;
    assert_eq!(stats["nodes"], 0);
    assert_eq!(stream_events(&redis, "default").last().unwrap().event_type, EventType::GraphReset);
}

#[tokio::test]
async fn legacy_tokens_guard_every_api_route() {
    let redis = RedisServer::start();
    let api = GraphApi::start_with(&redis, &[("CODEGRAPH__API__TOKENS", "s3cret, other")]).await;
    assert_error(&api.post("/api/graph/nodes", node("a", "file")).await, 401, "unauthorized");
    assert_error(&api.post("/api/graph/admin/reanalyze", json!({"path": "/x"})).await, 401, "unauthorized");
    let wrong =
        api.http.post(api.url("/api/graph/nodes")).bearer_auth("nope").json(&node("a", "file")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let right =
        api.http.post(api.url("/api/graph/nodes")).bearer_auth("other").json(&node("a", "file")).send().await.unwrap();
    assert_eq!(right.status(), 201);
    assert_error(&api.get("/api/graph/nodes/a").await, 401, "unauthorized");
    let read = api.http.get(api.url("/api/graph/nodes/a")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(read.status(), 200, "a legacy token reads too");
}

#[tokio::test]
async fn ops_routes_openapi_and_metrics() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    assert_eq!(api.get("/health").await.0, 200);
    assert_eq!(api.get("/ready").await.0, 200);
    let (_, doc) = api.get("/openapi.json").await;
    for path in [
        "/api/graph/nodes",
        "/api/graph/nodes/{id}",
        "/api/graph/batch",
        "/api/graph/snapshot",
        "/api/graph/admin/reanalyze",
        "/health",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    api.post("/api/graph/nodes", node("a", "file")).await;
    let text = api.http.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let published = text
        .lines()
        .find(|l| l.starts_with("codegraph_events_published_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(published, Some(1.0), "{text}");
    assert!(
        text.contains(r#"codegraph_http_requests_total{method="POST",route="/api/graph/nodes",status="201"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn concurrent_patches_lose_no_update() {
    let redis = RedisServer::start();
    let api = std::sync::Arc::new(GraphApi::start(&redis).await);
    api.post("/api/graph/nodes", node("shared", "module")).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let body = json!({"properties": {format!("k{i}"): i}});
                let (status, resp) = api.send(Method::PATCH, "/api/graph/nodes/shared", body).await;
                assert_eq!(status, 200, "{resp}");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (_, got) = api.get("/api/graph/nodes/shared").await;
    assert_eq!(got["properties"].as_object().unwrap().len(), 20, "every patch kept: {got}");
    assert_eq!(got["version"], 21);
}
