//! The writing half of a connection: drains the client's outbox to the socket in batches (one flush per batch),
//! pings at the protocol level, drops a client that stops answering or whose socket stops taking data, and sends
//! the close frame when the client is being closed.

use std::{
    collections::VecDeque,
    future::Future,
    sync::Arc,
    task::Poll,
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{stream::SplitSink, SinkExt};

use crate::{client::Client, outbox::Frame, protocol::CloseReason, status::Stats};

/// How long the close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Protocol-level keep-alive.
#[derive(Clone, Copy, Debug)]
pub struct KeepAlive {
    pub ping_every: Duration,
    pub pong_timeout: Duration,
}

type Sink = SplitSink<WebSocket, Message>;

/// Runs until the connection is closed; returns the reason.
pub async fn run(client: Arc<Client>, mut sink: Sink, keepalive: KeepAlive, stats: Arc<Stats>) -> CloseReason {
    let mut batch: VecDeque<Frame> = VecDeque::new();
    let mut published: Vec<u64> = Vec::new();
    // A socket that takes nothing for this long belongs to a client that is gone or stopped reading.
    let write_timeout = keepalive.ping_every + keepalive.pong_timeout;
    let mut next_ping = Instant::now() + keepalive.ping_every;
    // While a ping's answer is awaited: when it went out, and how much the client had said by then.
    let mut awaiting_pong: Option<(Instant, u64)> = None;
    loop {
        let closing = client.take(&mut batch);
        if !batch.is_empty() {
            let outcome = {
                let write = write_batch(&mut sink, &mut batch, &mut published, &stats);
                tokio::pin!(write);
                // Nearly every batch goes straight into the socket's buffer: only a write that has to wait arms the
                // deadline and listens for a cut (a timer and a waiter per batch cost more than the write's own
                // user-space work at a thousand clients).
                match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                    Poll::Ready(r) => r.map_err(|_| CloseReason::Gone),
                    Poll::Pending => {
                        let deadline = tokio::time::sleep(write_timeout);
                        tokio::pin!(deadline);
                        loop {
                            tokio::select! {
                                r = &mut write => break r.map_err(|_| CloseReason::Gone),
                                _ = client.cut() => {
                                    // Give up on a socket that does not drain only when the client is cut for it.
                                    if client.closing() == Some(CloseReason::TooSlow) {
                                        break Err(CloseReason::TooSlow);
                                    }
                                }
                                _ = &mut deadline => break Err(CloseReason::Gone),
                            }
                        }
                    }
                }
            };
            match outcome {
                Ok(()) => {
                    client.batch_written();
                    continue;
                }
                Err(CloseReason::TooSlow) => {
                    // The cut released the batch from the budget; free its memory too before the slow close.
                    batch.clear();
                    // The close frame queues behind what the socket still holds; a client that is slow but
                    // alive reads its way to it within the pong timeout.
                    let text = client.close_text().unwrap_or_else(|| CloseReason::TooSlow.default_text().to_owned());
                    send_close(&mut sink, CloseReason::TooSlow, &text, keepalive.pong_timeout).await;
                    return CloseReason::TooSlow;
                }
                Err(reason) => {
                    client.close(reason, None);
                    return reason;
                }
            }
        }
        if let Some((reason, text)) = closing {
            if reason != CloseReason::Gone {
                send_close(&mut sink, reason, &text, CLOSE_TIMEOUT).await;
            }
            return reason;
        }
        let timer = match awaiting_pong {
            Some((sent, _)) => sent + keepalive.pong_timeout,
            None => next_ping,
        };
        tokio::select! {
            // No yield before taking: the fan-out queues an entry for every client of the room in one poll, so
            // what is queued by the time the writer runs goes out in one write anyway; a yield cost every writer a
            // second trip through the scheduler per wake-up, and at a thousand clients measured no better p99.
            _ = client.woken() => {}
            _ = tokio::time::sleep_until(timer.into()) => {
                if let Some((_, heard)) = awaiting_pong.take() {
                    if client.heard_count() == heard {
                        tracing::debug!(client = client.id(), "no pong: dropping the client");
                        client.close(CloseReason::Gone, None);
                        return CloseReason::Gone;
                    }
                    continue;
                }
                next_ping = Instant::now() + keepalive.ping_every;
                let ping = tokio::time::timeout(write_timeout, sink.send(Message::Ping(Default::default())));
                if !matches!(ping.await, Ok(Ok(()))) {
                    client.close(CloseReason::Gone, None);
                    return CloseReason::Gone;
                }
                awaiting_pong = Some((Instant::now(), client.heard_count()));
            }
        }
    }
}

async fn write_batch(
    sink: &mut Sink,
    batch: &mut VecDeque<Frame>,
    published: &mut Vec<u64>,
    stats: &Stats,
) -> Result<(), axum::Error> {
    published.clear();
    let (mut frames, mut bytes, mut changes) = (0u64, 0u64, 0u64);
    while let Some(frame) = batch.pop_front() {
        if let Some(t) = frame.published_ms {
            frames += 1;
            bytes += frame.text.len() as u64;
            changes += u64::from(frame.changes);
            published.push(t);
        }
        sink.feed(Message::Text(frame.text)).await?;
    }
    sink.flush().await?;
    if frames > 0 {
        stats.frames_sent(frames, bytes, changes, published.iter().copied());
    }
    Ok(())
}

async fn send_close(sink: &mut Sink, reason: CloseReason, text: &str, timeout: Duration) {
    // A close reason is at most 123 bytes.
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame { code: reason.code(), reason: text[..end].into() };
    let _ = tokio::time::timeout(timeout, sink.send(Message::Close(Some(frame)))).await;
}
