//! The Function library against a real redis-server: atomicity, events, versions, idempotent upserts, the
//! stream's length cap and trimming next to consumer groups.

use codegraph_shared::{
    event::{decode_entry, decode_published, CdcEvent, ChangeSet, EventType, StreamId, STREAM_FIELD},
    functions::{
        calls, cap_hold, ensure_loaded, sweep, sweep_all, trim_stream, Expect, GraphWriter, Mutation, MutationError,
        PublishMode, Status, MAX_CASCADE, RECENT_JOBS_KEPT,
    },
    graph::{Node, Relationship},
    names::{Generation, RedisNames, PROJECTS_KEY},
    project::ProjectName,
    testing::RedisServer,
};
use futures_util::StreamExt;
use redis::AsyncCommands;

fn node(id: &str, kind: &str) -> Node {
    Node {
        id: id.into(),
        kind: kind.into(),
        name: id.into(),
        file: Some("src/a.py".into()),
        line_start: Some(1),
        line_end: Some(3),
        properties: Default::default(),
        version: None,
    }
}

fn rel(id: &str, t: &str, s: &str, d: &str) -> Relationship {
    Relationship {
        id: id.into(),
        rel_type: t.into(),
        source: s.into(),
        target: d.into(),
        properties: Default::default(),
        version: None,
    }
}

async fn setup(server: &RedisServer) -> (redis::aio::MultiplexedConnection, GraphWriter) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    ensure_loaded(&mut conn).await.unwrap();
    let names = RedisNames::new(&ProjectName::parse("demo").unwrap());
    (conn, GraphWriter::new(names, 10_000, PublishMode::Classic))
}

/// The stream's entries, whole.
async fn entries(conn: &mut redis::aio::MultiplexedConnection, names: &RedisNames) -> Vec<ChangeSet> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(names.cdc_stream()).await.unwrap();
    reply
        .ids
        .iter()
        .map(|e| {
            let body: String = e.get(STREAM_FIELD).unwrap();
            ChangeSet::from_stream_entry(&e.id, &body).unwrap()
        })
        .collect()
}

/// The stream's changes, one event each.
async fn stream(conn: &mut redis::aio::MultiplexedConnection, names: &RedisNames) -> Vec<CdcEvent> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(names.cdc_stream()).await.unwrap();
    reply.ids.iter().flat_map(|e| decode_entry(&e.id, &e.get::<String>(STREAM_FIELD).unwrap()).unwrap()).collect()
}

#[tokio::test]
async fn mutations_write_state_and_ordered_events_with_growing_versions() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();

    let mut pubsub = redis::Client::open(server.url()).unwrap().get_async_pubsub().await.unwrap();
    pubsub.subscribe(names.events_channel()).await.unwrap();

    let out = w
        .mutate(
            &mut conn,
            &[
                Mutation::UpsertNode(node("a", "function"), Expect::Any),
                Mutation::UpsertNode(node("b", "class"), Expect::Any),
                Mutation::UpsertRelationship(rel("a-b", "calls", "a", "b"), Expect::Any),
            ],
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        )
        .await
        .unwrap();
    assert_eq!(out.iter().map(|o| o.status).collect::<Vec<_>>(), [Status::Created; 3]);
    // One call, one change set: every outcome names the same entry, each its own change in it.
    assert!(out.iter().all(|o| o.event_id.is_some() && o.event_id == out[0].event_id));
    assert_eq!(out.iter().map(|o| o.change_index).collect::<Vec<_>>(), [Some(0), Some(1), Some(2)]);

    // The same upsert again changes nothing and emits nothing; a real change bumps the version.
    let again = w.mutate(&mut conn, &[Mutation::UpsertNode(node("a", "function"), Expect::Any)], None).await.unwrap();
    assert_eq!((again[0].status, again[0].version, again[0].event_id.clone()), (Status::Unchanged, 1, None));
    let mut changed = node("a", "method");
    changed.name = "renamed/with\"quote".into();
    let upd = w.mutate(&mut conn, &[Mutation::UpsertNode(changed.clone(), Expect::Any)], None).await.unwrap();
    assert_eq!((upd[0].status, upd[0].version), (Status::Updated, 2));

    // Deleting a node deletes its relationships, each a change of the same set, before the node's.
    let del = w.mutate(&mut conn, &[Mutation::DeleteNode("b".into(), Expect::Any)], None).await.unwrap();
    assert_eq!((del[0].status, del[0].cascaded, del[0].change_index), (Status::Deleted, 1, Some(1)));

    let sets = entries(&mut conn, &names).await;
    assert_eq!(sets.iter().map(|s| s.changes.len()).collect::<Vec<_>>(), [3, 1, 2], "the no-op call wrote no entry");
    assert!(sets.iter().all(|s| !s.single));
    assert_eq!(Some(sets[0].id.to_string()), out[0].event_id);
    assert_eq!(Some(sets[2].id.to_string()), del[0].event_id);

    let events = stream(&mut conn, &names).await;
    let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            EventType::NodeAdded,
            EventType::NodeAdded,
            EventType::RelationshipAdded,
            EventType::NodeUpdated,
            EventType::RelationshipDeleted,
            EventType::NodeDeleted
        ]
    );
    assert!(events.windows(2).all(|w| (w[0].id, w[0].index) < (w[1].id, w[1].index)), "ids and indexes grow");
    assert_eq!(events.iter().map(|e| e.index).collect::<Vec<_>>(), [0, 1, 2, 0, 0, 1]);
    assert_eq!(events[0].traceparent(), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_eq!(events[3].version, 2);
    assert_eq!(events[3].data["name"], "renamed/with\"quote");
    assert_eq!(events[5].data["id"], "b", "a delete carries the entity as it was");
    assert!(events[0].ts.ends_with('Z') && events[0].ts.len() == 24, "{}", events[0].ts);
    assert_eq!(events[0].project, "demo");

    // The live channel carries the same change sets, one message each, with their ids.
    let mut live_messages = pubsub.on_message();
    for expected in &sets {
        let msg = live_messages.next().await.unwrap();
        let payload: String = msg.get_payload().unwrap();
        assert_eq!(&ChangeSet::from_json(&payload).unwrap(), expected);
    }

    // State and counters.
    let kinds: std::collections::HashMap<String, i64> = conn.hgetall(names.node_kinds()).await.unwrap();
    assert_eq!(kinds, [("method".to_string(), 1)].into());
    let rel_types: std::collections::HashMap<String, i64> = conn.hgetall(names.relationship_types()).await.unwrap();
    assert!(rel_types.is_empty());
    let projects: Vec<String> = conn.smembers(PROJECTS_KEY).await.unwrap();
    assert_eq!(projects, ["demo"]);

    // Versions keep growing across a delete and re-create.
    let re = w.mutate(&mut conn, &[Mutation::UpsertNode(node("b", "class"), Expect::Any)], None).await.unwrap();
    assert_eq!((re[0].status, re[0].version), (Status::Created, 3));
}

