//! The Function library on a Redis Cluster: loaded on every primary, and again on a primary that lost it (a
//! restart without data, a new node) by the first call that finds it missing; a newer library on a primary is
//! never replaced by this build's.

use codegraph_shared::{
    functions::{library_version, GraphWriter, Mutation, PublishMode},
    graph::Node,
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
    testing::RedisCluster,
};

fn node(id: &str) -> Node {
    serde_json::from_value(serde_json::json!({"id": id, "kind": "function", "name": id})).unwrap()
}

fn version_on(cluster: &RedisCluster, node: usize) -> Option<i64> {
    redis::cmd("FCALL_RO").arg("cg_version").arg(0).query(&mut cluster.connection(node)).ok()
}

#[tokio::test]
async fn the_library_is_on_every_primary_and_comes_back_where_it_was_lost() {
    let cluster = RedisCluster::start(3, 0);
    let handle = RedisHandle::open_cluster(&cluster.seed_urls(), &Default::default()).unwrap();
    let mut conn = handle.conn();
    conn.ensure_library().await.unwrap();
    for p in cluster.primaries() {
        assert_eq!(version_on(&cluster, p), Some(library_version()), "primary {p}");
    }

    // One project per primary; the library vanishes from one primary (as after a restart without data).
    let spread = cluster.project_names_per_primary("lib", 1);
    let (lost_on, names) = &spread[0];
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut cluster.connection(*lost_on)).unwrap();
    assert_eq!(version_on(&cluster, *lost_on), None);
    let project = ProjectName::parse(&names[0]).unwrap();
    let writer = GraphWriter::new(RedisNames::new(&project), 0, PublishMode::Sharded);
    let out = writer.mutate(&mut conn, &[Mutation::UpsertNode(node("a"), Default::default())], None).await.unwrap();
    assert!(out[0].event_id.is_some(), "the call found no function, loaded the library and ran");
    assert_eq!(version_on(&cluster, *lost_on), Some(library_version()));

    // A primary with a newer library keeps it.
    let (newer_on, _) = &spread[1];
    let newer = codegraph_shared::functions::SOURCE.replacen(
        &format!("local LIBRARY_VERSION = {}", library_version()),
        &format!("local LIBRARY_VERSION = {}", library_version() + 1),
        1,
    );
    let _: String =
        redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(newer).query(&mut cluster.connection(*newer_on)).unwrap();
    conn.ensure_library().await.unwrap();
    assert_eq!(version_on(&cluster, *newer_on), Some(library_version() + 1));
    assert_eq!(handle.readiness().await.unwrap(), library_version(), "readiness reports the lowest version");
}
