//! Bounded work (issue 12) over HTTP against a real redis-server: a node delete with a huge cascade keeps its
//! meaning and goes in bounded change sets, reads stop at their bounds and say so, a reset's old graph is swept in
//! the background. `admin_bench` (ignored; run by hand) measures the Redis time of every Function call of a reset
//! and of a huge cascade on a 100,000-node project.

mod common;

use std::time::{Duration, Instant};

use codegraph_shared::{
    event::{decode_entry, EventType, STREAM_FIELD},
    functions::{self, calls, Expect, GraphWriter, Mutation, PublishMode, MAX_CASCADE},
    graph::{Node, Relationship},
    names::RedisNames,
    project::ProjectName,
    testing::RedisServer,
};
use common::{node, GraphApi};
use reqwest::Method;
use serde_json::{json, Value};

/// A hub node with `leaves` leaves, every other relationship leaving the hub, the rest entering it, and a chain
/// between the leaves that a delete of the hub must leave alone.
fn star(leaves: usize) -> Value {
    let mut ops = vec![json!({"op": "upsert_node", "node": node("hub", "class")})];
    for i in 0..leaves {
        ops.push(json!({"op": "upsert_node", "node": node(&format!("leaf{i}"), "function")}));
    }
    for i in 0..leaves {
        let (s, t) =
            if i % 2 == 0 { ("hub".to_owned(), format!("leaf{i}")) } else { (format!("leaf{i}"), "hub".to_owned()) };
        ops.push(json!({"op": "upsert_relationship", "relationship": {"id": format!("h{i}"), "type": "calls", "source": s, "target": t}}));
        if i > 0 {
            let (s, t) = (format!("leaf{}", i - 1), format!("leaf{i}"));
            ops.push(json!({"op": "upsert_relationship", "relationship": {"type": "next", "source": s, "target": t}}));
        }
    }
    json!({"operations": ops})
}

async fn redis_conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

fn names() -> RedisNames {
    RedisNames::new(&ProjectName::parse("default").unwrap())
}

/// The changes of each stream entry after `after` entries.
async fn entries_after(conn: &mut redis::aio::MultiplexedConnection, after: usize) -> Vec<Vec<(EventType, String)>> {
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(names().cdc_stream()).arg("-").arg("+").query_async(conn).await.unwrap();
    reply.ids[after..]
        .iter()
        .map(|e| {
            let events = decode_entry(&e.id, &e.get::<String>(STREAM_FIELD).unwrap()).unwrap();
            events.into_iter().map(|c| (c.event_type, c.entity.id)).collect()
        })
        .collect()
}

async fn stream_len(conn: &mut redis::aio::MultiplexedConnection) -> usize {
    redis::cmd("XLEN").arg(names().cdc_stream()).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn deleting_a_node_with_a_huge_cascade_answers_as_before_in_bounded_change_sets() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let mut conn = redis_conn(&redis).await;
    let leaves = 2 * MAX_CASCADE + 200;
    let (status, body) = api.post("/api/graph/batch", star(leaves)).await;
    assert_eq!(status, 200, "{body}");
    let before = stream_len(&mut conn).await;

    let (status, body) = api.send(Method::DELETE, "/api/graph/nodes/hub", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["status"], &body["cascaded"]), (&json!("deleted"), &json!(leaves)), "{body}");
    let sets = entries_after(&mut conn, before).await;
    assert!(sets.len() >= 3, "{} change sets", sets.len());
    for set in &sets {
        assert!(set.len() <= MAX_CASCADE + 1, "a set of {} changes", set.len());
    }
    let last = sets.last().unwrap().last().unwrap();
    assert_eq!(last, &(EventType::NodeDeleted, "hub".to_owned()), "the node goes last, after every relationship");
    assert!(body["event_id"].as_str().is_some(), "{body}");
    let deleted: usize = sets.iter().flatten().filter(|(t, _)| *t == EventType::RelationshipDeleted).count();
    assert_eq!(deleted, leaves);
    let rels: usize = redis::cmd("HLEN").arg(names().relationships()).query_async(&mut conn).await.unwrap();
    assert_eq!(rels, leaves - 1, "the chain between the leaves stays");
    let (status, _) = api.get("/api/graph/nodes/hub").await;
    assert_eq!(status, 404);

    // The same in a batch: the hub's relationships go first, in sets of their own listed before the chunk's.
    let (status, body) = api.post("/api/graph/batch", star(leaves)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        api.post("/api/graph/batch", json!({"operations": [{"op": "delete_node", "id": "hub"}]})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["change_sets"].as_array().unwrap().len() >= 3, "{body}");
    assert_eq!(body["events"], json!(leaves + 1), "{body}");
    assert_eq!(body["last_event_id"], *body["change_sets"].as_array().unwrap().last().unwrap());
}

