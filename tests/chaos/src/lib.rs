//! The chaos suite's harness: the whole system on real processes (Redis with AOF, two FalkorDB servers holding
//! the FalkorDB sink and — over FalkorDB's Bolt port — the Memgraph sink, graph-api, three ws-gateways behind
//! nginx, two stream-consumers, the analysis-worker), a steady load (mutations through graph-api, an analysis
//! job, 200 resuming WebSocket clients), and one fault at a time ([`Fault`]). After each fault the harness
//! measures recovery, stops the load, waits for quiescence and checks every client against the stream, the stream
//! against the Redis graph and every sink against the Redis graph ([`Row`]). A stream entry is a change set (or a
//! single event): every count is of changes, each named by entry id and index ([`clients::ChangeId`]).
//! `CHAOS_LONG=1` selects the longer [`Plan`].
//! Compiled only with the `testing` feature, which the suite's tests enable.
#![cfg(feature = "testing")]

pub mod clients;
pub mod load;

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::{Change, ChangeSet, EventType, StreamId, STREAM_FIELD},
    graph::{Node, Relationship},
    names::RedisNames,
    project::ProjectName,
    stream::now_ms,
    testing::{start_falkordb, wait_for_port, Balancer, RedisServer},
};
use serde_json::{json, Value};
use stream_consumer::{
    sinks::{
        falkordb::{query::NODE_LABEL, FalkorClient},
        mapping::{edge_props, node_props, props_json},
        memgraph::{MemgraphSettings, MemgraphSink},
    },
    test_support::{dump_falkordb, dump_memgraph, expected_from_redis, falkordb_with_bolt, GraphDump},
};
use system_tests::{proxy::TcpProxy, Service};
use tokio::sync::watch;

use crate::{
    clients::{ChangeId, Client, Pace},
    load::{send_retrying, MutationLoad},
};

/// The project of the mutation load, watched by most clients.
pub const PROJECT: &str = "chaos";
/// The project the analysis job writes.
pub const REPO_PROJECT: &str = "repo";
/// The project of the slow client's burst.
pub const SLOW_PROJECT: &str = "slow";
const PROJECTS: [&str; 3] = [PROJECT, REPO_PROJECT, SLOW_PROJECT];
/// WebSocket clients through nginx; `REPO_CLIENTS` of them watch the analysed project.
pub const CLIENTS: usize = 200;
const REPO_CLIENTS: usize = 20;
/// Lease and claim of the stream-consumers: short, so a paused owner is overtaken within the test.
const LEASE_MS: u64 = 1500;
/// Files of the analysed repository; a job that changes all of them runs long enough to be killed mid-way.
const REPO_FILES: usize = 150;
/// Longest wait for any condition (recovery, quiescence, a restart).
const DEADLINE: Duration = Duration::from_secs(60);

/// How much chaos: the short plan runs in `make test`, the long one with `CHAOS_LONG=1`.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Rounds of every single fault.
    pub rounds: usize,
    /// Rounds of the mixed fault (all at once) after the single ones.
    pub mixed_rounds: usize,
    /// Mutations per second through graph-api.
    pub rate: u64,
    /// Mutations before a fault is injected, and again after the system recovered.
    pub load_before: u64,
    pub load_after: u64,
    /// How long a paused gateway stays paused, and how long the gateway↔Redis link stays cut.
    pub pause: Duration,
    pub cut: Duration,
}

impl Plan {
    pub fn from_env() -> Self {
        if std::env::var_os("CHAOS_LONG").is_some_and(|v| !v.is_empty() && v != "0") {
            Self {
                rounds: 3,
                mixed_rounds: 5,
                rate: 80,
                load_before: 400,
                load_after: 400,
                pause: Duration::from_secs(5),
                cut: Duration::from_secs(5),
            }
        } else {
            Self {
                rounds: 1,
                mixed_rounds: 1,
                rate: 40,
                load_before: 40,
                load_after: 40,
                pause: Duration::from_secs(2),
                cut: Duration::from_secs(2),
            }
        }
    }
}

/// One fault, injected while the load runs, then healed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    KillGraphApi,
    KillGateway,
    KillConsumer,
    KillWorker,
    PauseGateway,
    CutGatewayRedis,
    RestartRedis,
    SlowClient,
    ReconnectStorm,
    /// SIGSTOP of a consumer for three leases: another takes its projects over, then it continues.
    PauseConsumer,
    /// Both FalkorDB servers restarted without their data: the sinks must be rebuilt.
    RestartFalkorDb,
    /// A gateway killed, the gateway↔Redis link cut, a consumer paused past its lease, graph-api and the worker
    /// killed mid-job — all at once, then healed.
    Mixed,
}

