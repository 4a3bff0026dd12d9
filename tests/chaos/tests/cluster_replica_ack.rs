//! `CODEGRAPH__REDIS__MIN_REPLICAS_ACK` on a Redis Cluster (issue 13): concurrent writers create nodes through
//! graph-api while the primary of their project is SIGKILLed and its replica promoted. With `MIN_REPLICAS_ACK=1`
//! every mutation answered 2xx must still be in Redis after the failover (the 503s it answered instead are
//! counted); without it, what the failover took is printed, not asserted. So that there is something to lose,
//! the primary is killed while its replica is behind (the replica frozen and its link cut a moment before).

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use codegraph_shared::{
    names::RedisNames,
    project::ProjectName,
    testing::{cluster::Role, RedisCluster},
};
use serde_json::json;
use stream_consumer::test_support::expected_from_redis;
use system_tests::Service;

const WRITERS: usize = 8;
/// Acknowledged mutations before the SIGKILL, and after the failover.
const BEFORE: usize = 150;
const AFTER: usize = 50;
const DEADLINE: Duration = Duration::from_secs(60);

/// What the writers were answered.
#[derive(Default, Debug)]
struct Answers {
    /// Node ids of the mutations answered 2xx.
    acked: Vec<String>,
    /// 503s (with MIN_REPLICAS_ACK: no replica confirmed in time, or the shard was down).
    refused: u64,
    /// Other statuses, timeouts and connection errors (the outcome is unknown).
    other: u64,
}

