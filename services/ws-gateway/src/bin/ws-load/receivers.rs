//! The two kinds of receiver the load generator compares, both reading raw bytes through [`MarkerScanner`]:
//! a WebSocket client of the gateway (`/ws/events?project=…`, handshake by hand, no client library in the
//! way) and a plain Redis Pub/Sub subscriber of the same channel (the baseline).

use std::{net::SocketAddr, sync::OnceLock, time::Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};

use crate::scanner::{ChangeCounter, MarkerScanner};

/// Microseconds since the load generator started: the clock of the `"t"` marker and of every receipt.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Opens a WebSocket to the gateway and waits for its `subscribed` acknowledgement (live events flow from
/// then on). Bytes that follow the acknowledgement in the same read are handed back.
pub async fn gateway_client(addr: SocketAddr, path: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other(String::from_utf8_lossy(&buf).into_owned()));
            }
            buf.drain(..end + 4);
            break;
        }
    }
    let rest = wait_for(&mut s, buf, b"\"subscribed\"").await?;
    Ok((s, rest))
}

/// Subscribes a plain Redis connection to `channel` with `command` (`SUBSCRIBE`, or `SSUBSCRIBE` at the node that
/// owns the channel's slot) and waits for the confirmation.
pub async fn redis_subscriber(addr: SocketAddr, command: &str, channel: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let cmd = format!("*2\r\n${}\r\n{command}\r\n${}\r\n{channel}\r\n", command.len(), channel.len());
    s.write_all(cmd.as_bytes()).await?;
    let rest = wait_for(&mut s, Vec::new(), b":1\r\n").await?;
    Ok((s, rest))
}

async fn wait_for(s: &mut TcpStream, mut buf: Vec<u8>, needle: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut chunk = [0u8; 512];
    loop {
        if let Some(at) = find(&buf, needle) {
            buf.drain(..at + needle.len());
            return Ok(buf);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the subscription was confirmed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What one receiver saw: for each delivered frame, when it was published and when it arrived (µs); for each
/// read that completed changes, when and how many.
#[derive(Default)]
pub struct Receipts {
    pub published: Vec<u64>,
    pub received: Vec<u64>,
    pub changes: Vec<(u64, u64)>,
}

impl Receipts {
    pub fn change_count(&self) -> u64 {
        self.changes.iter().map(|(_, n)| n).sum()
    }
}

/// Reads until `stop` turns true or the peer closes, noting every marker and counting the changes.
pub async fn read_deliveries(mut s: TcpStream, first: Vec<u8>, mut stop: watch::Receiver<bool>) -> Receipts {
    let mut scanner = MarkerScanner::default();
    let mut counter = ChangeCounter::default();
    let mut out = Receipts::default();
    let mut note = |bytes: &[u8], out: &mut Receipts| {
        let at = now_us();
        scanner.feed(bytes, |t| {
            out.published.push(t);
            out.received.push(at);
        });
        let changes = counter.feed(bytes);
        if changes > 0 {
            out.changes.push((at, changes));
        }
    };
    note(&first, &mut out);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return out,
                Ok(n) => note(&buf[..n], &mut out),
            },
            _ = stop.changed() => return out,
        }
    }
}
