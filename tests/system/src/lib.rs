//! Support for cross-service tests: start the real binaries of the services (built into `target/debug` by
//! `cargo build --workspace --bins`, which `make test` runs first) against a real Redis, and read their metrics.
//! For fault injection: a service can be killed, paused and restarted on its port ([`Service`]), and a TCP proxy
//! can cut a link ([`proxy`]); the real load balancer is `codegraph_shared::testing::Balancer`.
//! Compiled only with the `testing` feature, which the crate's tests (and the chaos suite's) enable.
#![cfg(feature = "testing")]

pub mod proxy;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codegraph_shared::testing::free_port;

/// The folder holding the workspace's debug binaries.
pub fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug")
}

/// One running service process. Killed when dropped.
pub struct Service {
    pub name: &'static str,
    pub base: String,
    pub port: u16,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Service {
    /// Starts `name` (a binary in [`bin_dir`]) on a free port with `CODEGRAPH__REDIS__URL=redis_url` and the
    /// extra environment, and waits until its `/ready` answers 200.
    pub async fn start(name: &'static str, redis_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(name, &[], redis_url, env).await
    }

    /// Starts `name` like [`Service::start`] but does not wait for `/ready` (for services that must come up and
    /// stay up while Redis is away or misconfigured).
    pub fn launch(name: &'static str, redis_url: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut all_env = vec![("CODEGRAPH__REDIS__URL".to_owned(), redis_url.to_owned())];
        all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut service =
            Self { name, base: format!("http://127.0.0.1:{port}"), port, child: None, args: Vec::new(), env: all_env };
        service.spawn();
        service
    }

    /// The process's exit status, if it has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub async fn start_with_args(name: &'static str, args: &[&str], redis_url: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut all_env = vec![("CODEGRAPH__REDIS__URL".to_owned(), redis_url.to_owned())];
        all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut service = Self {
            name,
            base: format!("http://127.0.0.1:{port}"),
            port,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: all_env,
        };
        service.spawn();
        service.wait_ready(Duration::from_secs(30)).await;
        service
    }

    fn spawn(&mut self) {
        let binary = bin_dir().join(self.name);
        assert!(binary.exists(), "{} is missing: run `cargo build --workspace --bins` first", binary.display());
        let child = Command::new(&binary)
            .args(&self.args)
            .env("CODEGRAPH__HTTP__ADDR", format!("127.0.0.1:{}", self.port))
            .env("CODEGRAPH__TELEMETRY__LOG_LEVEL", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        self.child = Some(child);
    }

    /// SIGKILL: a crash. The port is free again afterwards.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port with the same configuration (killing it first if it still
    /// runs), and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// SIGSTOP: the process freezes with its connections open (a long GC pause, a stuck host).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Service::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        let child = self.child.as_ref().unwrap_or_else(|| panic!("{} is not running", self.name));
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        let rc = unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(rc, 0, "signal {signal} to {}", self.name);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http://", "ws://", 1))
    }

    pub async fn wait_ready(&self, deadline: Duration) {
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if client.get(self.url("/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(start.elapsed() < deadline, "{} not ready after {deadline:?}", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The service's `/metrics`, parsed.
    pub async fn metrics(&self) -> Metrics {
        let text = reqwest::get(self.url("/metrics")).await.expect("GET /metrics").text().await.expect("metrics body");
        Metrics::parse(&text).unwrap_or_else(|e| panic!("{} /metrics is not Prometheus text: {e}\n{text}", self.name))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SIGKILL ends a paused (SIGSTOPped) process too.
        self.kill();
    }
}

/// A small repository to analyse: a Python package with classes, a method call and a cross-file import.
pub fn fixture_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files = [
        ("app/__init__.py", ""),
        ("app/models.py", "class Base:\n    def save(self):\n        return 1\n\nclass User(Base):\n    def greet(self):\n        return self.save()\n"),
        ("app/main.py", "from app.models import User\n\ndef run():\n    u = User()\n    return helper(u)\n\ndef helper(u):\n    return u\n"),
    ];
    for (rel, text) in files {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Samples of a Prometheus text exposition: `(name, labels, value)`.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub samples: Vec<(String, String, f64)>,
}

impl Metrics {
    /// Parses the text format strictly enough to catch a malformed exposition: every non-comment line is
    /// `name{labels} value` with a metric name of `[a-zA-Z_:][a-zA-Z0-9_:]*` and a number.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| format!("no value: {line}"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| format!("bad value: {line}"))?,
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').ok_or_else(|| format!("unclosed labels: {line}"))?),
                None => (series, ""),
            };
            let valid = name
                .chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()));
            if name.is_empty() || !valid {
                return Err(format!("bad metric name: {line}"));
            }
            samples.push((name.to_owned(), labels.to_owned(), value));
        }
        Ok(Self { samples })
    }

    /// Sum of every sample of `name` (over all label sets).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples.iter().filter(|(n, _, _)| n == name).map(|(_, _, v)| v).sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn parses_and_rejects() {
        let m = Metrics::parse("# HELP a x\n# TYPE a counter\na 3\nb{x=\"1\"} 2.5\nb{x=\"2\"} 1\nc +Inf\n").unwrap();
        assert_eq!((m.sum("a"), m.sum("b")), (3.0, 3.5));
        assert!(Metrics::parse("a b c").is_err());
        assert!(Metrics::parse("9a 1").is_err());
        assert!(Metrics::parse("a{x=\"1\" 1").is_err());
    }
}
