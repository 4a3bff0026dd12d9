//! ws-load: the gateway's load generator, on loopback, with its own redis-server and gateway process.
//!
//! It measures the lines of docs/BENCHMARKS.md (## ws-gateway):
//!   idle        memory per idle connection: gateway RSS growth over N subscribed, idle WebSockets
//!   throughput  deliveries per second to C clients at each offered rate, with latency percentiles, and the
//!               same schedule delivered by Redis itself to C plain Pub/Sub subscribers (the baseline); with
//!               `--runs N`, N runs per rate (gateway, baseline, gateway, …), then a table of medians per rate and
//!               the highest rate whose median frame p99 is within `--p99-ms` (default 50) with every frame
//!               delivered: the sweep that finds what the gateway sustains at that latency; `--gateways` compares
//!               gateway binaries (each with its own Redis), run by run in turn, medians side by side
//!   latency     publish-to-receive p50/p99/p99.9 at one rate, gateway clients and plain subscribers receiving
//!               the same publications at the same time
//!
//! Usage (release build; the gateway binary is taken from beside this one):
//!   ws-load idle [--connections 10000]
//!   ws-load throughput [--clients 1000] [--rates 100,250,400] [--seconds 10] [--changes N] [--runs 1]
//!                      [--p99-ms 50] [--baseline 1|0] [--gateways before=PATH,after=PATH]
//!   ws-load latency [--clients 1000] [--rate 20] [--seconds 20] [--changes N]
//!   ws-load all
//!   ws-load mutations [--projects 12] [--writers 8] [--seconds 10] [--runs 3]
//! `--cluster P` (throughput, latency) runs Redis as a Redis Cluster of P primaries (no replicas) instead of one
//! server: the gateway gets every node as a seed, publications are `SPUBLISH`ed (sharded) and the plain subscribers
//! of the baseline `SSUBSCRIBE` at the node that owns the channel.
//! `mutations` is the Redis side of the scale-out (issue 13): writers call `cg_mutate` (one node update each, the
//! call graph-api makes for a single mutation) into 12 projects on one Redis, on a 1-primary cluster and on a
//! 3-primary cluster (4 projects per primary), runs interleaved; it reports mutations/s and the Redis CPU
//! (`used_cpu_sys` + `used_cpu_user` of every primary) per mutation, and how the CPU spreads over the primaries.
//! By default each publication is a single event written with the Function library (`cg_emit`, one XADD +
//! PUBLISH), carrying the publish time as `"data":{"t":<µs>}`. With `--changes N` each publication is a change
//! set of N node updates (`cg_mutate`, one call, one entry), the first carrying the time in its properties; the
//! rates are then change sets per second, and the tables add the changes delivered, changes/s, and the frame
//! latency. Receivers count the time markers (one per frame) and the changes (one `"entity"` per change, in
//! either form of entry) in the raw bytes they read.
//! Each row also gives the fan-out's CPU per frame delivered, user + system: the gateway process's (from /proc), or
//! for the baseline the Redis server's (`INFO cpu`, which includes running the publishing calls); this process's CPU
//! (every receiver and the publisher) per frame received; and how busy the whole machine was (all cores, every
//! process, /proc/stat) over the same time, since the receivers, Redis and the gateway share the cores; and how long
//! the gateway's threads and this process's waited on a run queue for a CPU per second they ran (schedstat): a
//! latency bound by CPU contention shows there.

mod mutations;
mod receivers;
mod scanner;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::EventType,
    functions::{GraphWriter, Mutation, MAX_OPS_PER_CALL},
    graph::Node,
    names::RedisNames,
    project::ProjectName,
    testing::{free_port, wait_for_port, TestRedis},
};
use receivers::{now_us, Receipts};
use tokio::{net::TcpStream, sync::watch};

const PROJECT: &str = "bench";

/// An open receiver connection and the bytes it already read past its subscription confirmation.
type Receiver = (TcpStream, Vec<u8>);
/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 64;

struct Args {
    command: String,
    connections: usize,
    clients: usize,
    rates: Vec<u64>,
    rate: u64,
    seconds: Option<u64>,
    /// Changes per published change set; `None`: single events.
    changes: Option<usize>,
    /// Primaries of a Redis Cluster; 0: one Redis server.
    cluster: usize,
    projects: usize,
    writers: usize,
    /// Runs per point (`mutations`: default 3; `throughput`: default 1).
    runs: Option<usize>,
    /// The frame p99 a sweep point must stay within, ms.
    p99_ms: f64,
    /// Whether `throughput` also measures the plain-Redis fan-out.
    baseline: bool,
    /// Gateway binaries `throughput` compares (default: the one beside this binary).
    gateways: Vec<(String, PathBuf)>,
}

