//! Load generator for graph-api: node upserts per second through `POST /api/graph/batch` (events included),
//! side by side with the physical baseline (the same number of raw `XADD`+`PUBLISH` pairs pipelined straight
//! into Redis), and single-mutation latency over HTTP.
//!
//! It starts its own redis-server and the graph-api binary that sits next to it, on loopback, and stops them:
//!
//! ```sh
//! cargo build --release -p graph-api --features codegraph-shared/testing
//! target/release/graph-api-bench [--nodes 200000] [--batch 1000] [--concurrency 4] [--runs 3] [--latency-requests 2000]
//! ```
//!
//! `graph-api-bench intel …` measures the code-intelligence routes instead (`bench/intel.rs`).

#[path = "bench/intel.rs"]
mod intel;

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use codegraph_shared::testing::{free_port, RedisServer};
use serde_json::json;

struct Args {
    nodes: usize,
    batch: usize,
    concurrency: usize,
    runs: usize,
    latency_requests: usize,
}

fn parse_args() -> Args {
    let mut a = Args { nodes: 200_000, batch: 1000, concurrency: 4, runs: 3, latency_requests: 2000 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = || pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--nodes" => a.nodes = value(),
            "--batch" => a.batch = value(),
            "--concurrency" => a.concurrency = value(),
            "--runs" => a.runs = value(),
            "--latency-requests" => a.latency_requests = value(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

struct Api(Child);

/// Starts the graph-api binary beside this one on `redis_url` and waits until it is ready: the process (killed
/// when dropped), its base URL and a client.
async fn start_api(redis_url: &str) -> (Api, String, reqwest::Client) {
    let port = free_port();
    let binary = std::env::current_exe().unwrap().with_file_name("graph-api");
    let child = Command::new(&binary)
        .env("CODEGRAPH__REDIS__URL", redis_url)
        .env("CODEGRAPH__HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("CODEGRAPH__TELEMETRY__LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e} (build it: cargo build --release -p graph-api)", binary.display()));
    let api = Api(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client.get(format!("{base}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "graph-api did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (api, base, client)
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(run: usize, i: usize) -> serde_json::Value {
    json!({"id": format!("py:src/pkg/module_{}.py:Class{}.method_{i}", i % 500, i % 37), "kind": "method",
           "name": format!("method_{i}"), "file": format!("src/pkg/module_{}.py", i % 500),
           "line_start": i % 1000 + 1, "line_end": i % 1000 + 9, "properties": {"run": run}})
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Upserts `nodes` new nodes in batches over `concurrency` connections; returns upserts per second.
async fn http_run(base: &str, project: &str, run: usize, a: &Args) -> f64 {
    let bodies: Vec<Vec<u8>> = (0..a.nodes)
        .collect::<Vec<_>>()
        .chunks(a.batch)
        .map(|ids| {
            let ops: Vec<_> = ids.iter().map(|&i| json!({"op": "upsert_node", "node": node(run, i)})).collect();
            serde_json::to_vec(&json!({ "operations": ops })).unwrap()
        })
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let url = format!("{base}/api/graph/batch?project={project}");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (queue, url) = (queue.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let Some(body) = queue.lock().unwrap().pop() else { break };
                let r = client.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
                assert!(r.status().is_success(), "batch failed: {}", r.text().await.unwrap_or_default());
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    a.nodes as f64 / start.elapsed().as_secs_f64()
}

/// The baseline: the same count of XADD (MAXLEN ~) + PUBLISH pairs, with envelopes of the same size, pipelined
/// in the same batch size over the same number of connections. Returns pairs per second.
async fn raw_run(url: &str, project: &str, run: usize, a: &Args) -> f64 {
    let stream = format!("code_graph:{{{project}}}:baseline");
    let channel = format!("code_graph:{{{project}}}:events");
    let batches: Vec<Vec<String>> = (0..a.nodes)
        .collect::<Vec<_>>()
        .chunks(a.batch)
        .map(|ids| {
            ids.iter()
                .map(|&i| {
                    json!({"project": project, "type": "node_added", "entity": {"kind": "node", "id": format!("n{i}")},
                           "version": 1, "data": node(run, i), "ts": "2026-11-27T00:00:00.000Z"})
                    .to_string()
                })
                .collect()
        })
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let client = redis::Client::open(url).unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (queue, client, stream, channel) = (queue.clone(), client.clone(), stream.clone(), channel.clone());
        tasks.push(tokio::spawn(async move {
            // No response timeout: a pipeline of thousands of commands may take long on a loaded machine.
            let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
            let mut conn = client.get_multiplexed_async_connection_with_config(&config).await.unwrap();
            loop {
                let Some(batch) = queue.lock().unwrap().pop() else { break };
                let mut pipe = redis::pipe();
                for body in &batch {
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(1_000_000)
                        .arg("*")
                        .arg("e")
                        .arg(body)
                        .ignore();
                    pipe.cmd("PUBLISH").arg(&channel).arg(body).ignore();
                }
                pipe.query_async::<()>(&mut conn).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    a.nodes as f64 / start.elapsed().as_secs_f64()
}

/// Total microseconds Redis spent in each command (INFO commandstats).
fn command_usec(redis: &RedisServer) -> std::collections::HashMap<String, f64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut redis.connection()).unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let usec = rest.split(',').find_map(|kv| kv.strip_prefix("usec="))?.parse().ok()?;
            Some((name.to_owned(), usec))
        })
        .collect()
}

async fn latency(base: &str, requests: usize) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let url = format!("{base}/api/graph/nodes?project=latency");
    let mut samples = Vec::with_capacity(requests);
    for i in 0..requests {
        let body = serde_json::to_vec(&node(0, i)).unwrap();
        let start = Instant::now();
        let r = client.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
        assert_eq!(r.status(), 201);
        r.bytes().await.unwrap();
        samples.push(start.elapsed());
    }
    samples.sort();
    samples
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("intel") {
        return intel::main().await;
    }
    let a = parse_args();
    let redis = RedisServer::start();
    let (_api, base, _) = start_api(&redis.url()).await;

    println!(
        "graph-api bench: {} node upserts per run, batches of {}, {} connections, {} runs",
        a.nodes, a.batch, a.concurrency, a.runs
    );
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for run in 0..a.runs {
        // Alternate the order so neither side always runs on a warmer (or fuller) Redis.
        let (h, r) = if run % 2 == 0 {
            let h = http_run(&base, &format!("bench{run}"), run, &a).await;
            (h, raw_run(&redis.url(), &format!("raw{run}"), run, &a).await)
        } else {
            let r = raw_run(&redis.url(), &format!("raw{run}"), run, &a).await;
            (http_run(&base, &format!("bench{run}"), run, &a).await, r)
        };
        println!("run {run}: graph-api {h:>9.0} upserts/s   raw XADD+PUBLISH {r:>9.0} pairs/s   ratio {:.2}", h / r);
        ours.push(h);
        raw.push(r);
    }
    let (h, r) = (median(ours), median(raw));
    println!("median: graph-api {h:.0} upserts/s, raw baseline {r:.0} pairs/s, ratio {:.2}", h / r);
    // Redis's own CPU time per operation: less sensitive to a noisy machine than wall-clock rates.
    let stats = command_usec(&redis);
    let total = (a.nodes * a.runs) as f64;
    let fcall = stats.get("fcall").copied().unwrap_or(0.0) / total;
    let pair = (stats.get("xadd").copied().unwrap_or(0.0) + stats.get("publish").copied().unwrap_or(0.0)) / total;
    println!(
        "redis CPU per node upsert (FCALL) {fcall:.2} us, per raw XADD+PUBLISH pair {pair:.2} us, ratio {:.2}",
        pair / fcall
    );

    let samples = latency(&base, a.latency_requests).await;
    println!(
        "single POST /api/graph/nodes latency over {} requests: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}