#[tokio::test]
async fn a_refused_call_leaves_neither_state_nor_event() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    w.mutate(&mut conn, &[Mutation::UpsertNode(node("a", "function"), Expect::Any)], None).await.unwrap();

    // The dangling relationship is the last operation: the node upserts before it must not happen either.
    let err = w
        .mutate(
            &mut conn,
            &[
                Mutation::UpsertNode(node("x", "function"), Expect::Any),
                Mutation::DeleteNode("a".into(), Expect::Any),
                Mutation::UpsertRelationship(rel("r", "calls", "x", "missing"), Expect::Any),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MutationError::Dangling(ref m) if m.contains("missing")), "{err:?}");
    assert!(!err.to_string().contains("script:") && !err.to_string().contains("user_function"), "{err}");

    // A relationship to a node deleted earlier in the same call is dangling too.
    let err = w
        .mutate(
            &mut conn,
            &[
                Mutation::DeleteNode("a".into(), Expect::Any),
                Mutation::UpsertRelationship(rel("r", "calls", "a", "a"), Expect::Any),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MutationError::Dangling(_)), "{err:?}");

    // Optimistic concurrency.
    let err =
        w.mutate(&mut conn, &[Mutation::UpsertNode(node("a", "class"), Expect::Version(7))], None).await.unwrap_err();
    assert!(matches!(err, MutationError::Conflict(_)), "{err:?}");
    let err = w.mutate(&mut conn, &[Mutation::UpsertNode(node("a", "class"), Expect::Absent)], None).await.unwrap_err();
    assert!(matches!(err, MutationError::Conflict(_)), "{err:?}");
    let err = w.mutate(&mut conn, &[Mutation::DeleteNode("zz".into(), Expect::Version(1))], None).await.unwrap_err();
    assert!(matches!(err, MutationError::NotFound(_)), "{err:?}");

    assert_eq!(stream(&mut conn, &names).await.len(), 1, "only the first upsert has an event");
    let ids: Vec<String> = conn.hkeys(names.nodes()).await.unwrap();
    assert_eq!(ids, ["a"]);
    let ok = w.mutate(&mut conn, &[Mutation::UpsertNode(node("a", "class"), Expect::Version(1))], None).await.unwrap();
    assert_eq!(ok[0].version, 2);
}

