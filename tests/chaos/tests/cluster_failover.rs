//! Failover chaos on a Redis Cluster (issue 13): 3 primaries + 3 replicas (`cluster-node-timeout` 2 s), graph-api,
//! two ws-gateways behind nginx, a stream-consumer with the FalkorDB sink, every service given every node as a
//! seed; projects spread over the primaries, a writer on each, 1,000 resuming WebSocket clients watching them. The
//! primary of one project is SIGKILLed mid-run; its replica is promoted and every service must recover by itself.
//! Then every client and the sink are checked against what the streams hold: no change missing (0 lost), none out
//! of order; repeats (dropped by entry id and index) and changes the failover took out of Redis are counted and
//! printed. The time from the SIGKILL to every client receiving new events again is printed (goal: node timeout
//! + 2 s). `CHAOS_LONG=1`: three failovers in a row (each killed primary restarted as a replica), more load.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chaos_tests::{
    clients::{ChangeId, Client, ClientLog, Pace},
    load::MutationLoad,
    ProjectStream,
};
use codegraph_shared::{
    event::StreamId,
    names::RedisNames,
    project::ProjectName,
    stream::now_ms,
    testing::{start_falkordb, Balancer, RedisCluster, RedisServer},
};
use stream_consumer::{
    sinks::falkordb::{query::READ_META, FalkorClient},
    test_support::{dump_falkordb, expected_from_redis, GraphDump},
};
use system_tests::Service;
use tokio::sync::watch;

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);
/// Longest wait for any condition (a failover, recovery, quiescence, the sink).
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
struct Plan {
    clients: usize,
    projects_per_primary: usize,
    /// Mutations per second into each project.
    rate: u64,
    /// Mutations into each project before each SIGKILL, and after each failover.
    before: u64,
    after: u64,
    failovers: usize,
}

impl Plan {
    fn from_env() -> Self {
        if std::env::var_os("CHAOS_LONG").is_some_and(|v| !v.is_empty() && v != "0") {
            Self { clients: 1000, projects_per_primary: 4, rate: 6, before: 60, after: 60, failovers: 3 }
        } else {
            Self { clients: 1000, projects_per_primary: 2, rate: 4, before: 12, after: 12, failovers: 1 }
        }
    }
}

/// What one failover measured.
#[derive(Debug)]
struct Failover {
    project: String,
    killed: usize,
    promoted: usize,
    kill_ms: u64,
    /// SIGKILL → the cluster healthy again with the replica owning the slots.
    healthy: Duration,
    /// SIGKILL → every client of the killed project, of the other projects of the killed primary, and of the
    /// projects of the other primaries held a change written after the SIGKILL.
    project_clients: Option<Duration>,
    same_shard_clients: Option<Duration>,
    other_shard_clients: Option<Duration>,
    /// Per project: the writer's attempts answered 5xx or not at all from the SIGKILL until the load flowed again.
    refused: Vec<u64>,
}

/// Every process of the system (dropped in this order: the services before the Redis nodes they use).
struct System {
    api: Service,
    gateways: Vec<Service>,
    balancer: Balancer,
    consumer: Service,
    falkor: RedisServer,
    cluster: RedisCluster,
    _config: tempfile::TempDir,
}