#[tokio::test]
async fn reads_stop_at_their_bounds_and_say_so() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let leaves = 10_050;
    let (status, body) = api.post("/api/graph/batch", star(leaves)).await;
    assert_eq!(status, 200, "{body}");

    // The hub has 10,050 relationships: one request reads at most 10,000 of them.
    let (status, hood) = api.get("/api/graph/nodes/hub/neighbors?limit=5000&depth=2").await;
    assert_eq!(status, 200, "{hood}");
    assert_eq!(hood["truncated"], true);
    let rels = hood["relationships"].as_array().unwrap().len();
    assert!(rels <= 10_000 && rels > 1000, "{rels} relationships");
    let (_, small) = api.get("/api/graph/nodes/leaf3/neighbors?direction=in&type=next").await;
    assert_eq!((small["truncated"].as_bool(), small["nodes"].as_array().unwrap().len()), (Some(false), 1), "{small}");

    // Pages: every node and relationship once, no page much over its limit, however many relationships a node has.
    let (mut nodes, mut relationships) = (0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/graph/snapshot?limit=1000&cursor={c}"),
            None => "/api/graph/snapshot?limit=1000".into(),
        };
        let (status, page) = api.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let (n, r) = (page["nodes"].as_array().unwrap().len(), page["relationships"].as_array().unwrap().len());
        assert!(n + r <= 1100, "a page of {n} nodes and {r} relationships");
        (nodes, relationships) = (nodes + n, relationships + r);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!((nodes, relationships), (leaves + 1, 2 * leaves - 1));
}

#[tokio::test]
async fn a_reset_answers_at_once_and_its_old_graph_is_swept_in_the_background() {
    let redis = RedisServer::start();
    let api = GraphApi::start(&redis).await;
    let mut conn = redis_conn(&redis).await;
    let (status, body) = api.post("/api/graph/batch", star(3000)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.post("/api/graph/admin/reset", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, stats) = api.get("/api/graph/stats").await;
    assert_eq!((stats["nodes"].as_u64(), stats["relationships"].as_u64()), (Some(0), Some(0)), "{stats}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", names().prefix())).query_async(&mut conn).await.unwrap();
        let old: Vec<&String> = left
            .iter()
            .filter(|k| k.contains(":old:") || k.contains(":out:") || k.contains(":in:") || k.ends_with(":sweep"))
            .collect();
        if old.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {} keys, e.g. {:?}", old.len(), old.first());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Versions survived: the hub comes back at version 2.
    let (status, body) = api.post("/api/graph/nodes", node("hub", "class")).await;
    assert_eq!((status, &body["version"]), (201, &json!(2)), "{body}");
}

/// The Redis time of every Function call Redis ran since `SLOWLOG RESET` (threshold 0), by function: count,
/// median, 99th percentile and maximum in µs.
async fn function_times(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, usize, u64, u64, u64)> {
    let log: Vec<(u64, u64, u64, Vec<String>)> = {
        let raw: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query_async(conn).await.unwrap();
        raw.into_iter()
            .filter_map(|e| {
                let redis::Value::Array(f) = e else { return None };
                let id: u64 = redis::from_redis_value(f[0].clone()).ok()?;
                let at: u64 = redis::from_redis_value(f[1].clone()).ok()?;
                let us: u64 = redis::from_redis_value(f[2].clone()).ok()?;
                let args: Vec<String> = redis::from_redis_value(f[3].clone()).ok()?;
                Some((id, at, us, args))
            })
            .collect()
    };
    let mut by: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (_, _, us, args) in log {
        if args.first().is_some_and(|c| c.eq_ignore_ascii_case("fcall")) {
            by.entry(args.get(1).cloned().unwrap_or_default()).or_default().push(us);
        }
    }
    by.into_iter()
        .map(|(f, mut t)| {
            t.sort_unstable();
            (f, t.len(), t[t.len() / 2], t[(t.len() * 99 / 100).min(t.len() - 1)], *t.last().unwrap())
        })
        .collect()
}

async fn config(conn: &mut redis::aio::MultiplexedConnection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query_async(conn).await.unwrap();
}

async fn slowlog_reset(conn: &mut redis::aio::MultiplexedConnection) {
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(conn).await.unwrap();
}