fn parse_args() -> Args {
    let mut a = Args {
        command: String::new(),
        connections: 10_000,
        clients: 1_000,
        rates: vec![100, 250, 400],
        rate: 20,
        seconds: None,
        changes: None,
        cluster: 0,
        projects: 12,
        writers: 8,
        runs: None,
        p99_ms: 50.0,
        baseline: true,
        gateways: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    a.command = it.next().unwrap_or_else(|| usage());
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let num = || value.parse::<u64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--connections" => a.connections = num() as usize,
            "--clients" => a.clients = num() as usize,
            "--rates" => a.rates = value.split(',').map(|r| r.parse().unwrap_or_else(|_| usage())).collect(),
            "--rate" => a.rate = num(),
            "--seconds" => a.seconds = Some(num()),
            "--cluster" => a.cluster = num() as usize,
            "--projects" => a.projects = num() as usize,
            "--writers" => a.writers = num() as usize,
            "--runs" => a.runs = Some((num() as usize).max(1)),
            "--p99-ms" => a.p99_ms = num() as f64,
            "--baseline" => a.baseline = num() != 0,
            "--gateways" => {
                a.gateways = value
                    .split(',')
                    .map(|g| match g.split_once('=') {
                        Some((name, path)) => (name.to_owned(), PathBuf::from(path)),
                        None => (g.to_owned(), PathBuf::from(g)),
                    })
                    .collect()
            }
            "--changes" => match num() as usize {
                n @ 1..=MAX_OPS_PER_CALL => a.changes = Some(n),
                _ => usage(),
            },
            _ => usage(),
        }
    }
    a
}

fn usage() -> ! {
    eprintln!(
        "usage: ws-load idle|throughput|latency|all|mutations [--connections N] [--clients N] [--rates a,b] \
         [--rate R] [--seconds S] [--changes 1..{MAX_OPS_PER_CALL}] [--cluster PRIMARIES] [--projects N] \
         [--writers N] [--runs N] [--p99-ms MS] [--baseline 1|0] [--gateways NAME=PATH,…]"
    );
    std::process::exit(2)
}

/// A private Redis: one server, or a Redis Cluster of private nodes.
pub(crate) type Store = TestRedis;

/// Where a plain subscriber of `channel` subscribes, and with which command.
fn subscription(store: &Store, channel: &str) -> (SocketAddr, &'static str) {
    match store {
        Store::Single(r) => (r.addr(), "SUBSCRIBE"),
        Store::Cluster(c) => (([127, 0, 0, 1], c.port(c.primary_for_key(channel))).into(), "SSUBSCRIBE"),
    }
}

fn label(store: &Store) -> String {
    match store {
        Store::Single(_) => "one Redis (PUBLISH)".into(),
        Store::Cluster(c) => format!("cluster of {} primaries (SPUBLISH)", c.primaries().len()),
    }
}

/// The system under test: a private Redis (one server or a cluster) and one gateway process.
struct Bench {
    redis: Store,
    gateway: Child,
    addr: SocketAddr,
}

impl Bench {
    /// Starts Redis and the gateway beside this binary.
    async fn start(primaries: usize) -> Self {
        Self::start_with(primaries, &beside_gateway()).await
    }

    /// Starts Redis and the gateway `binary`.
    async fn start_with(primaries: usize, binary: &std::path::Path) -> Self {
        let redis = tokio::task::block_in_place(|| Store::start(primaries));
        let port = free_port();
        let gateway = Command::new(binary)
            .env("CODEGRAPH_CONFIG_DIR", "/nonexistent")
            .env("CODEGRAPH__REDIS__URL", redis.url())
            .env("CODEGRAPH__REDIS__CLUSTER_NODES", redis.seeds())
            .env("CODEGRAPH__HTTP__ADDR", format!("127.0.0.1:{port}"))
            // The raw receivers answer no protocol ping; keep pings out of the measurement window.
            .env("CODEGRAPH__GATEWAY__PING_INTERVAL_MS", "600000")
            .env("CODEGRAPH__GATEWAY__MAX_CONNECTIONS", "50000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start ws-gateway");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_port(addr, Duration::from_secs(20));
        let bench = Self { redis, gateway, addr };
        bench.wait_ready().await;
        bench
    }