/// Writers creating new nodes `w<task>-<n>` in `project`, each waiting for its answer, no retries.
struct Writers {
    answers: Arc<Mutex<Answers>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(api: &Service, project: &str) -> Self {
        let answers = Arc::new(Mutex::new(Answers::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let url = api.url(&format!("/api/graph/nodes?project={project}"));
        let tasks = (0..WRITERS)
            .map(|task| {
                let (answers, stop, url) = (answers.clone(), stop.clone(), url.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let id = format!("w{task}-{n}");
                        let body = json!({"id": id, "kind": "function", "name": id});
                        let sent = http.post(&url).json(&body).timeout(Duration::from_secs(5)).send().await;
                        let status = sent.map(|r| r.status());
                        let ok = status.as_ref().is_ok_and(|s| s.is_success());
                        {
                            let mut a = answers.lock().expect("answers");
                            match status {
                                Ok(s) if s.is_success() => a.acked.push(id),
                                Ok(s) if s.as_u16() == 503 => a.refused += 1,
                                _ => a.other += 1,
                            }
                        }
                        if !ok {
                            // A shard that is down answers at once; do not spin on it.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        Self { answers, stop, tasks }
    }

    fn acked(&self) -> usize {
        self.answers.lock().expect("answers").acked.len()
    }

    async fn wait_acked(&self, n: usize) {
        let start = Instant::now();
        while self.acked() < n {
            assert!(start.elapsed() < DEADLINE, "only {} of {n} mutations acknowledged", self.acked());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> Answers {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("a writer");
        }
        Arc::try_unwrap(self.answers).expect("writers stopped").into_inner().expect("answers")
    }
}

/// What one failover under writers showed.
#[derive(Debug)]
struct Outcome {
    acked: usize,
    refused: u64,
    other: u64,
    /// Acknowledged mutations whose node is not in Redis after the failover.
    lost: Vec<String>,
    /// 503s answered between the SIGKILL and the end (the failover's cost in refusals).
    refused_after_kill: u64,
    /// SIGKILL → the replica promoted; → the old primary back as its replica.
    failover: Duration,
    rejoined: Duration,
}

/// One field of `INFO replication`.
fn replication(conn: &mut redis::Connection, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg("replication").query(conn).expect("INFO replication");
    let value = info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'));
    value.unwrap_or_default().trim().to_owned()
}

/// A node's process id.
fn pid(conn: &mut redis::Connection) -> String {
    let info: String = redis::cmd("INFO").arg("server").query(conn).expect("INFO server");
    info.lines().find_map(|l| l.strip_prefix("process_id:")).expect("a process_id").trim().to_owned()
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(pid: &str, signal: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid).status().expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// SIGKILLs the primary `victim` while its replica lacks its latest writes, so that a failover loses whatever of
/// them was acknowledged without a replica: the replica is frozen (SIGSTOP), the primary drops its link to it
/// (`CLIENT KILL TYPE replica`: what it writes from then on reaches no replica), and once its replication offset
/// moved on and `WRITERS` more mutations were answered 2xx — or a second passed, longer than a `WAIT` of
/// MIN_REPLICAS_ACK waits — it is SIGKILLed and the replica thawed. Returns when the primary was killed.
fn kill_ahead_of_replica(cluster: &mut RedisCluster, victim: usize, writers: &Writers) -> Instant {
    let replica = cluster.nodes().into_iter().find(|n| n.role == Role::Replica && n.primary == Some(victim));
    let replica = replica.expect("the primary has a replica").index;
    let mut primary = cluster.connection(victim);
    let mut follower = cluster.connection(replica);
    let frozen = pid(&mut follower);
    signal(&frozen, "STOP");
    let _: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica").query(&mut primary).expect("kill");
    let had: u64 = replication(&mut primary, "master_repl_offset").parse().expect("an offset");
    let (acked, cut) = (writers.acked(), Instant::now());
    loop {
        let ahead: u64 = replication(&mut primary, "master_repl_offset").parse().expect("an offset");
        let answered = writers.acked() >= acked + WRITERS || cut.elapsed() > Duration::from_millis(1200);
        if ahead > had && answered {
            break;
        }
        assert!(cut.elapsed() < Duration::from_secs(10), "the primary wrote nothing after the cut");
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = Instant::now();
    cluster.kill(victim);
    signal(&frozen, "CONT");
    t0
}

/// Writers into a project of the primary `victim`; SIGKILL it once `BEFORE` mutations were acknowledged; wait for
/// its replica's promotion and `AFTER` more acknowledgements; then look up every acknowledged node.
async fn failover_under_writers(cluster: &mut RedisCluster, api: &Service, project: &str) -> Outcome {
    let victim = cluster.primary_for_key(project);
    let writers = Writers::start(api, project);
    writers.wait_acked(BEFORE).await;
    let refused_before = writers.answers.lock().expect("answers").refused;
    let t0 = tokio::task::block_in_place(|| kill_ahead_of_replica(cluster, victim, &writers));
    let promoted = cluster.wait_for_failover_async(victim).await;
    let failover = t0.elapsed();
    // The old primary comes back as a replica of its successor (as an orchestrator restarts it). Until then the
    // promoted primary has no replica: with MIN_REPLICAS_ACK=1 every mutation of its slots is a 503.
    tokio::task::block_in_place(|| cluster.restart(victim));
    let rejoined = t0.elapsed();
    let acked_at_rejoin = writers.acked();
    writers.wait_acked(acked_at_rejoin + AFTER).await;
    let answers = writers.stop().await;
    assert_eq!(cluster.primary_for_key(project), promoted);
    let names = RedisNames::new(&ProjectName::parse(project).expect("a project name"));
    let graph = tokio::task::block_in_place(|| expected_from_redis(&mut cluster.connection(promoted), &names));
    let held: BTreeSet<&String> = graph.nodes.keys().collect();
    let lost = answers.acked.iter().filter(|id| !held.contains(id)).cloned().collect();
    Outcome {
        acked: answers.acked.len(),
        refused: answers.refused,
        other: answers.other,
        lost,
        refused_after_kill: answers.refused - refused_before,
        failover,
        rejoined,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_min_replicas_ack_no_acknowledged_mutation_is_lost_by_a_failover() {
    let mut cluster =
        tokio::task::block_in_place(|| RedisCluster::builder(3, 1).node_timeout(Duration::from_millis(2000)).start());
    let seeds = cluster.seeds();
    let url = cluster.url(0);
    let config_dir = tempfile::tempdir().expect("a temporary directory");
    let config = config_dir.path().to_string_lossy().into_owned();
    let common = [("CODEGRAPH_CONFIG_DIR", config.as_str()), ("CODEGRAPH__REDIS__CLUSTER_NODES", seeds.as_str())];
    let ack = [("CODEGRAPH__REDIS__MIN_REPLICAS_ACK", "1"), ("CODEGRAPH__REDIS__MIN_REPLICAS_TIMEOUT_MS", "1000")];
    let with_ack = Service::start("graph-api", &url, &[&common[..], &ack[..]].concat()).await;
    let without = Service::start("graph-api", &url, &common).await;
    // Two projects on different primaries, one per run.
    let groups = cluster.project_names_per_primary("ack", 1);
    let (acked_project, async_project) = (groups[0].1[0].clone(), groups[1].1[0].clone());

    let acked = failover_under_writers(&mut cluster, &with_ack, &acked_project).await;
    println!("MIN_REPLICAS_ACK=1: {acked:?}");
    let unacked = failover_under_writers(&mut cluster, &without, &async_project).await;
    println!("MIN_REPLICAS_ACK=0: {unacked:?}");
    for (name, o) in [("MIN_REPLICAS_ACK=1", &acked), ("MIN_REPLICAS_ACK=0", &unacked)] {
        println!(
            "{name}: {} mutations answered 2xx, {} lost by the failover ({:?}), {} answered 503 ({} of them from the \
             cut-off on), {} other errors or timeouts; failover in {:.2} s, old primary back as a replica after \
             {:.2} s",
            o.acked,
            o.lost.len(),
            o.lost.iter().take(5).collect::<Vec<_>>(),
            o.refused,
            o.refused_after_kill,
            o.other,
            o.failover.as_secs_f64(),
            o.rejoined.as_secs_f64()
        );
    }
    // Every node is back and every primary has its replica again.
    assert_eq!(cluster.nodes().iter().filter(|n| n.role == Role::Replica).count(), 3);
    assert!(acked.lost.is_empty(), "acknowledged mutations lost with MIN_REPLICAS_ACK=1: {:?}", acked.lost);
    assert!(acked.acked >= BEFORE + AFTER && unacked.acked >= BEFORE + AFTER);
}