/// A project of `size` nodes in a ring plus a hub with a relationship to each of them (`size` + 1 nodes, 2 × `size`
/// relationships), written in calls of 1,000 operations.
async fn build(conn: &mut redis::aio::MultiplexedConnection, w: &GraphWriter, size: usize) {
    let n = |i: usize| Node {
        id: format!("py:src/m{}.py:f{}", i % size / 100, i % size),
        kind: "function".into(),
        name: format!("f{}", i % size),
        file: Some(format!("src/m{}.py", i % size / 100)),
        line_start: Some(1),
        line_end: Some(9),
        properties: Default::default(),
        version: None,
    };
    let r = |id: String, s: String, t: String| Relationship {
        id,
        rel_type: "calls".into(),
        source: s,
        target: t,
        properties: Default::default(),
        version: None,
    };
    let mut ops = vec![Mutation::UpsertNode(
        Node { id: "hub".into(), kind: "module".into(), name: "hub".into(), ..n(0) },
        Expect::Any,
    )];
    ops.extend((0..size).map(|i| Mutation::UpsertNode(n(i), Expect::Any)));
    ops.extend(
        (0..size).map(|i| Mutation::UpsertRelationship(r(format!("ring{i}"), n(i).id, n(i + 1).id), Expect::Any)),
    );
    ops.extend(
        (0..size).map(|i| Mutation::UpsertRelationship(r(format!("hub{i}"), "hub".into(), n(i).id), Expect::Any)),
    );
    for call in calls(&ops, 1000) {
        w.mutate(conn, call, None).await.unwrap();
    }
}

fn report(what: &str, times: &[(String, usize, u64, u64, u64)]) {
    for (f, count, median, p99, max) in times {
        println!("{what:<34} {f:<10} calls {count:>5}  median {median:>7} us  p99 {p99:>7} us  max {max:>8} us");
    }
}

/// CPU time of Redis's main thread so far, in µs (`INFO cpu`): unlike SLOWLOG's wall-clock times, not inflated
/// when the machine is busy with other work.
async fn main_thread_cpu_us(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await.unwrap();
    let field = |name: &str| -> f64 {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok()).unwrap_or(0.0)
    };
    (field("used_cpu_user_main_thread") + field("used_cpu_sys_main_thread")) * 1e6
}

/// Per-call main-thread CPU of a sequence of calls, made by `step` until it says it is done.
struct CpuTimes(Vec<f64>);

impl CpuTimes {
    fn report(&mut self, what: &str) {
        let slowest = self.0.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i + 1);
        println!("{what}: the slowest is call {slowest} of {}", self.0.len());
        self.0.sort_by(f64::total_cmp);
        let t = &self.0;
        let at = |q: usize| t[(t.len() * q / 100).min(t.len() - 1)];
        println!(
            "{what:<44} calls {:>5}  CPU median {:>6.0} us  p99 {:>6.0} us  max {:>7.0} us",
            t.len(),
            at(50),
            at(99),
            t.last().unwrap()
        );
    }
}

/// What one `INFO cpu` costs the main thread itself, to take off each measurement.
async fn info_overhead(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let mut t = Vec::new();
    for _ in 0..21 {
        let a = main_thread_cpu_us(conn).await;
        t.push(main_thread_cpu_us(conn).await - a);
    }
    t.sort_by(f64::total_cmp);
    t[10]
}

