//! Benchmark of the FalkorDB sink through the real consumer loop, against a private Redis and FalkorDB.
//!
//! 1. Throughput: a backlog of `--backlog` operations (node and relationship adds and updates), written through
//!    the Function library `--set` operations per call — so one change set (stream entry) of that many changes
//!    per call — is applied from a cold start; changes and entries per second until the sink recorded the last
//!    entry (the sink apply rate).
//! 2. Lag: a producer writes `--rate` changes per second (change sets of 50) for `--seconds`; for each entry, the
//!    time from its XADD (the stream ID's milliseconds) to the sink commit that recorded it. Prints p50, p99, max.
//!
//! For the throughput part it also prints where the CPU went while the backlog was applied: the bench process
//! (the consumer: reading, decoding, planning, query building), FalkorDB and Redis (`INFO cpu` of each, every
//! thread), the time the sink spent inside `apply` (query round trips included), and the commands each server ran.
//!
//! Usage: consumer-bench [--backlog 100000] [--set 500] [--rate 5000] [--seconds 20] [--batch 1000]
//! (`--batch`: the consumer's `batch_size`, changes per sink commit.)

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::StreamId,
    functions::{calls, Expect, GraphWriter, Mutation, PublishMode},
    graph::{Node, Relationship},
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
    shutdown::Shutdown,
    stream::{newest_entry_cmd, newest_entry_id, now_ms},
    testing::RedisServer,
};
use stream_consumer::{
    run::{ownership::run_sink, status::StatusBoard, worker::SinkContext},
    settings::ConsumerSettings,
    sinks::{
        falkordb::{FalkorDbSettings, FalkorDbSink},
        Plan, Sink, SinkError, Writer,
    },
    test_support::start_falkordb,
};

/// The FalkorDB sink, remembering when each plan's last ID was committed.
struct Timed {
    inner: FalkorDbSink,
    commits: Mutex<Vec<(StreamId, u64)>>,
    /// Total time inside `apply`.
    applying: Mutex<Duration>,
}

impl Sink for Timed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn open(&self, p: &ProjectName, generation: u64) -> Result<Option<StreamId>, SinkError> {
        self.inner.open(p, generation).await
    }
    async fn apply(&self, p: &ProjectName, writer: Writer, plan: &Plan) -> Result<(), SinkError> {
        let started = Instant::now();
        self.inner.apply(p, writer, plan).await?;
        *self.applying.lock().unwrap() += started.elapsed();
        self.commits.lock().unwrap().push((plan.last_id, now_ms()));
        Ok(())
    }
    async fn reset(&self, p: &ProjectName, generation: u64) -> Result<(), SinkError> {
        self.inner.reset(p, generation).await
    }
    async fn recorded(&self, p: &ProjectName) -> Result<Option<StreamId>, SinkError> {
        self.inner.recorded(p).await
    }
    async fn ping(&self) -> bool {
        self.inner.ping().await
    }
}

struct Args {
    backlog: usize,
    set: usize,
    rate: usize,
    seconds: u64,
    batch: usize,
}