    async fn get(&self, path: &str) -> Option<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(self.addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        Some(out)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.get("/ready").await.is_some_and(|r| r.starts_with(b"HTTP/1.1 200")) {
            assert!(Instant::now() < deadline, "gateway not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The gateway's own publish-to-send histogram (ms buckets, cumulative since start), from `/status`.
    async fn gateway_latency(&self) -> String {
        let Some(reply) = self.get("/status").await else { return "no /status".into() };
        let body = reply.windows(4).position(|w| w == b"\r\n\r\n").map(|i| &reply[i + 4..]).unwrap_or(&[]);
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let l = &v["latency_ms"];
        format!(
            "gateway's own publish-to-send (ms buckets, whole run): p50 ≤ {} ms, p99 ≤ {} ms",
            l["p50_le"], l["p99_le"]
        )
    }

    /// CPU seconds the gateway process has used: user, system.
    fn gateway_cpu(&self) -> (f64, f64) {
        process_cpu(&self.gateway.id().to_string())
    }

    /// CPU seconds the Redis primaries have used (`INFO cpu`): user, system.
    fn redis_cpu(&self) -> (f64, f64) {
        let ports = self.redis.primary_ports();
        tokio::task::block_in_place(|| {
            ports.iter().map(|&p| mutations::cpu_split(p)).fold((0.0, 0.0), |(u, s), (pu, ps)| (u + pu, s + ps))
        })
    }

    /// The CPU seconds (user, system) used so far by the fan-out a set of receivers reads from.
    fn fanout_cpu(&self, receivers: &str) -> (f64, f64) {
        if receivers == "gateway" {
            self.gateway_cpu()
        } else {
            self.redis_cpu()
        }
    }

    /// The gateway's resident memory, in KiB.
    fn gateway_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.gateway.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Opens `n` WebSockets on `/ws/events?project=bench`, each acknowledged.
    async fn gateway_clients(&self, n: usize) -> Vec<Receiver> {
        let addr = self.addr;
        connect_many(n, move || async move {
            receivers::gateway_client(addr, &format!("/ws/events?project={PROJECT}")).await
        })
        .await
    }

    /// Opens `n` plain Redis connections subscribed to the project's channel (sharded on a cluster, at the node
    /// that owns it).
    async fn redis_subscribers(&self, n: usize) -> Vec<Receiver> {
        let channel = RedisNames::new(&ProjectName::parse(PROJECT).unwrap()).events_channel();
        let (addr, command) = subscription(&self.redis, &channel);
        connect_many(n, move || {
            let channel = channel.clone();
            async move { receivers::redis_subscriber(addr, command, &channel).await }
        })
        .await
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.gateway.kill();
        let _ = self.gateway.wait();
    }
}

async fn connect_many<F, Fut>(n: usize, open: F) -> Vec<Receiver>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<Receiver>> + Send + 'static,
{
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let batch = CONNECT_CONCURRENCY.min(n - out.len());
        let tasks: Vec<_> = (0..batch).map(|_| tokio::spawn((open.clone())())).collect();
        for t in tasks {
            out.push(t.await.expect("connect task").expect("connect"));
        }
    }
    out
}

/// Publishes `rate` entries a second for `seconds` through the Function library: single events, or change sets of
/// `changes` node updates; returns how many and when the first and last went out (µs).
async fn publish(redis: &Store, rate: u64, seconds: u64, changes: Option<usize>) -> (u64, u64, u64) {
    let handle = redis.handle();
    let mut conn = handle.conn();
    let writer = GraphWriter::new(RedisNames::new(&ProjectName::parse(PROJECT).unwrap()), 0, handle.publish_mode());
    let total = rate * seconds;
    let start = Instant::now();
    let first = now_us();
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(at.into()).await;
        match changes {
            None => {
                let data = serde_json::json!({"t": now_us()});
                writer
                    .emit(&mut conn, EventType::AnalysisProgress, "bench", "load", &data, None)
                    .await
                    .expect("publish");
            }
            Some(n) => {
                let t = now_us();
                let ops: Vec<Mutation> = (0..n).map(|k| node_update(k, i, (k == 0).then_some(t))).collect();
                writer.mutate(&mut conn, &ops, None).await.expect("publish");
            }
        }
    }
    (total, first, now_us())
}

/// An update of node `load-<k>` (a new `n` each round, so it changes); `t`, the publish time, on one node per set.
fn node_update(k: usize, round: u64, t: Option<u64>) -> Mutation {
    let mut properties = std::collections::BTreeMap::from([("n".to_owned(), serde_json::Value::from(round))]);
    if let Some(t) = t {
        properties.insert("t".to_owned(), t.into());
    }
    let node = Node {
        id: format!("load-{k}"),
        kind: "function".into(),
        name: format!("load-{k}"),
        file: None,
        line_start: None,
        line_end: None,
        properties,
        version: None,
    };
    Mutation::UpsertNode(node, Default::default())
}

/// Runs one measurement: the receivers read while `rate` entries a second are published for `seconds`.
async fn measure(
    bench: &Bench,
    sets: Vec<(&'static str, Vec<Receiver>)>,
    rate: u64,
    seconds: u64,
    changes: Option<usize>,
) -> Vec<Measurement> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut running = Vec::new();
    for (name, conns) in sets {
        let n = conns.len();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|(s, first)| tokio::spawn(receivers::read_deliveries(s, first, stop_rx.clone())))
            .collect();
        running.push((name, n, tasks));
    }
    let cpu_before: Vec<(f64, f64)> = running.iter().map(|(name, ..)| bench.fanout_cpu(name)).collect();
    let (own_before, machine_before) = (process_cpu("self"), machine_ticks());
    let gateway_pid = bench.gateway.id().to_string();
    let sched_before = (run_and_wait(&gateway_pid), run_and_wait("self"));
    let (published, first, last) = publish(&bench.redis, rate, seconds, changes).await;
    // Let the tail arrive (bounded).
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send_replace(true);
    let cpu: Vec<(f64, f64)> = running
        .iter()
        .zip(&cpu_before)
        .map(|((name, ..), (u0, s0))| {
            let (u, s) = bench.fanout_cpu(name);
            (u - u0, s - s0)
        })
        .collect();
    let (own_after, machine_after) = (process_cpu("self"), machine_ticks());
    let sched_after = (run_and_wait(&gateway_pid), run_and_wait("self"));
    // Seconds waited for a CPU per second run.
    let waited = |after: (f64, f64), before: (f64, f64)| (after.1 - before.1) / (after.0 - before.0).max(1e-9);
    let wait_per_run = (waited(sched_after.0, sched_before.0), waited(sched_after.1, sched_before.1));
    let own = (own_after.0 + own_after.1) - (own_before.0 + own_before.1);
    let busy = (machine_after.0 - machine_before.0) as f64 / (machine_after.1 - machine_before.1).max(1) as f64;
    let mut out = Vec::new();
    for ((name, clients, tasks), cpu) in running.into_iter().zip(cpu) {
        let mut all = Receipts::default();
        let mut fewest_changes = u64::MAX;
        for t in tasks {
            let r = t.await.expect("reader");
            fewest_changes = fewest_changes.min(r.change_count());
            all.published.extend(r.published);
            all.received.extend(r.received);
            all.changes.extend(r.changes);
        }
        let per_entry = changes.unwrap_or(1) as u64;
        let mut m = Measurement::new(name, clients, published, per_entry, fewest_changes, first, last, all);
        let frames = m.delivered.max(1) as f64;
        m.cpu_us_per_frame = (cpu.0 * 1e6 / frames, cpu.1 * 1e6 / frames);
        m.machine_busy = busy;
        // The gateway's waits mean nothing while Redis fans out (the gateway idles).
        m.wait_per_run = if name == "gateway" { wait_per_run } else { (-1.0, wait_per_run.1) };
        out.push(m);
    }
    // The receivers (and the publisher) of every set ran in this process.
    let frames: u64 = out.iter().map(|m| m.delivered).sum();
    for m in &mut out {
        m.receivers_us_per_frame = own * 1e6 / frames.max(1) as f64;
    }
    out
}

