//! The worker binary as a service against a real redis-server: jobs from `code_graph:jobs`, progress events in
//! order with growing counts, cancel within a second with a consistent graph, a killed worker's job taken over
//! by another, a path outside the allowed roots refused (every path when none is configured, even the working
//! directory), `analyze --path` allowed without roots, and finished job records given a time to live.

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::{decode_entry, CdcEvent, EventType},
    names::{RedisNames, JOBS_CANCEL_CHANNEL, JOBS_STREAM},
    project::ProjectName,
    testing::{free_port, wait_for_port, RedisServer},
};

struct Worker {
    child: Child,
}

impl Worker {
    /// A worker whose allowed root is `root`.
    fn start(redis: &RedisServer, root: &std::path::Path) -> Self {
        Self::start_with(redis, root, &[("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS", &root.display().to_string())])
    }

    /// A worker with `env` on top of the test defaults (no allowed root unless `env` names one); `dir` holds
    /// no config file, so only the environment configures it.
    fn start_with(redis: &RedisServer, dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_analysis-worker"))
            .env("CODEGRAPH__REDIS__URL", redis.url())
            .env("CODEGRAPH__HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env("CODEGRAPH__ANALYSIS__CLAIM_IDLE_MS", "1000")
            .env("CODEGRAPH__ANALYSIS__PROGRESS_INTERVAL_MS", "20")
            .env("CODEGRAPH_CONFIG_DIR", dir.join("no-config"))
            .env_remove("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start analysis-worker");
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(20));
        Self { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Python project of `files` files that call each other.
fn project_tree(root: &std::path::Path, name: &str, files: usize) -> std::path::PathBuf {
    let dir = root.join(name);
    for i in 0..files {
        let pkg = dir.join(format!("pkg{}", i % 20));
        std::fs::create_dir_all(&pkg).unwrap();
        let mut text = format!("from pkg{}.m{} import f0 as prev\n\n", (i + 19) % 20, i.saturating_sub(1));
        for c in 0..4 {
            text.push_str(&format!("class C{c}:\n    def run(self):\n        return self.step()\n    def step(self):\n        return prev()\n\n"));
        }
        for f in 0..6 {
            text.push_str(&format!("def f{f}():\n    return len(str({f}))\n\n"));
        }
        std::fs::write(pkg.join(format!("m{i}.py")), text).unwrap();
    }
    dir
}

fn enqueue(conn: &mut redis::Connection, job_id: &str, project: &str, path: &std::path::Path) {
    redis::cmd("HSET")
        .arg(RedisNames::new(&ProjectName::parse(project).unwrap()).job(job_id))
        .arg("status")
        .arg("queued")
        .query::<i64>(conn)
        .unwrap();
    redis::cmd("XADD")
        .arg(JOBS_STREAM)
        .arg("*")
        .arg("job_id")
        .arg(job_id)
        .arg("project")
        .arg(project)
        .arg("path")
        .arg(path.display().to_string())
        .arg("mode")
        .arg("full")
        .query::<String>(conn)
        .unwrap();
}

fn events(conn: &mut redis::Connection, project: &str) -> Vec<CdcEvent> {
    let stream = RedisNames::new(&ProjectName::parse(project).unwrap()).cdc_stream();
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(conn).unwrap();
    reply.ids.iter().flat_map(|e| decode_entry(&e.id, &e.get::<String>("e").unwrap()).unwrap()).collect()
}

fn job_events(conn: &mut redis::Connection, project: &str, job_id: &str) -> Vec<CdcEvent> {
    events(conn, project).into_iter().filter(|e| e.entity.kind == "job" && e.entity.id == job_id).collect()
}

/// Waits until the job has an event of type `t`.
fn wait_for(
    conn: &mut redis::Connection,
    project: &str,
    job_id: &str,
    t: EventType,
    deadline: Duration,
) -> Vec<CdcEvent> {
    let start = Instant::now();
    loop {
        let evs = job_events(conn, project, job_id);
        if evs.iter().any(|e| e.event_type == t) {
            return evs;
        }
        assert!(
            start.elapsed() < deadline,
            "no {} for {job_id} after {deadline:?}: {:?}",
            t.as_str(),
            evs.iter().map(|e| e.event_type).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_consistent(conn: &mut redis::Connection, project: &str) {
    let names = RedisNames::new(&ProjectName::parse(project).unwrap());
    let nodes: BTreeSet<String> =
        redis::cmd("HKEYS").arg(names.nodes()).query::<Vec<String>>(conn).unwrap().into_iter().collect();
    for r in redis::cmd("HVALS").arg(names.relationships()).query::<Vec<String>>(conn).unwrap() {
        let r: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert!(nodes.contains(r["source"].as_str().unwrap()) && nodes.contains(r["target"].as_str().unwrap()), "{r}");
    }
}

#[test]
fn progress_arrives_in_order_with_growing_counts() {
    let redis = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    let path = project_tree(root.path(), "small", 400);
    let _worker = Worker::start(&redis, root.path());
    let mut conn = redis.connection();
    enqueue(&mut conn, "job-progress", "prog", &path);
    let evs = wait_for(&mut conn, "prog", "job-progress", EventType::AnalysisCompleted, Duration::from_secs(120));
    assert_eq!(evs.first().unwrap().event_type, EventType::AnalysisStarted);
    assert_eq!(evs.first().unwrap().data["total_files"], 400);
    assert_eq!(evs.first().unwrap().data["languages"]["python"], 400);
    assert_eq!(evs.last().unwrap().event_type, EventType::AnalysisCompleted);
    let progress: Vec<&CdcEvent> = evs.iter().filter(|e| e.event_type == EventType::AnalysisProgress).collect();
    assert!(progress.len() >= 2, "only {} progress events", progress.len());
    let mut last = (0, 0);
    for p in &progress {
        let now = (p.data["files_done"].as_u64().unwrap(), p.data["percent"].as_u64().unwrap());
        assert!(now.0 >= last.0 && now.1 >= last.1, "counts went back: {last:?} → {now:?}");
        assert_eq!(p.data["total_files"], 400);
        last = now;
    }
    // At most ~10 per second of job time (here the interval is 20 ms: at most ~50 per second).
    let done = &evs.last().unwrap().data;
    assert_eq!(done["files"], 400);
    assert_eq!(done["errors"], 0);
    let secs = done["duration_ms"].as_f64().unwrap() / 1000.0;
    assert!(progress.len() as f64 <= secs * 50.0 + 2.0, "{} progress events in {secs}s", progress.len());
    let nodes = done["nodes"].as_u64().unwrap();
    assert_eq!(nodes, 400 * (1 + 4 * 3 + 6) + 21, "files, classes, methods, functions and directories");
    assert_consistent(&mut conn, "prog");
    let status: String = redis::cmd("HGET")
        .arg(RedisNames::new(&ProjectName::parse("prog").unwrap()).job("job-progress"))
        .arg("status")
        .query(&mut conn)
        .unwrap();
    assert_eq!(status, "completed");
}

#[test]
fn a_cancel_stops_the_job_within_a_second_and_leaves_the_graph_consistent() {
    let redis = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    let path = project_tree(root.path(), "big", 3000);
    let _worker = Worker::start(&redis, root.path());
    let mut conn = redis.connection();
    enqueue(&mut conn, "job-cancel", "cancel", &path);
    wait_for(&mut conn, "cancel", "job-cancel", EventType::AnalysisProgress, Duration::from_secs(60));
    let key = RedisNames::new(&ProjectName::parse("cancel").unwrap()).job("job-cancel");
    redis::cmd("HSET").arg(&key).arg("cancel_requested").arg("1").query::<i64>(&mut conn).unwrap();
    redis::cmd("PUBLISH").arg(JOBS_CANCEL_CHANNEL).arg("job-cancel").query::<i64>(&mut conn).unwrap();
    let asked = Instant::now();
    let evs = wait_for(&mut conn, "cancel", "job-cancel", EventType::AnalysisCancelled, Duration::from_secs(5));
    assert!(asked.elapsed() < Duration::from_millis(1500), "cancelled after {:?}", asked.elapsed());
    assert!(!evs.iter().any(|e| e.event_type == EventType::AnalysisCompleted));
    assert_consistent(&mut conn, "cancel");
    let status: String = redis::cmd("HGET").arg(&key).arg("status").query(&mut conn).unwrap();
    assert_eq!(status, "cancelled");
}

#[test]
fn a_killed_workers_job_is_taken_over_by_another() {
    let redis = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    let path = project_tree(root.path(), "big", 3000);
    let mut first = Worker::start(&redis, root.path());
    let mut conn = redis.connection();
    enqueue(&mut conn, "job-kill", "kill", &path);
    wait_for(&mut conn, "kill", "job-kill", EventType::AnalysisStarted, Duration::from_secs(60));
    first.kill();
    let _second = Worker::start(&redis, root.path());
    let evs = wait_for(&mut conn, "kill", "job-kill", EventType::AnalysisCompleted, Duration::from_secs(180));
    let starts = evs.iter().filter(|e| e.event_type == EventType::AnalysisStarted).count();
    assert_eq!(starts, 2, "started by the first worker, then again by the second");
    assert_eq!(evs.last().unwrap().data["files"], 3000);
    assert_consistent(&mut conn, "kill");
    let pending: redis::Value =
        redis::cmd("XPENDING").arg(JOBS_STREAM).arg("analysis-workers").query(&mut conn).unwrap();
    assert!(matches!(&pending, redis::Value::Array(a) if a.first() == Some(&redis::Value::Int(0))), "{pending:?}");
}

#[test]
fn a_path_outside_the_allowed_roots_fails_clearly() {
    let redis = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let _worker = Worker::start(&redis, root.path());
    let mut conn = redis.connection();
    enqueue(&mut conn, "job-outside", "outside", elsewhere.path());
    let evs = wait_for(&mut conn, "outside", "job-outside", EventType::AnalysisFailed, Duration::from_secs(30));
    let error = evs.last().unwrap().data["error"].as_str().unwrap().to_owned();
    assert!(error.contains("outside the allowed roots"), "{error}");
    assert!(events(&mut conn, "outside").iter().all(|e| e.entity.kind == "job"));
}

#[test]
fn with_no_allowed_roots_configured_every_queued_job_is_refused() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = project_tree(dir.path(), "here", 3);
    // Not even the worker's working directory (the old default) is allowed.
    let _worker = Worker::start_with(&redis, dir.path(), &[]);
    let mut conn = redis.connection();
    enqueue(&mut conn, "job-none", "none", &path);
    let evs = wait_for(&mut conn, "none", "job-none", EventType::AnalysisFailed, Duration::from_secs(30));
    let error = evs.last().unwrap().data["error"].as_str().unwrap().to_owned();
    assert!(error.contains("outside the allowed roots (none configured)"), "{error}");
    assert!(error.contains("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS"), "{error}");
    let names = RedisNames::new(&ProjectName::parse("none").unwrap());
    let status: String = redis::cmd("HGET").arg(names.job("job-none")).arg("status").query(&mut conn).unwrap();
    assert_eq!(status, "failed");
    assert!(events(&mut conn, "none").iter().all(|e| e.entity.kind == "job"), "a refused job wrote the graph");
}

#[test]
fn the_command_line_may_analyse_its_own_path_without_configured_roots() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = project_tree(dir.path(), "mine", 5);
    let out = Command::new(env!("CARGO_BIN_EXE_analysis-worker"))
        .args(["analyze", "--project", "cli", "--path"])
        .arg(&path)
        .env("CODEGRAPH__REDIS__URL", redis.url())
        .env("CODEGRAPH__ANALYSIS__JOB_TTL_SECS", "600")
        .env("CODEGRAPH_CONFIG_DIR", dir.path().join("no-config"))
        .env_remove("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS")
        .output()
        .expect("run analysis-worker analyze");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut conn = redis.connection();
    let names = RedisNames::new(&ProjectName::parse("cli").unwrap());
    let nodes: usize = redis::cmd("HLEN").arg(names.nodes()).query(&mut conn).unwrap();
    assert!(nodes > 5, "the folder was not analysed: {nodes} nodes");
    // Its job record expires like any other finished job.
    let jobs: Vec<String> = redis::cmd("KEYS").arg(names.job("cli-*")).query(&mut conn).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let ttl: i64 = redis::cmd("TTL").arg(&jobs[0]).query(&mut conn).unwrap();
    assert!((1..=600).contains(&ttl), "ttl {ttl}");
}

#[test]
fn a_finished_job_record_expires_and_a_running_one_does_not() {
    let redis = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    let path = project_tree(root.path(), "ttl", 1500);
    let roots = root.path().display().to_string();
    let _worker = Worker::start_with(
        &redis,
        root.path(),
        &[("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS", &roots), ("CODEGRAPH__ANALYSIS__JOB_TTL_SECS", "1000")],
    );
    let mut conn = redis.connection();
    let key = RedisNames::new(&ProjectName::parse("ttl").unwrap()).job("job-ttl");
    enqueue(&mut conn, "job-ttl", "ttl", &path);
    // Queued: no time to live.
    assert_eq!(redis::cmd("TTL").arg(&key).query::<i64>(&mut conn).unwrap(), -1);
    wait_for(&mut conn, "ttl", "job-ttl", EventType::AnalysisStarted, Duration::from_secs(60));
    let (status, ttl): (String, i64) =
        redis::pipe().atomic().hget(&key, "status").cmd("TTL").arg(&key).query(&mut conn).unwrap();
    if status == "running" {
        assert_eq!(ttl, -1, "a running job's record must not expire");
    }
    wait_for(&mut conn, "ttl", "job-ttl", EventType::AnalysisCompleted, Duration::from_secs(120));
    // The TTL is set just after the last event: wait for it, with a deadline.
    let start = Instant::now();
    let ttl = loop {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut conn).unwrap();
        if ttl != -1 || start.elapsed() > Duration::from_secs(10) {
            break ttl;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!((1..=1000).contains(&ttl), "a finished job's record has ttl {ttl}");
    let status: String = redis::cmd("HGET").arg(&key).arg("status").query(&mut conn).unwrap();
    assert_eq!(status, "completed");
}

/// A worker keeps the last job's analyzer for the next job on the same project and folder: a second job on an
/// unchanged folder writes no graph event, and after an edit only the edited file's events follow.
#[test]
fn a_second_job_on_the_same_folder_writes_only_what_changed() {
    let redis = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    let path = project_tree(root.path(), "again", 50);
    let _worker = Worker::start(&redis, root.path());
    let mut conn = redis.connection();
    let graph_events =
        |conn: &mut redis::Connection| events(conn, "again").iter().filter(|e| e.entity.kind != "job").count();
    enqueue(&mut conn, "job-1", "again", &path);
    wait_for(&mut conn, "again", "job-1", EventType::AnalysisCompleted, Duration::from_secs(60));
    let after_first = graph_events(&mut conn);
    assert!(after_first > 50);
    enqueue(&mut conn, "job-2", "again", &path);
    let done = wait_for(&mut conn, "again", "job-2", EventType::AnalysisCompleted, Duration::from_secs(60));
    assert_eq!(graph_events(&mut conn), after_first, "an unchanged folder wrote graph events");
    assert_eq!(done.last().unwrap().data["files"], 50);
    let file = path.join("pkg3/m3.py");
    let text = std::fs::read_to_string(&file).unwrap() + "def added():\n    return f0()\n";
    std::fs::write(&file, text).unwrap();
    enqueue(&mut conn, "job-3", "again", &path);
    wait_for(&mut conn, "again", "job-3", EventType::AnalysisCompleted, Duration::from_secs(60));
    let new: BTreeSet<String> = events(&mut conn, "again")
        .iter()
        .filter(|e| e.entity.kind != "job")
        .skip(after_first)
        .map(|e| format!("{} {}", e.event_type.as_str(), e.entity.id))
        .collect();
    assert_eq!(
        new,
        [
            "node_added py:pkg3/m3.py:added",
            "node_updated file:pkg3/m3.py",
            "relationship_added file:pkg3/m3.py|defines|py:pkg3/m3.py:added",
            "relationship_added py:pkg3/m3.py:added|calls|py:pkg3/m3.py:f0",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    assert_consistent(&mut conn, "again");
}