impl Fault {
    /// Every single fault, in the order of a round (the ones that exercise the sinks' recovery last, so a sink
    /// they break does not hide what the others do).
    pub const SINGLE: [Fault; 11] = [
        Fault::KillGraphApi,
        Fault::KillGateway,
        Fault::KillConsumer,
        Fault::KillWorker,
        Fault::PauseGateway,
        Fault::CutGatewayRedis,
        Fault::RestartRedis,
        Fault::SlowClient,
        Fault::ReconnectStorm,
        Fault::PauseConsumer,
        Fault::RestartFalkorDb,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Fault::KillGraphApi => "SIGKILL graph-api",
            Fault::KillGateway => "SIGKILL a ws-gateway",
            Fault::KillConsumer => "SIGKILL a stream-consumer",
            Fault::KillWorker => "SIGKILL analysis-worker mid-job",
            Fault::PauseGateway => "SIGSTOP/SIGCONT a ws-gateway",
            Fault::CutGatewayRedis => "gateways↔Redis link cut",
            Fault::RestartRedis => "Redis SIGKILL + restart (AOF)",
            Fault::SlowClient => "slow WebSocket client (4008)",
            Fault::ReconnectStorm => "reconnect storm (all clients)",
            Fault::PauseConsumer => "SIGSTOP a consumer past its lease",
            Fault::RestartFalkorDb => "FalkorDB restart without data",
            Fault::Mixed => "mixed: all of the above at once",
        }
    }
}

/// The outcome of one fault: a line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub fault: Fault,
    /// Changes written between the injection and the recovery (they crossed the faulty or recovering system).
    pub in_flight: u64,
    /// Changes of the phase some client never got (summed over clients).
    pub lost: u64,
    /// Changes some client received again and dropped by entry id and index (summed over clients).
    pub duplicated: u64,
    /// Changes received after a later one (summed over clients).
    pub out_of_order: u64,
    /// Entities (nodes, relationships) on which a sink differs from the Redis graph after quiescence.
    pub sink_diffs: u64,
    /// From the injection until an event written after the heal reached every client and both sinks.
    pub recovered_in: Option<Duration>,
    /// Every failed check, in words.
    pub problems: Vec<String>,
}

/// The table of a run, as printed and as recorded in docs/RELIABILITY.md.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| fault | events in flight | lost | duplicated | out of order | sink diffs | time to recover |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rows {
        let recover = r.recovered_in.map_or("not recovered".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.fault.label(),
            r.in_flight,
            r.lost,
            r.duplicated,
            r.out_of_order,
            r.sink_diffs,
            recover
        );
    }
    out
}

/// A stream position at the current time: every entry added later has a greater id (Redis ids are
/// `<ms>-<seq>` from the same clock).
fn mark() -> StreamId {
    StreamId::new(now_ms(), 0)
}

fn names(project: &str) -> RedisNames {
    RedisNames::new(&ProjectName::parse(project).expect("a valid project name"))
}

/// Writes the repository the analysis job reads: `REPO_FILES` Python modules, each with a class, a method and a
/// call, plus `extra` generated functions in the first `changed` files (so a job has that much to change).
fn write_repo(root: &Path, round: u64, changed: usize) {
    for i in 0..REPO_FILES {
        let path = root.join(format!("pkg/m{i}.py"));
        let mut text = format!(
            "from pkg.m{next} import C{next}\n\nclass C{i}:\n    def run(self):\n        return helper{i}()\n\ndef helper{i}():\n    return {i}\n",
            next = (i + 1) % REPO_FILES
        );
        if i < changed {
            let _ = write!(text, "\ndef round{round}_{i}():\n    return helper{i}()\n");
        }
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the package");
        std::fs::write(path, text).expect("write a module");
    }
}

/// Every process of the system, the clients, and what the suite needs to drive them.
pub struct Cluster {
    pub plan: Plan,
    redis: RedisServer,
    proxy: TcpProxy,
    falkor: RedisServer,
    bolt: RedisServer,
    bolt_port: u16,
    api: Service,
    gateways: Vec<Service>,
    _balancer: Balancer,
    consumers: Vec<Service>,
    worker: Service,
    repo: tempfile::TempDir,
    _config_dir: tempfile::TempDir,
    clients: Vec<Client>,
    storm: watch::Sender<u64>,
    http: reqwest::Client,
    round: u64,
}

