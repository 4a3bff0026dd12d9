//! A Redis that is not what the settings describe is reported, never fatal: the service starts, answers
//! `/health`, keeps answering `/ready` with 503 and the reason, and stays up (no crash loop) — unreachable seed
//! nodes, a cluster that does not serve every slot, sharded publishing against a single Redis, a single-Redis URL
//! that points at a cluster node. Only a setting that can never work (a malformed seed URL) stops the start, with
//! a message that names it.

use std::time::{Duration, Instant};

use codegraph_shared::testing::{free_port, RedisCluster, RedisServer};
use system_tests::Service;

/// Polls `/ready` until its answer is 503 with a body containing `reason`; the body.
async fn not_ready_because(service: &mut Service, reason: &str) -> String {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        assert!(service.exited().is_none(), "{} exited instead of reporting: {last}", service.name);
        if let Ok(r) = http.get(service.url("/ready")).timeout(Duration::from_secs(5)).send().await {
            let status = r.status().as_u16();
            last = format!("{status} {}", r.text().await.unwrap_or_default());
            assert_ne!(status, 200, "{} is ready against a misconfigured Redis: {last}", service.name);
            if status == 503 && last.contains(reason) {
                let health = http.get(service.url("/health")).send().await.expect("/health answers");
                assert_eq!(health.status(), 200);
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{}: /ready never said {reason:?}; last answer: {last}", service.name);
}

#[tokio::test]
async fn unreachable_seed_nodes_leave_the_services_up_and_unready() {
    let seeds = format!("redis://127.0.0.1:{},redis://127.0.0.1:{}", free_port(), free_port());
    let env = [("CODEGRAPH__REDIS__CLUSTER_NODES", seeds.as_str())];
    for name in ["graph-api", "ws-gateway", "stream-consumer", "analysis-worker"] {
        let mut service = Service::launch(name, "redis://127.0.0.1:1", &env);
        not_ready_because(&mut service, "").await;
        // Still up a while later: it keeps retrying instead of exiting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(service.exited().is_none(), "{name} exited");
    }
}

#[tokio::test]
async fn sharded_publishing_against_a_single_redis_is_refused_with_the_reason() {
    let redis = RedisServer::start();
    let env = [("CODEGRAPH__REDIS__PUBLISH", "sharded")];
    let mut api = Service::launch("graph-api", &redis.url(), &env);
    let body = not_ready_because(&mut api, "needs a Redis Cluster").await;
    assert!(body.contains("CODEGRAPH__REDIS__CLUSTER_NODES"), "{body}");
    let mut gateway = Service::launch("ws-gateway", &redis.url(), &env);
    not_ready_because(&mut gateway, "needs a Redis Cluster").await;
}

#[tokio::test]
async fn a_single_redis_url_pointing_at_a_cluster_node_is_refused_with_the_reason() {
    let cluster = RedisCluster::start(3, 0);
    let mut api = Service::launch("graph-api", &cluster.url(0), &[]);
    not_ready_because(&mut api, "points at a Redis Cluster node").await;
}

#[tokio::test]
async fn a_cluster_that_does_not_serve_every_slot_is_reported() {
    // Three primaries and no replica: once one is gone its slots are served by nobody.
    let mut cluster = RedisCluster::builder(3, 0).node_timeout(Duration::from_millis(500)).start();
    let seeds = cluster.seeds();
    let env = [("CODEGRAPH__REDIS__CLUSTER_NODES", seeds.as_str())];
    let mut api = Service::start("graph-api", "", &env).await;
    cluster.kill(0);
    not_ready_because(&mut api, "does not serve every slot").await;
}

#[tokio::test]
async fn a_malformed_seed_url_stops_the_start_with_a_message_naming_it() {
    let output = std::process::Command::new(system_tests::bin_dir().join("graph-api"))
        .env("CODEGRAPH_CONFIG_DIR", "/nonexistent")
        .env("CODEGRAPH__HTTP__ADDR", format!("127.0.0.1:{}", free_port()))
        .env("CODEGRAPH__REDIS__CLUSTER_NODES", "redis://127.0.0.1:7000,not a url")
        .output()
        .expect("graph-api runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CODEGRAPH__REDIS__CLUSTER_NODES"), "{stderr}");
}
