//! `graph-api-bench intel`: latency of the code-intelligence routes over HTTP on a big analysed project.
//!
//! Analyses a folder (default: this machine's `~/.cargo/registry/src/*`, the sources of every crate cargo
//! fetched) with the analysis-worker binary that sits next to this one, into a redis-server of its own; starts
//! graph-api next to it; then asks `callers`, `context` and `impact` (depth 3) about symbols drawn from the
//! graph's `calls` relationships, one request at a time on one keep-alive connection, and prints p50/p99/max:
//!
//! ```sh
//! cargo build --release -p graph-api --features codegraph-shared/testing && cargo build -p analysis-worker
//! ANALYSIS_WORKER_BIN=target/debug/analysis-worker target/release/graph-api-bench intel [--path DIR] [--requests 2000] [--symbols 500] [--runs 3]
//! ```

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::testing::RedisServer;

use crate::{percentile, start_api};

const PROJECT: &str = "bench";

struct Args {
    path: Option<String>,
    requests: usize,
    symbols: usize,
    runs: usize,
}

fn parse_args() -> Args {
    let mut a = Args { path: None, requests: 2000, symbols: 500, runs: 3 };
    let argv: Vec<String> = std::env::args().skip(2).collect();
    for pair in argv.chunks(2) {
        let value = || pair.get(1).cloned().unwrap_or_else(|| panic!("{} needs a value", pair[0]));
        let number = || value().parse().unwrap_or_else(|_| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--path" => a.path = Some(value()),
            "--requests" => a.requests = number(),
            "--symbols" => a.symbols = number(),
            "--runs" => a.runs = number(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The registry's source folder (`~/.cargo/registry/src/<index>`), the one with the most crates.
fn registry_sources() -> String {
    let home =
        std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").expect("HOME")));
    let src = std::path::Path::new(&home).join("registry/src");
    let best = std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
        .filter_map(|e| e.ok())
        .max_by_key(|e| std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0))
        .expect("no registry index folder");
    best.path().display().to_string()
}

/// Up to `n` ids of nodes that are the target of a `calls` relationship (so callers and impact have work), and
/// as many sources, spread over the relationships hash; and the `n / 10` most called targets (the heavy cases).
fn sample_symbols(redis: &RedisServer, n: usize) -> (Vec<String>, Vec<String>) {
    let mut conn = redis.connection();
    let key = format!("code_graph:{{{PROJECT}}}:rels");
    let total: usize = redis::cmd("HLEN").arg(&key).query(&mut conn).unwrap();
    let step = (total / (n * 4)).max(1);
    let (mut cursor, mut seen, mut out) = (0u64, 0usize, Vec::new());
    let mut called: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    loop {
        let (next, flat): (u64, Vec<String>) =
            redis::cmd("HSCAN").arg(&key).arg(cursor).arg("COUNT").arg(1000).query(&mut conn).unwrap();
        for id in flat.into_iter().step_by(2) {
            seen += 1;
            if let Some((_, target)) = id.split_once("|calls|") {
                *called.entry(target.to_owned()).or_default() += 1;
            }
            if seen % step != 0 {
                continue;
            }
            if let Some((source, target)) = id.split_once("|calls|") {
                out.push(target.to_owned());
                out.push(source.to_owned());
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    out.sort();
    out.dedup();
    out.truncate(n);
    let mut heavy: Vec<(usize, String)> = called.into_iter().map(|(id, c)| (c, id)).collect();
    heavy.sort_by(|a, b| b.cmp(a));
    heavy.truncate((n / 10).max(1));
    println!(
        "heavy symbols: the {} most called, {} to {} callers",
        heavy.len(),
        heavy.last().map_or(0, |h| h.0),
        heavy.first().map_or(0, |h| h.0)
    );
    (out, heavy.into_iter().map(|(_, id)| id).collect())
}

async fn measure(
    client: &reqwest::Client,
    base: &str,
    label: &str,
    route: &str,
    symbols: &[String],
    requests: usize,
) -> Vec<Duration> {
    let url = |s: &str| format!("{base}/api/graph/{route}&project={PROJECT}&symbol={}", urlencode(s));
    // Warm up: every symbol once (pages in Redis, the connection, the allocator).
    for s in symbols {
        client.get(url(s)).send().await.unwrap().bytes().await.unwrap();
    }
    let mut samples = Vec::with_capacity(requests);
    let (mut bytes, mut with_source) = (0usize, 0usize);
    for i in 0..requests {
        let u = url(&symbols[i % symbols.len()]);
        let start = Instant::now();
        let r = client.get(u).send().await.unwrap();
        let status = r.status();
        let body = r.bytes().await.unwrap();
        samples.push(start.elapsed());
        assert!(status.is_success(), "{route}: {status} {}", String::from_utf8_lossy(&body));
        bytes += body.len();
        with_source += usize::from(memchr_source(&body));
    }
    samples.sort();
    println!(
        "{label:<28} {requests} requests: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (mean answer {} bytes{})",
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        bytes / requests.max(1),
        if label.starts_with("context") { format!(", {with_source} with source text") } else { String::new() }
    );
    samples
}

/// Whether a context answer carries source text.
fn memchr_source(body: &[u8]) -> bool {
    body.windows(17).any(|w| w == br#""source":{"text":"#)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn main() {
    let a = parse_args();
    let path = a.path.clone().unwrap_or_else(registry_sources);
    let redis = RedisServer::start();
    // The worker only builds the graph: a debug one will do (`$ANALYSIS_WORKER_BIN`).
    let worker = std::env::var_os("ANALYSIS_WORKER_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().unwrap().with_file_name("analysis-worker"));
    println!("analysing {path} with {} …", worker.display());
    let started = Instant::now();
    let out = Command::new(&worker)
        .args(["analyze", "--project", PROJECT, "--path", &path])
        .env("CODEGRAPH__REDIS__URL", redis.url())
        .env("CODEGRAPH__TELEMETRY__LOG_LEVEL", "error")
        .env("CODEGRAPH_CONFIG_DIR", redis.dir().join("no-config"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| {
            panic!("run {}: {e} (build it: cargo build --release -p analysis-worker)", worker.display())
        });
    assert!(out.status.success(), "analysis failed");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!("analysed in {:.1} s", started.elapsed().as_secs_f64());
    let nodes: u64 =
        redis::cmd("HLEN").arg(format!("code_graph:{{{PROJECT}}}:nodes")).query(&mut redis.connection()).unwrap();
    let rels: u64 =
        redis::cmd("HLEN").arg(format!("code_graph:{{{PROJECT}}}:rels")).query(&mut redis.connection()).unwrap();
    println!("project {PROJECT}: {nodes} nodes, {rels} relationships");

    let (_api, base, client) = start_api(&redis.url()).await;
    let (symbols, heavy) = sample_symbols(&redis, a.symbols);
    println!("{} symbols (ends of calls relationships), one request at a time", symbols.len());
    for run in 1..=a.runs {
        println!("run {run}:");
        measure(&client, &base, "callers?depth=1", "callers?depth=1", &symbols, a.requests).await;
        measure(&client, &base, "context?source=true", "context?source=true", &symbols, a.requests).await;
        measure(&client, &base, "impact?depth=3", "impact?depth=3", &symbols, a.requests).await;
        measure(&client, &base, "callees?depth=1", "callees?depth=1", &symbols, a.requests).await;
        measure(&client, &base, "callers?depth=1 (heavy)", "callers?depth=1", &heavy, a.requests / 4).await;
        measure(&client, &base, "impact?depth=3 (heavy)", "impact?depth=3", &heavy, a.requests / 4).await;
        measure(&client, &base, "context?source=true (heavy)", "context?source=true", &heavy, a.requests / 4).await;
    }
}