impl Cluster {
    pub async fn start(plan: Plan) -> Self {
        // Redis keeps an append-only file, so a restart brings back every acknowledged write.
        let redis = RedisServer::start_with(&redis_binary(), &["--appendonly", "yes"]);
        let proxy = TcpProxy::start(redis.addr()).await;
        // Neither FalkorDB keeps a file: a restart loses the sink's data, as in the dev manifests.
        let falkor = start_falkordb(&["--appendonly", "no"]);
        let (bolt, bolt_port) = falkordb_with_bolt();
        let config_dir = tempfile::tempdir().expect("a temporary directory");
        let config = config_dir.path().to_string_lossy().into_owned();
        let repo = tempfile::tempdir().expect("a temporary directory");
        write_repo(repo.path(), 0, 0);
        let root = repo.path().to_string_lossy().into_owned();
        let url = redis.url();

        let api = Service::start("graph-api", &url, &[("CODEGRAPH_CONFIG_DIR", &config)]).await;
        let gateway_env = [
            ("CODEGRAPH_CONFIG_DIR", config.as_str()),
            ("CODEGRAPH__GATEWAY__OUTBOX_MAX_BYTES", "65536"),
            ("CODEGRAPH__GATEWAY__DRAIN_WINDOW_MS", "500"),
            ("CODEGRAPH__GATEWAY__REDIS_PING_INTERVAL_MS", "500"),
        ];
        let mut gateways = Vec::new();
        for _ in 0..3 {
            gateways.push(Service::start("ws-gateway", &proxy.redis_url(), &gateway_env).await);
        }
        let balancer = Balancer::start(&gateways.iter().map(|g| g.port).collect::<Vec<_>>());
        let falkor_url = falkor.url();
        let bolt_url = format!("bolt://127.0.0.1:{bolt_port}");
        let lease = LEASE_MS.to_string();
        let claim = (LEASE_MS * 2 / 3).to_string();
        let mut consumers = Vec::new();
        for name in ["consumer-a", "consumer-b"] {
            let env = [
                ("CODEGRAPH_CONFIG_DIR", config.as_str()),
                ("CODEGRAPH__CONSUMER__NAME", name),
                ("CODEGRAPH__CONSUMER__LEASE_MS", lease.as_str()),
                ("CODEGRAPH__CONSUMER__CLAIM_IDLE_MS", claim.as_str()),
                ("CODEGRAPH__CONSUMER__TICK_MS", "200"),
                ("CODEGRAPH__CONSUMER__BLOCK_MS", "200"),
                ("CODEGRAPH__SINKS__FALKORDB__URL", falkor_url.as_str()),
                ("CODEGRAPH__SINKS__MEMGRAPH__URL", bolt_url.as_str()),
                // FalkorDB's Bolt port cannot bind parameters (see the stream-consumer README).
                ("CODEGRAPH__SINKS__MEMGRAPH__INLINE_PARAMETERS", "true"),
            ];
            consumers.push(Service::start("stream-consumer", &url, &env).await);
        }
        let worker_env = [
            ("CODEGRAPH_CONFIG_DIR", config.as_str()),
            ("CODEGRAPH__ANALYSIS__ALLOWED_ROOTS", root.as_str()),
            ("CODEGRAPH__ANALYSIS__CLAIM_IDLE_MS", "1000"),
            ("CODEGRAPH__ANALYSIS__PROGRESS_INTERVAL_MS", "100"),
        ];
        let worker = Service::start("analysis-worker", &url, &worker_env).await;

        let (storm, _) = watch::channel(0);
        let clients = (0..CLIENTS)
            .map(|i| {
                let project = if i < REPO_CLIENTS { REPO_PROJECT } else { PROJECT };
                Client::start(balancer.ws(""), project, i as u64, Pace::Fast, storm.subscribe())
            })
            .collect();
        Self {
            plan,
            redis,
            proxy,
            falkor,
            bolt,
            bolt_port,
            api,
            gateways,
            _balancer: balancer,
            consumers,
            worker,
            repo,
            _config_dir: config_dir,
            clients,
            storm,
            http: reqwest::Client::new(),
            round: 0,
        }
    }

    /// Runs every fault of the plan and returns the table's rows.
    pub async fn run(&mut self) -> Vec<Row> {
        let mut rows = Vec::new();
        for _ in 0..self.plan.rounds {
            for fault in Fault::SINGLE {
                rows.push(self.run_fault(fault).await);
            }
        }
        for _ in 0..self.plan.mixed_rounds {
            rows.push(self.run_fault(Fault::Mixed).await);
        }
        rows
    }