/// `cargo test -p graph-api --test bounded admin_bench -- --ignored --nocapture` (add `--release` for a faster
/// build of the project; the figures are Redis's own). `ADMIN_BENCH_NODES` (default 100,000) sets the size;
/// `ADMIN_BENCH_OLD_LIBRARY=<path of a library 7 functions.lua>` also measures the old code path. Prints, per
/// Function, the wall-clock time SLOWLOG recorded (inflated when other processes take the CPU) and the main
/// thread's CPU time per call.
#[tokio::test]
#[ignore]
async fn admin_bench() {
    let size: usize = std::env::var("ADMIN_BENCH_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let server = RedisServer::start();
    // No response timeout: the old code path blocks Redis for seconds.
    let no_timeout = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&no_timeout)
        .await
        .unwrap();
    functions::ensure_loaded(&mut conn).await.unwrap();
    config(&mut conn, "slowlog-max-len", "1000000").await;
    let names = names();
    let w = GraphWriter::new(names.clone(), 0, PublishMode::Classic);
    println!("redis-server {}; a project of {} nodes and {} relationships", server.url(), size + 1, 2 * size);
    let overhead = info_overhead(&mut conn).await;

    let started = Instant::now();
    build(&mut conn, &w, size).await;
    println!("built in {:.1?}", started.elapsed());
    // The delete of the hub, as graph-api's DELETE route makes it: refused, detached chunk by chunk, deleted.
    config(&mut conn, "slowlog-log-slower-than", "0").await;
    slowlog_reset(&mut conn).await;
    let mut cpu = CpuTimes(Vec::new());
    let refused = w.mutate(&mut conn, &[Mutation::DeleteNode("hub".into(), Expect::Any)], None).await.unwrap_err();
    assert!(refused.is_cascade_refusal());
    for direction in ["out", "in"] {
        let mut cursor = "0".to_owned();
        loop {
            let before = main_thread_cpu_us(&mut conn).await;
            let (_, next, _): (String, String, u64) = redis::cmd("FCALL")
                .arg("cg_detach")
                .arg(1)
                .arg(names.prefix())
                .arg("default")
                .arg(0)
                .arg("PUBLISH")
                .arg("")
                .arg("hub")
                .arg(direction)
                .arg(&cursor)
                .arg(MAX_CASCADE)
                .query_async(&mut conn)
                .await
                .unwrap();
            cpu.0.push(main_thread_cpu_us(&mut conn).await - before - overhead);
            cursor = next;
            if cursor == "0" {
                break;
            }
        }
    }
    // What one walk left (SSCAN returns whole buckets; a step deletes at most MAX_CASCADE of them) goes here.
    let (out, more) =
        w.mutate_detaching(&mut conn, &[Mutation::DeleteNode("hub".into(), Expect::Any)], None).await.unwrap();
    println!("after one walk: {} more detached, {} with the node", more.relationships, out[0].cascaded);
    report(&format!("delete of a node with {size} rels"), &function_times(&mut conn).await);
    cpu.report(&format!("delete of a node with {size} rels: cg_detach"));
    config(&mut conn, "slowlog-log-slower-than", "10000").await;

    build(&mut conn, &w, size).await;
    // A search that finds nothing looks at up to its scan limit of nodes.
    let mut manager = codegraph_shared::redis_handle::RedisHandle::open(&server.url()).unwrap().conn();
    for scan_limit in [500_000, 20_000] {
        let (before, started) = (main_thread_cpu_us(&mut conn).await, Instant::now());
        let (_, truncated) =
            graph_api::store::search(&mut manager, &names, "nothing", None, 20, scan_limit).await.unwrap();
        let cpu = main_thread_cpu_us(&mut conn).await - before - overhead;
        println!(
            "search with scan limit {scan_limit:>7}: {:>6.1?} for the request, Redis CPU {cpu:>7.0} us (truncated: {truncated})",
            started.elapsed()
        );
    }
    config(&mut conn, "slowlog-log-slower-than", "0").await;
    slowlog_reset(&mut conn).await;
    let before = main_thread_cpu_us(&mut conn).await;
    w.reset(&mut conn, "bench", None).await.unwrap();
    CpuTimes(vec![main_thread_cpu_us(&mut conn).await - before - overhead])
        .report(&format!("reset of {} nodes: cg_reset", size + 1));
    let mut cpu = CpuTimes(Vec::new());
    loop {
        let before = main_thread_cpu_us(&mut conn).await;
        let left = functions::sweep(&mut conn, &names, functions::SWEEP_BUDGET).await.unwrap();
        cpu.0.push(main_thread_cpu_us(&mut conn).await - before - overhead);
        if left == 0 {
            break;
        }
    }
    report(&format!("reset of {} nodes, then its sweep", size + 1), &function_times(&mut conn).await);
    cpu.report("its sweep: cg_sweep");
    config(&mut conn, "slowlog-log-slower-than", "10000").await;

    let Ok(old) = std::env::var("ADMIN_BENCH_OLD_LIBRARY") else { return };
    let source = std::fs::read_to_string(&old).expect("the old library");
    let _: String =
        redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(&source).query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    build(&mut conn, &w, size).await;
    config(&mut conn, "slowlog-log-slower-than", "0").await;
    slowlog_reset(&mut conn).await;
    w.mutate(&mut conn, &[Mutation::DeleteNode("hub".into(), Expect::Any)], None).await.unwrap();
    report("old: the same delete", &function_times(&mut conn).await);
    config(&mut conn, "slowlog-log-slower-than", "10000").await;
    build(&mut conn, &w, size).await;
    config(&mut conn, "slowlog-log-slower-than", "0").await;
    slowlog_reset(&mut conn).await;
    w.reset(&mut conn, "bench", None).await.unwrap();
    report("old: the same reset", &function_times(&mut conn).await);
}