#[tokio::test]
async fn emit_and_reset() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    w.mutate(&mut conn, &[Mutation::UpsertNode(node("a", "file"), Expect::Any)], None).await.unwrap();
    let id = w
        .emit(
            &mut conn,
            EventType::AnalysisProgress,
            "job",
            "j1",
            &serde_json::json!({"job_id": "j1", "percent": 50}),
            None,
        )
        .await
        .unwrap();
    let status: String = conn.hget(names.job("j1"), "status").await.unwrap();
    assert_eq!(status, "running");
    let last: String = conn.hget(names.job("j1"), "last_event_id").await.unwrap();
    assert_eq!(last, id);
    // A job's version is kept in its hash (which expires with the job), not in `versions`; a job whose version
    // an older library kept there continues from it, and the field goes.
    let _: () = conn.hset(names.versions(), "j:j2", 7).await.unwrap();
    for (job, expected) in [("j1", 2), ("j2", 8), ("j2", 9)] {
        let data = serde_json::json!({"job_id": job, "percent": 60});
        w.emit(&mut conn, EventType::AnalysisProgress, "job", job, &data, None).await.unwrap();
        let version: i64 = conn.hget(names.job(job), "version").await.unwrap();
        assert_eq!(version, expected, "{job}");
        let event = stream(&mut conn, &names).await.pop().unwrap();
        assert_eq!((event.entity.id.as_str(), event.version), (job, expected as u64));
    }
    let kept: Vec<String> = conn.hkeys(names.versions()).await.unwrap();
    assert!(kept.iter().all(|f| !f.starts_with("j:")), "{kept:?}");
    // Every job is in the project's index, and its hash got a creation time at its first event.
    let indexed: Vec<String> = conn.zrange(names.recent_jobs(), 0, -1).await.unwrap();
    assert_eq!(indexed, ["j1", "j2"]);
    let created: Option<String> = conn.hget(names.job("j2"), "created_at").await.unwrap();
    assert!(created.is_some_and(|t| t.ends_with('Z')));
    // The index keeps the newest RECENT_JOBS_KEPT once it is 100 over.
    let old: Vec<(u64, String)> = (0..RECENT_JOBS_KEPT + 100).map(|i| (i as u64, format!("old-{i}"))).collect();
    let _: () = conn.zadd_multiple(names.recent_jobs(), &old).await.unwrap();
    let data = serde_json::json!({"job_id": "j3"});
    w.emit(&mut conn, EventType::AnalysisStarted, "job", "j3", &data, None).await.unwrap();
    let kept: Vec<String> = conn.zrange(names.recent_jobs(), 0, -1).await.unwrap();
    assert_eq!(kept.len(), RECENT_JOBS_KEPT);
    assert_eq!(&kept[kept.len() - 3..], ["j1", "j2", "j3"], "the newest stay");

    w.reset(&mut conn, "test", None).await.unwrap();
    let n: i64 = conn.hlen(names.nodes()).await.unwrap();
    assert_eq!(n, 0);
    let events = stream(&mut conn, &names).await;
    assert_eq!(events.last().unwrap().event_type, EventType::GraphReset);
    assert_eq!(events.last().unwrap().data["nodes"], 1);
}

#[tokio::test]
async fn the_library_reloads_itself_after_redis_lost_it() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query_async(&mut conn).await.unwrap();
    let out = w.mutate(&mut conn, &[Mutation::UpsertNode(node("a", "file"), Expect::Any)], None).await.unwrap();
    assert_eq!(out[0].status, Status::Created);
}

#[tokio::test]
async fn one_call_that_touches_the_same_entities_again_and_again() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    let out = w
        .mutate(
            &mut conn,
            &[
                Mutation::UpsertNode(node("a", "function"), Expect::Any),
                Mutation::UpsertNode(node("b", "function"), Expect::Any),
                Mutation::UpsertRelationship(rel("a-b", "calls", "a", "b"), Expect::Any),
                Mutation::UpsertRelationship(rel("b-a", "calls", "b", "a"), Expect::Any),
                Mutation::DeleteNode("a".into(), Expect::Any),
                Mutation::UpsertNode(node("a", "class"), Expect::Any),
                Mutation::UpsertNode(node("a", "class"), Expect::Any),
                Mutation::UpsertRelationship(rel("a-b", "inherits", "a", "b"), Expect::Any),
            ],
            None,
        )
        .await
        .unwrap();
    let summary: Vec<(Status, u64, u32)> = out.iter().map(|o| (o.status, o.version, o.cascaded)).collect();
    assert_eq!(
        summary,
        [
            (Status::Created, 1, 0),
            (Status::Created, 1, 0),
            (Status::Created, 1, 0),
            (Status::Created, 1, 0),
            (Status::Deleted, 2, 2),
            (Status::Created, 3, 0),
            (Status::Unchanged, 3, 0),
            (Status::Created, 3, 0),
        ]
    );
    let versions: std::collections::HashMap<String, u64> = conn.hgetall(names.versions()).await.unwrap();
    assert_eq!(versions, [("n:a".into(), 3), ("n:b".into(), 1), ("r:a-b".into(), 3), ("r:b-a".into(), 2)].into());
    let rels: Vec<String> = conn.hkeys(names.relationships()).await.unwrap();
    assert_eq!(rels, ["a-b"]);
    let out_a: Vec<String> = conn.smembers(names.outgoing(Generation(0), "a")).await.unwrap();
    let in_a: Vec<String> = conn.smembers(names.incoming(Generation(0), "a")).await.unwrap();
    assert_eq!((out_a, in_a), (vec!["a-b".to_string()], vec![]));
    let kinds: std::collections::HashMap<String, i64> = conn.hgetall(names.node_kinds()).await.unwrap();
    assert_eq!(kinds, [("function".into(), 1), ("class".into(), 1)].into());
    let types: std::collections::HashMap<String, i64> = conn.hgetall(names.relationship_types()).await.unwrap();
    assert_eq!(types, [("inherits".into(), 1)].into());
    assert_eq!(stream(&mut conn, &names).await.len(), 9, "7 changes plus 2 cascaded deletes");
}

