//! Watching as a service feature, with worker processes against a real redis-server. The watch is requested the
//! way graph-api records it (`code_graph:{p}:watch` and the index `code_graph:watches`): a worker takes it and
//! every saved edit, new file and deletion reaches the graph within a deadline; when the watching worker is
//! killed, the other takes the watch over and first applies the edits made while nobody watched; a watch outlives
//! a restart of its worker; a removed watch stops; a folder that cannot be watched is reported, not fatal; and
//! the same on a Redis Cluster, with two watched projects on different primaries.

use std::{
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::{
    names::{RedisNames, WATCHES_KEY, WATCH_ROOTS_KEY, WATCH_WORKERS_KEY},
    project::ProjectName,
    testing::{free_port, wait_for_port, RedisCluster, RedisServer},
};
use common::START;

mod common;

/// How long a change may take to reach the graph (generous: a loaded 2-core machine; typically well under 1 s).
const DEADLINE: Duration = Duration::from_secs(20);
/// The lease in these tests: a dead worker's watch is taken over after at most this long.
const LEASE_MS: &str = "1500";

struct Worker {
    child: Child,
    port: u16,
}

impl Worker {
    fn start(redis: &RedisServer, root: &Path) -> Self {
        Self::start_on(("CODEGRAPH__REDIS__URL", redis.url()), root)
    }

    /// A worker on the Redis that `redis` (a setting and its value) names.
    fn start_on(redis: (&str, String), root: &Path) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_analysis-worker"))
            .env(redis.0, redis.1)
            .env("CODEGRAPH__HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS", root.display().to_string())
            .env("CODEGRAPH__ANALYSIS__WATCH_LEASE_MS", LEASE_MS)
            .env("CODEGRAPH__ANALYSIS__WATCH_TICK_MS", "200")
            .env("CODEGRAPH__ANALYSIS__DEBOUNCE_MS", "50")
            .env("CODEGRAPH_CONFIG_DIR", root.join("no-config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start analysis-worker");
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(20));
        Self { child, port }
    }

    /// The worker's consumer name, as its `/status` says.
    fn consumer(&self) -> String {
        let status = http_get(self.port, "/status");
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        v["consumer"].as_str().unwrap().to_owned()
    }

    fn terminate(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
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

/// A plain HTTP/1.0 GET: the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

struct Project {
    names: RedisNames,
    conn: Box<dyn redis::ConnectionLike>,
}

impl Project {
    fn new(server: &RedisServer, name: &str) -> Self {
        Self::on(Box::new(server.connection()), name)
    }

    fn on(conn: Box<dyn redis::ConnectionLike>, name: &str) -> Self {
        Self { names: RedisNames::new(&ProjectName::parse(name).unwrap()), conn }
    }

    /// What graph-api's `POST /api/graph/admin/watch` records.
    fn watch(&mut self, path: &Path) {
        let _: () = redis::cmd("HSET")
            .arg(self.names.watch())
            .arg("path")
            .arg(path.display().to_string())
            .arg("requested_ms")
            .arg(1)
            .query(&mut *self.conn)
            .unwrap();
        let _: () =
            redis::cmd("SADD").arg(WATCHES_KEY).arg(self.names.project().as_str()).query(&mut *self.conn).unwrap();
    }

    /// What graph-api's `DELETE` does.
    fn unwatch(&mut self) {
        let _: () =
            redis::cmd("SREM").arg(WATCHES_KEY).arg(self.names.project().as_str()).query(&mut *self.conn).unwrap();
        let _: () =
            redis::cmd("DEL").arg(self.names.watch()).arg(self.names.watch_status()).query(&mut *self.conn).unwrap();
    }

    fn has_node(&mut self, id: &str) -> bool {
        redis::cmd("HEXISTS").arg(self.names.nodes()).arg(id).query(&mut *self.conn).unwrap()
    }

    fn owner(&mut self) -> Option<String> {
        redis::cmd("GET").arg(self.names.watch_owner()).query(&mut *self.conn).unwrap()
    }

    fn status(&mut self) -> HashMap<String, String> {
        redis::cmd("HGETALL").arg(self.names.watch_status()).query(&mut *self.conn).unwrap()
    }

    /// Waits until `check` holds, at most [`DEADLINE`]; how long it took.
    fn wait(&mut self, what: &str, mut check: impl FnMut(&mut Self) -> bool) -> Duration {
        let start = Instant::now();
        while !check(self) {
            assert!(start.elapsed() < DEADLINE, "{what}: not within {DEADLINE:?}; watch status {:?}", self.status());
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// Waits until a worker holds the watch and has caught up (state `watching`); the holder's name.
    fn wait_watching(&mut self) -> String {
        self.wait("a worker watching", |p| {
            let status = p.status();
            p.owner().is_some_and(|o| status.get("worker") == Some(&o))
                && status.get("state").map(String::as_str) == Some("watching")
        });
        self.owner().unwrap()
    }
}

/// Saves like an editor: the new text goes to a file aside, then replaces the old one at once.
fn save(root: &Path, path: &str, text: &str) {
    let target = root.join(path);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let aside = root.join(format!("{path}.swp"));
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(aside, target).unwrap();
}

fn folder() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let repo = root.join("repo");
    for (path, text) in START {
        save(&repo, path, text);
    }
    (dir, root)
}

#[test]
fn a_watched_folder_brings_every_edit_into_the_graph() {
    let server = RedisServer::start();
    let (_dir, root) = folder();
    let repo = root.join("repo");
    let worker = Worker::start(&server, &root);
    let mut p = Project::new(&server, "watched");
    p.watch(&repo);
    // The first run catches up: the whole folder is analysed.
    p.wait("the first analysis", |p| p.has_node("py:lib/util.py:helper"));
    assert_eq!(p.wait_watching(), worker.consumer());

    // An edit, a new file, a deletion: each in the graph within the deadline, and in the status.
    save(&repo, "lib/util.py", "def assist(x):\n    return x\n\ndef other():\n    pass\n");
    let took = p.wait("the rename", |p| p.has_node("py:lib/util.py:assist") && !p.has_node("py:lib/util.py:helper"));
    eprintln!("edit → graph: {took:?}");
    p.wait("the status naming the change", |p| {
        p.status().get("last_change_files").is_some_and(|f| f.contains("lib/util.py"))
    });
    save(&repo, "tools/cli.py", "def run():\n    pass\n");
    p.wait("the new file", |p| p.has_node("py:tools/cli.py:run"));
    std::fs::remove_file(repo.join("tools/cli.py")).unwrap();
    p.wait("the deletion", |p| !p.has_node("py:tools/cli.py:run") && !p.has_node("file:tools/cli.py"));

    // The worker's /status lists the watch it holds.
    let status: serde_json::Value = serde_json::from_str(&http_get(worker.port, "/status")).unwrap();
    let watches = status["watches"].as_array().unwrap();
    assert_eq!(watches.len(), 1, "{status}");
    assert_eq!(watches[0]["project"], "watched");
    assert_eq!(watches[0]["state"], "watching");

    // Stopped: the lease goes, and later edits stay out of the graph.
    p.unwatch();
    p.wait("the lease handed back", |p| p.owner().is_none());
    save(&repo, "late.py", "def late():\n    pass\n");
    save(&repo, "marker/x.py", "def marker():\n    pass\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!p.has_node("py:late.py:late"), "an edit after the watch was stopped reached the graph");
    assert!(p.status().is_empty(), "the stopped watch's status was written again: {:?}", p.status());
}

#[test]
fn when_the_watching_worker_dies_another_takes_over_and_catches_up() {
    let server = RedisServer::start();
    let (_dir, root) = folder();
    let repo = root.join("repo");
    let mut workers = [Worker::start(&server, &root), Worker::start(&server, &root)];
    let mut p = Project::new(&server, "handover");
    p.watch(&repo);
    let holder = p.wait_watching();
    let generation = p.status()["generation"].clone();
    let dying = workers.iter().position(|w| w.consumer() == holder).expect("the holder is one of ours");
    workers[dying].kill();

    // Edits while nobody watches: the killed worker is gone, its lease not yet expired.
    save(&repo, "lib/util.py", "def assist(x):\n    return x\n\ndef other():\n    pass\n");
    save(&repo, "added.py", "def fresh():\n    pass\n");
    std::fs::remove_file(repo.join("app.py")).unwrap();

    let survivor = workers[1 - dying].consumer();
    let took = p.wait("the take-over", |p| p.owner().as_deref() == Some(survivor.as_str()));
    eprintln!("take-over after the kill: {took:?}");
    p.wait("the edits made in between", |p| {
        p.has_node("py:lib/util.py:assist")
            && !p.has_node("py:lib/util.py:helper")
            && p.has_node("py:added.py:fresh")
            && !p.has_node("py:app.py:main")
    });
    assert_eq!(p.wait_watching(), survivor);
    assert_ne!(p.status()["generation"], generation, "a take-over begins a new generation");

    // And the survivor follows new edits.
    save(&repo, "after.py", "def after():\n    pass\n");
    p.wait("an edit after the take-over", |p| p.has_node("py:after.py:after"));
}

#[test]
fn a_watch_outlives_a_restart_of_its_worker() {
    let server = RedisServer::start();
    let (_dir, root) = folder();
    let repo = root.join("repo");
    let mut worker = Worker::start(&server, &root);
    let mut p = Project::new(&server, "restart");
    p.watch(&repo);
    p.wait_watching();
    // A graceful stop hands the lease back at once and takes the worker out of the live ones.
    worker.terminate();
    p.wait("the lease handed back", |p| p.owner().is_none());
    let mut conn = server.connection();
    let live: Vec<String> = redis::cmd("ZRANGE").arg(WATCH_WORKERS_KEY).arg(0).arg(-1).query(&mut conn).unwrap();
    assert!(live.is_empty(), "a stopped worker still counts as live: {live:?}");
    let roots: HashMap<String, String> = redis::cmd("HGETALL").arg(WATCH_ROOTS_KEY).query(&mut conn).unwrap();
    assert!(roots.is_empty(), "a stopped worker still announces roots: {roots:?}");

    save(&repo, "while_down.py", "def down():\n    pass\n");
    let _worker = Worker::start(&server, &root);
    p.wait("the edit made while the worker was down", |p| p.has_node("py:while_down.py:down"));
    p.wait_watching();
}

#[test]
fn a_folder_that_cannot_be_watched_is_reported_and_retried() {
    let server = RedisServer::start();
    let (_dir, root) = folder();
    let _worker = Worker::start(&server, &root);
    let mut p = Project::new(&server, "missing");
    let later = root.join("later");
    p.watch(&later);
    p.wait("the failure reported", |p| {
        let s = p.status();
        s.get("state").map(String::as_str) == Some("failed") && s.get("error").is_some_and(|e| e.contains("later"))
    });
    // Once the folder exists, the watch retries and works.
    save(&later, "x.py", "def x():\n    pass\n");
    p.wait("the folder analysed once it exists", |p| p.has_node("py:x.py:x"));
}

#[test]
fn on_a_redis_cluster_watches_of_projects_on_different_primaries_follow_edits() {
    let cluster = RedisCluster::start(3, 0);
    let (_dir, root) = folder();
    let repo = root.join("repo");
    let other = root.join("other");
    for (path, text) in START {
        save(&other, path, text);
    }
    let _worker = Worker::start_on(("CODEGRAPH__REDIS__CLUSTER_NODES", cluster.seeds()), &root);
    // Projects whose keys live on two different primaries.
    let groups = cluster.project_names_per_primary("w", 1);
    assert_ne!(groups[0].0, groups[1].0);
    let mut watched = Vec::new();
    for (name, folder) in [(&groups[0].1[0], &repo), (&groups[1].1[0], &other)] {
        let mut p = Project::on(Box::new(cluster.cluster_connection()), name);
        p.watch(folder);
        p.wait("the first analysis", |p| p.has_node("py:lib/util.py:helper"));
        p.wait_watching();
        watched.push((p, folder));
    }
    for (p, folder) in &mut watched {
        save(folder, "lib/util.py", "def assist(x):\n    return x\n");
        p.wait("the edit", |p| p.has_node("py:lib/util.py:assist") && !p.has_node("py:lib/util.py:helper"));
    }
}

#[test]
fn a_watch_stopped_during_its_catch_up_cancels_the_run() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let repo = root.join("big");
    // Enough files that the first run lasts well beyond the worker's tick.
    for i in 0..3000 {
        let text = format!("def f{i}():\n    return {i}\n\nclass C{i}:\n    def m(self):\n        return f{i}()\n");
        save(&repo, &format!("pkg{}/m{i}.py", i % 30), &text);
    }
    let _worker = Worker::start(&server, &root);
    let mut p = Project::new(&server, "big");
    p.watch(&repo);
    p.wait("the catch-up under way", |p| {
        p.status().get("state").map(String::as_str) == Some("catching_up") && p.owner().is_some()
    });
    p.unwatch();
    // The run ends cancelled (an analysis_cancelled event), and the lease is handed back.
    let stream = p.names.cdc_stream();
    p.wait("the run cancelled", |p| {
        let entries: Vec<redis::Value> =
            redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query(&mut *p.conn).unwrap();
        format!("{entries:?}").contains("analysis_cancelled")
    });
    p.wait("the lease handed back", |p| p.owner().is_none());
    let files: u64 = redis::cmd("HLEN").arg(p.names.file_hashes()).query(&mut *p.conn).unwrap();
    assert_eq!(files, 0, "a cancelled run records no content hashes");
}
