//! The real load balancer in front of ws-gateway replicas: nginx with `deploy/nginx/locations.conf`, rendered by
//! `deploy/nginx/render.sh` into a temporary run dir and run in the foreground on a free port.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use codegraph_shared::testing::{free_port, wait_for_port};

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
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
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