fn args() -> Args {
    let mut a = Args { backlog: 100_000, set: 500, rate: 5_000, seconds: 20, batch: 1000 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{}: a number", pair[0]));
        match pair[0].as_str() {
            "--backlog" => a.backlog = value,
            "--set" => a.set = value.max(1),
            "--rate" => a.rate = value,
            "--seconds" => a.seconds = value as u64,
            "--batch" => a.batch = value,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The nearest index at or below `i` whose operation created a node.
fn created(i: usize) -> usize {
    i - (i % 10).saturating_sub(5)
}

/// `n` operations: mostly new nodes, relationships between recent nodes, and updates of earlier nodes.
fn ops(start: usize, n: usize) -> Vec<Mutation> {
    const KINDS: [&str; 4] = ["file", "module", "class", "function"];
    (start..start + n)
        .map(|i| {
            let node = |id: usize, rev: usize| -> Node {
                serde_json::from_value(serde_json::json!({
                    "id": format!("py:src/m{}.py:f{id}", id % 500), "kind": KINDS[id % 4], "name": format!("f{id}"),
                    "file": format!("src/m{}.py", id % 500), "line_start": id % 900 + 1, "line_end": id % 900 + 5,
                    "properties": {"rev": rev, "async": id.is_multiple_of(3)}
                }))
                .unwrap()
            };
            match i % 10 {
                0..=5 => Mutation::UpsertNode(node(i, 0), Expect::Any),
                6..=8 if i > 20 => {
                    let (s, t) = (node(created(i - 1 - (i % 7)), 0).id, node(created(i - 11 - (i % 3)), 0).id);
                    let rel: Relationship = serde_json::from_value(serde_json::json!({
                        "id": Relationship::derived_id(&s, "calls", &t), "type": "calls", "source": s, "target": t,
                        "properties": {"line": i % 300}
                    }))
                    .unwrap();
                    Mutation::UpsertRelationship(rel, Expect::Any)
                }
                _ => Mutation::UpsertNode(node(i.saturating_sub(30), i), Expect::Any),
            }
        })
        .collect()
}

async fn last_id(conn: &mut redis::aio::MultiplexedConnection, names: &RedisNames) -> StreamId {
    newest_entry_id(newest_entry_cmd(&names.cdc_stream()).query_async(conn).await.unwrap()).unwrap_or_default()
}

fn start_consumer(redis: &RedisServer, falkor: &RedisServer, batch: usize) -> (Arc<Timed>, Shutdown) {
    let sink = Arc::new(Timed {
        inner: FalkorDbSink::new(&FalkorDbSettings {
            url: falkor.url(),
            graph_prefix: "bench_".into(),
            ..Default::default()
        })
        .unwrap(),
        commits: Mutex::new(Vec::new()),
        applying: Mutex::new(Duration::ZERO),
    });
    let settings =
        ConsumerSettings { name: "bench".into(), batch_size: batch, tick_ms: 100, block_ms: 100, ..Default::default() };
    let ctx = Arc::new(SinkContext {
        sink: sink.clone(),
        redis: RedisHandle::open(&redis.url()).unwrap(),
        settings,
        consumer: "bench".into(),
        board: StatusBoard::default(),
    });
    let shutdown = Shutdown::new();
    tokio::spawn(run_sink(ctx, shutdown.clone()));
    (sink, shutdown)
}

async fn wait_committed(sink: &Timed, id: StreamId, deadline: Duration) -> Instant {
    let start = Instant::now();
    loop {
        if sink.commits.lock().unwrap().last().is_some_and(|(last, _)| *last >= id) {
            return Instant::now();
        }
        assert!(start.elapsed() < deadline, "the sink did not reach {id} in {deadline:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// CPU seconds (user + system, every thread) a server has used, and its commands' call counts.
async fn server_usage(conn: &mut redis::aio::MultiplexedConnection) -> (f64, Vec<(String, u64)>) {
    let info: String = redis::cmd("INFO").arg("cpu").arg("commandstats").query_async(conn).await.unwrap();
    let field = |line: &str, name: &str| line.strip_prefix(name)?.strip_prefix(':')?.parse::<f64>().ok();
    let cpu = info.lines().filter_map(|l| field(l, "used_cpu_user").or_else(|| field(l, "used_cpu_sys"))).sum();
    let calls = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            Some((name.to_owned(), rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?))
        })
        .collect();
    (cpu, calls)
}

/// CPU seconds (user + system, every thread) this process has used.
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ
}

/// Call counts that grew between two readings, largest first.
fn grown(before: &[(String, u64)], after: &[(String, u64)]) -> String {
    let mut d: Vec<(String, u64)> = after
        .iter()
        .map(|(n, c)| (n.clone(), c - before.iter().find(|(b, _)| b == n).map_or(0, |(_, c)| *c)))
        .filter(|(_, c)| *c > 0)
        .collect();
    d.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
    d.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let a = args();
    let redis = RedisServer::start();
    let falkor = start_falkordb(&[]);
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();

    // 1. Throughput from a backlog.
    let names = RedisNames::new(&ProjectName::parse("backlog").unwrap());
    let writer = GraphWriter::new(names.clone(), 0, PublishMode::Classic);
    let (mut written, mut changes) = (0, 0u64);
    while written < a.backlog {
        let n = a.set.min(a.backlog - written);
        // Split only where one call's bounds require (a set of more than ~256 KiB of changes).
        for call in calls(&ops(written, n), n) {
            let outcomes = writer.mutate(&mut conn, call, None).await.unwrap();
            changes += outcomes.iter().map(|o| u64::from(o.event_id.is_some()) + u64::from(o.cascaded)).sum::<u64>();
        }
        written += n;
    }
    let entries: u64 = redis::cmd("XLEN").arg(names.cdc_stream()).query_async(&mut conn).await.unwrap();
    let target = last_id(&mut conn, &names).await;
    let mut falkor_conn = redis::Client::open(falkor.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let (redis_before, falkor_before, own_before) =
        (server_usage(&mut conn).await, server_usage(&mut falkor_conn).await, own_cpu());
    let started = Instant::now();
    let (sink, shutdown) = start_consumer(&redis, &falkor, a.batch);
    let done = wait_committed(&sink, target, Duration::from_secs(600)).await;
    let secs = (done - started).as_secs_f64();
    let own = own_cpu() - own_before;
    let (redis_after, falkor_after) = (server_usage(&mut conn).await, server_usage(&mut falkor_conn).await);
    let commits = sink.commits.lock().unwrap().len();
    println!(
        "throughput: {changes} changes in {entries} entries in {secs:.2}s = {:.0} changes/s, {:.0} entries/s applied \
         into FalkorDB ({commits} commits, batch size {} changes, change sets of up to {})",
        changes as f64 / secs,
        entries as f64 / secs,
        a.batch,
        a.set
    );
    let applying = sink.applying.lock().unwrap().as_secs_f64();
    println!(
        "  cpu while applying: consumer {own:.2}s, FalkorDB {:.2}s, Redis {:.2}s; inside apply {applying:.2}s \
         ({:.0} % of the time)\n  FalkorDB ran: {}\n  Redis ran: {}",
        falkor_after.0 - falkor_before.0,
        redis_after.0 - redis_before.0,
        100.0 * applying / secs,
        grown(&falkor_before.1, &falkor_after.1),
        grown(&redis_before.1, &redis_after.1),
    );

    // 2. Lag under a sustained rate, on another project (the consumer discovers it).
    let names = RedisNames::new(&ProjectName::parse("sustained").unwrap());
    let writer = GraphWriter::new(names.clone(), 0, PublishMode::Classic);
    let per_call = 50;
    let period = Duration::from_secs_f64(per_call as f64 / a.rate as f64);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // One entry per call: its ID, taken from the outcomes of its changes.
    let mut ids: Vec<StreamId> = Vec::new();
    let mut changes = 0u64;
    let begin = Instant::now();
    let mut i = 0;
    while begin.elapsed() < Duration::from_secs(a.seconds) {
        ticker.tick().await;
        let outcomes = writer.mutate(&mut conn, &ops(i, per_call), None).await.unwrap();
        i += per_call;
        changes += outcomes.iter().map(|o| u64::from(o.event_id.is_some()) + u64::from(o.cascaded)).sum::<u64>();
        ids.extend(outcomes.iter().find_map(|o| o.event_id.as_deref()?.parse::<StreamId>().ok()));
    }
    let produced = changes as f64 / begin.elapsed().as_secs_f64();
    wait_committed(&sink, *ids.last().unwrap(), Duration::from_secs(60)).await;
    shutdown.trigger();
    // This project's commits, in stream order: the first one at or past an entry's ID committed it.
    let commits: Vec<(StreamId, u64)> =
        sink.commits.lock().unwrap().iter().filter(|(l, _)| *l >= ids[0]).copied().collect();
    let mut lags: Vec<u64> = ids
        .iter()
        .map(|id| {
            let at = commits[commits.partition_point(|(last, _)| last < id)].1;
            at.saturating_sub(id.ms)
        })
        .collect();
    lags.sort_unstable();
    println!(
        "lag at {produced:.0} changes/s for {}s ({changes} changes in {} entries): p50 {} ms, p99 {} ms, max {} ms",
        a.seconds,
        lags.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        lags[lags.len() - 1]
    );
}