struct Measurement {
    /// The name the row is printed under (the gateway binary's, when several are compared).
    label: String,
    clients: usize,
    /// Frames (one per published entry and receiver).
    expected: u64,
    delivered: u64,
    /// Changes (the entries' changes, to every receiver).
    expected_changes: u64,
    delivered_changes: u64,
    /// The changes the receiver that got fewest got, against the changes published.
    fewest_changes: u64,
    published_changes: u64,
    /// Frame deliveries that arrived while publishing was going on, per second of publishing.
    rate: f64,
    /// Change deliveries that arrived while publishing was going on, per second of publishing.
    changes_rate: f64,
    /// How long publishing took (the publisher waits for each call, so a saturated Redis stretches it).
    publish_secs: f64,
    /// Publish-to-receive latency percentiles of the frames, µs.
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    /// CPU of the fan-out (the gateway process, or the Redis server, which also runs the publishing calls) from
    /// the first publication to the end of the tail, per frame delivered, µs.
    cpu_us_per_frame: (f64, f64),
    /// CPU of this process (every receiver and the publisher) per frame received, µs.
    receivers_us_per_frame: f64,
    /// The share of the machine's CPU (all cores, every process) busy over the same time.
    machine_busy: f64,
    /// Seconds the gateway's threads, and this process's, waited on a run queue for a CPU per second they ran.
    wait_per_run: (f64, f64),
}

