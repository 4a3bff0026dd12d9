//! Benchmarks of the analysis-worker, on real corpora and a private redis-server:
//!
//! - `memory <dir>…`: discovery, reading, parsing and resolution in memory (no Redis), median of 7 runs;
//!   prints files/s, lines/s, CPU time per file, the wall time of each step and the call-resolution rate per
//!   language.
//! - `redis <dir>`: end to end into a fresh project on a private redis-server (every CDC event written),
//!   median of 3 runs.
//! - `incremental [files]`: a generated project (default 2,000 files) under watch mode; one file edited at a
//!   time; the time from the write to its `node_added` event in the project's stream, median of 15 edits.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use analysis_worker::{
    analysis::{Analyzer, Hooks},
    discover::discover,
    job::{CancelFlag, JobEnd, JobRunner, JobSpec},
    settings::AnalysisSettings,
    sync::Mode,
};
use codegraph_shared::{
    names::RedisNames, project::ProjectName, redis_handle::RedisHandle, settings::RedisSettings, shutdown::Shutdown,
    testing::RedisServer,
};

#[global_allocator]
static ALLOCATOR: analysis_worker::alloc::Allocator = analysis_worker::alloc::Allocator;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// CPU time (user + system) of this process so far, in seconds: on a shared machine wall time says little.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn memory(dirs: &[PathBuf]) {
    for dir in dirs {
        let (mut times, mut cpus) = (Vec::new(), Vec::new());
        let mut phases: [Vec<f64>; 5] = Default::default();
        let mut last = None;
        for _ in 0..7 {
            let (start, cpu) = (Instant::now(), cpu_seconds());
            let found = discover(dir, 1024 * 1024);
            let discovered = start.elapsed();
            let a = Analyzer::new().run(&found, "bench", &Hooks::none()).expect("not cancelled");
            times.push(start.elapsed().as_secs_f64());
            cpus.push(cpu_seconds() - cpu);
            let t = &a.timings;
            for (v, d) in phases.iter_mut().zip([discovered, t.load, t.parse, t.resolve, t.build]) {
                v.push(d.as_secs_f64() * 1000.0);
            }
            last = Some(a);
        }
        let a = last.unwrap();
        let (t, cpu) = (median(times), median(cpus));
        let r = &a.report;
        println!(
            "memory {}: {} files, {} lines, median {:.3}s → {:.0} files/s, {:.0} lines/s; CPU {:.3}s = {:.2} ms/file \
             ({:.0} files/s per CPU-second); {} nodes, {} relationships",
            dir.display(),
            r.files,
            r.lines,
            t,
            r.files as f64 / t,
            r.lines as f64 / t,
            cpu,
            cpu * 1000.0 / r.files as f64,
            r.files as f64 / cpu,
            a.graph.node_count(),
            a.graph.rel_count()
        );
        let [discover_ms, load_ms, parse_ms, resolve_ms, build_ms] = phases.map(median);
        println!(
            "  wall medians: discover {discover_ms:.0} ms, pick files {load_ms:.0} ms, read+parse+extract \
             {parse_ms:.0} ms, resolve {resolve_ms:.0} ms, build {build_ms:.0} ms"
        );
        for (lang, c) in &r.calls {
            let total = c.resolved + c.unresolved;
            println!(
                "  calls {lang}: {}/{} resolved = {:.1}%",
                c.resolved,
                total,
                100.0 * c.resolved as f64 / total.max(1) as f64
            );
        }
    }
}

/// CPU time redis-server has used so far (`INFO cpu`).
fn redis_cpu_seconds(server: &RedisServer) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut server.connection()).unwrap();
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
        .map(|(_, v)| v.trim().parse::<f64>().unwrap_or(0.0))
        .sum()
}

fn runner(server: &RedisServer, roots: &str) -> JobRunner {
    JobRunner {
        redis: RedisHandle::open(&server.url()).unwrap(),
        redis_settings: RedisSettings { url: server.url(), ..Default::default() },
        settings: AnalysisSettings { allowed_roots: roots.to_owned(), ..Default::default() },
        show_bar: false,
        turns: Default::default(),
    }
}

