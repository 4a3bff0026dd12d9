//! The Redis Cluster test harness itself (`codegraph_shared::testing::RedisCluster`), against real redis-server
//! processes: it starts 3 primaries + 3 replicas that agree on every slot, a key written through the cluster lives on
//! the primary the harness names, a SIGKILLed primary is failed over to its replica with the key intact, and the old
//! primary restarted comes back as a replica.

use std::time::{Duration, Instant};

use codegraph_shared::testing::{cluster::Role, key_slot, RedisCluster};
use redis::Commands;

#[test]
fn a_killed_primary_fails_over_and_comes_back_as_a_replica() {
    let started = Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    eprintln!("3 + 3 nodes healthy after {:?}", started.elapsed());
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 6);
    assert_eq!(nodes.iter().filter(|n| n.role == Role::Primary).count(), 3, "{nodes:#?}");
    for replica in nodes.iter().filter(|n| n.role == Role::Replica) {
        let primary = replica.primary.expect("a replica names its primary");
        assert_eq!(nodes[primary].role, Role::Primary);
    }
    assert_eq!(cluster.seeds().split(',').count(), 6);
    assert_eq!(cluster.primaries().len(), 3);

    // The harness's slot agrees with the server's, and names the primary that holds the key.
    let key = "code_graph:{harness}:probe";
    let mut direct = cluster.connection(0);
    let server_slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut direct).unwrap();
    assert_eq!(server_slot, key_slot(key.as_bytes()));
    let mut conn = cluster.cluster_connection();
    let _: () = conn.set(key, "before the crash").unwrap();
    let old = cluster.primary_for_key(key);
    let value: Option<String> = cluster.connection(old).get(key).unwrap();
    assert_eq!(value.as_deref(), Some("before the crash"));
    // Replication is asynchronous: the crash comes once the replica has the key.
    let replica = nodes.iter().find(|n| n.primary == Some(old)).expect("the key's primary has a replica").index;
    let mut replica_conn = cluster.connection(replica);
    let _: () = redis::cmd("READONLY").query(&mut replica_conn).unwrap();
    let start = Instant::now();
    while replica_conn.get::<_, Option<String>>(key).unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "the replica never got the key");
        std::thread::sleep(Duration::from_millis(20));
    }

    let killed = Instant::now();
    cluster.kill(old);
    let new = cluster.wait_for_failover(old);
    eprintln!("failed over after {:?} (cluster-node-timeout 2 s)", killed.elapsed());
    assert_eq!(new, replica, "the killed primary's own replica is promoted");
    assert_eq!(cluster.primary_for_key(key), new);
    let value: Option<String> = cluster.connection(new).get(key).unwrap();
    assert_eq!(value.as_deref(), Some("before the crash"));

    let restarted = Instant::now();
    cluster.restart(old);
    eprintln!("rejoined as a replica after {:?}", restarted.elapsed());
    let after = cluster.nodes();
    assert!(after[old].running);
    assert_eq!(after[old].role, Role::Replica, "{after:#?}");
    assert_eq!(after[old].primary, Some(new));
    assert_eq!(after[new].role, Role::Primary);
    let mut replica = cluster.connection(old);
    let _: () = redis::cmd("READONLY").query(&mut replica).unwrap();
    let value: Option<String> = replica.get(key).unwrap();
    assert_eq!(value.as_deref(), Some("before the crash"), "the rejoined replica synced from its new primary");
}

#[test]
fn project_names_spread_over_every_primary_even_with_one() {
    let single = RedisCluster::builder(1, 0).node_timeout(Duration::from_millis(1000)).start();
    assert_eq!(single.primaries(), vec![0]);
    let groups = single.project_names_per_primary("p", 3);
    assert_eq!(groups, vec![(0, vec!["p-0".to_owned(), "p-1".to_owned(), "p-2".to_owned()])]);

    let cluster = RedisCluster::start(3, 0);
    let groups = cluster.project_names_per_primary("bench", 4);
    assert_eq!(groups.len(), 3);
    for (primary, names) in &groups {
        assert_eq!(names.len(), 4);
        for name in names {
            assert_eq!(cluster.primary_for_key(&format!("code_graph:{{{name}}}:cdc")), *primary, "{name}");
        }
    }
}