impl Measurement {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &'static str,
        clients: usize,
        published: u64,
        per_entry: u64,
        fewest_changes: u64,
        first: u64,
        last: u64,
        r: Receipts,
    ) -> Self {
        let window = (last - first).max(1);
        let in_window = r.received.iter().filter(|t| **t <= last).count() as f64;
        let changes_in_window: u64 = r.changes.iter().filter(|(at, _)| *at <= last).map(|(_, n)| n).sum();

        let mut lat: Vec<u64> = r.published.iter().zip(&r.received).map(|(p, q)| q.saturating_sub(*p)).collect();
        lat.sort_unstable();
        let pct =
            |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
        Self {
            label: name.to_owned(),
            clients,
            expected: published * clients as u64,
            delivered: lat.len() as u64,
            expected_changes: published * per_entry * clients as u64,
            delivered_changes: r.change_count(),
            fewest_changes: if clients == 0 { 0 } else { fewest_changes },
            published_changes: published * per_entry,
            rate: in_window / (window as f64 / 1e6),
            changes_rate: changes_in_window as f64 / (window as f64 / 1e6),
            publish_secs: window as f64 / 1e6,
            p50: pct(0.50),
            p99: pct(0.99),
            p999: pct(0.999),
            max: lat.last().copied().unwrap_or(0),
            cpu_us_per_frame: (0.0, 0.0),
            receivers_us_per_frame: 0.0,
            machine_busy: 0.0,
            wait_per_run: (0.0, 0.0),
        }
    }

    /// One table row; with `changes`, the change columns too (see [`table_header`]).
    fn print(&self, changes: bool) {
        let ms = |us: u64| us as f64 / 1000.0;
        if changes {
            println!(
                "| {} | {} | {}/{} | {}/{} | {}/{} | {:.1} | {:.0}/s | {:.0}/s | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}+{:.2} | {:.2} | {:.0} % | {} |",
                self.label,
                self.clients,
                self.delivered,
                self.expected,
                self.delivered_changes,
                self.expected_changes,
                self.fewest_changes,
                self.published_changes,
                self.publish_secs,
                self.rate,
                self.changes_rate,
                ms(self.p50),
                ms(self.p99),
                ms(self.p999),
                ms(self.max),
                self.cpu_us_per_frame.0,
                self.cpu_us_per_frame.1,
                self.receivers_us_per_frame,
                self.machine_busy * 100.0,
                waits(self.wait_per_run)
            );
        } else {
            println!(
                "| {} | {} | {}/{} | {:.1} | {:.0}/s | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}+{:.2} | {:.2} | {:.0} % | {} |",
                self.label,
                self.clients,
                self.delivered,
                self.expected,
                self.publish_secs,
                self.rate,
                ms(self.p50),
                ms(self.p99),
                ms(self.p999),
                ms(self.max),
                self.cpu_us_per_frame.0,
                self.cpu_us_per_frame.1,
                self.receivers_us_per_frame,
                self.machine_busy * 100.0,
                waits(self.wait_per_run)
            );
        }
    }
}

