//! WebSocket clients that behave like the dashboard: on any close or error they reconnect with `since=<last id>`
//! and drop an event whose id they already hold (counted as a duplicate). Each keeps a log the suite reads at any
//! time: the ids it kept, in the order received, and what went wrong.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use codegraph_shared::event::StreamId;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

/// What one client saw.
#[derive(Debug, Default, Clone)]
pub struct ClientLog {
    /// Ids kept, in the order received (a repeat is not kept).
    pub ids: Vec<StreamId>,
    /// Events received again after their id was already kept (de-duplicated by id).
    pub duplicates: u64,
    /// Events received with an id below the last kept one that the client did not hold: delivered out of order.
    pub out_of_order: u64,
    pub reconnects: u64,
    /// Closes with 4008 (the gateway's outbox for this client overflowed).
    pub closed_too_slow: u64,
    /// `resync_required` messages: the gateway could not resume this client from the stream.
    pub resyncs: u64,
}

/// A running client and its log.
pub struct Client {
    pub project: String,
    pub log: Arc<Mutex<ClientLog>>,
    slow: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// How a client reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Reads as fast as frames come.
    Fast,
    /// Reads one frame every 100 ms over a small receive buffer until [`Client::speed_up`].
    Slow,
}

impl Client {
    /// Starts a client of `project` at `base` (`ws://host:port`). A change of `storm` makes it drop its connection
    /// and reconnect at once (every client at the same time: a reconnect storm).
    pub fn start(base: String, project: &str, index: u64, pace: Pace, storm: watch::Receiver<u64>) -> Self {
        let log = Arc::new(Mutex::new(ClientLog::default()));
        let slow = Arc::new(AtomicBool::new(pace == Pace::Slow));
        let task = tokio::spawn(run(base, project.to_owned(), index, slow.clone(), storm, log.clone()));
        Self { project: project.to_owned(), log, slow, task }
    }

    /// A slow client reads at full speed from now on (what its connection buffered, then the close, then more).
    pub fn speed_up(&self) {
        self.slow.store(false, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ClientLog {
        self.log.lock().expect("client log").clone()
    }

    pub fn last(&self) -> Option<StreamId> {
        self.log.lock().expect("client log").ids.last().copied()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, slow: bool) -> Result<Ws, String> {
    let attempt = async {
        if !slow {
            return tokio_tungstenite::connect_async(url).await.map(|(ws, _)| ws).map_err(|e| e.to_string());
        }
        // A small receive buffer, so the gateway's outbox (not the kernel) holds what the client has not read.
        let host = url.trim_start_matches("ws://").split('/').next().unwrap_or_default();
        let addr: std::net::SocketAddr = host.parse().map_err(|e| format!("{host}: {e}"))?;
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket.set_recv_buffer_size(4096).map_err(|e| e.to_string())?;
        let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
        let (ws, _) =
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await.map_err(|e| e.to_string())?;
        Ok(ws)
    };
    tokio::time::timeout(Duration::from_secs(10), attempt).await.map_err(|_| "connect timed out".to_owned())?
}

async fn run(
    base: String,
    project: String,
    index: u64,
    slow: Arc<AtomicBool>,
    mut storm: watch::Receiver<u64>,
    log: Arc<Mutex<ClientLog>>,
) {
    storm.mark_unchanged();
    loop {
        let since = log.lock().expect("client log").ids.last().copied().unwrap_or(StreamId::ZERO);
        let url = format!("{base}/ws/events?project={project}&since={since}");
        let mut stormed = false;
        if let Ok(mut ws) = connect(&url, slow.load(Ordering::Relaxed)).await {
            loop {
                let msg = tokio::select! {
                    msg = ws.next() => msg,
                    _ = storm.changed() => { stormed = true; break; }
                };
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                        record(&log, &v);
                        if slow.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        if frame.is_some_and(|f| u16::from(f.code) == 4008) {
                            log.lock().expect("client log").closed_too_slow += 1;
                        }
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        }
        log.lock().expect("client log").reconnects += 1;
        if !stormed {
            // Spread the reconnects of clients that lost the same gateway, as the dashboard's back-off does.
            tokio::time::sleep(Duration::from_millis(20 + index % 7 * 10)).await;
        }
    }
}

fn record(log: &Mutex<ClientLog>, v: &Value) {
    let mut log = log.lock().expect("client log");
    if v["type"] == "resync_required" {
        log.resyncs += 1;
        return;
    }
    let (Some(id), Some(_)) = (v.get("id").and_then(Value::as_str), v.get("entity")) else { return };
    let Ok(id) = id.parse::<StreamId>() else { return };
    match log.ids.last() {
        Some(last) if id <= *last => {
            if log.ids.binary_search(&id).is_ok() {
                log.duplicates += 1;
            } else {
                log.out_of_order += 1;
            }
        }
        _ => log.ids.push(id),
    }
}
