//! A TCP proxy the test controls, to cut a network link (e.g. between the gateways and Redis) without touching
//! either side: [`TcpProxy::cut`] drops every open connection and refuses new ones until the cut is healed.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use tokio::{net::TcpListener, sync::watch};

/// Forwards connections from a free loopback port to `upstream`. Stops when dropped.
pub struct TcpProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut: each connection ends when it changes.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (is_cut, gen) = (cut.clone(), generation.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if is_cut.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection closed at once
                }
                let mut ended = gen.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = ended.changed() => {}
                    }
                });
            }
        });
        Self { port, cut, generation, task }
    }

    /// `redis://` URL of the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}
