//! Graceful drain on SIGTERM: the listener has stopped accepting; the open connections are closed with 1012
//! spread evenly over the drain window, so their reconnects do not land on the other replicas all at once; then
//! the process waits (bounded) for the sessions to end.

use std::time::{Duration, Instant};

use crate::{gateway::Gateway, protocol::CloseReason};

/// Closing happens in steps of this length.
const STEP: Duration = Duration::from_millis(10);
/// How long after the window the sessions get to finish.
const GRACE: Duration = Duration::from_secs(5);

pub async fn drain(gw: &Gateway) {
    gw.stats.set_draining();
    let window = gw.settings.drain_window();
    let clients = gw.registry.clients();
    let total = clients.len();
    tracing::info!(clients = total, window_ms = window.as_millis() as u64, "draining");
    let start = Instant::now();
    let mut closed = 0;
    let mut tick = tokio::time::interval(STEP);
    while closed < total {
        tick.tick().await;
        let due = if window.is_zero() {
            total
        } else {
            let share = start.elapsed().as_secs_f64() / window.as_secs_f64();
            ((share * total as f64).ceil() as usize).clamp(1, total)
        };
        for client in &clients[closed..due.max(closed)] {
            client.close(CloseReason::Restart, None);
        }
        closed = due.max(closed);
    }
    let deadline = Instant::now() + GRACE;
    while !gw.registry.is_empty() && Instant::now() < deadline {
        tick.tick().await;
    }
    tracing::info!(left = gw.registry.len(), "drained");
}
