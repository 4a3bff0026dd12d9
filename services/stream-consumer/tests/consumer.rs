//! The stream-consumer binary against a real Redis and a real FalkorDB: the sink ends equal to the Redis graph
//! through kill -9 and take-over, a change set shows in the sink whole or not at all, poison entries go to the
//! dead letters whole while the rest flows, replays from the start and from a snapshot agree, a stream written
//! before change sets still replays, trimming respects every group, and everything works over TLS.

use std::{
    net::SocketAddr,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use codegraph_shared::{
    functions::{Expect, GraphWriter, Mutation, PublishMode},
    graph::{Node, Relationship},
    names::RedisNames,
    project::ProjectName,
    redis_handle::{RedisHandle, RedisTls},
    testing::{free_port, wait_for_port, RedisServer, TestCa, TlsProxy},
};
use stream_consumer::{
    sinks::{
        falkordb::FalkorClient,
        memgraph::{MemgraphSettings, MemgraphSink},
    },
    test_support::{
        dump_falkordb, dump_memgraph, expected_from_redis, falkordb_with_bolt, mixed_mutations, start_falkordb,
        GraphDump,
    },
};

struct Env {
    redis: RedisServer,
    falkor: RedisServer,
    config_dir: tempfile::TempDir,
}

impl Env {
    fn start() -> Self {
        Self { redis: RedisServer::start(), falkor: start_falkordb(&[]), config_dir: tempfile::tempdir().unwrap() }
    }

    fn command(&self, name: &str, extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stream-consumer"));
        cmd.env("CODEGRAPH_CONFIG_DIR", self.config_dir.path())
            .env("CODEGRAPH__REDIS__URL", self.redis.url())
            .env("CODEGRAPH__SINKS__FALKORDB__URL", self.falkor.url())
            .env("CODEGRAPH__CONSUMER__NAME", name)
            .env("CODEGRAPH__CONSUMER__LEASE_MS", "1500")
            .env("CODEGRAPH__CONSUMER__TICK_MS", "200")
            .env("CODEGRAPH__CONSUMER__CLAIM_IDLE_MS", "1000")
            .env("RUST_LOG", "warn");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the service; returns it with its HTTP address.
    fn consumer(&self, name: &str, extra: &[(&str, &str)]) -> (Child, SocketAddr) {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = self
            .command(name, extra)
            .env("CODEGRAPH__HTTP__ADDR", addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_for_port(addr, Duration::from_secs(10));
        (child, addr)
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(args, &[])
    }

    fn cli_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let out = self.command("cli", extra).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    async fn writer(&self, project: &str) -> (redis::aio::MultiplexedConnection, GraphWriter, RedisNames) {
        let names = RedisNames::new(&ProjectName::parse(project).unwrap());
        let conn = redis::Client::open(self.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        (conn, GraphWriter::new(names.clone(), 0, PublishMode::Classic), names)
    }

    async fn dump(&self, project: &str) -> GraphDump {
        let client = FalkorClient::open(&self.falkor.url()).unwrap();
        dump_falkordb(&client, &format!("codegraph_{project}")).await.unwrap_or_default()
    }

    /// Waits until the FalkorDB graph equals the Redis graph, or fails with the difference.
    async fn wait_equal(&self, names: &RedisNames, deadline: Duration) -> GraphDump {
        let start = Instant::now();
        loop {
            let want = expected_from_redis(&mut self.redis.connection(), names);
            let got = self.dump(names.project().as_str()).await;
            if got == want {
                return got;
            }
            if start.elapsed() > deadline {
                let missing = want.nodes.keys().filter(|k| !got.nodes.contains_key(*k)).count();
                let extra = got.nodes.keys().filter(|k| !want.nodes.contains_key(*k)).count();
                panic!(
                    "sink not equal after {deadline:?}: {} vs {} nodes ({missing} missing, {extra} extra), {} vs {} edges",
                    got.nodes.len(),
                    want.nodes.len(),
                    got.edges.len(),
                    want.edges.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pending(&self, names: &RedisNames) -> u64 {
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(names.cdc_stream())
            .arg("sink:falkordb")
            .query(&mut self.redis.connection())
            .unwrap();
        match summary {
            redis::Value::Array(parts) => redis::from_redis_value_ref(&parts[0]).unwrap(),
            _ => 0,
        }
    }
}

fn kill9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    child.wait().unwrap();
}

async fn applied_some(env: &Env, project: &str) {
    let start = Instant::now();
    while env.dump(project).await.nodes.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "the consumer applied nothing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_take_over_and_restart_ends_equal() {
    let env = Env::start();
    // Started before the project exists: it must discover it.
    let small_batches = [("CODEGRAPH__CONSUMER__BATCH_SIZE", "20")];
    let (mut a, _) = env.consumer("consumer-a", &small_batches);
    let (mut conn, writer, names) = env.writer("killed").await;
    let mut changes = mixed_mutations(&mut conn, &writer, 11, 20, 40).await;
    applied_some(&env, "killed").await;
    // Paused, so it is behind when killed however fast it applies: the rest is written while it cannot apply.
    signal(&a, "-STOP");
    changes += mixed_mutations(&mut conn, &writer, 14, 100, 40).await;
    assert!(changes > 3000, "{changes} changes");
    kill9(&mut a);
    let at_kill = env.dump("killed").await;
    assert_ne!(at_kill, expected_from_redis(&mut env.redis.connection(), &names), "killed before it caught up");

    // A second process takes the project over once the lease expired and claims what A left pending.
    let (mut b, _) = env.consumer("consumer-b", &small_batches);
    env.wait_equal(&names, Duration::from_secs(60)).await;
    assert_eq!(env.pending(&names), 0, "everything acknowledged");

    // Killed again with new events in flight, and restarted under the same name: its own pending entries first.
    mixed_mutations(&mut conn, &writer, 12, 60, 40).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    kill9(&mut b);
    mixed_mutations(&mut conn, &writer, 13, 20, 40).await;
    let (mut b, addr) = env.consumer("consumer-b", &small_batches);
    env.wait_equal(&names, Duration::from_secs(60)).await;
    assert_eq!(env.pending(&names), 0);

    let status: serde_json::Value = reqwest::get(format!("http://{addr}/status")).await.unwrap().json().await.unwrap();
    assert_eq!(status["consumer"], "consumer-b");
    assert_eq!(status["sinks"]["falkordb"]["killed"]["state"], "running", "{status}");
    let ready = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("codegraph_consumer_events_applied_total"), "{metrics}");
    assert!(counter(&metrics, "codegraph_consumer_changes_applied_total{sink=\"falkordb\"}") > 0, "{metrics}");
    stop(&mut b);
}

/// Writes `rounds` rounds of mutations, three entries that cannot be applied, and `rounds` more; runs a consumer
/// until the sink equals Redis and nothing is pending; checks the three dead letters. Returns the environment and
/// the project's names.
async fn poison_flow(project: &str, rounds: usize) -> (Env, RedisNames) {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer(project).await;
    mixed_mutations(&mut conn, &writer, 21, rounds, 20).await;
    let stream = names.cdc_stream();
    let mut sync = env.redis.connection();
    let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("e").arg("not json at all").query(&mut sync).unwrap();
    let bad_kind = r#"{"project":"poisoned","type":"node_added","entity":{"kind":"node","id":"x"},"version":1,"data":{"id":"x","kind":"no spaces allowed","name":"x"},"ts":"t"}"#;
    let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("e").arg(bad_kind).query(&mut sync).unwrap();
    // A change set whose second change cannot be applied: none of it may reach the sink (its first node is not
    // in Redis either, so the sink would not equal Redis), and it is one dead letter.
    let bad_set = r#"{"project":"poisoned","type":"change_set","changes":[{"type":"node_added","entity":{"kind":"node","id":"y"},"version":1,"data":{"id":"y","kind":"file","name":"y"}},{"type":"node_added","entity":{"kind":"node","id":"z"},"version":1,"data":{"id":"z","kind":"not a label","name":"z"}}],"ts":"t"}"#;
    let bad_set_id: String = redis::cmd("XADD").arg(&stream).arg("*").arg("e").arg(bad_set).query(&mut sync).unwrap();
    mixed_mutations(&mut conn, &writer, 22, rounds, 20).await;

    let (mut c, _) = env.consumer("consumer-p", &[("CODEGRAPH__CONSUMER__MAX_DELIVERIES", "3")]);
    env.wait_equal(&names, Duration::from_secs(30)).await;
    let start = Instant::now();
    while env.pending(&names) > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "entries left pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(&mut c);

    let listed = env.cli(&["dlq", "list", "--sink", "falkordb", "--project", project]);
    let letters: Vec<serde_json::Value> =
        String::from_utf8_lossy(&listed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert!(letters[0]["error"].as_str().unwrap().contains("not a JSON object"), "{letters:?}");
    assert!(letters[1]["error"].as_str().unwrap().contains("kind"), "{letters:?}");
    assert_eq!(letters[1]["deliveries"], 3);
    assert_eq!(letters[2]["entry_id"], serde_json::json!(bad_set_id), "{letters:?}");
    assert_eq!(letters[2]["body"], serde_json::json!(bad_set), "the entry as stored");
    assert!(letters[2]["error"].as_str().unwrap().contains("change 1"), "{letters:?}");
    assert!(!env.dump(project).await.nodes.contains_key("y"), "no change of a dead-lettered set is applied");
    (env, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_go_to_the_dead_letters_while_the_rest_flows() {
    let (env, _) = poison_flow("poisoned", 5).await;

    // Re-driving: the bad-kind event and the bad set are not their entities' state in Redis (superseded), the
    // garbage still fails.
    let out = env.cli(&["dlq", "redrive", "--sink", "falkordb", "--project", "poisoned"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["superseded"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["still_failing"].as_array().unwrap().len(), 1, "{report}");
    let listed = env.cli(&["dlq", "list", "--sink", "falkordb", "--project", "poisoned"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);
}

/// The same in a backlog read as one batch large enough to be decoded on a thread of its own while the worker
/// commits (`run::decoded`): the entries around the poison ones are applied, the poison ones dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_in_a_large_backlog_go_to_the_dead_letters_while_the_rest_flows() {
    let (env, names) = poison_flow("poisoned-large", 60).await;
    let entries: redis::Value =
        redis::cmd("XRANGE").arg(names.cdc_stream()).arg("-").arg("+").query(&mut env.redis.connection()).unwrap();
    fn bytes(v: &redis::Value) -> usize {
        match v {
            redis::Value::BulkString(b) => b.len(),
            redis::Value::Array(items) => items.iter().map(bytes).sum(),
            _ => 0,
        }
    }
    let bytes = bytes(&entries);
    assert!(bytes > 2 * 256 * 1024, "a backlog of {bytes} bytes is decoded on its own thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_start_and_from_a_snapshot_agree() {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer("replayed").await;
    mixed_mutations(&mut conn, &writer, 31, 40, 30).await;

    let out = env.cli(&["replay", "--sink", "falkordb", "--project", "replayed"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["stream_changes"].as_u64().unwrap() > 500, "{report}");
    let entries: u64 = redis::cmd("XLEN").arg(names.cdc_stream()).query(&mut env.redis.connection()).unwrap();
    assert_eq!(report["stream_entries"], entries, "{report}");
    let from_start = env.wait_equal(&names, Duration::from_secs(1)).await;

    // More changes, then a rebuild from a snapshot (the Redis hashes) plus the stream after it.
    mixed_mutations(&mut conn, &writer, 32, 10, 30).await;
    let out = env.cli(&["replay", "--sink", "falkordb", "--project", "replayed", "--from-snapshot"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["snapshot_entities"].as_u64().unwrap() > 50, "{report}");
    let from_snapshot = env.wait_equal(&names, Duration::from_secs(1)).await;

    // And from the start again: the same state as from the snapshot.
    env.cli(&["replay", "--sink", "falkordb", "--project", "replayed", "--from", "0"]);
    assert_eq!(env.dump("replayed").await, from_snapshot);
    assert_ne!(from_start, from_snapshot, "the second round changed the graph");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_trimmed_only_below_what_every_group_acknowledged() {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer("trimmed").await;
    // Three stream nodes' worth of entries (100 each), so the approximate trimming has whole nodes to remove.
    mixed_mutations(&mut conn, &writer, 41, 300, 4).await;
    let stream = names.cdc_stream();
    let mut sync = env.redis.connection();
    let len = |sync: &mut redis::Connection| -> u64 { redis::cmd("XLEN").arg(&stream).query(sync).unwrap() };
    let before = len(&mut sync);
    // A second group that has read nothing holds every entry.
    let _: () = redis::cmd("XGROUP").arg("CREATE").arg(&stream).arg("sink:other").arg("0").query(&mut sync).unwrap();

    let trim = [("CODEGRAPH__CONSUMER__TRIM_INTERVAL_MS", "200"), ("CODEGRAPH__CONSUMER__RETENTION_MS", "0")];
    let (mut c, _) = env.consumer("consumer-t", &trim);
    env.wait_equal(&names, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // three trim periods
    assert_eq!(len(&mut sync), before, "the idle group keeps every entry");

    let _: () = redis::cmd("XGROUP").arg("DESTROY").arg(&stream).arg("sink:other").query(&mut sync).unwrap();
    let start = Instant::now();
    while len(&mut sync) > before / 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "not trimmed: {} of {before}", len(&mut sync));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(&mut c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memgraph_sink_is_fed_over_bolt_next_to_falkordb() {
    let env = Env::start();
    let (_bolt_server, port) = falkordb_with_bolt();
    let url = format!("bolt://127.0.0.1:{port}");
    // FalkorDB's Bolt port cannot bind parameters of any size (see the README); Memgraph does not need this.
    let memgraph =
        [("CODEGRAPH__SINKS__MEMGRAPH__URL", url.as_str()), ("CODEGRAPH__SINKS__MEMGRAPH__INLINE_PARAMETERS", "true")];
    let (mut c, addr) = env.consumer("consumer-m", &memgraph);
    let (mut conn, writer, names) = env.writer("bolted").await;
    mixed_mutations(&mut conn, &writer, 51, 40, 30).await;
    env.wait_equal(&names, Duration::from_secs(30)).await;

    let sink = MemgraphSink::new(&MemgraphSettings { url: url.clone(), inline_parameters: true, ..Default::default() })
        .unwrap();
    let wait_memgraph_equal = || async {
        let start = Instant::now();
        loop {
            let want = expected_from_redis(&mut env.redis.connection(), &names);
            let got = dump_memgraph(&sink, "bolted").await.unwrap_or_default();
            if got == want {
                return got;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "memgraph sink not equal: {}", got.diff(&want));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let fed = wait_memgraph_equal().await;
    assert!(fed.nodes.len() > 30, "{} nodes", fed.nodes.len());

    let status: serde_json::Value = reqwest::get(format!("http://{addr}/status")).await.unwrap().json().await.unwrap();
    assert_eq!(status["sinks"]["memgraph"]["bolted"]["state"], "running", "{status}");
    let ready: serde_json::Value = reqwest::get(format!("http://{addr}/ready")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["sinks"]["memgraph"], true, "{ready}");
    stop(&mut c);

    // Replay into the Memgraph sink from a snapshot gives the same state.
    let out = env.cli_with(&["replay", "--sink", "memgraph", "--project", "bolted", "--from-snapshot"], &memgraph);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["snapshot_entities"].as_u64().unwrap() > 30, "{report}");
    assert_eq!(wait_memgraph_equal().await, fed);
}

/// Polls `GET /status` until `ok` holds for it.
async fn wait_status(addr: SocketAddr, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let status: serde_json::Value =
            reqwest::get(format!("http://{addr}/status")).await.unwrap().json().await.unwrap();
        if ok(&status) {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what}: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_a_trimmed_stream_resyncs_instead_of_skipping() {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer("behind").await;
    mixed_mutations(&mut conn, &writer, 61, 10, 30).await;
    let (mut c, _) = env.consumer("consumer-r", &[]);
    env.wait_equal(&names, Duration::from_secs(30)).await;
    stop(&mut c);

    // While no consumer runs, entries the group was never given are trimmed from outside (the writers' cap never
    // trims what a group needs; an operator's XTRIM can).
    mixed_mutations(&mut conn, &writer, 62, 200, 8).await;
    let trimmed: u64 =
        redis::cmd("XTRIM").arg(names.cdc_stream()).arg("MAXLEN").arg(100).query(&mut env.redis.connection()).unwrap();
    assert!(trimmed > 0, "the stream held more than 100 entries");
    let delivered: redis::Value =
        redis::cmd("XINFO").arg("GROUPS").arg(names.cdc_stream()).query(&mut env.redis.connection()).unwrap();
    let first: redis::Value = redis::cmd("XRANGE")
        .arg(names.cdc_stream())
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query(&mut env.redis.connection())
        .unwrap();
    let before = env.dump("behind").await;
    assert_ne!(before, expected_from_redis(&mut env.redis.connection(), &names));

    // Resync off: it says so (status, metrics) and applies nothing past the gap.
    let (mut c, addr) = env.consumer("consumer-r", &[("CODEGRAPH__CONSUMER__RESYNC_FROM_SNAPSHOT", "false")]);
    let status =
        wait_status(addr, "resync_required", |s| s["sinks"]["falkordb"]["behind"]["state"] == "resync_required").await;
    assert_eq!(status["sinks"]["falkordb"]["behind"]["resync_required"], true, "{status}");
    assert!(status["sinks"]["falkordb"]["behind"]["last_error"].as_str().unwrap().contains("trimmed"), "{status}");
    assert!(metrics(addr).await.contains("codegraph_consumer_resync_required{sink=\"falkordb\"} 1"));
    tokio::time::sleep(Duration::from_millis(500)).await; // several read periods
    assert_eq!(env.dump("behind").await, before, "nothing applied past the gap (group {delivered:?}, first {first:?})");
    stop(&mut c);

    // On (the default): rebuilt from a snapshot, then it follows the stream again.
    let (mut c, addr) = env.consumer("consumer-r", &[]);
    env.wait_equal(&names, Duration::from_secs(30)).await;
    mixed_mutations(&mut conn, &writer, 63, 5, 30).await;
    env.wait_equal(&names, Duration::from_secs(30)).await;
    let status = wait_status(addr, "running", |s| s["sinks"]["falkordb"]["behind"]["state"] == "running").await;
    assert_eq!(status["sinks"]["falkordb"]["behind"]["resyncs"], 1, "{status}");
    assert_eq!(status["sinks"]["falkordb"]["behind"]["resync_required"], false, "{status}");
    let m = metrics(addr).await;
    assert!(m.contains("codegraph_consumer_resyncs_total{sink=\"falkordb\"} 1"), "{m}");
    assert!(m.contains("codegraph_consumer_resync_required{sink=\"falkordb\"} 0"), "{m}");
    assert_eq!(env.pending(&names), 0);
    stop(&mut c);
}

/// A process killed when the test ends, even by a panic.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real graph-api binary (`cargo build -p graph-api`, or `$GRAPH_API_BIN`), on a free port, once ready.
async fn start_graph_api(env: &Env) -> (Killed, String) {
    let bin = std::env::var_os("GRAPH_API_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/graph-api"));
    assert!(bin.exists(), "{} is missing: run `cargo build -p graph-api` (or set GRAPH_API_BIN)", bin.display());
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(bin)
        .env("CODEGRAPH_CONFIG_DIR", env.config_dir.path())
        .env("CODEGRAPH__REDIS__URL", env.redis.url())
        .env("CODEGRAPH__HTTP__ADDR", addr.to_string())
        // Small pages, so the replay follows the snapshot's cursor through many of them.
        .env("CODEGRAPH__API__MAX_PAGE_SIZE", "25")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let api = Killed(child);
    let base = format!("http://{addr}");
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/ready")).await {
            if r.status() == 200 {
                return (api, base);
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "graph-api not ready at {base}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_graph_apis_snapshot_while_writes_go_on_ends_equal() {
    let env = Env::start();
    let (_api, base) = start_graph_api(&env).await;
    let (mut conn, writer, names) = env.writer("viaapi").await;
    mixed_mutations(&mut conn, &writer, 71, 40, 30).await;

    // Alone: the snapshot (many pages) and the stream after it give the Redis graph, as replay from 0 does.
    let out = env.cli(&["replay", "--sink", "falkordb", "--project", "viaapi", "--from-snapshot", "--api", &base]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["snapshot_entities"].as_u64().unwrap() > 100, "{report}");
    let from_api = env.wait_equal(&names, Duration::from_secs(1)).await;
    env.cli(&["replay", "--sink", "falkordb", "--project", "viaapi", "--from", "0"]);
    assert_eq!(env.dump("viaapi").await, from_api, "replay from 0 and from graph-api's snapshot agree");

    // With a live consumer and writes going on during the replay: the replay takes the project, the consumer
    // takes it back and continues after what the replay recorded.
    let (mut c, _) = env.consumer("consumer-api", &[]);
    let replay_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let (mut conn, writer, _) = env.writer("viaapi").await;
        let done = replay_done.clone();
        tokio::spawn(async move {
            // Small rounds before, during and after the replay.
            let (mut seed, mut after) = (100, 0);
            while after < 5 {
                mixed_mutations(&mut conn, &writer, seed, 1, 20).await;
                seed += 1;
                after += usize::from(done.load(std::sync::atomic::Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seed - 100
        })
    };
    let len = || -> u64 { redis::cmd("XLEN").arg(names.cdc_stream()).query(&mut env.redis.connection()).unwrap() };
    let before = len();
    while len() < before + 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let args = ["replay", "--sink", "falkordb", "--project", "viaapi", "--from-snapshot", "--api", &base];
    let replay = tokio::task::spawn_blocking({
        let mut cmd = env.command("cli", &[]);
        cmd.args(args);
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    replay_done.store(true, std::sync::atomic::Ordering::Relaxed);
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(replay.status.success(), "{stderr}");
    // It took the project from the live consumer and had the sink refuse that consumer's writes before its own.
    let report: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(report["took_over_from"], "consumer-api", "{report}");
    let generation = report["generation"].as_u64().unwrap();
    assert!(generation >= 2, "{report}");
    assert!(stderr.contains(&format!("the sink now refuses its writes (generation {generation})")), "{stderr}");
    let rounds = writing.await.unwrap();
    assert!(rounds > 5, "{rounds} rounds of writes");
    let end = env.wait_equal(&names, Duration::from_secs(30)).await;
    assert_ne!(end, from_api);
    stop(&mut c);
}

/// Small rounds of mixed mutations on `project` every 20 ms until `done`; returns how many rounds.
async fn steady_load(env: &Env, project: &str, done: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let (mut conn, writer, _) = env.writer(project).await;
    tokio::spawn(async move {
        let mut seed = 1000;
        while !done.load(Ordering::Relaxed) {
            mixed_mutations(&mut conn, &writer, seed, 1, 20).await;
            seed += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seed - 1000
    })
}

/// Waits until the stream has grown by `n` entries (each a round of [`steady_load`]).
async fn stream_grows(env: &Env, names: &RedisNames, n: u64) {
    let len = || -> u64 { redis::cmd("XLEN").arg(names.cdc_stream()).query(&mut env.redis.connection()).unwrap() };
    let (before, start) = (len(), Instant::now());
    while len() < before + n {
        assert!(start.elapsed() < Duration::from_secs(20), "the stream does not grow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of a counter on a `/metrics` page, by its labels as printed.
fn counter(metrics: &str, name_and_labels: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_lost_its_data_is_refilled_without_an_operator() {
    let mut env = Env::start();
    let (mut conn, writer, names) = env.writer("refilled").await;
    mixed_mutations(&mut conn, &writer, 81, 20, 30).await;
    let (mut c, addr) = env.consumer("consumer-f", &[]);
    env.wait_equal(&names, Duration::from_secs(30)).await;
    let refills = |n: u64| {
        move |s: &serde_json::Value| {
            s["sinks"]["falkordb"]["refilled"]["refills"] == n
                && s["sinks"]["falkordb"]["refilled"]["state"] == "running"
        }
    };

    // Emptied (FLUSHALL) while writes go on: the next commit finds no record, and the project is rebuilt.
    let done = Arc::new(AtomicBool::new(false));
    let load = steady_load(&env, "refilled", done.clone()).await;
    stream_grows(&env, &names, 4).await;
    redis::cmd("FLUSHALL").query::<()>(&mut env.falkor.connection()).unwrap();
    wait_status(addr, "refilled after FLUSHALL", refills(1)).await;
    stream_grows(&env, &names, 4).await;
    done.store(true, Ordering::Relaxed);
    assert!(load.await.unwrap() > 2);
    env.wait_equal(&names, Duration::from_secs(30)).await;

    // Restarted without its data (files deleted) while writes go on: the same.
    let done = Arc::new(AtomicBool::new(false));
    let load = steady_load(&env, "refilled", done.clone()).await;
    stream_grows(&env, &names, 4).await;
    restart_without_data(&mut env);
    wait_status(addr, "refilled after a restart without data", refills(2)).await;
    stream_grows(&env, &names, 4).await;
    done.store(true, Ordering::Relaxed);
    load.await.unwrap();
    env.wait_equal(&names, Duration::from_secs(30)).await;

    // Restarted without its data while nothing is written: no commit will find out, the idle worker's check does.
    restart_without_data(&mut env);
    wait_status(addr, "refilled while idle", refills(3)).await;
    env.wait_equal(&names, Duration::from_secs(30)).await;
    let m = metrics(addr).await;
    let by = |reason: &str| {
        counter(&m, &format!("codegraph_consumer_refills_total{{reason=\"{reason}\",sink=\"falkordb\"}}"))
    };
    // Under load a commit usually finds the loss first (lost_on_commit); a check between two reads may (missing).
    assert_eq!(by("lost_on_commit") + by("missing"), 3, "{m}");
    assert!(by("missing") >= 1, "the idle loss was found by the check: {m}");
    stop(&mut c);

    // Emptied while no consumer runs: the next one finds no record when it starts, with no write to notice it.
    redis::cmd("FLUSHALL").query::<()>(&mut env.falkor.connection()).unwrap();
    let (mut c, addr) = env.consumer("consumer-f", &[]);
    env.wait_equal(&names, Duration::from_secs(30)).await;
    let status = wait_status(addr, "refilled at start", refills(1)).await;
    assert_eq!(status["sinks"]["falkordb"]["refilled"]["state"], "running", "{status}");
    let m = metrics(addr).await;
    assert_eq!(counter(&m, "codegraph_consumer_refills_total{reason=\"missing\",sink=\"falkordb\"}"), 1, "{m}");
    stop(&mut c);
}

/// A failover to a replica that had not received the newest entries loses them in Redis, though the sink may have
/// applied them: the stream no longer holds the entry the sink recorded, which was never trimmed. The idle worker's
/// check finds it and rebuilds the sink from Redis, so the sink holds nothing Redis does not. (Here the entry is
/// deleted by hand, the graph state left: the rebuild from a snapshot makes the sink equal to it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_ahead_of_a_redis_that_lost_entries_is_rebuilt_from_redis() {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer("ahead").await;
    mixed_mutations(&mut conn, &writer, 7, 20, 30).await;
    let (mut c, addr) = env.consumer("consumer-a", &[]);
    env.wait_equal(&names, Duration::from_secs(30)).await;
    let last = recorded(&FalkorClient::open(&env.falkor.url()).unwrap(), "ahead").await.expect("a record");
    let last_id = format!("{}-{}", last.0, last.1);
    let deleted: i64 = redis::cmd("XDEL").arg(names.cdc_stream()).arg(&last_id).query_async(&mut conn).await.unwrap();
    assert_eq!(deleted, 1, "the recorded entry {last_id} is the stream's newest");
    wait_status(addr, "rebuilt after Redis lost the recorded entry", |s| {
        s["sinks"]["falkordb"]["ahead"]["refills"] == 1 && s["sinks"]["falkordb"]["ahead"]["state"] == "running"
    })
    .await;
    env.wait_equal(&names, Duration::from_secs(30)).await;
    let m = metrics(addr).await;
    assert_eq!(counter(&m, "codegraph_consumer_refills_total{reason=\"ahead_of_redis\",sink=\"falkordb\"}"), 1, "{m}");
    stop(&mut c);
}

/// Stops the FalkorDB server, deletes its files and starts it again, empty, on the same port.
fn restart_without_data(env: &mut Env) {
    env.falkor.stop();
    for file in std::fs::read_dir(env.falkor.dir()).unwrap() {
        let path = file.unwrap().path();
        if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }.unwrap();
    }
    env.falkor.restart();
    wait_for_port(env.falkor.addr(), Duration::from_secs(10));
}

/// The ID the FalkorDB sink recorded for `project` (`_Meta` ms and seq), if any.
async fn recorded(client: &FalkorClient, project: &str) -> Option<(u64, u64)> {
    let rows = client.read(&format!("codegraph_{project}"), "MATCH (g:_Meta) RETURN g.ms, g.seq").await.ok()?;
    let row = rows.first()?;
    Some((row.first()?.as_u64()?, row.get(1)?.as_u64()?))
}

fn signal(child: &Child, signal: &str) {
    assert!(Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_past_its_lease_writes_nothing_after_its_successor() {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer("paused").await;
    mixed_mutations(&mut conn, &writer, 91, 20, 30).await;
    let small = [("CODEGRAPH__CONSUMER__BATCH_SIZE", "20")];
    let (mut a, addr_a) = env.consumer("consumer-a", &small);
    env.wait_equal(&names, Duration::from_secs(30)).await;

    // A is paused mid-load, past its lease; B takes the project over and deletes entities.
    let done = Arc::new(AtomicBool::new(false));
    let load = steady_load(&env, "paused", done.clone()).await;
    stream_grows(&env, &names, 6).await;
    signal(&a, "-STOP");
    let (mut b, addr_b) = env.consumer("consumer-b", &small);
    wait_status(addr_b, "B owns the project", |s| s["sinks"]["falkordb"]["paused"]["state"] == "running").await;
    let nodes: Vec<String> = redis::cmd("HKEYS").arg(names.nodes()).query(&mut env.redis.connection()).unwrap();
    // Nodes the load never touches (each of its rounds writes ids n1..n20 only).
    let untouched = |id: &String| id.strip_prefix('n').and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 100);
    let victims: Vec<String> = nodes.into_iter().filter(untouched).take(15).collect();
    assert_eq!(victims.len(), 15);
    let deletes: Vec<Mutation> = victims.iter().map(|id| Mutation::DeleteNode(id.clone(), Expect::Any)).collect();
    writer.mutate(&mut conn, &deletes, None).await.unwrap();
    let start = Instant::now();
    while {
        let held = env.dump("paused").await;
        victims.iter().any(|v| held.nodes.contains_key(v))
    } {
        assert!(start.elapsed() < Duration::from_secs(20), "B did not apply the deletes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The recorded ID is sampled while A resumes mid-batch and while the load goes on.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (client, on) = (FalkorClient::open(&env.falkor.url()).unwrap(), sampling.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while on.load(Ordering::Relaxed) {
                samples.extend(recorded(&client, "paused").await);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            samples
        })
    };
    signal(&a, "-CONT");
    wait_status(addr_a, "A let the project go", |s| {
        s["sinks"]["falkordb"].get("paused").is_none_or(|p| p["state"] == "fenced")
    })
    .await;
    stream_grows(&env, &names, 4).await;
    done.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let end = env.wait_equal(&names, Duration::from_secs(30)).await;
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    assert!(samples.len() > 20, "{} samples", samples.len());
    assert!(samples.windows(2).all(|w| w[0] <= w[1]), "the recorded ID went back: {samples:?}");
    assert!(victims.iter().all(|v| !end.nodes.contains_key(v)), "the deleted nodes stay deleted");
    stop(&mut a);
    stop(&mut b);
}

/// Set `k`: `n` nodes in a ring of `calls` relationships, every node and relationship at revision `rev`. One call,
/// so one change set of `2 n` changes.
fn ring(k: usize, n: usize, rev: u64) -> Vec<Mutation> {
    let id = |i: usize| format!("s{k}n{i}");
    let mut ops: Vec<Mutation> = (0..n)
        .map(|i| {
            let node: Node = serde_json::from_value(serde_json::json!({
                "id": id(i), "kind": "function", "name": id(i), "properties": {"set": k, "rev": rev}
            }))
            .unwrap();
            Mutation::UpsertNode(node, Expect::Any)
        })
        .collect();
    ops.extend((0..n).map(|i| {
        let (s, t) = (id(i), id((i + 1) % n));
        let rel: Relationship = serde_json::from_value(serde_json::json!({
            "id": Relationship::derived_id(&s, "calls", &t), "type": "calls", "source": s, "target": t,
            "properties": {"rev": rev}
        }))
        .unwrap();
        Mutation::UpsertRelationship(rel, Expect::Any)
    }));
    ops
}

/// What one read of the sink shows of each ring (see [`ring`]): set → revision, when the set is there whole (all
/// `n` nodes at one revision, each with its one relationship at the same revision). Panics on any other shape:
/// a reader saw part of a change set.
async fn rings(client: &FalkorClient, graph: &str, n: i64) -> std::collections::BTreeMap<i64, i64> {
    // One query, so one consistent view of the graph.
    let q = "MATCH (n:Node) OPTIONAL MATCH (n)-[e]->() RETURN n.set, n.rev, e.rev, count(*)";
    let mut groups: std::collections::BTreeMap<i64, Vec<(serde_json::Value, serde_json::Value, i64)>> =
        Default::default();
    // No graph yet (the consumer has not started it): nothing there.
    for row in client.read(graph, q).await.unwrap_or_default() {
        let count = row[3].as_i64().unwrap();
        groups.entry(row[0].as_i64().unwrap()).or_default().push((row[1].clone(), row[2].clone(), count));
    }
    groups
        .into_iter()
        .map(|(set, g)| match g.as_slice() {
            [(nrev, erev, count)] if nrev == erev && *count == n && nrev.is_i64() => (set, nrev.as_i64().unwrap()),
            other => panic!("a reader saw part of change set {set}: (node rev, relationship rev, count) {other:?}"),
        })
        .collect()
}

/// Polls the rings in the sink until `done` holds for what it shows; returns how many polls showed rings in
/// different states (some applied, others not yet), i.e. were taken while the consumer was applying them.
fn watch_rings(
    env: &Env,
    graph: String,
    n: i64,
    done: impl Fn(&std::collections::BTreeMap<i64, i64>) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<usize> {
    let client = FalkorClient::open(&env.falkor.url()).unwrap();
    tokio::spawn(async move {
        let (start, mut between) = (Instant::now(), 0);
        loop {
            let seen = rings(&client, &graph, n).await;
            if done(&seen) {
                return between;
            }
            let states: std::collections::BTreeSet<Option<&i64>> = (0..SETS as i64).map(|k| seen.get(&k)).collect();
            between += usize::from(states.len() > 1);
            assert!(start.elapsed() < Duration::from_secs(60), "the rings were not applied: {seen:?}");
        }
    })
}

const SETS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_set_shows_in_the_sink_whole_and_is_never_split_across_commits() {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer("atomic").await;
    // Change sets of 120 changes, six times the batch size.
    const NODES: usize = 60;
    let batch = [("CODEGRAPH__CONSUMER__BATCH_SIZE", "20")];
    for k in 0..SETS {
        writer.mutate(&mut conn, &ring(k, NODES, 0), None).await.unwrap();
    }
    let entries: u64 = redis::cmd("XLEN").arg(names.cdc_stream()).query(&mut env.redis.connection()).unwrap();
    assert_eq!(entries, SETS as u64, "one entry per call");

    // A backlog applied from a cold start, watched by a reader all along.
    let graph = "codegraph_atomic".to_owned();
    let all_at = |rev: i64| {
        move |seen: &std::collections::BTreeMap<i64, i64>| seen.len() == SETS && seen.values().all(|r| *r == rev)
    };
    let watcher = watch_rings(&env, graph.clone(), NODES as i64, all_at(0));
    let (mut c, addr) = env.consumer("consumer-atomic", &batch);
    let between = watcher.await.unwrap();
    assert!(between > 0, "no read fell between two commits");

    // Each set was one commit of its own: never split, though larger than the batch size.
    let start = Instant::now();
    let m = loop {
        let m = metrics(addr).await;
        if counter(&m, "codegraph_consumer_changes_applied_total{sink=\"falkordb\"}") == (SETS * 2 * NODES) as u64 {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(counter(&m, "codegraph_consumer_batches_total{sink=\"falkordb\"}"), SETS as u64, "{m}");
    assert_eq!(counter(&m, "codegraph_consumer_events_applied_total{sink=\"falkordb\"}"), SETS as u64, "{m}");

    // Updates of every node and relationship of each set while the consumer follows the stream.
    let watcher = watch_rings(&env, graph, NODES as i64, all_at(1));
    for k in 0..SETS {
        writer.mutate(&mut conn, &ring(k, NODES, 1), None).await.unwrap();
    }
    let between = watcher.await.unwrap();
    assert!(between > 0, "no read fell between two commits");
    env.wait_equal(&names, Duration::from_secs(10)).await;
    stop(&mut c);
}

/// A sink's graph as nodes (id, labels) and edges (id, type, source, target).
type Shape = (Vec<(String, Vec<String>)>, Vec<(String, String, String, String)>);

fn shape(dump: &GraphDump) -> Shape {
    let nodes = dump.nodes.iter().map(|(id, (labels, _))| (id.clone(), labels.clone())).collect();
    let edges = dump.edges.iter().map(|(id, (t, s, d, _))| (id.clone(), t.clone(), s.clone(), d.clone())).collect();
    (nodes, edges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_written_before_change_sets_still_replays_into_the_sink() {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer("upgraded").await;
    let stream = names.cdc_stream();
    let mut sync = env.redis.connection();
    // Entries as the Function library wrote them before change sets: one graph change per entry.
    let node = |t: &str, id: &str, v: u64, kind: &str| {
        format!(
            r#"{{"project":"upgraded","type":"{t}","entity":{{"kind":"node","id":"{id}"}},"version":{v},"data":{{"id":"{id}","kind":"{kind}","name":"{id}"}},"ts":"t"}}"#
        )
    };
    let rel = |t: &str, s: &str, ty: &str, d: &str, v: u64| {
        let id = Relationship::derived_id(s, ty, d);
        format!(
            r#"{{"project":"upgraded","type":"{t}","entity":{{"kind":"relationship","id":"{id}"}},"version":{v},"data":{{"id":"{id}","type":"{ty}","source":"{s}","target":"{d}"}},"ts":"t"}}"#
        )
    };
    let old_form = [
        node("node_added", "a", 1, "file"),
        node("node_added", "b", 1, "class"),
        rel("relationship_added", "a", "calls", "b", 1),
        node("node_updated", "a", 2, "module"),
        node("node_added", "c", 1, "file"),
        rel("relationship_added", "c", "imports", "a", 1),
        rel("relationship_deleted", "c", "imports", "a", 2),
        node("node_deleted", "c", 2, "file"),
        r#"{"project":"upgraded","type":"analysis_progress","entity":{"kind":"job","id":"j"},"version":1,"data":{"percent":50},"ts":"t"}"#.to_owned(),
    ];
    for body in &old_form {
        let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("e").arg(body).query(&mut sync).unwrap();
    }
    // Then the same stream goes on in the new form: one change set per call.
    let upsert = |id: &str| {
        let node: Node = serde_json::from_value(serde_json::json!({"id": id, "kind": "file", "name": id})).unwrap();
        Mutation::UpsertNode(node, Expect::Any)
    };
    let rel_de: Relationship = serde_json::from_value(serde_json::json!({
        "id": Relationship::derived_id("d", "calls", "e"), "type": "calls", "source": "d", "target": "e"
    }))
    .unwrap();
    let ops = [upsert("d"), upsert("e"), Mutation::UpsertRelationship(rel_de, Expect::Any)];
    writer.mutate(&mut conn, &ops, None).await.unwrap();
    let entries: u64 = redis::cmd("XLEN").arg(&stream).query(&mut sync).unwrap();
    assert_eq!(entries, old_form.len() as u64 + 1);

    let labels = |kind: &str| vec!["Node".to_owned(), kind.to_owned()];
    let edge = |s: &str, t: &str| (Relationship::derived_id(s, "calls", t), "calls".into(), s.into(), t.into());
    let want: Shape = (
        vec![
            ("a".into(), labels("module")),
            ("b".into(), labels("class")),
            ("d".into(), labels("file")),
            ("e".into(), labels("file")),
        ],
        vec![edge("a", "b"), edge("d", "e")],
    );

    // The live consumer.
    let (mut c, _) = env.consumer("consumer-upgraded", &[]);
    let start = Instant::now();
    while shape(&env.dump("upgraded").await) != want {
        assert!(start.elapsed() < Duration::from_secs(20), "{:?}", shape(&env.dump("upgraded").await));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(&mut c);

    // A replay from the start.
    let out = env.cli(&["replay", "--sink", "falkordb", "--project", "upgraded", "--from", "0"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["stream_entries"].as_u64(), report["stream_changes"].as_u64()),
        (Some(entries), Some(12)),
        "{report}"
    );
    assert_eq!(report["skipped"], serde_json::json!([]), "{report}");
    assert_eq!(shape(&env.dump("upgraded").await), want);
}

/// The service over TLS, configured as a deployment would be: Redis on its TLS port (`rediss://` and
/// `CODEGRAPH__REDIS__CA_FILE`), FalkorDB behind a TLS-terminating proxy with its own CA setting. What is written
/// reaches the sink. With a CA that did not sign Redis's certificate the process keeps running, `/ready` says 503
/// (Redis unreachable), and nothing is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_private_cas_events_reach_the_sink_and_a_wrong_ca_is_a_503() {
    let (ca, stranger) = (TestCa::new(), TestCa::new());
    let env = Env {
        redis: RedisServer::start_tls(&ca, &[]),
        falkor: start_falkordb(&[]),
        config_dir: tempfile::tempdir().unwrap(),
    };
    let proxy = TlsProxy::start(&ca, env.falkor.port());
    let (ca_file, stranger_file) =
        (ca.ca_file().to_string_lossy().into_owned(), stranger.ca_file().to_string_lossy().into_owned());
    let falkor_url = format!("rediss://127.0.0.1:{}", proxy.port);
    let settings = |redis_ca: &str| {
        vec![
            ("CODEGRAPH__REDIS__CA_FILE", redis_ca.to_owned()),
            ("CODEGRAPH__SINKS__FALKORDB__URL", falkor_url.clone()),
            ("CODEGRAPH__SINKS__FALKORDB__CA_FILE", ca_file.clone()),
        ]
    };
    let wrong = settings(&stranger_file);
    let (mut refused, refused_addr) =
        env.consumer("consumer-wrong-ca", &wrong.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());

    let redis =
        RedisHandle::open_with(&env.redis.url(), &RedisTls { ca_file: Some(ca.ca_file()), ..Default::default() })
            .unwrap();
    let mut conn = redis.conn();
    let names = RedisNames::new(&ProjectName::parse("tls").unwrap());
    let writer = GraphWriter::new(names.clone(), 0, PublishMode::Classic);
    assert!(mixed_mutations(&mut conn, &writer, 81, 20, 20).await > 100);

    let ready = reqwest::get(format!("http://{refused_addr}/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!((body["redis"].clone(), body["sinks"]["falkordb"].clone()), (false.into(), true.into()), "{body}");
    assert_eq!(refused.try_wait().unwrap(), None, "no crash: it waits for Redis like in any outage");
    assert_eq!(env.dump("tls").await, GraphDump::default(), "nothing applied through a refused connection");
    stop(&mut refused);

    let right = settings(&ca_file);
    let (mut consumer, addr) =
        env.consumer("consumer-tls", &right.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    env.wait_equal(&names, Duration::from_secs(60)).await;
    assert_eq!(reqwest::get(format!("http://{addr}/ready")).await.unwrap().status(), 200);
    stop(&mut consumer);
}