fn table_header(changes: bool) {
    if changes {
        println!(
            "| receivers | count | frames delivered/expected | changes delivered/expected | fewest changes per \
             receiver/published | publish s | frames/s | changes/s | frame p50 ms | frame p99 ms | frame p99.9 ms | \
             frame max ms | fan-out CPU µs/frame user+sys | \
             ws-load CPU µs/frame | machine busy | run-queue wait per CPU s: gateway / ws-load |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    } else {
        println!(
            "| receivers | count | delivered/expected | publish s | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms | \
             fan-out CPU µs/frame user+sys | \
             ws-load CPU µs/frame | machine busy | run-queue wait per CPU s: gateway / ws-load |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    }
}

fn ratio(ours: &Measurement, base: &Measurement) {
    println!(
        "ratio gateway/redis: deliveries/s {:.2}, p50 {:.2}, p99 {:.2}, p99.9 {:.2}",
        ours.rate / base.rate.max(1.0),
        ours.p50 as f64 / base.p50.max(1) as f64,
        ours.p99 as f64 / base.p99.max(1) as f64,
        ours.p999 as f64 / base.p999.max(1) as f64
    );
}

async fn idle(connections: usize) {
    let bench = Bench::start(0).await;
    // Let start-up allocations settle, then measure the empty gateway.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = bench.gateway_rss_kib();
    let started = Instant::now();
    let conns = bench.gateway_clients(connections).await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = bench.gateway_rss_kib();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    println!("## idle connections");
    println!(
        "{connections} subscribed idle WebSockets (opened in {:.1} s): gateway RSS {before} KiB → {after} KiB, \
         {:.2} KiB per connection",
        opened.as_secs_f64(),
        per / 1024.0
    );
    drop(conns);
}

/// What one publication is, for the headings.
fn unit(changes: Option<usize>) -> String {
    match changes {
        None => "events".to_owned(),
        Some(n) => format!("change sets of {n} changes"),
    }
}

/// The gateway binary beside this one.
fn beside_gateway() -> PathBuf {
    let binary = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("ws-gateway")));
    binary.filter(|p| p.exists()).expect("build ws-gateway next to ws-load")
}

/// How a throughput sweep runs.
struct Sweep {
    clients: usize,
    seconds: u64,
    changes: Option<usize>,
    runs: usize,
    /// The frame p99 a point must stay within, µs.
    p99_goal_us: u64,
    baseline: bool,
    /// The gateway binaries compared, by name.
    gateways: Vec<(String, PathBuf)>,
}

async fn throughput(rates: &[u64], cluster: usize, sweep: Sweep) {
    let Sweep { clients, seconds, changes, runs, .. } = sweep;
    // One Redis and one gateway per binary compared; only one of them has clients at a time.
    let mut benches = Vec::new();
    for (name, binary) in &sweep.gateways {
        benches.push((name.clone(), Bench::start_with(cluster, binary).await));
    }
    println!(
        "## throughput: {clients} receivers, {seconds} s per rate, {runs} run(s) per rate, {}, {}; gateways: {}; \
         load average {}",
        unit(changes),
        label(&benches[0].1.redis),
        sweep.gateways.iter().map(|(n, b)| format!("{n} = {}", b.display())).collect::<Vec<_>>().join(", "),
        load_average()
    );
    let mut points = Vec::new();
    for &rate in rates {
        let per_entry = changes.unwrap_or(1) as u64;
        println!(
            "\noffered: {rate} {}/s × {clients} = {} frame deliveries/s, {} change deliveries/s",
            unit(changes),
            rate * clients as u64,
            rate * per_entry * clients as u64
        );
        table_header(changes.is_some());
        let mut ours: Vec<Vec<Measurement>> = benches.iter().map(|_| Vec::new()).collect();
        let mut base = Vec::new();
        for _ in 0..runs {
            // Run by run, each gateway in turn, then the baseline: a drift of the machine hits each alike.
            for ((name, bench), ours) in benches.iter().zip(&mut ours) {
                let gw = bench.gateway_clients(clients).await;
                let mut m = measure(bench, vec![("gateway", gw)], rate, seconds, changes).await.remove(0);
                m.label = name.clone();
                m.print(changes.is_some());
                eprintln!("{name}: {}", bench.gateway_latency().await);
                // Let the gateway notice the closed sockets before the next run.
                tokio::time::sleep(Duration::from_secs(1)).await;
                ours.push(m);
            }
            if sweep.baseline {
                let bench = &benches[0].1;
                let rs = bench.redis_subscribers(clients).await;
                let b = measure(bench, vec![("redis", rs)], rate, seconds, changes).await.remove(0);
                b.print(changes.is_some());
                for ours in &ours {
                    ratio(ours.last().expect("a run"), &b);
                }
                base.push(b);
            }
        }
        points.push(Point {
            rate,
            gateways: benches.iter().zip(&ours).map(|((name, _), runs)| (name.clone(), Medians::of(runs))).collect(),
            redis: (!base.is_empty()).then(|| Medians::of(&base)),
        });
    }
    if runs > 1 || rates.len() > 1 {
        summary(&points, &sweep);
    }
}

/// The medians of one rate's runs.
struct Medians {
    runs: usize,
    frames_rate: f64,
    changes_rate: f64,
    publish_secs: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    p99_min: u64,
    p99_max: u64,
    /// User, system.
    cpu_us_per_frame: (f64, f64),
    receivers_us_per_frame: f64,
    machine_busy: f64,
    wait_per_run: (f64, f64),
    /// Every run delivered every frame to every receiver.
    complete: bool,
}

impl Medians {
    fn of(runs: &[Measurement]) -> Self {
        fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
            v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
            v[v.len() / 2]
        }
        let p99s: Vec<u64> = runs.iter().map(|m| m.p99).collect();
        Self {
            runs: runs.len(),
            frames_rate: median(runs.iter().map(|m| m.rate).collect()),
            changes_rate: median(runs.iter().map(|m| m.changes_rate).collect()),
            publish_secs: median(runs.iter().map(|m| m.publish_secs).collect()),
            p50: median(runs.iter().map(|m| m.p50).collect()),
            p99: median(p99s.clone()),
            p999: median(runs.iter().map(|m| m.p999).collect()),
            p99_min: p99s.iter().copied().min().unwrap_or(0),
            p99_max: p99s.iter().copied().max().unwrap_or(0),
            cpu_us_per_frame: (
                median(runs.iter().map(|m| m.cpu_us_per_frame.0).collect()),
                median(runs.iter().map(|m| m.cpu_us_per_frame.1).collect()),
            ),
            receivers_us_per_frame: median(runs.iter().map(|m| m.receivers_us_per_frame).collect()),
            machine_busy: median(runs.iter().map(|m| m.machine_busy).collect()),
            wait_per_run: (
                median(runs.iter().map(|m| m.wait_per_run.0).collect()),
                median(runs.iter().map(|m| m.wait_per_run.1).collect()),
            ),
            complete: runs.iter().all(|m| m.delivered == m.expected && m.delivered_changes == m.expected_changes),
        }
    }

    fn within(&self, goal_us: u64) -> bool {
        self.complete && self.p99 <= goal_us
    }
}