#[tokio::test]
async fn adjacency_follows_moved_and_self_relationships_within_one_call() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    let out = w
        .mutate(
            &mut conn,
            &[
                Mutation::UpsertNode(node("a", "function"), Expect::Any),
                Mutation::UpsertNode(node("b", "function"), Expect::Any),
                Mutation::UpsertNode(node("c", "function"), Expect::Any),
                Mutation::UpsertRelationship(rel("loop", "calls", "a", "a"), Expect::Any),
                Mutation::UpsertRelationship(rel("moved", "calls", "a", "b"), Expect::Any),
                // The relationship moves to start at c: deleting a must no longer take it along.
                Mutation::UpsertRelationship(rel("moved", "calls", "c", "b"), Expect::Any),
                Mutation::DeleteNode("a".into(), Expect::Any),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!((out[6].status, out[6].cascaded), (Status::Deleted, 1), "only the self-relationship goes with a");
    let rels: Vec<String> = conn.hkeys(names.relationships()).await.unwrap();
    assert_eq!(rels, ["moved"]);
    for (key, expected) in [
        (names.outgoing(Generation(0), "a"), vec![]),
        (names.incoming(Generation(0), "a"), vec![]),
        (names.outgoing(Generation(0), "c"), vec!["moved".to_string()]),
        (names.incoming(Generation(0), "b"), vec!["moved".to_string()]),
    ] {
        let members: Vec<String> = conn.smembers(&key).await.unwrap();
        assert_eq!(members, expected, "{key}");
    }
}

#[tokio::test]
async fn a_failed_state_write_leaves_no_event() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    let mut pubsub = redis::Client::open(server.url()).unwrap().get_async_pubsub().await.unwrap();
    pubsub.subscribe(names.events_channel()).await.unwrap();

    // The counter hash is the last state a mutation writes: a key of the wrong type fails the call there, after
    // its other writes (Redis does not roll a Function back). No event may exist for that half-written state.
    let _: () = conn.set(names.node_kinds(), "not a hash").await.unwrap();
    let err = w
        .mutate(
            &mut conn,
            &[
                Mutation::UpsertNode(node("a", "function"), Expect::Any),
                Mutation::UpsertNode(node("b", "class"), Expect::Any),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MutationError::Redis(_)) && err.to_string().contains("WRONGTYPE"), "{err:?}");
    let stream_exists: bool = conn.exists(names.cdc_stream()).await.unwrap();
    assert!(!stream_exists, "no event was written");

    // The same for an event about a job whose hash cannot be written.
    let _: () = conn.set(names.job("j1"), "not a hash").await.unwrap();
    let err = w
        .emit(&mut conn, EventType::AnalysisStarted, "job", "j1", &serde_json::json!({"job_id": "j1"}), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err:?}");
    let stream_exists: bool = conn.exists(names.cdc_stream()).await.unwrap();
    assert!(!stream_exists, "no event was written");

    // Nothing was published either: the first message on the channel is the event of the next good call.
    let _: () = conn.del(&[names.node_kinds(), names.job("j1")]).await.unwrap();
    let ok = w.mutate(&mut conn, &[Mutation::UpsertNode(node("c", "function"), Expect::Any)], None).await.unwrap();
    let msg = pubsub.on_message().next().await.unwrap();
    let live = decode_published(&msg.get_payload::<String>().unwrap()).unwrap();
    assert_eq!(Some(live[0].id.to_string()), ok[0].event_id);
    assert_eq!(stream(&mut conn, &names).await.len(), 1);
}

#[tokio::test]
async fn a_stream_key_of_another_type_is_refused_before_any_write() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    // An XADD that failed after the state writes would leave state without its event: the type is checked first.
    let _: () = conn.set(names.cdc_stream(), "not a stream").await.unwrap();
    let err = w.mutate(&mut conn, &[Mutation::UpsertNode(node("a", "function"), Expect::Any)], None).await.unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err:?}");
    let err = w
        .emit(&mut conn, EventType::AnalysisStarted, "job", "j1", &serde_json::json!({"job_id": "j1"}), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err:?}");
    for key in [names.nodes(), names.versions(), names.node_kinds(), names.job("j1")] {
        let exists: bool = conn.exists(&key).await.unwrap();
        assert!(!exists, "{key} was written");
    }
}

