//! WebSocket clients that behave like the dashboard: on any close or error they reconnect with `since=<last entry
//! id>` and drop a change they already hold (counted as a duplicate). A frame is one stream entry in either form: a
//! change set (many changes; in a partly filtered frame each kept change carries its `index`) or a single event
//! (job events, `graph_reset`, and graph changes of streams written before change sets). Each client keeps a log
//! the suite reads at any time: the changes it kept, each named by entry id and index, in the order received, and
//! what went wrong.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use codegraph_shared::event::{ChangeSet, StreamId};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

/// One change of the stream: its entry's id and its position in the entry (0 for a single event). Ordered as the
/// stream orders changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeId {
    pub entry: StreamId,
    pub index: u32,
}

/// What one client saw.
#[derive(Debug, Default, Clone)]
pub struct ClientLog {
    /// Changes kept, in the order received (a repeat is not kept).
    pub changes: Vec<ChangeId>,
    /// Changes received again after they were already kept (de-duplicated by entry id and index).
    pub duplicates: u64,
    /// Changes received below the last kept one that the client did not hold: delivered out of order.
    pub out_of_order: u64,
    /// Frames that are neither a control message, a change set nor a single event (the first few kept, for the
    /// report).
    pub malformed: Vec<String>,
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

    /// The entry of the last change kept: where a resume starts after.
    pub fn last(&self) -> Option<StreamId> {
        self.log.lock().expect("client log").changes.last().map(|c| c.entry)
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
        // A frame holds a whole entry, so the last entry kept is wholly held.
        let since = log.lock().expect("client log").changes.last().map_or(StreamId::ZERO, |c| c.entry);
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
                        record(&log, text.as_str());
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

fn record(log: &Mutex<ClientLog>, frame: &str) {
    let mut log = log.lock().expect("client log");
    let v = serde_json::from_str::<Value>(frame).unwrap_or_default();
    if v["type"] == "resync_required" {
        log.resyncs += 1;
        return;
    }
    if v.is_object() && v.get("id").is_none() {
        // A control message (`subscribed`, `pong`, …).
        return;
    }
    let changes = match frame_changes(frame) {
        Ok(changes) => changes,
        Err(why) => {
            if log.malformed.len() < 3 {
                let frame: String = frame.chars().take(200).collect();
                log.malformed.push(format!("{why}: {frame}"));
            }
            return;
        }
    };
    for change in changes {
        match log.changes.last() {
            Some(last) if change <= *last => {
                if log.changes.binary_search(&change).is_ok() {
                    log.duplicates += 1;
                } else {
                    log.out_of_order += 1;
                }
            }
            _ => log.changes.push(change),
        }
    }
}

/// The changes a frame carries, in either form, read with the shared decoder. A change's index is its `index`
/// when the gateway filtered the set (it then carries the kept changes only), else its position.
pub fn frame_changes(frame: &str) -> Result<Vec<ChangeId>, String> {
    let set = ChangeSet::from_json(frame).map_err(|e| e.to_string())?;
    if set.changes.is_empty() {
        // The gateway sends no set filtered to nothing, and a mutation that changed nothing writes no entry.
        return Err("an empty change set".into());
    }
    Ok(set.events().map(|e| ChangeId { entry: e.id, index: e.index }).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(ms: u64, index: u32) -> ChangeId {
        ChangeId { entry: StreamId::new(ms, 0), index }
    }

    #[test]
    fn frames_of_both_forms_read_as_changes() {
        let single = json!({"id": "5-0", "project": "p", "type": "analysis_progress",
                            "entity": {"kind": "job", "id": "j"}, "version": 1, "data": {}, "ts": "t"});
        assert_eq!(frame_changes(&single.to_string()).unwrap(), vec![at(5, 0)]);
        let change = |id: &str| json!({"type": "node_added", "entity": {"kind": "node", "id": id}, "version": 1});
        let set = json!({"id": "6-0", "project": "p", "type": "change_set", "changes": [change("a"), change("b")]});
        assert_eq!(frame_changes(&set.to_string()).unwrap(), vec![at(6, 0), at(6, 1)]);
        let mut kept = change("c");
        kept["index"] = json!(4);
        let filtered = json!({"id": "7-0", "project": "p", "type": "change_set", "changes": [kept]});
        assert_eq!(frame_changes(&filtered.to_string()).unwrap(), vec![at(7, 4)]);
        for bad in [
            json!({"id": "8-0", "project": "p", "type": "change_set", "changes": []}),
            json!({"id": "8-0", "project": "p", "type": "change_set"}),
            json!({"id": "8-0", "project": "p", "type": "node_added"}),
            json!({"id": "x", "project": "p", "type": "change_set", "changes": [change("a")]}),
        ] {
            assert!(frame_changes(&bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeats_are_dropped_and_gaps_behind_the_last_change_are_out_of_order() {
        let log = Mutex::new(ClientLog::default());
        let change = |id: &str| json!({"type": "node_added", "entity": {"kind": "node", "id": id}, "version": 1});
        let set = |id: &str, n: usize| {
            json!({"id": id, "project": "p", "type": "change_set", "changes": vec![change("a"); n]}).to_string()
        };
        record(&log, &set("2-0", 2));
        record(&log, &set("1-0", 1));
        record(&log, &set("2-0", 3));
        record(&log, r#"{"type":"subscribed"}"#);
        record(&log, &set("3-0", 0));
        record(&log, "not json");
        let log = log.into_inner().unwrap();
        assert_eq!(log.changes, vec![at(2, 0), at(2, 1), at(2, 2)]);
        assert_eq!((log.duplicates, log.out_of_order, log.malformed.len()), (2, 1, 2));
    }
}