struct Point {
    rate: u64,
    /// Per gateway binary compared.
    gateways: Vec<(String, Medians)>,
    redis: Option<Medians>,
}

/// CPU seconds a process (`self`, or a pid) has used: user, system.
fn process_cpu(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let mut ticks = after.split_whitespace().skip(11).map(|v| v.parse::<f64>().unwrap_or(0.0) / clock_ticks());
    (ticks.next().unwrap_or(0.0), ticks.next().unwrap_or(0.0))
}

/// The seconds a process's threads have run and waited on a run queue for a CPU, summed over the threads it has now
/// (/proc/<pid>/task/*/schedstat).
fn run_and_wait(pid: &str) -> (f64, f64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return (0.0, 0.0) };
    let (mut run, mut wait) = (0u64, 0u64);
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let mut fields = stat.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        run += fields.next().unwrap_or(0);
        wait += fields.next().unwrap_or(0);
    }
    (run as f64 / 1e9, wait as f64 / 1e9)
}

/// The machine's CPU ticks since boot, all cores: (busy, total), from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = cpu.iter().take(8).sum();
    // idle and iowait are the 4th and 5th.
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The run-queue waits of a row: the gateway's ("–" for the baseline), then this process's.
fn waits((gateway, own): (f64, f64)) -> String {
    if gateway < 0.0 {
        format!("– / {own:.2}")
    } else {
        format!("{gateway:.2} / {own:.2}")
    }
}