/// Upserts nodes `n<from>`…, one call (so one change set, one entry) each; returns the entries' ids.
async fn write_events(
    conn: &mut redis::aio::MultiplexedConnection,
    w: &GraphWriter,
    from: usize,
    count: usize,
) -> Vec<StreamId> {
    let mut ids = Vec::new();
    for i in from..from + count {
        let op = Mutation::UpsertNode(node(&format!("n{i}"), "function"), Expect::Any);
        let out = w.mutate(conn, &[op], None).await.unwrap();
        ids.push(out[0].event_id.as_ref().unwrap().parse().unwrap());
    }
    ids
}

/// Makes every stream node hold exactly 10 entries, so what `MINID ~` trims (whole nodes) is predictable.
async fn nodes_of_ten(conn: &mut redis::aio::MultiplexedConnection) {
    for (name, value) in [("stream-node-max-entries", "10"), ("stream-node-max-bytes", "0")] {
        let _: () = redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query_async(conn).await.unwrap();
    }
}

async fn stream_ids(conn: &mut redis::aio::MultiplexedConnection, names: &RedisNames) -> Vec<StreamId> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(names.cdc_stream()).await.unwrap();
    reply.ids.iter().map(|e| e.id.parse().unwrap()).collect()
}

async fn create_group(conn: &mut redis::aio::MultiplexedConnection, names: &RedisNames, group: &str, at: &str) {
    let _: () = conn.xgroup_create(names.cdc_stream(), group, at).await.unwrap();
}

/// Delivers the next `count` entries to `group`.
async fn deliver(conn: &mut redis::aio::MultiplexedConnection, names: &RedisNames, group: &str, count: usize) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg("c")
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(names.cdc_stream())
        .arg(">")
        .query_async(conn)
        .await
        .unwrap();
}

async fn ack(conn: &mut redis::aio::MultiplexedConnection, names: &RedisNames, group: &str, ids: &[StreamId]) {
    let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    let _: i64 = conn.xack(names.cdc_stream(), group, &ids).await.unwrap();
}

#[tokio::test]
async fn the_length_cap_never_trims_what_a_group_still_needs() {
    let server = RedisServer::start();
    let (mut conn, _) = setup(&server).await;
    nodes_of_ten(&mut conn).await;
    let names = RedisNames::new(&ProjectName::parse("capped").unwrap());
    let w = GraphWriter::new(names.clone(), 100, PublishMode::Classic);

    // A group with ids[20..30] pending: delivered 30, acknowledged 20.
    let mut ids = write_events(&mut conn, &w, 0, 50).await;
    create_group(&mut conn, &names, "slow", "0").await;
    deliver(&mut conn, &names, "slow", 30).await;
    ack(&mut conn, &names, "slow", &ids[..20]).await;
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await.unwrap();
    ids.extend(write_events(&mut conn, &w, 50, 400).await);
    // The checks read no entry (change sets can be hundreds of KB each): no XRANGE from inside the Function.
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
    assert!(stats.contains("cmdstat_xtrim:"), "the cap checks ran: {stats}");
    assert!(!stats.contains("cmdstat_xrange:"), "a cap check read entries: {stats}");

    // A cap of 100 would keep ~the last 100; the group's pending and undelivered entries all stay, and what it
    // acknowledged went (whole nodes of ten: exactly ids[..20]).
    assert_eq!(stream_ids(&mut conn, &names).await, ids[20..]);
    let hold = cap_hold(&mut conn, &names).await.unwrap().expect("the stream held above its cap is recorded");
    assert_eq!((hold.group.as_str(), hold.floor, hold.cap), ("slow", ids[20], 100));
    assert!(hold.entries >= 200, "{hold:?}");

    // The group catches up; another, created at ids[300], has not been delivered anything after it.
    deliver(&mut conn, &names, "slow", 1000).await;
    ack(&mut conn, &names, "slow", &ids[20..]).await;
    create_group(&mut conn, &names, "behind", &ids[300].to_string()).await;
    ids.extend(write_events(&mut conn, &w, 450, 300).await);
    let kept = stream_ids(&mut conn, &names).await;
    assert_eq!(kept[0], ids[300], "trimmed up to what `behind` still needs, in whole nodes");
    assert_eq!(kept, ids[300..]);
    let hold = cap_hold(&mut conn, &names).await.unwrap().unwrap();
    assert_eq!((hold.group.as_str(), hold.floor), ("behind", ids[300].successor()));

    // Once no group lags (`slow` keeps up, `behind` is gone), the cap trims to about its length again, and the
    // record goes.
    let _: i64 =
        redis::cmd("XGROUP").arg("DESTROY").arg(names.cdc_stream()).arg("behind").query_async(&mut conn).await.unwrap();
    deliver(&mut conn, &names, "slow", 1000).await;
    ack(&mut conn, &names, "slow", &ids[450..]).await;
    for from in (750..1250).step_by(10) {
        let batch = write_events(&mut conn, &w, from, 10).await;
        deliver(&mut conn, &names, "slow", 10).await;
        ack(&mut conn, &names, "slow", &batch).await;
        ids.extend(batch);
    }
    let kept = stream_ids(&mut conn, &names).await;
    assert!(kept.len() <= 100 + 100 + 10, "cap, slack between checks, one node: {}", kept.len());
    assert_eq!(kept, ids[ids.len() - kept.len()..], "the newest entries, without holes");
    assert_eq!(cap_hold(&mut conn, &names).await.unwrap(), None);
}

