//! On a Redis Cluster the project registry (`code_graph:projects`) lives on one shard: while that shard's primary
//! is down, mutations of projects on the other shards are applied and answered as such (the registry update is
//! best effort, retried by the project's next change), not failed after the fact.

use std::time::Duration;

use codegraph_shared::{
    functions::{GraphWriter, Mutation, PublishMode},
    graph::Node,
    names::{RedisNames, PROJECTS_KEY},
    project::ProjectName,
    redis_handle::RedisHandle,
    testing::RedisCluster,
};

fn node(id: &str) -> Node {
    serde_json::from_value(serde_json::json!({"id": id, "kind": "function", "name": id})).unwrap()
}

#[tokio::test]
async fn a_dead_registry_shard_does_not_fail_other_projects_mutations() {
    // A long node timeout: the dead primary stays "possibly failing" for the test, so the other shards serve.
    let mut cluster = RedisCluster::builder(3, 0).node_timeout(Duration::from_secs(60)).start();
    let registry = cluster.primary_for_key(PROJECTS_KEY);
    let spread = cluster.project_names_per_primary("reg", 1);
    let (_, names) = spread.iter().find(|(p, _)| *p != registry).expect("a project on another primary");
    let project = ProjectName::parse(&names[0]).unwrap();
    let handle = RedisHandle::open_cluster(&cluster.seed_urls(), &Default::default()).unwrap();
    let mut conn = handle.conn();
    let writer = GraphWriter::new(RedisNames::new(&project), 0, PublishMode::Sharded);
    let upsert = |id: &str| [Mutation::UpsertNode(node(id), Default::default())];
    writer.mutate(&mut conn, &upsert("before"), None).await.unwrap();

    cluster.kill(registry);
    let out = writer.mutate(&mut conn, &upsert("during"), None).await.expect("applied and answered");
    assert!(out[0].event_id.is_some());
    let stored: Option<String> =
        redis::cmd("HGET").arg(RedisNames::new(&project).nodes()).arg("during").query_async(&mut conn).await.unwrap();
    assert!(stored.is_some(), "the mutation is in Redis");
}