/// Clock ticks per second of /proc's CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The medians per rate, and the highest rate each fan-out sustains within the p99 goal.
fn summary(points: &[Point], sweep: &Sweep) {
    let ms = |us: u64| us as f64 / 1000.0;
    let goal = sweep.p99_goal_us;
    println!(
        "\n## medians per rate ({} receivers, {}; load average now {})",
        sweep.clients,
        unit(sweep.changes),
        load_average()
    );
    println!(
        "| offered/s | receivers | runs | publish s | frames/s | changes/s | frame p50 ms | frame p99 ms (min–max) | \
         frame p99.9 ms | fan-out CPU µs/frame user+sys | ws-load CPU µs/frame | machine busy | run-queue wait per \
         CPU s: gateway / ws-load | all delivered | p99 ≤ {} ms |",
        ms(goal)
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | --- | --- |");
    for p in points {
        let redis = p.redis.as_ref().map(|m| ("redis", m));
        for (name, m) in p.gateways.iter().map(|(n, m)| (n.as_str(), m)).chain(redis) {
            println!(
                "| {} | {name} | {} | {:.1} | {:.0} | {:.0} | {:.2} | {:.2} ({:.2}–{:.2}) | {:.2} | {:.2}+{:.2} | {:.2} | {:.0} % | {} | {} | {} |",
                p.rate,
                m.runs,
                m.publish_secs,
                m.frames_rate,
                m.changes_rate,
                ms(m.p50),
                ms(m.p99),
                ms(m.p99_min),
                ms(m.p99_max),
                ms(m.p999),
                m.cpu_us_per_frame.0,
                m.cpu_us_per_frame.1,
                m.receivers_us_per_frame,
                m.machine_busy * 100.0,
                waits(m.wait_per_run),
                if m.complete { "yes" } else { "no" },
                if m.within(goal) { "yes" } else { "no" }
            );
        }
    }
    let best = |pick: &dyn Fn(&Point) -> Option<&Medians>| {
        points
            .iter()
            .filter_map(|p| pick(p).filter(|m| m.within(goal)).map(|m| (p.rate, m)))
            .max_by(|a, b| a.1.changes_rate.total_cmp(&b.1.changes_rate))
    };
    let mut found: Vec<(&str, _)> =
        sweep.gateways.iter().enumerate().map(|(i, (n, _))| (n.as_str(), best(&|p| Some(&p.gateways[i].1)))).collect();
    if sweep.baseline {
        found.push(("redis", best(&|p| p.redis.as_ref())));
    }
    for (name, found) in found {
        match found {
            Some((rate, m)) => println!(
                "highest within p99 ≤ {} ms, {name}: {:.0} changes/s ({:.0} frames/s) to {} receivers at {rate}/s offered, \
                 median frame p99 {:.2} ms",
                ms(goal),
                m.changes_rate,
                m.frames_rate,
                sweep.clients,
                ms(m.p99)
            ),
            None => println!("highest within p99 ≤ {} ms, {name}: none of the rates tried", ms(goal)),
        }
    }
}

async fn latency(clients: usize, rate: u64, seconds: u64, changes: Option<usize>, cluster: usize) {
    let bench = Bench::start(cluster).await;
    println!(
        "## latency: {rate} {}/s × {clients} = {} frame deliveries/s to each set, both sets on the same \
         publications, {seconds} s, {}",
        unit(changes),
        rate * clients as u64,
        label(&bench.redis)
    );
    let gw = bench.gateway_clients(clients).await;
    let rs = bench.redis_subscribers(clients).await;
    table_header(changes.is_some());
    let m = measure(&bench, vec![("gateway", gw), ("redis", rs)], rate, seconds, changes).await;
    m[0].print(changes.is_some());
    m[1].print(changes.is_some());
    ratio(&m[0], &m[1]);
    println!("{}", bench.gateway_latency().await);
}

fn sweep(args: &Args) -> Sweep {
    Sweep {
        clients: args.clients,
        seconds: args.seconds.unwrap_or(10),
        changes: args.changes,
        runs: args.runs.unwrap_or(1),
        p99_goal_us: (args.p99_ms * 1000.0) as u64,
        baseline: args.baseline,
        gateways: if args.gateways.is_empty() {
            vec![("gateway".to_owned(), beside_gateway())]
        } else {
            args.gateways.clone()
        },
    }
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    // The gateway inherits the raised limit too.
    raise_fd_limit();
    now_us();
    match args.command.as_str() {
        "idle" => idle(args.connections).await,
        "throughput" => throughput(&args.rates, args.cluster, sweep(&args)).await,
        "latency" => latency(args.clients, args.rate, args.seconds.unwrap_or(20), args.changes, args.cluster).await,
        "mutations" => {
            mutations::run(args.projects, args.writers, args.seconds.unwrap_or(10), args.runs.unwrap_or(3)).await;
        }
        "all" => {
            idle(args.connections).await;
            println!();
            throughput(&args.rates, args.cluster, sweep(&args)).await;
            println!();
            latency(args.clients, args.rate, args.seconds.unwrap_or(20), args.changes, args.cluster).await;
        }
        _ => usage(),
    }
}