#[tokio::test]
async fn trimming_keeps_what_every_group_needs_and_the_retention_in_one_step() {
    let server = RedisServer::start();
    let (mut conn, _) = setup(&server).await;
    nodes_of_ten(&mut conn).await;
    let names = RedisNames::new(&ProjectName::parse("trimmed").unwrap());
    let w = GraphWriter::new(names.clone(), 0, PublishMode::Classic);
    let far_future = StreamId::new(u64::MAX / 2, 0);

    assert_eq!(trim_stream(&mut conn, &names, far_future).await.unwrap(), 0, "no stream");
    let ids = write_events(&mut conn, &w, 0, 60).await;
    assert_eq!(trim_stream(&mut conn, &names, far_future).await.unwrap(), 0, "a stream without groups stays");
    assert_eq!(stream_ids(&mut conn, &names).await, ids);

    // The slowest group has ids[20..35] pending: they and everything after stay, even inside what retention frees.
    create_group(&mut conn, &names, "done", "0").await;
    deliver(&mut conn, &names, "done", 60).await;
    ack(&mut conn, &names, "done", &ids).await;
    create_group(&mut conn, &names, "slow", "0").await;
    deliver(&mut conn, &names, "slow", 35).await;
    ack(&mut conn, &names, "slow", &ids[..20]).await;
    assert_eq!(trim_stream(&mut conn, &names, ids[50]).await.unwrap(), 20);
    assert_eq!(stream_ids(&mut conn, &names).await, ids[20..]);

    // Everything acknowledged: the retention floor bounds the trim.
    deliver(&mut conn, &names, "slow", 60).await;
    ack(&mut conn, &names, "slow", &ids[20..]).await;
    assert_eq!(trim_stream(&mut conn, &names, ids[40]).await.unwrap(), 20);
    assert_eq!(stream_ids(&mut conn, &names).await, ids[40..]);

    // A group not delivered anything after ids[49] keeps ids[50..].
    create_group(&mut conn, &names, "late", &ids[49].to_string()).await;
    assert_eq!(trim_stream(&mut conn, &names, far_future).await.unwrap(), 10);
    assert_eq!(stream_ids(&mut conn, &names).await, ids[50..]);

    // A group created at 0 just before a trim is protected: the trim reads every group in the same atomic step.
    create_group(&mut conn, &names, "new", "0").await;
    assert_eq!(trim_stream(&mut conn, &names, far_future).await.unwrap(), 0);
    assert_eq!(stream_ids(&mut conn, &names).await, ids[50..]);

    // A malformed retention floor is refused.
    let err = redis::cmd("FCALL")
        .arg("cg_trim")
        .arg(1)
        .arg(names.prefix())
        .arg("yesterday")
        .query_async::<i64>(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stream ID"), "{err}");
}

/// A ring of `size` nodes `<prefix><i>`, each calling the next (`<prefix><i>>`), written in bounded calls.
async fn ring(conn: &mut redis::aio::MultiplexedConnection, w: &GraphWriter, prefix: &str, size: usize) {
    let id = |i: usize| format!("{prefix}{}", i % size);
    let mut ops: Vec<Mutation> =
        (0..size).map(|i| Mutation::UpsertNode(node(&id(i), "function"), Expect::Any)).collect();
    ops.extend(
        (0..size).map(|i| {
            Mutation::UpsertRelationship(rel(&format!("{}>", id(i)), "calls", &id(i), &id(i + 1)), Expect::Any)
        }),
    );
    for call in calls(&ops, 1000) {
        w.mutate(conn, call, None).await.unwrap();
    }
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> std::collections::BTreeSet<String> {
    redis::cmd("KEYS").arg(pattern).query_async(conn).await.unwrap()
}

/// Commands Redis ran (Function calls' own included) since the last `CONFIG RESETSTAT`, but the test's own.
async fn commands_run(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|l| !l.starts_with("config") && !l.starts_with("info") && !l.starts_with("fcall"))
        .filter_map(|l| l.split_once("calls=")?.1.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_reset_is_one_event_costs_the_same_at_any_size_and_keeps_versions() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    let mut per_reset = Vec::new();
    for (round, size) in [100usize, 3000].into_iter().enumerate() {
        ring(&mut conn, &w, "n", size).await;
        let before = entries(&mut conn, &names).await.len();
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await.unwrap();
        w.reset(&mut conn, "test", None).await.unwrap();
        per_reset.push(commands_run(&mut conn).await);

        let after = entries(&mut conn, &names).await;
        assert_eq!(after.len(), before + 1, "one entry");
        let reset = &after.last().unwrap().changes;
        assert_eq!(reset.len(), 1);
        let event = stream(&mut conn, &names).await.pop().unwrap();
        assert_eq!(event.event_type, EventType::GraphReset);
        assert_eq!(
            (event.data["nodes"].as_u64(), event.data["relationships"].as_u64()),
            (Some(size as u64), Some(size as u64))
        );
        let generation: u64 = conn.get(names.generation()).await.unwrap();
        assert_eq!(generation, round as u64 + 1);
        let n: i64 = conn.hlen(names.nodes()).await.unwrap();
        assert_eq!(n, 0, "the graph is gone at once");
        assert!(
            keys(&mut conn, &format!("{}:old:{round}:*", names.prefix()))
                .await
                .contains(&names.moved_aside(Generation(round as u64), "nodes")),
            "the old graph waits for the sweep"
        );
        sweep_all(&mut conn, &names).await.unwrap();
    }
    assert_eq!(per_reset[0], per_reset[1], "a reset runs as many commands for 3,000 nodes as for 100");
    assert!(per_reset[0] < 40, "{}", per_reset[0]);

    // Versions survived both resets; writing after a reset works, with adjacency in the new generation.
    let out = w.mutate(&mut conn, &[Mutation::UpsertNode(node("n0", "function"), Expect::Any)], None).await.unwrap();
    assert_eq!((out[0].status, out[0].version), (Status::Created, 3), "created twice before, so version 3");
    let out = w
        .mutate(&mut conn, &[Mutation::UpsertRelationship(rel("n0>", "calls", "n0", "n0"), Expect::Any)], None)
        .await
        .unwrap();
    assert_eq!(out[0].version, 3);
    let members: Vec<String> = conn.smembers(names.outgoing(Generation(2), "n0")).await.unwrap();
    assert_eq!(members, ["n0>"]);
    let out = w.mutate(&mut conn, &[Mutation::DeleteNode("n0".into(), Expect::Any)], None).await.unwrap();
    assert_eq!((out[0].status, out[0].cascaded), (Status::Deleted, 1), "the cascade finds the new generation's sets");
}

#[tokio::test]
async fn sweeping_removes_the_old_graph_and_never_a_current_key() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    let p = names.prefix().to_owned();
    ring(&mut conn, &w, "n", 200).await;
    let _: () = conn.hset(names.file_hashes(), "src/a.py", "h").await.unwrap();
    w.reset(&mut conn, "test", None).await.unwrap();
    // The same ids again, in generation 1.
    ring(&mut conn, &w, "n", 200).await;
    let current = keys(&mut conn, &format!("{p}:g1:*")).await;
    assert_eq!(current.len(), 400, "an outgoing and an incoming set per node");
    assert_eq!(keys(&mut conn, &format!("{p}:out:*")).await.len(), 200, "generation 0's sets wait");

    // A record naming the current generation (no reset writes one) removes nothing.
    let _: () = conn.hset(names.sweep(), "1", "0").await.unwrap();
    let mut steps = 0;
    while sweep(&mut conn, &names, 7).await.unwrap() > 0 {
        steps += 1;
        assert_eq!(keys(&mut conn, &format!("{p}:g1:*")).await, current, "the current graph stays whole");
    }
    assert!(steps > 10, "bounded steps: {steps}");
    for gone in ["out:*", "in:*", "old:*", "sweep"] {
        assert!(keys(&mut conn, &format!("{p}:{gone}")).await.is_empty(), "{gone}");
    }
    assert_eq!(keys(&mut conn, &format!("{p}:g1:*")).await, current);
    let n: i64 = conn.hlen(names.nodes()).await.unwrap();
    assert_eq!(n, 200);
}

#[tokio::test]
async fn a_sweep_cut_short_is_finished_by_any_later_one() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    let p = names.prefix().to_owned();
    ring(&mut conn, &w, "a", 300).await;
    w.reset(&mut conn, "first", None).await.unwrap();
    ring(&mut conn, &w, "b", 300).await;
    w.reset(&mut conn, "second", None).await.unwrap();
    assert_eq!(sweep(&mut conn, &names, 10).await.unwrap(), 2, "one step, then the process dies");
    let record: std::collections::HashMap<String, String> = conn.hgetall(names.sweep()).await.unwrap();
    assert_eq!(record.len(), 2);
    assert_ne!(record["0"], "0", "the position of the sweep is kept");
    drop(conn);

    let (mut conn, _) = setup(&server).await;
    sweep_all(&mut conn, &names).await.unwrap();
    let left: Vec<String> = keys(&mut conn, &format!("{p}:*")).await.into_iter().collect();
    assert_eq!(
        left,
        [names.cdc_stream(), names.generation(), names.versions()]
            .map(String::from)
            .to_vec()
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "nothing of either old graph"
    );
}