    /// Load, inject, heal, recover, quiesce, check.
    pub async fn run_fault(&mut self, fault: Fault) -> Row {
        self.round += 1;
        let mut problems = Vec::new();
        let phase_start = mark();
        let dup_before: u64 = self.clients.iter().map(|c| c.snapshot().duplicates).sum();
        let ooo_before: u64 = self.clients.iter().map(|c| c.snapshot().out_of_order).sum();
        let load = MutationLoad::start(self.api.base.clone(), PROJECT, self.plan.rate, self.round);
        if let Err(e) = load.wait_more(self.plan.load_before, DEADLINE).await {
            problems.push(e);
        }
        // Queued just before the fault, so the job runs through it (and a kill of the worker lands mid-job).
        let big_job = matches!(fault, Fault::KillWorker | Fault::Mixed);
        let job = self.queue_analysis(if big_job { REPO_FILES } else { 3 }).await;

        let injected_at = mark();
        let t0 = Instant::now();
        if let Err(e) = self.inject(fault, job.as_deref()).await {
            problems.push(e);
        }
        let recovered_in = match self.wait_recovered(fault).await {
            Ok(()) => Some(t0.elapsed()),
            Err(e) => {
                problems.push(format!("not recovered: {e}"));
                None
            }
        };
        if let Err(e) = load.wait_more(self.plan.load_after, DEADLINE).await {
            problems.push(e);
        }
        if let Err(e) = load.stop().await {
            problems.push(e);
        }
        match &job {
            Ok(id) => {
                if let Err(e) = self.wait_job_done(id).await {
                    problems.push(e);
                }
            }
            Err(e) => problems.push(e.clone()),
        }

        // Quiescence: nothing is written any more; every client must reach the end of its stream.
        let streams = self.streams().await;
        if let Err(e) = self.wait_clients(&streams).await {
            problems.push(e);
        }
        // The stream is the record every reader follows: replayed, it must build the graph Redis holds (a change
        // missing from a set, such as a relationship deleted with its node, shows here).
        for (project, stream) in PROJECTS.iter().zip(&streams) {
            match (stream.replay(), self.expected(project)) {
                (Ok(got), Ok(want)) if got == want => {}
                (Ok(got), Ok(want)) => {
                    problems.push(format!("the {project} stream replayed differs from Redis: {}", got.diff(&want)))
                }
                (Err(e), _) | (_, Err(e)) => problems.push(format!("the {project} stream replayed: {e}")),
            }
        }
        // A system that did not recover within the deadline already had its time: its sinks are compared once.
        let sink_deadline = if recovered_in.is_some() { DEADLINE } else { Duration::ZERO };
        let sink_diffs = self.wait_sinks_equal(sink_deadline, &mut problems).await;
        self.check_answers(&mut problems).await;

        let wants: Vec<Vec<ChangeId>> = streams.iter().map(ProjectStream::changes).collect();
        let mut lost = 0;
        for (i, client) in self.clients.iter().enumerate() {
            let log = client.snapshot();
            let want = &wants[PROJECTS.iter().position(|p| *p == client.project).expect("a known project")];
            let held: BTreeSet<ChangeId> = log.changes.iter().copied().collect();
            lost += want.iter().filter(|c| c.entry > phase_start && !held.contains(c)).count() as u64;
            if log.changes != *want {
                let extra = log.changes.iter().filter(|c| want.binary_search(c).is_err()).count();
                problems.push(format!(
                    "client {i} ({}): holds {} changes, the stream {} ({extra} not in the stream)",
                    client.project,
                    log.changes.len(),
                    want.len()
                ));
            }
            if log.resyncs > 0 {
                problems.push(format!("client {i}: {} resync_required", log.resyncs));
            }
            for frame in &log.malformed {
                problems.push(format!("client {i}: unreadable frame {frame}"));
            }
        }
        if fault == Fault::SlowClient {
            let cut: u64 = self.clients.iter().map(|c| c.snapshot().closed_too_slow).sum();
            if cut == 0 {
                problems.push("the slow client was never closed with 4008".into());
            }
        }
        let recovered_at = injected_at.ms + recovered_in.unwrap_or(DEADLINE).as_millis() as u64;
        let in_flight = wants
            .iter()
            .flatten()
            .filter(|c| c.entry > injected_at && c.entry < StreamId::new(recovered_at + 1, 0))
            .count() as u64;
        let row = Row {
            fault,
            in_flight,
            lost,
            duplicated: self.clients.iter().map(|c| c.snapshot().duplicates).sum::<u64>() - dup_before,
            out_of_order: self.clients.iter().map(|c| c.snapshot().out_of_order).sum::<u64>() - ooo_before,
            sink_diffs,
            recovered_in,
            problems: problems.into_iter().take(12).collect(),
        };
        eprintln!("chaos: {} — {row:?}", fault.label());
        row
    }

