//! The stream-consumer binary against a real Redis and a real FalkorDB: the sink ends equal to the Redis graph
//! through kill -9 and take-over, poison events go to the dead letters while the rest flows, replays from the
//! start and from a snapshot agree, and trimming respects every group.

use std::{
    net::SocketAddr,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::{
    functions::{GraphWriter, PublishMode},
    names::RedisNames,
    project::ProjectName,
    testing::{free_port, wait_for_port, RedisServer},
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
    let events = mixed_mutations(&mut conn, &writer, 11, 120, 40).await;
    assert!(events > 3000, "{events} events");
    applied_some(&env, "killed").await;
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
    stop(&mut b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_go_to_the_dead_letters_while_the_rest_flows() {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer("poisoned").await;
    mixed_mutations(&mut conn, &writer, 21, 5, 20).await;
    let stream = names.cdc_stream();
    let mut sync = env.redis.connection();
    let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("e").arg("not json at all").query(&mut sync).unwrap();
    let bad_kind = r#"{"project":"poisoned","type":"node_added","entity":{"kind":"node","id":"x"},"version":1,"data":{"id":"x","kind":"no spaces allowed","name":"x"},"ts":"t"}"#;
    let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("e").arg(bad_kind).query(&mut sync).unwrap();
    mixed_mutations(&mut conn, &writer, 22, 5, 20).await;

    let (mut c, _) = env.consumer("consumer-p", &[("CODEGRAPH__CONSUMER__MAX_DELIVERIES", "3")]);
    env.wait_equal(&names, Duration::from_secs(30)).await;
    let start = Instant::now();
    while env.pending(&names) > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "entries left pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(&mut c);

    let listed = env.cli(&["dlq", "list", "--sink", "falkordb", "--project", "poisoned"]);
    let letters: Vec<serde_json::Value> =
        String::from_utf8_lossy(&listed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters[0]["error"].as_str().unwrap().contains("not a JSON object"), "{letters:?}");
    assert!(letters[1]["error"].as_str().unwrap().contains("kind"), "{letters:?}");
    assert_eq!(letters[1]["deliveries"], 3);

    // Re-driving: the bad-kind event is not the entity's state in Redis (superseded), the garbage still fails.
    let out = env.cli(&["dlq", "redrive", "--sink", "falkordb", "--project", "poisoned"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["superseded"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["still_failing"].as_array().unwrap().len(), 1, "{report}");
    let listed = env.cli(&["dlq", "list", "--sink", "falkordb", "--project", "poisoned"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_start_and_from_a_snapshot_agree() {
    let env = Env::start();
    let (mut conn, writer, names) = env.writer("replayed").await;
    mixed_mutations(&mut conn, &writer, 31, 40, 30).await;

    let out = env.cli(&["replay", "--sink", "falkordb", "--project", "replayed"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["stream_events"].as_u64().unwrap() > 500, "{report}");
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
    mixed_mutations(&mut conn, &writer, 41, 30, 40).await;
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

    // While no consumer runs, the writers' MAXLEN cap trims entries the group was never given.
    let capped = GraphWriter::new(names.clone(), 100, PublishMode::Classic);
    mixed_mutations(&mut conn, &capped, 62, 40, 40).await;
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
    while len() < before + 50 {
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
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let rounds = writing.await.unwrap();
    assert!(rounds > 5, "{rounds} rounds of writes");
    let end = env.wait_equal(&names, Duration::from_secs(30)).await;
    assert_ne!(end, from_api);
    stop(&mut c);
}