impl System {
    async fn start() -> Self {
        let cluster = tokio::task::block_in_place(|| RedisCluster::builder(3, 1).node_timeout(NODE_TIMEOUT).start());
        let falkor = start_falkordb(&["--appendonly", "no"]);
        let config_dir = tempfile::tempdir().expect("a temporary directory");
        let config = config_dir.path().to_string_lossy().into_owned();
        let seeds = cluster.seeds();
        // CLUSTER_NODES wins over the URL, which names one node (as a misconfigured deployment might).
        let url = cluster.url(0);
        let common = [("CODEGRAPH_CONFIG_DIR", config.as_str()), ("CODEGRAPH__REDIS__CLUSTER_NODES", seeds.as_str())];
        let api = Service::start("graph-api", &url, &common).await;
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let env = [&common[..], &[("CODEGRAPH__GATEWAY__REDIS_PING_INTERVAL_MS", "500")]].concat();
            gateways.push(Service::start("ws-gateway", &url, &env).await);
        }
        let balancer = Balancer::start(&gateways.iter().map(|g| g.port).collect::<Vec<_>>());
        let falkor_url = falkor.url();
        let consumer_env = [
            ("CODEGRAPH__CONSUMER__NAME", "consumer-a"),
            ("CODEGRAPH__CONSUMER__TICK_MS", "200"),
            ("CODEGRAPH__CONSUMER__BLOCK_MS", "200"),
            ("CODEGRAPH__SINKS__FALKORDB__URL", falkor_url.as_str()),
        ];
        let consumer = Service::start("stream-consumer", &url, &[&common[..], &consumer_env[..]].concat()).await;
        Self { cluster, falkor, api, gateways, balancer, consumer, _config: config_dir }
    }

    /// A project's whole stream, read from the node that owns it now.
    fn stream(&self, project: &str) -> Result<ProjectStream, String> {
        let mut conn = self.cluster.cluster_connection();
        let reply: redis::streams::StreamRangeReply = tokio::task::block_in_place(|| {
            redis::cmd("XRANGE").arg(names(project).cdc_stream()).arg("-").arg("+").query(&mut conn)
        })
        .map_err(|e| format!("XRANGE {project}: {e}"))?;
        ProjectStream::from_range(&reply)
    }

    /// The project's graph in Redis, from the primary that owns it now.
    fn redis_graph(&self, project: &str) -> GraphDump {
        tokio::task::block_in_place(|| {
            let mut conn = self.cluster.connection(self.cluster.primary_for_key(project));
            expected_from_redis(&mut conn, &names(project))
        })
    }

    /// The FalkorDB sink's graph of a project and the last stream id it applied.
    async fn sink(&self, project: &str) -> Result<(GraphDump, StreamId), String> {
        let client = FalkorClient::open(&self.falkor.url()).map_err(|e| e.to_string())?;
        let graph = format!("codegraph_{project}");
        let dump = dump_falkordb(&client, &graph).await.map_err(|e| e.to_string())?;
        let rows = client.read(&graph, READ_META).await.map_err(|e| e.to_string())?;
        let applied = rows
            .first()
            .and_then(|r| Some(StreamId::new(r.get(1)?.as_u64()?, r.get(2)?.as_u64()?)))
            .unwrap_or(StreamId::ZERO);
        Ok((dump, applied))
    }

    /// Every service answers `/ready` (each recovered by itself).
    async fn not_ready(&self) -> Vec<String> {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for s in std::iter::once(&self.api).chain(&self.gateways).chain([&self.consumer]) {
            let start = Instant::now();
            while !http.get(s.url("/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
                if start.elapsed() > DEADLINE {
                    out.push(format!("{} on port {} is not ready", s.name, s.port));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        out
    }
}

/// Waits until every load sent `n` more mutations; the loads that stalled.
async fn more(loads: &[MutationLoad], n: u64) -> Vec<Result<(), String>> {
    futures_util::future::join_all(loads.iter().map(|l| l.wait_more(n, DEADLINE))).await
}

fn names(project: &str) -> RedisNames {
    RedisNames::new(&ProjectName::parse(project).expect("a valid project name"))
}

/// Polls the clients' logs until each holds a change whose entry was written after `kill_ms`: when each did (in
/// the clients' order), `None` for a client that did not within the deadline.
async fn clients_receiving(logs: Vec<Arc<Mutex<ClientLog>>>, kill_ms: u64, t0: Instant) -> Vec<Option<Duration>> {
    let mut at = vec![None; logs.len()];
    let mut waiting: Vec<usize> = (0..logs.len()).collect();
    while !waiting.is_empty() && t0.elapsed() < DEADLINE {
        let now = t0.elapsed();
        waiting.retain(|&i| {
            let fresh = logs[i].lock().expect("client log").changes.last().is_some_and(|c| c.entry.ms > kill_ms);
            if fresh {
                at[i] = Some(now);
            }
            !fresh
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    at
}

/// The latest of the times, `None` when one is missing.
fn latest(mut times: impl Iterator<Item = Option<Duration>>) -> Option<Duration> {
    times.try_fold(Duration::ZERO, |a, t| Some(a.max(t?)))
}

/// One client's account against its project's stream.
#[derive(Default, Debug, Clone, Copy)]
struct Count {
    clients: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    /// Changes held that the stream does not hold (written to the killed primary, never replicated).
    not_in_stream: u64,
    resyncs: u64,
    reconnects: u64,
}

fn account(log: &ClientLog, want: &[ChangeId]) -> Count {
    let held: BTreeSet<ChangeId> = log.changes.iter().copied().collect();
    let wanted: BTreeSet<ChangeId> = want.iter().copied().collect();
    Count {
        clients: 1,
        lost: want.iter().filter(|c| !held.contains(c)).count() as u64,
        duplicated: log.duplicates,
        out_of_order: log.out_of_order,
        not_in_stream: log.changes.iter().filter(|c| !wanted.contains(c)).count() as u64,
        resyncs: log.resyncs,
        reconnects: log.reconnects,
    }
}

fn add(a: Count, b: Count) -> Count {
    Count {
        clients: a.clients + b.clients,
        lost: a.lost + b.lost,
        duplicated: a.duplicated + b.duplicated,
        out_of_order: a.out_of_order + b.out_of_order,
        not_in_stream: a.not_in_stream + b.not_in_stream,
        resyncs: a.resyncs + b.resyncs,
        reconnects: a.reconnects + b.reconnects,
    }
}

/// The sink's account of one project: entities of the Redis graph it lacks or holds at an older version (lost),
/// entities it holds that Redis does not or holds newer (from changes the failover took out of Redis).
fn sink_account(got: &GraphDump, want: &GraphDump) -> (u64, u64) {
    let version =
        |props: &serde_json::Map<String, serde_json::Value>| props.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    let mut lost = 0;
    let mut extra = 0;
    for (id, w) in &want.nodes {
        match got.nodes.get(id) {
            None => lost += 1,
            Some(g) if g == w => {}
            Some(g) if version(&g.1) < version(&w.1) => lost += 1,
            Some(_) => extra += 1,
        }
    }
    extra += got.nodes.keys().filter(|k| !want.nodes.contains_key(*k)).count() as u64;
    for (id, w) in &want.edges {
        match got.edges.get(id) {
            None => lost += 1,
            Some(g) if g == w => {}
            Some(g) if version(&g.3) < version(&w.3) => lost += 1,
            Some(_) => extra += 1,
        }
    }
    extra += got.edges.keys().filter(|k| !want.edges.contains_key(*k)).count() as u64;
    (lost, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_loses_no_event_that_the_stream_holds() {
    let plan = Plan::from_env();
    let started = Instant::now();
    let mut sys = System::start().await;
    let groups = sys.cluster.project_names_per_primary("fo", plan.projects_per_primary);
    let projects: Vec<String> = groups.iter().flat_map(|(_, names)| names.clone()).collect();
    println!("projects per primary: {groups:?}");

    let (_storm, storm_rx) = watch::channel(0u64);
    let clients: Vec<Client> = (0..plan.clients)
        .map(|i| {
            let project = &projects[i % projects.len()];
            Client::start(sys.balancer.ws(""), project, i as u64, Pace::Fast, storm_rx.clone())
        })
        .collect();
    let loads: Vec<MutationLoad> = projects
        .iter()
        .enumerate()
        .map(|(i, p)| MutationLoad::start(sys.api.base.clone(), p, plan.rate, 7 + i as u64))
        .collect();
    // Every client is live (it received a change) before the first fault.
    let start = Instant::now();
    while clients.iter().any(|c| c.last().is_none()) {
        let idle = clients.iter().filter(|c| c.last().is_none()).count();
        assert!(start.elapsed() < DEADLINE, "{idle} of {} clients received nothing", clients.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{} clients live after {:.1} s", clients.len(), started.elapsed().as_secs_f64());
    let mut problems = Vec::new();
    for r in more(&loads, plan.before).await {
        problems.extend(r.err());
    }

    let mut failovers = Vec::new();
    let mut killed_nodes = Vec::new();
    for round in 0..plan.failovers {
        // A project on a primary not yet killed in this run.
        let project = projects
            .iter()
            .find(|p| !killed_nodes.contains(&sys.cluster.primary_for_key(p)))
            .expect("a primary not yet killed")
            .clone();
        let victim = sys.cluster.primary_for_key(&project);
        let on_victim: Vec<bool> = clients.iter().map(|c| sys.cluster.primary_for_key(&c.project) == victim).collect();
        let logs: Vec<_> = clients.iter().map(|c| c.log.clone()).collect();
        let failures = |loads: &[MutationLoad]| -> Vec<u64> {
            loads.iter().map(|l| l.failures.load(std::sync::atomic::Ordering::Relaxed)).collect()
        };
        let failed_before = failures(&loads);
        let kill_ms = now_ms();
        let t0 = Instant::now();
        tokio::task::block_in_place(|| sys.cluster.kill(victim));
        let watch = tokio::spawn(clients_receiving(logs, kill_ms, t0));
        let promoted = sys.cluster.wait_for_failover_async(victim).await;
        let healthy = t0.elapsed();
        let at = watch.await.expect("the client watch");
        let pick = |keep: &dyn Fn(usize) -> bool| latest((0..at.len()).filter(|&i| keep(i)).map(|i| at[i]));
        let mut f = Failover {
            killed: victim,
            promoted,
            kill_ms,
            healthy,
            project_clients: pick(&|i| clients[i].project == project),
            same_shard_clients: pick(&|i| on_victim[i] && clients[i].project != project),
            other_shard_clients: pick(&|i| !on_victim[i]),
            project,
            refused: Vec::new(),
        };
        if at.iter().any(Option::is_none) {
            problems.push(format!("failover {round}: some clients received nothing new within {DEADLINE:?}"));
        }
        killed_nodes.push(victim);
        killed_nodes.push(promoted);
        for r in more(&loads, plan.after).await {
            problems.extend(r.err());
        }
        f.refused = failures(&loads).iter().zip(&failed_before).map(|(a, b)| a - b).collect();
        println!("failover {round}: {f:?}");
        failovers.push(f);
        if round + 1 < plan.failovers {
            // The old primary comes back as a replica of its successor: every primary has a replica again.
            tokio::task::block_in_place(|| sys.cluster.restart(victim));
        }
    }
    for load in loads {
        if let Err(e) = load.stop().await {
            problems.push(e);
        }
    }

    // Quiescence: nothing is written any more; every client must reach the end of its project's stream.
    let mut streams = Vec::new();
    for p in &projects {
        streams.push(sys.stream(p).unwrap_or_else(|e| panic!("{e}")));
    }
    let want_of = |project: &str| &streams[projects.iter().position(|p| p == project).expect("a known project")];
    let start = Instant::now();
    loop {
        let behind = clients.iter().filter(|c| c.last() < want_of(&c.project).last()).count();
        if behind == 0 {
            break;
        }
        if start.elapsed() > DEADLINE {
            problems.push(format!("{behind} clients never reached the end of their stream"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stream is the record: replayed, it builds the graph Redis holds.
    for (p, s) in projects.iter().zip(&streams) {
        match s.replay() {
            Ok(g) if g == sys.redis_graph(p) => {}
            Ok(g) => {
                problems.push(format!("the {p} stream replayed differs from Redis: {}", g.diff(&sys.redis_graph(p))))
            }
            Err(e) => problems.push(format!("the {p} stream: {e}")),
        }
    }

    let wants: Vec<Vec<ChangeId>> = streams.iter().map(ProjectStream::changes).collect();
    let mut per_project = vec![Count::default(); projects.len()];
    for (i, c) in clients.iter().enumerate() {
        let k = projects.iter().position(|p| *p == c.project).expect("a known project");
        let log = c.snapshot();
        let n = account(&log, &wants[k]);
        if n.lost > 0 || n.out_of_order > 0 {
            problems.push(format!("client {i} ({}): {n:?}", c.project));
        }
        for frame in &log.malformed {
            problems.push(format!("client {i}: unreadable frame {frame}"));
        }
        per_project[k] = add(per_project[k], n);
    }
    let total = per_project.iter().copied().fold(Count::default(), add);
    let taken_from_redis = total.not_in_stream > 0;

    // The sink: the same graph as Redis (lost = entities it lacks or holds older) and the last entry applied.
    let mut sink_rows = Vec::new();
    let start = Instant::now();
    loop {
        sink_rows.clear();
        for (p, s) in projects.iter().zip(&streams) {
            let want = sys.redis_graph(p);
            match sys.sink(p).await {
                Ok((got, applied)) => {
                    let (lost, extra) = sink_account(&got, &want);
                    let behind = s.sets.iter().filter(|e| e.id > applied).count() as u64;
                    sink_rows.push((p.clone(), lost, extra, behind, applied))
                }
                Err(e) => sink_rows.push((format!("{p}: {e}"), u64::MAX, 0, u64::MAX, StreamId::ZERO)),
            }
        }
        let settled = sink_rows.iter().all(|r| r.1 == 0 && r.3 == 0 && (r.2 == 0 || taken_from_redis));
        if settled || start.elapsed() > DEADLINE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let entries: usize = streams.iter().map(|s| s.sets.len()).sum();
    let applied_metric = sys.consumer.metrics().await.sum("codegraph_consumer_events_applied_total");
    problems.extend(sys.not_ready().await);

    let mut report = String::new();
    let _ = writeln!(report, "\n{plan:?}, {:.0} s", started.elapsed().as_secs_f64());
    report.push_str(
        "| project | primary (killed?) | clients | changes in stream | lost | duplicated | out of order | \
         held, not in stream | resyncs | reconnects |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (k, p) in projects.iter().enumerate() {
        let n = per_project[k];
        let killed = failovers.iter().any(|f| f.project == *p);
        let _ = writeln!(
            report,
            "| {p} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            sys.cluster.primary_for_key(p),
            if killed { " (failed over)" } else { "" },
            n.clients,
            wants[k].len(),
            n.lost,
            n.duplicated,
            n.out_of_order,
            n.not_in_stream,
            n.resyncs,
            n.reconnects
        );
    }
    let _ = writeln!(
        report,
        "| all | | {} | | {} | {} | {} | {} | {} | {} |",
        total.clients,
        total.lost,
        total.duplicated,
        total.out_of_order,
        total.not_in_stream,
        total.resyncs,
        total.reconnects
    );
    report.push_str("\n| sink project | entities lost | entities not in Redis | entries not applied | applied up to |\n| --- | ---: | ---: | ---: | --- |\n");
    for (p, lost, extra, behind, applied) in &sink_rows {
        let _ = writeln!(report, "| falkordb {p} | {lost} | {extra} | {behind} | {applied} |");
    }
    let _ = writeln!(
        report,
        "sink: {applied_metric} entries applied for {entries} stream entries ({} applied more than once or taken out of Redis)",
        (applied_metric as i64 - entries as i64).max(0)
    );
    let goal = NODE_TIMEOUT + Duration::from_secs(2);
    for (i, f) in failovers.iter().enumerate() {
        let first_write = streams[projects.iter().position(|p| *p == f.project).expect("a known project")]
            .sets
            .iter()
            .find(|e| e.id.ms > f.kill_ms)
            .map(|e| Duration::from_millis(e.id.ms - f.kill_ms));
        let secs = |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        let _ = writeln!(
            report,
            "failover {i}: SIGKILL node {} (primary of {}) → node {} promoted, cluster healthy after {:.2} s; first \
             entry written after {}; every client receiving again: of {} after {} (goal ≤ {:.1} s), of the other \
             projects of that primary after {}, of the other primaries' projects after {}",
            f.killed,
            f.project,
            f.promoted,
            f.healthy.as_secs_f64(),
            secs(first_write),
            f.project,
            secs(f.project_clients),
            goal.as_secs_f64(),
            secs(f.same_shard_clients),
            secs(f.other_shard_clients)
        );
    }
    // The writers' side: when each project's first entry after each SIGKILL was written (the other primaries'
    // projects should not wait for the failover).
    for (i, f) in failovers.iter().enumerate() {
        let firsts: Vec<String> = projects
            .iter()
            .zip(&streams)
            .zip(&f.refused)
            .map(|((p, s), refused)| {
                let first = s.sets.iter().find(|e| e.id.ms > f.kill_ms).map(|e| e.id.ms - f.kill_ms);
                let first = first.map_or("never".to_owned(), |ms| format!("{:.2} s", ms as f64 / 1000.0));
                format!("{p} {first} ({refused} refused)")
            })
            .collect();
        let _ = writeln!(
            report,
            "failover {i}: first entry after the SIGKILL (and the writer's attempts answered 5xx or not at all): {}",
            firsts.join(", ")
        );
    }
    println!("{report}");

    assert_eq!(total.lost, 0, "clients lost changes the stream holds:{report}\n{}", problems.join("\n"));
    assert_eq!(total.out_of_order, 0, "{report}");
    for (p, lost, extra, behind, _) in &sink_rows {
        assert!(*lost == 0 && *behind == 0, "the sink lost changes of {p}:{report}");
        assert!(*extra == 0 || taken_from_redis, "the sink holds what Redis never did ({p}):{report}");
    }
    assert!(problems.is_empty(), "{report}\n{}", problems.join("\n"));
}
