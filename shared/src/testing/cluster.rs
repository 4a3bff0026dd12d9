//! A Redis Cluster for tests and benchmarks: `primaries` primaries with `replicas_per_primary` replicas each, every
//! node a real `redis-server --cluster-enabled yes` on free loopback ports (client and bus port) in its own temporary
//! directory. A node can be killed (SIGKILL: a crash) and restarted on the same ports with the same `nodes.conf`, so it
//! rejoins under its old ID. The waits poll every running node until they all agree, with a deadline, never a fixed
//! sleep. Everything is killed when the value is dropped.
//!
//! The cluster is joined with the commands `redis-cli --cluster create` sends (ADDSLOTSRANGE, SET-CONFIG-EPOCH,
//! MEET, REPLICATE), not by redis-cli itself: redis-cli refuses fewer than 3 primaries, and a 1-primary cluster is
//! the baseline of the scale-out benchmark.
//!
//! *Healthy* ([`RedisCluster::wait_healthy`]) means, on every running node: `cluster_state:ok` with all 16384 slots
//! ok and every node of the cluster known; the same slot → primary map (`CLUSTER SLOTS`, what clients route by) as
//! every other running node, each owner a running node that calls itself a master; no running node flagged failing
//! (`fail?`/`fail`) or still in handshake by anyone; each running replica's link to its primary up.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{free_port, wait_for_port};

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The cluster slot of a key: CRC16 (XMODEM) of its hash tag (the bytes between the first `{` and the next `}`, when
/// not empty) or else of the whole key, modulo 16384. Every key of a project carries the tag `{<project>}`, so a
/// project's slot is `key_slot(project.as_bytes())`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16_xmodem(hash_tag(key)) % SLOTS
}

fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(len) = rest.iter().position(|&b| b == b'}') {
            if len > 0 {
                return &rest[..len];
            }
        }
    }
    key
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

/// One node, as a running node of the cluster sees it ([`RedisCluster::nodes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its place in the cluster, stable for the cluster's life: what [`RedisCluster::kill`] and
    /// [`RedisCluster::restart`] take.
    pub index: usize,
    pub port: u16,
    /// Its cluster node ID, kept across restarts (it lives in the node's `nodes.conf`).
    pub id: String,
    pub role: Role,
    /// A replica's primary (its index).
    pub primary: Option<usize>,
    /// Its process runs (never killed, or restarted since).
    pub running: bool,
}

/// Settings of a [`RedisCluster`] before it starts.
pub struct ClusterBuilder {
    primaries: usize,
    replicas_per_primary: usize,
    node_timeout: Duration,
    deadline: Duration,
    binary: PathBuf,
    extra: Vec<String>,
}

impl ClusterBuilder {
    /// `cluster-node-timeout`: how long a node may be unreachable before it is failed over (default 2 s).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// How long each wait (start, failover, rejoin) may take before it panics (default 30 s, for a loaded machine).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Extra `redis-server` arguments for every node (e.g. `["--appendonly", "yes"]`, so a restarted primary that
    /// was not failed over keeps its data).
    pub fn args(mut self, extra: &[&str]) -> Self {
        self.extra.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    pub fn start(self) -> RedisCluster {
        assert!(self.primaries >= 1, "a cluster needs a primary");
        let mut args = vec!["--cluster-node-timeout".to_owned(), self.node_timeout.as_millis().to_string()];
        args.extend(self.extra);
        let mut cluster = RedisCluster { nodes: Vec::new(), binary: self.binary, args, deadline: self.deadline };
        let count = self.primaries * (1 + self.replicas_per_primary);
        let mut taken = Vec::new();
        for _ in 0..count {
            let mut distinct_port = || loop {
                let port = free_port();
                if !taken.contains(&port) {
                    taken.push(port);
                    return port;
                }
            };
            let (port, bus_port) = (distinct_port(), distinct_port());
            let dir = tempfile::tempdir().expect("a temporary directory");
            cluster.nodes.push(NodeProcess { port, bus_port, dir, child: None, id: String::new(), held: Vec::new() });
        }
        for index in 0..count {
            cluster.respawn(index);
        }
        cluster.join(self.primaries, self.replicas_per_primary);
        cluster
    }
}

struct NodeProcess {
    port: u16,
    bus_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    id: String,
    /// The slot ranges the node owned when it was last killed ([`RedisCluster::wait_for_failover`] follows them).
    held: Vec<(u16, u16)>,
}

/// A running Redis Cluster of private `redis-server` processes. Killed when dropped.
pub struct RedisCluster {
    nodes: Vec<NodeProcess>,
    binary: PathBuf,
    /// Arguments every node gets besides its ports and directory.
    args: Vec<String>,
    deadline: Duration,
}

/// One range of slots and the port of the primary that owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SlotRange {
    start: u16,
    end: u16,
    port: u16,
}

