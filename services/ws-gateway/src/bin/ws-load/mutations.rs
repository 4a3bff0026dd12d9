//! `ws-load mutations`: the Redis side of the scale-out on a Redis Cluster (issue 13). Writers call `cg_mutate`
//! (one node update per call, what graph-api sends for a single mutation, its event published in the same call)
//! into `projects` projects for `seconds`, on one Redis, on a cluster of 1 primary and on a cluster of 3 primaries
//! (the projects spread evenly over them); the three run in turn, `runs` times, so that a drift of the machine hits
//! each alike. Each run reports mutations per second, the Redis CPU (`used_cpu_sys` + `used_cpu_user` of every
//! primary, read before and after) per mutation, and each primary's share; medians follow.

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use codegraph_shared::{functions::GraphWriter, names::RedisNames, project::ProjectName};

use crate::{label, node_update, Store};

/// Node ids per project: updates cycle over them.
const NODES: u64 = 1000;

struct Run {
    label: String,
    mutations: u64,
    secs: f64,
    /// CPU seconds of each primary over the run.
    cpu: Vec<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.mutations as f64 / self.secs
    }

    /// Redis CPU per mutation, µs (all primaries).
    fn cpu_per_mutation(&self) -> f64 {
        self.cpu.iter().sum::<f64>() * 1e6 / self.mutations.max(1) as f64
    }

    /// The busiest primary's CPU over the mean of all.
    fn imbalance(&self) -> f64 {
        let mean = self.cpu.iter().sum::<f64>() / self.cpu.len() as f64;
        self.cpu.iter().copied().fold(0.0, f64::max) / mean.max(1e-9)
    }
}

/// CPU seconds a node has used (system + user, all its threads).
pub(crate) fn cpu_seconds(port: u16) -> f64 {
    let (user, sys) = cpu_split(port);
    user + sys
}

/// CPU seconds a node has used: user, system (all its threads).
pub(crate) fn cpu_split(port: u16) -> (f64, f64) {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection())
        .expect("a connection to a node");
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut conn).expect("INFO cpu");
    let field = |name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).and_then(|v| v.trim().parse::<f64>().ok())
    };
    (field("used_cpu_user").unwrap_or(0.0), field("used_cpu_sys").unwrap_or(0.0))
}

async fn one_run(primaries: usize, projects: usize, writers: usize, seconds: u64) -> Run {
    let store = tokio::task::block_in_place(|| Store::start(primaries));
    let names: Vec<String> = match &store {
        Store::Cluster(c) if primaries > 1 => {
            let per = projects.div_ceil(primaries);
            c.project_names_per_primary("bench", per).into_iter().flat_map(|(_, n)| n).take(projects).collect()
        }
        _ => (0..projects).map(|i| format!("bench-{i}")).collect(),
    };
    let handle = store.handle();
    let graph_writers: Arc<Vec<GraphWriter>> = Arc::new(
        names
            .iter()
            .map(|p| GraphWriter::new(RedisNames::new(&ProjectName::parse(p).unwrap()), 0, handle.publish_mode()))
            .collect(),
    );
    // Warm up: the library is loaded and every project has its keys.
    let mut conn = handle.conn();
    for w in graph_writers.iter() {
        w.mutate(&mut conn, &[node_update(0, 0, None)], None).await.expect("a mutation");
    }
    let ports = store.primary_ports();
    let before: Vec<f64> = tokio::task::block_in_place(|| ports.iter().map(|&p| cpu_seconds(p)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (stop, done, graph_writers, mut conn) =
                (stop.clone(), done.clone(), graph_writers.clone(), handle.conn());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let writer = &graph_writers[(w + i as usize) % graph_writers.len()];
                    let op = node_update((i % NODES) as usize, i, None);
                    writer.mutate(&mut conn, &[op], None).await.expect("a mutation");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a writer");
    }
    let secs = started.elapsed().as_secs_f64();
    let after: Vec<f64> = tokio::task::block_in_place(|| ports.iter().map(|&p| cpu_seconds(p)).collect());
    let cpu = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    Run { label: label(&store), mutations: done.load(Ordering::Relaxed), secs, cpu }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub async fn run(projects: usize, writers: usize, seconds: u64, runs: usize) {
    println!(
        "## mutations: {writers} writers, cg_mutate of one node update into {projects} projects, {seconds} s per run, \
         {runs} runs interleaved"
    );
    println!("| run | topology | mutations | mutations/s | Redis CPU µs/mutation | CPU s per primary | busiest/mean |");
    println!("| --- | --- | ---: | ---: | ---: | --- | ---: |");
    let topologies = [0usize, 1, 3];
    let mut results: Vec<Vec<Run>> = topologies.iter().map(|_| Vec::new()).collect();
    for r in 0..runs {
        for (k, &primaries) in topologies.iter().enumerate() {
            let run = one_run(primaries, projects, writers, seconds).await;
            let mut per = String::new();
            for c in &run.cpu {
                let _ = write!(per, "{c:.2} ");
            }
            println!(
                "| {r} | {} | {} | {:.0} | {:.1} | {} | {:.2} |",
                run.label,
                run.mutations,
                run.rate(),
                run.cpu_per_mutation(),
                per.trim_end(),
                run.imbalance()
            );
            results[k].push(run);
        }
    }
    println!("\nmedians:");
    println!("| topology | mutations/s | Redis CPU µs/mutation | vs one Redis | busiest/mean primary |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let base = median(results[0].iter().map(Run::cpu_per_mutation).collect());
    for runs in &results {
        let cpu = median(runs.iter().map(Run::cpu_per_mutation).collect());
        println!(
            "| {} | {:.0} | {:.1} | {:.2} | {:.2} |",
            runs[0].label,
            median(runs.iter().map(Run::rate).collect()),
            cpu,
            cpu / base,
            median(runs.iter().map(Run::imbalance).collect())
        );
    }
}