#[tokio::test]
async fn a_cascade_over_the_bound_is_refused_and_goes_in_valid_bounded_steps() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    let leaves = 2 * MAX_CASCADE + 100;
    let leaf = |i: usize| format!("leaf{i}");
    let mut ops = vec![Mutation::UpsertNode(node("hub", "class"), Expect::Any)];
    ops.extend((0..leaves).map(|i| Mutation::UpsertNode(node(&leaf(i), "function"), Expect::Any)));
    ops.push(Mutation::UpsertRelationship(rel("self", "calls", "hub", "hub"), Expect::Any));
    for i in 0..leaves {
        let (s, t) = if i % 2 == 0 { ("hub".to_owned(), leaf(i)) } else { (leaf(i), "hub".to_owned()) };
        ops.push(Mutation::UpsertRelationship(rel(&format!("h{i}"), "calls", &s, &t), Expect::Any));
        if i > 0 {
            ops.push(Mutation::UpsertRelationship(rel(&format!("l{i}"), "next", &leaf(i - 1), &leaf(i)), Expect::Any));
        }
    }
    for call in calls(&ops, 1000) {
        w.mutate(&mut conn, call, None).await.unwrap();
    }
    let built = entries(&mut conn, &names).await.len();
    let rels_before: i64 = conn.hlen(names.relationships()).await.unwrap();

    let refused = w.mutate(&mut conn, &[Mutation::DeleteNode("hub".into(), Expect::Any)], None).await.unwrap_err();
    assert!(refused.is_cascade_refusal(), "{refused}");
    assert_eq!(entries(&mut conn, &names).await.len(), built, "a refused call writes no event");
    let rels: i64 = conn.hlen(names.relationships()).await.unwrap();
    assert_eq!(rels, rels_before, "and no state");

    let (out, detached) =
        w.mutate_detaching(&mut conn, &[Mutation::DeleteNode("hub".into(), Expect::Any)], None).await.unwrap();
    assert_eq!(out[0].status, Status::Deleted);
    assert_eq!(detached.relationships + u64::from(out[0].cascaded), leaves as u64 + 1);
    assert!(detached.change_sets.len() >= 3, "{}", detached.change_sets.len());
    let rels: i64 = conn.hlen(names.relationships()).await.unwrap();
    assert_eq!(rels as usize, leaves - 1, "the leaves' own relationships stay");

    // Replayed entry by entry, every state the stream passes through is a valid graph, and every step after the
    // build is bounded.
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(names.cdc_stream()).await.unwrap();
    let (mut graph_nodes, mut graph_rels) =
        (std::collections::HashSet::new(), std::collections::HashMap::<String, (String, String)>::new());
    for (n, entry) in reply.ids.iter().enumerate() {
        let events = decode_entry(&entry.id, &entry.get::<String>(STREAM_FIELD).unwrap()).unwrap();
        if n >= built {
            assert!(events.len() <= MAX_CASCADE + 1, "entry {n}: {} changes", events.len());
        }
        for e in events {
            match e.event_type {
                EventType::NodeAdded | EventType::NodeUpdated => {
                    graph_nodes.insert(e.entity.id);
                }
                EventType::NodeDeleted => {
                    graph_nodes.remove(&e.entity.id);
                }
                EventType::RelationshipAdded | EventType::RelationshipUpdated => {
                    let ends = (e.data["source"].as_str().unwrap().into(), e.data["target"].as_str().unwrap().into());
                    graph_rels.insert(e.entity.id, ends);
                }
                EventType::RelationshipDeleted => {
                    graph_rels.remove(&e.entity.id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        for (id, (s, t)) in &graph_rels {
            assert!(graph_nodes.contains(s) && graph_nodes.contains(t), "entry {n}: {id} dangles");
        }
    }
    assert!(!graph_nodes.contains("hub"));
}

#[tokio::test]
async fn relationships_deleted_earlier_in_the_call_do_not_count_against_the_cascade_bound() {
    let server = RedisServer::start();
    let (mut conn, w) = setup(&server).await;
    let names = w.names().clone();
    let leaves = MAX_CASCADE + 50;
    let mut ops = vec![Mutation::UpsertNode(node("hub", "class"), Expect::Any)];
    ops.extend((0..leaves).map(|i| Mutation::UpsertNode(node(&format!("leaf{i}"), "function"), Expect::Any)));
    ops.extend((0..leaves).map(|i| {
        Mutation::UpsertRelationship(rel(&format!("h{i}"), "calls", "hub", &format!("leaf{i}")), Expect::Any)
    }));
    for call in calls(&ops, 1000) {
        w.mutate(&mut conn, call, None).await.unwrap();
    }
    // What the analysis-worker sends: the relationships explicitly, then the node, in one call.
    let mut delete: Vec<Mutation> =
        (0..leaves - 10).map(|i| Mutation::DeleteRelationship(format!("h{i}"), Expect::Any)).collect();
    delete.push(Mutation::DeleteNode("hub".into(), Expect::Any));
    let out = w.mutate(&mut conn, &delete, None).await.unwrap();
    assert_eq!((out.last().unwrap().status, out.last().unwrap().cascaded), (Status::Deleted, 10));
    let rels: i64 = conn.hlen(names.relationships()).await.unwrap();
    assert_eq!(rels, 0);
}