/// One line of `CLUSTER NODES`.
struct NodeLine {
    id: String,
    port: u16,
    flags: Vec<String>,
    primary_id: Option<String>,
}

impl RedisCluster {
    /// Starts `primaries` primaries with `replicas_per_primary` replicas each and waits until it is healthy.
    pub fn start(primaries: usize, replicas_per_primary: usize) -> Self {
        Self::builder(primaries, replicas_per_primary).start()
    }

    /// `redis-server` from `$REDIS_SERVER` or the PATH.
    pub fn builder(primaries: usize, replicas_per_primary: usize) -> ClusterBuilder {
        ClusterBuilder {
            primaries,
            replicas_per_primary,
            node_timeout: Duration::from_millis(2000),
            deadline: Duration::from_secs(30),
            binary: std::env::var_os("REDIS_SERVER").map(PathBuf::from).unwrap_or_else(|| "redis-server".into()),
            extra: Vec::new(),
        }
    }

    /// The seed list for `CODEGRAPH__REDIS__CLUSTER_NODES`: every node's URL, comma-separated.
    pub fn seeds(&self) -> String {
        self.seed_urls().join(",")
    }

    pub fn seed_urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// `redis://127.0.0.1:<port>` of one node.
    pub fn url(&self, node: usize) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[node].port)
    }

    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].port
    }

    /// The node's log (`redis.log` in its directory).
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.nodes[node].dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    /// A synchronous connection to one node (commands for keys of slots it does not own answer MOVED).
    pub fn connection(&self, node: usize) -> redis::Connection {
        connect(self.nodes[node].port).unwrap_or_else(|e| panic!("node {node}: {e}"))
    }

    /// A synchronous cluster connection (follows MOVED), for test set-up and assertions.
    pub fn cluster_connection(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.seed_urls())
            .and_then(|c| c.get_connection())
            .expect("a cluster connection")
    }

    /// Every node, as the first running node that answers sees them (settled after [`wait_healthy`](Self::wait_healthy)).
    pub fn nodes(&self) -> Vec<ClusterNode> {
        let table =
            self.running().find_map(|i| connect(self.nodes[i].port).and_then(|mut c| cluster_nodes(&mut c)).ok());
        let table = table.expect("no running node answers CLUSTER NODES");
        let index_of_id = |id: &str| self.nodes.iter().position(|n| n.id == id);
        (0..self.nodes.len())
            .map(|index| {
                let line = table.iter().find(|l| l.id == self.nodes[index].id);
                let replica = line.is_some_and(|l| l.flags.iter().any(|f| f == "slave"));
                ClusterNode {
                    index,
                    port: self.nodes[index].port,
                    id: self.nodes[index].id.clone(),
                    role: if replica { Role::Replica } else { Role::Primary },
                    primary: line.and_then(|l| l.primary_id.as_deref()).and_then(index_of_id),
                    running: self.is_running(index),
                }
            })
            .collect()
    }

    /// The nodes that own slots now, in index order.
    pub fn primaries(&self) -> Vec<usize> {
        let map = self.slot_map_now();
        let mut owners: Vec<usize> = map.iter().map(|r| self.index_of_port(r.port)).collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// The node that owns `slot`, as the first running node that answers sees it.
    pub fn primary_for_slot(&self, slot: u16) -> usize {
        assert!(slot < SLOTS, "slot {slot} out of range");
        let map = self.slot_map_now();
        let range = map.iter().find(|r| r.start <= slot && slot <= r.end);
        self.index_of_port(range.unwrap_or_else(|| panic!("slot {slot} has no owner: {map:?}")).port)
    }

    /// The node that owns `key`'s slot ([`key_slot`]).
    pub fn primary_for_key(&self, key: &str) -> usize {
        self.primary_for_slot(key_slot(key.as_bytes()))
    }

    /// For each primary (index order): `per_primary` project names `<prefix>-<n>` whose hash tag `{name}` falls in
    /// its slots, so that load over the projects spreads over every primary.
    pub fn project_names_per_primary(&self, prefix: &str, per_primary: usize) -> Vec<(usize, Vec<String>)> {
        let map = self.slot_map_now();
        let mut groups: Vec<(usize, Vec<String>)> = self.primaries().into_iter().map(|p| (p, Vec::new())).collect();
        let mut n = 0u64;
        while groups.iter().any(|(_, names)| names.len() < per_primary) {
            let name = format!("{prefix}-{n}");
            n += 1;
            let slot = key_slot(name.as_bytes());
            let port = map.iter().find(|r| r.start <= slot && slot <= r.end).expect("every slot owned").port;
            let owner = self.index_of_port(port);
            if let Some((_, names)) = groups.iter_mut().find(|(p, _)| *p == owner) {
                if names.len() < per_primary {
                    names.push(name);
                }
            }
        }
        groups
    }

    /// SIGKILLs a node (a crash: no shutdown, no save). What slots it owned are remembered for
    /// [`wait_for_failover`](Self::wait_for_failover).
    pub fn kill(&mut self, node: usize) {
        let port = self.nodes[node].port;
        let held = connect(port).and_then(|mut c| slot_map(&mut c)).unwrap_or_default();
        self.nodes[node].held = held.iter().filter(|r| r.port == port).map(|r| (r.start, r.end)).collect();
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed node again on its ports, in its directory (its `nodes.conf`), and waits until the cluster is
    /// healthy with it. A primary that was failed over comes back as a replica of its successor. Without
    /// persistence (the default) a node comes back empty: restart a primary only after its failover.
    pub fn restart(&mut self, node: usize) {
        self.respawn(node);
        self.wait_healthy();
    }

    /// Starts a killed node again (as [`restart`](Self::restart)) without waiting for the cluster.
    pub fn respawn(&mut self, node: usize) {
        if self.nodes[node].child.is_some() {
            return;
        }
        let n = &self.nodes[node];
        let dir = n.dir.path();
        let child = Command::new(&self.binary)
            .args(["--port", &n.port.to_string(), "--cluster-port", &n.bus_port.to_string()])
            .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(dir.join("nodes.conf"))
            .args(["--appendonly", "no", "--save", ""])
            // A replica's full sync starts at once instead of after 5 s (waiting for more replicas to share it).
            .args(["--repl-diskless-sync-delay", "0", "--logfile"])
            .arg(dir.join("redis.log"))
            .arg("--dir")
            .arg(dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} (install redis-server)", self.binary.display()));
        self.nodes[node].child = Some(child);
        let addr = ([127, 0, 0, 1], self.nodes[node].port).into();
        wait_for_port(addr, self.deadline);
    }

    /// Waits until the cluster is healthy (see the module's doc) and returns nothing; panics after the deadline.
    pub fn wait_healthy(&self) {
        self.wait("the cluster to be healthy", || self.health().map(drop));
    }

    /// [`wait_healthy`](Self::wait_healthy) for async tests: sleeps on the runtime between probes (each probe makes
    /// short blocking calls to the nodes).
    pub async fn wait_healthy_async(&self) {
        self.wait_async("the cluster to be healthy", || self.health().map(drop)).await;
    }

    /// After [`kill`](Self::kill) of a primary: waits until a replica owns its slots and the cluster is healthy again,
    /// and returns the new primary.
    pub fn wait_for_failover(&self, killed: usize) -> usize {
        let probe = self.failover_probe(killed);
        self.wait("a failover", probe)
    }

    /// [`wait_for_failover`](Self::wait_for_failover) for async tests.
    pub async fn wait_for_failover_async(&self, killed: usize) -> usize {
        let probe = self.failover_probe(killed);
        self.wait_async("a failover", probe).await
    }

    fn failover_probe(&self, killed: usize) -> impl Fn() -> Result<usize, String> + '_ {
        assert!(!self.is_running(killed), "node {killed} was not killed");
        let held = self.nodes[killed].held.clone();
        assert!(!held.is_empty(), "node {killed} owned no slots when it was killed: only a primary fails over");
        move || {
            let map = self.health()?;
            let owners: Vec<u16> =
                map.iter().filter(|r| held.iter().any(|&(s, e)| r.start <= e && s <= r.end)).map(|r| r.port).collect();
            match owners.first() {
                Some(&port) if owners.iter().all(|&p| p == port) => Ok(self.index_of_port(port)),
                _ => Err(format!("the slots of node {killed} ({held:?}) are split over {owners:?}")),
            }
        }
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.is_running(i))
    }

    fn index_of_port(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.port == port).unwrap_or_else(|| panic!("port {port} is no node of ours"))
    }

    fn slot_map_now(&self) -> Vec<SlotRange> {
        let map = self.running().find_map(|i| connect(self.nodes[i].port).and_then(|mut c| slot_map(&mut c)).ok());
        map.expect("no running node answers CLUSTER SLOTS")
    }

    /// Assigns the slots, introduces the nodes to each other, makes the replicas, and waits until healthy. Nodes
    /// `0..primaries` are the primaries; replica `j` of primary `k` is node `primaries + k * replicas + j`.
    fn join(&mut self, primaries: usize, replicas: usize) {
        for i in 0..self.nodes.len() {
            let mut c = self.connection(i);
            self.nodes[i].id = redis::cmd("CLUSTER").arg("MYID").query(&mut c).expect("CLUSTER MYID");
            // Distinct epochs from the start, as redis-cli does, rather than collisions resolved one by one.
            let _: () =
                redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1).query(&mut c).expect("SET-CONFIG-EPOCH");
            if i < primaries {
                let start = i * SLOTS as usize / primaries;
                let end = (i + 1) * SLOTS as usize / primaries - 1;
                let _: () = redis::cmd("CLUSTER")
                    .arg("ADDSLOTSRANGE")
                    .arg(start)
                    .arg(end)
                    .query(&mut c)
                    .expect("CLUSTER ADDSLOTSRANGE");
            }
        }
        let (first_port, first_bus) = (self.nodes[0].port, self.nodes[0].bus_port);
        for i in 1..self.nodes.len() {
            let mut c = self.connection(i);
            let meet = redis::cmd("CLUSTER").arg("MEET").arg("127.0.0.1").arg(first_port).arg(first_bus).query(&mut c);
            let _: () = meet.expect("CLUSTER MEET");
        }
        let count = self.nodes.len();
        self.wait("every node to know every other", || {
            for i in self.running() {
                let table = connect(self.nodes[i].port).and_then(|mut c| cluster_nodes(&mut c))?;
                let settled = table.iter().filter(|l| !l.flags.iter().any(|f| f == "handshake")).count();
                if settled != count {
                    return Err(format!("node {i} knows {settled} of {count} nodes"));
                }
            }
            Ok(())
        });
        for k in 0..primaries {
            for j in 0..replicas {
                let replica = primaries + k * replicas + j;
                let mut c = self.connection(replica);
                let _: () = redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(&self.nodes[k].id)
                    .query(&mut c)
                    .expect("CLUSTER REPLICATE");
            }
        }
        self.wait_healthy();
    }

    /// One look at every running node: the agreed slot map when the cluster is healthy, else why not.
    fn health(&self) -> Result<Vec<SlotRange>, String> {
        let running: Vec<usize> = self.running().collect();
        let running_ports: Vec<u16> = running.iter().map(|&i| self.nodes[i].port).collect();
        let mut agreed: Option<Vec<SlotRange>> = None;
        let mut masters = Vec::new();
        let mut views = Vec::new();
        for &i in &running {
            let mut c = connect(self.nodes[i].port)?;
            let info: String = query(&mut c, redis::cmd("CLUSTER").arg("INFO"))?;
            let field = |name: &str| info_field(&info, name).unwrap_or_default();
            if field("cluster_state") != "ok" || field("cluster_slots_ok") != SLOTS.to_string() {
                return Err(format!(
                    "node {i}: cluster_state {}, slots ok {}",
                    field("cluster_state"),
                    field("cluster_slots_ok")
                ));
            }
            if field("cluster_known_nodes") != self.nodes.len().to_string() {
                return Err(format!("node {i} knows {} nodes of {}", field("cluster_known_nodes"), self.nodes.len()));
            }
            let map = slot_map(&mut c)?;
            match &agreed {
                None => agreed = Some(map),
                Some(first) if *first != map => return Err(format!("node {i} routes {map:?}, another {first:?}")),
                Some(_) => {}
            }
            let view = cluster_nodes(&mut c)?;
            for line in &view {
                let troubled =
                    line.flags.iter().any(|f| matches!(f.as_str(), "fail" | "fail?" | "handshake" | "noaddr"));
                if troubled && running_ports.contains(&line.port) {
                    return Err(format!("node {i} flags {}: {:?}", line.port, line.flags));
                }
            }
            views.push((i, view));
            let replication: String = query(&mut c, redis::cmd("INFO").arg("replication"))?;
            match info_field(&replication, "role") {
                Some("master") => masters.push(self.nodes[i].port),
                _ if info_field(&replication, "master_link_status") != Some("up") => {
                    return Err(format!("replica {i}: its link to its primary is not up"));
                }
                _ => {}
            }
        }
        let map = agreed.ok_or("no node runs")?;
        if let Some(r) = map.iter().find(|r| !masters.contains(&r.port)) {
            return Err(format!("slots {}-{} belong to {}, not a running master", r.start, r.end, r.port));
        }
        // A role change (REPLICATE, a promotion) spreads by gossip: every node must see each running node's own.
        for (i, view) in &views {
            for line in view.iter().filter(|l| running_ports.contains(&l.port)) {
                let seen_master = line.flags.iter().any(|f| f == "master");
                if seen_master != masters.contains(&line.port) {
                    return Err(format!("node {i} sees {} as {:?}, not as it says", line.port, line.flags));
                }
            }
        }
        Ok(map)
    }

    fn wait<T>(&self, what: &str, probe: impl Fn() -> Result<T, String>) -> T {
        let start = Instant::now();
        loop {
            match probe() {
                Ok(value) => return value,
                Err(why) if start.elapsed() > self.deadline => self.give_up(what, &why),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    async fn wait_async<T>(&self, what: &str, probe: impl Fn() -> Result<T, String>) -> T {
        let start = Instant::now();
        loop {
            match probe() {
                Ok(value) => return value,
                Err(why) if start.elapsed() > self.deadline => self.give_up(what, &why),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn give_up(&self, what: &str, why: &str) -> ! {
        let mut logs = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let log = self.log(i);
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            logs += &format!("--- node {i} (port {}, running {}):\n", n.port, n.child.is_some());
            for line in tail.iter().rev() {
                logs += &format!("    {line}\n");
            }
        }
        panic!("no {what} after {:?}: {why}\n{logs}", self.deadline)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn connect(port: u16) -> Result<redis::Connection, String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
    let conn = client.get_connection_with_timeout(Duration::from_secs(1)).map_err(|e| format!("port {port}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    Ok(conn)
}

fn query<T: redis::FromRedisValue>(conn: &mut redis::Connection, cmd: &redis::Cmd) -> Result<T, String> {
    cmd.query(conn).map_err(|e| e.to_string())
}

/// A `name:value` line of an INFO-style reply.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// `CLUSTER SLOTS` as sorted ranges, checked to cover every slot once.
fn slot_map(conn: &mut redis::Connection) -> Result<Vec<SlotRange>, String> {
    use redis::{from_redis_value_ref, Value};
    let reply: Value = query(conn, redis::cmd("CLUSTER").arg("SLOTS"))?;
    let int = |v: &Value| from_redis_value_ref::<i64>(v).map_err(|e| e.to_string());
    let mut map = Vec::new();
    let Value::Array(ranges) = reply else { return Err(format!("CLUSTER SLOTS: {reply:?}")) };
    for range in &ranges {
        let (start, end, primary) = match range {
            Value::Array(items) if items.len() >= 3 => (&items[0], &items[1], &items[2]),
            other => return Err(format!("CLUSTER SLOTS entry: {other:?}")),
        };
        let port = match primary {
            Value::Array(addr) if addr.len() >= 2 => int(&addr[1])?,
            other => return Err(format!("CLUSTER SLOTS primary: {other:?}")),
        };
        map.push(SlotRange { start: int(start)? as u16, end: int(end)? as u16, port: port as u16 });
    }
    map.sort_by_key(|r| r.start);
    let mut next = 0u32;
    for r in &map {
        if r.start as u32 != next || r.end < r.start {
            return Err(format!("slots {next}.. are not covered: {map:?}"));
        }
        next = r.end as u32 + 1;
    }
    if next != SLOTS as u32 {
        return Err(format!("slots {next}.. have no owner"));
    }
    Ok(map)
}

fn cluster_nodes(conn: &mut redis::Connection) -> Result<Vec<NodeLine>, String> {
    let text: String = query(conn, redis::cmd("CLUSTER").arg("NODES"))?;
    let mut lines = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("CLUSTER NODES line: {line}"));
        }
        // ip:port@cport[,hostname]
        let port = fields[1].split('@').next().and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok());
        lines.push(NodeLine {
            id: fields[0].to_owned(),
            port: port.ok_or_else(|| format!("CLUSTER NODES address: {line}"))?,
            flags: fields[2].split(',').map(str::to_owned).collect(),
            primary_id: (fields[3] != "-").then(|| fields[3].to_owned()),
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slot_matches_the_redis_crate_and_the_spec() {
        use redis::cluster_routing::Slot;
        // The specification's check value: CRC16/XMODEM("123456789") = 0x31C3.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        for key in ["", "a", "foo", "{user1000}.following", "code_graph:{demo}:cdc", "a{}b", "{}{x}", "x{y", "{a}{b}"] {
            assert_eq!(Slot::new(key_slot(key.as_bytes())), Some(Slot::for_key(key)), "{key:?}");
        }
        assert_eq!(key_slot(b"code_graph:{demo}:cdc"), key_slot(b"demo"));
        assert_eq!(key_slot(b"code_graph:{demo}:nodes"), key_slot(b"code_graph:{demo}:events"));
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "cluster_state:ok\r\ncluster_slots_ok:16384\r\ncluster_known_nodes:6\r\n";
        assert_eq!(info_field(info, "cluster_state"), Some("ok"));
        assert_eq!(info_field(info, "cluster_slots_ok"), Some("16384"));
        assert_eq!(info_field(info, "cluster_slots"), None);
    }
}