    /// Injects the fault and heals it (a restart, a SIGCONT, the link back). A fault's duration is part of it.
    async fn inject(&mut self, fault: Fault, job: Result<&str, &String>) -> Result<(), String> {
        let i = self.round as usize;
        let lease_passed = Duration::from_millis(LEASE_MS * 3);
        match fault {
            Fault::KillGraphApi => {
                self.api.kill();
                self.api.restart().await;
            }
            Fault::KillGateway => {
                let g = &mut self.gateways[i % 3];
                g.kill();
                g.restart().await;
            }
            Fault::KillConsumer => {
                let c = &mut self.consumers[i % 2];
                c.kill();
                c.restart().await;
            }
            Fault::KillWorker => {
                self.wait_job_running(job?).await?;
                self.worker.kill();
                self.worker.restart().await;
            }
            Fault::PauseGateway => {
                let g = &self.gateways[i % 3];
                g.pause();
                tokio::time::sleep(self.plan.pause).await;
                g.resume();
            }
            Fault::CutGatewayRedis => {
                self.proxy.cut();
                tokio::time::sleep(self.plan.cut).await;
                self.proxy.heal();
            }
            Fault::RestartRedis => tokio::task::block_in_place(|| self.redis.restart()),
            Fault::SlowClient => self.slow_client().await?,
            Fault::ReconnectStorm => self.storm.send_modify(|n| *n += 1),
            Fault::PauseConsumer => {
                let c = &self.consumers[i % 2];
                c.pause();
                tokio::time::sleep(lease_passed).await;
                c.resume();
            }
            Fault::RestartFalkorDb => tokio::task::block_in_place(|| {
                self.falkor.restart();
                self.bolt.restart();
                wait_for_port(([127, 0, 0, 1], self.bolt_port).into(), Duration::from_secs(10));
            }),
            Fault::Mixed => {
                let running = self.wait_job_running(job?).await;
                self.gateways[i % 3].kill();
                self.proxy.cut();
                self.consumers[i % 2].pause();
                self.api.kill();
                self.worker.kill();
                tokio::time::sleep(lease_passed).await;
                self.consumers[i % 2].resume();
                self.proxy.heal();
                self.gateways[i % 3].restart().await;
                self.api.restart().await;
                self.worker.restart().await;
                running?;
            }
        }
        Ok(())
    }

    /// A client of its own project, straight to a gateway (nginx would buffer what it does not read), that reads
    /// one frame per 100 ms; a burst of batches into its project (each one change set of 20 changes of 1 KiB, a
    /// 20 KiB frame) until a gateway reports it cut as too slow. Then the client reads at full speed: what its
    /// socket still held, the 4008 close, and it resumes.
    async fn slow_client(&mut self) -> Result<(), String> {
        let cut_total = |statuses: Vec<Value>| -> u64 {
            statuses.iter().map(|s| s["clients"]["closed_too_slow_total"].as_u64().unwrap_or(0)).sum()
        };
        let before = cut_total(self.gateway_statuses().await);
        let base = self.gateways[0].base.replacen("http://", "ws://", 1);
        self.clients.push(Client::start(base, SLOW_PROJECT, 0, Pace::Slow, self.storm.subscribe()));
        let pad = "x".repeat(1024);
        let url = self.api.url(&format!("/api/graph/batch?project={SLOW_PROJECT}"));
        let start = Instant::now();
        let mut serial = 0u64;
        while cut_total(self.gateway_statuses().await) == before {
            if start.elapsed() > Duration::from_secs(30) {
                return Err("the slow client was never cut".into());
            }
            let operations: Vec<Value> = (0..20)
                .map(|k| {
                    serial += 1;
                    let id = format!("s{k}");
                    json!({"op": "upsert_node", "node": {"id": id, "kind": "blob", "name": id,
                           "properties": {"serial": serial, "pad": pad}}})
                })
                .collect();
            send_retrying(&self.http, reqwest::Method::POST, &url, Some(&json!({"operations": operations})), DEADLINE)
                .await?;
        }
        self.clients.last().expect("the slow client").speed_up();
        Ok(())
    }

    async fn gateway_statuses(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for g in &self.gateways {
            if let Ok(resp) = self.http.get(g.url("/status")).send().await {
                out.push(resp.json().await.unwrap_or(Value::Null));
            }
        }
        out
    }