async fn end_to_end(dir: &Path) {
    let server = RedisServer::start();
    let runner = runner(&server, "/");
    let mut times = Vec::new();
    let mut files = 0;
    for i in 0..3 {
        let spec = JobSpec {
            job_id: format!("bench-{i}"),
            project: ProjectName::parse(&format!("bench{i}")).unwrap(),
            path: dir.to_owned(),
            mode: Mode::Full,
        };
        let (start, cpu, redis_cpu) = (Instant::now(), cpu_seconds(), redis_cpu_seconds(&server));
        let (_, end) = runner.run(&spec, Analyzer::new(), CancelFlag::default()).await;
        times.push(start.elapsed().as_secs_f64());
        let (cpu, redis_cpu) = (cpu_seconds() - cpu, redis_cpu_seconds(&server) - redis_cpu);
        match end {
            JobEnd::Completed(s) => {
                files = s.report.files;
                println!(
                    "  run {i}: {:.3}s (analyse {:.0} ms, plan {:.0} ms, write {:.0} ms), {} mutations, {} graph \
                     events; CPU: worker {cpu:.2}s, redis-server {redis_cpu:.2}s = {:.1} µs per mutation",
                    times[i],
                    s.steps.analyze.as_secs_f64() * 1000.0,
                    s.steps.plan.as_secs_f64() * 1000.0,
                    s.steps.write.as_secs_f64() * 1000.0,
                    s.mutations,
                    s.events,
                    redis_cpu * 1e6 / s.mutations.max(1) as f64
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let t = median(times);
    println!("redis {}: {files} files, median {t:.3}s → {:.0} files/s end to end", dir.display(), files as f64 / t);
}

fn generate(root: &Path, files: usize) {
    for i in 0..files {
        let pkg = root.join(format!("pkg{}", i % 40));
        std::fs::create_dir_all(&pkg).unwrap();
        let mut text = format!("from pkg{}.m{} import f0 as prev\n\n", (i + 39) % 40, i.saturating_sub(1));
        for c in 0..3 {
            text.push_str(&format!("class C{c}:\n    def run(self):\n        return self.step()\n    def step(self):\n        return prev()\n\n"));
        }
        for f in 0..5 {
            text.push_str(&format!("def f{f}(x):\n    return len(str(x)) + {f}\n\n"));
        }
        std::fs::write(pkg.join(format!("m{i}.py")), text).unwrap();
    }
}

async fn incremental(files: usize) {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), files);
    let mut runner = runner(&server, &dir.path().display().to_string());
    runner.settings.debounce_ms = 20;
    let project = ProjectName::parse("inc").unwrap();
    let shutdown = Shutdown::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<JobEnd>();
    let watcher = tokio::spawn(analysis_worker::watch::watch(
        runner.clone(),
        project.clone(),
        dir.path().to_owned(),
        shutdown.clone(),
        move |event| {
            if let analysis_worker::watch::WatchEvent::RunEnded { end, .. } = event {
                let _ = done_tx.send(end.clone());
            }
        },
    ));
    done_rx.recv().await.expect("first analysis");
    let stream = RedisNames::new(&project).cdc_stream();
    let mut conn = server.connection();
    let mut latencies = Vec::new();
    let mut steps: [Vec<f64>; 7] = Default::default();
    for k in 0..15 {
        let last: String = {
            let r: redis::streams::StreamRangeReply =
                redis::cmd("XREVRANGE").arg(&stream).arg("+").arg("-").arg("COUNT").arg(1).query(&mut conn).unwrap();
            r.ids.first().map(|e| e.id.clone()).unwrap_or_else(|| "0-0".into())
        };
        let i = (k * 131) % files;
        let path = dir.path().join(format!("pkg{}/m{i}.py", i % 40));
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("def added{k}():\n    return f0(1)\n"));
        let wanted = format!("py:pkg{}/m{i}.py:added{k}", i % 40);
        let start = Instant::now();
        std::fs::write(&path, text).unwrap();
        let mut from = last;
        'wait: loop {
            let reply: redis::streams::StreamReadReply = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(5000)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&from)
                .query(&mut conn)
                .unwrap();
            assert!(!reply.keys.is_empty(), "no event within 5 s");
            for e in &reply.keys[0].ids {
                from = e.id.clone();
                let body: String = e.get("e").unwrap();
                if body.contains("\"node_added\"") && body.contains(&wanted) {
                    break 'wait;
                }
            }
        }
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        // Let the batch finish before the next edit.
        if let Some(JobEnd::Completed(s)) = done_rx.recv().await {
            let t = &s.steps;
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            for (v, d) in steps.iter_mut().zip([
                t.analyze,
                t.analysis.load,
                t.analysis.parse,
                t.analysis.resolve,
                t.analysis.build,
                t.plan,
                t.write,
            ]) {
                v.push(ms(d));
            }
        }
    }
    shutdown.trigger();
    let _ = watcher.await;
    println!(
        "incremental: {files}-file project, one edited file, save → node_added in the stream: median {:.0} ms (min {:.0}, max {:.0}) over {} edits",
        median(latencies.clone()),
        latencies.iter().cloned().fold(f64::MAX, f64::min),
        latencies.iter().cloned().fold(0.0, f64::max),
        latencies.len()
    );
    let [analyze, load, parse, resolve, build, plan, write] = steps.map(median);
    println!(
        "  per batch (medians): analyse {analyze:.0} ms (discover+read {load:.0}, parse {parse:.0}, resolve \
         {resolve:.0}, build {build:.0}), plan {plan:.0} ms, write {write:.0} ms"
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
    match args.first().map(String::as_str) {
        Some("memory") => memory(&args[1..].iter().map(PathBuf::from).collect::<Vec<_>>()),
        Some("redis") => {
            for d in &args[1..] {
                end_to_end(Path::new(d)).await;
            }
        }
        Some("incremental") => incremental(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(2000)).await,
        _ => {
            eprintln!("usage: analysis-bench memory <dir>… | redis <dir>… | incremental [files]");
            std::process::exit(2);
        }
    }
}