    /// Changes the first `changed` files of the repository and queues a full analysis of it.
    async fn queue_analysis(&self, changed: usize) -> Result<String, String> {
        write_repo(self.repo.path(), self.round, changed);
        let url = self.api.url(&format!("/api/graph/admin/reanalyze?project={REPO_PROJECT}"));
        let body = json!({"path": self.repo.path().to_string_lossy(), "mode": "full"});
        let (status, reply) = send_retrying(&self.http, reqwest::Method::POST, &url, Some(&body), DEADLINE).await?;
        match reply["job_id"].as_str() {
            Some(id) if status == 202 => Ok(id.to_owned()),
            _ => Err(format!("reanalyze answered {status}: {reply}")),
        }
    }

    async fn job_status(&self, id: &str) -> Result<String, String> {
        let url = self.api.url(&format!("/api/graph/admin/jobs/{id}"));
        let (_, job) = send_retrying(&self.http, reqwest::Method::GET, &url, None, DEADLINE).await?;
        Ok(job["status"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the job runs (so a kill lands mid-job).
    async fn wait_job_running(&self, id: &str) -> Result<(), String> {
        let start = Instant::now();
        loop {
            match self.job_status(id).await?.as_str() {
                "running" => return Ok(()),
                s @ ("completed" | "failed" | "cancelled") => return Err(format!("job {id} {s} before the kill")),
                _ if start.elapsed() > DEADLINE => return Err(format!("job {id} never started")),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn wait_job_done(&self, id: &str) -> Result<(), String> {
        let start = Instant::now();
        loop {
            match self.job_status(id).await?.as_str() {
                "completed" => return Ok(()),
                s @ ("failed" | "cancelled") => return Err(format!("analysis job {id} {s}")),
                s if start.elapsed() > DEADLINE => return Err(format!("analysis job {id} still {s:?}")),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Recovered: a probe written after the heal reached every client of the load's project (and, after the
    /// slow-client fault, the slow client has the whole burst), and both sinks hold the probe as Redis does.
    async fn wait_recovered(&self, fault: Fault) -> Result<(), String> {
        let url = self.api.url(&format!("/api/graph/nodes?project={PROJECT}"));
        let probe = json!({"id": "probe", "kind": "probe", "name": "probe", "properties": {"round": self.round}});
        send_retrying(&self.http, reqwest::Method::POST, &url, Some(&probe), DEADLINE).await?;
        let mut targets = vec![(PROJECT, self.stream_last(PROJECT).await?)];
        if fault == Fault::SlowClient {
            targets.push((SLOW_PROJECT, self.stream_last(SLOW_PROJECT).await?));
        }
        let start = Instant::now();
        loop {
            let behind = self
                .clients
                .iter()
                .filter(|c| targets.iter().any(|(p, last)| c.project == *p && c.last() < Some(*last)))
                .count();
            let sinks = if behind == 0 { Some(self.sinks_hold_probe().await) } else { None };
            if sinks == Some(Ok(true)) {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                return Err(format!("after {DEADLINE:?}: {behind} clients behind, sinks hold the probe: {sinks:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sinks_hold_probe(&self) -> Result<bool, String> {
        let want = self.expected(PROJECT)?;
        let want = want.nodes.get("probe");
        for got in self.sink_dumps(PROJECT).await {
            if got?.nodes.get("probe") != want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Waits until every client holds the last entry of its project's stream.
    async fn wait_clients(&self, streams: &[ProjectStream]) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let behind = self
                .clients
                .iter()
                .filter(|c| {
                    let want = &streams[PROJECTS.iter().position(|p| *p == c.project).expect("a known project")];
                    c.last() < want.last()
                })
                .count();
            if behind == 0 {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                return Err(format!("{behind} clients never reached the end of their stream"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until both sinks equal the Redis graph of every project; the entities they still differ on.
    async fn wait_sinks_equal(&self, deadline: Duration, problems: &mut Vec<String>) -> u64 {
        let start = Instant::now();
        loop {
            let mut diffs = 0;
            let mut why = Vec::new();
            for project in PROJECTS {
                let want = match self.expected(project) {
                    Ok(w) => w,
                    Err(e) => {
                        why.push(e);
                        continue;
                    }
                };
                for (sink, got) in ["falkordb", "memgraph"].into_iter().zip(self.sink_dumps(project).await) {
                    match got {
                        Ok(got) if got == want => {}
                        Ok(got) => {
                            diffs += differing(&got, &want);
                            why.push(format!("{sink} sink, project {project}: {}", got.diff(&want)));
                        }
                        Err(e) => why.push(format!("{sink} sink, project {project}: {e}")),
                    }
                }
            }
            if why.is_empty() {
                return 0;
            }
            if start.elapsed() >= deadline {
                problems.extend(why);
                return diffs;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// graph-api, every gateway, every consumer and the worker answer `/ready`.
    async fn check_answers(&self, problems: &mut Vec<String>) {
        let services = std::iter::once(&self.api).chain(&self.gateways).chain(&self.consumers).chain([&self.worker]);
        for s in services {
            let start = Instant::now();
            while !self.http.get(s.url("/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
                if start.elapsed() > DEADLINE {
                    problems.push(format!("{} on port {} is not ready", s.name, s.port));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn expected(&self, project: &str) -> Result<GraphDump, String> {
        let mut conn = redis::Client::open(self.redis.url())
            .and_then(|c| c.get_connection())
            .map_err(|e| format!("redis: {e}"))?;
        Ok(tokio::task::block_in_place(|| expected_from_redis(&mut conn, &names(project))))
    }

    /// What the FalkorDB sink and the Memgraph sink (over Bolt) hold for `project`; a graph that does not exist
    /// yet is empty.
    async fn sink_dumps(&self, project: &str) -> [Result<GraphDump, String>; 2] {
        let falkor = match FalkorClient::open(&self.falkor.url()) {
            Ok(client) => dump_falkordb(&client, &format!("codegraph_{project}")).await.or_else(|e| {
                if e.to_string().contains("Invalid graph operation on empty key") {
                    Ok(GraphDump::default())
                } else {
                    Err(format!("FalkorDB: {e}"))
                }
            }),
            Err(e) => Err(format!("FalkorDB: {e}")),
        };
        let settings = MemgraphSettings {
            url: format!("bolt://127.0.0.1:{}", self.bolt_port),
            inline_parameters: true,
            ..Default::default()
        };
        let memgraph = match MemgraphSink::new(&settings) {
            Ok(sink) => dump_memgraph(&sink, project).await.map_err(|e| format!("Bolt: {e}")),
            Err(e) => Err(format!("Bolt: {e}")),
        };
        [falkor, memgraph]
    }

    /// The id of the last entry of a project's stream.
    async fn stream_last(&self, project: &str) -> Result<StreamId, String> {
        let mut conn = self.stream_connection().await?;
        let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(names(project).cdc_stream())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let last = reply.ids.first().ok_or_else(|| format!("the {project} stream is empty"))?;
        last.id.parse().map_err(|_| format!("bad id {}", last.id))
    }

    async fn stream_connection(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let client = redis::Client::open(self.redis.url()).map_err(|e| e.to_string())?;
        // The machine is loaded: a long answer is slow, not lost.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
        client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| e.to_string())
    }

    /// A project's whole stream, every entry decoded (change set or single event), in order.
    async fn stream(&self, project: &str) -> Result<ProjectStream, String> {
        let mut conn = self.stream_connection().await?;
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(names(project).cdc_stream())
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        ProjectStream::from_range(&reply)
    }

    /// The streams of every project, in the order of `PROJECTS`.
    async fn streams(&self) -> Vec<ProjectStream> {
        let mut out = Vec::new();
        for project in PROJECTS {
            out.push(self.stream(project).await.unwrap_or_else(|e| panic!("read the {project} stream: {e}")));
        }
        out
    }
}

/// A project's stream read whole: its entries in order, each a change set or a single event (a set of one).
pub struct ProjectStream {
    pub sets: Vec<ChangeSet>,
}

impl ProjectStream {
    /// Every entry of an `XRANGE` of a project's stream, decoded (change set or single event), in order.
    pub fn from_range(reply: &redis::streams::StreamRangeReply) -> Result<Self, String> {
        let sets = reply
            .ids
            .iter()
            .map(|entry| {
                let body: String =
                    entry.get(STREAM_FIELD).ok_or_else(|| format!("entry {} has no field {STREAM_FIELD}", entry.id))?;
                ChangeSet::from_stream_entry(&entry.id, &body).map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { sets })
    }

    /// Every change of the stream, in stream order: what each client must hold, once each.
    pub fn changes(&self) -> Vec<ChangeId> {
        self.sets
            .iter()
            .flat_map(|set| {
                let index = |(i, c): (usize, &Change)| c.index.unwrap_or(i as u32);
                set.changes.iter().enumerate().map(index).map(|index| ChangeId { entry: set.id, index })
            })
            .collect()
    }

    pub fn last(&self) -> Option<StreamId> {
        self.sets.last().map(|set| set.id)
    }

    /// The graph the stream's changes build, applied in order and mapped as the sinks map entities (so it compares
    /// with [`expected_from_redis`]). Job events change no graph.
    pub fn replay(&self) -> Result<GraphDump, String> {
        let mut graph = GraphDump::default();
        for event in self.sets.iter().flat_map(ChangeSet::events) {
            let at = |e: serde_json::Error| format!("change {}/{}: {e}", event.id, event.index);
            match event.event_type {
                EventType::NodeAdded | EventType::NodeUpdated => {
                    let node: Node = serde_json::from_value(event.data.clone()).map_err(at)?;
                    let mut labels = vec![NODE_LABEL.to_owned(), node.kind.clone()];
                    labels.sort();
                    graph.nodes.insert(node.id.clone(), (labels, props_json(&node_props(&node, event.version))));
                }
                EventType::NodeDeleted => {
                    graph.nodes.remove(&event.entity.id);
                }
                EventType::RelationshipAdded | EventType::RelationshipUpdated => {
                    let rel: Relationship = serde_json::from_value(event.data.clone()).map_err(at)?;
                    let props = props_json(&edge_props(&rel, event.version));
                    graph.edges.insert(rel.id.clone(), (rel.rel_type, rel.source, rel.target, props));
                }
                EventType::RelationshipDeleted => {
                    graph.edges.remove(&event.entity.id);
                }
                EventType::GraphReset => graph = GraphDump::default(),
                _ => {}
            }
        }
        Ok(graph)
    }
}

/// Nodes and relationships on which two graphs differ (missing, extra or different).
fn differing(got: &GraphDump, want: &GraphDump) -> u64 {
    let nodes = want.nodes.iter().filter(|(k, v)| got.nodes.get(*k) != Some(v)).count()
        + got.nodes.keys().filter(|k| !want.nodes.contains_key(*k)).count();
    let edges = want.edges.iter().filter(|(k, v)| got.edges.get(*k) != Some(v)).count()
        + got.edges.keys().filter(|k| !want.edges.contains_key(*k)).count();
    (nodes + edges) as u64
}

fn redis_binary() -> std::path::PathBuf {
    std::env::var_os("REDIS_SERVER").map(Into::into).unwrap_or_else(|| "redis-server".into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(id: &str, body: Value) -> ChangeSet {
        ChangeSet::from_stream_entry(id, &body.to_string()).expect("an entry")
    }

    fn node(id: &str) -> Value {
        json!({"type": "node_added", "entity": {"kind": "node", "id": id}, "version": 1,
               "data": {"id": id, "kind": "function", "name": id}})
    }

    fn edge(change: &str, version: u64) -> Value {
        json!({"type": change, "entity": {"kind": "relationship", "id": "a|calls|b"}, "version": version,
               "data": {"id": "a|calls|b", "type": "calls", "source": "a", "target": "b"}})
    }

    #[test]
    fn a_replay_applies_every_change_in_order_and_only_what_the_sets_say() {
        let added = entry(
            "1-0",
            json!({"project": "p", "type": "change_set", "changes": [node("a"), node("b"), edge("relationship_added", 1)],
                   "ts": "t"}),
        );
        let job = entry(
            "2-0",
            json!({"project": "p", "type": "analysis_started", "entity": {"kind": "job", "id": "j"}, "version": 1,
                   "ts": "t"}),
        );
        let gone_a = json!({"type": "node_deleted", "entity": {"kind": "node", "id": "a"}, "version": 2});
        let cascade = entry(
            "3-0",
            json!({"project": "p", "type": "change_set", "changes": [edge("relationship_deleted", 2), gone_a.clone()],
                   "ts": "t"}),
        );
        let stream = ProjectStream { sets: vec![added.clone(), job.clone(), cascade] };
        let ids = |s: &ProjectStream| s.changes().iter().map(|c| (c.entry.ms, c.index)).collect::<Vec<_>>();
        assert_eq!(ids(&stream), [(1, 0), (1, 1), (1, 2), (2, 0), (3, 0), (3, 1)]);
        assert_eq!(stream.last(), Some(StreamId::new(3, 0)));
        let graph = stream.replay().unwrap();
        assert_eq!((graph.nodes.keys().map(String::as_str).collect::<Vec<_>>(), graph.edges.len()), (vec!["b"], 0));

        // A node delete whose set lacks its relationship's delete leaves the edge: the replay then differs from
        // the Redis graph, which the suite reports.
        let no_cascade = entry("3-0", json!({"project": "p", "type": "change_set", "changes": [gone_a], "ts": "t"}));
        let graph = ProjectStream { sets: vec![added, job, no_cascade] }.replay().unwrap();
        assert_eq!(graph.edges.len(), 1);
    }
}
